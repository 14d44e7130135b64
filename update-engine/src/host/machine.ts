/**
 * The update_engine state machine as a pure function:
 * (state, event) -> { state, effects }. The engine (engine.ts) executes the
 * effects; nothing here does I/O or reads a clock (events carry `now`).
 */
import { ErrorCode, EventResult, EventType } from '../format/omaha.js';
import { UE_ERRORS } from '../errors.js';

export type Status =
  | 'UPDATE_STATUS_IDLE'
  | 'UPDATE_STATUS_CHECKING_FOR_UPDATE'
  | 'UPDATE_STATUS_UPDATE_AVAILABLE'
  | 'UPDATE_STATUS_DOWNLOADING'
  | 'UPDATE_STATUS_VERIFYING'
  | 'UPDATE_STATUS_FINALIZING'
  | 'UPDATE_STATUS_UPDATED_NEED_REBOOT'
  | 'UPDATE_STATUS_REPORTING_ERROR_EVENT';

export interface MachineState {
  status: Status;
  /** Unix seconds of the last completed check (0 = never). */
  lastCheckedTime: number;
  progress: number;
  newVersion: string;
  newSize: number;
  lastError?: { code: string; message: string; errorCode: number } | undefined;
  /** The current attempt continued an earlier, interrupted download (CoreOS flags its failure codes with 1<<30). */
  resumed?: boolean | undefined;
}

export const initialState: MachineState = { status: 'UPDATE_STATUS_IDLE', lastCheckedTime: 0, progress: 0, newVersion: '0.0.0', newSize: 0 };

export interface Offer {
  version: string;
  size: number;
}

export type Event =
  | { type: 'CHECK'; now: number; interactive: boolean }
  | { type: 'NO_UPDATE'; now: number; pollInterval?: number | undefined }
  | { type: 'CHECK_FAILED'; now: number; httpStatus?: number | undefined; message: string }
  | { type: 'UPDATE_FOUND'; now: number; offer: Offer }
  | { type: 'DOWNLOAD_STARTED'; resumed: boolean }
  | { type: 'PROGRESS'; fraction: number }
  | { type: 'DOWNLOADED' }
  | { type: 'VERIFIED' }
  | { type: 'FINALIZED' }
  | { type: 'FAILED'; code: string; message: string; errorCode: number; version?: string | undefined }
  | { type: 'REPORTED' }
  | { type: 'RESET' }
  | { type: 'RESTORE_NEED_REBOOT'; version: string; size: number }
  | { type: 'ROLLBACK_DETECTED'; failedVersion: string };

export type Effect =
  | { do: 'omaha-check'; interactive: boolean }
  | { do: 'omaha-event'; type: number; result: number; errorCode?: number; previousVersion?: string }
  | { do: 'download' }
  | { do: 'verify' }
  | { do: 'finalize' }
  | { do: 'schedule'; outcome: 'ok' | 'error' | 'server-error'; pollInterval?: number | undefined }
  | { do: 'block-version'; version: string }
  | { do: 'lower-failed-slot' }
  /** The error report went out (or stays queued): leave REPORTING_ERROR_EVENT. */
  | { do: 'reported' }
  | { do: 'reboot-needed' }
  | { do: 'clear-reboot-needed' }
  | { do: 'notify' };

export interface Step {
  state: MachineState;
  effects: Effect[];
  /** False when the event does not apply in the current state (nothing changes). */
  accepted: boolean;
}

const busy: Status[] = ['UPDATE_STATUS_CHECKING_FOR_UPDATE', 'UPDATE_STATUS_UPDATE_AVAILABLE', 'UPDATE_STATUS_DOWNLOADING', 'UPDATE_STATUS_VERIFYING', 'UPDATE_STATUS_FINALIZING'];

/** Whether the engine is in the middle of a check or an update. */
export const isBusy = (s: Status) => busy.includes(s) || s === 'UPDATE_STATUS_REPORTING_ERROR_EVENT';

export function step(s: MachineState, e: Event): Step {
  const ok = (state: MachineState, effects: Effect[]): Step => ({ state, effects: [...effects, { do: 'notify' }], accepted: true });
  const no: Step = { state: s, effects: [], accepted: false };
  switch (e.type) {
    case 'CHECK':
      if (s.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT') return ok(s, [{ do: 'omaha-event', type: 0, result: 0 }, { do: 'schedule', outcome: 'ok' }]); // ping only while a reboot is pending
      if (s.status !== 'UPDATE_STATUS_IDLE') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_CHECKING_FOR_UPDATE', lastError: undefined, resumed: false }, [{ do: 'omaha-check', interactive: e.interactive }]);
    case 'NO_UPDATE':
      if (s.status !== 'UPDATE_STATUS_CHECKING_FOR_UPDATE') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_IDLE', lastCheckedTime: Math.floor(e.now / 1000) }, [{ do: 'schedule', outcome: 'ok', pollInterval: e.pollInterval }]);
    case 'CHECK_FAILED': {
      if (s.status !== 'UPDATE_STATUS_CHECKING_FOR_UPDATE') return no;
      const server = e.httpStatus !== undefined && e.httpStatus >= 500;
      const errorCode = e.httpStatus ? ErrorCode.HttpBase + e.httpStatus : ErrorCode.OmahaRequestError;
      return ok({ ...s, status: 'UPDATE_STATUS_IDLE', lastError: { code: UE_ERRORS.E_CHECK.code, message: e.message, errorCode } }, [{ do: 'schedule', outcome: server ? 'server-error' : 'error' }]);
    }
    case 'UPDATE_FOUND':
      if (s.status !== 'UPDATE_STATUS_CHECKING_FOR_UPDATE') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_UPDATE_AVAILABLE', lastCheckedTime: Math.floor(e.now / 1000), newVersion: e.offer.version, newSize: e.offer.size, progress: 0 }, [
        { do: 'omaha-event', type: EventType.UpdateDownloadStarted, result: EventResult.Success },
        { do: 'download' },
      ]);
    case 'DOWNLOAD_STARTED':
      if (s.status !== 'UPDATE_STATUS_UPDATE_AVAILABLE') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_DOWNLOADING', resumed: e.resumed }, []);
    case 'PROGRESS':
      if (s.status !== 'UPDATE_STATUS_DOWNLOADING') return no;
      return ok({ ...s, progress: Math.max(0, Math.min(1, e.fraction)) }, []);
    case 'DOWNLOADED':
      if (s.status !== 'UPDATE_STATUS_DOWNLOADING' && s.status !== 'UPDATE_STATUS_UPDATE_AVAILABLE') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_VERIFYING', progress: 1 }, [{ do: 'omaha-event', type: EventType.UpdateDownloadFinished, result: EventResult.Success }, { do: 'verify' }]);
    case 'VERIFIED':
      if (s.status !== 'UPDATE_STATUS_VERIFYING') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_FINALIZING' }, [{ do: 'finalize' }]);
    case 'FINALIZED':
      if (s.status !== 'UPDATE_STATUS_FINALIZING') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_UPDATED_NEED_REBOOT' }, [{ do: 'omaha-event', type: EventType.UpdateComplete, result: EventResult.Success }, { do: 'reboot-needed' }, { do: 'schedule', outcome: 'ok' }]);
    case 'RESTORE_NEED_REBOOT':
      if (s.status !== 'UPDATE_STATUS_IDLE') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_UPDATED_NEED_REBOOT', newVersion: e.version, newSize: e.size, progress: 1 }, []);
    case 'FAILED': {
      if (!busy.includes(s.status)) return no;
      // As update_engine: a failure of a resumed download carries the "resumed" flag (1<<30) in its code.
      const errorCode = s.resumed ? (e.errorCode | ErrorCode.ResumedFlag) >>> 0 : e.errorCode;
      const effects: Effect[] = [{ do: 'omaha-event', type: EventType.UpdateComplete, result: EventResult.Error, errorCode }];
      // Only a rollback blocks a version (below): a bad transfer, a corrupt mirror or a forged
      // signature must not let an attacker veto a good release; the next check retries it.
      return ok({ ...s, status: 'UPDATE_STATUS_REPORTING_ERROR_EVENT', lastError: { code: e.code, message: e.message, errorCode } }, effects);
    }
    case 'REPORTED':
      if (s.status !== 'UPDATE_STATUS_REPORTING_ERROR_EVENT') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_IDLE', progress: 0 }, [{ do: 'schedule', outcome: 'error' }]);
    case 'RESET':
      if (s.status !== 'UPDATE_STATUS_UPDATED_NEED_REBOOT') return no;
      return ok({ ...s, status: 'UPDATE_STATUS_IDLE', progress: 0, newVersion: '0.0.0', newSize: 0 }, [{ do: 'clear-reboot-needed' }]);
    case 'ROLLBACK_DETECTED':
      if (s.status !== 'UPDATE_STATUS_IDLE') return no;
      return ok(
        {
          ...s,
          status: 'UPDATE_STATUS_REPORTING_ERROR_EVENT',
          lastError: { code: UE_ERRORS.E_ROLLBACK.code, message: `the bootloader fell back from ${e.failedVersion}`, errorCode: ErrorCode.RollbackDetected },
        },
        // Local safety first (never boot or fetch the failed version again),
        // then the report, which may wait on the network.
        [
          { do: 'block-version', version: e.failedVersion },
          { do: 'lower-failed-slot' },
          { do: 'omaha-event', type: EventType.UpdateComplete, result: EventResult.Error, errorCode: ErrorCode.RollbackDetected },
          { do: 'reported' },
        ],
      );
  }
}

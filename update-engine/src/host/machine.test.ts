import { describe, it, expect, vi } from 'vitest';
import { step, initialState, type Event, type MachineState } from './machine.js';
import { nextDelay, afterCheck, clampPollInterval, coreosTimings, realClock } from './scheduler.js';
import { resolveConf } from './config.js';
import { parseEnvFile } from '../../../common/src/contracts.js';

const run = (events: Event[], s: MachineState = initialState) => {
  const effects: string[] = [];
  for (const e of events) {
    const r = step(s, e);
    s = r.state;
    for (const f of r.effects) if (f.do !== 'notify') effects.push(f.do === 'omaha-event' ? `event ${f.type}/${f.result}${f.errorCode !== undefined ? `/${f.errorCode}` : ''}` : f.do);
  }
  return { s, effects };
};

describe('update state machine', () => {
  it('walks a successful update through CoreOS states and events 13, 14, 3/1', () => {
    const states: string[] = [];
    let s = initialState;
    const evs: Event[] = [
      { type: 'CHECK', now: 1000, interactive: true },
      { type: 'UPDATE_FOUND', now: 2000, offer: { version: '2.0.0', size: 123 } },
      { type: 'DOWNLOAD_STARTED', resumed: false },
      { type: 'PROGRESS', fraction: 0.5 },
      { type: 'DOWNLOADED' },
      { type: 'VERIFIED' },
      { type: 'FINALIZED' },
    ];
    for (const e of evs) {
      s = step(s, e).state;
      states.push(s.status.replace('UPDATE_STATUS_', ''));
    }
    expect(states).toEqual(['CHECKING_FOR_UPDATE', 'UPDATE_AVAILABLE', 'DOWNLOADING', 'DOWNLOADING', 'VERIFYING', 'FINALIZING', 'UPDATED_NEED_REBOOT']);
    expect(run(evs).effects).toEqual(['omaha-check', 'event 13/1', 'download', 'event 14/1', 'verify', 'finalize', 'event 3/1', 'reboot-needed', 'schedule']);
    expect(s.lastCheckedTime).toBe(2);
    expect(s.newVersion).toBe('2.0.0');
    expect(s.newSize).toBe(123);
  });
  it('reports a failure as 3/0 with the error code and returns to IDLE, without blocking the version', () => {
    const { s, effects } = run([
      { type: 'CHECK', now: 0, interactive: false },
      { type: 'UPDATE_FOUND', now: 0, offer: { version: '2.0.0', size: 1 } },
      { type: 'FAILED', code: 'E_PAYLOAD_HASH', message: 'x', errorCode: 10, version: '2.0.0' },
      { type: 'REPORTED' },
    ]);
    expect(effects).toEqual(['omaha-check', 'event 13/1', 'download', 'event 3/0/10', 'schedule']);
    expect(s.status).toBe('UPDATE_STATUS_IDLE');
    expect(s.lastError?.errorCode).toBe(10);
  });
  it('flags the failure code of a resumed download with 1<<30, as update_engine does, and clears it at the next check', () => {
    const { s, effects } = run([
      { type: 'CHECK', now: 0, interactive: false },
      { type: 'UPDATE_FOUND', now: 0, offer: { version: '2.0.0', size: 1 } },
      { type: 'DOWNLOAD_STARTED', resumed: true },
      { type: 'FAILED', code: 'E_PAYLOAD_HASH', message: 'x', errorCode: 10, version: '2.0.0' },
      { type: 'REPORTED' },
      { type: 'CHECK', now: 0, interactive: false },
      { type: 'UPDATE_FOUND', now: 0, offer: { version: '2.0.0', size: 1 } },
      { type: 'DOWNLOAD_STARTED', resumed: false },
      { type: 'FAILED', code: 'E_PAYLOAD_HASH', message: 'x', errorCode: 10, version: '2.0.0' },
    ]);
    expect(effects.filter((e) => e.startsWith('event 3/'))).toEqual([`event 3/0/${(1 << 30) + 10}`, 'event 3/0/10']);
    expect(s.lastError?.errorCode).toBe(10);
  });
  it('does not block a version for a transfer error (it is retried at the next check)', () => {
    const { effects } = run([
      { type: 'CHECK', now: 0, interactive: false },
      { type: 'UPDATE_FOUND', now: 0, offer: { version: '2.0.0', size: 1 } },
      { type: 'FAILED', code: 'E_DOWNLOAD', message: 'x', errorCode: 9, version: '2.0.0' },
    ]);
    expect(effects).not.toContain('block-version');
  });
  it('reports a rollback as 3/0 errorcode 44, blocks the version and lowers the slot', () => {
    expect(run([{ type: 'ROLLBACK_DETECTED', failedVersion: '2.0.0' }]).effects).toEqual(['block-version', 'lower-failed-slot', 'event 3/0/44', 'reported']);
  });
  it('only pings while a reboot is pending, and reset_status works only then', () => {
    const need = run([{ type: 'RESTORE_NEED_REBOOT', version: '2', size: 1 }]).s;
    expect(run([{ type: 'CHECK', now: 0, interactive: true }], need).effects).toEqual(['event 0/0', 'schedule']);
    expect(step(initialState, { type: 'RESET' }).accepted).toBe(false);
    expect(run([{ type: 'RESET' }], need).s.status).toBe('UPDATE_STATUS_IDLE');
  });
  it('ignores events that do not apply (a check while downloading)', () => {
    const s = run([{ type: 'CHECK', now: 0, interactive: true }, { type: 'UPDATE_FOUND', now: 0, offer: { version: '2', size: 1 } }]).s;
    expect(step(s, { type: 'CHECK', now: 0, interactive: true }).accepted).toBe(false);
  });
  it('a 5xx check failure schedules a server-error backoff', () => {
    const r = run([{ type: 'CHECK', now: 0, interactive: false }, { type: 'CHECK_FAILED', now: 0, httpStatus: 503, message: 'x' }]);
    expect(r.s.lastError?.errorCode).toBe(2503);
  });
});

describe('check scheduler (update_check_scheduler.cc timings)', () => {
  const min = 60_000;
  it('first check 7±5 min, then 45±5 min', () => {
    expect(nextDelay({ checks: 0, serverErrors: 0 }, coreosTimings, 0)).toBe(2 * min);
    expect(nextDelay({ checks: 0, serverErrors: 0 }, coreosTimings, 0.999999)).toBeCloseTo(12 * min, -3);
    expect(nextDelay({ checks: 1, serverErrors: 0 }, coreosTimings, 0.5)).toBe(45 * min);
    expect(nextDelay({ checks: 1, serverErrors: 0 }, coreosTimings, 0)).toBe(40 * min);
  });
  it('doubles on 5xx up to 4 h and resets after a good check; PollInterval replaces the base', () => {
    let s = { checks: 1, serverErrors: 0 };
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      s = afterCheck(s, 'server-error');
      seen.push(nextDelay(s, coreosTimings, 0.5) / min);
    }
    expect(seen).toEqual([90, 180, 240, 240, 240, 240]);
    s = afterCheck(s, 'ok');
    expect(nextDelay(s, coreosTimings, 0.5)).toBe(45 * min);
    expect(nextDelay(afterCheck(s, 'ok', 600), coreosTimings, 0.5)).toBe(10 * min);
  });
  it('clamps a server PollInterval to 5 min .. 24 h (a check storm or a machine that never checks again)', () => {
    const s = { checks: 1, serverErrors: 0 };
    expect(nextDelay(afterCheck(s, 'ok', 99_999_999), coreosTimings, 0.5)).toBe(24 * 60 * min);
    expect(nextDelay(afterCheck(s, 'ok', 1), coreosTimings, 0.5)).toBe(5 * min);
    // Zero, negative or not a number: the default interval.
    for (const bad of [0, -5, Number.NaN, Infinity]) expect(nextDelay(afterCheck(s, 'ok', bad), coreosTimings, 0.5)).toBe(45 * min);
    expect(clampPollInterval(3600)).toBe(3600);
  });
  it('never lets the fuzz bring checks closer than 3/4 of the shortest PollInterval, whatever rand is', () => {
    const s = afterCheck({ checks: 1, serverErrors: 0 }, 'ok', 1);
    for (const r of [0, 0.25, 0.999999, -1, 2, Number.NaN]) {
      const d = nextDelay(s, coreosTimings, r);
      expect(d, `rand ${r}`).toBeGreaterThanOrEqual(3.75 * min);
      expect(d, `rand ${r}`).toBeLessThanOrEqual(6.25 * min);
    }
    // A state holding an out-of-range PollInterval (an older engine.json, a bug) is clamped again.
    expect(nextDelay({ checks: 1, serverErrors: 0, pollInterval: 99_999_999 }, coreosTimings, 0.5)).toBe(24 * 60 * min);
    expect(nextDelay({ checks: 1, serverErrors: 999, pollInterval: 99_999_999 }, coreosTimings, 0.5)).toBe(4 * 60 * min);
  });
  it('arms a real timer of at most 2^31-1 ms, for a wait too long or not a number', () => {
    vi.useFakeTimers();
    try {
      const spy = vi.spyOn(globalThis, 'setTimeout');
      for (const ms of [99_999_999_000, Number.NaN, Infinity]) realClock.setTimeout(() => undefined, ms).cancel();
      for (const call of spy.mock.calls) expect(call[1]).toBeLessThanOrEqual(2 ** 31 - 1);
      for (const call of spy.mock.calls) expect(call[1]).toBeGreaterThan(1000);
      spy.mockRestore();
    } finally {
      vi.useRealTimers();
    }
  });
  it('runs a wait longer than Node\'s timer limit in steps, not at once', async () => {
    vi.useFakeTimers();
    try {
      let fired = 0;
      realClock.setTimeout(() => fired++, 30 * 24 * 3600 * 1000);
      await vi.advanceTimersByTimeAsync(1000);
      expect(fired).toBe(0);
      await vi.advanceTimersByTimeAsync(25 * 24 * 3600 * 1000);
      expect(fired).toBe(0);
      await vi.advanceTimersByTimeAsync(5 * 24 * 3600 * 1000);
      expect(fired).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('update.conf', () => {
  it('reads /etc first, then /usr/share, first match wins per key', () => {
    const c = resolveConf(
      [
        ['/etc/coreos/update.conf', 'GROUP=beta\n# comment\nREBOOT_STRATEGY="etcd-lock"\n'],
        ['/usr/share/coreos/update.conf', 'GROUP=stable\nSERVER=https://updates.example.com/v1/update/\n'],
      ],
      [['/usr/share/basalt/release', 'VERSION=1.2.3\nBOARD=amd64-usr\n']],
    );
    expect(c).toMatchObject({ group: 'beta', server: 'https://updates.example.com/v1/update/', rebootStrategy: 'etcd-lock', version: '1.2.3', board: 'amd64-usr' });
    expect(c.sources).toEqual({ GROUP: '/etc/coreos/update.conf', REBOOT_STRATEGY: '/etc/coreos/update.conf', SERVER: '/usr/share/coreos/update.conf' });
  });
  it('SERVER=disabled turns updates off; defaults are stable and reboot', () => {
    const c = resolveConf([['/etc/coreos/update.conf', 'SERVER=disabled\n']], []);
    expect(c.server).toBeUndefined();
    expect(c.disabledReason).toBe('SERVER=disabled');
    expect(c.group).toBe('stable');
    expect(c.rebootStrategy).toBe('reboot');
  });
  it('warns about best-effort and a half-set reboot window', () => {
    const c = resolveConf([['/etc/coreos/update.conf', 'REBOOT_STRATEGY=best-effort\nLOCKSMITHD_REBOOT_WINDOW_START=Thu 23:00\n']], []);
    expect(c.rebootStrategy).toBe('reboot');
    expect(c.warnings.length).toBe(2);
    expect(c.rebootWindowStart).toBeUndefined();
  });
  it('parses quotes, export and trailing comments', () => {
    expect(parseEnvFile("export A='x y'\nB=1 # c\nC=\"q\"\nbad line\n")).toEqual({ A: 'x y', B: '1', C: 'q' });
  });
});

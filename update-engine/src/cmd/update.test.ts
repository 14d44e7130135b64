/** A one-shot apply's result: installed, up to date, or an error line; never success with nothing installed. */
import { describe, expect, it } from 'vitest';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import { oneShotResult, type OneShotEnd } from './update.js';

const base: OneShotEnd = { status: 'UPDATE_STATUS_IDLE', newVersion: '0.0.0', target: 'USR-B', lastCheck: undefined, failure: undefined, running: '1.0.0', channel: 'stable' };

describe('oneShotResult', () => {
  it('installed: success with the slot and version', () => {
    expect(oneShotResult({ ...base, status: 'UPDATE_STATUS_UPDATED_NEED_REBOOT', newVersion: '2.0.0', lastCheck: 'offered' })).toEqual({ ok: true, line: 'updated USR-B to 2.0.0; reboot to use it' });
  });
  it('no update offered: success, saying it is up to date', () => {
    expect(oneShotResult({ ...base, lastCheck: 'noupdate' })).toEqual({ ok: true, line: 'up to date: no update for 1.0.0 on stable' });
  });
  it('a failure (503 on the check, a stall, a refused payload, a blocked version) is the error', () => {
    const f = new BasaltError(UE_ERRORS.E_CHECK, 'update check failed: http://x/v1/update/: HTTP 503');
    expect(oneShotResult({ ...base, lastCheck: 'failed', failure: f })).toEqual({ ok: false, error: f });
    expect(oneShotResult({ ...base, lastCheck: 'offered', failure: f })).toEqual({ ok: false, error: f });
  });
  it('nothing installed and no answer that there is nothing to install: an error all the same', () => {
    for (const lastCheck of [undefined, 'failed', 'offered'] as const) {
      const r = oneShotResult({ ...base, lastCheck });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatchObject({ code: 'E_CHECK', message: expect.stringMatching(/^nothing was installed/) as unknown });
    }
  });
});

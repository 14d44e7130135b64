/** The transfer policy, pure: what a failure means for its mirror, which mirror is next, the minimum rate. */
import { describe, expect, it } from 'vitest';
import { HTTPError } from 'got';
import { BasaltError, COMMON_ERRORS } from '../../../common/src/errors.js';
import { HTTP_ERRORS } from '../../../common/src/http.js';
import { UE_ERRORS } from '../errors.js';
import { afterFailure, backoffMs, classifyFailure, defaultHttp, nextMirror, tooSlow, type MirrorState } from './http.js';

const h = { retryBaseMs: 100, maxRetryMs: 1000, maxRetries: 3 };
const at = (current: number, n = 3, out: number[] = [], retries = 0): MirrorState => ({ n, current, out: new Set(out), retries });

describe('classifyFailure', () => {
  it('refused: bytes the signed metadata refuses, or a reply over its cap', () => {
    for (const d of [UE_ERRORS.E_PAYLOAD_HASH, UE_ERRORS.E_PAYLOAD_TOO_LARGE, UE_ERRORS.E_NO_RANGE, UE_ERRORS.E_SIGNATURE_INVALID, UE_ERRORS.E_METADATA_INVALID, HTTP_ERRORS.E_HTTP_TOO_LARGE]) {
      expect(classifyFailure(new BasaltError(d, 'x')), d.code).toBe('refused');
    }
  });
  it('missing: a 4xx (not 408 or 429); transient: 5xx, 408, 429, transport errors, stalls', () => {
    const status = (n: number) => new BasaltError(HTTP_ERRORS.E_HTTP_STATUS, `u: HTTP ${n}`, { details: { status: n } });
    expect(classifyFailure(status(404))).toBe('missing');
    expect(classifyFailure(status(403))).toBe('missing');
    expect(classifyFailure(status(503))).toBe('transient');
    expect(classifyFailure(status(408))).toBe('transient');
    expect(classifyFailure(status(429))).toBe('transient');
    expect(classifyFailure(new BasaltError(HTTP_ERRORS.E_HTTP_TRANSPORT, 'u: Timeout'))).toBe('transient');
    expect(classifyFailure(new Error('slower than 1024 bytes/s'))).toBe('transient');
    // got's HTTPError carries its status outside the catalogue: the caller passes it.
    expect(classifyFailure(Object.create(HTTPError.prototype) as HTTPError, 410)).toBe('missing');
  });
  it('fatal: anything of the catalogue that is not about the mirror', () => {
    expect(classifyFailure(new BasaltError(COMMON_ERRORS.E_NO_SPACE, '/dev/x: no space'))).toBe('fatal');
    expect(classifyFailure(new BasaltError(UE_ERRORS.E_DELTA_SEED, 'seed'))).toBe('fatal');
  });
});

describe('mirror rotation', () => {
  it('a refusal or a 4xx drops the mirror and asks the next one at once', () => {
    const r = afterFailure(at(0), 'refused', h);
    expect(r).toMatchObject({ action: 'next', mirror: 1, waitMs: 0 });
    const r2 = afterFailure(r.state, 'missing', h);
    expect(r2).toMatchObject({ action: 'next', mirror: 2, waitMs: 0 });
    expect([...r2.state.out].sort()).toEqual([0, 1]);
    // The last one refuses too: nothing is left.
    expect(afterFailure(r2.state, 'refused', h)).toMatchObject({ action: 'give-up', why: 'every-mirror-out' });
  });
  it('a transient failure moves on to the next mirror still in, after a growing back-off, and skips dropped ones', () => {
    let s = at(0, 3, [1]);
    const seen: [number, number][] = [];
    for (let i = 0; i < 3; i++) {
      const r = afterFailure(s, 'transient', h);
      if (r.action !== 'next') throw new Error('gave up early');
      seen.push([r.mirror, r.waitMs]);
      s = r.state;
    }
    expect(seen).toEqual([
      [2, 100],
      [0, 200],
      [2, 400],
    ]);
    expect(afterFailure(s, 'transient', h)).toMatchObject({ action: 'give-up', why: 'retries-exhausted' });
  });
  it('one mirror: a transient failure retries it; a refusal ends the fetch', () => {
    expect(afterFailure(at(0, 1), 'transient', h)).toMatchObject({ action: 'next', mirror: 0, waitMs: 100 });
    expect(afterFailure(at(0, 1), 'refused', h)).toMatchObject({ action: 'give-up', why: 'every-mirror-out' });
  });
  it('the bad mirror first: the good one is asked on the first failure, never the bad one again', () => {
    // Mirror 0 sends a corrupt payload, mirror 1 is good: 0, then 1, then (1 stalls) 1 again.
    let s = at(0, 2);
    const order = [0];
    for (const kind of ['refused', 'transient', 'transient'] as const) {
      const r = afterFailure(s, kind, h);
      if (r.action !== 'next') throw new Error('gave up');
      order.push(r.mirror);
      s = r.state;
    }
    expect(order).toEqual([0, 1, 1, 1]);
  });
  it('nextMirror wraps and says when all are out', () => {
    expect(nextMirror(2, 3, new Set())).toBe(0);
    expect(nextMirror(0, 3, new Set([1, 2]))).toBe(0);
    expect(nextMirror(0, 2, new Set([0, 1]))).toBeUndefined();
  });
  it('backoffMs doubles up to its ceiling and never overflows', () => {
    expect([0, 1, 2, 3, 4].map((a) => backoffMs(h, a))).toEqual([100, 200, 400, 800, 1000]);
    expect(backoffMs(h, 5000)).toBe(1000);
  });
});

describe('the minimum rate', () => {
  it('less than minBytesPerSec averaged over the window is too slow', () => {
    expect(tooSlow(9, 10_000, 1)).toBe(true);
    expect(tooSlow(10, 10_000, 1)).toBe(false);
    // The default: 1 KiB/s over 90 s, so a server sending a byte a second is dropped after one window.
    expect(tooSlow(90, defaultHttp.stallMs, defaultHttp.minBytesPerSec)).toBe(true);
    expect(tooSlow(1024 * 90, defaultHttp.stallMs, defaultHttp.minBytesPerSec)).toBe(false);
  });
});

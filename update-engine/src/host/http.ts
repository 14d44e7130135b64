/**
 * The host's transfers: the limits in time and bytes of every fetch, and the
 * pure rules that apply them (what a failure means for the mirror that
 * caused it, which mirror is asked next, when a transfer is too slow). No I/O
 * here: apply.ts and engine.ts run the requests.
 *
 * The limits, and why (TUF's attack list: endless data, slow retrieval,
 * malicious mirrors):
 * - small documents (the Omaha answer, a static channel file, a payload
 *   manifest) have a byte cap (the Omaha answer 256 KiB, a channel 1 MiB, a
 *   manifest its signed TUF length, 32 MiB at most) checked as the bytes arrive, before anything is
 *   buffered past it, and a whole deadline (documentMs, 60 s): a server that
 *   sends one byte a second never holds a check longer than that;
 * - a payload is capped at the size its signed manifest declares, and must
 *   arrive at minBytesPerSec (1 KiB/s) or more, averaged over every stallMs
 *   window (90 s); a slower transfer is dropped and the next mirror asked;
 * - a failure counts against the mirror that caused it: bytes the signed
 *   manifest refuses or an HTTP 4xx take that mirror out of this download
 *   (it is not asked again until the next check); a stall, a 5xx or a cut
 *   connection is retried with back-off on the next mirror in turn.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { HTTP_ERRORS, httpStatusOf, isTransferFailure } from '../../../common/src/http.js';
import { UE_ERRORS } from '../errors.js';

/** Timeouts, rates and retries of the host's transfers. */
export interface HttpOptions {
  /** First retry delay; doubles per failure up to maxRetryMs. */
  retryBaseMs: number;
  maxRetryMs: number;
  /** Transfer retries before giving up (curl in update_engine: 20). */
  maxRetries: number;
  /** Abort a transfer that receives nothing for this long; also the window of the minimum rate. */
  stallMs: number;
  connectMs: number;
  /**
   * The slowest a payload transfer may be: in every stallMs window at least this many bytes
   * per second must arrive, or the transfer is dropped and retried (TUF's slow retrieval).
   */
  minBytesPerSec: number;
  /** The whole deadline of a small document (Omaha answer, channel file, manifest), connection included. */
  documentMs: number;
}

export const defaultHttp: HttpOptions = { retryBaseMs: 1000, maxRetryMs: 60_000, maxRetries: 20, stallMs: 90_000, connectMs: 30_000, minBytesPerSec: 1024, documentMs: 60_000 };

/** What a failed fetch says about the mirror that answered it. */
export type FailureKind =
  /** The mirror sent bytes the signed metadata refuses (hash, size, signature, no Range, over the cap): it is out for this download. */
  | 'refused'
  /** HTTP 4xx other than 408/429: the mirror does not have it (or will not give it); it is out for this download. */
  | 'missing'
  /** A stall, a dribble, a 5xx, 408/429, a reset or refused connection: worth another try, after a back-off, on the next mirror. */
  | 'transient'
  /** Not about the mirror at all (the slot cannot be written, a delta's seed does not match, a bug): the fetch ends. */
  | 'fatal';

const REFUSED_CODES = new Set<string>([
  UE_ERRORS.E_PAYLOAD_HASH.code,
  UE_ERRORS.E_PAYLOAD_DECOMPRESS.code,
  UE_ERRORS.E_PAYLOAD_SIZE.code,
  UE_ERRORS.E_PAYLOAD_TOO_LARGE.code,
  UE_ERRORS.E_NO_RANGE.code,
  UE_ERRORS.E_SIGNATURE_INVALID.code,
  UE_ERRORS.E_SIGNATURE_UNKNOWN_KEY.code,
  UE_ERRORS.E_METADATA_INVALID.code,
  UE_ERRORS.E_METADATA_CHANNEL.code,
  UE_ERRORS.E_METADATA_EXPIRED.code,
  HTTP_ERRORS.E_HTTP_TOO_LARGE.code,
]);

/** Sorts a failed fetch (`status`: an HTTP status when the error carries one outside the catalogue, e.g. got's HTTPError). Pure. */
export function classifyFailure(e: unknown, status: number | undefined = httpStatusOf(e)): FailureKind {
  if (e instanceof BasaltError && REFUSED_CODES.has(e.code)) return 'refused';
  if (e instanceof BasaltError && !isTransferFailure(e)) return 'fatal';
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) return 'missing';
  return 'transient';
}

/** Where a fetch over several mirrors stands. */
export interface MirrorState {
  /** How many mirrors (codebases) there are. */
  n: number;
  /** The mirror asked last. */
  current: number;
  /** Mirrors out of this download (refused bytes, 4xx). */
  out: ReadonlySet<number>;
  /** Transient failures so far (the back-off grows with them). */
  retries: number;
}

export type MirrorDecision =
  | { action: 'next'; mirror: number; waitMs: number; state: MirrorState }
  | { action: 'give-up'; why: 'every-mirror-out' | 'retries-exhausted'; state: MirrorState };

/**
 * After a failure of kind `kind` on mirror `s.current`: which mirror to ask
 * next and after how long, or give up. A mirror that refused or lacks the file
 * is dropped, and the next is asked at once; a transient failure moves on to
 * the next mirror still in (the same one when it is the only one) after a
 * back-off that doubles per retry. Pure.
 */
export function afterFailure(s: MirrorState, kind: Exclude<FailureKind, 'fatal'>, h: Pick<HttpOptions, 'retryBaseMs' | 'maxRetryMs' | 'maxRetries'>): MirrorDecision {
  const out = new Set(s.out);
  let retries = s.retries;
  let waitMs = 0;
  if (kind === 'transient') {
    retries++;
    if (retries > h.maxRetries) return { action: 'give-up', why: 'retries-exhausted', state: { ...s, out, retries } };
    waitMs = backoffMs(h, retries - 1);
  } else out.add(s.current);
  const mirror = nextMirror(s.current, s.n, out);
  if (mirror === undefined) return { action: 'give-up', why: 'every-mirror-out', state: { ...s, out, retries } };
  return { action: 'next', mirror, waitMs, state: { ...s, current: mirror, out, retries } };
}

/** The mirror after `current` (in turn, wrapping) that is not out; undefined when all are. Pure. */
export function nextMirror(current: number, n: number, out: ReadonlySet<number>): number | undefined {
  for (let i = 1; i <= n; i++) {
    const m = (current + i) % n;
    if (!out.has(m)) return m;
  }
  return undefined;
}

/** The wait before retry number `attempt` (0-based): retryBaseMs doubled per attempt, at most maxRetryMs. Pure. */
export function backoffMs(h: Pick<HttpOptions, 'retryBaseMs' | 'maxRetryMs'>, attempt: number): number {
  return Math.min(h.maxRetryMs, h.retryBaseMs * 2 ** Math.min(attempt, 30));
}

/** The minimum-rate rule: fewer than minBytesPerSec on average over a window of windowMs is too slow. Pure. */
export function tooSlow(bytesInWindow: number, windowMs: number, minBytesPerSec: number): boolean {
  return bytesInWindow < Math.ceil((minBytesPerSec * windowMs) / 1000);
}

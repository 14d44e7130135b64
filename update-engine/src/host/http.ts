/** The host's transfers: timeouts, retries and the one HTTP client setup for every outgoing request. */

/** Timeouts and retries of the host's transfers. */
export interface HttpOptions {
  /** First retry delay; doubles per failure up to maxRetryMs. */
  retryBaseMs: number;
  maxRetryMs: number;
  /** Transfer retries before giving up (curl in update_engine: 20). */
  maxRetries: number;
  /** Abort a transfer that receives nothing for this long. */
  stallMs: number;
  connectMs: number;
  /**
   * The slowest a payload transfer may be: in every stallMs window at least this many bytes
   * per second must arrive, or the transfer is dropped and retried (TUF's slow retrieval).
   */
  minBytesPerSec: number;
}

export const defaultHttp: HttpOptions = { retryBaseMs: 1000, maxRetryMs: 60_000, maxRetries: 20, stallMs: 90_000, connectMs: 30_000, minBytesPerSec: 1024 };

/**
 * One request to a platform's metadata service (AWS, GCE, DigitalOcean,
 * Azure), through the one HTTP client setup (common/src/http.ts): bounded in
 * time (connect, stall, whole request) and in bytes. Transport failures and
 * 5xx answers are retried with a doubling backoff; any other status is
 * returned to the caller, which knows what a 401, 403 or 404 means on its
 * platform. Side effects: network requests.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import type { HttpOptions } from './index.js';

export interface MetaRequest {
  method?: 'GET' | 'PUT' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

export interface MetaReply {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** The largest metadata document accepted (EC2 caps user-data at 16 KiB, Azure custom data at 64 KiB). */
export const MAX_METADATA_BYTES = 1024 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `r` to `url`, retrying transport failures and 5xx up to o.attempts times (default 5). */
export async function metaRequest(url: string, r: MetaRequest, o: HttpOptions = {}): Promise<MetaReply> {
  // Loaded on first use: `coreos-cloudinit -validate -from-file` never needs the HTTP client.
  const { httpClient, requestBytes, isTransferFailure } = await import('../../../common/src/http.js');
  const ms = o.timeoutMs ?? 10_000;
  const client = httpClient({ connectMs: ms, stallMs: ms, totalMs: ms });
  const attempts = o.attempts ?? 5;
  let backoff = o.backoffMs ?? 100;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const res = await requestBytes(client, url, {
        method: r.method ?? 'GET',
        headers: { ...(o.headers ?? {}), ...(r.headers ?? {}) },
        // A PUT or POST through got's stream waits for its body to end: send an empty one.
        ...(r.body !== undefined ? { body: r.body } : (r.method ?? 'GET') !== 'GET' ? { body: '' } : {}),
        maxBytes: MAX_METADATA_BYTES,
      });
      if (res.status < 500) return { status: res.status, headers: res.headers, body: res.body };
      last = res;
    } catch (e) {
      if (!isTransferFailure(e)) throw e;
      last = e;
    }
    if (i < attempts - 1) {
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
  if (last instanceof Error) throw last;
  const status = (last as MetaReply).status;
  throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_STATUS, `${url}: HTTP ${status} after ${attempts} attempts`, { details: { status } });
}

/** The error for an answer the caller did not expect. */
export function statusError(url: string, res: MetaReply, what: string): BasaltError {
  return new BasaltError(CLOUDINIT_ERRORS.E_METADATA_STATUS, `${url}: HTTP ${res.status} while reading ${what}`, { details: { status: res.status } });
}

/** `base` with exactly one trailing slash. */
export function withSlash(u: string): string {
  return u.endsWith('/') ? u : u + '/';
}

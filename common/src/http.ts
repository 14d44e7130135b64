/**
 * The one HTTP client setup (got) for every outgoing request Basalt makes on a
 * host: the update check, manifests, payloads, static channel files, etcd for
 * the reboot lock. Every request is bounded in time (connect, idle socket,
 * whole request) and every body read here is bounded in bytes. No retries
 * inside: callers own their retry policy.
 */
import got, { type Got, type Method } from 'got';
import { BasaltError, defineErrors } from './errors.js';

export const HTTP_ERRORS = defineErrors('http', {
  E_HTTP_TOO_LARGE: { meaning: 'a server sent more bytes than the reply may have', hint: 'the server or a proxy in between is misbehaving' },
  E_HTTP_STATUS: { meaning: 'a server answered with an HTTP error status' },
  E_HTTP_TRANSPORT: { meaning: 'a request failed before a complete answer arrived (refused, reset, timed out, TLS)', hint: 'check the network and that the server is up' },
});

export interface HttpLimits {
  /** Time to connect (TCP and TLS). */
  connectMs: number;
  /** Give up on a socket that receives nothing for this long. */
  stallMs: number;
  /** Give up on the whole request after this long (undefined: no total limit, as for long downloads). */
  totalMs?: number | undefined;
}

export const USER_AGENT = 'basalt-update-engine';

/** TLS material for a server with its own CA or one that wants a client certificate. */
export interface TlsFiles {
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
}

/** A got instance with Basalt's limits: no retries, timeouts from `l`, Basalt's user agent. */
export function httpClient(l: HttpLimits, tls: TlsFiles = {}): Got {
  return got.extend({
    retry: { limit: 0 },
    timeout: { connect: l.connectMs, socket: l.stallMs, ...(l.totalMs !== undefined ? { request: l.totalMs } : {}) },
    headers: { 'user-agent': USER_AGENT },
    https: { ...(tls.ca ? { certificateAuthority: tls.ca } : {}), ...(tls.cert ? { certificate: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}) },
  });
}

export interface TextRequest {
  method?: Method;
  body?: string;
  headers?: Record<string, string>;
  /** The largest reply body accepted; more is an E_HTTP_TOO_LARGE failure, read no further. */
  maxBytes: number;
  signal?: AbortSignal | undefined;
}

export interface TextReply {
  status: number;
  text: string;
}

export interface BytesReply {
  status: number;
  body: Buffer;
  /** The reply's headers, names in lower case. */
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Sends one request and reads the reply body, at most `maxBytes` of it. Any
 * status is returned (callers decide what an error status means); transport
 * failures throw E_HTTP_TRANSPORT naming the URL.
 */
export function requestBytes(client: Got, url: string, r: TextRequest): Promise<BytesReply> {
  return new Promise((resolve, reject) => {
    const stream = client.stream(url, {
      method: r.method ?? 'GET',
      ...(r.body !== undefined ? { body: r.body } : {}),
      headers: r.headers ?? {},
      throwHttpErrors: false,
      ...(r.signal ? { signal: r.signal } : {}),
    });
    const chunks: Buffer[] = [];
    let n = 0;
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    let settled = false;
    const settle = (e: Error | undefined) => {
      if (settled) return;
      settled = true;
      if (e) {
        stream.destroy();
        reject(e);
      } else resolve({ status, body: Buffer.concat(chunks), headers });
    };
    stream.on('response', (res: { statusCode: number; headers: Record<string, string | string[] | undefined> }) => {
      status = res.statusCode;
      headers = res.headers;
      const announced = Number(res.headers['content-length'] ?? NaN);
      if (announced > r.maxBytes) settle(tooLarge(url, r.maxBytes));
    });
    stream.on('data', (c: Buffer) => {
      n += c.length;
      if (n > r.maxBytes) settle(tooLarge(url, r.maxBytes));
      else chunks.push(c);
    });
    stream.on('end', () => settle(undefined));
    stream.on('error', (e: Error) => settle(e instanceof BasaltError ? e : new BasaltError(HTTP_ERRORS.E_HTTP_TRANSPORT, `${url}: ${transportText(e)}`, { cause: e })));
  });
}

/** As requestBytes, with the body as UTF-8 text. */
export async function requestText(client: Got, url: string, r: TextRequest): Promise<TextReply> {
  const reply = await requestBytes(client, url, r);
  return { status: reply.status, text: reply.body.toString('utf8') };
}

/** As requestText, but a status other than 2xx is an E_HTTP_STATUS error (details.status has it). */
export async function fetchText(client: Got, url: string, r: TextRequest): Promise<string> {
  const reply = await requestText(client, url, r);
  if (reply.status < 200 || reply.status > 299) {
    throw new BasaltError(HTTP_ERRORS.E_HTTP_STATUS, `${url}: HTTP ${reply.status}`, { details: { status: reply.status } });
  }
  return reply.text;
}

/**
 * Downloads `url` into the file `dest` (created or truncated), at most
 * `maxBytes` of it: more, or an announced Content-Length over it, is
 * E_HTTP_TOO_LARGE; a status other than 2xx is E_HTTP_STATUS; transport
 * failures E_HTTP_TRANSPORT. Returns the bytes written. The file is left as it
 * is on failure (the caller writes into a folder it removes).
 */
export async function downloadFile(client: Got, url: string, dest: string, r: { maxBytes: number; signal?: AbortSignal | undefined }): Promise<number> {
  const { createWriteStream } = await import('node:fs');
  const out = createWriteStream(dest);
  let n = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = client.stream(url, { throwHttpErrors: false, ...(r.signal ? { signal: r.signal } : {}) });
      const fail = (e: Error) => {
        stream.destroy();
        reject(e);
      };
      stream.on('response', (res: { statusCode: number; headers: Record<string, string | string[] | undefined> }) => {
        if (res.statusCode < 200 || res.statusCode > 299) fail(new BasaltError(HTTP_ERRORS.E_HTTP_STATUS, `${url}: HTTP ${res.statusCode}`, { details: { status: res.statusCode } }));
        else if (Number(res.headers['content-length'] ?? NaN) > r.maxBytes) fail(tooLarge(url, r.maxBytes));
      });
      stream.on('data', (c: Buffer) => {
        n += c.length;
        if (n > r.maxBytes) return fail(tooLarge(url, r.maxBytes));
        if (!out.write(c)) {
          stream.pause();
          out.once('drain', () => stream.resume());
        }
      });
      stream.on('end', () => resolve());
      stream.on('error', (e: Error) => fail(e instanceof BasaltError ? e : new BasaltError(HTTP_ERRORS.E_HTTP_TRANSPORT, `${url}: ${transportText(e)}`, { cause: e })));
      out.on('error', (e: Error) => fail(e));
    });
  } finally {
    await new Promise<void>((resolve) => out.end(() => resolve()));
  }
  return n;
}

/** True for a failure of the transfer (status or transport) that a retry may mend; false for a refusal such as E_HTTP_TOO_LARGE. */
export function isTransferFailure(e: unknown): boolean {
  return e instanceof BasaltError && (e.code === HTTP_ERRORS.E_HTTP_STATUS.code || e.code === HTTP_ERRORS.E_HTTP_TRANSPORT.code);
}

/** The HTTP status of an E_HTTP_STATUS error, else undefined. */
export function httpStatusOf(e: unknown): number | undefined {
  return e instanceof BasaltError && e.code === HTTP_ERRORS.E_HTTP_STATUS.code && typeof e.details['status'] === 'number' ? e.details['status'] : undefined;
}

function tooLarge(url: string, max: number): BasaltError {
  return new BasaltError(HTTP_ERRORS.E_HTTP_TOO_LARGE, `${url}: the reply is larger than ${max} bytes`);
}

/**
 * A transport failure in words: got's timeouts say which limit passed
 * ("Timeout awaiting 'request' for 2000ms" becomes "no complete answer within
 * 2 s (whole-request deadline)"); other errors keep their message. Pure.
 */
export function transportText(e: Error): string {
  const m = /^Timeout awaiting '(\w+)' for (\d+)ms$/.exec(e.message);
  if (!m) return e.message;
  const s = `${Number(m[2]) / 1000} s`;
  switch (m[1]) {
    case 'request':
      return `no complete answer within ${s} (whole-request deadline)`;
    case 'socket':
      return `nothing received for ${s} (stall timeout)`;
    case 'connect':
    case 'lookup':
    case 'secureConnect':
      return `could not connect within ${s}`;
    default:
      return `timed out after ${s} (${m[1]})`;
  }
}

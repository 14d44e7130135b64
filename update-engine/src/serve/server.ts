/**
 * `basalt serve`: an Omaha v3 server (POST /v1/update/) over a static release
 * repository, which it also serves as files with HTTP Range support. Events
 * are recorded as JSON lines. Reads the repository only.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { BasaltError, isBasaltError } from '../../../common/src/errors.js';
import type { Logger } from '../../../common/src/log.js';
import { buildResponse, omahaHttpStatus, parseRequest, type AppRequest, type AppResponse } from '../format/omaha.js';
import { APP_ID } from '../../../common/src/contracts.js';
import { decideOffer, deltaOfferFromChannel, offerFromChannel, type DeltaPayload, type OfferDecision } from '../format/offer.js';
import { checkChannel, deltaDir, peekEnvelope, unseal, validateChannel, type ChannelMeta } from '../format/metadata.js';
import { isVersion } from '../format/version.js';
import type { Keyring } from '../format/signature.js';
import { UE_ERRORS } from '../errors.js';
import { readBody } from './body.js';
import { DEFAULT_EVENT_LIMITS, EventLog, type EventLimits } from './events.js';
import type { FleetService } from '../fleet/service.js';

export interface ServeOptions {
  repo: string;
  /** JSONL file receiving every event and check. */
  eventsFile: string;
  /** App ids answered (lower case, with braces). */
  appIds: string[];
  /** Public URL prefix of the repository (default: http://<Host header>/). */
  baseUrl?: string | undefined;
  /** When set, channel metadata is verified with it before being offered. */
  keyring?: Keyring | undefined;
  maxBodyBytes: number;
  /** Time a client has to send its whole request (default REQUEST_TIMEOUT_MS). */
  requestTimeoutMs?: number | undefined;
  /** Bounds of the event log (default DEFAULT_EVENT_LIMITS). */
  eventLimits?: EventLimits | undefined;
  now: () => Date;
  log: Logger;
  /** The fleet service (fleet/service.ts): rollout policies, admin API, dashboard, metrics, FleetLock. */
  fleet?: FleetService | undefined;
}

/** A client has this long to send its whole request (headers and body); slower ones are cut off. */
export const REQUEST_TIMEOUT_MS = 30_000;

interface Served {
  channel?: ChannelMeta;
  error?: string;
}

async function loadChannel(o: ServeOptions, track: string): Promise<Served> {
  let name: string;
  try {
    name = checkChannel(track, 'track');
  } catch {
    return { error: `track '${track}' is not a channel name` };
  }
  const path = join(o.repo, 'channels', `${name}.json`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { error: `no channel ${name}` };
  }
  try {
    const raw = o.keyring ? await unseal(text, o.keyring, path) : peekEnvelope(text, path);
    return { channel: validateChannel(raw, path, name, o.now()) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Records one request may still add to the event log (EventLimits.perRequest). */
interface RecordBudget {
  left: number;
}

async function answerApp(o: ServeOptions, events: EventLog, a: AppRequest, req: IncomingMessage, installSource: string, budget: RecordBudget): Promise<AppResponse> {
  const t = o.now().toISOString();
  const rec = async (x: Record<string, unknown>) => {
    if (budget.left <= 0) return;
    budget.left--;
    await events.append(a.machineId, { time: t, machineId: a.machineId, appId: a.appId, version: a.version, track: a.track, board: a.board, ...x });
  };
  if (!o.appIds.includes(a.appId)) {
    await rec({ kind: 'unknown-app' });
    return { appId: a.appId, status: 'error-unknownApplication', ping: false, events: 0 };
  }
  for (const e of a.events) await rec({ kind: 'event', eventType: e.type, eventResult: e.result, errorCode: e.errorCode ?? null, previousVersion: e.previousVersion ?? null });
  if (a.ping) await rec({ kind: 'ping' });
  if (o.fleet) await o.fleet.recordEvents(a);
  const res: AppResponse = { appId: a.appId, status: 'ok', ping: a.ping, events: a.events.length };
  if (!a.updateCheck) return res;
  let s = await loadChannel(o, a.track);
  let ch = s.channel;
  let d: OfferDecision = ch ? decideOffer(ch, a) : { offer: false, why: s.error ?? 'no channel' };
  if (o.fleet) {
    // The group's policy decides instead, over the group's channel.
    const f = await o.fleet.check(a, async (track) => (s = await loadChannel(o, track)));
    ch = f.channel;
    d = f.decision;
  }
  if (ch && d.offer) {
    const base = o.baseUrl ?? `http://${req.headers.host ?? '127.0.0.1'}/`;
    const delta = a.deltaOkay ? await deltaPayload(o, ch, a.version) : undefined;
    if (delta) {
      res.updateCheck = { status: 'ok', offer: deltaOfferFromChannel(ch, base, a.version, delta) };
      await rec({ kind: 'updatecheck', answer: 'ok', offered: ch.version, delta: a.version, installSource });
      return res;
    }
    const offer = offerFromChannel(ch, base);
    res.updateCheck = { status: 'ok', offer: { ...offer, sha1Base64: await payloadSha1(o, ch) } };
    await rec({ kind: 'updatecheck', answer: 'ok', offered: ch.version, installSource });
    return res;
  }
  if (s.error && ch === undefined && !s.error.startsWith('no channel')) o.log.warn(`updatecheck for track '${a.track}': ${s.error}`);
  await rec({ kind: 'updatecheck', answer: 'noupdate', reason: d.offer ? '' : d.why, installSource });
  res.updateCheck = { status: 'noupdate' };
  return res;
}

/** The payload of the delta from `from` to the channel's release, when one is published (its manifest is read, not verified: the client verifies it). */
async function deltaPayload(o: ServeOptions, ch: ChannelMeta, from: string): Promise<DeltaPayload | undefined> {
  if (!isVersion(from)) return undefined;
  const path = join(o.repo, 'payloads', ch.version, deltaDir(from), 'manifest.json');
  try {
    const m = peekEnvelope(await readFile(path, 'utf8'), path) as { payload?: Partial<DeltaPayload>; delta?: { from?: unknown } };
    const p = m.payload;
    if (m.delta?.from !== from || typeof p?.file !== 'string' || typeof p.size !== 'number' || typeof p.sha256 !== 'string') return undefined;
    return { file: p.file, size: p.size, sha256: p.sha256, sha1: typeof p.sha1 === 'string' ? p.sha1 : '' };
  } catch {
    return undefined;
  }
}

/** package@hash as update_engine and go-omaha fill it: base64 SHA-1 of the payload, from the release's manifest ('' when it cannot be read). */
async function payloadSha1(o: ServeOptions, ch: ChannelMeta): Promise<string> {
  try {
    const path = join(o.repo, ch.manifest);
    const m = peekEnvelope(await readFile(path, 'utf8'), path) as { payload?: { sha1?: unknown } };
    return typeof m.payload?.sha1 === 'string' ? m.payload.sha1 : '';
  } catch {
    return '';
  }
}

/** Bytes read from a repository file at a time when serving it. */
export const SERVE_READ_BYTES = 1024 * 1024;

/** Serves a repository file with single-range support (bytes=a-b, a-, -n). */
async function serveFile(o: ServeOptions, req: IncomingMessage, res: ServerResponse, urlPath: string): Promise<void> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath).replace(/^\/+/, '');
  } catch {
    res.writeHead(400).end();
    return;
  }
  const path = normalize(join(o.repo, rel));
  if (!(path + sep).startsWith(normalize(o.repo) + sep) || rel.split('/').some((p) => p.startsWith('.'))) {
    res.writeHead(404).end();
    return;
  }
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  const type = path.endsWith('.json') ? 'application/json' : 'application/octet-stream';
  const range = req.headers.range;
  let start = 0;
  let end = size - 1;
  let status = 200;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (!m || (m[1] === '' && m[2] === '')) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    if (m[1] === '') start = Math.max(0, size - Number(m[2]));
    else {
      start = Number(m[1]);
      if (m[2] !== '') end = Math.min(Number(m[2]), size - 1);
    }
    if (start >= size || start > end) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    status = 206;
  }
  const headers: Record<string, string | number> = { 'content-type': type, 'accept-ranges': 'bytes', 'content-length': end - start + 1 };
  if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${size}`;
  res.writeHead(status, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  // 1 MiB reads: a payload goes out in a sixteenth of the reads and socket writes of the 64 KiB default.
  createReadStream(path, { start, end, highWaterMark: SERVE_READ_BYTES }).on('error', () => res.destroy()).pipe(res);
}

/** The request handler of `basalt serve` (tests wrap it to inject faults). */
export function omahaHandler(o: ServeOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const started = Date.now();
  const limits = o.eventLimits ?? DEFAULT_EVENT_LIMITS;
  const events = new EventLog(o.eventsFile, limits);
  return (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (o.fleet && (await o.fleet.route(req, res, url))) return;
      if (url.pathname === '/v1/update' || url.pathname === '/v1/update/') {
        if (req.method !== 'POST') {
          res.writeHead(405, { allow: 'POST' }).end();
          return;
        }
        let body: string;
        try {
          body = await readBody(req, o.maxBodyBytes);
        } catch (e) {
          res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' }).end(`${(e as Error).message}\n`);
          req.destroy();
          return;
        }
        let parsed;
        try {
          parsed = parseRequest(body);
        } catch (e) {
          o.log.warn(`bad Omaha request from ${req.socket.remoteAddress}: ${(e as Error).message}`);
          res.writeHead(400, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
          return;
        }
        const apps: AppResponse[] = [];
        const budget: RecordBudget = { left: limits.perRequest };
        for (const a of parsed.apps) apps.push(await answerApp(o, events, a, req, parsed.installSource, budget));
        const xml = buildResponse(apps, Math.floor((Date.now() - started) / 1000));
        // As go-omaha: 200 when any app is served; an app this server does not serve (and no other) is a bad request, with the answer as its body.
        res.writeHead(omahaHttpStatus(apps), { 'content-type': 'text/xml; charset=utf-8', 'content-length': Buffer.byteLength(xml) }).end(xml);
        return;
      }
      if (req.method === 'GET' || req.method === 'HEAD') {
        await serveFile(o, req, res, url.pathname);
        return;
      }
      res.writeHead(405).end();
    })().catch((e: unknown) => {
      o.log.error(`serve: ${isBasaltError(e) ? e.message : e instanceof Error ? (e.stack ?? String(e)) : String(e)}`);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };
}

/** Starts `basalt serve` on host:port (port 0 = random). Resolves once listening. */
export async function startServer(o: ServeOptions, host: string, port: number, wrap?: (h: ReturnType<typeof omahaHandler>) => ReturnType<typeof omahaHandler>): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  await mkdir(dirname(o.eventsFile), { recursive: true });
  const h = omahaHandler(o);
  const timeout = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  // Node checks the request deadlines on this interval (30 s by default): check often enough to keep them.
  const server = createServer({ connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(timeout / 4))), headersTimeout: timeout, requestTimeout: timeout }, wrap ? wrap(h) : h);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new BasaltError(UE_ERRORS.E_LISTEN, `cannot listen on ${host}:${port}: ${e.message}`)));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const p = typeof addr === 'object' && addr ? addr.port : port;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${p}/`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export const defaultAppIds = [APP_ID];

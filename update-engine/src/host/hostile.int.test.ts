/**
 * The engine against a hostile server and mirrors on loopback (TUF's liveness
 * attacks, and Omaha as go-omaha and Nebraska write it), each judged by its
 * bound: endless data by the bytes sent and the RSS, slow retrieval by the
 * time, a check storm by the number of checks over a stretch of fake time, a
 * malicious mirror by the good mirror being used. The booted slot stays first.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ID } from '../../../common/src/contracts.js';
import { findPartition, readGpt, slotAttrs } from '../../../common/src/gpt/index.js';
import { silentLogger } from '../../../common/src/log.js';
import { checkOnce, makeDisk, makeKeys, makeUsr, startTestEngine, tempDir } from '../../test/helpers.js';
import { buildResponse, type UpdateOffer } from '../format/omaha.js';
import type { PayloadManifest } from '../format/metadata.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { release } from '../publish/repo.js';
import { startServer } from '../serve/server.js';
import type { Engine } from './engine.js';
import type { EnvFlags } from './hostenv.js';
import { POLL_MAX_S, type Clock } from './scheduler.js';

/** Answers a request instead of the real server when it returns true. */
type Fault = (req: IncomingMessage, res: ServerResponse) => boolean;
let t: Awaited<ReturnType<typeof tempDir>>;
let srv: Awaited<ReturnType<typeof startServer>> | undefined;
let fault: Fault | undefined;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let repo: string;
let usr1: string;
let m2: PayloadManifest;
let payload: Buffer;
/** The signed manifest of 2.0.0 as the repository has it (bad mirrors serve it too: only their payload is bad). */
let manifestBytes: Buffer;
let posts = 0;

beforeAll(async () => {
  t = await tempDir();
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  repo = join(t.dir, 'repo');
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 256 });
  m2 = (await release({ usr: await makeUsr(t.dir, '2.0.0', { randomKiB: 256 }), version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now: new Date(), expiresMs: 86_400_000, chunkSize: 64 * 1024 })).manifest;
  payload = await readFile(join(repo, 'payloads/2.0.0', m2.payload.file));
  manifestBytes = await readFile(join(repo, 'payloads/2.0.0/manifest.json'));
  srv = await startServer({ repo, eventsFile: join(t.dir, 'events.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
    if (req.method === 'POST') posts++;
    if (fault?.(req, res)) return;
    h(req, res);
  });
});
afterAll(async () => {
  await srv?.close();
  await t.cleanup();
});

function engine(disk: string, extra: EnvFlags = {}, clock?: Clock) {
  const flags = { disk, keyring: keys.pub, 'tuf-root': keys.tuf.root, 'tuf-url': srv!.url, server: `${srv!.url}v1/update/`, 'machine-id': 'hostile-machine', 'stall-timeout': '1s', 'document-timeout': '2s', root: join(t.dir, 'no-root'), ...extra };
  return startTestEngine(flags, clock);
}

async function apply(disk: string, extra: EnvFlags = {}) {
  const x = await engine(disk, extra);
  await checkOnce(x);
  return x;
}

/** The good offer of 2.0.0 from `codebases` (each a folder of the server), as basalt serve would make it. */
function offer(codebases: string[], o: Partial<UpdateOffer> = {}): UpdateOffer {
  const sha = m2.payload.sha256;
  return { version: '2.0.0', codebases, packageName: m2.payload.file, size: m2.payload.size, sha1Base64: m2.payload.sha1, sha256Hex: sha, sha256Base64: Buffer.from(sha, 'hex').toString('base64'), manifestName: 'manifest.json', ...o };
}

/** Answers the update check with `body` (after reading the request). */
function answerCheck(req: IncomingMessage, res: ServerResponse, body: string): true {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'text/xml' }).end(body));
  return true;
}

const good = () => `${srv!.url}payloads/2.0.0/`;

/** Sends `byte` repeated forever (with back-pressure) until the client goes, or `limit` bytes; counts what went. */
function endless(res: ServerResponse, sent: { bytes: number }, limit = 1024 * 1024 * 1024): void {
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const pump = () => {
    while (!res.destroyed && sent.bytes < limit) {
      sent.bytes += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

/** Sends `data` from offset `from` a byte a second; never idle for a stall timeout, far below any sane rate. */
function dribble(res: ServerResponse, data: Buffer, from = 0): void {
  let i = from;
  const send = () => {
    if (res.destroyed || i >= data.length) {
      clearInterval(tick);
      return;
    }
    res.write(data.subarray(i, i + 1));
    i++;
  };
  const tick = setInterval(send, 1000);
  send();
  res.on('close', () => clearInterval(tick));
}

/** Runs `f` while sampling the RSS; returns its growth over the start (peak - before) in MiB. */
async function rssGrowth<T>(f: () => Promise<T>): Promise<{ value: T; mib: number }> {
  globalThis.gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const s = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  try {
    const value = await f();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { value, mib: (peak - before) / 2 ** 20 };
  } finally {
    clearInterval(s);
  }
}

async function bootedFirst(disk: string) {
  const gpt = await readGpt(disk);
  return { a: slotAttrs(findPartition(gpt, 'USR-A')), b: slotAttrs(findPartition(gpt, 'USR-B')) };
}

describe('endless data: every document is cut at its cap before it is buffered', () => {
  it('an endless Omaha answer: refused after 256 KiB, RSS bounded', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const sent = { bytes: 0 };
    fault = (req, res) => {
      if (req.method !== 'POST') return false;
      res.writeHead(200, { 'content-type': 'text/xml' });
      endless(res, sent);
      return true;
    };
    try {
      const t0 = Date.now();
      const { value: x, mib } = await rssGrowth(() => apply(disk));
      expect(x.e.lastFailure).toMatchObject({ code: 'E_HTTP_TOO_LARGE', message: `${srv!.url}v1/update/: the reply is larger than 262144 bytes` });
      expect(Date.now() - t0).toBeLessThan(5000);
      // What left the server before the client hung up: the cap plus socket buffers, not the gigabyte on offer.
      expect(sent.bytes).toBeLessThan(16 * 2 ** 20);
      expect(mib, `RSS grew by ${mib.toFixed(1)} MiB`).toBeLessThan(64);
      console.log(`[hostile] endless Omaha answer: ${(sent.bytes / 2 ** 20).toFixed(1)} MiB sent before the cut, RSS +${mib.toFixed(1)} MiB`);
    } finally {
      fault = undefined;
    }
  });

  it('an endless manifest: refused after its signed length, nothing written, RSS bounded', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const sent = { bytes: 0 };
    fault = (req, res) => {
      if (req.method !== 'GET' || !req.url?.endsWith('/manifest.json')) return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      endless(res, sent);
      return true;
    };
    try {
      const { value: x, mib } = await rssGrowth(() => apply(disk));
      // Cut at the longest signed manifest target of the release (a few KiB here), never past 32 MiB.
      expect(x.e.lastFailure).toMatchObject({ code: 'E_HTTP_TOO_LARGE', message: `${good()}manifest.json: the reply is larger than ${manifestBytes.length} bytes` });
      expect(sent.bytes).toBeLessThan(8 * 2 ** 20);
      expect(mib, `RSS grew by ${mib.toFixed(1)} MiB`).toBeLessThan(160);
      expect((await bootedFirst(disk)).a.priority).toBe(1);
      console.log(`[hostile] endless manifest: ${(sent.bytes / 2 ** 20).toFixed(1)} MiB sent before the cut, RSS +${mib.toFixed(1)} MiB`);
    } finally {
      fault = undefined;
    }
  });

  it('an endless static channel file: refused after its signed length (1 MiB at most)', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const sent = { bytes: 0 };
    fault = (req, res) => {
      if (req.url !== '/channels/stable.json') return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      endless(res, sent);
      return true;
    };
    try {
      const { value: x, mib } = await rssGrowth(() => apply(disk, { server: `static+${srv!.url}` }));
      expect(x.e.lastFailure).toMatchObject({ code: 'E_HTTP_TOO_LARGE' });
      const cap = Number(/the reply is larger than (\d+) bytes/.exec(x.e.lastFailure!.message)?.[1]);
      expect(x.e.lastFailure!.message).toContain(`${srv!.url}channels/stable.json`);
      // The TUF target's length (a few hundred bytes), never more than the 1 MiB of any channel file.
      expect(cap).toBeGreaterThan(0);
      expect(cap).toBeLessThanOrEqual(2 ** 20);
      expect(sent.bytes).toBeLessThan(16 * 2 ** 20);
      expect(mib, `RSS grew by ${mib.toFixed(1)} MiB`).toBeLessThan(64);
    } finally {
      fault = undefined;
    }
  });

  it('a payload longer than the signed manifest says: cut at the declared size; the next mirror installs', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const sent = { bytes: 0 };
    fault = (req, res) => {
      if (req.method === 'POST') return answerCheck(req, res, buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer: offer([`${srv!.url}long/`, good()]) } }], 0));
      if (req.url === '/long/manifest.json') return (res.writeHead(200).end(manifestBytes), true);
      if (req.url !== `/long/${m2.payload.file}`) return false;
      // No length announced: the real payload, then garbage without end.
      res.writeHead(200);
      sent.bytes += payload.length;
      res.write(payload);
      endless(res, sent);
      return true;
    };
    try {
      const { e } = await apply(disk);
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(sent.bytes).toBeLessThan(payload.length + 16 * 2 ** 20);
    } finally {
      fault = undefined;
    }
  });
});

describe('slow retrieval: a whole deadline for documents, a minimum rate for payloads', () => {
  it('a manifest sent a byte a second by the first mirror: given up at the document deadline, the second mirror installs', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    fault = (req, res) => {
      if (req.method === 'POST') return answerCheck(req, res, buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer: offer([`${srv!.url}slow/`, good()]) } }], 0));
      if (req.url !== '/slow/manifest.json') return false;
      res.writeHead(200, { 'content-length': manifestBytes.length });
      dribble(res, manifestBytes);
      return true;
    };
    try {
      const t0 = Date.now();
      const { e, lines } = await apply(disk, { 'document-timeout': '1500ms', 'stall-timeout': '10s' });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(lines.join('\n')).toMatch(/slow\/manifest\.json: no complete answer within 1\.5 s \(whole-request deadline\); trying .*payloads\/2\.0\.0\/manifest\.json/);
    } finally {
      fault = undefined;
    }
  });

  it('a payload sent a byte a second by the first mirror: dropped after one window under the minimum rate, the second installs', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    fault = (req, res) => {
      if (req.method === 'POST') return answerCheck(req, res, buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer: offer([`${srv!.url}slow/`, good()]) } }], 0));
      if (req.url === '/slow/manifest.json') return (res.writeHead(200).end(manifestBytes), true);
      if (req.url !== `/slow/${m2.payload.file}`) return false;
      res.writeHead(200, { 'content-length': payload.length });
      dribble(res, payload);
      return true;
    };
    try {
      const t0 = Date.now();
      // The idle timeout alone (5 s) would never fire: a byte comes every second.
      const { e, lines } = await apply(disk, { 'stall-timeout': '2s', 'min-rate': '1K' });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(lines.join('\n')).toMatch(/slow\/usr\.img\.payload: slower than 1024 bytes\/s \(\d bytes in 2 s\); retrying from .*payloads\/2\.0\.0\/usr\.img\.payload/);
    } finally {
      fault = undefined;
    }
  });
});

describe('a bad mirror first never blocks the good one', () => {
  for (const [what, serve] of [
    ['answers 404 for the payload', (res: ServerResponse) => void res.writeHead(404).end('gone\n')],
    ['answers 503 for the payload', (res: ServerResponse) => void res.writeHead(503).end('busy\n')],
    ['stalls after the first byte of the payload', (res: ServerResponse) => void res.writeHead(200, { 'content-length': payload.length }).write(payload.subarray(0, 1))],
    ['sends a corrupt payload', (res: ServerResponse) => void res.writeHead(200, { 'content-length': payload.length }).end(Buffer.concat([payload.subarray(0, 10), Buffer.from([payload[10]! ^ 0xff]), payload.subarray(11)]))],
  ] as const) {
    it(`a first mirror that ${what}: the second installs, the first is asked once`, async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      let badAsked = 0;
      fault = (req, res) => {
        if (req.method === 'POST') return answerCheck(req, res, buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer: offer([`${srv!.url}bad/`, good()]) } }], 0));
        if (req.url === '/bad/manifest.json') return (res.writeHead(200).end(manifestBytes), true);
        if (req.url !== `/bad/${m2.payload.file}`) return false;
        badAsked++;
        serve(res);
        return true;
      };
      try {
        const { e, lines } = await apply(disk);
        expect(e.lastFailure, lines.join('\n')).toBeUndefined();
        expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
        expect(badAsked).toBe(1);
        expect(lines.join('\n')).toMatch(/bad\/usr\.img\.payload.*; (trying the next mirror|retrying) from .*payloads\/2\.0\.0\/usr\.img\.payload/);
      } finally {
        fault = undefined;
      }
    });
  }

  it('every mirror bad: fails with the refusal, the booted slot first and untouched', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    fault = (req, res) => {
      if (req.method === 'POST') return answerCheck(req, res, buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer: offer([`${srv!.url}bad1/`, `${srv!.url}bad2/`]) } }], 0));
      if (req.url === '/bad1/manifest.json' || req.url === '/bad2/manifest.json') return (res.writeHead(200).end(manifestBytes), true);
      if (req.url === `/bad1/${m2.payload.file}`) return (res.writeHead(404).end(), true);
      if (req.url === `/bad2/${m2.payload.file}`) return (res.writeHead(200).end(Buffer.alloc(payload.length, 1)), true);
      return false;
    };
    try {
      const { e } = await apply(disk);
      expect(e.lastFailure).toMatchObject({ code: 'E_PAYLOAD_HASH', message: expect.stringMatching(/bad2\/usr\.img\.payload: chunk 0 .* does not match the signed manifest/) as unknown });
      const s = await bootedFirst(disk);
      expect(s.a).toMatchObject({ priority: 1, successful: true });
      expect(s.b.priority).toBe(0);
    } finally {
      fault = undefined;
    }
  });
});

describe('Omaha as go-omaha and Nebraska write it', () => {
  it('base64 hash_sha256, a codebase without its trailing /, no Basalt attribute: installs', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const b64 = Buffer.from(m2.payload.sha256, 'hex').toString('base64');
    const sha1 = createHash('sha1').update(payload).digest('base64');
    const body = `<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="nebraska"><daystart elapsed_seconds="0"></daystart><app appid="${APP_ID}" status="ok"><updatecheck status="ok"><urls><url codebase="${srv!.url}payloads/2.0.0"></url></urls><manifest version="2.0.0"><packages><package name="${m2.payload.file}" hash="${sha1}" size="${payload.length}" required="true" hash_sha256="${b64}"></package></packages><actions><action event="postinstall" sha256="${b64}" DisablePayloadBackoff="true"></action></actions></manifest></updatecheck></app></response>`;
    fault = (req, res) => (req.method === 'POST' ? answerCheck(req, res, body) : false);
    try {
      const { e } = await apply(disk);
      expect(e.lastFailure).toBeUndefined();
      expect(e.state).toMatchObject({ status: 'UPDATE_STATUS_UPDATED_NEED_REBOOT', newVersion: '2.0.0' });
    } finally {
      fault = undefined;
    }
  });
});

describe('an Omaha server that does not serve this app', () => {
  it('basalt serve with another app id answers 400; the check fails naming the Omaha status', async () => {
    const other = await startServer({ repo, eventsFile: join(t.dir, 'other-events.jsonl'), appIds: ['{00000000-0000-0000-0000-000000000000}'], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
    try {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const { e } = await apply(disk, { server: `${other.url}v1/update/` });
      expect(e.lastFailure).toMatchObject({
        code: 'E_CHECK',
        message: `update check failed: ${other.url}v1/update/: HTTP 400 (app ${APP_ID}: error-unknownApplication)`,
        hint: expect.stringMatching(/does not serve this machine's app id/) as unknown,
      });
    } finally {
      await other.close();
    }
  });
});

/** A clock whose time moves only when the test says; timers fire in order, each after the engine settled. */
function fakeClock() {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const timers: { due: number; fn: () => void; live: boolean }[] = [];
  const armed: number[] = [];
  const clock: Clock = {
    now: () => now,
    setTimeout(fn, ms) {
      armed.push(ms);
      const tm = { due: now + ms, fn, live: true };
      timers.push(tm);
      return { cancel: () => void (tm.live = false) };
    },
  };
  /** Moves time forward by `ms`, firing the timers due on the way and waiting for what each started. */
  const advance = async (ms: number, e: Engine) => {
    const end = now + ms;
    for (;;) {
      const next = timers.filter((x) => x.live && x.due <= end).sort((a, b) => a.due - b.due)[0];
      if (!next) break;
      next.live = false;
      now = next.due;
      next.fn();
      await e.idle();
    }
    now = end;
  };
  return { clock, advance, armed };
}

describe('check storm: intervals a server sends are clamped', () => {
  for (const [poll, span, most] of [
    // The finding: 1,649 checks in 9 s. Now: the first check, then one a day.
    ['99999999', 9_000, 1],
    ['99999999', 3 * 86_400_000, 3],
    // The other end: at most one check per 5 min, the shortest interval a server may set.
    ['1', 3_600_000, 13],
    ['0', 3_600_000, 2],
    ['-5', 3_600_000, 2],
    ['x', 3_600_000, 2],
  ] as const) {
    it(`PollInterval="${poll}": at most ${most} checks in ${span / 1000} s, no timer past 2^31-1 ms`, async () => {
      const disk = await makeDisk(t.dir, usr1, '2.0.0');
      const answer = buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'noupdate' } }], 0).replace('<updatecheck status="noupdate"', `<updatecheck status="noupdate" PollInterval="${poll}"`);
      fault = (req, res) => (req.method === 'POST' ? answerCheck(req, res, answer) : false);
      const fc = fakeClock();
      try {
        const { e } = await engine(disk, { 'first-check': '1s', interval: '45m' }, fc.clock);
        const before = posts;
        await fc.advance(span, e);
        e.stop();
        const checks = posts - before;
        expect(checks).toBeGreaterThanOrEqual(1);
        expect(checks).toBeLessThanOrEqual(most);
        // Every wait the engine asked for is in range: the first check, then 5 min .. 24 h.
        expect(fc.armed[0]).toBe(1000);
        for (const ms of fc.armed.slice(1)) {
          expect(ms).toBeGreaterThanOrEqual(0.75 * 5 * 60_000);
          expect(ms).toBeLessThanOrEqual(POLL_MAX_S * 1000);
        }
      } finally {
        fault = undefined;
      }
    });
  }
});

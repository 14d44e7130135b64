/**
 * `basalt update apply --disk` as its own process against a server that fails
 * for a while (HTTP 503, a stalled transfer): it waits out its back-off and
 * installs, or exits non-zero with one line; never 0 with nothing installed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ID } from '../../../common/src/contracts.js';
import { readGpt, findPartition, slotAttrs } from '../../../common/src/gpt/index.js';
import { silentLogger } from '../../../common/src/log.js';
import { applyArgv, ensureDist, makeDisk, makeKeys, makeUsr, runMeasured, tempDir, type MeasuredRun } from '../../test/helpers.js';
import { release } from '../publish/repo.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { startServer } from '../serve/server.js';
import { buildResponse } from '../format/omaha.js';
import type { PayloadManifest } from '../format/metadata.js';

let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let srv: Awaited<ReturnType<typeof startServer>> | undefined;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let usr1: string;
/** What the server does to the next payload requests: '503' or 'stall' each, then serves. */
const faults: ('503' | 'stall' | 'dribble')[] = [];
let payloadRequests = 0;
/** When set, the Omaha answer names a mirror that serves corrupt bytes before the good one. */
let badMirrorFirst = false;
let badMirrorRequests = 0;
let m2: PayloadManifest;
let usr2: string;
/** What the server does to every update check while set: answer 503, or send its answer a byte a second. */
let checkFault: '503' | 'dribble' | 'endless' | undefined;
/** When set, every manifest is sent as an endless stream. */
let endlessManifest = false;
/** Bytes the endless answers wrote before the client hung up. */
let endlessSent = 0;
/** Writes spaces without end (with back-pressure) until the client goes; 2 GiB at most. */
function endless(res: import('node:http').ServerResponse): void {
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const pump = (): void => {
    while (!res.destroyed && endlessSent < 2 ** 31) {
      endlessSent += chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

beforeAll(async () => {
  await ensureDist();
  t = await tempDir();
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  const repo = join(t.dir, 'repo');
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 256 });
  usr2 = await makeUsr(t.dir, '2.0.0', { randomKiB: 256 });
  m2 = (await release({ usr: usr2, version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now: new Date(), expiresMs: 86_400_000, xzLevel: 0 })).manifest;
  const payload = await readFile(join(repo, 'payloads/2.0.0', m2.payload.file));
  srv = await startServer({ repo, eventsFile: join(t.dir, 'events.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
    if (checkFault === '503' && req.method === 'POST') return void res.writeHead(503).end('busy\n');
    if (checkFault === 'endless' && req.method === 'POST') {
      res.writeHead(200, { 'content-type': 'text/xml' });
      return endless(res);
    }
    if (endlessManifest && req.method === 'GET' && req.url?.endsWith('/manifest.json')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return endless(res);
    }
    if (checkFault === 'dribble' && req.method === 'POST') {
      res.writeHead(200, { 'content-type': 'text/xml' });
      const tick = setInterval(() => res.write(' '), 1000);
      res.on('close', () => clearInterval(tick));
      return;
    }
    if (badMirrorFirst && req.method === 'POST') {
      const good = `${srv!.url}payloads/2.0.0/`;
      const offer = { version: '2.0.0', codebases: [`${srv!.url}bad/`, good], packageName: m2.payload.file, size: m2.payload.size, sha1Base64: '', sha256Hex: m2.payload.sha256, sha256Base64: Buffer.from(m2.payload.sha256, 'hex').toString('base64'), manifestName: 'manifest.json' };
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/xml' }).end(buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer } }], 0)));
      return;
    }
    if (req.method === 'GET' && req.url?.startsWith('/bad/')) {
      badMirrorRequests++;
      if (req.url.endsWith('/manifest.json')) return void res.writeHead(404).end();
      // The payload with one byte flipped in its first chunk.
      const bad = Buffer.from(payload);
      bad[10] = bad[10]! ^ 0xff;
      return void res.writeHead(200, { 'content-length': bad.length }).end(bad);
    }
    if (req.method === 'GET' && req.url?.endsWith(`/${m2.payload.file}`)) {
      payloadRequests++;
      const f = faults.shift();
      if (f === '503') return void res.writeHead(503).end('busy\n');
      // The faulty answers honour Range as the real server does: only their pace is wrong.
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? '0');
      const head = (): void => {
        if (from > 0) res.writeHead(206, { 'content-length': String(payload.length - from), 'content-range': `bytes ${from}-${payload.length - 1}/${payload.length}` });
        else res.writeHead(200, { 'content-length': String(payload.length) });
      };
      if (f === 'dribble') {
        // A byte every 100 ms: never idle long enough for the stall timeout, far below the minimum rate.
        head();
        let i = from;
        const tick = setInterval(() => {
          if (res.destroyed || i >= payload.length) {
            clearInterval(tick);
            return;
          }
          res.write(payload.subarray(i, i + 1));
          i++;
        }, 100);
        res.on('close', () => clearInterval(tick));
        return;
      }
      if (f === 'stall') {
        head();
        res.write(payload.subarray(from, from + 1));
        return; // never more
      }
    }
    h(req, res);
  });
});
afterAll(async () => {
  await srv?.close();
  await t?.cleanup();
});

/** Runs the one-shot apply as its own process, with its peak RSS. */
function apply(disk: string, extra: string[] = []): Promise<MeasuredRun> {
  return runMeasured(applyArgv({ disk, keyring: keys.pub, tufRoot: keys.tuf.root, serverUrl: srv!.url, dir: t!.dir, extra: ['--retry-base', '300ms', '--stall-timeout', '1s', ...extra] }));
}

describe('a one-shot apply through a failing server', () => {
  it('drops a mirror that sends bytes the signed manifest refuses and installs from the next one', async () => {
    const disk = await makeDisk(t!.dir, usr1, '1.0.0');
    badMirrorFirst = true;
    badMirrorRequests = 0;
    try {
      const r = await apply(disk);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/^updated USR-B to 2\.0\.0; reboot to use it$/m);
      expect(r.stderr).toMatch(/bad\/usr\.img\.payload: chunk 0 .* does not match the signed manifest.*; trying the next mirror/);
      expect(badMirrorRequests).toBeGreaterThanOrEqual(1);
    } finally {
      badMirrorFirst = false;
    }
  });

  it('waits out 503s, a stall and a slow retrieval with its back-off and installs', async () => {
    const disk = await makeDisk(t!.dir, usr1, '1.0.0');
    faults.push('503', 'stall', 'dribble', '503');
    payloadRequests = 0;
    const r = await apply(disk);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^updated USR-B to 2\.0\.0; reboot to use it$/m);
    expect(payloadRequests).toBeGreaterThanOrEqual(5);
    expect(r.stderr).toMatch(/slower than 1024 bytes\/s/);
    const gpt = await readGpt(disk);
    expect(slotAttrs(findPartition(gpt, 'USR-B')).tries).toBe(1);
  });

  it('exits 1 with one error line naming the server when the check answers 503, and installs nothing', async () => {
    const disk = await makeDisk(t!.dir, usr1, '1.0.0');
    const before = (await readGpt(disk)).partitions;
    checkFault = '503';
    try {
      const r = await apply(disk);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^basalt: error: update check failed: ${srv!.url}v1/update/: HTTP 503 \\(hint: the server .* is failing or overloaded: try again later\\)$`));
      expect((await readGpt(disk)).partitions).toEqual(before);
    } finally {
      checkFault = undefined;
    }
  });

  it('exits 1 with one error line when the check is sent a byte a second (the document deadline, not only the idle timeout)', async () => {
    const disk = await makeDisk(t!.dir, usr1, '1.0.0');
    checkFault = 'dribble';
    const t0 = Date.now();
    try {
      const r = await apply(disk, ['--document-timeout', '2s', '--stall-timeout', '5s']);
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect(r.exitCode).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^basalt: error: update check failed: .*v1\/update\/: no complete answer within 2 s \(whole-request deadline\) \(hint: check the network and that .* is up\)$/);
    } finally {
      checkFault = undefined;
    }
  });

  it('exits 1 with one line after a payload that keeps failing (503 past its retries); the slot stays unbootable, A first', async () => {
    const disk = await makeDisk(t!.dir, usr1, '1.0.0');
    faults.push('503', '503', '503', '503');
    try {
      const r = await apply(disk, ['--retries', '2']);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      const errors = r.stderr.trim().split('\n').filter((l) => l.includes('error'));
      expect(errors, r.stderr).toHaveLength(1);
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^basalt: error: giving up after 2 retries: .*usr\.img\.payload: HTTP 503 \(hint: .*\)$/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const gpt = await readGpt(disk);
      expect(slotAttrs(findPartition(gpt, 'USR-B')).priority).toBe(0);
      expect(slotAttrs(findPartition(gpt, 'USR-A')).priority).toBe(1);
    } finally {
      faults.length = 0;
    }
  });

  it('exits 0 with one line when it is already up to date', async () => {
    const disk = await makeDisk(t!.dir, usr2, '2.0.0');
    const r = await apply(disk);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('up to date: no update for 2.0.0 on stable\n');
    expect(r.stderr).toBe('');
  });

  it('an endless Omaha answer or manifest: exits 1 with one line at the cap; the process stays small (peak RSS)', async () => {
    const disk = await makeDisk(t!.dir, usr1, '1.0.0');
    const runs: [string, () => void, RegExp, number][] = [
      ['answer', () => (checkFault = 'endless'), /^basalt: error: .*v1\/update\/: the reply is larger than 262144 bytes \(hint: .*\)$/, 160],
      ['manifest', () => (endlessManifest = true), /^basalt: error: .*payloads\/2\.0\.0\/manifest\.json: the reply is larger than \d{3,6} bytes \(hint: .*\)$/, 256],
    ];
    for (const [what, arm, line, maxMiB] of runs) {
      endlessSent = 0;
      arm();
      try {
        const r = await apply(disk);
        expect(r.exitCode, what).toBe(1);
        const lines = r.stderr.trim().split('\n');
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(line);
        // Before: a 300 MB answer took the client to 1.3 GB.
        expect(r.peakRssMiB, what).toBeGreaterThan(0);
        expect(r.peakRssMiB, what).toBeLessThan(maxMiB);
        expect(endlessSent).toBeLessThan(64 * 2 ** 20);
        console.log(`[oneshot] endless ${what}: cut after ${(endlessSent / 2 ** 20).toFixed(1)} MiB sent; the apply's peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
      } finally {
        checkFault = undefined;
        endlessManifest = false;
      }
    }
  });
});

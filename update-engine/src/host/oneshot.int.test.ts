/**
 * `basalt update apply --disk` as its own process against a server that fails
 * for a while (HTTP 503, a stalled transfer): it waits out its back-off and
 * installs, or exits non-zero with one line; never 0 with nothing installed.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ID } from '../../../common/src/contracts.js';
import { readGpt, findPartition, slotAttrs } from '../../../common/src/gpt/index.js';
import { silentLogger } from '../../../common/src/log.js';
import { applyArgv, ensureDist, makeDisk, makeKeys, makeUsr, tempDir } from '../../test/helpers.js';
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

beforeAll(async () => {
  await ensureDist();
  t = await tempDir();
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  const repo = join(t.dir, 'repo');
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 256 });
  m2 = (await release({ usr: await makeUsr(t.dir, '2.0.0', { randomKiB: 256 }), version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now: new Date(), expiresMs: 86_400_000, xzLevel: 0 })).manifest;
  const payload = await readFile(join(repo, 'payloads/2.0.0', m2.payload.file));
  srv = await startServer({ repo, eventsFile: join(t.dir, 'events.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
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

function apply(disk: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const argv = applyArgv({ disk, keyring: keys.pub, tufRoot: keys.tuf.root, serverUrl: srv!.url, dir: t!.dir, extra: ['--retry-base', '300ms', '--stall-timeout', '1s'] });
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ exitCode: code ?? -1, stdout, stderr }));
  });
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
});

/**
 * kill -9 of the engine process at 20 points spread through download and
 * finalize (issue 5 acceptance): after every kill the disk still selects A
 * (GPT gptprio and the boot loader's entry choice), and a restarted engine
 * completes the update. The engine runs as a real `basalt update apply`
 * process; BASALT_FAILPOINT makes it SIGKILL itself at the named point.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { open } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { run } from '../../../common/src/exec.js';
import { silentLogger } from '../../../common/src/log.js';
import { readGpt, findPartition, partitionRange } from '../../../common/src/gpt/index.js';
import { tempDir, makeUsr, makeKeys, makeDisk, ensureDist, applyArgv } from '../../test/helpers.js';
import { release } from '../publish/repo.js';
import { type PayloadManifest } from '../format/metadata.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { startServer } from '../serve/server.js';
import { APP_ID } from '../../../common/src/contracts.js';
import { MtoolsEsp } from './esp.js';
import { entriesOf } from './engine.js';
import { checkpointChunks } from './apply.js';
import { gptChoice, loaderChoice } from './slots.js';
import { hashFileRange } from '../format/digest.js';

let t: Awaited<ReturnType<typeof tempDir>>;
let srv: Awaited<ReturnType<typeof startServer>> | undefined;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let usr1: string;
let m2: PayloadManifest;

beforeAll(async () => {
  // The engine runs from dist/.
  await ensureDist();
  t = await tempDir();
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  const repo = join(t.dir, 'repo');
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 512 });
  const usr2 = await makeUsr(t.dir, '2.0.0', { randomKiB: 1024 });
  m2 = (await release({ usr: usr2, version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now: new Date(), expiresMs: 86_400_000, chunkSize: 48 * 1024, xzLevel: 0 })).manifest;
  srv = await startServer({ repo, eventsFile: join(t.dir, 'events.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
});
afterAll(async () => {
  await srv?.close();
  await t.cleanup();
});

/**
 * Runs `basalt update apply` as its own process. (node:child_process here, not
 * exec.run: run() reports a SIGKILLed child as a missing tool.)
 */
function engine(disk: string, failpoint?: string, serverUrl = srv!.url): Promise<{ exitCode: number; signal: string | null; stderr: string }> {
  const argv = applyArgv({ disk, keyring: keys.pub, tufRoot: keys.tuf.root, serverUrl, dir: t.dir, extra: ['--retry-base', '5ms'] });
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    if (failpoint) env['BASALT_FAILPOINT'] = failpoint;
    else delete env['BASALT_FAILPOINT'];
    const c = spawn(process.execPath, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('close', (code, signal) => resolve({ exitCode: code ?? -1, signal, stderr }));
  });
}

async function selection(disk: string) {
  const gpt = await readGpt(disk);
  const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
  return { gpt: gptChoice(gpt), loader: loaderChoice(await entriesOf(esp))?.slot };
}

function points(chunks: number, checkpoints: number): string[] {
  // 20 points before the commit point, spread over the whole download and finalize.
  const spread = (n: number, from: number, to: number) => Array.from({ length: n }, (_, i) => Math.max(1, Math.round(from + ((to - from) * i) / (n - 1))));
  return [
    'invalidated',
    'progress-created',
    ...spread(6, 1, chunks).map((k) => `chunk-written:${k}`),
    // Progress is saved at checkpoints (every few chunks), each after the slot's fdatasync.
    ...spread(5, 1, checkpoints).map((k) => `chunk-saved:${k}`),
    'download-done',
    'verified',
    'kernel-extracted',
    'kernel-installed',
    'initrd-installed',
    'entry-staged',
    `chunk-written:${Math.ceil(chunks / 2)}`,
  ];
}

describe('kill -9 during an update (acceptance)', () => {
  it('the disk still selects A after a kill at each of 20 points, and a restarted engine completes', async () => {
    const saves = checkpointChunks(m2.payload.chunks).length;
    expect(saves).toBeGreaterThanOrEqual(5);
    const pts = points(m2.payload.chunks.length, saves);
    expect(pts.length).toBe(20);
    expect(new Set(pts).size).toBe(20);
    const results: string[] = [];
    for (const p of pts) {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const aBefore = await hashFileRange(disk, partitionRange(await readGpt(disk), findPartition(await readGpt(disk), 'USR-A')).offset, 64 << 20);
      const killed = await engine(disk, p);
      expect(killed.signal, `${p} was not killed: ${killed.stderr}`).toBe('SIGKILL');
      expect(await selection(disk), `after kill at ${p}`).toEqual({ gpt: 'A', loader: 'A' });
      const again = await engine(disk);
      expect(again.exitCode, `${p} restart: ${again.stderr}`).toBe(0);
      expect(await selection(disk), `after restart from ${p}`).toEqual({ gpt: 'B', loader: 'B' });
      const gpt = await readGpt(disk);
      expect(await hashFileRange(disk, partitionRange(gpt, findPartition(gpt, 'USR-B')).offset, m2.image.size)).toBe(m2.image.sha256);
      expect(await hashFileRange(disk, partitionRange(gpt, findPartition(gpt, 'USR-A')).offset, 64 << 20)).toBe(aBefore);
      results.push(p);
    }
    console.log(`[crash] ${results.length} kill points, all selected A after the kill and completed after restart (${m2.payload.chunks.length} chunks): ${results.join(', ')}`);
  }, 600_000);

  it('a restart checks the chunks written before the kill against the hash list and downloads a damaged one again', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const killed = await engine(disk, 'chunk-saved:3');
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    // Damage chunk 1 of B (written and checkpointed before the kill).
    const gpt = await readGpt(disk);
    const at = partitionRange(gpt, findPartition(gpt, 'USR-B')).offset + m2.payload.chunks[0]!.uncompressedSize + 100;
    const fh = await open(disk, 'r+');
    await fh.write(Buffer.from([0xde, 0xad]), 0, 2, at);
    await fh.close();
    const again = await engine(disk);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/chunk 1 of slot B is not as written before the restart; downloading from it again/);
    expect(await hashFileRange(disk, partitionRange(gpt, findPartition(gpt, 'USR-B')).offset, m2.image.size)).toBe(m2.image.sha256);
    expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
  }, 120_000);

  it('after the commit point a kill leaves B committed, and a restart finishes the GPT and state', async () => {
    for (const p of ['entry-committed', 'gpt-written', 'finalized']) {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const killed = await engine(disk, p);
      expect(killed.signal, `${p} was not killed: ${killed.stderr}`).toBe('SIGKILL');
      expect((await selection(disk)).loader).toBe('B');
      const again = await engine(disk);
      expect(again.exitCode, again.stderr).toBe(0);
      expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
      expect((await run('cgpt', ['show', '-i', '4', '-T', disk])).stdout.trim()).toBe('1');
    }
  }, 300_000);

  it('a kill at 10 points of a delta apply leaves A booting, and a restarted engine completes the delta', async () => {
    const key = await readPrivateKeyFile(keys.priv);
    const repoD = join(t.dir, 'repo-delta');
    const usrD = await makeUsr(t.dir, '2.1.0', { like: '1.0.0' });
    await release({ usr: usr1, version: '1.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo: repoD, now: new Date(), expiresMs: 86_400_000, chunkSize: 48 * 1024 });
    const d = (await release({ usr: usrD, version: '2.1.0', channel: 'stable', key, tuf: keys.tuf.publish, repo: repoD, now: new Date(), expiresMs: 86_400_000, chunkSize: 48 * 1024, deltaFrom: ['1.0.0'] })).deltas[0]!;
    const asked: string[] = [];
    const srvD = await startServer({ repo: repoD, eventsFile: join(t.dir, 'events-delta.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
      if (req.method === 'GET') asked.push(req.url ?? '');
      h(req, res);
    });
    try {
      const n = d.payload.chunks.length;
      const saves = checkpointChunks(d.payload.chunks).length;
      const pts = ['invalidated', 'progress-created', 'chunk-written:1', `chunk-written:${Math.ceil(n / 3)}`, `chunk-written:${Math.ceil((2 * n) / 3)}`, `chunk-written:${n}`, 'chunk-saved:1', `chunk-saved:${saves}`, 'download-done', 'verified'];
      expect(new Set(pts).size).toBe(10);
      for (const p of pts) {
        const disk = await makeDisk(t.dir, usr1, '1.0.0');
        const killed = await engine(disk, p, srvD.url);
        expect(killed.signal, `${p} was not killed: ${killed.stderr}`).toBe('SIGKILL');
        expect(await selection(disk), `after kill at ${p}`).toEqual({ gpt: 'A', loader: 'A' });
        asked.length = 0;
        const again = await engine(disk, undefined, srvD.url);
        expect(again.exitCode, `${p} restart: ${again.stderr}`).toBe(0);
        expect(asked.some((u) => u.endsWith('/payloads/2.1.0/usr.img.payload')), `${p}: the restart took the full payload`).toBe(false);
        expect(await selection(disk), `after restart from ${p}`).toEqual({ gpt: 'B', loader: 'B' });
        const gpt = await readGpt(disk);
        expect(await hashFileRange(disk, partitionRange(gpt, findPartition(gpt, 'USR-B')).offset, d.image.size)).toBe(d.image.sha256);
      }
    } finally {
      await srvD.close();
    }
  }, 300_000);
});

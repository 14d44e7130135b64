/**
 * The whole update path on image files, served from loopback, and its faults
 * (issue 5 acceptance). No VM: the disk is a sparse image, the ESP is edited
 * with mtools, the GPT is read back with cgpt.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { run } from '../../../common/src/exec.js';
import { silentLogger } from '../../../common/src/log.js';
import { readGpt, findPartition, partitionRange } from '../../../common/src/gpt/index.js';
import { checkOnce, tempDir, makeUsr, makeKeys, makeDisk, startTestEngine } from '../../test/helpers.js';
import { refreshChannel, release } from '../publish/repo.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { startServer } from '../serve/server.js';
import { buildResponse } from '../format/omaha.js';
import { APP_ID } from '../../../common/src/contracts.js';
import type { EnvFlags } from './hostenv.js';
import { entriesOf } from './engine.js';
import { gptChoice, loaderChoice } from './slots.js';
import { markGood } from './health.js';
import { hashFileRange, hexToBase64 } from '../format/digest.js';
import type { PayloadManifest, PayloadManifestV2 } from '../format/metadata.js';

type Fault = ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
let t: Awaited<ReturnType<typeof tempDir>>;
let srv: Awaited<ReturnType<typeof startServer>> | undefined;
let fault: Fault;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let repo: string;
let usr1: string;
let usr2: string;
let m2: PayloadManifest;
let m1: PayloadManifest;
let events: string;

beforeAll(async () => {
  t = await tempDir();
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  repo = join(t.dir, 'repo');
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 2048 });
  usr2 = await makeUsr(t.dir, '2.0.0', { randomKiB: 2048 });
  const now = new Date();
  m1 = (await release({ usr: usr1, version: '1.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now, expiresMs: 86_400_000, chunkSize: 256 * 1024, xzLevel: 1 })).manifest;
  m2 = (await release({ usr: usr2, version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now, expiresMs: 86_400_000, chunkSize: 256 * 1024, xzLevel: 1 })).manifest;
  events = join(t.dir, 'events.jsonl');
  srv = await startServer({ repo, eventsFile: events, appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
    if (fault?.(req, res)) return;
    h(req, res);
  });
});
afterAll(async () => {
  await srv?.close();
  await t.cleanup();
});

function engine(disk: string, extra: EnvFlags = {}, booted: 'A' | 'B' = 'A') {
  return startTestEngine({ disk, 'booted-slot': booted, keyring: keys.pub, 'tuf-root': keys.tuf.root, server: `${srv!.url}v1/update/`, 'machine-id': 'e2e-machine', 'stall-timeout': '3s', root: join(t.dir, 'no-root'), ...extra });
}

async function apply(disk: string, extra: EnvFlags = {}) {
  const x = await engine(disk, extra);
  await checkOnce(x);
  return x;
}

async function selection(disk: string) {
  const gpt = await readGpt(disk);
  const { MtoolsEsp } = await import('./esp.js');
  const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
  return { gpt: gptChoice(gpt), loader: loaderChoice(await entriesOf(esp))?.slot };
}

async function slotHash(disk: string, label: string, len: number) {
  const gpt = await readGpt(disk);
  return hashFileRange(disk, partitionRange(gpt, findPartition(gpt, label)).offset, len);
}

const cgpt = async (disk: string, flag: string) => (await run('cgpt', ['show', '-i', '4', flag, disk])).stdout.trim();

const payloadPath = (v: string) => `/payloads/${v}/${(v === '1.0.0' ? m1 : m2).payload.file}`;

describe('update path on an image file (acceptance)', () => {
  it('updates a disk booted from A to v2 in B; A untouched; cgpt reads the postinst attributes', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const aBefore = await slotHash(disk, 'USR-A', 64 * 1024 * 1024);
    const t0 = Date.now();
    const { e } = await apply(disk);
    const ms = Date.now() - t0;
    expect(e.lastFailure).toBeUndefined();
    expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
    expect(e.state.newVersion).toBe('2.0.0');
    // B holds exactly v2's USR bytes.
    expect(await slotHash(disk, 'USR-B', m2.image.size)).toBe(await hashFileRange(usr2, 0, m2.image.size));
    expect(m2.image.sha256).toBe(await hashFileRange(usr2, 0, m2.image.size));
    // A is untouched (the whole partition).
    expect(await slotHash(disk, 'USR-A', 64 * 1024 * 1024)).toBe(aBefore);
    // cgpt: B priority 2 (above A's 1), one try, not yet successful.
    expect(await cgpt(disk, '-P')).toBe('2');
    expect(await cgpt(disk, '-T')).toBe('1');
    expect(await cgpt(disk, '-S')).toBe('0');
    expect((await run('cgpt', ['show', '-i', '3', '-P', disk])).stdout.trim()).toBe('1');
    expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
    // The ESP has B's kernel from inside v2's USR and a counted entry.
    const { MtoolsEsp } = await import('./esp.js');
    const gpt = await readGpt(disk);
    const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
    expect(await esp.list('/loader/entries')).toEqual(['basalt-a.conf', 'basalt-b+1.conf']);
    const entry = (await esp.read('/loader/entries/basalt-b+1.conf'))!;
    expect(entry).toMatch(/^version 2\.0\.0$/m);
    expect(entry).toContain(`basalt.usrhash=${m2.usr.rootHash}`);
    expect(entry).toContain('console=ttyS0,115200'); // carried over from A's entry
    expect(await esp.read('/basalt/b/initrd')).toBe('initrd 2.0.0\n');
    // Events 13/1, 14/1 and 3/1 reached the server.
    const ev = (await readFile(events, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['kind'] === 'event' && l['machineId'] === 'e2e-machine');
    expect(ev.map((x) => [x['eventType'], x['eventResult']])).toEqual(expect.arrayContaining([[13, 1], [14, 1], [3, 1]]));
    // The first check of a new install says previousversion="0.0.0.0", as update_engine does.
    expect(ev.find((x) => x['eventType'] === 3 && x['eventResult'] === 2)?.['previousVersion']).toBe('0.0.0.0');
    console.log(`[e2e] apply of a ${m2.payload.size}-byte payload (${m2.image.size}-byte image) took ${ms} ms`);

    // Boot into B: the health gate marks it good and blesses the entry; the engine sees no rollback.
    const b = await engine(disk, { 'boot-id': 'boot-2' }, 'B');
    expect(b.e.state.status).toBe('UPDATE_STATUS_IDLE');
    await markGood(disk, esp, 'B', { healthy: true, failed: [], states: [], skipped: [] });
    expect(await cgpt(disk, '-S')).toBe('1');
    expect(await cgpt(disk, '-T')).toBe('0');
    expect(await esp.list('/loader/entries')).toEqual(['basalt-a.conf', 'basalt-b.conf']);
    // The next check reports 3/2 with the previous version.
    b.e.check(true);
    await b.e.idle();
    expect(await readFile(events, 'utf8')).toMatch(/"eventType":3,"eventResult":2,"errorCode":null,"previousVersion":"1.0.0"/);
  });

  it('applies a format 1 (xz) payload as well, from a repository released before format 2', async () => {
    const key = await readPrivateKeyFile(keys.priv);
    const old = join(t.dir, 'repo-format-1');
    const r = await release({ usr: usr2, version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo: old, now: new Date(), expiresMs: 86_400_000, chunkSize: 256 * 1024, xzLevel: 0, payloadFormat: 1 });
    expect(r.manifest).toMatchObject({ formatVersion: 1, payload: { file: 'usr.img.xz', compression: 'xz' } });
    const srv1 = await startServer({ repo: old, eventsFile: join(t.dir, 'events-f1.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
    try {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const { e } = await apply(disk, { server: `${srv1.url}v1/update/` });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(await slotHash(disk, 'USR-B', m2.image.size)).toBe(m2.image.sha256);
      expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
    } finally {
      await srv1.close();
    }
  });

  describe('delta updates', () => {
    let srvD: Awaited<ReturnType<typeof startServer>> | undefined;
    let delta: PayloadManifestV2;
    let usrD: string;
    const asked: string[] = [];
    let cutDelta = false;
    beforeAll(async () => {
      const key = await readPrivateKeyFile(keys.priv);
      const repoD = join(t.dir, 'repo-delta');
      // 2.1.0 is 1.0.0's tree with one file changed.
      usrD = await makeUsr(t.dir, '2.1.0', { like: '1.0.0' });
      await release({ usr: usr1, version: '1.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo: repoD, now: new Date(), expiresMs: 86_400_000 });
      delta = (await release({ usr: usrD, version: '2.1.0', channel: 'stable', key, tuf: keys.tuf.publish, repo: repoD, now: new Date(), expiresMs: 86_400_000, deltaFrom: ['1.0.0'] })).deltas[0]!;
      srvD = await startServer({ repo: repoD, eventsFile: join(t.dir, 'events-delta.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
        if (req.method === 'GET') asked.push(`${req.url ?? ''}${req.headers.range ? ` ${req.headers.range}` : ''}`);
        if (cutDelta && req.url === '/payloads/2.1.0/delta-from-1.0.0/usr.img.payload') {
          // Once: half of what was asked for, then the connection drops.
          cutDelta = false;
          const from = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
          void readFile(join(repoD, req.url)).then((b) => {
            res.writeHead(206, { 'content-length': b.length - from, 'content-range': `bytes ${from}-${b.length - 1}/${b.length}` });
            res.write(b.subarray(from, from + Math.floor((b.length - from) / 2)), () => res.destroy());
          });
          return;
        }
        h(req, res);
      });
    });
    afterAll(async () => {
      await srvD?.close();
    });

    it('a machine running 1.0.0 takes the delta: its seed chunks come from slot A, only the rest is downloaded', async () => {
      expect(delta.payload.chunks.some((c) => c.compression === 'seed')).toBe(true);
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const aBefore = await slotHash(disk, 'USR-A', 64 * 1024 * 1024);
      asked.length = 0;
      const { e } = await apply(disk, { server: `${srvD!.url}v1/update/` });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(await slotHash(disk, 'USR-B', delta.image.size)).toBe(await hashFileRange(usrD, 0, delta.image.size));
      expect(await slotHash(disk, 'USR-A', 64 * 1024 * 1024)).toBe(aBefore);
      expect(asked.some((u) => u.startsWith('/payloads/2.1.0/delta-from-1.0.0/usr.img.payload'))).toBe(true);
      expect(asked.some((u) => u.startsWith('/payloads/2.1.0/usr.img.payload'))).toBe(false);
      expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
    });

    it("a delta's download cut mid-payload resumes with Range after the seed chunks before the cut", async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      asked.length = 0;
      cutDelta = true;
      const { e } = await apply(disk, { server: `${srvD!.url}v1/update/` });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      const ranges = asked.filter((u) => u.startsWith('/payloads/2.1.0/delta-from-1.0.0/usr.img.payload')).map((u) => Number(/bytes=(\d+)-/.exec(u)?.[1]));
      expect(ranges.length).toBe(2);
      expect(ranges[1]).toBeGreaterThan(ranges[0]!);
      expect(await slotHash(disk, 'USR-B', delta.image.size)).toBe(delta.image.sha256);
    });

    it('static mode (no Omaha server) takes the delta too, found beside the channel\'s release', async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      asked.length = 0;
      const { e } = await apply(disk, { server: `static+${srvD!.url}` });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(asked.some((u) => u.startsWith('/payloads/2.1.0/delta-from-1.0.0/usr.img.payload'))).toBe(true);
      expect(asked.some((u) => u.startsWith('/payloads/2.1.0/usr.img.payload'))).toBe(false);
      expect(await slotHash(disk, 'USR-B', delta.image.size)).toBe(delta.image.sha256);
    });

    it('a seed chunk that slot A does not hold (a corrupted chunk) falls back to the full payload', async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const seed = delta.payload.chunks.find((c) => c.compression === 'seed')!;
      const gpt = await readGpt(disk);
      const fh = await open(disk, 'r+');
      await fh.write(Buffer.from('corrupt'), 0, 7, partitionRange(gpt, findPartition(gpt, 'USR-A')).offset + seed.seedOffset! + 10);
      await fh.close();
      asked.length = 0;
      const { e, lines } = await apply(disk, { server: `${srvD!.url}v1/update/` });
      expect(e.lastFailure).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(lines.join('\n')).toMatch(/does not hold the delta's seed chunk .*; taking the full payload of 2\.1\.0 instead of the delta/);
      expect(asked.some((u) => u.startsWith('/payloads/2.1.0/usr.img.payload'))).toBe(true);
      expect(await slotHash(disk, 'USR-B', delta.image.size)).toBe(delta.image.sha256);
      expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
    });
  });

  it('basalt update rollback switches back to the other good slot; refuses a slot never marked good', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    await apply(disk);
    const gpt = await readGpt(disk);
    const { MtoolsEsp } = await import('./esp.js');
    const { rollback } = await import('./health.js');
    const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
    // Running A with B installed but never booted: B was never good.
    await expect(rollback(disk, esp, 'A')).rejects.toMatchObject({ code: 'E_ROLLBACK_INVALID' });
    // B boots and is marked good; rolling back from B goes to A (good since the build).
    await markGood(disk, esp, 'B', { healthy: true, failed: [], states: [], skipped: [] });
    expect(await selection(disk)).toEqual({ gpt: 'B', loader: 'B' });
    expect(await rollback(disk, esp, 'B')).toBe('A');
    expect(await selection(disk)).toEqual({ gpt: 'A', loader: 'A' });
    expect(await esp.list('/loader/entries')).toEqual(['basalt-a.conf', 'basalt-b+0.conf']);
    // A failed health gate changes nothing.
    await expect(markGood(disk, esp, 'A', { healthy: false, failed: ['etcd.service'], states: ['failed'], skipped: [] })).rejects.toThrow(/etcd.service not active/);
  });

  it('detects a rollback after a failed boot of B, reports 3/0 errorcode 44, lowers B and does not retry v2', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    await apply(disk);
    // The trial boot of B: its own engine starts (the state directory is on ROOT, shared by
    // both slots) while the health gate has not passed; then the gate fails.
    const trial = await engine(disk, { 'boot-id': 'trial-boot' }, 'B');
    expect(trial.lines.some((l) => l.includes('trial boot of 2.0.0 in USR-B: waiting for the health gate'))).toBe(true);
    // The boot loader tried B once, it never got blessed, and it fell back to A.
    const gpt = await readGpt(disk);
    const { MtoolsEsp } = await import('./esp.js');
    const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
    await esp.rename('/loader/entries/basalt-b+1.conf', '/loader/entries/basalt-b+0-1.conf');
    const a = await engine(disk, { 'boot-id': 'boot-after-fallback' });
    expect(a.e.state.status).toBe('UPDATE_STATUS_IDLE');
    expect(a.e.status().blocked).toEqual(['2.0.0']);
    expect(await cgpt(disk, '-P')).toBe('0');
    expect(await selection(disk)).toEqual({ gpt: 'A', loader: 'A' });
    expect(await readFile(events, 'utf8')).toMatch(/"eventType":3,"eventResult":0,"errorCode":44/);
    const before = (await readFile(events, 'utf8')).split('\n').length;
    a.e.check(true);
    await a.e.idle();
    expect(a.e.lastFailure?.code).toBe('E_UPDATE_BLOCKED');
    expect(a.e.state.status).toBe('UPDATE_STATUS_IDLE');
    // Not downloaded again: the check sent no event 13 (download started) and no failure event.
    const after = (await readFile(events, 'utf8')).trim().split('\n').slice(before - 1).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(after.some((l) => l['kind'] === 'updatecheck')).toBe(true);
    expect(after.filter((l) => l['kind'] === 'event' && l['eventType'] !== 3).map((l) => l['eventType'])).toEqual([]);
    expect(after.some((l) => l['kind'] === 'event' && l['eventResult'] === 0)).toBe(false);
    expect(await selection(disk)).toEqual({ gpt: 'A', loader: 'A' });
  });

  it('a manual rollback from a good B (no check in between) is not taken for a failed update', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    await apply(disk);
    const gpt = await readGpt(disk);
    const { MtoolsEsp } = await import('./esp.js');
    const { rollback } = await import('./health.js');
    const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
    await engine(disk, { 'boot-id': 'b-boot' }, 'B');
    await markGood(disk, esp, 'B', { healthy: true, failed: [], states: [], skipped: [] });
    expect(await rollback(disk, esp, 'B')).toBe('A');
    const a = await engine(disk, { 'boot-id': 'a-again' }, 'A');
    expect(a.e.state.status).toBe('UPDATE_STATUS_IDLE');
    expect(a.e.status().blocked).toEqual([]);
    expect(a.lines.some((l) => l.includes('not a rollback'))).toBe(true);
    expect(a.lines.some((l) => l.includes('rollback: 2.0.0'))).toBe(false);
  });

  it('keeps the rollback report until the server has it: server down at boot, then a restart delivers it once', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    await apply(disk);
    const gpt = await readGpt(disk);
    const { MtoolsEsp } = await import('./esp.js');
    const esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
    await esp.rename('/loader/entries/basalt-b+1.conf', '/loader/entries/basalt-b+0-1.conf');
    const mine = async () =>
      (await readFile(events, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l['kind'] === 'event' && l['machineId'] === 'outbox-machine' && l['errorCode'] === 44);
    // The update server refuses every connection while this machine comes back up.
    fault = (req, res) => {
      if (req.method !== 'POST') return false;
      res.socket?.destroy();
      return true;
    };
    const a = await engine(disk, { 'boot-id': 'fallback-boot', 'machine-id': 'outbox-machine' });
    fault = undefined;
    expect(a.lines.some((l) => /cannot report event .*1 kept for the next attempt/.test(l))).toBe(true);
    expect(a.e.status().blocked).toEqual(['2.0.0']);
    expect(await mine()).toEqual([]);
    const state = JSON.parse(await readFile(join(`${disk}.state`, 'engine.json'), 'utf8')) as { outbox?: unknown[] };
    expect(state.outbox).toEqual([{ type: 3, result: 0, errorCode: 44 }]);
    // The daemon restarts (same boot): the queued report goes out, once.
    await engine(disk, { 'boot-id': 'fallback-boot', 'machine-id': 'outbox-machine' });
    expect((await mine()).map((l) => [l['eventType'], l['eventResult'], l['version']])).toEqual([[3, 0, '1.0.0']]);
    const c = await engine(disk, { 'boot-id': 'fallback-boot', 'machine-id': 'outbox-machine' });
    c.e.check(true);
    await c.e.idle();
    expect(c.e.lastFailure?.code).toBe('E_UPDATE_BLOCKED');
    expect(await mine()).toHaveLength(1);
    expect((JSON.parse(await readFile(join(`${disk}.state`, 'engine.json'), 'utf8')) as { outbox?: unknown[] }).outbox).toBeUndefined();
  });

  describe('faults from loopback', () => {
    it('resumes a download cut mid-payload with Range and completes', async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      let cuts = 0;
      const ranges: string[] = [];
      fault = (req, res) => {
        if (req.url !== payloadPath('2.0.0')) return false;
        ranges.push(req.headers.range ?? '');
        if (cuts++ > 0) return false;
        void readFile(join(repo, req.url)).then((b) => {
          res.writeHead(206, { 'content-length': b.length, 'content-range': `bytes 0-${b.length - 1}/${b.length}` });
          res.write(b.subarray(0, Math.floor(b.length / 2)), () => res.destroy());
        });
        return true;
      };
      const { e } = await apply(disk);
      fault = undefined;
      expect(e.lastFailure?.message).toBeUndefined();
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(ranges.length).toBe(2);
      expect(Number(/bytes=(\d+)-/.exec(ranges[1]!)![1])).toBeGreaterThan(0);
      expect(await slotHash(disk, 'USR-B', m2.image.size)).toBe(m2.image.sha256);
    });

    it('aborts a stalled transfer after the stall timeout and resumes with Range', async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      let n = 0;
      const ranges: string[] = [];
      fault = (req, res) => {
        if (req.url !== payloadPath('2.0.0')) return false;
        ranges.push(req.headers.range ?? '');
        if (n++ > 0) return false;
        void readFile(join(repo, req.url)).then((b) => {
          res.writeHead(206, { 'content-length': b.length });
          res.write(b.subarray(0, Math.floor(b.length / 3))); // then nothing: a stall, the socket stays open
        });
        return true;
      };
      const t0 = Date.now();
      const { e, lines } = await apply(disk, { 'stall-timeout': '400ms' });
      fault = undefined;
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      expect(ranges.length).toBe(2);
      expect(lines.some((l) => l.includes('interrupted'))).toBe(true);
      expect(Date.now() - t0).toBeLessThan(20_000);
    });

    it('backs off on HTTP 500 and completes', async () => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      let n = 0;
      fault = (req, res) => {
        if (req.url !== payloadPath('2.0.0') || n++ >= 2) return false;
        res.writeHead(500).end();
        return true;
      };
      const { e, lines } = await apply(disk);
      fault = undefined;
      expect(e.state.status).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
      const waits = lines.filter((l) => /: HTTP 500; retrying in (\d+) ms/.test(l)).map((l) => Number(/in (\d+) ms/.exec(l)![1]));
      expect(waits).toEqual([5, 10]);
    });

    const rejects: [string, () => Fault | Promise<Partial<EnvFlags>>, RegExp][] = [
      [
        'one flipped byte',
        () => (req, res) => {
          if (req.url !== payloadPath('2.0.0')) return false;
          void readFile(join(repo, req.url)).then((b) => {
            b[Math.floor(b.length * 0.6)]! ^= 0x01;
            res.writeHead(200, { 'content-length': b.length }).end(b);
          });
          return true;
        },
        /E_PAYLOAD_HASH|does not match the signed manifest/,
      ],
      [
        'more bytes than announced',
        () => (req, res) => {
          if (req.url !== payloadPath('2.0.0')) return false;
          void readFile(join(repo, req.url)).then((b) => {
            const big = Buffer.concat([b, Buffer.alloc(4096, 7)]);
            res.writeHead(200, { 'content-length': big.length }).end(big);
          });
          return true;
        },
        /more than the announced/,
      ],
      [
        'an older version',
        () => (req, res) => {
          if (req.method !== 'POST') return false;
          req.resume();
          req.on('end', () => {
            const xml = buildResponse(
              [{ appId: APP_ID, status: 'ok', ping: true, events: 1, updateCheck: { status: 'ok', offer: { version: '1.0.0', codebases: [`${srv!.url}payloads/1.0.0/`], packageName: m1.payload.file, size: m1.payload.size, sha1Base64: '', sha256Hex: m1.payload.sha256, sha256Base64: hexToBase64(m1.payload.sha256), manifestName: 'manifest.json' } } }],
              0,
            );
            res.writeHead(200, { 'content-type': 'text/xml' }).end(xml);
          });
          return true;
        },
        // The Omaha server is not trusted: the channel's signed TUF targets are at 2.0.0 (a replay of an older release).
        /server offered 1\.0\.0, but channel stable's signed targets \(v\d+\) are at 2\.0\.0/,
      ],
      [
        'metadata signed by a key the machine does not trust',
        async () => {
          const other = await makeKeys(t.dir, true);
          return { 'tuf-root': other.tuf.root };
        },
        /TUF metadata refused \(UnsignedMetadataError: timestamp was signed by 0\/1 keys\)/,
      ],
      [
        'expired channel metadata (static mode)',
        async () => {
          const key = await readPrivateKeyFile(keys.priv);
          const old = join(t.dir, 'repo-expired');
          await release({ usr: usr2, version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo: old, now: new Date(Date.now() - 3 * 86_400_000), expiresMs: 86_400_000, chunkSize: 256 * 1024, xzLevel: 0 });
          const s2 = await startServer({ repo: old, eventsFile: join(t.dir, 'ev2.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
          closers.push(() => s2.close());
          return { server: `static+${s2.url}` };
        },
        /TUF metadata refused \(ExpiredMetadataError: Final timestamp\.json is expired\)/,
      ],
    ];
    const closers: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of closers) await c();
    });

    it.each(rejects)('rejects %s: one-line error, no flip, booted slot stays first', async (_name, make, msg) => {
      const disk = await makeDisk(t.dir, usr1, '1.0.0');
      const aBefore = await slotHash(disk, 'USR-A', 64 * 1024 * 1024);
      const r = await make();
      let extra: Partial<EnvFlags> = {};
      if (typeof r === 'function') fault = r;
      else if (r) extra = r;
      if (_name === 'an older version') extra = { 'current-version': '1.5.0' };
      const { e } = await apply(disk, extra);
      fault = undefined;
      const err = e.lastFailure!;
      expect(err, 'an error').toBeDefined();
      expect(err.message).toMatch(msg);
      expect(err.message).not.toContain('\n');
      console.log(`[e2e] ${_name}: ${err.code}: ${err.message}`);
      expect(e.state.status).toBe('UPDATE_STATUS_IDLE');
      expect(await selection(disk)).toEqual({ gpt: 'A', loader: 'A' });
      expect(await run('cgpt', ['show', '-i', '3', '-P', disk]).then((x) => x.stdout.trim())).toBe('1');
      expect(await slotHash(disk, 'USR-A', 64 * 1024 * 1024)).toBe(aBefore);
    });

    it('refuses a replayed older repository (static mode) once a newer one was seen, also after a restart', async () => {
      // The repository as published (stable at 2.0.0 for everyone), kept by a hostile mirror …
      const old = join(t.dir, 'repo-replay-old');
      await run('cp', ['-a', repo, old]);
      // … and the publisher's newer state: 2.0.0 held back (rollout 0 %), timestamp one version up.
      const now = join(t.dir, 'repo-replay-new');
      await run('cp', ['-a', repo, now]);
      await refreshChannel(now, 'stable', await readPrivateKeyFile(keys.priv), new Date(), 86_400_000, 0, keys.tuf.publish);
      const sNew = await startServer({ repo: now, eventsFile: join(t.dir, 'ev-new.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
      const sOld = await startServer({ repo: old, eventsFile: join(t.dir, 'ev-old.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
      try {
        const disk = await makeDisk(t.dir, usr1, '1.0.0');
        const aBefore = await slotHash(disk, 'USR-A', 64 * 1024 * 1024);
        const first = await apply(disk, { server: `static+${sNew.url}` });
        expect(first.e.lastFailure).toBeUndefined();
        expect(first.e.state.status).toBe('UPDATE_STATUS_IDLE');
        // A new Engine on the same state dir: a restart.
        const { e } = await apply(disk, { server: `static+${sOld.url}` });
        expect(e.lastFailure?.code).toBe('E_TUF_REFRESH');
        expect(e.lastFailure?.message).toMatch(/TUF metadata refused \(BadVersionError: New timestamp version \d+ is less than current version \d+\)/);
        expect(e.state.status).toBe('UPDATE_STATUS_IDLE');
        expect(await selection(disk)).toEqual({ gpt: 'A', loader: 'A' });
        expect(await slotHash(disk, 'USR-A', 64 * 1024 * 1024)).toBe(aBefore);
        console.log(`[e2e] replayed older repository: ${e.lastFailure!.code}: ${e.lastFailure!.message}`);
      } finally {
        await sNew.close();
        await sOld.close();
      }
    });
  });
});

/**
 * locksmith against a REAL etcd (started here on random 127.0.0.1 ports, in
 * a temp data dir, stopped afterwards): the CAS semaphore, locksmithctl, and
 * 10 engines with max=1 that never hold more than one lock at a time.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stat } from 'node:fs/promises';
import { run } from '../../common/src/exec.js';
import { tempDir, startEtcd } from '../test/helpers.js';
import { EtcdKv, RebootLock, coordinateReboot, releaseOwnLock, SEMAPHORE_KEY, type CoordinatorDeps } from './locksmith.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let t: Awaited<ReturnType<typeof tempDir>>;
let etcd: Awaited<ReturnType<typeof startEtcd>>;

beforeAll(async () => {
  t = await tempDir();
  etcd = await startEtcd(t.dir);
  if (!(await stat(join(root, 'dist/update-engine/src/cmd/locksmithctl.js')).then(() => true, () => false))) await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, reject: false });
});
afterAll(async () => {
  await etcd?.stop();
  await t.cleanup();
});

function ctl(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(root, 'bin/locksmithctl.js'), `-endpoint=${etcd.url}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

describe('locksmith with a real etcd', () => {
  it('locksmithctl status, lock, unlock, set-max keep CoreOS JSON in the CoreOS key', async () => {
    expect((await ctl(['status'])).out).toBe('Available: 1\nMax: 1\n');
    expect((await ctl(['lock', 'machine-a'])).code).toBe(0);
    const kv = new EtcdKv([etcd.url]);
    expect((await kv.get(SEMAPHORE_KEY))!.value).toBe('{"semaphore":0,"max":1,"holders":["machine-a"]}');
    const busy = await ctl(['lock', 'machine-b']);
    expect(busy.code).toBe(1);
    expect(busy.err).toMatch(/^locksmithctl: error: the reboot lock is at its maximum of 1 holder\(s\): machine-a/);
    expect((await ctl(['status'])).out).toBe('Available: 0\nMax: 1\n\nMACHINE ID\nmachine-a\n');
    expect((await ctl(['set-max', '2'])).out).toBe('Old: 1\nNew: 2\n');
    expect((await ctl(['lock', 'machine-b'])).code).toBe(0);
    expect((await kv.get(SEMAPHORE_KEY))!.value).toBe('{"semaphore":0,"max":2,"holders":["machine-a","machine-b"]}');
    expect((await ctl(['unlock', 'machine-a'])).code).toBe(0);
    expect((await ctl(['unlock', 'machine-b'])).code).toBe(0);
    expect((await ctl(['unlock', 'machine-b'])).err).toMatch(/does not hold/);
    expect((await ctl(['set-max', '1'])).code).toBe(0);
    expect((await kv.get(SEMAPHORE_KEY))!.value).toBe('{"semaphore":1,"max":1,"holders":null}');
  });

  it('10 engines with etcd-lock and max=1 never hold more than one lock at a time', async () => {
    const group = 'ten';
    const kv = new EtcdKv([etcd.url]);
    let inReboot = 0;
    let maxInReboot = 0;
    let maxHolders = 0;
    let observations = 0;
    let done = false;
    // An observer reading etcd all along.
    const observer = (async () => {
      const l = new RebootLock(kv, group);
      while (!done) {
        const { sem } = await l.get();
        observations++;
        maxHolders = Math.max(maxHolders, sem.holders?.length ?? 0);
      }
    })();
    const rebooted: string[] = [];
    const engineRun = async (i: number) => {
      const id = `machine-${String(i).padStart(2, '0')}`;
      const d: CoordinatorDeps = {
        strategy: 'etcd-lock',
        lock: new RebootLock(kv, group),
        id,
        now: () => new Date(),
        sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20))), // lock backoff shortened
        reboot: async () => {
          inReboot++;
          maxInReboot = Math.max(maxInReboot, inReboot);
          const { sem } = await new RebootLock(kv, group).get();
          expect(sem.holders).toEqual([id]);
          await new Promise((r) => setTimeout(r, 15)); // "rebooting"
          inReboot--;
          rebooted.push(id);
          // The machine comes back: locksmithd releases its own lock on start.
          expect(await releaseOwnLock(d)).toBe(true);
        },
        log: { info() {}, warn() {} },
      };
      expect(await coordinateReboot(d)).toBe('rebooted');
    };
    await Promise.all(Array.from({ length: 10 }, (_, i) => engineRun(i)));
    done = true;
    await observer;
    console.log(`[locksmith] 10 engines rebooted one at a time; ${observations} observations of etcd, max holders seen ${maxHolders}, max concurrent reboots ${maxInReboot}`);
    expect(rebooted.length).toBe(10);
    expect(new Set(rebooted).size).toBe(10);
    expect(maxInReboot).toBe(1);
    expect(maxHolders).toBeLessThanOrEqual(1);
    expect(observations).toBeGreaterThan(10);
  });

  it('reboot strategy reboots without etcd; off does nothing; a window delays', async () => {
    let reboots = 0;
    const slept: number[] = [];
    const base = { id: 'x', sleep: async (ms: number) => void slept.push(ms), reboot: async () => void reboots++, log: { info() {}, warn() {} } };
    let now = new Date(2026, 0, 7, 22, 0);
    expect(await coordinateReboot({ ...base, strategy: 'off', now: () => now })).toBe('off');
    expect(reboots).toBe(0);
    const { parseWindow } = await import('./locksmith.js');
    expect(await coordinateReboot({ ...base, strategy: 'reboot', window: parseWindow('23:00', '1h'), now: () => (slept.length ? (now = new Date(2026, 0, 7, 23, 0)) : now) })).toBe('rebooted');
    expect(slept).toEqual([3_600_000]);
    expect(reboots).toBe(1);
  });
});

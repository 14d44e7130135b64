/**
 * locksmith against a REAL etcd (started here on random 127.0.0.1 ports, in
 * a temp data dir, stopped afterwards): the CAS semaphore, locksmithctl (run
 * in-process, with injected environment and clock), stale holders and their
 * expiry, waiting registrations on leases, bounded replies, etcd auth, and 10
 * engines with max=1 that never hold more than one lock at a time.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:http';
import { main as cliMain } from '../../../cli/main.js';
import { BasaltError } from '../../../common/src/errors.js';
import { tempDir, startEtcd, waitFor } from '../../test/helpers.js';
import { main as ctlMain } from '../cmd/locksmithctl.js';
import {
  EtcdKv, EtcdWaiting, RebootLock, coordinateReboot, releaseOwnLock, parseWindow, rfc3339, semaphoreKey, waitingKey, waitingPrefix, SEMAPHORE_KEY, type CoordinatorDeps,
} from './locksmith.js';

// Unset when beforeAll failed part way.
let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
let kv: EtcdKv;

beforeAll(async () => {
  t = await tempDir();
  etcd = await startEtcd(t.dir);
  kv = new EtcdKv([etcd.url]);
});
afterAll(async () => {
  await etcd?.stop();
  await t?.cleanup();
});

interface CtlResult {
  code: number;
  out: string;
  err: string;
  error?: BasaltError | undefined;
}

/** locksmithctl in-process against the test etcd (unless `env` names the endpoint). */
async function ctl(args: string[], opts: { env?: Record<string, string>; now?: Date; endpoint?: boolean } = {}): Promise<CtlResult> {
  let out = '';
  let err = '';
  const argv = opts.endpoint === false ? args : [`-endpoint=${etcd!.url}`, ...args];
  try {
    const code = await ctlMain(argv, { out: (s) => void (out += s), err: (s) => void (err += s), env: opts.env ?? {}, ...(opts.now ? { now: () => opts.now! } : {}) });
    return { code, out, err };
  } catch (e) {
    if (!(e instanceof BasaltError)) throw e;
    return { code: e.exitCode, out, err, error: e };
  }
}

const value = async (key: string) => (await kv.get(key))?.value;
const put = (key: string, v: string) => kv.put(key, v);
const ago = (ms: number) => rfc3339(new Date(Date.now() - ms));
const MIN = 60_000;

describe('locksmith with a real etcd', () => {
  it('locksmithctl status, lock, unlock, set-max keep CoreOS JSON in the CoreOS key', async () => {
    expect((await ctl(['status'])).out).toBe('Available: 1\nMax: 1\nExpire: never\n');
    expect((await ctl(['lock', 'machine-a'])).code).toBe(0);
    const locked = JSON.parse((await value(SEMAPHORE_KEY))!) as Record<string, unknown>;
    expect(Object.keys(locked)).toEqual(['semaphore', 'max', 'holders', 'since']);
    expect(locked).toMatchObject({ semaphore: 0, max: 1, holders: ['machine-a'] });
    expect(Math.abs(Date.parse((locked['since'] as Record<string, string>)['machine-a']!) - Date.now())).toBeLessThan(60_000);
    // Through the real program entry: CoreOS's error line.
    let err = '';
    expect(await cliMain(['-endpoint', etcd!.url, 'lock', 'machine-b'], 'locksmithctl', { out: () => {}, err: (s) => void (err += s) })).toBe(1);
    expect(err).toMatch(/^locksmithctl: error: the reboot lock is at its maximum of 1 holder\(s\): machine-a/);
    expect((await ctl(['status'])).out).toMatch(/^Available: 0\nMax: 1\nExpire: never\n\nMACHINE ID {25}HELD {4}STATE\nmachine-a {26}\d+s? +held\n$/);
    expect((await ctl(['set-max', '2'])).out).toBe('Old: 1\nNew: 2\n');
    expect((await ctl(['lock', 'machine-b'])).code).toBe(0);
    expect(JSON.parse((await value(SEMAPHORE_KEY))!)).toMatchObject({ semaphore: 0, max: 2, holders: ['machine-a', 'machine-b'] });
    expect((await ctl(['unlock', 'machine-a'])).code).toBe(0);
    expect((await ctl(['unlock', 'machine-b'])).code).toBe(0);
    expect((await ctl(['unlock', 'machine-b'])).error?.message).toMatch(/does not hold/);
    expect((await ctl(['set-max', '1'])).code).toBe(0);
    expect(await value(SEMAPHORE_KEY)).toBe('{"semaphore":1,"max":1,"holders":null}');
  });

  it('a stale holder whose since is older than expire is expired by the next lock', async () => {
    const group = 'stale';
    const key = semaphoreKey(group);
    await put(key, JSON.stringify({ semaphore: 0, max: 1, holders: ['dead'], since: { dead: ago(25 * MIN) }, expire: 900 }));
    const r = await ctl(['-group', group, 'lock', 'next']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^expired the stale reboot lock of dead \(held 25m(\ds)?, expire 15m\)\n$/);
    const s = JSON.parse((await value(key))!) as { holders: string[]; since: Record<string, string>; expire: number; semaphore: number };
    expect(s).toMatchObject({ semaphore: 0, max: 1, holders: ['next'], expire: 900 });
    expect(Object.keys(s.since)).toEqual(['next']);

    // The same through coordinateReboot, on an injected clock: the log line names the holder.
    await put(key, JSON.stringify({ semaphore: 0, max: 1, holders: ['next'], since: { next: '2026-01-07T12:00:00Z' }, expire: 900 }));
    const logs: string[] = [];
    let rebooted = false;
    const d: CoordinatorDeps = {
      strategy: 'etcd-lock', lock: new RebootLock(kv, group), waiting: new EtcdWaiting(kv, 'engine', group), id: 'engine',
      now: () => new Date('2026-01-07T12:25:00Z'),
      sleep: async () => { throw new Error('no sleep expected'); },
      reboot: async () => void (rebooted = true),
      log: { info: (m) => void logs.push(m), warn: (m) => void logs.push(m) },
    };
    expect(await coordinateReboot(d)).toBe('rebooted');
    expect(rebooted).toBe(true);
    expect(logs).toContain('expired the stale reboot lock of next (held 25m, expire 15m)');
    expect(await value(key)).toBe('{"semaphore":0,"max":1,"holders":["engine"],"since":{"engine":"2026-01-07T12:25:00Z"},"expire":900}');
  });

  it('status shows holders HELD/STALE and a waiter with its reason; the waiter is on a lease and goes when it takes the lock; unlock ID of a stale holder', async () => {
    const group = 'status';
    const key = semaphoreKey(group);
    const S = Date.parse('2026-01-07T12:00:00Z');
    await put(key, JSON.stringify({ semaphore: 0, max: 1, holders: ['0123abcd0123abcd0123abcd0123abcd'], since: { '0123abcd0123abcd0123abcd0123abcd': rfc3339(new Date(S)) }, expire: 900 }));
    // A real engine waits for the full lock: its first backoff sleep is held until the test lets go.
    // The engine's clock: 10 minutes after the holder took the lock (not stale yet for it).
    let now = S + 10 * MIN;
    let sleeping: (() => void) | undefined;
    const logs: string[] = [];
    let rebooted = false;
    const waiter = '4567ef004567ef004567ef004567ef00';
    const d: CoordinatorDeps = {
      strategy: 'etcd-lock', lock: new RebootLock(kv, group), waiting: new EtcdWaiting(kv, waiter, group), id: waiter,
      now: () => new Date(now),
      sleep: () => new Promise<void>((r) => (sleeping = r)),
      reboot: async () => void (rebooted = true),
      log: { info: (m) => void logs.push(m), warn: (m) => void logs.push(m) },
    };
    const run = coordinateReboot(d);
    await waitFor(() => sleeping, 10_000, 'the engine backing off');
    expect(logs.at(-1)).toMatch(/^cannot take the reboot lock \(the reboot lock is at its maximum of 1 holder\(s\): 0123abcd/);
    const reg = JSON.parse((await value(waitingKey(waiter, group)))!) as { since: string; reason: string };
    expect(reg).toEqual({ since: '2026-01-07T12:10:00Z', reason: 'the lock is at its maximum' });

    const status = await ctl(['-group', group, 'status'], { now: new Date(S + 25 * MIN + 3000) });
    expect(status.code).toBe(0);
    expect(status.out).toBe(
      [
        'Available: 0',
        'Max: 1',
        'Expire: 15m',
        '',
        'MACHINE ID                         HELD    STATE',
        '0123abcd0123abcd0123abcd0123abcd   25m3s   STALE (expires on the next lock attempt)',
        '',
        'WAITING                            SINCE   REASON',
        `${waiter}   15m3s   the lock is at its maximum`,
        '',
      ].join('\n'),
    );
    // The registration is on a lease of at most 600 s.
    const raw = (await kv.post('v3/kv/range', { key: Buffer.from(waitingKey(waiter, group)).toString('base64') })) as { kvs: { lease?: string }[] };
    const lease = raw.kvs[0]!.lease!;
    expect(lease).toMatch(/^[1-9]\d*$/);
    const ttl = (await kv.post('v3/lease/timetolive', { ID: lease })) as { TTL: string; grantedTTL: string };
    expect(Number(ttl.grantedTTL)).toBe(600);
    expect(Number(ttl.TTL)).toBeGreaterThan(500);

    // unlock ID, as in CoreOS, removes the stale holder (status needs no rights; unlock does, and we are root).
    expect((await ctl(['-group', group, 'unlock', '0123abcd0123abcd0123abcd0123abcd'])).code).toBe(0);
    expect(await value(key)).toBe('{"semaphore":1,"max":1,"holders":null,"expire":900}');
    // The engine retries, takes the lock, drops its registration and reboots.
    now = S + 26 * MIN;
    sleeping!();
    expect(await run).toBe('rebooted');
    expect(rebooted).toBe(true);
    expect(await value(waitingKey(waiter, group))).toBeUndefined();
    expect(await kv.rangePrefix(waitingPrefix(group))).toEqual([]);
    expect((await ctl(['-group', group, 'status'], { now: new Date(S + 27 * MIN) })).out).toBe(
      `Available: 0\nMax: 1\nExpire: 15m\n\nMACHINE ID                         HELD    STATE\n${waiter}   1m      held (stale in 14m)\n`,
    );
  });

  it('set-expire then lock proceeds; a holder without since never expires; set-expire 0 disables', async () => {
    const group = 'expire';
    const key = semaphoreKey(group);
    await put(key, JSON.stringify({ semaphore: 0, max: 1, holders: ['ghost'], since: { ghost: ago(60 * MIN) } }));
    const before = await ctl(['-group', group, 'lock', 'next']);
    expect(before.code).toBe(1);
    expect(before.error?.code).toBe('E_LOCK_UNAVAILABLE');
    expect((await ctl(['-group', group, 'set-expire', '15m'])).out).toBe('Old: never\nNew: 15m\n');
    const r = await ctl(['-group', group, 'lock', 'next']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^expired the stale reboot lock of ghost \(held 1h(\ds)?, expire 15m\)\n$/);
    expect(JSON.parse((await value(key))!)).toMatchObject({ holders: ['next'], expire: 900 });

    // A holder written by CoreOS's locksmith (no since) stays, whatever the expiry.
    await put(key, '{"semaphore":0,"max":1,"holders":["coreos-machine"],"expire":1}');
    expect((await ctl(['-group', group, 'lock', 'next'])).error?.code).toBe('E_LOCK_UNAVAILABLE');
    expect((await ctl(['-group', group, 'status'])).out).toBe(
      'Available: 0\nMax: 1\nExpire: 1s\n\nMACHINE ID                         HELD    STATE\ncoreos-machine                     -       held (no start time: never expires)\n',
    );
    expect((await ctl(['-group', group, 'set-expire', '0'])).out).toBe('Old: 1s\nNew: never\n');
    expect(await value(key)).toBe('{"semaphore":0,"max":1,"holders":["coreos-machine"]}');
    const bad = await ctl(['-group', group, 'set-expire', 'soon']);
    expect(bad.error?.code).toBe('E_DURATION_INVALID');
    expect((await ctl(['-group', group, 'set-expire'])).code).toBe(2);
  });

  it('locksmithctl reads LOCKSMITHCTL_ENDPOINT (comma-separated, a dead one skipped) and LOCKSMITHCTL_GROUP; flags win', async () => {
    const env = { LOCKSMITHCTL_ENDPOINT: `http://127.0.0.1:1,${etcd!.url}`, LOCKSMITHCTL_GROUP: 'env-group' };
    expect((await ctl(['lock', 'from-env'], { env, endpoint: false })).code).toBe(0);
    expect(JSON.parse((await value(semaphoreKey('env-group')))!)).toMatchObject({ holders: ['from-env'] });
    expect((await ctl(['-group', 'flag-group', 'status'], { env, endpoint: false })).out).toBe('Available: 1\nMax: 1\nExpire: never\n');
    const dead = await ctl(['status'], { env: { LOCKSMITHCTL_ENDPOINT: 'http://127.0.0.1:1' }, endpoint: false });
    expect(dead.error?.code).toBe('E_ETCD');
    expect(dead.error?.message).toMatch(/http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
    expect((await ctl(['status'], { env: { LOCKSMITHCTL_ENDPOINT: 'etcd:2379' }, endpoint: false })).error?.code).toBe('E_ETCD_CONFIG');
  });

  it('the window closing while the lock was taken releases it and the engine waits, registered, for the next window', async () => {
    const group = 'late';
    const key = semaphoreKey(group);
    const window = parseWindow('23:00', '1h');
    // Inside the window at the first check, outside once the lock is in.
    const clock = [new Date(2026, 0, 7, 23, 59, 59), new Date(2026, 0, 8, 0, 0, 5)];
    let now = clock[0]!;
    const lock = new RebootLock(kv, group);
    const slept: number[] = [];
    let sleeping: (() => void) | undefined;
    const logs: string[] = [];
    const d: CoordinatorDeps = {
      strategy: 'etcd-lock', window, lock: { get: lock.get.bind(lock), unlock: lock.unlock.bind(lock), lock: async (id: string, at: Date) => {
        const r = await lock.lock(id, at);
        if (now === clock[0]) now = clock[1]!; // only the first lock comes late
        return r;
      } } as unknown as RebootLock,
      waiting: new EtcdWaiting(kv, 'late-machine', group), id: 'late-machine',
      now: () => now,
      sleep: (ms) => {
        slept.push(ms);
        return new Promise<void>((r) => (sleeping = r));
      },
      reboot: async () => {},
      log: { info: (m) => void logs.push(m), warn: (m) => void logs.push(m) },
    };
    const run = coordinateReboot(d);
    await waitFor(() => sleeping, 10_000, 'the engine waiting for the window');
    expect(logs).toContain('the reboot window closed while taking the reboot lock: releasing it until the next window');
    expect(JSON.parse((await value(key))!)).toMatchObject({ semaphore: 1, holders: null });
    expect(JSON.parse((await value(waitingKey('late-machine', group)))!)).toEqual({ since: rfc3339(clock[1]!), reason: 'outside the reboot window (opens in 23h)' });
    expect(slept).toEqual([300_000]);
    // The next window.
    now = new Date(2026, 0, 8, 23, 0, 0);
    sleeping!();
    expect(await run).toBe('rebooted');
    expect(JSON.parse((await value(key))!)).toMatchObject({ semaphore: 0, holders: ['late-machine'] });
    expect(await value(waitingKey('late-machine', group))).toBeUndefined();
  });

  it('a registration whose lease ended is renewed with a new lease', async () => {
    const w = new EtcdWaiting(kv, 'renew', 'renew');
    const leaseOf = async () => ((await kv.post('v3/kv/range', { key: Buffer.from(w.key).toString('base64') })) as { kvs?: { lease?: string }[] }).kvs?.[0]?.lease;
    await w.register('the lock is at its maximum', new Date('2026-01-07T12:00:00Z'));
    const first = await leaseOf();
    await w.register('the lock is at its maximum', new Date('2026-01-07T12:00:00Z'));
    expect(await leaseOf()).toBe(first);
    await kv.leaseRevoke(first!);
    expect(await value(w.key)).toBeUndefined();
    await w.register('outside the reboot window (opens in 1h)', new Date('2026-01-07T12:00:00Z'));
    const second = await leaseOf();
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(JSON.parse((await value(w.key))!)).toEqual({ since: '2026-01-07T12:00:00Z', reason: 'outside the reboot window (opens in 1h)' });
    await w.clear();
    expect(await value(w.key)).toBeUndefined();
  });

  it('a machine waiting for the lock goes as soon as the holder releases it (a watch), not at its next backoff step', async () => {
    const group = 'watch-release';
    const holder = new RebootLock(kv, group);
    await holder.lock('holder');
    const waiter = new RebootLock(kv, group);
    await expect(waiter.lock('waiter')).rejects.toMatchObject({ code: 'E_LOCK_UNAVAILABLE' });
    const slept: number[] = [];
    const t0 = Date.now();
    const waited = waiter.waitForChange(60_000, async (ms) => {
      slept.push(ms);
    });
    await holder.unlock('holder');
    await waited;
    // Back well before the 60 s deadline, without having slept.
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(slept).toEqual([]);
    await waiter.lock('waiter');
    // With nothing changing since it was last read, it returns at the deadline.
    await waiter.get();
    const t1 = Date.now();
    await waiter.waitForChange(1500, async () => {});
    expect(Date.now() - t1).toBeGreaterThanOrEqual(1400);
    // An endpoint that does not watch: the time is slept instead.
    const dead = new RebootLock(new EtcdKv(['http://127.0.0.1:9/']), group);
    const slept2: number[] = [];
    await dead.waitForChange(1000, async (ms) => {
      slept2.push(ms);
    });
    // Never read (no revision to watch from): it sleeps the time instead.
    expect(slept2).toHaveLength(1);
    expect(slept2[0]).toBeGreaterThan(900);
  });

  it('10 engines with etcd-lock and max=1 never hold more than one lock at a time', async () => {
    const group = 'ten';
    let inReboot = 0;
    let maxInReboot = 0;
    let maxHolders = 0;
    let maxWaiting = 0;
    let observations = 0;
    let done = false;
    // An observer reading etcd all along (until `done` is set, below).
    const observe = async () => {
      const l = new RebootLock(kv, group);
      while (!done) {
        const [{ sem }, waiting] = await Promise.all([l.get(), kv.rangePrefix(waitingPrefix(group))]);
        observations++;
        maxHolders = Math.max(maxHolders, sem.holders?.length ?? 0);
        maxWaiting = Math.max(maxWaiting, waiting.length);
      }
    };
    const observer = observe();
    const rebooted: string[] = [];
    const engineRun = async (i: number) => {
      const id = `machine-${String(i).padStart(2, '0')}`;
      const d: CoordinatorDeps = {
        strategy: 'etcd-lock',
        lock: new RebootLock(kv, group),
        waiting: new EtcdWaiting(kv, id, group),
        id,
        now: () => new Date(),
        sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20))), // lock backoff shortened
        reboot: async () => {
          inReboot++;
          maxInReboot = Math.max(maxInReboot, inReboot);
          const { sem } = await new RebootLock(kv, group).get();
          expect(sem.holders).toEqual([id]);
          expect(await value(waitingKey(id, group))).toBeUndefined();
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
    console.log(`[locksmith] 10 engines rebooted one at a time; ${observations} observations of etcd, max holders seen ${maxHolders}, max waiting ${maxWaiting}, max concurrent reboots ${maxInReboot}`);
    expect(rebooted.length).toBe(10);
    expect(new Set(rebooted).size).toBe(10);
    expect(maxInReboot).toBe(1);
    expect(maxHolders).toBeLessThanOrEqual(1);
    expect(observations).toBeGreaterThan(10);
    expect(maxWaiting).toBeGreaterThan(0);
    expect(await kv.rangePrefix(waitingPrefix(group))).toEqual([]);
  });

  it('reboot strategy reboots without etcd; off does nothing; a window delays', async () => {
    let reboots = 0;
    const slept: number[] = [];
    const base = {
      id: 'x',
      sleep: async (ms: number) => void slept.push(ms),
      reboot: async () => {
        reboots++;
      },
      log: { info() {}, warn() {} },
    };
    let now = new Date(2026, 0, 7, 22, 0);
    expect(await coordinateReboot({ ...base, strategy: 'off', now: () => now })).toBe('off');
    expect(reboots).toBe(0);
    expect(await coordinateReboot({ ...base, strategy: 'reboot', window: parseWindow('23:00', '1h'), now: () => (slept.length ? (now = new Date(2026, 0, 7, 23, 0)) : now) })).toBe('rebooted');
    expect(slept).toEqual([3_600_000]);
    expect(reboots).toBe(1);
  });
});

describe('etcd replies are bounded', () => {
  let server: Server;
  let url = '';
  let bigHits = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      if (req.url?.startsWith('/big/')) bigHits++;
      if (req.url?.startsWith('/big/')) res.end(JSON.stringify({ kvs: [], pad: 'x'.repeat(2 * 1024 * 1024) }));
      else if (req.url?.startsWith('/html/')) res.end('<html>proxy error</html>');
      else if (req.url?.startsWith('/hang/')) res.write('{'); // never ends
      else res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const a = server.address();
    url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const failure = async (k: EtcdKv) => {
    try {
      await k.get('k');
    } catch (e) {
      return e as BasaltError;
    }
    throw new Error('no error');
  };
  it('a reply over 1 MiB, a non-JSON reply and a silent endpoint are E_ETCD errors naming the endpoint', async () => {
    const big = await failure(new EtcdKv([`${url}/big/`]));
    expect(big.code).toBe('E_ETCD');
    expect(big.message).toBe(`etcd v3/kv/range failed: ${url}/big/: reply is larger than 1048576 bytes`);
    const html = await failure(new EtcdKv([`${url}/html/`]));
    expect(html.message).toBe(`etcd v3/kv/range failed: ${url}/html/: HTTP 200: reply is not a JSON object ("<html>proxy error</html>")`);
    const hang = await failure(new EtcdKv([`${url}/hang/`], { timeoutMs: 300 }));
    expect(hang.message).toBe(`etcd v3/kv/range failed: ${url}/hang/: no reply within 0.3 s`);
  });
  it('the next endpoint is tried after a bad one, and used first from then on', async () => {
    const k = new EtcdKv([`${url}/big/`, etcd!.url]);
    const before = bigHits;
    expect(await k.get('nothing-here')).toBeUndefined();
    expect(bigHits).toBe(before + 1);
    // The good endpoint answers first now: a later call does not ask the bad one again.
    expect(await k.get('nothing-here')).toBeUndefined();
    expect(bigHits).toBe(before + 1);
  });
  it('an etcd error is reported as such, without trying other endpoints', async () => {
    const e = await kv.put('k', 'v', '12345').catch((x: unknown) => x as BasaltError);
    expect(e).toBeInstanceOf(BasaltError);
    expect((e as BasaltError).message).toBe(`etcd v3/kv/put at ${etcd!.url}: etcdserver: requested lease not found (HTTP 404)`);
    expect((e as BasaltError).details['grpcCode']).toBe(5);
  });
});

describe('etcd with authentication', () => {
  let auth: Awaited<ReturnType<typeof startEtcd>> | undefined;
  beforeAll(async () => {
    auth = await startEtcd(`${t!.dir}/auth`);
    const admin = new EtcdKv([auth.url]);
    await admin.post('v3/auth/user/add', { name: 'root', password: 'rootpw' });
    await admin.post('v3/auth/role/add', { name: 'root' });
    await admin.post('v3/auth/user/grant', { user: 'root', role: 'root' });
    await admin.post('v3/auth/enable', {});
  });
  afterAll(async () => {
    await auth?.stop();
  });
  it('LOCKSMITHCTL_ETCD_USERNAME/_PASSWORD authenticate; without them etcd refuses', async () => {
    const env = { LOCKSMITHCTL_ENDPOINT: auth!.url, LOCKSMITHCTL_ETCD_USERNAME: 'root', LOCKSMITHCTL_ETCD_PASSWORD: 'rootpw' };
    expect((await ctl(['lock', 'authed'], { env, endpoint: false })).code).toBe(0);
    expect((await ctl(['status'], { env, endpoint: false })).out).toMatch(/^Available: 0\n[^]*\nauthed {29}\d+s? +held\n$/);
    const anon = await ctl(['status'], { env: { LOCKSMITHCTL_ENDPOINT: auth!.url }, endpoint: false });
    expect(anon.error?.code).toBe('E_ETCD');
    expect(anon.error?.message).toMatch(/^etcd v3\/kv\/range at http:\/\/127\.0\.0\.1:\d+: etcdserver: user name is empty \(HTTP \d+\)$/);
    const wrong = await ctl(['status'], { env: { ...env, LOCKSMITHCTL_ETCD_PASSWORD: 'nope' }, endpoint: false });
    expect(wrong.error?.message).toMatch(/authentication failed/);
    expect(wrong.error?.hint).toMatch(/USERNAME/);
  });
});

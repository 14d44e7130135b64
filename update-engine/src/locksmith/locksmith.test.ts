import { describe, it, expect } from 'vitest';
import {
  encodeSemaphore, decodeSemaphore, lockOp, unlockOp, setMaxOp, setExpireOp, parseWindow, untilWindow, semaphoreKey, lockBackoff, waitingKey, waitingPrefix, prefixEnd,
  parseGoDuration, parseExpire, formatDuration, formatWait, formatStatus, staleHolders, expiredMessage, locksmithSettings, coordinateReboot, releaseOwnLock,
  type CoordinatorDeps, type RebootLock, type Semaphore, type WaitingRegistry,
} from './locksmith.js';
import { BasaltError } from '../../../common/src/errors.js';

const T0 = new Date('2026-01-07T12:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);
const MIN = 60_000;

describe('locksmith semaphore (CoreOS format)', () => {
  it('encodes as CoreOS: holders null when empty, sorted otherwise', () => {
    expect(encodeSemaphore({ semaphore: 1, max: 1, holders: null })).toBe('{"semaphore":1,"max":1,"holders":null}');
    const s = lockOp({ semaphore: 2, max: 2, holders: ['b'] }, 'a', 'k', T0).sem;
    expect(encodeSemaphore(s)).toBe('{"semaphore":1,"max":2,"holders":["a","b"],"since":{"a":"2026-01-07T12:00:00Z"}}');
    expect(decodeSemaphore('{"semaphore":0,"max":1,"holders":["x"]}', 'k')).toEqual({ semaphore: 0, max: 1, holders: ['x'] });
  });
  it('lock fails at 0 and for an existing holder; unlock needs a holder; set-max moves the count', () => {
    expect(() => lockOp({ semaphore: 0, max: 1, holders: ['x'] }, 'y', 'k', T0)).toThrow(/maximum of 1/);
    expect(() => lockOp({ semaphore: 1, max: 2, holders: ['x'] }, 'x', 'k', T0)).toThrow(/already holds/);
    expect(() => unlockOp({ semaphore: 1, max: 1, holders: null }, 'x', 'k')).toThrow(/does not hold/);
    expect(unlockOp({ semaphore: 0, max: 1, holders: ['x'] }, 'x', 'k')).toEqual({ semaphore: 1, max: 1, holders: [] });
    expect(encodeSemaphore(unlockOp({ semaphore: 0, max: 1, holders: ['x'], since: { x: '2026-01-07T12:00:00Z' } }, 'x', 'k'))).toBe('{"semaphore":1,"max":1,"holders":null}');
    expect(setMaxOp({ semaphore: 0, max: 1, holders: ['x'] }, 3)).toEqual({ semaphore: 2, max: 3, holders: ['x'] });
    expect(semaphoreKey()).toBe('coreos.com/updateengine/rebootlock/semaphore');
    expect(semaphoreKey('a b')).toBe('coreos.com/updateengine/rebootlock/groups/a%20b/semaphore');
    expect([0, 1, 5, 6, 9].map(lockBackoff)).toEqual([5000, 10000, 160000, 300000, 300000]);
  });
});

describe('reboot window', () => {
  it('daily window: inside is 0, before waits until the start', () => {
    const w = parseWindow('23:00', '1h30m');
    expect(untilWindow(w, new Date(2026, 0, 7, 23, 30))).toBe(0);
    expect(untilWindow(w, new Date(2026, 0, 8, 0, 29))).toBe(0);
    expect(untilWindow(w, new Date(2026, 0, 8, 0, 31))).toBe((22 * 60 + 29) * 60_000);
    expect(untilWindow(w, new Date(2026, 0, 7, 22, 0))).toBe(3_600_000);
  });
  it('weekly window on a weekday', () => {
    const w = parseWindow('Thu 23:00', '1h');
    // 2026-01-08 is a Thursday.
    expect(untilWindow(w, new Date(2026, 0, 8, 23, 10))).toBe(0);
    expect(untilWindow(w, new Date(2026, 0, 7, 23, 0))).toBe(86_400_000);
    expect(untilWindow(w, new Date(2026, 0, 9, 0, 0))).toBe(7 * 86_400_000 - 3_600_000);
  });
  it('rejects bad windows', () => {
    expect(() => parseWindow('Xyz 23:00', '1h')).toThrow(/not '\[Day \]HH:MM'/);
    expect(() => parseWindow('25:00', '1h')).toThrow();
    expect(() => parseWindow('23:00', 'soon')).toThrow(/duration/);
  });
});

describe('stale holders (since / expire)', () => {
  const stale = (): Semaphore => ({ semaphore: 0, max: 1, holders: ['old'], since: { old: '2026-01-07T11:35:00Z' }, expire: 900 });
  it('a lock at 0 drops a holder older than expire, in the same write, and reports it', () => {
    const r = lockOp(stale(), 'new', 'k', T0);
    expect(r.expired).toEqual([{ id: 'old', since: '2026-01-07T11:35:00Z', heldMs: 25 * MIN }]);
    expect(encodeSemaphore(r.sem)).toBe('{"semaphore":0,"max":1,"holders":["new"],"since":{"new":"2026-01-07T12:00:00Z"},"expire":900}');
    expect(expiredMessage(r.expired[0]!, 900)).toBe('expired the stale reboot lock of old (held 25m, expire 15m)');
  });
  it('a holder younger than expire, or any holder without expire, stays', () => {
    expect(() => lockOp(stale(), 'new', 'k', at(-11 * MIN))).toThrow(/maximum of 1 holder\(s\): old/);
    expect(() => lockOp({ ...stale(), expire: undefined }, 'new', 'k', T0)).toThrow(BasaltError);
    expect(staleHolders({ ...stale(), expire: 0 }, T0)).toEqual([]);
    // Exactly expire old is not older than expire.
    expect(staleHolders(stale(), at(-10 * MIN))).toEqual([]);
    expect(staleHolders(stale(), at(-10 * MIN + 1000)).map((x) => x.id)).toEqual(['old']);
  });
  it('expiry only happens when the lock is full', () => {
    const r = lockOp({ ...stale(), semaphore: 1, max: 2 }, 'new', 'k', T0);
    expect(r.expired).toEqual([]);
    expect(r.sem.holders).toEqual(['new', 'old']);
    expect(r.sem.since).toEqual({ old: '2026-01-07T11:35:00Z', new: '2026-01-07T12:00:00Z' });
  });
  it("holders without since (CoreOS's locksmith) or with a bad since never expire", () => {
    const coreos = decodeSemaphore('{"semaphore":0,"max":1,"holders":["coreos-machine"]}', 'k');
    expect(() => lockOp({ ...coreos, expire: 60 }, 'new', 'k', T0)).toThrow(/maximum/);
    const mixed: Semaphore = { semaphore: 0, max: 3, holders: ['coreos', 'garbled', 'old'], since: { garbled: 'yesterday', old: '2026-01-07T11:00:00Z' }, expire: 600 };
    const r = lockOp(mixed, 'new', 'k', T0);
    expect(r.expired.map((x) => x.id)).toEqual(['old']);
    expect(r.sem.holders).toEqual(['coreos', 'garbled', 'new']);
    expect(r.sem.semaphore).toBe(0);
  });
  it('the JSON stays CoreOS-compatible: same first fields, since only for holders, unknown fields kept', () => {
    const text = '{"semaphore":0,"max":1,"holders":["a"],"since":{"a":"2026-01-07T12:00:00Z","gone":"2026-01-01T00:00:00Z"},"expire":900,"future":{"x":1}}';
    const s = decodeSemaphore(text, 'k');
    expect(s.expire).toBe(900);
    expect(encodeSemaphore(s)).toBe('{"semaphore":0,"max":1,"holders":["a"],"since":{"a":"2026-01-07T12:00:00Z"},"expire":900,"future":{"x":1}}');
    // Our fields read leniently: a bad expire is never, bad since entries are ignored.
    expect(decodeSemaphore('{"semaphore":1,"max":1,"holders":null,"expire":"15m","since":{"a":3}}', 'k')).toEqual({ semaphore: 1, max: 1, holders: null });
    expect(() => decodeSemaphore('{"semaphore":1,"max":1,"holders":[1]}', 'k')).toThrow(/not a locksmith semaphore/);
  });
  it('unlock removes since (also of a stale holder); set-max keeps since and expire; set-expire sets or clears', () => {
    expect(unlockOp(stale(), 'old', 'k')).toEqual({ semaphore: 1, max: 1, holders: [], expire: 900 });
    expect(setMaxOp(stale(), 2)).toEqual({ ...stale(), semaphore: 1, max: 2 });
    expect(encodeSemaphore(setExpireOp({ semaphore: 1, max: 1, holders: null }, 90))).toBe('{"semaphore":1,"max":1,"holders":null,"expire":90}');
    expect(encodeSemaphore(setExpireOp(stale(), 0))).toBe('{"semaphore":0,"max":1,"holders":["old"],"since":{"old":"2026-01-07T11:35:00Z"}}');
    expect(() => setExpireOp(stale(), 1.5)).toThrow(/whole number/);
  });
});

describe('durations', () => {
  it('parses Go durations', () => {
    expect(['15m', '1h30m', '0', '1.5h', '300ms', '90s', '2h0m0s', '+5m', '1000us'].map(parseGoDuration)).toEqual([900_000, 5_400_000, 0, 5_400_000, 300, 90_000, 7_200_000, 300_000, 1]);
    expect(parseGoDuration('-5m')).toBe(-300_000);
    for (const bad of ['', '15', 'm', '1d', '1h 30m', 'soon', '.m']) expect(parseGoDuration(bad), bad).toBeUndefined();
  });
  it('set-expire takes whole seconds, 0 disables', () => {
    expect(parseExpire('15m')).toBe(900);
    expect(parseExpire('0')).toBe(0);
    expect(parseExpire('1h30m')).toBe(5400);
    expect(() => parseExpire('500ms')).toThrow(/whole number of seconds/);
    expect(() => parseExpire('-5m')).toThrow(/negative/);
    try {
      parseExpire('soon');
      expect.unreachable();
    } catch (e) {
      expect((e as BasaltError).code).toBe('E_DURATION_INVALID');
      expect((e as BasaltError).hint).toMatch(/15m/);
    }
  });
  it('formats durations', () => {
    expect([25 * MIN + 3000, 15 * MIN, 90 * MIN, 0, -5, 45_999, 26 * 60 * MIN + MIN].map(formatDuration)).toEqual(['25m3s', '15m', '1h30m', '0s', '0s', '45s', '26h1m']);
    expect([130 * MIN, 30_000, 60 * MIN, (6 * 24 * 60 + 130) * MIN - 1].map(formatWait)).toEqual(['2h 10m', '1m', '1h', '6d 2h 10m']);
  });
});

describe('locksmithctl status', () => {
  const id1 = '0123abcd0123abcd0123abcd0123abcd';
  const id2 = '4567ef004567ef004567ef004567ef00';
  it('prints CoreOS lines first, then each holder HELD/STATE and the waiting machines', () => {
    const sem: Semaphore = { semaphore: 0, max: 1, holders: [id1], since: { [id1]: '2026-01-07T11:34:57Z' }, expire: 900 };
    const out = formatStatus(sem, [{ id: id2, since: '2026-01-07T11:57:50Z', reason: 'the lock is at its maximum' }], T0);
    expect(out).toBe(
      [
        'Available: 0',
        'Max: 1',
        'Expire: 15m',
        '',
        'MACHINE ID                         HELD    STATE',
        `${id1}   25m3s   STALE (expires on the next lock attempt)`,
        '',
        'WAITING                            SINCE   REASON',
        `${id2}   2m10s   the lock is at its maximum`,
        '',
      ].join('\n'),
    );
  });
  it('holders without since show -; fresh holders say when they go stale; no expire says never', () => {
    const sem: Semaphore = { semaphore: -1, max: 1, holders: ['b', 'a'], since: { b: '2026-01-07T11:55:00Z' }, expire: 600 };
    expect(formatStatus(sem, [], T0)).toBe(
      'Available: -1\nMax: 1\nExpire: 10m\n\n' +
        'MACHINE ID                         HELD    STATE\n' +
        'a                                  -       held (no start time: never expires)\n' +
        'b                                  5m      held (stale in 5m)\n',
    );
    expect(formatStatus({ semaphore: 1, max: 1, holders: null }, [], T0)).toBe('Available: 1\nMax: 1\nExpire: never\n');
    expect(formatStatus({ semaphore: 1, max: 2, holders: ['a'], since: { a: '2026-01-07T10:00:00Z' }, expire: 60 }, [{ id: 'w', reason: '-' }], T0)).toBe(
      'Available: 1\nMax: 2\nExpire: 1m\n\n' +
        'MACHINE ID                         HELD    STATE\n' +
        'a                                  2h      STALE (expires on a lock attempt that finds the lock full)\n\n' +
        'WAITING                            SINCE   REASON\n' +
        'w                                  -       -\n',
    );
  });
  it('waiting keys sit next to the semaphore key', () => {
    expect(waitingKey('abc')).toBe('coreos.com/updateengine/rebootlock/waiting/abc');
    expect(waitingKey('a/b', 'g 1')).toBe('coreos.com/updateengine/rebootlock/groups/g%201/waiting/a%2Fb');
    expect(waitingPrefix('g')).toBe('coreos.com/updateengine/rebootlock/groups/g/waiting/');
    expect(prefixEnd('a/').toString()).toBe('a0');
  });
});

describe('settings from the environment over update.conf', () => {
  const files = { REBOOT_STRATEGY: 'reboot', LOCKSMITHD_ENDPOINT: 'http://file:2379', LOCKSMITHD_GROUP: 'file-group', LOCKSMITHD_REBOOT_WINDOW_START: '01:00', LOCKSMITHD_REBOOT_WINDOW_LENGTH: '1h' };
  it('defaults', () => {
    expect(locksmithSettings({}, {})).toEqual({ strategy: 'reboot', window: undefined, windowText: undefined, endpoints: ['http://127.0.0.1:2379', 'http://127.0.0.1:4001'], group: undefined, etcd: {}, warnings: [] });
  });
  it('the environment (a drop-in) wins over the files, per variable; empty values are unset', () => {
    const s = locksmithSettings(
      { REBOOT_STRATEGY: 'etcd-lock', LOCKSMITHD_ENDPOINT: 'http://a:2379, https://b:2379', LOCKSMITHD_GROUP: '', LOCKSMITHD_ETCD_CAFILE: '/ca.pem', LOCKSMITHD_ETCD_USERNAME: 'root', LOCKSMITHD_ETCD_PASSWORD: 'pw' },
      files,
    );
    expect(s.strategy).toBe('etcd-lock');
    expect(s.endpoints).toEqual(['http://a:2379', 'https://b:2379']);
    expect(s.group).toBe('file-group');
    expect(s.etcd).toEqual({ caFile: '/ca.pem', certFile: undefined, keyFile: undefined, username: 'root', password: 'pw' });
    expect(s.windowText).toBe('01:00 for 1h');
    expect(locksmithSettings({ LOCKSMITHD_GROUP: 'env-group' }, files).group).toBe('env-group');
    expect(locksmithSettings({ LOCKSMITHD_GROUP: 'env-group' }, files, { group: 'flag' }).group).toBe('flag');
  });
  it("the window: cloudinit's REBOOT_WINDOW_* in the environment win over the files; LOCKSMITHD_ names win in the same layer", () => {
    expect(locksmithSettings({ REBOOT_WINDOW_START: 'Thu 23:00', REBOOT_WINDOW_LENGTH: '2h' }, files)).toMatchObject({ window: { day: 4, minuteOfDay: 23 * 60, lengthMs: 7_200_000 }, windowText: 'Thu 23:00 for 2h' });
    expect(locksmithSettings({ REBOOT_WINDOW_START: '05:00', LOCKSMITHD_REBOOT_WINDOW_START: '06:00', REBOOT_WINDOW_LENGTH: '1h' }, {}).windowText).toBe('06:00 for 1h');
    expect(locksmithSettings({}, { REBOOT_WINDOW_START: '05:00', REBOOT_WINDOW_LENGTH: '30m' }).windowText).toBe('05:00 for 30m');
    const half = locksmithSettings({ REBOOT_WINDOW_START: '05:00' }, {});
    expect(half.window).toBeUndefined();
    expect(half.warnings).toEqual(['REBOOT_WINDOW_START is set without REBOOT_WINDOW_LENGTH: ignoring the reboot window']);
    expect(() => locksmithSettings({ REBOOT_WINDOW_START: '25:00', REBOOT_WINDOW_LENGTH: '1h' }, {})).toThrow(/^REBOOT_WINDOW_START='25:00'/);
  });
  it('rejects bad endpoints and a certificate without its key; warns about unknown strategies', () => {
    const lock = { REBOOT_STRATEGY: 'etcd-lock' };
    expect(() => locksmithSettings({ ...lock, LOCKSMITHD_ENDPOINT: 'http://a:2379,etcd:2379' }, {})).toThrow(/LOCKSMITHD_ENDPOINT: 'etcd:2379' is not an http\(s\) URL/);
    expect(() => locksmithSettings({ ...lock, LOCKSMITHD_ETCD_CERTFILE: '/c.pem' }, {})).toThrow(/CERTFILE and LOCKSMITHD_ETCD_KEYFILE must be set together/);
    // Only etcd-lock uses etcd; with off, nothing else is read (locksmithd exits first).
    expect(locksmithSettings({ LOCKSMITHD_ENDPOINT: 'etcd:2379' }, {}).strategy).toBe('reboot');
    expect(locksmithSettings({ REBOOT_STRATEGY: 'off', REBOOT_WINDOW_START: 'never', REBOOT_WINDOW_LENGTH: '1h' }, {})).toEqual({ strategy: 'off', endpoints: [], etcd: {}, warnings: [] });
    expect(locksmithSettings({ REBOOT_STRATEGY: 'best-effort' }, {}).warnings[0]).toMatch(/best-effort was removed/);
    expect(locksmithSettings({}, { REBOOT_STRATEGY: 'off' }).strategy).toBe('off');
  });
});

/** A RebootLock double recording calls; `onLock` decides each lock attempt. */
function fakeLock(events: string[], onLock: (n: number) => unknown, holders: string[] = []) {
  let n = 0;
  return {
    lock: async (id: string) => {
      events.push(`lock ${id}`);
      const r = onLock(n++);
      if (r instanceof Error) throw r;
      return r ?? { sem: { semaphore: 0, max: 1, holders: [id] }, expired: [] };
    },
    unlock: async (id: string) => void events.push(`unlock ${id}`),
    get: async () => ({ sem: { semaphore: 0, max: 1, holders }, rev: '1' }),
  } as unknown as RebootLock;
}

function fakeWaiting(events: string[], fail = false): WaitingRegistry {
  return {
    register: async (reason, since) => {
      events.push(`wait ${since.toISOString()} ${reason}`);
      if (fail) throw new Error('etcd is down');
    },
    clear: async () => void events.push('clear'),
  };
}

function deps(t0: Date, events: string[], extra: Partial<CoordinatorDeps>): CoordinatorDeps & { slept: number[]; logs: string[] } {
  let t = t0.getTime();
  const slept: number[] = [];
  const logs: string[] = [];
  return {
    strategy: 'etcd-lock',
    id: 'me',
    now: () => new Date(t),
    sleep: async (ms) => {
      slept.push(ms);
      t += ms;
    },
    reboot: async () => void events.push('reboot'),
    log: { info: (m) => void logs.push(m), warn: (m) => void logs.push(`warn: ${m}`) },
    advance: (ms: number) => (t += ms),
    slept,
    logs,
    ...extra,
  } as CoordinatorDeps & { slept: number[]; logs: string[] };
}

describe('coordinateReboot', () => {
  it('registers as waiting while the lock is full (same since), clears it when it takes the lock, then reboots', async () => {
    const events: string[] = [];
    const full = new BasaltError('E_LOCK_UNAVAILABLE', 'the reboot lock is at its maximum of 1 holder(s): other');
    const d = deps(T0, events, { lock: fakeLock(events, (n) => (n < 2 ? full : undefined)), waiting: fakeWaiting(events) });
    expect(await coordinateReboot(d)).toBe('rebooted');
    const since = T0.toISOString();
    expect(events).toEqual(['lock me', `wait ${since} the lock is at its maximum`, 'lock me', `wait ${since} the lock is at its maximum`, 'lock me', 'clear', 'reboot']);
    expect(d.slept).toEqual([5000, 10000]);
  });
  it('logs the stale holders its lock expired', async () => {
    const events: string[] = [];
    const expired = { sem: { semaphore: 0, max: 1, holders: ['me'], expire: 900 }, expired: [{ id: 'dead', since: '', heldMs: 25 * MIN }] };
    const d = deps(T0, events, { lock: fakeLock(events, () => expired) });
    await coordinateReboot(d);
    expect(d.logs).toContain('warn: expired the stale reboot lock of dead (held 25m, expire 15m)');
    expect(events).toEqual(['lock me', 'reboot']);
  });
  it('re-checks the window after taking the lock: a lock taken after the window closed is released until the next window (Flatcar #407)', async () => {
    const events: string[] = [];
    const window = parseWindow('23:00', '1h');
    const start = new Date(2026, 0, 7, 23, 59, 50);
    // The first lock takes 20 s to come through: the window has closed by then.
    const d = deps(start, events, {
      window,
      lock: fakeLock(events, (n) => {
        if (n === 0) (d as unknown as { advance(ms: number): void }).advance(20_000);
        return undefined;
      }),
      waiting: fakeWaiting(events),
    });
    expect(await coordinateReboot(d)).toBe('rebooted');
    expect(events.slice(0, 3)).toEqual(['lock me', 'unlock me', `wait ${new Date(2026, 0, 8, 0, 0, 10).toISOString()} outside the reboot window (opens in 23h)`]);
    // Sleeps of at most 5 min keep the registration's lease alive, until 23:00 the next day.
    expect(Math.max(...d.slept)).toBe(300_000);
    expect(d.slept.reduce((a, b) => a + b, 0)).toBe(23 * 60 * MIN - 10_000);
    expect(events.slice(-3)).toEqual(['lock me', 'clear', 'reboot']);
    expect(events.filter((e) => e.startsWith('wait')).length).toBe(d.slept.length);
    expect(d.logs).toContain('warn: the reboot window closed while taking the reboot lock: releasing it until the next window');
  });
  it('without a registry (reboot strategy) it sleeps once until the window; a failing registry only warns', async () => {
    const events: string[] = [];
    const d = deps(new Date(2026, 0, 7, 22, 0), events, { strategy: 'reboot', window: parseWindow('23:00', '1h') });
    await coordinateReboot(d);
    expect(d.slept).toEqual([3_600_000]);
    const e2: string[] = [];
    const d2 = deps(new Date(2026, 0, 7, 22, 58), e2, { window: parseWindow('23:00', '1h'), lock: fakeLock(e2, () => undefined), waiting: fakeWaiting(e2, true) });
    expect(await coordinateReboot(d2)).toBe('rebooted');
    expect(d2.logs.filter((l) => l.startsWith('warn: cannot register as waiting for the reboot lock (etcd is down)')).length).toBe(1);
    expect(e2.at(-1)).toBe('reboot');
  });
  it('releaseOwnLock releases a held lock at start, retrying while etcd is unreachable', async () => {
    const events: string[] = [];
    let gets = 0;
    const lock = {
      get: async () => {
        if (gets++ === 0) throw new BasaltError('E_ETCD', 'etcd v3/kv/range failed: http://127.0.0.1:2379: connect ECONNREFUSED');
        return { sem: { semaphore: 0, max: 1, holders: ['me'] }, rev: '1' };
      },
      unlock: async (id: string) => void events.push(`unlock ${id}`),
    } as unknown as RebootLock;
    const d = deps(T0, events, { lock });
    expect(await releaseOwnLock(d)).toBe(true);
    expect(events).toEqual(['unlock me']);
    expect(d.slept).toEqual([5000]);
    expect(d.logs.at(-1)).toBe('released the reboot lock held by me');
    expect(await releaseOwnLock({ ...d, lock: fakeLock(events, () => undefined, ['other']) })).toBe(false);
    expect(await releaseOwnLock({ ...d, strategy: 'reboot' })).toBe(false);
  });
});

describe('REBOOT_STRATEGY=fleetlock', () => {
  it('needs LOCKSMITHD_FLEETLOCK_URL, an http(s) URL', () => {
    expect(locksmithSettings({ REBOOT_STRATEGY: 'fleetlock', LOCKSMITHD_FLEETLOCK_URL: 'http://fleet:8080/' }, {})).toMatchObject({ strategy: 'fleetlock', fleetLockUrl: 'http://fleet:8080/' });
    expect(locksmithSettings({}, { REBOOT_STRATEGY: 'fleetlock', LOCKSMITHD_FLEETLOCK_URL: 'https://fleet/', LOCKSMITHD_GROUP: 'workers' })).toMatchObject({ fleetLockUrl: 'https://fleet/', group: 'workers' });
    expect(() => locksmithSettings({ REBOOT_STRATEGY: 'fleetlock' }, {})).toThrow(/LOCKSMITHD_FLEETLOCK_URL/);
    expect(locksmithSettings({ REBOOT_STRATEGY: 'fleet_lock', LOCKSMITHD_FLEETLOCK_URL: 'http://fleet/' }, {}).strategy).toBe('fleetlock');
    expect(() => locksmithSettings({ REBOOT_STRATEGY: 'fleetlock', LOCKSMITHD_FLEETLOCK_URL: 'fleet:8080' }, {})).toThrow(/not an http/);
  });
  it('asks pre-reboot until granted (backing off), then reboots; steady-state at start', async () => {
    const events: string[] = [];
    let n = 0;
    const fleetLock = {
      preReboot: async () => (events.push('pre-reboot'), ++n >= 3),
      steadyState: async () => (events.push('steady-state'), true),
    };
    const d = deps(T0, events, { strategy: 'fleetlock', fleetLock });
    expect(await releaseOwnLock(d)).toBe(true);
    expect(await coordinateReboot(d)).toBe('rebooted');
    expect(events).toEqual(['steady-state', 'pre-reboot', 'pre-reboot', 'pre-reboot', 'reboot']);
    expect(d.slept).toEqual([5000, 10000]);
  });
});

/**
 * locksmith: reboot coordination after an update. The etcd-lock strategy uses
 * CoreOS's semaphore (key coreos.com/updateengine/rebootlock/semaphore, value
 * {"semaphore":N,"max":M,"holders":[...]}) updated by compare-and-swap. Basalt
 * talks to etcd's v3 KV API through its JSON gateway (/v3/kv/range, /v3/kv/txn):
 * the CAS compares the key's mod_revision, as locksmith's v2 client compared
 * PrevIndex. Reboot windows follow LOCKSMITHD_REBOOT_WINDOW_START/_LENGTH.
 */
import got, { type Got } from 'got';
import { BasaltError } from '../../common/src/errors.js';
import { parseDuration } from './util.js';

export const SEMAPHORE_KEY = 'coreos.com/updateengine/rebootlock/semaphore';

/** The key of a group's semaphore (locksmith -group). */
export function semaphoreKey(group?: string): string {
  return group ? `coreos.com/updateengine/rebootlock/groups/${encodeURIComponent(group)}/semaphore` : SEMAPHORE_KEY;
}

export interface Semaphore {
  semaphore: number;
  max: number;
  holders: string[] | null;
}

/** CoreOS's JSON text of a semaphore (holders sorted; null when empty, as Go marshals a nil slice). Pure. */
export function encodeSemaphore(s: Semaphore): string {
  const holders = s.holders && s.holders.length ? [...s.holders].sort() : null;
  return JSON.stringify({ semaphore: s.semaphore, max: s.max, holders });
}

export function decodeSemaphore(text: string, key: string): Semaphore {
  let o: Partial<Semaphore>;
  try {
    o = JSON.parse(text) as Partial<Semaphore>;
  } catch {
    throw new BasaltError('E_LOCK_INVALID', `${key}: value is not JSON`);
  }
  if (typeof o.semaphore !== 'number' || typeof o.max !== 'number' || !(o.holders === null || o.holders === undefined || Array.isArray(o.holders))) {
    throw new BasaltError('E_LOCK_INVALID', `${key}: value is not a locksmith semaphore`);
  }
  return { semaphore: o.semaphore, max: o.max, holders: o.holders ?? null };
}

/** Pure semaphore operations (locksmith lock/lock.go). */
export function lockOp(s: Semaphore, id: string, key: string): Semaphore {
  const h = s.holders ?? [];
  if (h.includes(id)) throw new BasaltError('E_LOCK_HELD', `${id} already holds the reboot lock (${key})`);
  if (s.semaphore <= 0) throw new BasaltError('E_LOCK_UNAVAILABLE', `the reboot lock is at its maximum of ${s.max} holder(s): ${h.join(', ')}`, { details: { retry: true } });
  return { semaphore: s.semaphore - 1, max: s.max, holders: [...h, id].sort() };
}

export function unlockOp(s: Semaphore, id: string, key: string): Semaphore {
  const h = s.holders ?? [];
  if (!h.includes(id)) throw new BasaltError('E_LOCK_NOT_HELD', `${id} does not hold the reboot lock (${key})`);
  return { semaphore: s.semaphore + 1, max: s.max, holders: h.filter((x) => x !== id) };
}

export function setMaxOp(s: Semaphore, max: number): Semaphore {
  if (!Number.isInteger(max) || max < 0) throw new BasaltError('E_USAGE', `max ${max} must be a non-negative integer`);
  return { semaphore: s.semaphore + (max - s.max), max, holders: s.holders };
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** A minimal etcd v3 KV client over the JSON gateway. */
export class EtcdKv {
  private readonly http: Got;
  constructor(readonly endpoints: string[]) {
    if (endpoints.length === 0) throw new BasaltError('E_USAGE', 'no etcd endpoints');
    this.http = got.extend({ retry: { limit: 0 }, timeout: { request: 10_000 }, responseType: 'json' });
  }
  private async post<T>(path: string, body: unknown): Promise<T> {
    let last: unknown;
    for (const ep of this.endpoints) {
      try {
        return (await this.http.post(new URL(path, ep.endsWith('/') ? ep : ep + '/'), { json: body })).body as T;
      } catch (e) {
        last = e;
      }
    }
    throw new BasaltError('E_ETCD', `cannot reach etcd at ${this.endpoints.join(', ')}: ${(last as Error)?.message}`, { hint: 'check LOCKSMITHD_ENDPOINT / -endpoint and that etcd is running' });
  }
  async get(key: string): Promise<{ value: string; modRevision: string } | undefined> {
    const r = await this.post<{ kvs?: { value?: string; mod_revision?: string }[] }>('v3/kv/range', { key: b64(key) });
    const kv = r.kvs?.[0];
    if (!kv) return undefined;
    return { value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'), modRevision: kv.mod_revision ?? '0' };
  }
  /** Puts `value` if the key's mod_revision is still `modRevision` ('0' = the key must not exist). */
  async cas(key: string, value: string, modRevision: string): Promise<boolean> {
    const compare =
      modRevision === '0' ? { key: b64(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' } : { key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: modRevision };
    const r = await this.post<{ succeeded?: boolean }>('v3/kv/txn', { compare: [compare], success: [{ request_put: { key: b64(key), value: b64(value) } }] });
    return r.succeeded === true;
  }
}

/** The reboot lock: read-modify-CAS loops over the semaphore. */
export class RebootLock {
  readonly key: string;
  constructor(
    private readonly kv: EtcdKv,
    group?: string,
  ) {
    this.key = semaphoreKey(group);
  }
  /** Reads the semaphore, creating it ({semaphore:1,max:1,holders:null}) when absent. */
  async get(): Promise<{ sem: Semaphore; rev: string }> {
    for (;;) {
      const v = await this.kv.get(this.key);
      if (v) return { sem: decodeSemaphore(v.value, this.key), rev: v.modRevision };
      await this.kv.cas(this.key, encodeSemaphore({ semaphore: 1, max: 1, holders: null }), '0');
    }
  }
  private async update(op: (s: Semaphore) => Semaphore): Promise<Semaphore> {
    for (let i = 0; i < 1000; i++) {
      const { sem, rev } = await this.get();
      const next = op(sem);
      if (await this.kv.cas(this.key, encodeSemaphore(next), rev)) return next;
    }
    throw new BasaltError('E_LOCK_CONTENDED', `${this.key}: too much contention`);
  }
  lock(id: string) {
    return this.update((s) => lockOp(s, id, this.key));
  }
  unlock(id: string) {
    return this.update((s) => unlockOp(s, id, this.key));
  }
  setMax(max: number) {
    return this.update((s) => setMaxOp(s, max));
  }
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface RebootWindow {
  /** Day of week 0-6, or undefined for every day. */
  day?: number | undefined;
  minuteOfDay: number;
  lengthMs: number;
}

/** Parses LOCKSMITHD_REBOOT_WINDOW_START ("Thu 23:00" or "23:00") and _LENGTH ("1h30m"). */
export function parseWindow(start: string, length: string): RebootWindow {
  const m = /^(?:(\w{3})\w*\s+)?(\d{1,2}):(\d{2})$/.exec(start.trim());
  const day = m?.[1] ? DAYS.indexOf(m[1].toLowerCase()) : undefined;
  if (!m || day === -1 || Number(m[2]) > 23 || Number(m[3]) > 59) throw new BasaltError('E_WINDOW_INVALID', `LOCKSMITHD_REBOOT_WINDOW_START='${start}' is not '[Day ]HH:MM'`);
  const lengthMs = parseDuration(length.trim());
  if (lengthMs === undefined || lengthMs <= 0) throw new BasaltError('E_WINDOW_INVALID', `LOCKSMITHD_REBOOT_WINDOW_LENGTH='${length}' is not a duration such as 1h30m`);
  return { day, minuteOfDay: Number(m[2]) * 60 + Number(m[3]), lengthMs };
}

/** Milliseconds until the window opens (0 when `now` is inside it). Local time, as locksmith. Pure. */
export function untilWindow(w: RebootWindow, now: Date): number {
  const period = w.day === undefined ? 86_400_000 : 7 * 86_400_000;
  // The most recent window start at or before now.
  const start = new Date(now);
  start.setHours(Math.floor(w.minuteOfDay / 60), w.minuteOfDay % 60, 0, 0);
  if (w.day !== undefined) start.setDate(start.getDate() - ((start.getDay() - w.day + 7) % 7));
  if (start.getTime() > now.getTime()) start.setTime(start.getTime() - period);
  const since = now.getTime() - start.getTime();
  if (since < w.lengthMs) return 0;
  return period - since;
}

/** Lock retry backoff: 5 s doubling to 5 min (locksmithd). Pure. */
export function lockBackoff(attempt: number): number {
  return Math.min(300_000, 5_000 * 2 ** attempt);
}

export type Strategy = 'reboot' | 'etcd-lock' | 'off';

export interface CoordinatorDeps {
  strategy: Strategy;
  window?: RebootWindow | undefined;
  lock?: RebootLock | undefined;
  id: string;
  now(): Date;
  sleep(ms: number): Promise<void>;
  reboot(): Promise<void>;
  log: { info(m: string): void; warn(m: string): void };
}

/**
 * locksmithd's start: with etcd-lock, release a lock this machine still holds
 * (that is how the lock is freed after the reboot it was taken for).
 */
export async function releaseOwnLock(d: CoordinatorDeps): Promise<boolean> {
  if (d.strategy !== 'etcd-lock' || !d.lock) return false;
  const { sem } = await d.lock.get();
  if (!sem.holders?.includes(d.id)) return false;
  await d.lock.unlock(d.id);
  d.log.info(`released the reboot lock held by ${d.id}`);
  return true;
}

/** Once a reboot is needed: wait for the window, take the lock (etcd-lock), reboot. Returns what it did. */
export async function coordinateReboot(d: CoordinatorDeps): Promise<'rebooted' | 'off'> {
  if (d.strategy === 'off') {
    d.log.info('REBOOT_STRATEGY=off: not rebooting');
    return 'off';
  }
  for (let attempt = 0; ; attempt++) {
    if (d.window) {
      const wait = untilWindow(d.window, d.now());
      if (wait > 0) {
        d.log.info(`waiting ${Math.round(wait / 1000)} s for the reboot window`);
        await d.sleep(wait);
        continue;
      }
    }
    if (d.strategy === 'etcd-lock') {
      try {
        await d.lock!.lock(d.id);
      } catch (e) {
        if (e instanceof BasaltError && e.code === 'E_LOCK_HELD') {
          /* ours already: go on */
        } else {
          const wait = lockBackoff(Math.min(attempt, 6));
          d.log.warn(`cannot take the reboot lock (${(e as Error).message}); retrying in ${wait / 1000} s`);
          await d.sleep(wait);
          continue;
        }
      }
    }
    await d.reboot();
    return 'rebooted';
  }
}

/**
 * locksmith: reboot coordination after an update. The etcd-lock strategy uses
 * CoreOS's semaphore (key coreos.com/updateengine/rebootlock/semaphore, value
 * {"semaphore":N,"max":M,"holders":[...]}) updated by compare-and-swap. Basalt
 * talks to etcd's v3 API through its JSON gateway (/v3/kv/range, /v3/kv/txn,
 * /v3/lease/*): the CAS compares the key's mod_revision, as locksmith's v2
 * client compared PrevIndex. Reboot windows follow
 * LOCKSMITHD_REBOOT_WINDOW_START/_LENGTH (or the legacy REBOOT_WINDOW_*).
 *
 * Basalt extends the semaphore compatibly (CoreOS's locksmith ignores unknown
 * fields): "since" {id: RFC3339} records when each holder took the lock, and
 * "expire" (seconds, absent = never) lets the next lock attempt that finds
 * the lock full drop holders that held it longer (a machine that died while
 * holding the lock, coreos/bugs #1886). Machines that wait register under
 * .../rebootlock/waiting/<id> with a lease, for `locksmithctl status`.
 */
import type { Got } from 'got';
import { readFile } from 'node:fs/promises';
import { BasaltError, COMMON_ERRORS } from '../../../common/src/errors.js';
import { parseDuration } from '../format/duration.js';
import { UE_ERRORS } from '../errors.js';
import { REBOOT_WINDOW_START, UPDATE_CONF_DEFAULTS, type RebootStrategy } from '../../../common/src/contracts.js';
import { HTTP_ERRORS, httpClient, requestText, type TextReply, type TlsFiles } from '../../../common/src/http.js';

export const SEMAPHORE_KEY = 'coreos.com/updateengine/rebootlock/semaphore';

/** The key of a group's semaphore (locksmith -group). */
export function semaphoreKey(group?: string): string {
  return group ? `coreos.com/updateengine/rebootlock/groups/${encodeURIComponent(group)}/semaphore` : SEMAPHORE_KEY;
}

/** The prefix of the waiting machines' keys, next to the semaphore key. */
export function waitingPrefix(group?: string): string {
  return semaphoreKey(group).replace(/semaphore$/, 'waiting/');
}

export function waitingKey(id: string, group?: string): string {
  return waitingPrefix(group) + encodeURIComponent(id);
}

// ---------------------------------------------------------------------------
// Durations

/** Go's time.ParseDuration ("15m", "1h30m", "1.5h", "300ms", "0") in milliseconds; undefined when invalid. Pure. */
export function parseGoDuration(text: string): number | undefined {
  const s = text.trim();
  const m = /^([+-]?)(.*)$/.exec(s)!;
  const sign = m[1] === '-' ? -1 : 1;
  const body = m[2]!;
  if (body === '0') return 0;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let used = 0;
  for (let r = re.exec(body); r; r = re.exec(body)) {
    total += Number(r[1]) * unit[r[2]!]!;
    used = re.lastIndex;
  }
  if (used === 0 || used !== body.length) return undefined;
  return sign * total;
}

/** An expire duration (set-expire) in whole seconds; 0 disables. Pure. */
export function parseExpire(text: string): number {
  const ms = parseGoDuration(text);
  if (ms === undefined) throw new BasaltError(UE_ERRORS.E_DURATION_INVALID, `'${text}' is not a duration`, { hint: 'give a Go-style duration such as 15m, 1h30m or 90s; 0 disables expiry' });
  if (ms < 0) throw new BasaltError(UE_ERRORS.E_DURATION_INVALID, `'${text}' is negative`, { hint: 'give 0 to disable expiry' });
  const seconds = ms / 1000;
  if (!Number.isInteger(seconds)) throw new BasaltError(UE_ERRORS.E_DURATION_INVALID, `'${text}' is not a whole number of seconds`, { hint: 'give a duration such as 15m, 1h30m or 90s' });
  return seconds;
}

/** Compact Go-style duration in whole seconds (floored): 25m3s, 1h30m, 15m, 45s, 0s. Pure. */
export function formatDuration(ms: number): string {
  let s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return (h ? `${h}h` : '') + (m ? `${m}m` : '') + (s ? `${s}s` : '') || '0s';
}

/** A wait for people, minutes rounded up: "2h 10m", "3d 4h 1m", "1m". Pure. */
export function formatWait(ms: number): string {
  let m = Math.max(1, Math.ceil(ms / 60_000));
  const d = Math.floor(m / 1440);
  m -= d * 1440;
  const h = Math.floor(m / 60);
  m -= h * 60;
  return [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : ''].filter(Boolean).join(' ');
}

/** RFC 3339 in UTC with whole seconds, as Go's time.RFC3339 writes it. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// ---------------------------------------------------------------------------
// The semaphore

export interface Semaphore {
  semaphore: number;
  max: number;
  holders: string[] | null;
  /** Basalt: when each holder took the lock (RFC 3339). Holders without an entry (CoreOS's locksmith) never expire. */
  since?: Record<string, string> | undefined;
  /** Basalt: seconds after which a holder is stale; absent or 0 = never. */
  expire?: number | undefined;
  /** Fields this version does not know (a newer writer's), written back unchanged. */
  extra?: Record<string, unknown> | undefined;
}

const KNOWN_FIELDS = new Set(['semaphore', 'max', 'holders', 'since', 'expire']);

/**
 * The JSON text of a semaphore: CoreOS's three fields first, exactly as
 * locksmith writes them (holders sorted; null when empty, as Go marshals a
 * nil slice), then "since" (only for current holders; omitted when empty) and
 * "expire" (omitted when 0). Pure.
 */
export function encodeSemaphore(s: Semaphore): string {
  const holders = s.holders?.length ? [...s.holders].sort() : null;
  const o: Record<string, unknown> = { semaphore: s.semaphore, max: s.max, holders };
  const since = Object.entries(s.since ?? {})
    .filter(([id]) => holders?.includes(id))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (since.length) o['since'] = Object.fromEntries(since);
  if (s.expire && s.expire > 0) o['expire'] = s.expire;
  for (const [k, v] of Object.entries(s.extra ?? {})) if (!KNOWN_FIELDS.has(k)) o[k] = v;
  return JSON.stringify(o);
}

/** Parses a semaphore; Basalt's own fields are read leniently (a bad "since" entry never expires, a bad "expire" is never). Pure. */
export function decodeSemaphore(text: string, key: string): Semaphore {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BasaltError(UE_ERRORS.E_LOCK_INVALID, `${key}: value is not JSON`, { hint: 'fix or delete the key (locksmithctl recreates it)' });
  }
  const notASemaphore = () => new BasaltError(UE_ERRORS.E_LOCK_INVALID, `${key}: value is not a locksmith semaphore`, { hint: 'fix or delete the key (locksmithctl recreates it)' });
  if (typeof parsed !== 'object' || parsed === null) throw notASemaphore();
  const o = parsed as Record<string, unknown>;
  const holders = o['holders'];
  if (
    typeof o['semaphore'] !== 'number' || typeof o['max'] !== 'number' ||
    !(holders === null || holders === undefined || (Array.isArray(holders) && holders.every((h) => typeof h === 'string')))
  ) {
    throw notASemaphore();
  }
  const s: Semaphore = { semaphore: o['semaphore'], max: o['max'], holders: holders ?? null };
  const since = o['since'];
  if (since && typeof since === 'object' && !Array.isArray(since)) {
    const entries = Object.entries(since as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string');
    if (entries.length) s.since = Object.fromEntries(entries);
  }
  const expire = o['expire'];
  if (typeof expire === 'number' && Number.isFinite(expire) && expire > 0) s.expire = expire;
  const extra = Object.entries(o).filter(([k]) => !KNOWN_FIELDS.has(k));
  if (extra.length) s.extra = Object.fromEntries(extra);
  return s;
}

/** How long `id` has held the lock at `now` (undefined without a valid "since"). Pure. */
export function heldMs(s: Semaphore, id: string, now: Date): number | undefined {
  const t = s.since?.[id];
  const at = t === undefined ? NaN : Date.parse(t);
  return Number.isFinite(at) ? now.getTime() - at : undefined;
}

export interface ExpiredHolder {
  id: string;
  since: string;
  heldMs: number;
}

/** Holders whose "since" is older than "expire" at `now` (none when expire is unset). Pure. */
export function staleHolders(s: Semaphore, now: Date): ExpiredHolder[] {
  if (!s.expire || s.expire <= 0) return [];
  const out: ExpiredHolder[] = [];
  for (const id of s.holders ?? []) {
    const ms = heldMs(s, id, now);
    if (ms !== undefined && ms > s.expire * 1000) out.push({ id, since: s.since![id]!, heldMs: ms });
  }
  return out;
}

function withoutHolders(s: Semaphore, ids: string[]): Semaphore {
  const since = Object.fromEntries(Object.entries(s.since ?? {}).filter(([id]) => !ids.includes(id)));
  return { ...s, semaphore: s.semaphore + ids.length, holders: (s.holders ?? []).filter((h) => !ids.includes(h)), since };
}

export interface LockResult {
  sem: Semaphore;
  /** Stale holders this lock dropped to make room. */
  expired: ExpiredHolder[];
}

/**
 * Takes the lock for `id` (locksmith lock/lock.go), recording `now` in
 * "since". When the semaphore is at 0 and "expire" is set, stale holders are
 * dropped first, in the same compare-and-swap. Pure.
 */
export function lockOp(s: Semaphore, id: string, key: string, now: Date): LockResult {
  const h = s.holders ?? [];
  if (h.includes(id)) throw new BasaltError(UE_ERRORS.E_LOCK_HELD, `${id} already holds the reboot lock (${key})`);
  let cur = s;
  let expired: ExpiredHolder[] = [];
  if (cur.semaphore <= 0) {
    expired = staleHolders(cur, now);
    if (expired.length) cur = withoutHolders(cur, expired.map((x) => x.id));
  }
  if (cur.semaphore <= 0) {
    throw new BasaltError(UE_ERRORS.E_LOCK_UNAVAILABLE, `the reboot lock is at its maximum of ${s.max} holder(s): ${h.join(', ')}`, {
      details: { retry: true },
      hint: 'wait for a holder to reboot and unlock, or remove a dead holder with locksmithctl unlock ID (or set-expire)',
    });
  }
  return {
    sem: { ...cur, semaphore: cur.semaphore - 1, holders: [...(cur.holders ?? []), id].sort(), since: { ...cur.since, [id]: rfc3339(now) } },
    expired,
  };
}

export function unlockOp(s: Semaphore, id: string, key: string): Semaphore {
  const h = s.holders ?? [];
  if (!h.includes(id)) throw new BasaltError(UE_ERRORS.E_LOCK_NOT_HELD, `${id} does not hold the reboot lock (${key})`);
  const since = Object.fromEntries(Object.entries(s.since ?? {}).filter(([holder]) => holder !== id));
  return { ...s, semaphore: s.semaphore + 1, holders: h.filter((x) => x !== id), since: Object.keys(since).length ? since : undefined };
}

export function setMaxOp(s: Semaphore, max: number): Semaphore {
  if (!Number.isInteger(max) || max < 0) throw new BasaltError(COMMON_ERRORS.E_USAGE, `max ${max} must be a non-negative integer`);
  return { ...s, semaphore: s.semaphore + (max - s.max), max };
}

/** Sets the cluster-wide expiry in seconds (0 = never). Pure. */
export function setExpireOp(s: Semaphore, seconds: number): Semaphore {
  if (!Number.isInteger(seconds) || seconds < 0) throw new BasaltError(COMMON_ERRORS.E_USAGE, `expire ${seconds} must be a non-negative whole number of seconds`);
  return { ...s, expire: seconds || undefined };
}

// ---------------------------------------------------------------------------
// Waiting machines

export interface Waiter {
  id: string;
  /** RFC 3339; undefined when the value is not Basalt's. */
  since?: string | undefined;
  reason: string;
}

export const REASON_FULL = 'the lock is at its maximum';
export const reasonWindow = (waitMs: number) => `outside the reboot window (opens in ${formatWait(waitMs)})`;

export function encodeWaiter(since: Date, reason: string): string {
  return JSON.stringify({ since: rfc3339(since), reason });
}

export function decodeWaiter(id: string, text: string): Waiter {
  try {
    const o = JSON.parse(text) as { since?: unknown; reason?: unknown };
    return { id, since: typeof o.since === 'string' ? o.since : undefined, reason: typeof o.reason === 'string' ? o.reason : '-' };
  } catch {
    return { id, reason: '-' };
  }
}

/** Where a waiting machine says so (coordinateReboot). */
export interface WaitingRegistry {
  /** Registers (or refreshes) this machine as waiting since `since` for `reason`. */
  register(reason: string, since: Date): Promise<void>;
  /** Removes the registration (the lock was taken). */
  clear(): Promise<void>;
}

/** A waiting registration in etcd: a key under the lock's waiting/ prefix, on a lease refreshed by each register(). */
export class EtcdWaiting implements WaitingRegistry {
  readonly key: string;
  private lease: string | undefined;
  constructor(
    private readonly kv: EtcdKv,
    id: string,
    group?: string,
    private readonly ttlSeconds = 600,
  ) {
    this.key = waitingKey(id, group);
  }
  async register(reason: string, since: Date): Promise<void> {
    if (this.lease !== undefined && (await this.kv.leaseKeepAlive(this.lease)) <= 0) this.lease = undefined;
    this.lease ??= await this.kv.leaseGrant(this.ttlSeconds);
    try {
      await this.kv.put(this.key, encodeWaiter(since, reason), this.lease);
    } catch (e) {
      // The lease ran out between the keep-alive and the put.
      if (!(e instanceof BasaltError && e.details['grpcCode'] === 5)) throw e;
      this.lease = await this.kv.leaseGrant(this.ttlSeconds);
      await this.kv.put(this.key, encodeWaiter(since, reason), this.lease);
    }
  }
  async clear(): Promise<void> {
    await this.kv.deleteRange(this.key);
    const lease = this.lease;
    this.lease = undefined;
    if (lease !== undefined) await this.kv.leaseRevoke(lease).catch(() => {});
  }
}

/** The machines registered as waiting for the lock of `group`. */
export async function listWaiters(kv: EtcdKv, group?: string): Promise<Waiter[]> {
  const prefix = waitingPrefix(group);
  const kvs = await kv.rangePrefix(prefix, 1000);
  return kvs.map((x) => {
    const raw = x.key.slice(prefix.length);
    let id = raw;
    try {
      id = decodeURIComponent(raw);
    } catch {
      /* not ours: show it as it is */
    }
    return decodeWaiter(id, x.value);
  });
}

// ---------------------------------------------------------------------------
// locksmithctl status

function holderState(s: Semaphore, ms: number | undefined): string {
  if (!s.expire) return 'held';
  if (ms === undefined) return 'held (no start time: never expires)';
  if (ms > s.expire * 1000) return s.semaphore <= 0 ? 'STALE (expires on the next lock attempt)' : 'STALE (expires on a lock attempt that finds the lock full)';
  return `held (stale in ${formatDuration(s.expire * 1000 - ms)})`;
}

function table(rows: string[][], idWidth: number): string {
  const w = Math.max(5, ...rows.map((r) => r[1]!.length)) + 3;
  return rows.map((r) => `${r[0]!.padEnd(idWidth)}${r[1]!.padEnd(w)}${r[2]}`.trimEnd() + '\n').join('');
}

/**
 * `locksmithctl status`: CoreOS's "Available: N" and "Max: M" lines first,
 * then "Expire:", then (when there are holders) the MACHINE ID table whose
 * rows start with the holder's id as CoreOS's list did, then the waiting
 * machines, oldest first. Pure.
 */
export function formatStatus(s: Semaphore, waiters: Waiter[], now: Date): string {
  let out = `Available: ${s.semaphore}\nMax: ${s.max}\nExpire: ${s.expire ? formatDuration(s.expire * 1000) : 'never'}\n`;
  const holders = [...(s.holders ?? [])].sort();
  const idWidth = Math.max(32, ...holders.map((h) => h.length), ...waiters.map((w) => w.id.length)) + 3;
  if (holders.length) {
    const rows = holders.map((id) => {
      const ms = heldMs(s, id, now);
      return [id, ms === undefined ? '-' : formatDuration(ms), holderState(s, ms)];
    });
    out += '\n' + table([['MACHINE ID', 'HELD', 'STATE'], ...rows], idWidth);
  }
  if (waiters.length) {
    const at = (w: Waiter) => (w.since === undefined ? NaN : Date.parse(w.since));
    const sorted = [...waiters].sort((a, b) => (at(a) || Infinity) - (at(b) || Infinity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const rows = sorted.map((w) => [w.id, Number.isFinite(at(w)) ? formatDuration(now.getTime() - at(w)) : '-', w.reason]);
    out += '\n' + table([['WAITING', 'SINCE', 'REASON'], ...rows], idWidth);
  }
  return out;
}

// ---------------------------------------------------------------------------
// etcd

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');

/** The key after every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]!++;
      return end;
    }
  }
  return Buffer.from([0]);
}

export interface EtcdOptions {
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** Per request and endpoint (default 10 s). */
  timeoutMs?: number | undefined;
  /** Largest reply body accepted (default 1 MiB). */
  maxBytes?: number | undefined;
}

interface Reply {
  status: number;
  json: Record<string, unknown>;
}

/** One line for a transport failure: 'no reply within N s' for a timeout, else the cause. */
function timeoutText(e: unknown, ms: number): string {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause : e;
  if (cause instanceof Error && (cause.name === 'TimeoutError' || (cause as NodeJS.ErrnoException).code === 'ETIMEDOUT')) return `no reply within ${ms / 1000} s`;
  return cause instanceof Error ? cause.message : String(cause);
}

/** A transport-level failure of one endpoint: try the next. */
class EndpointFailure extends Error {}

/** A minimal etcd v3 client over the JSON gateway: bounded in time and bytes, endpoints tried in turn. */
export class EtcdKv {
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private preferred = 0;
  private token: string | undefined;
  private tls: Promise<TlsFiles> | undefined;
  private clients: Promise<{ plain: Got; secure: Got }> | undefined;

  constructor(
    readonly endpoints: string[],
    private readonly opts: EtcdOptions = {},
  ) {
    if (endpoints.length === 0) throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, 'no etcd endpoints', { hint: 'set LOCKSMITHD_ENDPOINT or pass -endpoint' });
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxBytes = opts.maxBytes ?? 1024 * 1024;
  }

  private tlsFiles() {
    this.tls ??= (async () => {
      const rd = async (path: string | undefined, what: string) => {
        if (!path) return undefined;
        try {
          return await readFile(path);
        } catch (e) {
          throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, `${path}: cannot read the etcd ${what}: ${(e as Error).message}`, { hint: 'check LOCKSMITHD_ETCD_CAFILE/_CERTFILE/_KEYFILE (locksmithctl: -etcd-cafile, -etcd-certfile, -etcd-keyfile)' });
        }
      };
      const [ca, cert, key] = await Promise.all([rd(this.opts.caFile, 'CA file'), rd(this.opts.certFile, 'certificate'), rd(this.opts.keyFile, 'key')]);
      return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
    })();
    return this.tls;
  }

  /** The one HTTP client setup, with etcd's TLS files for https endpoints; one request at most timeoutMs. */
  private client(secure: boolean): Promise<Got> {
    this.clients ??= (async () => {
      const limits = { connectMs: this.timeoutMs, stallMs: this.timeoutMs, totalMs: this.timeoutMs };
      return { plain: httpClient(limits), secure: httpClient(limits, await this.tlsFiles()) };
    })();
    return this.clients.then((c) => (secure ? c.secure : c.plain));
  }

  private endpointUrl(ep: string, path: string): URL {
    try {
      return new URL(path, ep.endsWith('/') ? ep : ep + '/');
    } catch {
      throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, `etcd endpoint '${ep}' is not a URL`, { hint: 'give endpoints such as http://10.0.0.1:2379' });
    }
  }

  private async postOnce(ep: string, path: string, body: string, auth: boolean): Promise<Reply> {
    const url = this.endpointUrl(ep, path);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (auth && this.token) headers['authorization'] = this.token;
    let reply: TextReply;
    try {
      reply = await requestText(await this.client(url.protocol === 'https:'), url.toString(), { method: 'POST', body, headers, maxBytes: this.maxBytes });
    } catch (e) {
      if (e instanceof BasaltError && e.code === UE_ERRORS.E_ETCD_CONFIG.code) throw e;
      const msg = e instanceof BasaltError && e.code === HTTP_ERRORS.E_HTTP_TOO_LARGE.code ? `reply is larger than ${this.maxBytes} bytes` : timeoutText(e, this.timeoutMs);
      throw new EndpointFailure(msg);
    }
    let json: unknown;
    try {
      json = JSON.parse(reply.text);
    } catch {
      json = undefined;
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) {
      throw new EndpointFailure(`HTTP ${reply.status}: reply is not a JSON object${reply.text ? ` (${JSON.stringify(reply.text.slice(0, 80))})` : ''}`);
    }
    return { status: reply.status, json: json as Record<string, unknown> };
  }

  private async authenticate(ep: string): Promise<void> {
    const r = await this.postOnce(ep, 'v3/auth/authenticate', JSON.stringify({ name: this.opts.username, password: this.opts.password ?? '' }), false);
    if (r.status >= 300 || typeof r.json['token'] !== 'string') throw etcdError(ep, 'v3/auth/authenticate', r);
    this.token = r.json['token'];
  }

  /** POSTs `body` to `path`, trying the endpoints in turn from the last one that answered. */
  async post(path: string, body: unknown): Promise<Record<string, unknown>> {
    const text = JSON.stringify(body);
    const failures: string[] = [];
    for (let k = 0; k < this.endpoints.length; k++) {
      const i = (this.preferred + k) % this.endpoints.length;
      const ep = this.endpoints[i]!;
      try {
        if (this.opts.username && !this.token) await this.authenticate(ep);
        let r = await this.postOnce(ep, path, text, true);
        if (this.opts.username && isAuthFailure(r)) {
          this.token = undefined;
          await this.authenticate(ep);
          r = await this.postOnce(ep, path, text, true);
        }
        if (r.status >= 500) throw new EndpointFailure(`HTTP ${r.status}: ${errorText(r)}`);
        this.preferred = i;
        if (r.status >= 300) throw etcdError(ep, path, r);
        return r.json;
      } catch (e) {
        if (!(e instanceof EndpointFailure)) throw e;
        failures.push(`${ep}: ${e.message}`);
      }
    }
    throw new BasaltError(UE_ERRORS.E_ETCD, `etcd ${path} failed: ${failures.join('; ')}`, { hint: 'check LOCKSMITHD_ENDPOINT / -endpoint and that etcd is running and reachable (a machine runs etcd only when its cloud-config starts etcd2.service)' });
  }

  async range(key: string, rangeEnd?: Buffer, limit?: number): Promise<{ key: string; value: string; modRevision: string }[]> {
    const r = await this.post('v3/kv/range', { key: b64(key), ...(rangeEnd ? { range_end: rangeEnd.toString('base64') } : {}), ...(limit ? { limit } : {}) });
    const kvs = Array.isArray(r['kvs']) ? (r['kvs'] as { key?: string; value?: string; mod_revision?: string }[]) : [];
    return kvs.map((kv) => ({ key: unb64(kv.key), value: unb64(kv.value), modRevision: kv.mod_revision ?? '0' }));
  }
  async get(key: string): Promise<{ value: string; modRevision: string } | undefined> {
    const kv = (await this.range(key))[0];
    return kv && { value: kv.value, modRevision: kv.modRevision };
  }
  rangePrefix(prefix: string, limit?: number) {
    return this.range(prefix, prefixEnd(prefix), limit);
  }
  /** Puts `value` if the key's mod_revision is still `modRevision` ('0' = the key must not exist). */
  async cas(key: string, value: string, modRevision: string): Promise<boolean> {
    const compare =
      modRevision === '0' ? { key: b64(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' } : { key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: modRevision };
    const r = await this.post('v3/kv/txn', { compare: [compare], success: [{ request_put: { key: b64(key), value: b64(value) } }] });
    return r['succeeded'] === true;
  }
  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.post('v3/kv/put', { key: b64(key), value: b64(value), ...(lease !== undefined ? { lease } : {}) });
  }
  async deleteRange(key: string): Promise<void> {
    await this.post('v3/kv/deleterange', { key: b64(key) });
  }
  /** Grants a lease; its ID as a decimal string (int64 does not fit a JS number). */
  async leaseGrant(ttlSeconds: number): Promise<string> {
    const r = await this.post('v3/lease/grant', { TTL: ttlSeconds });
    if (typeof r['ID'] !== 'string' && typeof r['ID'] !== 'number') throw new BasaltError(UE_ERRORS.E_ETCD, `etcd v3/lease/grant: no lease ID in the reply`);
    return String(r['ID']);
  }
  /**
   * Waits until `key` changes at or after revision `fromRevision` (an etcd v3 watch through the
   * JSON gateway's streaming /v3/watch), at most `timeoutMs`. 'changed' as soon as an event (or a
   * compaction past `fromRevision`) arrives; 'timeout' at the deadline; 'failed' when no endpoint
   * would watch (the caller then waits the time out). The stream is bounded in bytes as every reply.
   */
  async watch(key: string, fromRevision: number, timeoutMs: number): Promise<'changed' | 'timeout' | 'failed'> {
    const body = JSON.stringify({ create_request: { key: b64(key), start_revision: String(fromRevision) } });
    const ep = this.endpoints[this.preferred]!;
    let url: URL;
    try {
      url = new URL('v3/watch', ep.endsWith('/') ? ep : ep + '/');
    } catch {
      return 'failed';
    }
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token) headers['authorization'] = this.token;
    const limit = this.maxBytes;
    const client = await this.client(url.protocol === 'https:');
    return new Promise((resolve) => {
      let done = false;
      // The watch outlives one request's time limit: this timer bounds it instead.
      const stream = client.stream.post(url, { body, headers, timeout: { request: timeoutMs + 5000, socket: timeoutMs + 5000 } });
      const finish = (r: 'changed' | 'timeout' | 'failed') => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        stream.destroy();
        resolve(r);
      };
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      let text = '';
      stream.on('response', (res: { statusCode: number }) => {
        if (res.statusCode >= 300) finish('failed');
      });
      stream.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        if (text.length > limit) return finish('failed');
        // One JSON object per message: {"result":{"created":true,...}}, then {"result":{"events":[...]}}.
        if (/"events"\s*:\s*\[\s*\{/.test(text) || /"compact_revision"\s*:\s*"?[1-9]/.test(text) || /"canceled"\s*:\s*true/.test(text)) finish('changed');
      });
      stream.on('end', () => finish('failed'));
      stream.on('error', () => finish('failed'));
    });
  }
  /** Refreshes a lease; its remaining TTL in seconds, 0 when it is gone. */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.post('v3/lease/keepalive', { ID: id });
    const result = (r['result'] ?? r) as Record<string, unknown>;
    return Number(result['TTL'] ?? 0) || 0;
  }
  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.post('v3/lease/revoke', { ID: id });
    } catch (e) {
      if (!(e instanceof BasaltError && e.details['grpcCode'] === 5)) throw e;
    }
  }
}

function errorText(r: Reply): string {
  const m = r.json['message'] ?? r.json['error'];
  return typeof m === 'string' ? m : JSON.stringify(r.json).slice(0, 200);
}

function isAuthFailure(r: Reply): boolean {
  const m = r.json['message'];
  return r.status === 401 || r.json['code'] === 16 || (typeof m === 'string' && /auth token|token is expired/i.test(m));
}

function etcdError(ep: string, path: string, r: Reply): BasaltError {
  const code = typeof r.json['code'] === 'number' ? r.json['code'] : undefined;
  return new BasaltError(UE_ERRORS.E_ETCD, `etcd ${path} at ${ep}: ${errorText(r)} (HTTP ${r.status})`, {
    details: { endpoint: ep, status: r.status, grpcCode: code },
    hint: r.status === 401 || code === 16 || code === 7 || path === 'v3/auth/authenticate' ? 'check LOCKSMITHD_ETCD_USERNAME/_PASSWORD (locksmithctl: -etcd-username, -etcd-password)' : undefined,
  });
}

// ---------------------------------------------------------------------------
// The reboot lock

/** The reboot lock: read-modify-CAS loops over the semaphore. */
export class RebootLock {
  readonly key: string;
  constructor(
    readonly kv: EtcdKv,
    readonly group?: string,
  ) {
    this.key = semaphoreKey(group);
  }
  /** The mod_revision of the semaphore as last read. */
  private lastRev: string | undefined;
  /** Reads the semaphore, creating it ({semaphore:1,max:1,holders:null}) when absent. */
  async get(): Promise<{ sem: Semaphore; rev: string }> {
    for (;;) {
      const v = await this.kv.get(this.key);
      if (v) {
        this.lastRev = v.modRevision;
        return { sem: decodeSemaphore(v.value, this.key), rev: v.modRevision };
      }
      await this.kv.cas(this.key, encodeSemaphore({ semaphore: 1, max: 1, holders: null }), '0');
    }
  }
  private async update<R>(op: (s: Semaphore) => [Semaphore, R]): Promise<R> {
    for (let i = 0; i < 1000; i++) {
      const { sem, rev } = await this.get();
      const [next, result] = op(sem);
      if (await this.kv.cas(this.key, encodeSemaphore(next), rev)) return result;
    }
    throw new BasaltError(UE_ERRORS.E_LOCK_CONTENDED, `${this.key}: too much contention`, { hint: 'try again' });
  }
  /**
   * Waits (at most `ms`) for the semaphore to change after it was last read, so a machine
   * waiting for the lock retries as soon as a holder releases it rather than at its next
   * backoff step; sleeps the time out when etcd would not watch.
   */
  async waitForChange(ms: number, sleep: (ms: number) => Promise<void>): Promise<void> {
    const t0 = Date.now();
    const r = this.lastRev === undefined ? 'failed' : await this.kv.watch(this.key, Number(this.lastRev) + 1, ms);
    if (r === 'failed') await sleep(Math.max(0, ms - (Date.now() - t0)));
  }
  lock(id: string, now: Date = new Date()): Promise<LockResult> {
    return this.update((s) => {
      const r = lockOp(s, id, this.key, now);
      return [r.sem, r];
    });
  }
  unlock(id: string): Promise<Semaphore> {
    return this.update((s) => {
      const n = unlockOp(s, id, this.key);
      return [n, n];
    });
  }
  setMax(max: number): Promise<Semaphore> {
    return this.update((s) => {
      const n = setMaxOp(s, max);
      return [n, n];
    });
  }
  setExpire(seconds: number): Promise<Semaphore> {
    return this.update((s) => {
      const n = setExpireOp(s, seconds);
      return [n, n];
    });
  }
}

/** The log line of an expired holder. Pure. */
export function expiredMessage(x: ExpiredHolder, expireSeconds: number): string {
  return `expired the stale reboot lock of ${x.id} (held ${formatDuration(x.heldMs)}, expire ${formatDuration(expireSeconds * 1000)})`;
}

// ---------------------------------------------------------------------------
// Reboot windows

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface RebootWindow {
  /** Day of week 0-6, or undefined for every day. */
  day?: number | undefined;
  minuteOfDay: number;
  lengthMs: number;
}

/** Parses a window start ("Thu 23:00" or "23:00") and length ("1h30m"); `names` are the variables for messages. */
export function parseWindow(start: string, length: string, names: [string, string] = ['LOCKSMITHD_REBOOT_WINDOW_START', 'LOCKSMITHD_REBOOT_WINDOW_LENGTH']): RebootWindow {
  const m = REBOOT_WINDOW_START.exec(start.trim());
  const day = m?.[1] ? DAYS.indexOf(m[1].toLowerCase()) : undefined;
  if (!m || day === -1 || Number(m[2]) > 23 || Number(m[3]) > 59) throw new BasaltError(UE_ERRORS.E_WINDOW_INVALID, `${names[0]}='${start}' is not '[Day ]HH:MM'`, { hint: "e.g. 'Thu 23:00' or '04:00'" });
  const lengthMs = parseDuration(length.trim());
  if (lengthMs === undefined || lengthMs <= 0) throw new BasaltError(UE_ERRORS.E_WINDOW_INVALID, `${names[1]}='${length}' is not a duration such as 1h30m`, { hint: 'e.g. 1h30m' });
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

// ---------------------------------------------------------------------------
// Settings: the unit's environment over update.conf

export type Strategy = RebootStrategy;

export interface LocksmithSettings {
  strategy: Strategy;
  window?: RebootWindow | undefined;
  /** The window as configured, for logs ("Thu 23:00 for 1h"). */
  windowText?: string | undefined;
  endpoints: string[];
  group?: string | undefined;
  etcd: EtcdOptions;
  /** REBOOT_STRATEGY=fleetlock: the FleetLock server (LOCKSMITHD_FLEETLOCK_URL). */
  fleetLockUrl?: string | undefined;
  warnings: string[];
}

type Env = Record<string, string | undefined>;

/**
 * locksmithd's settings from the process environment (a systemd drop-in, as
 * coreos-cloudinit writes from coreos.locksmith) over the update.conf
 * variables `fileVars` (resolveConf's `vars`): per variable the environment
 * wins, empty values count as unset (CoreOS's flagsFromEnv), and for the
 * window the LOCKSMITHD_REBOOT_WINDOW_* names win over the legacy
 * REBOOT_WINDOW_* ones in the same layer. `flags.group` (--group) wins over
 * LOCKSMITHD_GROUP. Pure.
 */
export function locksmithSettings(env: Env, fileVars: Record<string, string>, flags: { group?: string | undefined } = {}): LocksmithSettings {
  const nonEmpty = (v: string | undefined) => (v !== undefined && v.trim() !== '' ? v.trim() : undefined);
  const pick = (...names: string[]): { name: string; value: string } | undefined => {
    for (const layer of [env, fileVars]) {
      for (const name of names) {
        const value = nonEmpty(layer[name]);
        if (value !== undefined) return { name, value };
      }
    }
    return undefined;
  };
  const warnings: string[] = [];

  let strategy: Strategy = 'reboot';
  const st = pick('REBOOT_STRATEGY');
  if (st?.value === 'reboot' || st?.value === 'etcd-lock' || st?.value === 'fleetlock' || st?.value === 'off') strategy = st.value;
  // Zincati's name for the same strategy (its [updates] strategy = "fleet_lock", base_url in [updates.fleet_lock]).
  else if (st?.value === 'fleet_lock') strategy = 'fleetlock';
  else if (st?.value === 'best-effort') warnings.push("REBOOT_STRATEGY=best-effort was removed in locksmith 0.6.0; using 'reboot'");
  else if (st) warnings.push(`REBOOT_STRATEGY='${st.value}' is not reboot, etcd-lock, fleetlock or off; using 'reboot'`);
  // As locksmithd: with 'off' nothing else is read; etcd settings only matter to etcd-lock.
  if (strategy === 'off') return { strategy, endpoints: [], etcd: {}, warnings };

  const ws = pick('LOCKSMITHD_REBOOT_WINDOW_START', 'REBOOT_WINDOW_START');
  const wl = pick('LOCKSMITHD_REBOOT_WINDOW_LENGTH', 'REBOOT_WINDOW_LENGTH');
  let window: RebootWindow | undefined;
  let windowText: string | undefined;
  if (ws && wl) {
    window = parseWindow(ws.value, wl.value, [ws.name, wl.name]);
    windowText = `${ws.value} for ${wl.value}`;
  } else if (ws || wl) {
    const set = (ws ?? wl)!.name;
    warnings.push(`${set} is set without ${set.replace(/_(START|LENGTH)$/, (_, w: string) => (w === 'START' ? '_LENGTH' : '_START'))}: ignoring the reboot window`);
  }

  const ep = pick('LOCKSMITHD_ENDPOINT');
  const endpoints = ep ? ep.value.split(',').map((s) => s.trim()).filter(Boolean) : [...UPDATE_CONF_DEFAULTS.etcdEndpoints];
  const etcdLock = strategy === 'etcd-lock';
  if (etcdLock) for (const e of endpoints) checkEndpoint(e, ep?.name ?? 'LOCKSMITHD_ENDPOINT');
  if (etcdLock && endpoints.length === 0) throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, 'LOCKSMITHD_ENDPOINT names no endpoint', { hint: 'give comma-separated URLs such as http://10.0.0.1:2379' });

  const etcd: EtcdOptions = {
    caFile: pick('LOCKSMITHD_ETCD_CAFILE')?.value,
    certFile: pick('LOCKSMITHD_ETCD_CERTFILE')?.value,
    keyFile: pick('LOCKSMITHD_ETCD_KEYFILE')?.value,
    username: pick('LOCKSMITHD_ETCD_USERNAME')?.value,
    password: pick('LOCKSMITHD_ETCD_PASSWORD')?.value,
  };
  if (etcdLock) checkEtcdOptions(etcd, 'LOCKSMITHD_ETCD_');
  const group = nonEmpty(flags.group) ?? pick('LOCKSMITHD_GROUP')?.value;
  let fleetLockUrl: string | undefined;
  if (strategy === 'fleetlock') {
    const u = pick('LOCKSMITHD_FLEETLOCK_URL');
    if (!u) throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, 'REBOOT_STRATEGY=fleetlock needs LOCKSMITHD_FLEETLOCK_URL', { hint: 'set LOCKSMITHD_FLEETLOCK_URL=http://fleet.example:8080/ in /etc/coreos/update.conf' });
    checkEndpoint(u.value, u.name);
    fleetLockUrl = u.value;
  }
  return { strategy, window, windowText, endpoints, group, etcd, ...(fleetLockUrl ? { fleetLockUrl } : {}), warnings };
}

/** An endpoint must be an http(s) URL. */
export function checkEndpoint(e: string, what: string): void {
  let ok = false;
  try {
    const u = new URL(e);
    ok = u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    ok = false;
  }
  if (!ok) throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, `${what}: '${e}' is not an http(s) URL`, { hint: 'give comma-separated URLs such as http://10.0.0.1:2379' });
}

export function checkEtcdOptions(o: EtcdOptions, prefix: string): void {
  if ((o.certFile === undefined) !== (o.keyFile === undefined)) {
    throw new BasaltError(UE_ERRORS.E_ETCD_CONFIG, `${prefix}CERTFILE and ${prefix}KEYFILE must be set together`, { hint: 'a client certificate needs its key' });
  }
}

// ---------------------------------------------------------------------------
// Coordination

export interface CoordinatorDeps {
  strategy: Strategy;
  window?: RebootWindow | undefined;
  lock?: RebootLock | undefined;
  /** REBOOT_STRATEGY=fleetlock: the FleetLock calls (pre-reboot: true = slot granted). */
  fleetLock?: { preReboot(): Promise<boolean>; steadyState(): Promise<boolean> } | undefined;
  /** Where this machine registers while it waits (etcd-lock); none = not registered. */
  waiting?: WaitingRegistry | undefined;
  id: string;
  now(): Date;
  sleep(ms: number): Promise<void>;
  /** Waits at most `ms` for the reboot lock to change (a release); default: sleep(ms). */
  waitForLock?(ms: number): Promise<void>;
  reboot(): Promise<void>;
  log: { info(m: string): void; warn(m: string): void };
}

/** The longest single sleep while registered as waiting: the registration's lease (600 s) is refreshed sooner. */
export const WAITING_REFRESH_MS = 300_000;

/** Runs `op` until it succeeds, warning and backing off (5 s doubling to 5 min) after failures. */
async function retrying<T>(d: CoordinatorDeps, what: string, op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (e) {
      const wait = lockBackoff(Math.min(attempt, 6));
      d.log.warn(`cannot ${what} (${(e as Error).message}); retrying in ${wait / 1000} s`);
      await d.sleep(wait);
    }
  }
}

/**
 * locksmithd's start: with etcd-lock, release a lock this machine still holds
 * (that is how the lock is freed after the reboot it was taken for; the unit
 * starts after the health gate passed). etcd may not be up yet at boot, so it
 * retries with the lock backoff until etcd answers.
 */
export async function releaseOwnLock(d: CoordinatorDeps): Promise<boolean> {
  if (d.strategy === 'fleetlock' && d.fleetLock) {
    const fl = d.fleetLock;
    // Zincati's steady-state report: the slot taken before the reboot is given back.
    return retrying(d, 'report steady state to the FleetLock server', async () => {
      if (!(await fl.steadyState())) throw new Error('the FleetLock server refused steady-state');
      d.log.info('reported steady state to the FleetLock server');
      return true;
    });
  }
  if (d.strategy !== 'etcd-lock' || !d.lock) return false;
  const lock = d.lock;
  return retrying(d, 'release the reboot lock', async () => {
    const { sem } = await lock.get();
    if (!sem.holders?.includes(d.id)) return false;
    try {
      await lock.unlock(d.id);
    } catch (e) {
      if (e instanceof BasaltError && e.code === UE_ERRORS.E_LOCK_NOT_HELD.code) return false; // someone unlocked it meanwhile
      throw e;
    }
    d.log.info(`released the reboot lock held by ${d.id}`);
    return true;
  });
}

/**
 * Once a reboot is needed: wait for the window, take the lock (etcd-lock),
 * check the window again (the lock may come late: Flatcar #407), reboot.
 * While waiting it registers in d.waiting with the reason. Returns what it did.
 */
export async function coordinateReboot(d: CoordinatorDeps): Promise<'rebooted' | 'off'> {
  if (d.strategy === 'off') {
    d.log.info('REBOOT_STRATEGY=off: not rebooting');
    return 'off';
  }
  let waitingSince: Date | undefined;
  const waiting = async (reason: string) => {
    if (!d.waiting) return;
    waitingSince ??= d.now();
    try {
      await d.waiting.register(reason, waitingSince);
    } catch (e) {
      d.log.warn(`cannot register as waiting for the reboot lock (${(e as Error).message})`);
    }
  };
  let windowLogged = false;
  for (let attempt = 0; ; ) {
    if (d.window) {
      const wait = untilWindow(d.window, d.now());
      if (wait > 0) {
        if (!windowLogged) d.log.info(`waiting ${Math.round(wait / 1000)} s for the reboot window`);
        windowLogged = true;
        await waiting(reasonWindow(wait));
        await d.sleep(d.waiting ? Math.min(wait, WAITING_REFRESH_MS) : wait);
        continue;
      }
      windowLogged = false;
    }
    if (d.strategy === 'fleetlock' && d.fleetLock) {
      let granted = false;
      try {
        granted = await d.fleetLock.preReboot();
      } catch (e) {
        d.log.warn(`cannot reach the FleetLock server (${(e as Error).message})`);
      }
      if (!granted) {
        await waiting(REASON_FULL);
        const wait = lockBackoff(Math.min(attempt++, 6));
        d.log.info(`no reboot slot from the FleetLock server; retrying in ${wait / 1000} s`);
        await d.sleep(wait);
        continue;
      }
      if (d.window && untilWindow(d.window, d.now()) > 0) {
        d.log.warn('the reboot window closed while taking the FleetLock slot: giving it back until the next window');
        await retrying(d, 'give the FleetLock slot back', async () => {
          await d.fleetLock!.steadyState();
        });
        continue;
      }
    }
    if (d.strategy === 'etcd-lock') {
      const lock = d.lock!;
      try {
        const r = await lock.lock(d.id, d.now());
        for (const x of r.expired) d.log.warn(expiredMessage(x, r.sem.expire ?? 0));
      } catch (e) {
        if (e instanceof BasaltError && e.code === UE_ERRORS.E_LOCK_HELD.code) {
          /* ours already: go on */
        } else {
          const full = e instanceof BasaltError && e.code === UE_ERRORS.E_LOCK_UNAVAILABLE.code;
          await waiting(full ? REASON_FULL : `cannot take the lock: ${(e as Error).message}`);
          const wait = lockBackoff(Math.min(attempt++, 6));
          d.log.warn(`cannot take the reboot lock (${(e as Error).message}); retrying in ${wait / 1000} s${full && d.waitForLock ? ' or when it is released' : ''}`);
          await (full && d.waitForLock ? d.waitForLock(wait) : d.sleep(wait));
          continue;
        }
      }
      if (d.window && untilWindow(d.window, d.now()) > 0) {
        d.log.warn('the reboot window closed while taking the reboot lock: releasing it until the next window');
        await retrying(d, 'release the reboot lock', async () => {
          try {
            await lock.unlock(d.id);
          } catch (e) {
            if (!(e instanceof BasaltError && e.code === UE_ERRORS.E_LOCK_NOT_HELD.code)) throw e;
          }
        });
        continue;
      }
    }
    if (d.waiting && waitingSince) {
      await d.waiting.clear().catch((e: unknown) => d.log.warn(`cannot remove the waiting registration (${(e as Error).message}); its lease ends it`));
    }
    await d.reboot();
    return 'rebooted';
  }
}

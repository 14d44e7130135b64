/**
 * The fleet service inside `basalt serve`: before an update is offered it
 * asks the group's rollout policy (policy.ts) with the machine's record from
 * the store (store.ts); it records Omaha events; it serves the admin API
 * (/admin/v1/…, bearer token), the dashboard (/dashboard/), Prometheus
 * metrics (/metrics) and FleetLock (/v1/pre-reboot, /v1/steady-state).
 * The Omaha endpoint stays unauthenticated, as in CoreOS.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BasaltError, isBasaltError } from '../../../common/src/errors.js';
import type { Logger } from '../../../common/src/log.js';
import type { AppRequest } from '../format/omaha.js';
import { peekEnvelope, type ChannelMeta } from '../format/metadata.js';
import { isVersion } from '../format/version.js';
import type { OfferDecision } from '../format/offer.js';
import { UE_ERRORS } from '../errors.js';
import { readBody } from '../serve/body.js';
import { autoPauseReason, decideUpdate, parsePolicy, policyJson, policyPeriodMs, unsignedStop, wavePercent, type Policy } from './policy.js';
import { isRollbackEvent, type FleetStore, type Group } from './store.js';
import { FleetMetrics } from './metrics.js';
import { parseFleetLockBody, type FleetLock } from './fleetlock.js';
import { DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';

export interface FleetOptions {
  store: FleetStore;
  repo: string;
  /** The admin token; undefined = the admin API answers 401 to everything. */
  adminToken?: string | undefined;
  fleetLock?: FleetLock | undefined;
  /** Events older than this are deleted (default 30 days; checked at most hourly). */
  eventRetentionMs?: number | undefined;
  /** Largest admin or FleetLock request body (default 64 KiB). */
  maxBodyBytes?: number | undefined;
  now: () => Date;
  log: Logger;
}

/** What the fleet answers for one app's update check. */
export interface FleetAnswer {
  channel?: ChannelMeta | undefined;
  decision: OfferDecision;
}

const ADMIN = '/admin/v1/';
const GROUP_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Constant-time comparison of a presented token with the expected one (hashes first: equal lengths). */
export function tokenMatches(presented: string | undefined, expected: string | undefined): boolean {
  if (!expected || presented === undefined) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The bearer token of an Authorization header. */
export function bearer(h: string | undefined): string | undefined {
  const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  return m ? m[1] : undefined;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' }).end(text);
}

function errorJson(res: ServerResponse, e: unknown): void {
  if (isBasaltError(e)) {
    const status = e.code === UE_ERRORS.E_FLEET_AUTH.code ? 401 : e.code === UE_ERRORS.E_FLEET_NOT_FOUND.code ? 404 : e.code === UE_ERRORS.E_BODY_TOO_LARGE.code ? 413 : e.code === UE_ERRORS.E_FLEET_INVALID.code ? 400 : 500;
    json(res, status, { error: { code: e.code, message: e.message, hint: e.hint ?? null } });
    return;
  }
  json(res, 500, { error: { code: 'E_INTERNAL', message: (e as Error).message, hint: null } });
}

export class FleetService {
  readonly metrics = new FleetMetrics();
  private readonly releases = new Map<string, Promise<ChannelMeta | undefined>>();
  private lastPrune = 0;

  constructor(readonly o: FleetOptions) {}

  /** Records the Omaha events and pings of one app (before its check is answered). */
  async recordEvents(a: AppRequest): Promise<void> {
    if (a.events.length === 0) return;
    const m = await this.o.store.machine(a.machineId);
    const group = m?.group ?? a.track;
    const at = this.o.now().getTime();
    if (at - this.lastPrune > 3_600_000) {
      this.lastPrune = at;
      const gone = await this.o.store.pruneEvents(at - (this.o.eventRetentionMs ?? 30 * 86_400_000));
      if (gone > 0) this.o.log.info(`fleet: deleted ${gone} events past their retention`);
    }
    for (const e of a.events) {
      this.metrics.inc(this.metrics.events, { type: String(e.type), result: String(e.result) });
      const ev = { at, machineId: a.machineId, group, kind: 'event' as const, version: a.version, eventType: e.type, eventResult: e.result, errorCode: e.errorCode ?? null, previousVersion: e.previousVersion ?? null };
      if (isRollbackEvent(ev)) this.metrics.inc(this.metrics.rollbacks, { group, version: m?.offeredVersion ?? a.version });
      if (m) await this.o.store.addEvent(ev);
    }
  }

  /**
   * Decides one app's update check: the machine's group (its own, or the group
   * named as its track, created on first sight with that channel), the group's
   * channel, its policy, the automatic pause, the per-period slot.
   */
  async check(a: AppRequest, loadChannel: (track: string) => Promise<{ channel?: ChannelMeta; error?: string }>): Promise<FleetAnswer> {
    const store = this.o.store;
    const now = this.o.now();
    const before = await store.machine(a.machineId);
    const groupId = before?.group ?? (GROUP_RE.test(a.track) ? a.track : 'default');
    await store.checkIn({ id: a.machineId, group: groupId, version: a.version, track: a.track, board: a.board }, now.getTime());
    let g = await store.group(groupId);
    let s: { channel?: ChannelMeta; error?: string } | undefined;
    if (!g) {
      // A group is created on first sight only for a channel the repository has: tracks are the client's words.
      s = await loadChannel(groupId);
      if (!s.channel) {
        this.metrics.inc(this.metrics.checks, { group: '(none)' });
        this.metrics.inc(this.metrics.noupdate, { group: '(none)' });
        return { decision: { offer: false, why: s.error ?? `no group or channel '${groupId}'` } };
      }
      g = await store.putGroup(groupId, groupId, now.getTime());
    }
    const gid = g.id;
    this.metrics.inc(this.metrics.checks, { group: gid });
    const no = (why: string): FleetAnswer => {
      this.metrics.inc(this.metrics.noupdate, { group: gid });
      return { decision: { offer: false, why } };
    };
    if (!s || g.channel !== groupId) s = await loadChannel(g.channel);
    const ch = s.channel;
    if (!ch) return no(s.error ?? `no channel ${g.channel}`);
    if (a.board && ch.board && a.board !== ch.board) return no(`board ${a.board} != ${ch.board}`);
    const started = g.rolloutVersion === ch.version && g.rolloutStarted !== null ? g.rolloutStarted : await store.rolloutStart(g.id, ch.version, now.getTime());
    let paused = g.paused;
    if (!paused && g.policy.autoPause) {
      const reason = autoPauseReason(g.policy.autoPause, ch.version, await store.versionHealth(g.id, ch.version));
      if (reason) {
        await store.setPaused(g.id, true, `automatic pause: ${reason}`);
        this.metrics.inc(this.metrics.autoPauses, { group: g.id });
        this.o.log.warn(`fleet: group ${g.id} paused: ${reason}`);
        paused = true;
      }
    }
    const policy: Policy = { ...g.policy, paused };
    const d = decideUpdate({ policy, channelVersion: ch.version, channelPercent: ch.rollout.percent, rolloutStartedMs: started, machineId: a.machineId, machineVersion: a.version, now, signed: { channel: ch.channel, floors: ch.floors ?? [], holds: ch.holds ?? [] } });
    if (!d.offer) return no(d.why);
    const target = d.version === ch.version ? ch : await this.release(ch, d.version);
    if (!target) return no(`release ${d.version} is not in the repository`);
    const ok = await store.takeOffer(g.id, d.version, a.machineId, now.getTime(), policyPeriodMs(policy), policy.maxUpdates);
    if (!ok) return no(`${policy.maxUpdates} updates per ${policyPeriodMs(policy) / 1000} s reached`);
    this.metrics.inc(this.metrics.offered, { group: g.id, version: d.version });
    return { channel: target, decision: { offer: true } };
  }

  /** The channel metadata of an older release (a floor or pinned version), from payloads/<v>/manifest.json. */
  private release(ch: ChannelMeta, version: string): Promise<ChannelMeta | undefined> {
    if (!isVersion(version)) return Promise.resolve(undefined);
    let p = this.releases.get(version);
    if (!p) {
      p = (async () => {
        const mpath = `payloads/${version}/manifest.json`;
        try {
          const text = await readFile(join(this.o.repo, mpath), 'utf8');
          const m = peekEnvelope(text, mpath) as { version?: unknown; board?: unknown; payload?: { file?: unknown; size?: unknown; sha256?: unknown } };
          if (m.version !== version || typeof m.payload?.file !== 'string' || typeof m.payload.size !== 'number' || typeof m.payload.sha256 !== 'string') return undefined;
          const meta: ChannelMeta = {
            ...ch,
            version,
            board: typeof m.board === 'string' ? m.board : ch.board,
            manifest: mpath,
            manifestSha256: createHash('sha256').update(text).digest('hex'),
            payload: { path: `payloads/${version}/${m.payload.file}`, size: m.payload.size, sha256: m.payload.sha256 },
          };
          return meta;
        } catch {
          return undefined;
        }
      })();
      this.releases.set(version, p);
    }
    return p;
  }

  /** Serves the fleet's own paths; false when the path is not the fleet's. */
  async route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    if (path === '/metrics') {
      if (req.method !== 'GET') return this.methodNotAllowed(res, 'GET');
      const versions = await this.o.store.versions();
      const text = this.metrics.text([{ name: 'basalt_fleet_machines', help: 'machines by group and running version', rows: versions.map((v) => ({ labels: { group: v.group, version: v.version }, value: v.machines })) }]);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
      return true;
    }
    if (path === '/dashboard' || path === '/dashboard/' || path === '/dashboard/app.js') {
      if (req.method !== 'GET') return this.methodNotAllowed(res, 'GET');
      if (path === '/dashboard') {
        res.writeHead(301, { location: '/dashboard/' }).end();
        return true;
      }
      const js = path.endsWith('.js');
      const body = js ? DASHBOARD_JS : DASHBOARD_HTML;
      res
        .writeHead(200, {
          'content-type': js ? 'text/javascript; charset=utf-8' : 'text/html; charset=utf-8',
          'content-length': Buffer.byteLength(body),
          'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'",
          'x-frame-options': 'DENY',
        })
        .end(body);
      return true;
    }
    if (path === '/v1/pre-reboot' || path === '/v1/steady-state') {
      await this.fleetLockRequest(req, res, path === '/v1/pre-reboot' ? 'pre-reboot' : 'steady-state');
      return true;
    }
    if (path.startsWith(ADMIN)) {
      try {
        if (!tokenMatches(bearer(req.headers.authorization), this.o.adminToken)) {
          throw new BasaltError(UE_ERRORS.E_FLEET_AUTH, this.o.adminToken ? 'missing or wrong bearer token' : 'the admin API is off (basalt serve has no --admin-token-file)');
        }
        const body = req.method === 'GET' ? '' : await readBody(req, this.o.maxBodyBytes ?? 64 * 1024);
        let parsed: unknown = {};
        if (body.trim() !== '') {
          try {
            parsed = JSON.parse(body);
          } catch {
            throw new BasaltError(UE_ERRORS.E_FLEET_INVALID, 'the request body is not JSON');
          }
        }
        const r = await this.admin(req.method ?? 'GET', path.slice(ADMIN.length).split('/').map(decodeURIComponent), url.searchParams, parsed);
        json(res, 200, r);
      } catch (e) {
        errorJson(res, e);
      }
      return true;
    }
    return false;
  }

  private methodNotAllowed(res: ServerResponse, allow: string): true {
    res.writeHead(405, { allow }).end();
    return true;
  }

  private async fleetLockRequest(req: IncomingMessage, res: ServerResponse, op: 'pre-reboot' | 'steady-state'): Promise<void> {
    const fail = (status: number, kind: string, value: string) => json(res, status, { kind, value });
    if (req.method !== 'POST') { fail(405, 'method_not_allowed', 'use POST'); return; }
    if (!this.o.fleetLock) { fail(404, 'fleetlock_off', 'this server has no FleetLock (basalt serve --fleetlock-etcd URL)'); return; }
    if (req.headers['fleet-lock-protocol'] !== 'true') { fail(400, 'missing_header', 'the fleet-lock-protocol: true header is missing'); return; }
    let body: string;
    try {
      body = await readBody(req, 16 * 1024);
    } catch {
      fail(413, 'body_too_large', 'the body is over 16 KiB'); return;
    }
    const p = parseFleetLockBody(body);
    if ('kind' in p) { fail(400, p.kind, p.value); return; }
    try {
      const ok = op === 'pre-reboot' ? await this.o.fleetLock.preReboot(p) : await this.o.fleetLock.steadyState(p);
      if (ok) json(res, 200, {});
      else fail(409, 'semaphore_full', `group '${p.group}' has no free reboot slot (max ${this.o.fleetLock.o.max})`);
    } catch (e) {
      this.o.log.warn(`fleetlock ${op} for ${p.id}: ${(e as Error).message}`);
      fail(503, 'etcd_unavailable', (e as Error).message);
    }
  }

  /**
   * The group of a channel the repository has, created on first use: an
   * operator sets a channel's policy before any machine of it has checked in
   * (as a machine's first check would create it).
   */
  private async channelGroup(id: string, now: number): Promise<Group | undefined> {
    const has = await readFile(join(this.o.repo, 'channels', `${id}.json`)).then(
      () => true,
      () => false,
    );
    return has ? this.o.store.putGroup(id, id, now) : undefined;
  }

  /** The channels the repository publishes (channels/<name>.json; TUF's hash-named copies aside). */
  private async repoChannels(): Promise<string[]> {
    const names = await readdir(join(this.o.repo, 'channels')).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).filter((n) => GROUP_RE.test(n));
  }

  /**
   * A group's view, with a warning when its pin or floor is not signed into
   * its channel (machines would refuse it, so the server offers nothing then).
   */
  private async withWarning(g: Group): Promise<Record<string, unknown>> {
    const v = groupView(g);
    const p = join(this.o.repo, 'channels', `${g.channel}.json`);
    const ch = await readFile(p, 'utf8').then((t) => peekEnvelope(t, p) as ChannelMeta, () => undefined);
    const why = ch ? unsignedStop(g.policy, ch.version, { channel: ch.channel, floors: ch.floors ?? [], holds: ch.holds ?? [] }) : undefined;
    return why ? { ...v, warning: `${why}; until then machines of group ${g.id} below it get noupdate` } : v;
  }

  /** The admin API: a small set of JSON resources. */
  private async admin(method: string, parts: string[], q: URLSearchParams, body: unknown): Promise<unknown> {
    const store = this.o.store;
    const now = this.o.now().getTime();
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const groupName = (id: string | undefined) => {
      if (!id || !GROUP_RE.test(id)) throw new BasaltError(UE_ERRORS.E_FLEET_INVALID, `'${id ?? ''}' is not a group name`, { hint: 'use lower-case letters, digits, - and _' });
      return id;
    };
    const known = async (id: string) => {
      const g = (await store.group(groupName(id))) ?? (await this.channelGroup(id, now));
      if (!g) throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no group '${id}' (and no channel of that name in ${this.o.repo})`);
      return g;
    };
    const [res, id, sub] = parts;
    if (res === 'groups' && parts.length === 1 && method === 'GET') {
      for (const ch of await this.repoChannels()) if (!(await store.group(ch))) await this.channelGroup(ch, now);
      return { groups: (await store.groups()).map(groupView) };
    }
    if (res === 'groups' && id && parts.length === 2) {
      if (method === 'GET') return groupView(await known(id));
      if (method === 'PUT') {
        const channel = b['channel'];
        if (typeof channel !== 'string' || !GROUP_RE.test(channel)) throw new BasaltError(UE_ERRORS.E_FLEET_INVALID, `channel: '${String(channel)}' is not a channel name`);
        const g = await store.putGroup(groupName(id), channel, now);
        return this.withWarning(b['policy'] !== undefined ? await store.setPolicy(g.id, parsePolicy(b['policy'])) : g);
      }
      if (method === 'DELETE') {
        if (!(await store.deleteGroup(groupName(id)))) throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no group '${id}'`);
        return { deleted: id };
      }
    }
    if (res === 'groups' && id && sub === 'policy' && method === 'PUT') {
      await known(id);
      return this.withWarning(await store.setPolicy(id, parsePolicy(body)));
    }
    if (res === 'groups' && id && (sub === 'pause' || sub === 'resume') && method === 'POST') {
      await known(id);
      const reason = typeof b['reason'] === 'string' ? b['reason'].slice(0, 200) : 'paused by an admin';
      return groupView(await store.setPaused(id, sub === 'pause', sub === 'pause' ? reason : null));
    }
    if (res === 'machines' && parts.length === 1 && method === 'GET') {
      const notSeen = q.get('notSeenFor');
      return {
        machines: await store.machines({
          group: q.get('group') ?? undefined,
          notSeenSince: notSeen ? now - Number(notSeen) : undefined,
          limit: q.get('limit') ? Number(q.get('limit')) : undefined,
        }),
      };
    }
    if (res === 'machines' && id && parts.length === 2 && method === 'GET') {
      const m = await store.machine(id);
      if (!m) throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no machine '${id}'`);
      return { machine: m, events: await store.events({ machine: id, limit: 50 }) };
    }
    if (res === 'machines' && id && sub === 'group' && method === 'PUT') {
      const g = await known(typeof b['group'] === 'string' ? b['group'] : '');
      return { machine: await store.assignMachine(id, g.id) };
    }
    if (res === 'overview' && method === 'GET') return this.overview(Number(q.get('staleMs') ?? 86_400_000));
    throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no admin resource ${method} /admin/v1/${parts.join('/')}`);
  }

  /** What the dashboard shows: groups with their rollout progress, versions with errors and rollbacks, machines not seen lately. */
  async overview(staleMs: number): Promise<unknown> {
    const store = this.o.store;
    const now = this.o.now().getTime();
    const groups = await store.groups();
    const versions = await store.versions();
    const out = [];
    for (const g of groups) {
      const mine = versions.filter((v) => v.group === g.id);
      const total = mine.reduce((s, v) => s + v.machines, 0);
      const onTarget = g.rolloutVersion ? mine.filter((v) => v.version === g.rolloutVersion).reduce((s, v) => s + v.machines, 0) : 0;
      const allowed = g.rolloutVersion && g.policy.waves && g.rolloutStarted !== null ? wavePercent(g.policy.waves, now - g.rolloutStarted) : null;
      out.push({ ...groupView(g), machines: total, onTarget, allowedPercent: allowed, offeredInPeriod: await store.offersSince(g.id, now - policyPeriodMs(g.policy)), versions: mine });
    }
    return { now: new Date(now).toISOString(), groups: out, stale: await store.machines({ notSeenSince: now - staleMs, limit: 100 }) };
  }
}

function groupView(g: Group): Record<string, unknown> {
  return {
    id: g.id,
    channel: g.channel,
    paused: g.paused,
    pauseReason: g.pauseReason,
    rolloutVersion: g.rolloutVersion,
    rolloutStarted: g.rolloutStarted === null ? null : new Date(g.rolloutStarted).toISOString(),
    policy: policyJson(g.policy),
  };
}

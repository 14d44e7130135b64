/**
 * The fleet's state: one store over two SQL databases with the same schema,
 * migrations and queries. PostgreSQL (pg.ts) is shared by any number of
 * `basalt serve` replicas; the embedded SQLite (sqlite.ts, node:sqlite) is the
 * default for one server. Queries are written with `?` placeholders (SQLite's);
 * the PostgreSQL driver numbers them. Times are ms since the epoch (BIGINT).
 */
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import { parsePolicy, type Policy } from './policy.js';

export type Row = Record<string, unknown>;

/** The SQL connection under the store: one per database kind. */
export interface Db {
  readonly kind: 'postgres' | 'sqlite';
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  /** Runs `fn` in one transaction (PostgreSQL: READ COMMITTED with row locks; SQLite: BEGIN IMMEDIATE). */
  tx<T>(fn: (q: (sql: string, params?: unknown[]) => Promise<Row[]>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Versioned migrations: {{serial}} and {{forUpdate}} differ by dialect. Never edit one that shipped; add the next. */
export const MIGRATIONS: { version: number; sql: string[] }[] = [
  {
    version: 1,
    sql: [
      `CREATE TABLE groups (id TEXT PRIMARY KEY, channel TEXT NOT NULL, policy TEXT NOT NULL DEFAULT '{}', paused INTEGER NOT NULL DEFAULT 0, pause_reason TEXT, rollout_version TEXT, rollout_started BIGINT, created BIGINT NOT NULL)`,
      `CREATE TABLE machines (id TEXT PRIMARY KEY, group_id TEXT NOT NULL, version TEXT NOT NULL, track TEXT NOT NULL, board TEXT NOT NULL DEFAULT '', last_check BIGINT, last_event BIGINT, last_event_type INTEGER, last_event_result INTEGER, rollbacks INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, offered_version TEXT, offered_at BIGINT)`,
      `CREATE INDEX machines_group ON machines (group_id, version)`,
      `CREATE TABLE events (id {{serial}}, at BIGINT NOT NULL, machine_id TEXT NOT NULL, group_id TEXT NOT NULL, kind TEXT NOT NULL, version TEXT NOT NULL, event_type INTEGER, event_result INTEGER, error_code INTEGER, previous_version TEXT)`,
      `CREATE INDEX events_at ON events (at)`,
      `CREATE TABLE offers (group_id TEXT NOT NULL, version TEXT NOT NULL, machine_id TEXT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (group_id, version, machine_id))`,
      `CREATE INDEX offers_at ON offers (group_id, at)`,
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export function dialect(kind: Db['kind'], sql: string): string {
  return sql
    .replaceAll('{{serial}}', kind === 'postgres' ? 'BIGSERIAL PRIMARY KEY' : 'INTEGER PRIMARY KEY AUTOINCREMENT')
    .replaceAll('{{forUpdate}}', kind === 'postgres' ? 'FOR UPDATE' : '');
}

export interface Group {
  id: string;
  channel: string;
  policy: Policy;
  paused: boolean;
  pauseReason: string | null;
  rolloutVersion: string | null;
  rolloutStarted: number | null;
  created: number;
}

export interface Machine {
  id: string;
  group: string;
  version: string;
  track: string;
  board: string;
  lastCheck: number | null;
  lastEvent: number | null;
  lastEventType: number | null;
  lastEventResult: number | null;
  rollbacks: number;
  errors: number;
  offeredVersion: string | null;
  offeredAt: number | null;
}

export interface FleetEvent {
  at: number;
  machineId: string;
  group: string;
  kind: 'check' | 'event' | 'ping' | 'offer' | 'noupdate';
  version: string;
  eventType?: number | null | undefined;
  eventResult?: number | null | undefined;
  errorCode?: number | null | undefined;
  previousVersion?: string | null | undefined;
}

export interface VersionRow {
  group: string;
  version: string;
  machines: number;
  rollbacks: number;
  errors: number;
}

const n = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const s = (v: unknown): string | null => (typeof v === 'string' ? v : v === null || v === undefined ? null : JSON.stringify(v));

function toGroup(r: Row): Group {
  let policy: Policy;
  try {
    policy = parsePolicy(JSON.parse(String(r['policy'])));
  } catch {
    policy = {};
  }
  return {
    id: String(r['id']),
    channel: String(r['channel']),
    policy,
    paused: Number(r['paused']) === 1,
    pauseReason: s(r['pause_reason']),
    rolloutVersion: s(r['rollout_version']),
    rolloutStarted: n(r['rollout_started']),
    created: Number(r['created']),
  };
}

function toMachine(r: Row): Machine {
  return {
    id: String(r['id']),
    group: String(r['group_id']),
    version: String(r['version']),
    track: String(r['track']),
    board: String(r['board']),
    lastCheck: n(r['last_check']),
    lastEvent: n(r['last_event']),
    lastEventType: n(r['last_event_type']),
    lastEventResult: n(r['last_event_result']),
    rollbacks: Number(r['rollbacks']),
    errors: Number(r['errors']),
    offeredVersion: s(r['offered_version']),
    offeredAt: n(r['offered_at']),
  };
}

/** Omaha event types and results as update_engine reports them. */
export const EVENT_UPDATE_COMPLETE = 3;
export const EVENT_RESULT_ERROR = 0;
/** Omaha error code of a rollback: the engine booted back into the old slot (ErrorCode.RollbackDetected). */
export const ERROR_ROLLBACK = 44;
/** Whether an Omaha event reports a rollback (an update-complete error with the rollback code). */
export function isRollbackEvent(e: { eventType?: number | null | undefined; eventResult?: number | null | undefined; errorCode?: number | null | undefined }): boolean {
  return e.eventType === EVENT_UPDATE_COMPLETE && e.eventResult === EVENT_RESULT_ERROR && e.errorCode === ERROR_ROLLBACK;
}

/** The advisory lock key that serializes migrations on PostgreSQL ("basalt" in ASCII). */
const MIGRATION_LOCK_ID = 0x626173616c74;

/** The fleet store: groups and policies, machines, events, the per-period offer count. Every method is one statement or one transaction. */
export class FleetStore {
  constructor(readonly db: Db) {}

  /** Applies the migrations this database lacks, in one transaction each; returns the schema version. */
  async migrate(): Promise<number> {
    // Replicas starting together on a fresh PostgreSQL: CREATE TABLE IF NOT EXISTS is not safe
    // against itself there, so every migration step holds one advisory lock for its transaction.
    const serialize = async (q: (sql: string) => Promise<unknown>) => {
      if (this.db.kind === 'postgres') await q(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`);
    };
    await this.db.tx(async (q) => {
      await serialize(q);
      await q('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)');
    });
    for (const m of MIGRATIONS) {
      await this.db.tx(async (q) => {
        await serialize(q);
        const rows = await q('SELECT MAX(version) AS v FROM schema_version');
        const current = Number(rows[0]?.['v'] ?? 0);
        if (current > SCHEMA_VERSION) throw new BasaltError(UE_ERRORS.E_DB_SCHEMA, `the fleet database is at schema version ${current}; this basalt knows up to ${SCHEMA_VERSION}`);
        if (current >= m.version) return;
        for (const stmt of m.sql) await q(dialect(this.db.kind, stmt));
        await q('INSERT INTO schema_version (version, applied) VALUES (?, ?)', [m.version, Date.now()]);
      });
    }
    const rows = await this.db.query('SELECT MAX(version) AS v FROM schema_version');
    return Number(rows[0]?.['v'] ?? 0);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  async putGroup(id: string, channel: string, now: number): Promise<Group> {
    await this.db.query('INSERT INTO groups (id, channel, created) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET channel = excluded.channel', [id, channel, now]);
    return (await this.group(id))!;
  }

  async group(id: string): Promise<Group | undefined> {
    const r = await this.db.query('SELECT * FROM groups WHERE id = ?', [id]);
    return r[0] ? toGroup(r[0]) : undefined;
  }

  async groups(): Promise<Group[]> {
    return (await this.db.query('SELECT * FROM groups ORDER BY id')).map(toGroup);
  }

  async deleteGroup(id: string): Promise<boolean> {
    return (await this.db.query('DELETE FROM groups WHERE id = ? RETURNING id', [id])).length > 0;
  }

  /** Replaces a group's policy; its `paused` (when given) sets the pause. */
  async setPolicy(id: string, p: Policy): Promise<Group> {
    const { paused, ...rest } = p;
    const r = await this.db.query('UPDATE groups SET policy = ? WHERE id = ? RETURNING id', [JSON.stringify(policyToStore(rest)), id]);
    if (r.length === 0) throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no group '${id}'`);
    if (paused !== undefined) await this.setPaused(id, paused, paused ? 'paused by an admin' : null);
    return (await this.group(id))!;
  }

  async setPaused(id: string, paused: boolean, reason: string | null): Promise<Group> {
    const r = await this.db.query('UPDATE groups SET paused = ?, pause_reason = ? WHERE id = ? RETURNING id', [paused ? 1 : 0, reason, id]);
    if (r.length === 0) throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no group '${id}'`);
    return (await this.group(id))!;
  }

  /** Marks the start of the group's rollout of `version` (once: the first replica to see it wins). Returns the start time. */
  async rolloutStart(id: string, version: string, now: number): Promise<number> {
    await this.db.query('UPDATE groups SET rollout_version = ?, rollout_started = ? WHERE id = ? AND (rollout_version IS NULL OR rollout_version <> ?)', [version, now, id, version]);
    const g = await this.group(id);
    return g?.rolloutStarted ?? now;
  }

  /** Records a machine's check (creating it), returns its record as it was before. */
  async checkIn(m: { id: string; group: string; version: string; track: string; board: string }, at: number): Promise<Machine | undefined> {
    const before = await this.db.query('SELECT * FROM machines WHERE id = ?', [m.id]);
    await this.db.query(
      'INSERT INTO machines (id, group_id, version, track, board, last_check) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, track = excluded.track, board = excluded.board, last_check = excluded.last_check',
      [m.id, m.group, m.version, m.track, m.board, at],
    );
    return before[0] ? toMachine(before[0]) : undefined;
  }

  async machine(id: string): Promise<Machine | undefined> {
    const r = await this.db.query('SELECT * FROM machines WHERE id = ?', [id]);
    return r[0] ? toMachine(r[0]) : undefined;
  }

  /** Machines, optionally of one group, or not seen since `notSeenSince`; at most `limit`. */
  async machines(o: { group?: string | undefined; notSeenSince?: number | undefined; limit?: number | undefined } = {}): Promise<Machine[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (o.group) {
      where.push('group_id = ?');
      params.push(o.group);
    }
    if (o.notSeenSince !== undefined) {
      where.push('(last_check IS NULL OR last_check < ?)');
      params.push(o.notSeenSince);
    }
    params.push(Math.min(o.limit ?? 1000, 10_000));
    const rows = await this.db.query(`SELECT * FROM machines${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`, params);
    return rows.map(toMachine);
  }

  /** Moves a machine to another group (it keeps it: checks do not change the group). */
  async assignMachine(id: string, group: string): Promise<Machine> {
    const r = await this.db.query('UPDATE machines SET group_id = ? WHERE id = ? RETURNING *', [group, id]);
    if (!r[0]) throw new BasaltError(UE_ERRORS.E_FLEET_NOT_FOUND, `no machine '${id}'`);
    return toMachine(r[0]);
  }

  /** Appends an event; an Omaha event also updates the machine's last event, errors and rollbacks. */
  async addEvent(e: FleetEvent): Promise<void> {
    await this.db.query('INSERT INTO events (at, machine_id, group_id, kind, version, event_type, event_result, error_code, previous_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      e.at, e.machineId, e.group, e.kind, e.version, e.eventType ?? null, e.eventResult ?? null, e.errorCode ?? null, e.previousVersion ?? null,
    ]);
    if (e.kind === 'event') {
      const rollback = isRollbackEvent(e) ? 1 : 0;
      const error = e.eventResult === EVENT_RESULT_ERROR ? 1 : 0;
      await this.db.query('UPDATE machines SET last_event = ?, last_event_type = ?, last_event_result = ?, rollbacks = rollbacks + ?, errors = errors + ? WHERE id = ?', [
        e.at, e.eventType ?? null, e.eventResult ?? null, rollback, error, e.machineId,
      ]);
    }
  }

  /** Deletes events older than `before`; returns how many. */
  async pruneEvents(before: number): Promise<number> {
    return (await this.db.query('DELETE FROM events WHERE at < ? RETURNING id', [before])).length;
  }

  async events(o: { machine?: string | undefined; limit?: number | undefined } = {}): Promise<FleetEvent[]> {
    const rows = await this.db.query(`SELECT * FROM events${o.machine ? ' WHERE machine_id = ?' : ''} ORDER BY id DESC LIMIT ?`, [...(o.machine ? [o.machine] : []), Math.min(o.limit ?? 100, 10_000)]);
    return rows.map((r) => ({
      at: Number(r['at']), machineId: String(r['machine_id']), group: String(r['group_id']), kind: String(r['kind']) as FleetEvent['kind'], version: String(r['version']),
      eventType: n(r['event_type']), eventResult: n(r['event_result']), errorCode: n(r['error_code']), previousVersion: s(r['previous_version']),
    }));
  }

  /**
   * Takes one offer slot of the group's period for the machine and version, in one
   * transaction that locks the group's row (PostgreSQL) or the database (SQLite),
   * so replicas together never pass `max`. A machine that already has its slot for
   * this version keeps it (its retries cost nothing). `max` undefined = no limit.
   */
  async takeOffer(group: string, version: string, machineId: string, now: number, periodMs: number, max: number | undefined): Promise<boolean> {
    return this.db.tx(async (q) => {
      const had = await q('SELECT at FROM offers WHERE group_id = ? AND version = ? AND machine_id = ?', [group, version, machineId]);
      if (had.length > 0) return true;
      if (max !== undefined) {
        await q(dialect(this.db.kind, 'SELECT id FROM groups WHERE id = ? {{forUpdate}}'), [group]);
        const c = await q('SELECT COUNT(*) AS c FROM offers WHERE group_id = ? AND at > ?', [group, now - periodMs]);
        if (Number(c[0]?.['c'] ?? 0) >= max) return false;
      }
      await q('INSERT INTO offers (group_id, version, machine_id, at) VALUES (?, ?, ?, ?)', [group, version, machineId, now]);
      await q('UPDATE machines SET offered_version = ?, offered_at = ? WHERE id = ?', [version, now, machineId]);
      return true;
    });
  }

  async offersSince(group: string, since: number): Promise<number> {
    const c = await this.db.query('SELECT COUNT(*) AS c FROM offers WHERE group_id = ? AND at > ?', [group, since]);
    return Number(c[0]?.['c'] ?? 0);
  }

  /**
   * Per group and version: machines that were offered it (took it), and of those
   * the ones that rolled back from it or reported errors.
   */
  async versionHealth(group: string, version: string): Promise<{ machines: number; rollbacks: number; errors: number }> {
    const r = await this.db.query(
      `SELECT COUNT(*) AS machines, COALESCE(SUM(CASE WHEN m.rollbacks > 0 THEN 1 ELSE 0 END), 0) AS rollbacks, COALESCE(SUM(CASE WHEN m.errors > 0 THEN 1 ELSE 0 END), 0) AS errors
       FROM offers o JOIN machines m ON m.id = o.machine_id WHERE o.group_id = ? AND o.version = ?`,
      [group, version],
    );
    return { machines: Number(r[0]?.['machines'] ?? 0), rollbacks: Number(r[0]?.['rollbacks'] ?? 0), errors: Number(r[0]?.['errors'] ?? 0) };
  }

  /** Machines per group and running version, with their errors and rollbacks. */
  async versions(): Promise<VersionRow[]> {
    const r = await this.db.query(
      'SELECT group_id, version, COUNT(*) AS machines, COALESCE(SUM(rollbacks), 0) AS rollbacks, COALESCE(SUM(errors), 0) AS errors FROM machines GROUP BY group_id, version ORDER BY group_id, version',
    );
    return r.map((x) => ({ group: String(x['group_id']), version: String(x['version']), machines: Number(x['machines']), rollbacks: Number(x['rollbacks']), errors: Number(x['errors']) }));
  }
}

/** The policy as the store keeps it (the JSON parsePolicy reads). */
function policyToStore(p: Policy): Record<string, unknown> {
  return {
    ...(p.pinnedVersion ? { pinnedVersion: p.pinnedVersion } : {}),
    ...(p.floorVersion ? { floorVersion: p.floorVersion } : {}),
    ...(p.waves ? { waves: p.waves.map((w) => ({ afterMs: w.afterMs, percent: w.percent })) } : {}),
    ...(p.maxUpdates !== undefined ? { maxUpdates: p.maxUpdates } : {}),
    ...(p.periodMs !== undefined ? { periodMs: p.periodMs } : {}),
    ...(p.officeHours
      ? { officeHours: { ...(p.officeHours.days ? { days: p.officeHours.days } : {}), start: hm(p.officeHours.startMinute), end: hm(p.officeHours.endMinute) } }
      : {}),
    ...(p.autoPause ? { autoPause: p.autoPause } : {}),
  };
}

const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

/** Opens the store a --database value names: postgres://… or postgresql://… for PostgreSQL, else a SQLite file path. Migrates it. */
export async function openStore(database: string): Promise<FleetStore> {
  let db: Db;
  if (/^postgres(ql)?:\/\//.test(database)) {
    const { openPg } = await import('./pg.js');
    db = await openPg(database);
  } else {
    const { openSqlite } = await import('./sqlite.js');
    db = await openSqlite(database);
  }
  const store = new FleetStore(db);
  try {
    await store.migrate();
  } catch (e) {
    await db.close();
    throw e;
  }
  return store;
}

/**
 * The fleet store against a REAL PostgreSQL (a cluster started here in a temp
 * dir) and the embedded SQLite (a temp file): the same suite for both.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../../test/helpers.js';
import { pgSkipReason, startPostgres, type TestPg } from '../../test/postgres.js';
import { BasaltError } from '../../../common/src/errors.js';
import { FleetStore, openStore, SCHEMA_VERSION } from './store.js';
import { openSqlite } from './sqlite.js';
import { openPg } from './pg.js';

const pgSkip = await pgSkipReason();
if (pgSkip) console.warn(`PostgreSQL store tests skipped: ${pgSkip}`);

let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let pg: TestPg | undefined;
let dbCount = 0;

beforeAll(async () => {
  t = await tempDir('basalt-fleet-store-');
  if (!pgSkip) pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
  await t?.cleanup();
});

const backends = [
  { name: 'sqlite', skip: undefined as string | undefined, open: async () => join(t!.dir, `fleet-${++dbCount}.sqlite`) },
  { name: 'postgres', skip: pgSkip, open: async () => pg!.database(`fleet_${++dbCount}`) },
];

describe.each(backends)('fleet store on $name', ({ name, skip, open }) => {
  it.skipIf(skip !== undefined)(`migrates once, to schema ${SCHEMA_VERSION}, and refuses a newer schema${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const where = await open();
    const s = await openStore(where);
    expect(await s.migrate()).toBe(SCHEMA_VERSION);
    expect(await s.migrate()).toBe(SCHEMA_VERSION);
    await s.db.query('INSERT INTO schema_version (version, applied) VALUES (?, ?)', [SCHEMA_VERSION + 1, 0]);
    await s.close();
    const err = await openStore(where).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BasaltError);
    expect((err as BasaltError).code).toBe('E_DB_SCHEMA');
  });

  it.skipIf(skip !== undefined)(`four replicas migrating a fresh database at the same moment all reach schema ${SCHEMA_VERSION}${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const where = await open();
    const stores = await Promise.all([1, 2, 3, 4].map(() => openStore(where)));
    try {
      expect(await Promise.all(stores.map((s) => s.migrate()))).toEqual([SCHEMA_VERSION, SCHEMA_VERSION, SCHEMA_VERSION, SCHEMA_VERSION]);
      expect((await stores[0]!.db.query('SELECT COUNT(*) AS n FROM schema_version'))[0]!['n']).toBe(name === 'postgres' ? String(SCHEMA_VERSION) : SCHEMA_VERSION);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it.skipIf(skip !== undefined)('keeps groups, policies, pauses, machines, events and version health', async () => {
    const s = await openStore(await open());
    try {
      await s.putGroup('stable', 'stable', 1000);
      expect((await s.groups()).map((g) => g.id)).toEqual(['stable']);
      await s.setPolicy('stable', { maxUpdates: 3, periodMs: 60_000, waves: [{ afterMs: 0, percent: 10 }], floorVersion: '2.0.0', officeHours: { days: [1, 2], startMinute: 540, endMinute: 1020 } });
      const g = (await s.group('stable'))!;
      expect(g.policy).toEqual({ maxUpdates: 3, periodMs: 60_000, waves: [{ afterMs: 0, percent: 10 }], floorVersion: '2.0.0', officeHours: { days: [1, 2], startMinute: 540, endMinute: 1020 } });
      expect((await s.setPaused('stable', true, 'bad release')).pauseReason).toBe('bad release');
      expect((await s.setPaused('stable', false, null)).paused).toBe(false);
      await expect(s.setPaused('nope', true, null)).rejects.toMatchObject({ code: 'E_FLEET_NOT_FOUND' });
      expect(await s.rolloutStart('stable', '3.0.0', 5000)).toBe(5000);
      expect(await s.rolloutStart('stable', '3.0.0', 9000)).toBe(5000);

      expect(await s.checkIn({ id: 'm1', group: 'stable', version: '2.0.0', track: 'stable', board: 'amd64-usr' }, 2000)).toBeUndefined();
      expect((await s.checkIn({ id: 'm1', group: 'other', version: '2.0.0', track: 'stable', board: 'amd64-usr' }, 3000))?.lastCheck).toBe(2000);
      expect((await s.machine('m1'))?.group).toBe('stable');
      expect(await s.takeOffer('stable', '3.0.0', 'm1', 3000, 60_000, 3)).toBe(true);
      await s.addEvent({ at: 4000, machineId: 'm1', group: 'stable', kind: 'event', version: '2.0.0', eventType: 3, eventResult: 0, errorCode: 44 });
      const m = (await s.machine('m1'))!;
      expect(m).toMatchObject({ rollbacks: 1, errors: 1, lastEvent: 4000, lastEventType: 3, lastEventResult: 0, offeredVersion: '3.0.0' });
      expect(await s.versionHealth('stable', '3.0.0')).toEqual({ machines: 1, rollbacks: 1, errors: 1 });
      expect(await s.versions()).toEqual([{ group: 'stable', version: '2.0.0', machines: 1, rollbacks: 1, errors: 1 }]);
      expect((await s.events({ machine: 'm1' }))[0]).toMatchObject({ kind: 'event', errorCode: 44 });
      expect(await s.pruneEvents(4000)).toBe(0);
      expect(await s.pruneEvents(4001)).toBe(1);
      expect(await s.events({ machine: 'm1' })).toEqual([]);
      expect((await s.machines({ notSeenSince: 3500 })).map((x) => x.id)).toEqual(['m1']);
      expect(await s.machines({ notSeenSince: 2500 })).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it.skipIf(skip !== undefined)('two connections taking offers at once never pass the limit of the period', async () => {
    const where = await open();
    const a = await openStore(where);
    // A second, independent connection to the same database: another replica.
    const b = new FleetStore(name === 'postgres' ? await openPg(where) : await openSqlite(where));
    try {
      await a.putGroup('g', 'stable', 0);
      const ids = Array.from({ length: 60 }, (_, i) => `m${i}`);
      for (const id of ids) await a.checkIn({ id, group: 'g', version: '1.0.0', track: 'stable', board: '' }, 0);
      const got = await Promise.all(ids.map((id, i) => (i % 2 ? a : b).takeOffer('g', '2.0.0', id, 10_000, 60_000, 7)));
      expect(got.filter(Boolean)).toHaveLength(7);
      // A machine that has its slot keeps it; the next period has room again.
      const winner = ids[got.indexOf(true)]!;
      expect(await a.takeOffer('g', '2.0.0', winner, 20_000, 60_000, 7)).toBe(true);
      expect(await a.takeOffer('g', '2.0.0', 'late', 80_000, 60_000, 7)).toBe(true);
      expect(await a.offersSince('g', 10_000 - 1)).toBe(8);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

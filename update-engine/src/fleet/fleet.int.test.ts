/**
 * `basalt serve` with the fleet service over real HTTP on 127.0.0.1, the same
 * suite on a REAL PostgreSQL (started here) and on the embedded SQLite: the
 * admin API refuses every action without the token, pause answers noupdate,
 * waves and the per-period limit are honoured, floor versions hop, a
 * rollback rate pauses the rollout, /metrics counts.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { main as cliMain } from '../../../cli/main.js';
import { tempDir } from '../../test/helpers.js';
import { pgSkipReason, startPostgres, type TestPg } from '../../test/postgres.js';
import { makeFleetRepo, startFleetServer, check, admin, TOKEN } from '../../test/fleet.js';

const pgSkip = await pgSkipReason();
let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let pg: TestPg | undefined;
let repo: string;
let n = 0;

beforeAll(async () => {
  t = await tempDir('basalt-fleet-');
  repo = await makeFleetRepo(t.dir);
  if (!pgSkip) pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
  await t?.cleanup();
});

const backends = [
  { name: 'sqlite', skip: undefined as string | undefined, db: async () => join(t!.dir, `fleet-${++n}.sqlite`) },
  { name: 'postgres', skip: pgSkip, db: async () => pg!.database(`fleet_http_${++n}`) },
];

describe.each(backends)('fleet service on $name', ({ skip, db }) => {
  const start = async (now?: () => Date) => startFleetServer({ repo, database: await db(), eventsFile: join(t!.dir, `events-${n}.jsonl`), ...(now ? { now } : {}) });

  it.skipIf(skip !== undefined)(`refuses every admin action without a valid token${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const s = await start();
    try {
      await check(s.url, '1.0.0', 'm-1');
      const calls: [string, string, unknown][] = [
        ['GET', 'groups', undefined], ['PUT', 'groups/x', { channel: 'stable' }], ['DELETE', 'groups/stable', undefined], ['PUT', 'groups/stable/policy', { paused: true }],
        ['POST', 'groups/stable/pause', {}], ['POST', 'groups/stable/resume', {}], ['GET', 'machines', undefined], ['PUT', 'machines/m-1/group', { group: 'stable' }], ['GET', 'overview', undefined],
      ];
      for (const [method, path, body] of calls) {
        for (const token of [null, 'wrong-token-wrong-token-wrong', TOKEN + 'x', '']) {
          const r = await admin(s.url, method, path, body, token);
          expect(r.status, `${method} ${path} with ${String(token)}`).toBe(401);
          expect(r.json).toMatchObject({ error: { code: 'E_FLEET_AUTH' } });
        }
      }
      // Nothing changed: the group is not paused, the machine still gets its update.
      expect((await admin(s.url, 'GET', 'groups/stable')).json).toMatchObject({ paused: false });
      expect(await check(s.url, '1.0.0', 'm-1')).toBe('3.0.0');
      // A server without a token has no admin API at all.
      const off = await startFleetServer({ repo, database: await db(), eventsFile: join(t!.dir, 'off.jsonl'), token: undefined });
      try {
        expect((await admin(off.url, 'GET', 'groups')).status).toBe(401);
      } finally {
        await off.close();
      }
    } finally {
      await s.close();
    }
  });

  it.skipIf(skip !== undefined)(`a fresh server lists the repository's channels as groups, and a channel's policy can be set before any machine checks in${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    const s = await start();
    try {
      const groups = (await admin(s.url, 'GET', 'groups')).json['groups'] as { id: string; channel: string }[];
      expect(groups.map((g) => g.id)).toContain('stable');
      expect(groups.every((g) => /^[a-z0-9][a-z0-9_-]*$/.test(g.id))).toBe(true);
      expect((await admin(s.url, 'POST', 'groups/stable/pause', { reason: 'before the first check' })).json).toMatchObject({ paused: true });
      expect(await check(s.url, '1.0.0', 'fresh-1')).toBe('noupdate');
      expect((await admin(s.url, 'POST', 'groups/no-such-channel/pause')).status).toBe(404);
    } finally {
      await s.close();
    }
  });

  it.skipIf(skip !== undefined)('pause answers noupdate, resume offers again; the admin API edits groups, policies and machines', async () => {
    const s = await start();
    try {
      expect(await check(s.url, '1.0.0', 'a-1')).toBe('3.0.0');
      expect((await admin(s.url, 'POST', 'groups/stable/pause', { reason: 'bad kernel' })).json).toMatchObject({ paused: true, pauseReason: 'bad kernel' });
      expect(await check(s.url, '1.0.0', 'a-1')).toBe('noupdate');
      expect(await check(s.url, '1.0.0', 'a-2')).toBe('noupdate');
      expect((await admin(s.url, 'POST', 'groups/stable/resume')).json).toMatchObject({ paused: false });
      expect(await check(s.url, '1.0.0', 'a-2')).toBe('3.0.0');
      // A pinned group; a machine moved into it.
      expect((await admin(s.url, 'PUT', 'groups/canary', { channel: 'stable', policy: { pinnedVersion: '2.0.0' } })).status).toBe(200);
      expect((await admin(s.url, 'PUT', 'machines/a-1/group', { group: 'canary' })).status).toBe(200);
      expect(await check(s.url, '1.0.0', 'a-1')).toBe('2.0.0');
      expect(await check(s.url, '2.0.0', 'a-1')).toBe('noupdate');
      expect((await admin(s.url, 'PUT', 'groups/canary/policy', { waves: [{ after: '1x', percent: 1 }] })).json).toMatchObject({ error: { code: 'E_FLEET_INVALID' } });
      expect((await admin(s.url, 'POST', 'groups/nope/pause')).status).toBe(404);
      const machines = (await admin(s.url, 'GET', 'machines?group=canary')).json['machines'] as { id: string; version: string }[];
      expect(machines).toMatchObject([{ id: 'a-1', version: '2.0.0' }]);
    } finally {
      await s.close();
    }
  });

  it.skipIf(skip !== undefined)('honours waves, the floor version and at most N updates per period', async () => {
    let now = new Date('2026-12-01T00:00:00Z');
    const s = await start(() => now);
    try {
      await check(s.url, '1.0.0', 'seed');
      await admin(s.url, 'PUT', 'groups/stable/policy', { waves: [{ after: '1h', percent: 20 }, { after: '1d', percent: 100 }], floorVersion: '2.0.0', maxUpdates: 25, period: '1h' });
      // The rollout of 3.0.0 began at the seed's check. Before 1 h: machines on 2.0.0 get nothing.
      const ids = Array.from({ length: 200 }, (_, i) => `w-${i}`);
      for (const id of ids.slice(0, 20)) expect(await check(s.url, '2.0.0', id)).toBe('noupdate');
      // A machine below the floor goes to the floor first, whatever the wave.
      expect(await check(s.url, '1.0.0', 'old-1')).toBe('2.0.0');
      now = new Date(now.getTime() + 2 * 3_600_000);
      const got: string[] = [];
      for (const id of ids) got.push(await check(s.url, '2.0.0', id));
      const offered = got.filter((v) => v === '3.0.0').length;
      // 20 % of 200 is about 40, but at most 25 per hour (old-1's hop was in the previous hour).
      expect(offered).toBe(25);
      const m = await (await fetch(`${s.url}metrics`)).text();
      // 25, and the seed's offer before the policy was set.
      expect(m).toMatch(/basalt_fleet_updates_offered_total\{group="stable",version="3.0.0"\} 26\n/);
      expect(m).toMatch(/basalt_fleet_checks_total\{group="stable"\} 222\n/);
    } finally {
      await s.close();
    }
  });

  it.skipIf(skip !== undefined)('pauses a rollout by itself when its rollback rate passes the threshold', async () => {
    const s = await start();
    try {
      await check(s.url, '2.0.0', 'r-0');
      await admin(s.url, 'PUT', 'groups/stable/policy', { autoPause: { rollbackRate: 0.2, minMachines: 5 } });
      const ids = Array.from({ length: 5 }, (_, i) => `r-${i}`);
      for (const id of ids) expect(await check(s.url, '2.0.0', id)).toBe('3.0.0');
      // Two of five roll back (update-complete, error, code 44): 40 % > 20 %.
      const rollback = '\n        <event eventtype="3" eventresult="0" errorcode="44"></event>';
      for (const id of ids.slice(0, 2)) await check(s.url, '2.0.0', id, 'stable', rollback);
      expect(await check(s.url, '2.0.0', 'r-new')).toBe('noupdate');
      const g = (await admin(s.url, 'GET', 'groups/stable')).json;
      expect(g).toMatchObject({ paused: true });
      expect(String(g['pauseReason'])).toMatch(/automatic pause: rollback rate of 3.0.0 is 40.0 %/);
      const m = await (await fetch(`${s.url}metrics`)).text();
      expect(m).toMatch(/basalt_fleet_rollbacks_total\{group="stable",version="3.0.0"\} 2\n/);
      expect(m).toMatch(/basalt_fleet_events_total\{result="0",type="3"\} 2\n/);
    } finally {
      await s.close();
    }
  });

  it.skipIf(skip !== undefined)('basalt fleet: pause, resume, policy, machines through the admin API; refused without the token', async () => {
    const s = await start();
    const tokenFile = join(t!.dir, `token-${n}`);
    const badFile = join(t!.dir, `bad-token-${n}`);
    await writeFile(tokenFile, TOKEN + '\n');
    await writeFile(badFile, 'not-the-admin-token-at-all\n');
    const fleet = async (args: string[], file = tokenFile) => {
      let out = '';
      let err = '';
      const code = await cliMain(['fleet', ...args, '--server', s.url, '--token-file', file], 'basalt', { out: (x) => void (out += x), err: (x) => void (err += x) });
      return { code, out, err };
    };
    try {
      expect(await check(s.url, '1.0.0', 'c-1')).toBe('3.0.0');
      const refused = await fleet(['pause', 'stable'], badFile);
      expect(refused.code).not.toBe(0);
      expect(refused.err).toMatch(/missing or wrong bearer token/);
      expect(await check(s.url, '1.0.0', 'c-1')).toBe('3.0.0');
      expect((await fleet(['pause', 'stable', '--reason', 'from the CLI'])).out).toMatch(/stable +stable +3.0.0 +paused \(from the CLI\)/);
      expect(await check(s.url, '1.0.0', 'c-1')).toBe('noupdate');
      expect((await fleet(['resume', 'stable'])).code).toBe(0);
      expect((await fleet(['policy', 'stable', '{"pinnedVersion":"2.0.0"}'])).out).toMatch(/"pinnedVersion":"2.0.0"/);
      expect(await check(s.url, '1.0.0', 'c-1')).toBe('2.0.0');
      expect((await fleet(['machines', '--group', 'stable'])).out).toMatch(/^MACHINE +GROUP +VERSION +LAST CHECK +ROLLBACKS\nc-1 +stable +1.0.0 /);
      expect((await fleet(['groups', '--json'])).out).toMatch(/"id": "stable"/);
    } finally {
      await s.close();
    }
  });
});

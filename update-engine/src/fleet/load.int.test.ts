/**
 * Load on loopback: 10,000 simulated machines send CoreOS-shaped update checks
 * to two `basalt serve` replicas (separate processes, dist/) sharing one REAL
 * PostgreSQL. 8,000 machines are in a group whose wave allows 30 %, 2,000 in
 * a group limited to 100 updates per hour. No request may fail, the p99
 * latency is printed, the share offered is 30 % ± 2 %, and exactly 100
 * machines of the limited group are offered the update, across both replicas.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { projectRoot } from '../../../common/src/paths.js';
import { spawnTool, type Spawned } from '../../../common/src/exec.js';
import { tempDir, waitFor, ensureDist, freePort } from '../../test/helpers.js';
import { pgSkipReason, startPostgres, type TestPg } from '../../test/postgres.js';
import { makeFleetRepo, check, admin, TOKEN } from '../../test/fleet.js';

const pgSkip = await pgSkipReason();
const MACHINES = Number(process.env['BASALT_LOAD_MACHINES'] ?? 10_000);
const CONCURRENCY = 64;

let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let pg: TestPg | undefined;
const replicas: { proc: Spawned; url: string }[] = [];

beforeAll(async () => {
  t = await tempDir('basalt-fleet-load-');
  if (pgSkip) return;
  await ensureDist('dist/update-engine/src/fleet/service.js');
  pg = await startPostgres();
  const database = await pg.database('fleet_load');
  const repo = await makeFleetRepo(t.dir);
  const tokenFile = join(t.dir, 'token');
  await writeFile(tokenFile, TOKEN + '\n');
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const proc = spawnTool(process.execPath, [join(projectRoot(), 'bin/basalt.js'), 'serve', '--repo', repo, '--database', database, '--listen', `127.0.0.1:${port}`, '--admin-token-file', tokenFile, '--events', join(t.dir, `events-${i}.jsonl`)]);
    let log = '';
    proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    proc.stdout?.on('data', () => undefined);
    const url = `http://127.0.0.1:${port}/`;
    replicas.push({ proc, url });
    // One replica after the other: the first migrates the schema.
    await waitFor(async () => {
      try {
        return (await fetch(`${url}metrics`)).ok;
      } catch {
        return false;
      }
    }, 60_000, `replica ${i} to listen (${log})`);
  }
});
afterAll(async () => {
  for (const r of replicas) {
    r.proc.kill('SIGTERM');
    await r.proc.exited.catch(() => undefined);
  }
  await pg?.stop();
  await t?.cleanup();
});

describe('10,000 machines against two replicas on one PostgreSQL', () => {
  it.skipIf(pgSkip !== undefined)(`no errors, the wave's share within ±2 %, exactly N updates per period${pgSkip ? ` (skipped: ${pgSkip})` : ''}`, async () => {
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    expect((await admin(a.url, 'PUT', 'groups/stable', { channel: 'stable', policy: { waves: [{ after: '0s', percent: 30 }] } })).status).toBe(200);
    expect((await admin(b.url, 'PUT', 'groups/limited', { channel: 'stable', policy: { maxUpdates: 100, period: '1h' } })).status).toBe(200);
    const limited = Math.round(MACHINES / 5);
    const jobs = Array.from({ length: MACHINES }, (_, i) => ({ id: `${i.toString(16).padStart(8, '0')}${'5a'.repeat(12)}`, track: i < limited ? 'limited' : 'stable' }));
    const latencies: number[] = [];
    const answers = new Map<string, string>();
    const errors: string[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, w) => {
        for (let j = next++; j < jobs.length; j = next++) {
          const job = jobs[j]!;
          const start = performance.now();
          try {
            answers.set(job.id, await check((j + w) % 2 ? a.url : b.url, '2.0.0', job.id, job.track));
          } catch (e) {
            errors.push(`${job.id}: ${(e as Error).message}`);
          }
          latencies.push(performance.now() - start);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    latencies.sort((x, y) => x - y);
    const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!;
    const stable = jobs.filter((j) => j.track === 'stable');
    const offeredStable = stable.filter((j) => answers.get(j.id) === '3.0.0').length;
    const offeredLimited = jobs.filter((j) => j.track === 'limited' && answers.get(j.id) === '3.0.0').length;
    const share = (100 * offeredStable) / stable.length;
    console.log(
      `fleet load: ${MACHINES} machines, 2 replicas, ${CONCURRENCY} in flight: ${seconds.toFixed(1)} s (${(MACHINES / seconds).toFixed(0)} checks/s), ` +
        `p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms; ` +
        `wave 30 %: ${offeredStable}/${stable.length} = ${share.toFixed(2)} %; limited to 100/h: ${offeredLimited}; errors ${errors.length}`,
    );
    expect(errors.slice(0, 5)).toEqual([]);
    expect(Math.abs(share - 30)).toBeLessThanOrEqual(2);
    expect(offeredLimited).toBe(Math.min(100, limited));
    expect(seconds).toBeLessThan(170);
    // Both replicas answered, and their counters add up to every check.
    let checks = 0;
    for (const r of replicas) {
      const m = /basalt_fleet_checks_total\{group="stable"\} (\d+)/.exec(await (await fetch(`${r.url}metrics`)).text());
      expect(Number(m?.[1] ?? 0)).toBeGreaterThan(0);
      checks += Number(m?.[1] ?? 0);
    }
    expect(checks).toBe(stable.length);
    // A machine's answer is stable: the same machines are offered on a second check.
    for (const j of stable.slice(0, 200)) expect(await check(b.url, '2.0.0', j.id, j.track)).toBe(answers.get(j.id));
  });
});

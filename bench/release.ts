/**
 * Release bench: `basalt release` of a USR image with one xz job (the
 * baseline: chunks compressed one after the other) against the default (one
 * xz per CPU), alternated in the same run on the same image. Checks that both
 * payloads are the same bytes and prints the times side by side.
 *
 *   npm run bench:release -- [--usr out/usr.img] [--reps 2] [--xz-level 6]
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateKey, readPrivateKeyFile } from '../update-engine/src/publish/keys.js';
import { MAX_XZ_JOBS, release } from '../update-engine/src/publish/repo.js';

function intArg(value: string, name: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new Error(`--${name}: '${value}' is not an integer from ${min} to ${max}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { usr: { type: 'string', default: 'out/usr.img' }, reps: { type: 'string', default: '2' }, 'xz-level': { type: 'string', default: '6' } } });
  const usr = values.usr;
  const reps = intArg(values.reps, 'reps', 1, 100);
  const xzLevel = intArg(values['xz-level'], 'xz-level', 0, 9);
  if (!existsSync(usr)) throw new Error(`${usr} does not exist; build an image first (npx basalt build) or give --usr FILE`);
  // The builder's usr.img.json names the version; release insists on it.
  const side = existsSync(`${usr}.json`) ? (JSON.parse(await readFile(`${usr}.json`, 'utf8')) as { version?: string }) : {};
  const version = side.version ?? '1.0.0';
  const parallel = Math.min(availableParallelism(), MAX_XZ_JOBS);
  const runs = [
    { label: '1 job (baseline)', jobs: 1, times: [] as number[] },
    { label: `${parallel} jobs (default)`, jobs: parallel, times: [] as number[] },
  ];
  const dir = await mkdtemp(join(tmpdir(), 'basalt-bench-release-'));
  try {
    await writeFile(join(dir, 'release.key'), (await generateKey('Basalt bench', undefined)).privateArmored);
    const key = await readPrivateKeyFile(join(dir, 'release.key'));
    const digests = new Set<string>();
    for (let r = 0; r < reps; r++) {
      for (const x of runs) {
        const repo = join(dir, `repo-${r}-${x.jobs}`);
        const t0 = process.hrtime.bigint();
        await release({ usr, version, channel: 'stable', key, repo, now: new Date(), expiresMs: 86_400_000, xzLevel, jobs: x.jobs });
        x.times.push(Number(process.hrtime.bigint() - t0) / 1e9);
        digests.add(createHash('sha256').update(await readFile(join(repo, 'payloads', version, 'usr.img.xz'))).digest('hex'));
        await rm(repo, { recursive: true, force: true });
      }
    }
    const best = (xs: number[]) => Math.min(...xs);
    process.stdout.write(`release of ${usr} (xz -${xzLevel}, 4 MiB chunks), best of ${reps}:\n`);
    for (const x of runs) process.stdout.write(`  ${x.label.padEnd(20)} ${best(x.times).toFixed(1)} s   (${x.times.map((t) => t.toFixed(1)).join(', ')})\n`);
    process.stdout.write(`  speedup ${(best(runs[0]!.times) / best(runs[1]!.times)).toFixed(2)}x; payloads identical: ${digests.size === 1 ? 'yes' : 'NO'}\n`);
    if (digests.size !== 1) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:release: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

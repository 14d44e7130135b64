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
import { generateKey, readPrivateKeyFile } from '../update-engine/src/pgp.js';
import { MAX_XZ_JOBS, release } from '../update-engine/src/repo.js';

const { values } = parseArgs({ options: { usr: { type: 'string', default: 'out/usr.img' }, reps: { type: 'string', default: '2' }, 'xz-level': { type: 'string', default: '6' } } });
const usr = values.usr!;
const reps = Number(values.reps);
const xzLevel = Number(values['xz-level']);

async function main(): Promise<void> {
  if (!existsSync(usr)) {
    process.stderr.write(`bench:release: ${usr} does not exist; build an image first (npx basalt build) or give --usr FILE\n`);
    process.exit(1);
  }
  // The builder's usr.img.json names the version; release insists on it.
  const side = existsSync(`${usr}.json`) ? (JSON.parse(await readFile(`${usr}.json`, 'utf8')) as { version?: string }) : {};
  const version = side.version ?? '1.0.0';
  const dir = await mkdtemp(join(tmpdir(), 'basalt-bench-release-'));
  try {
    await writeFile(join(dir, 'release.key'), (await generateKey('Basalt bench', undefined)).privateArmored);
    const key = await readPrivateKeyFile(join(dir, 'release.key'));
    const parallel = Math.min(availableParallelism(), MAX_XZ_JOBS);
    const times: Record<string, number[]> = { '1 job (baseline)': [], [`${parallel} jobs (default)`]: [] };
    const digests = new Set<string>();
    let n = 0;
    for (let r = 0; r < reps; r++) {
      for (const [label, jobs] of [['1 job (baseline)', 1], [`${parallel} jobs (default)`, parallel]] as const) {
        const repo = join(dir, `repo-${n++}`);
        const t0 = process.hrtime.bigint();
        await release({ usr, version, channel: 'stable', key, repo, now: new Date(), expiresMs: 86_400_000, xzLevel, jobs });
        times[label]!.push(Number(process.hrtime.bigint() - t0) / 1e9);
        digests.add(createHash('sha256').update(await readFile(join(repo, 'payloads', version, 'usr.img.xz'))).digest('hex'));
        await rm(repo, { recursive: true, force: true });
      }
    }
    const best = (xs: number[]) => Math.min(...xs);
    const [base, par] = Object.values(times) as [number[], number[]];
    process.stdout.write(`release of ${usr} (xz -${xzLevel}, 4 MiB chunks), best of ${reps}:\n`);
    for (const [label, xs] of Object.entries(times)) process.stdout.write(`  ${label.padEnd(20)} ${best(xs).toFixed(1)} s   (${xs.map((x) => x.toFixed(1)).join(', ')})\n`);
    process.stdout.write(`  speedup ${(best(base) / best(par)).toFixed(2)}x; payloads identical: ${digests.size === 1 ? 'yes' : 'NO'}\n`);
    if (digests.size !== 1) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:release: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

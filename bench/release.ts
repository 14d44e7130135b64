/**
 * Release bench: `basalt release` of a USR image as a format 1 payload (xz,
 * the baseline) and as format 2 (each chunk stored as it is or as zstd),
 * alternated in the same run on the same image, jobs at their default. Prints
 * the times, the payload sizes and format 2's chunk choices; checks that a
 * second format 2 release with one job gives the same bytes.
 *
 *   npm run bench:release -- [--usr out/usr.img] [--reps 2] [--xz-level 6] [--no-xz]
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateKey, readPrivateKeyFile } from '../update-engine/src/publish/keys.js';
import { release } from '../update-engine/src/publish/repo.js';
import type { PayloadFormat, PayloadManifest } from '../update-engine/src/format/metadata.js';

function intArg(value: string, name: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new Error(`--${name}: '${value}' is not an integer from ${min} to ${max}`);
  return n;
}

interface Run {
  label: string;
  format: PayloadFormat;
  jobs?: number;
  times: number[];
  manifest?: PayloadManifest;
  digest?: string;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { usr: { type: 'string', default: 'out/usr.img' }, reps: { type: 'string', default: '2' }, 'xz-level': { type: 'string', default: '6' }, 'no-xz': { type: 'boolean', default: false } } });
  const usr = values.usr;
  const reps = intArg(values.reps, 'reps', 1, 100);
  const xzLevel = intArg(values['xz-level'], 'xz-level', 0, 9);
  if (!existsSync(usr)) throw new Error(`${usr} does not exist; build an image first (npx basalt build) or give --usr FILE`);
  // The builder's usr.img.json names the version; release insists on it.
  const side = existsSync(`${usr}.json`) ? (JSON.parse(await readFile(`${usr}.json`, 'utf8')) as { version?: string }) : {};
  const version = side.version ?? '1.0.0';
  const runs: Run[] = [
    ...(values['no-xz'] ? [] : [{ label: `format 1 (xz -${xzLevel})`, format: 1 as const, times: [] }]),
    { label: 'format 2 (none/zstd)', format: 2, times: [] },
    { label: 'format 2, 1 job', format: 2, jobs: 1, times: [] },
  ];
  const dir = await mkdtemp(join(tmpdir(), 'basalt-bench-release-'));
  try {
    await writeFile(join(dir, 'release.key'), (await generateKey('Basalt bench', undefined)).privateArmored);
    const key = await readPrivateKeyFile(join(dir, 'release.key'));
    for (let r = 0; r < reps; r++) {
      for (const [i, x] of runs.entries()) {
        const repo = join(dir, `repo-${r}-${i}`);
        const t0 = process.hrtime.bigint();
        const out = await release({ usr, version, channel: 'stable', key, repo, now: new Date(), expiresMs: 86_400_000, xzLevel, payloadFormat: x.format, jobs: x.jobs });
        x.times.push(Number(process.hrtime.bigint() - t0) / 1e9);
        x.manifest = out.manifest;
        x.digest = createHash('sha256').update(await readFile(join(repo, 'payloads', version, out.manifest.payload.file))).digest('hex');
        await rm(repo, { recursive: true, force: true });
      }
    }
    const best = (xs: number[]) => Math.min(...xs);
    process.stdout.write(`release of ${usr} (4 MiB chunks), best of ${reps}:\n`);
    for (const x of runs) {
      const m = x.manifest!;
      const kinds = m.formatVersion === 2 ? `, ${m.payload.chunks.filter((c) => c.compression === 'none').length} stored + ${m.payload.chunks.filter((c) => c.compression === 'zstd').length} zstd` : '';
      process.stdout.write(`  ${x.label.padEnd(22)} ${best(x.times).toFixed(1).padStart(5)} s   (${x.times.map((t) => t.toFixed(1)).join(', ')})  ${m.payload.size} B payload of ${m.image.size} B${kinds}\n`);
    }
    const f2 = runs.filter((x) => x.format === 2);
    const same = f2[0]!.digest === f2[1]!.digest;
    process.stdout.write(`  format 2 payload the same with 1 job and the default: ${same ? 'yes' : 'NO'}\n`);
    if (!same) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:release: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

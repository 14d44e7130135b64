/**
 * Delta bench: a release pair (a one-file bump), the full payload's bytes
 * beside the delta's (`release --delta-from`), xdelta3's and casync's on the
 * same pair when Debian's packages are installed, and the engine's apply of
 * the delta (seed from slot A) beside the full payload's, on loopback.
 *
 *   npm run bench:delta -- [--old A/usr.img --new B/usr.img] [--reps 3]
 *
 * Without --old/--new a pair is made: a squashfs (zstd) of 48 files of 1-3 MiB
 * and some text, and the same tree with one file of it replaced.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { haveTool, run } from '../common/src/exec.js';
import { parseUsrImageInfo } from '../common/src/contracts.js';
import { generateKey, readPrivateKeyFile } from '../update-engine/src/publish/keys.js';
import { release } from '../update-engine/src/publish/repo.js';
import { applyOnce, sealUsr, benchDisk, median, serveInWorker } from './harness.js';

/** A USR image of `tree` (squashfs, zstd, dm-verity appended) with its usr.img.json. */
async function usrOf(tree: string, img: string, version: string): Promise<string> {
  await run('mksquashfs', [tree, img, '-comp', 'zstd', '-all-root', '-noappend', '-quiet', '-no-progress']);
  return sealUsr(img, version);
}

/** A synthetic pair: 48 "packages" and some text; the new tree has one package replaced. */
async function syntheticPair(dir: string): Promise<[string, string]> {
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'lib/basalt/boot'), { recursive: true });
  await mkdir(join(tree, 'share/doc'), { recursive: true });
  await writeFile(join(tree, 'lib/basalt/boot/vmlinuz'), randomBytes(4 << 20));
  await writeFile(join(tree, 'lib/basalt/boot/initrd'), randomBytes(2 << 20));
  for (let i = 0; i < 48; i++) await writeFile(join(tree, `lib/pkg${String(i).padStart(2, '0')}.so`), randomBytes((1 + (i % 3)) << 20));
  await writeFile(join(tree, 'share/doc/words'), Array.from({ length: 200_000 }, (_, i) => `word${i % 5000}`).join(' '));
  const old = await usrOf(tree, join(dir, 'old.img'), '1.0.0');
  await writeFile(join(tree, 'lib/pkg17.so'), randomBytes(2 << 20));
  return [old, await usrOf(tree, join(dir, 'new.img'), '1.1.0')];
}

/** A copy of a built USR image and its usr.img.json with `version`. */
async function copyUsr(src: string, dest: string, version: string): Promise<string> {
  const info = parseUsrImageInfo(JSON.parse(await readFile(`${src}.json`, 'utf8')), `${src}.json`);
  await copyFile(src, dest);
  await writeFile(`${dest}.json`, JSON.stringify({ ...info, version }));
  return dest;
}

async function timed<T>(f: () => Promise<T>): Promise<{ s: number; v: T }> {
  const t0 = process.hrtime.bigint();
  const v = await f();
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, v };
}

/** Bytes of the files in `dir` (recursively). */
async function bytesIn(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir, { recursive: true, withFileTypes: true })) if (f.isFile()) n += (await stat(join(f.parentPath, f.name))).size;
  return n;
}

/** xdelta3's and casync's delta bytes for the pair, or why there are none. */
async function others(dir: string, old: string, neu: string): Promise<string[]> {
  const lines: string[] = [];
  if (await haveTool('xdelta3')) {
    const out = join(dir, 'x.vcdiff');
    const t = await timed(() => run('xdelta3', ['-e', '-f', '-s', old, neu, out]));
    const a = await timed(() => run('xdelta3', ['-d', '-f', '-s', old, out, join(dir, 'x.out')]));
    lines.push(`xdelta3        : ${(await stat(out)).size} B (encode ${t.s.toFixed(1)} s, decode ${a.s.toFixed(2)} s)`);
  } else lines.push('xdelta3        : not installed (apt-get install xdelta3)');
  if (await haveTool('casync')) {
    const store = join(dir, 'casync.castr');
    await run('casync', ['make', `--store=${store}`, join(dir, 'old.caibx'), old]);
    const before = await bytesIn(store);
    const t = await timed(() => run('casync', ['make', `--store=${store}`, join(dir, 'new.caibx'), neu]));
    lines.push(`casync         : ${(await bytesIn(store)) - before} B of new chunks + ${(await stat(join(dir, 'new.caibx'))).size} B index (make ${t.s.toFixed(1)} s)`);
  } else lines.push('casync         : not installed (apt-get install casync)');
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { old: { type: 'string' }, new: { type: 'string' }, reps: { type: 'string', default: '3' } } });
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps: '${values.reps}' is not a positive integer`);
  if ((values.old === undefined) !== (values.new === undefined)) throw new Error('--old and --new go together');
  const dir = await mkdtemp(join(tmpdir(), 'basalt-bench-delta-'));
  try {
    const [old, neu] = values.old && values.new ? [await copyUsr(values.old, join(dir, 'old.img'), '1.0.0'), await copyUsr(values.new, join(dir, 'new.img'), '1.1.0')] : await syntheticPair(dir);
    const k = await generateKey('bench', undefined);
    await writeFile(join(dir, 'release.key'), k.privateArmored);
    await mkdir(join(dir, 'ring'));
    await writeFile(join(dir, 'ring/k.asc'), k.publicArmored);
    const key = await readPrivateKeyFile(join(dir, 'release.key'));
    const base = { channel: 'stable', key, now: new Date(), expiresMs: 86_400_000 };
    // Two repositories: one with the delta, one with the full release only (the full apply's).
    for (const r of ['repo-delta', 'repo-full']) await release({ ...base, usr: old, version: '1.0.0', repo: join(dir, r) });
    const withDelta = await timed(() => release({ ...base, usr: neu, version: '1.1.0', repo: join(dir, 'repo-delta'), deltaFrom: ['1.0.0'] }));
    await release({ ...base, usr: neu, version: '1.1.0', repo: join(dir, 'repo-full') });
    const full = withDelta.v.manifest;
    const delta = withDelta.v.deltas[0]!;
    const seeds = delta.payload.chunks.filter((c) => c.compression === 'seed');
    const times: Record<string, number[]> = { delta: [], full: [] };
    for (const kind of ['delta', 'full'] as const) {
      const srv = await serveInWorker(join(dir, `repo-${kind}`), join(dir, `ev-${kind}.jsonl`));
      try {
        for (let i = 0; i < reps; i++) {
          const d = await benchDisk(dir, i, '1.0.0', old);
          times[kind]!.push((await applyOnce(d, srv.url, join(dir, 'ring'), dir, '1.0.0')).stream);
          await rm(d);
          await rm(`${d}.state`, { recursive: true });
        }
      } finally {
        await srv.stop();
      }
    }
    const pct = (n: number) => `${((100 * n) / full.payload.size).toFixed(1)} %`;
    process.stdout.write(
      [
        `pair: ${values.old ? `${values.old} -> ${values.new}` : 'synthetic (one 2 MiB file of 48 replaced)'}, images ${(await stat(old)).size} B -> ${full.image.size} B`,
        `full payload   : ${full.payload.size} B`,
        `basalt delta   : ${delta.payload.size} B (${pct(delta.payload.size)}; ${seeds.length} of ${delta.payload.chunks.length} chunks, ${seeds.reduce((a, c) => a + c.uncompressedSize, 0)} B, from slot A; release with delta ${withDelta.s.toFixed(1)} s)`,
        ...(await others(dir, old, neu)),
        `apply (download+verify+write, median of ${reps}): delta ${median(times.delta!).toFixed(2)} s, full ${median(times.full!).toFixed(2)} s`,
        JSON.stringify({ fullBytes: full.payload.size, deltaBytes: delta.payload.size, seedChunks: seeds.length, chunks: delta.payload.chunks.length, applyDeltaSeconds: times.delta, applyFullSeconds: times.full }),
        '',
      ].join('\n'),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`delta bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

/**
 * Build bench: Basalt's cold build (empty cache), warm rebuild (nothing
 * changed), a rebuild after one change (a file added by a three-line profile
 * extending the default one) and USR image size, beside mkosi (Debian's mkosi 14 package)
 * building the same package set into a bootable GPT disk image, cold and warm,
 * in the same run on the same machine.
 *
 *   npm run build && sudo node dist/bench/build-bench.js [--runs N] [--skip-mkosi] [--keep]
 *
 * N rounds (default 3), each from empty caches; the table gives each run's median.
 *
 * Writes bench/results/<date>.json and prints a table. Needs root (both
 * builders install packages into a tree) and network access to the Debian mirror.
 */
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../common/src/exec.js';
import { projectRoot } from '../common/src/paths.js';
import { median } from './harness.js';

interface Row {
  tool: string;
  run: string;
  seconds: number | null;
  ok: boolean;
  imageBytes?: number;
  usrBytes?: number;
  note?: string;
}

async function timed(argv: string[], opts: { cwd?: string } = {}): Promise<{ seconds: number; ok: boolean; stderr: string }> {
  const t = process.hrtime.bigint();
  const r = await run(argv[0]!, argv.slice(1), { reject: false, cwd: opts.cwd, timeoutMs: 60 * 60_000 });
  return { seconds: Number(process.hrtime.bigint() - t) / 1e9, ok: r.exitCode === 0, stderr: r.stderr.slice(-2000) };
}

/** Allocated (not apparent) bytes of a sparse file. */
async function allocated(path: string): Promise<number> {
  const s = await stat(path);
  return s.blocks * 512;
}

/** Pure: one row per tool and run, its seconds the median of the rounds that succeeded. */
function medianRows(rounds: readonly Row[][]): Row[] {
  const first = rounds[0] ?? [];
  return first.map((r, i) => {
    const all = rounds.map((round) => round[i]!).filter((x) => x.tool === r.tool && x.run === r.run);
    const ok = all.filter((x) => x.ok && x.seconds !== null);
    return { ...r, ok: ok.length === all.length, seconds: ok.length ? median(ok.map((x) => x.seconds!)) : null, note: [r.note, `median of ${ok.length}: ${ok.map((x) => x.seconds!.toFixed(1)).join(', ')}`].filter(Boolean).join('; ') };
  });
}

/** One round: Basalt cold, warm and one change, then mkosi cold and warm, each from an empty cache of its own. */
async function round(root: string, work: string, withMkosi: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  // Basalt: a fresh cache (no .debs, no stages, no npm tarball), then the same build again.
  const cache = join(work, 'basalt-cache');
  const out = join(work, 'basalt-out');
  const build = [process.execPath, join(root, 'bin/basalt.js'), 'build', '--cache', cache, '--out', out];
  // The one change: a profile of three lines that adds a file to the default one.
  const oneChange = join(work, 'one-change.yaml');
  await writeFile(oneChange, 'extends: default\nfiles: [{path: /etc/motd, content: "one change\\n"}]\n');
  const runs: [string, string[]][] = [
    ['cold (empty cache)', []],
    ['warm (no change)', []],
    ['one change (a file added by an extending profile)', ['--profile', oneChange]],
  ];
  for (const [label, extra] of runs) {
    const r = await timed([...build, ...extra]);
    const m = r.ok ? (JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { usr: { bytes: number }; artifacts: { kind: string; file: string }[] }) : undefined;
    const raw = m?.artifacts.find((a) => a.kind === 'raw');
    rows.push({
      tool: 'basalt',
      run: label,
      seconds: r.seconds,
      ok: r.ok,
      usrBytes: m?.usr.bytes,
      imageBytes: raw ? await allocated(join(out, raw.file)) : undefined,
      note: r.ok ? undefined : r.stderr.split('\n').slice(-3).join(' '),
    });
    process.stderr.write(`basalt ${label}: ${r.seconds.toFixed(1)} s ${r.ok ? 'ok' : 'FAILED'}\n`);
  }
  if (withMkosi) {
    const mk = join(work, 'mkosi');
    await mkdir(join(mk, 'mkosi.cache'), { recursive: true });
    await run('cp', [join(root, 'bench/mkosi/mkosi.default'), join(mk, 'mkosi.default')]);
    for (const label of ['cold (empty cache)', 'warm (package cache)']) {
      // --force replaces the previous image; the package cache in mkosi.cache/ is kept.
      const r = await timed(['mkosi', '--force', 'build'], { cwd: mk });
      const img = join(mk, 'image.raw');
      const bytes = r.ok ? await allocated(img).catch(() => undefined) : undefined;
      rows.push({ tool: 'mkosi 14', run: label, seconds: r.seconds, ok: r.ok, imageBytes: bytes, note: r.ok ? 'ext4 root, not bootable (no vfat mount here), docs kept, no verity or A/B' : r.stderr.split('\n').filter(Boolean).slice(-3).join(' ') });
      process.stderr.write(`mkosi ${label}: ${r.seconds.toFixed(1)} s ${r.ok ? 'ok' : 'FAILED'}\n`);
    }
  }
  return rows;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const root = projectRoot();
  const at = args.indexOf('--runs');
  const runs = at >= 0 ? Number(args[at + 1]) : 3;
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) {
    process.stderr.write(`build-bench: --runs ${args[at + 1] ?? ''}: want a whole number of rounds from 1 to 20\n`);
    return 2;
  }
  const rounds: Row[][] = [];
  // Rounds alternate the two builders, so a machine that slows down part-way weighs on both.
  for (let i = 0; i < runs; i++) {
    process.stderr.write(`round ${i + 1} of ${runs}\n`);
    const work = await mkdtemp(join(tmpdir(), 'basalt-bench-'));
    try {
      rounds.push(await round(root, work, !args.includes('--skip-mkosi')));
    } finally {
      if (!args.includes('--keep')) await rm(work, { recursive: true, force: true });
    }
  }
  const rows = medianRows(rounds);
  const mb = (n?: number) => (n === undefined ? '-' : (n / 1e6).toFixed(1));
  const lines = [
    `| tool | run | time (s), median of ${runs} | USR image (MB) | disk allocated (MB) | note |`,
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.tool} | ${r.run} | ${r.ok && r.seconds !== null ? r.seconds.toFixed(1) : 'failed'} | ${mb(r.usrBytes)} | ${mb(r.imageBytes)} | ${r.note ?? ''} |`),
  ];
  const sec = (tool: string, label: string) => rows.find((r) => r.tool === tool && r.run.startsWith(label))?.seconds ?? null;
  const ratio = (a: number | null, b: number | null) => (a !== null && b ? (a / b).toFixed(2) + '×' : '-');
  lines.push('', `basalt/mkosi: cold ${ratio(sec('basalt', 'cold'), sec('mkosi 14', 'cold'))}, warm ${ratio(sec('basalt', 'warm'), sec('mkosi 14', 'warm'))}, one change against mkosi warm ${ratio(sec('basalt', 'one change'), sec('mkosi 14', 'warm'))}`);
  process.stdout.write(lines.join('\n') + '\n');
  const dir = join(root, 'bench/results');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.json`), JSON.stringify({ host: { cpus: (await import('node:os')).cpus().length }, runs, rows, rounds }, null, 2) + '\n');
  return rows.every((r) => r.ok) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`build-bench: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);

/**
 * Helpers for the boot tests: build the image once with the `basalt build`
 * CLI, copy its raw disk, edit partitions and the ESP from the host with
 * `basalt disk`, dd and mtools. Black box: only artifacts, manifest.json and CLIs.
 */
import { existsSync } from 'node:fs';
import { copyFile, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../common/src/exec.js';
import { projectRoot } from '../../common/src/paths.js';
import { plainConsoleText } from '../src/console.js';

export interface Manifest {
  os: { version: string; id: string };
  usr: { rootHash: string; hashOffset: number; fsType: 'squashfs' | 'erofs'; sha256: string; bytes: number };
  kernel: { cmdline: string; entry: string };
  artifacts: { file: string; kind: string; bytes: number; sha256: string }[];
  sizes: Record<string, number>;
}

export interface DiskPart {
  index: number;
  label: string;
  firstLba: number;
  lastLba: number;
  offset: number;
  length: number;
  slot?: { priority: number; tries: number; successful: boolean };
}

export const isRoot = process.getuid?.() === 0;
export const haveQemu = existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/usr/share/OVMF');

/** The build cache the VM tests share with `basalt build` (its default as root). */
export const vmCacheDir = process.env['BASALT_CACHE'] ?? '/var/cache/basalt';

/**
 * A test file's own output folder, in the build cache (never the checkout's out/). Files run two
 * at a time, so none shares an output folder; the stage and outputs caches make a second build of
 * the same profile a copy.
 */
export function vmOutDir(name: string): string {
  return join(vmCacheDir, 'vm-test-out', name);
}

/** Runs `basalt <args>` from this checkout's bin/ and returns stdout; throws on failure. */
export async function basalt(args: string[], timeoutMs = 45 * 60_000): Promise<string> {
  const r = await run(process.execPath, [join(projectRoot(), 'bin/basalt.js'), ...args], { timeoutMs, reject: false });
  if (r.exitCode !== 0) throw new Error(`basalt ${args.join(' ')} failed (${r.exitCode}):\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}

/** Builds (stages cached) into outDir and returns the manifest. */
export async function buildImage(outDir: string, extra: string[] = []): Promise<Manifest> {
  await basalt(['build', '--out', outDir, ...extra]);
  return JSON.parse(await readFile(join(outDir, 'manifest.json'), 'utf8')) as Manifest;
}

/** A sparse copy of the raw disk, grown by `growBytes` (to test ROOT growing). */
export async function copyDisk(outDir: string, m: Manifest, dest: string, growBytes = 0): Promise<string> {
  const raw = m.artifacts.find((a) => a.kind === 'raw')!;
  await run('cp', ['--sparse=always', join(outDir, raw.file), dest]);
  if (growBytes > 0) await run('truncate', ['-s', `+${growBytes}`, dest]);
  return dest;
}

export async function partitions(disk: string): Promise<DiskPart[]> {
  const j = JSON.parse(await basalt(['disk', 'show', disk, '--json'])) as { sectorSize: number; partitions: (DiskPart & { slot?: DiskPart['slot'] })[] };
  return j.partitions.map((p) => ({ ...p, offset: p.firstLba * j.sectorSize, length: (p.lastLba - p.firstLba + 1) * j.sectorSize }));
}

export function part(parts: DiskPart[], label: string): DiskPart {
  const p = parts.find((x) => x.label === label);
  if (!p) throw new Error(`no partition ${label}`);
  return p;
}

/** Writes `src` into the disk at a byte offset (MiB-aligned), without truncating it. */
export async function writeInto(disk: string, src: string, offset: number): Promise<void> {
  await run('dd', [`if=${src}`, `of=${disk}`, 'bs=1M', `seek=${offset / 1048576}`, 'conv=notrunc', 'status=none']);
}

/** Overwrites `len` bytes at `offset` with 0xff. */
export async function corrupt(disk: string, offset: number, len: number): Promise<void> {
  const fh = await open(disk, 'r+');
  try {
    await fh.write(Buffer.alloc(len, 0xff), 0, len, offset);
  } finally {
    await fh.close();
  }
}

const mt = { env: { MTOOLS_SKIP_CHECK: '1' } };
export const espSpec = (disk: string, esp: DiskPart) => `${disk}@@${esp.offset}`;
export async function espList(disk: string, esp: DiskPart, dir: string): Promise<string[]> {
  const r = await run('mdir', ['-b', '-i', espSpec(disk, esp), `::${dir}`], mt);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().replace(/^::/, '').split('/').pop()!)
    .filter(Boolean);
}
export async function espMkdir(disk: string, esp: DiskPart, dir: string): Promise<void> {
  await run('mmd', ['-i', espSpec(disk, esp), `::${dir}`], mt);
}
export async function espCopy(disk: string, esp: DiskPart, src: string, dest: string): Promise<void> {
  await run('mcopy', ['-o', '-i', espSpec(disk, esp), src, `::${dest}`], mt);
}
export async function espRename(disk: string, esp: DiskPart, from: string, to: string): Promise<void> {
  await run('mren', ['-i', espSpec(disk, esp), `::${from}`, `::${to}`], mt);
}
export { copyFile };

/** Parses `basalt-status k=v k=v ...`. */
export function parseStatus(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of line.trim().split(/\s+/).slice(1)) {
    const i = w.indexOf('=');
    if (i > 0) out[w.slice(0, i)] = w.slice(i + 1);
  }
  return out;
}

interface TaskLike {
  type?: string;
  result?: { state?: string };
  tasks?: readonly TaskLike[];
}

function anyFailed(t: TaskLike): boolean {
  return t.result?.state === 'fail' || (t.tasks ?? []).some(anyFailed);
}

/** Where keepLogsIfFailed puts serial logs: $BASALT_VM_ARTIFACTS, else qemu-test/artifacts in the checkout. */
export function defaultArtifactsRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env['BASALT_VM_ARTIFACTS'] || join(projectRoot(), 'qemu-test', 'artifacts');
}

export interface KeepLogsOptions {
  /** Folder that gets `<name>-<time>/` (default: defaultArtifactsRoot()). */
  root?: string;
  /** Where the one line saying where the logs went is written (default: stderr). */
  log?: (line: string) => void;
}

/**
 * When a test of `suite` failed (or its setup did), copies every serial.log
 * under `work` to <root>/<name>-<time>/ (root: qemu-test/artifacts or
 * $BASALT_VM_ARTIFACTS) before the work directory is removed, and says where.
 * Returns that directory (undefined when all passed).
 */
export async function keepLogsIfFailed(suite: TaskLike, work: string | undefined, name: string, opts: KeepLogsOptions = {}): Promise<string | undefined> {
  if (!work || !anyFailed(suite)) return undefined;
  const { mkdir, readdir } = await import('node:fs/promises');
  const dest = join(opts.root ?? defaultArtifactsRoot(), `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  const logs = (await readdir(work, { recursive: true }).catch(() => [] as string[])).filter((f) => f.endsWith('serial.log'));
  if (logs.length === 0) return undefined;
  await mkdir(dest, { recursive: true });
  for (const f of logs) await copyFile(join(work, f), join(dest, f.replace(/[\\/]/g, '_')));
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  log(`[${name}] a test failed: serial logs kept in ${dest}`);
  // Their ends too, so that a run whose artifacts are out of reach (CI) still shows them.
  for (const f of logs) {
    const text = await readFile(join(work, f), 'utf8').catch(() => '');
    const lines = plainConsoleText(text).split('\n').slice(-40);
    log(`[${name}] last lines of ${f}:\n${lines.join('\n')}`);
  }
  return dest;
}

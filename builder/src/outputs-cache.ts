/**
 * The disk and outputs steps, cached by their inputs: the last stage's key
 * (which holds every stage's inputs) and the profile fields only these steps
 * read. A build with nothing changed takes the files of the previous one
 * instead of writing an 8 GiB disk, converting it and hashing everything.
 *
 * CACHE/outputs/<key>/ holds the artifacts and outputs.json (format 1: the
 * disk facts, the artifacts with their digests, the component sizes, and the
 * size and mtime of each file). The files are hard links to the ones of the
 * output folder that was built (a copy when the output folder is on another
 * file system), so a file written through the output folder afterwards (an
 * image booted without --snapshot) changes its mtime, and the entry is a miss
 * from then on. Written into <key>.tmp-<pid> and renamed; the few most recently
 * used keys are kept (cache-prune.ts).
 */
import { link, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../common/src/exec.js';
import { writeFileAtomic } from '../../common/src/fsutil.js';
import type { Logger } from '../../common/src/log.js';
import type { Profile } from '../../configs/src/profile.js';
import { stageKey } from './context.js';
import { pruneCache, touchEntry } from './cache-prune.js';
import { FactsReader, isRecord } from './facts.js';
import { BUILD_PLATFORMS, type BuildPlatform } from './platforms.js';

/** Bump when the disk or outputs steps change what they write. 2: the platforms' disks. 3: ROOT and OEM made in place, with a fixed hash seed. */
export const OUTPUTS_VERSION = 3;
export const OUTPUTS_CACHE_FORMAT = 1;

export interface Artifact {
  file: string;
  kind: 'raw' | 'qcow2' | 'pxe-kernel' | 'pxe-initramfs' | 'pxe-cmdline' | 'usr' | 'usr-info' | 'kernel' | 'initrd' | 'esp' | 'vmdk' | 'vhd' | 'gce-tar' | 'ova' | 'iso';
  /** The platform whose disk this is (`basalt.oem.id=` on its boot entries); absent for qemu's and pxe's outputs and the stage outputs. */
  platform?: BuildPlatform;
  bytes: number;
  /**
   * SHA-256 of the file; for the raw disk (a sparse file) the sparse digest
   * (sparseSha256 in builder/src/fsutil.ts: its non-zero 1 MiB blocks with
   * their offsets); the fixed VHD (a sparse file too) likewise.
   */
  sha256: string;
  /** 'sparse-sha256' when sha256 is the sparse digest; absent for a plain SHA-256. */
  digest?: 'sparse-sha256';
}

/** What the disk step reports (the manifest's `disk`). */
export interface DiskFacts {
  sizeBytes: number;
  layout: string;
  usrA: { index: number; priority: number; tries: number; successful: boolean };
}

export interface CachedOutputs {
  formatVersion: typeof OUTPUTS_CACHE_FORMAT;
  disk: DiskFacts;
  artifacts: Artifact[];
  sizes: Record<string, number>;
  /** Size and mtime (ns, as a string) of each artifact file when it was cached. */
  files: Record<string, { bytes: number; mtimeNs: string }>;
}

/**
 * Pure: the key of the disk and outputs steps: the last stage's key and what
 * only these steps read (the platforms written among them).
 */
export function outputsKey(p: Profile, lastStageKey: string, platforms: readonly BuildPlatform[] = p.platforms): string {
  return stageKey('outputs', OUTPUTS_VERSION, { disk: p.disk, outputs: p.outputs, os: p.os, cmdline: p.kernel.cmdline, epoch: p.sourceDateEpoch, platforms }, lastStageKey);
}

const KINDS: readonly Artifact['kind'][] = ['raw', 'qcow2', 'pxe-kernel', 'pxe-initramfs', 'pxe-cmdline', 'usr', 'usr-info', 'kernel', 'initrd', 'esp', 'vmdk', 'vhd', 'gce-tar', 'ova', 'iso'];

/** Pure: checks a parsed outputs.json (`where` names it in messages); throws E_STAGE_CACHE_INVALID. */
export function readCachedOutputs(json: unknown, where: string): CachedOutputs {
  const r = new FactsReader(json, where);
  if (r.get('formatVersion') !== OUTPUTS_CACHE_FORMAT) throw r.bad('formatVersion', `must be ${OUTPUTS_CACHE_FORMAT}`);
  const d = new FactsReader(r.get('disk'), `${where}: disk`);
  const a = new FactsReader(d.get('usrA'), `${where}: disk.usrA`);
  const successful = a.get('successful');
  if (typeof successful !== 'boolean') throw a.bad('successful', 'must be true or false');
  const list = r.get('artifacts');
  if (!Array.isArray(list)) throw r.bad('artifacts', 'must be a list');
  const artifacts = list.map((x, i): Artifact => {
    const f = new FactsReader(x, `${where}: artifacts[${i}]`);
    const kind = f.str('kind');
    if (!(KINDS as readonly string[]).includes(kind)) throw f.bad('kind', `'${kind}' is not an artifact kind`);
    const file = f.str('file');
    if (file.includes('/') || file.startsWith('.')) throw f.bad('file', 'must be a file name');
    const digest = f.get('digest');
    if (digest !== undefined && digest !== 'sparse-sha256') throw f.bad('digest', "must be 'sparse-sha256' or absent");
    const platform = f.get('platform');
    if (platform !== undefined && !(BUILD_PLATFORMS as readonly unknown[]).includes(platform)) throw f.bad('platform', 'must be a platform basalt build knows, or absent');
    return { file, kind: kind as Artifact['kind'], ...(platform ? { platform: platform as BuildPlatform } : {}), bytes: f.num('bytes'), sha256: f.str('sha256'), ...(digest ? { digest } : {}) };
  });
  const sizes = r.get('sizes');
  if (!isRecord(sizes) || !Object.values(sizes).every((v) => typeof v === 'number')) throw r.bad('sizes', 'must map names to numbers');
  const files = r.record('files', (f) => ({ bytes: f.num('bytes'), mtimeNs: f.str('mtimeNs') }));
  if (artifacts.some((x) => !files[x.file])) throw r.bad('files', 'must list every artifact');
  return {
    formatVersion: OUTPUTS_CACHE_FORMAT,
    disk: { sizeBytes: d.num('sizeBytes'), layout: d.str('layout'), usrA: { index: a.num('index'), priority: a.num('priority'), tries: a.num('tries'), successful } },
    artifacts,
    sizes: sizes as Record<string, number>,
    files,
  };
}

async function fileStamp(path: string): Promise<{ bytes: number; mtimeNs: string }> {
  const st = await stat(path, { bigint: true });
  return { bytes: Number(st.size), mtimeNs: st.mtimeNs.toString() };
}

/** Puts `from` at `to`: a hard link, or a copy (holes kept) across file systems. */
async function linkOrCopy(from: string, to: string, signal?: AbortSignal): Promise<void> {
  try {
    await link(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await run('cp', ['--reflink=auto', '--sparse=always', from, to], signal ? { signal } : {});
  }
}

/**
 * The cached outputs of `key`, put into `outDir`; undefined on a miss (none,
 * unreadable, or a file changed since it was cached: that entry is removed).
 */
export async function takeCachedOutputs(cacheDir: string, key: string, outDir: string, log: Logger, signal?: AbortSignal): Promise<CachedOutputs | undefined> {
  const dir = join(cacheDir, 'outputs', key);
  const file = join(dir, 'outputs.json');
  let cached: CachedOutputs;
  try {
    cached = readCachedOutputs(JSON.parse(await readFile(file, 'utf8')), file);
    for (const [name, want] of Object.entries(cached.files)) {
      const now = await fileStamp(join(dir, name));
      if (now.bytes !== want.bytes || now.mtimeNs !== want.mtimeNs) throw new Error(`${name} changed since it was cached`);
    }
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    if (!missing) log.warn(`${file}: ${e instanceof Error ? e.message : String(e)}; making the disk and outputs again`);
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  try {
    for (const a of cached.artifacts) await linkOrCopy(join(dir, a.file), join(outDir, a.file), signal);
  } catch (e) {
    // Pruned by another build meanwhile: a miss, and the files linked so far go.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    for (const a of cached.artifacts) await rm(join(outDir, a.file), { force: true });
    return undefined;
  }
  await touchEntry(dir);
  return cached;
}

/** Stores the artifacts of `outDir` as the outputs of `key` (and prunes other keys). */
export async function storeOutputs(cacheDir: string, key: string, outDir: string, o: Omit<CachedOutputs, 'formatVersion' | 'files'>, signal?: AbortSignal): Promise<void> {
  const base = join(cacheDir, 'outputs');
  const dir = join(base, key);
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const files: CachedOutputs['files'] = {};
    for (const a of o.artifacts) {
      await linkOrCopy(join(outDir, a.file), join(tmp, a.file), signal);
      files[a.file] = await fileStamp(join(tmp, a.file));
    }
    const record: CachedOutputs = { formatVersion: OUTPUTS_CACHE_FORMAT, ...o, files };
    await writeFileAtomic(join(tmp, 'outputs.json'), JSON.stringify(record, null, 1) + '\n');
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await pruneCache(base, key);
}

/**
 * The build pipeline: cached stages (packages → customize → trim → initrd →
 * usr-image → boot), then the disk and outputs steps (cached together by
 * their inputs: outputs-cache.ts), run in order under listr2, into a temporary output folder that replaces --out only when
 * everything succeeded.
 *
 * Cache layout: CACHE/stages/<stage>/<key>/ (result.json + files); a stage is
 * built in <key>.tmp-<pid> and renamed when done, so an interrupted build never
 * leaves a half stage that looks complete. A stage keeps its few most recently
 * used keys (cache-prune.ts).
 */
import { copyFile, lstat, mkdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Listr, type ListrTask } from 'listr2';
import { SLOT_PARTLABEL, type UsrImageInfo } from '../../common/src/contracts.js';
import { BasaltError, COMMON_ERRORS } from '../../common/src/errors.js';
import { run } from '../../common/src/exec.js';
import { kernelCmdline } from '../../common/src/boot.js';
import { writeFileAtomic } from '../../common/src/fsutil.js';
import { mapLimit } from '../../common/src/limit.js';
import { createDisk, findPartition, partitionRange, setSlotAttrs, writeGpt } from '../../common/src/gpt/index.js';
import type { Logger } from '../../common/src/log.js';
import { loadProfile, type Profile } from '../../configs/src/profile.js';
import { formatReport } from '../../configs/src/report.js';
import { recordDone, sha256, stageDir, stageFacts, stageKey, type AnyStage, type BuildContext, type Stage, type StageFactsByName, type StageName, type StageResult } from './context.js';
import { writeCpio } from './cpio.js';
import { BUILD_ERRORS } from './errors.js';
import { exists, removeWorkDir, sha256File, sparseSha256, treeBytes } from './fsutil.js';
import { bootStage, FIRST_BOOT_TRIES } from './stages/boot.js';
import { customizeStage } from './stages/customize.js';
import { initrdStage } from './stages/initrd.js';
import { layerStage } from './stages/layer.js';
import { packagesStage, SIZE_GROUPS, type PackageInfo } from './stages/packages.js';
import { trimStage } from './stages/trim.js';
import { usrImageStage, uuidFrom } from './stages/usr-image.js';
import { pruneCache, touchEntry } from './cache-prune.js';
import { outputsKey, storeOutputs, takeCachedOutputs, type Artifact, type CachedOutputs, type DiskFacts } from './outputs-cache.js';
import { makePlatformOutputs, type PxeFiles } from './platform-outputs.js';
import { canonicalPlatforms, needsIsoTools, needsQemuImg, needsTar, platformFiles, type BuildPlatform } from './platforms.js';

export const STAGES: readonly AnyStage[] = [packagesStage, customizeStage, trimStage, initrdStage, layerStage, usrImageStage, bootStage];
/** 2: the raw disk's artifact digest is the sparse one (`digest: 'sparse-sha256'`); profile.extends lists the base profiles. Added since, read by nobody strictly: `platforms` and each artifact's `platform`. */
export const MANIFEST_FORMAT_VERSION = 2;

export interface BuildOptions {
  profileFile: string;
  outDir: string;
  cacheDir: string;
  repoRoot: string;
  log: Logger;
  signal: AbortSignal;
  /** Ignore (and replace) cached stages. */
  noCache?: boolean;
  /** The platforms to write disks for (--platform, parsed); default: the profile's `platforms`. */
  platforms?: readonly BuildPlatform[] | undefined;
  /** listr2 renderer: 'default' on a terminal, 'simple' otherwise, 'silent' for --json. */
  renderer: 'default' | 'simple' | 'silent';
}

export interface StageSummary {
  name: string;
  key: string;
  cached: boolean;
  seconds: number;
}

export interface BuildSummary {
  out: string;
  version: string;
  seconds: number;
  platforms: BuildPlatform[];
  stages: StageSummary[];
  artifacts: Artifact[];
  usr: { bytes: number; sha256: string; rootHash: string };
}

/**
 * The result of a stage found in the cache, its facts checked; undefined when
 * there is none, or when it is not what the stage writes (then the stage is
 * built again, as on a miss).
 */
async function readCachedResult<N extends StageName>(ctx: BuildContext, stage: Stage<N>, resultFile: string): Promise<StageResult<StageFactsByName[N]> | undefined> {
  if (!(await exists(resultFile))) return undefined;
  try {
    const json: unknown = JSON.parse(await readFile(resultFile, 'utf8'));
    const facts = typeof json === 'object' && json !== null && 'facts' in json ? json.facts : undefined;
    return { facts: stage.readFacts(facts, resultFile) };
  } catch (e) {
    ctx.log.warn(`${resultFile}: ${e instanceof Error ? e.message : String(e)}; building the ${stage.name} stage again`);
    return undefined;
  }
}

/** Builds a stage into `dir` (via `dir`.tmp-PID, renamed when complete); returns its result. */
async function buildStage<N extends StageName>(ctx: BuildContext, stage: Stage<N>, dir: string): Promise<StageResult<StageFactsByName[N]>> {
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const result = await stage.run(ctx, tmp);
    await writeFile(join(tmp, 'result.json'), JSON.stringify(result, null, 1) + '\n');
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    return result;
  } catch (e) {
    await removeWorkDir(tmp);
    throw e;
  }
}

/**
 * The cache key of every stage for a profile, without running anything: what
 * runStage computes stage by stage (each key holds the one before it).
 */
export async function planKeys(ctx: BuildContext): Promise<{ name: StageName; key: string }[]> {
  const keys: { name: StageName; key: string }[] = [];
  let previous = '';
  for (const stage of STAGES) {
    previous = stageKey(stage.name, stage.version, await stage.inputs(ctx), previous);
    keys.push({ name: stage.name, key: previous });
  }
  return keys;
}

/**
 * Starts the prefetch of every stage after `building` that has one (once per
 * build): its downloads overlap the stage being built. Its failure is left to
 * that stage's run, which goes through the same fetch.
 */
function startPrefetches(ctx: BuildContext, building: StageName): void {
  for (const s of STAGES.slice(STAGES.findIndex((x) => x.name === building) + 1)) {
    if (!s.prefetch || ctx.prefetches.has(s.name)) continue;
    ctx.prefetches.set(s.name, s.prefetch(ctx).catch(() => undefined));
  }
}

async function runStage<N extends StageName>(ctx: BuildContext, stage: Stage<N>, previous: string, noCache: boolean): Promise<StageSummary> {
  const t0 = Date.now();
  const key = stageKey(stage.name, stage.version, await stage.inputs(ctx), previous);
  const base = join(ctx.cacheDir, 'stages', stage.name);
  const dir = join(base, key);
  const cached = noCache ? undefined : await readCachedResult(ctx, stage, join(dir, 'result.json'));
  if (!cached) startPrefetches(ctx, stage.name);
  const result = cached ?? (await buildStage(ctx, stage, dir));
  recordDone(ctx.done, stage.name, { dir, result });
  // A hit marks the key used; a new key makes room among the newest few (cache-prune.ts).
  if (cached) await touchEntry(dir);
  else await pruneCache(base, key);
  return { name: stage.name, key, cached: !!cached, seconds: (Date.now() - t0) / 1000 };
}

/** Copies `src` into the disk image at byte `offset` without growing or un-sparsing it. */
async function writeAt(disk: string, src: string, offset: number, limit: number, what: string, signal: AbortSignal): Promise<void> {
  const size = (await stat(src)).size;
  if (size > limit) throw new BasaltError(BUILD_ERRORS.E_DISK_TOO_SMALL, `${what} (${size} bytes) does not fit its partition (${limit} bytes)`);
  if (offset % (1024 * 1024) !== 0) throw new BasaltError(COMMON_ERRORS.E_INTERNAL, `${what}: partition offset ${offset} is not MiB-aligned`);
  await run('dd', [`if=${src}`, `of=${disk}`, 'bs=1M', `seek=${offset / (1024 * 1024)}`, 'conv=notrunc,sparse', 'status=none'], { signal });
}

type Gpt = Awaited<ReturnType<typeof createDisk>>;

/**
 * Pure: mkfs.ext4 argv for an empty filesystem made in place, at its partition's
 * offset in the disk file (no image to copy in, and the disk stays sparse).
 * UUID and directory hash seed come from the OS and label, so the same inputs
 * give the same bytes.
 */
export function mkfsExt4InPlaceArgs(disk: string, label: string, uuid: string, range: { offset: number; length: number }): string[] {
  const ext = ['root_owner=0:0', 'lazy_itable_init=1', 'lazy_journal_init=1', `hash_seed=${uuid}`, `offset=${range.offset}`, 'nodiscard'];
  return ['-q', '-F', '-L', label, '-U', uuid, '-E', ext.join(','), disk, `${Math.floor(range.length / 1024)}k`];
}

/** Makes an empty ext4 filesystem in place in each of ROOT and OEM the layout has. */
async function writeEmptyFilesystems(ctx: BuildContext, disk: string, gpt: Gpt): Promise<void> {
  const p = ctx.profile;
  const env = { E2FSPROGS_FAKE_TIME: String(p.sourceDateEpoch) };
  for (const label of ['ROOT', 'OEM'] as const) {
    const part = gpt.partitions.find((x) => x.label === label);
    if (!part) continue;
    const uuid = uuidFrom(sha256(`${p.os.id}:${p.os.version}:${label}`));
    await run('mkfs.ext4', mkfsExt4InPlaceArgs(disk, label, uuid, partitionRange(gpt, part)), { env, signal: ctx.signal });
  }
}

/** Disk step: GPT from the layout on a sparse file, ESP, USR-A, OEM and an empty ROOT copied in. */
async function makeDisk(ctx: BuildContext, tmpOut: string): Promise<{ file: string; facts: DiskFacts }> {
  const p = ctx.profile;
  const disk = join(tmpOut, outputNames(p.os.id).raw);
  return { file: disk, facts: await writeDisk(ctx, disk, p.disk.size) };
}

/** The disk of the profile's layout at `sizeBytes` into the file `disk`. */
async function writeDisk(ctx: BuildContext, disk: string, sizeBytes: number): Promise<DiskFacts> {
  const p = ctx.profile;
  let gpt = await createDisk(disk, { layout: p.disk.layout, sizeBytes, seed: `${p.os.id}:${p.os.version}`, force: true });
  const range = (label: string) => partitionRange(gpt, findPartition(gpt, label));
  const esp = range('EFI-SYSTEM');
  await writeAt(disk, join(stageDir(ctx, 'boot'), 'esp.img'), esp.offset, esp.length, 'EFI-SYSTEM image', ctx.signal);
  const usrA = range(SLOT_PARTLABEL.A);
  await writeAt(disk, join(stageDir(ctx, 'usr-image'), 'usr.img'), usrA.offset, usrA.length, 'USR image', ctx.signal);
  await writeEmptyFilesystems(ctx, disk, gpt);
  const a = findPartition(gpt, SLOT_PARTLABEL.A).index;
  const b = findPartition(gpt, SLOT_PARTLABEL.B).index;
  gpt = setSlotAttrs(gpt, a, { priority: 1, tries: FIRST_BOOT_TRIES, successful: false });
  gpt = setSlotAttrs(gpt, b, { priority: 0, tries: 0, successful: false });
  await writeGpt(disk, gpt);
  return { sizeBytes, layout: p.disk.layout, usrA: { index: a, priority: 1, tries: FIRST_BOOT_TRIES, successful: false } };
}

/** Kernel command line for PXE: tmpfs root, /usr from the image in the initramfs. */
export function pxeCmdline(usr: Pick<UsrImageInfo, 'version' | 'rootHash' | 'hashOffset' | 'fsType'>, extra: readonly string[]): string {
  const disk = kernelCmdline({ slot: 'a', version: usr.version, rootHash: usr.rootHash || undefined, hashOffset: usr.rootHash ? usr.hashOffset : undefined, fsType: usr.fsType, extraCmdline: extra });
  const pxe = new Map([
    [`basalt.usr=PARTLABEL=${SLOT_PARTLABEL.A}`, 'basalt.usr=/usr.img'],
    ['basalt.slot=A', 'basalt.slot=PXE'],
    ['root=PARTLABEL=ROOT', 'root=tmpfs'],
    ['rootfstype=ext4', 'rootflags=mode=0755'],
  ]);
  return disk
    .split(' ')
    .map((w) => pxe.get(w) ?? w)
    .join(' ');
}

async function artifact(dir: string, file: string, kind: Artifact['kind'], platform?: BuildPlatform): Promise<Artifact> {
  const f = join(dir, file);
  const bytes = (await stat(f)).size;
  const pf = platform ? { platform } : {};
  // The raw disk and the fixed VHD are sparse files of GiBs: hashed by their data, not their holes.
  if (kind === 'raw' || kind === 'vhd') return { file, kind, ...pf, bytes, sha256: await sparseSha256(f), digest: 'sparse-sha256' };
  return { file, kind, ...pf, bytes, sha256: await sha256File(f) };
}

/** Bytes of the files of each size group still present in the final tree. */
async function componentSizes(ctx: BuildContext): Promise<Record<string, number>> {
  const initrdDir = stageDir(ctx, 'initrd');
  const root = join(initrdDir, 'root');
  const lists = JSON.parse(await readFile(join(stageDir(ctx, 'packages'), 'pkgfiles.json'), 'utf8')) as Record<string, string[]>;
  const sizes: Record<string, number> = {};
  for (const group of Object.keys(SIZE_GROUPS)) {
    let n = 0;
    for (const f of new Set(lists[group] ?? [])) {
      try {
        const st = await lstat(join(root, f.replace(/^\/(bin|sbin|lib)\//, '/usr/$1/')));
        if (st.isFile()) n += st.size;
      } catch {
        /* removed by trim */
      }
    }
    sizes[group] = n;
  }
  const kver = stageFacts(ctx, 'initrd').kernelVersion;
  sizes['kernel'] = (await stat(join(initrdDir, 'vmlinuz'))).size;
  sizes['modules'] = await treeBytes(join(root, 'usr/lib/modules', kver));
  sizes['nodeRuntime'] = await treeBytes(join(root, 'usr/lib/basalt/node'));
  sizes['basaltApp'] = await treeBytes(join(root, 'usr/lib/basalt/app'));
  sizes['initrd'] = (await stat(join(initrdDir, 'initrd'))).size;
  sizes['usrTree'] = await treeBytes(join(root, 'usr'));
  return sizes;
}

/** The file names of the outputs, for an OS id. */
function outputNames(id: string) {
  return {
    raw: `${id}_production_image.bin`,
    qcow2: `${id}_production_qemu_image.qcow2`,
    pxeKernel: `${id}_production_pxe.vmlinuz`,
    pxeInitramfs: `${id}_production_pxe_image.cpio`,
    pxeCmdline: `${id}_production_pxe.cmdline`,
  };
}

/** The USR image, its description, the kernel and the initrd, as the stages made them. */
async function copyStageOutputs(ctx: BuildContext, tmpOut: string): Promise<void> {
  const usrDir = stageDir(ctx, 'usr-image');
  const initrdDir = stageDir(ctx, 'initrd');
  await copyFile(join(usrDir, 'usr.img'), join(tmpOut, 'usr.img'));
  await copyFile(join(usrDir, 'usr.img.json'), join(tmpOut, 'usr.img.json'));
  await copyFile(join(initrdDir, 'vmlinuz'), join(tmpOut, 'vmlinuz'));
  await copyFile(join(initrdDir, 'initrd'), join(tmpOut, 'initrd'));
}

/** PXE (and the live ISO's boot): the kernel, the dracut initrd followed by an uncompressed cpio holding /usr.img, and the command line, written in `dir`. */
async function makePxe(ctx: BuildContext, dir: string): Promise<PxeFiles> {
  const p = ctx.profile;
  const names = outputNames(p.os.id);
  const initrdDir = stageDir(ctx, 'initrd');
  const files = { kernel: join(dir, names.pxeKernel), initramfs: join(dir, names.pxeInitramfs), cmdline: pxeCmdline(stageFacts(ctx, 'usr-image'), p.kernel.cmdline) };
  await copyFile(join(initrdDir, 'vmlinuz'), files.kernel);
  await copyFile(join(initrdDir, 'initrd'), files.initramfs);
  // The kernel looks for the next archive's header at a 4-byte boundary after zero padding.
  await truncate(files.initramfs, Math.ceil((await stat(files.initramfs)).size / 512) * 512);
  await writeCpio(files.initramfs, [{ name: 'usr.img', source: join(stageDir(ctx, 'usr-image'), 'usr.img'), mode: 0o644 }], p.sourceDateEpoch, { append: true });
  await writeFile(join(dir, names.pxeCmdline), files.cmdline + '\n');
  return files;
}

/** The artifacts present in `tmpOut`, in the manifest's order: qemu's, pxe's, the other platforms', the stage outputs. */
async function collectArtifacts(tmpOut: string, id: string, platforms: readonly BuildPlatform[]): Promise<Artifact[]> {
  const n = outputNames(id);
  const kinds: [string, Artifact['kind'], BuildPlatform?][] = [
    [n.raw, 'raw'],
    [n.qcow2, 'qcow2'],
    [n.pxeKernel, 'pxe-kernel'],
    [n.pxeInitramfs, 'pxe-initramfs'],
    [n.pxeCmdline, 'pxe-cmdline'],
    ...platforms.flatMap((p) => platformFiles(id, p).map((f): [string, Artifact['kind'], BuildPlatform] => [f.file, f.kind, p])),
    ['usr.img', 'usr'],
    ['usr.img.json', 'usr-info'],
    ['vmlinuz', 'kernel'],
    ['initrd', 'initrd'],
  ];
  const present: typeof kinds = [];
  for (const x of kinds) if (await exists(join(tmpOut, x[0]))) present.push(x);
  // Two at a time: hashing is one core per file.
  return mapLimit(present, 2, ([f, k, p]) => artifact(tmpOut, f, k, p));
}

/** What the manifest records besides what the stages report. */
interface ManifestInputs {
  profileFile: string;
  platforms: readonly BuildPlatform[];
  /** Bytes of each component (componentSizes). */
  sizes: Record<string, number>;
  /** The profiles it extends, the base first, with the SHA-256 of each file. */
  profileBases: { file: string; sha256: string }[];
  disk: DiskFacts;
  stages: StageSummary[];
  artifacts: Artifact[];
}

/** manifest.json: the profile, kernel, USR image, sizes, trim, disk, stages, artifacts and packages of the build. */
async function writeManifest(ctx: BuildContext, tmpOut: string, m: ManifestInputs): Promise<void> {
  const profile = ctx.profile;
  const usr = stageFacts(ctx, 'usr-image');
  const boot = stageFacts(ctx, 'boot');
  const packages = JSON.parse(await readFile(join(stageDir(ctx, 'packages'), 'packages.json'), 'utf8')) as PackageInfo[];
  const trim = JSON.parse(await readFile(join(stageDir(ctx, 'trim'), 'trim.json'), 'utf8')) as unknown;
  const manifest = {
    formatVersion: MANIFEST_FORMAT_VERSION,
    os: profile.os,
    board: profile.board,
    sourceDateEpoch: profile.sourceDateEpoch,
    platforms: m.platforms,
    profile: { file: m.profileFile, sha256: sha256(await readFile(m.profileFile)), ...(m.profileBases.length ? { extends: m.profileBases } : {}) },
    kernel: { version: stageFacts(ctx, 'initrd').kernelVersion, cmdline: boot.cmdline, entry: boot.entry },
    usr: { fsType: usr.fsType, compression: profile.usr.compression, bytes: usr.imageBytes, fsBytes: usr.fsBytes, hashOffset: usr.hashOffset, rootHash: usr.rootHash, salt: usr.salt, sha256: usr.sha256 },
    sizes: m.sizes,
    trim,
    disk: m.disk,
    stages: m.stages,
    artifacts: m.artifacts,
    packages,
  };
  await writeFileAtomic(join(tmpOut, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
}

/** Pure: which of qemu's and pxe's outputs a build writes: qemu's are the profile's `outputs`; pxe's come with either platform. */
export function qemuPxeOutputs(outputs: readonly string[], platforms: readonly BuildPlatform[]): { raw: boolean; qcow2: boolean; pxe: boolean } {
  const qemu = platforms.includes('qemu');
  return { raw: qemu && outputs.includes('raw'), qcow2: qemu && outputs.includes('qcow2'), pxe: (qemu && outputs.includes('pxe')) || platforms.includes('pxe') };
}

/**
 * Outputs step: the stage outputs, qcow2 and PXE as the profile asks, every
 * other platform's disk, then manifest.json. Returns the artifacts and sizes.
 */
async function makeOutputs(ctx: BuildContext, tmpOut: string, m: Omit<ManifestInputs, 'artifacts' | 'sizes'>): Promise<Pick<CachedOutputs, 'artifacts' | 'sizes'>> {
  const profile = ctx.profile;
  const names = outputNames(profile.os.id);
  const want = qemuPxeOutputs(profile.outputs, m.platforms);
  await copyStageOutputs(ctx, tmpOut);
  // The qcow2 and the PXE initramfs at the same time (each mostly one core: qemu-img, cpio writing).
  ctx.progress?.([want.qcow2 ? `qcow2: converting ${names.raw}` : '', want.pxe ? 'PXE: packing the initramfs with the USR image' : ''].filter(Boolean).join('; '));
  await Promise.all([
    want.qcow2 ? run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(tmpOut, names.raw), join(tmpOut, names.qcow2)], { signal: ctx.signal }) : undefined,
    want.pxe ? makePxe(ctx, tmpOut) : undefined,
  ]);
  const makeDiskAt = async (file: string, sizeBytes: number) => {
    await writeDisk(ctx, file, sizeBytes);
  };
  await makePlatformOutputs({ ctx, tmpOut, base: join(tmpOut, names.raw), makeDiskAt, makePxeAt: (dir) => makePxe(ctx, dir), manifestFormat: MANIFEST_FORMAT_VERSION }, m.platforms);
  if (!want.raw) await rm(join(tmpOut, names.raw));
  ctx.progress?.('hashing the artifacts (sparse files by their data)');
  const artifacts = await collectArtifacts(tmpOut, profile.os.id, m.platforms);
  const sizes = await componentSizes(ctx);
  await writeManifest(ctx, tmpOut, { ...m, artifacts, sizes });
  return { artifacts, sizes };
}

/** Host tools the build runs, with the Debian package that provides each. */
export const HOST_TOOLS: Record<string, string> = {
  mmdebstrap: 'mmdebstrap',
  mksquashfs: 'squashfs-tools',
  veritysetup: 'cryptsetup-bin',
  'mkfs.vfat': 'dosfstools',
  mmd: 'mtools',
  mcopy: 'mtools',
  'mkfs.ext4': 'e2fsprogs',
  'qemu-img': 'qemu-utils',
  tar: 'tar',
  gzip: 'gzip',
  xorriso: 'xorriso',
  // The initrd (initrd stage) and the live ISO's disk.
  zstd: 'zstd',
  chroot: 'coreutils',
  strip: 'binutils',
  npm: 'npm (or Node.js from nodesource)',
};

/** Pure: the host tools a build needs (HOST_TOOLS' names, and mkfs.erofs for an erofs USR image). */
export function neededTools(profile: { usr: { fs: string }; outputs: string[] }, platforms: readonly BuildPlatform[]): string[] {
  const qemuImg = qemuPxeOutputs(profile.outputs, platforms).qcow2 || needsQemuImg(platforms);
  const skip = (t: string) =>
    (t === 'qemu-img' && !qemuImg) || (t === 'mksquashfs' && profile.usr.fs !== 'squashfs') || ((t === 'tar' || t === 'gzip') && !needsTar(platforms)) || (t === 'xorriso' && !needsIsoTools(platforms));
  const need = Object.keys(HOST_TOOLS).filter((t) => !skip(t));
  if (profile.usr.fs === 'erofs') need.push('mkfs.erofs');
  return need;
}

/** Fails early, naming every missing tool and the apt-get line that installs them. */
export async function checkHostTools(profile: { usr: { fs: string }; outputs: string[] }, platforms: readonly BuildPlatform[] = ['qemu']): Promise<void> {
  const { haveTool } = await import('../../common/src/exec.js');
  const need = neededTools(profile, platforms);
  const missing: string[] = [];
  for (const t of need) if (!(await haveTool(t))) missing.push(t);
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => HOST_TOOLS[t] ?? 'erofs-utils'))];
    throw new BasaltError(COMMON_ERRORS.E_TOOL_MISSING, `host tools missing: ${missing.join(', ')}`, { hint: `sudo apt-get install -y ${pkgs.join(' ')}` });
  }
}

/** The folders of one build: the output, the temporary one it is built in, and the context the stages get. */
interface BuildSetup {
  ctx: BuildContext;
  out: string;
  tmpOut: string;
}

async function setUp(o: BuildOptions, profile: Profile, signal: AbortSignal): Promise<BuildSetup> {
  const out = resolve(o.outDir);
  const ctx: BuildContext = { profile, profileFile: o.profileFile, repoRoot: o.repoRoot, cacheDir: o.cacheDir, log: o.log, signal, done: {}, prefetches: new Map() };
  await mkdir(o.cacheDir, { recursive: true });
  await mkdir(dirname(out), { recursive: true });
  const tmpOut = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  await rm(tmpOut, { recursive: true, force: true });
  await mkdir(tmpOut, { recursive: true });
  return { ctx, out, tmpOut };
}

type Task = ListrTask<unknown>;

function taskTitle(title: string, sum: StageSummary): string {
  return `${title} ${sum.cached ? '(cached)' : `(${sum.seconds.toFixed(1)} s)`}`;
}

/**
 * Pure: a progress sink that passes a line on at most every `everyMs` (0: every
 * line; a terminal redraws in place, a log gets one line now and then).
 */
export function throttled(say: (text: string) => void, everyMs: number, now: () => number = Date.now): (text: string) => void {
  let last = -Infinity;
  return (text) => {
    const t = now();
    if (everyMs > 0 && t - last < everyMs) return;
    last = t;
    say(text);
  };
}

/** The cached stages in order, each keyed on the one before; a stage's sub-steps go to its task's output. */
function stageTasks(ctx: BuildContext, stages: StageSummary[], noCache: boolean, progressEveryMs: number): Task[] {
  let previous = '';
  return STAGES.map((stage) => ({
    title: stage.title,
    task: async (_, task) => {
      ctx.progress = throttled((text) => {
        task.output = text;
      }, progressEveryMs);
      try {
        const sum = await runStage(ctx, stage, previous, noCache);
        previous = sum.key;
        stages.push(sum);
        task.title = taskTitle(stage.title, sum);
      } finally {
        ctx.progress = undefined;
      }
    },
  }));
}

/** Replaces `out` with the finished `tmpOut` (the old folder goes only after the rename). */
async function swapIn(tmpOut: string, out: string): Promise<void> {
  const old = join(dirname(out), `.${basename(out)}.old-${process.pid}`);
  const had = await exists(out);
  if (had) await rename(out, old);
  await rename(tmpOut, out);
  if (had) await rm(old, { recursive: true, force: true });
}

/** Runs the whole build; returns the summary. Throws BasaltError on failure (the previous output stays). */
export async function build(o: BuildOptions): Promise<BuildSummary> {
  const t0 = Date.now();
  const loaded = await loadProfile(o.profileFile);
  const profile = loaded.profile;
  for (const w of loaded.warnings) o.log.warn(formatReport([w]));
  const profileBases = loaded.files.slice(0, -1).map((file, i) => ({ file, sha256: sha256(loaded.texts[i]!) }));
  const platforms = canonicalPlatforms(o.platforms ?? profile.platforms);
  await checkHostTools(profile, platforms);
  // Stopped when the build fails, so that no prefetch outlives it.
  const stop = new AbortController();
  const { ctx, out, tmpOut } = await setUp(o, profile, AbortSignal.any([o.signal, stop.signal]));
  const stages: StageSummary[] = [];
  let disk: DiskFacts | undefined;
  let artifacts: Artifact[] = [];
  const diskTitle = `Disk (GPT, EFI-SYSTEM, ${SLOT_PARTLABEL.A}, ROOT)`;
  const outputsTitle = `Outputs (${platforms.join(', ')}, manifest)`;
  // The disk and outputs of the same inputs, from the cache (the disk step finds them).
  let outKey = '';
  let hit: CachedOutputs | undefined;
  const tasks = new Listr(
    [
      // On a terminal every sub-step redraws the task's line; in a log (CI) one line every 10 s at most.
      ...stageTasks(ctx, stages, !!o.noCache, o.renderer === 'default' ? 0 : 10_000),
      {
        title: diskTitle,
        task: async (_, task) => {
          const t = Date.now();
          outKey = outputsKey(profile, stages.at(-1)?.key ?? '', platforms);
          hit = o.noCache ? undefined : await takeCachedOutputs(o.cacheDir, outKey, tmpOut, o.log, o.signal);
          if (!hit) disk = (await makeDisk(ctx, tmpOut)).facts;
          const sum = { name: 'disk', key: outKey, cached: !!hit, seconds: (Date.now() - t) / 1000 };
          stages.push(sum);
          task.title = taskTitle(diskTitle, sum);
        },
      },
      {
        title: outputsTitle,
        task: async (_, task) => {
          const t = Date.now();
          ctx.progress = (text) => {
            task.output = text;
          };
          if (hit) {
            disk = hit.disk;
            artifacts = hit.artifacts;
            await writeManifest(ctx, tmpOut, { profileFile: o.profileFile, platforms, profileBases, disk, stages, artifacts, sizes: hit.sizes });
          } else {
            if (!disk) throw new BasaltError(COMMON_ERRORS.E_INTERNAL, 'the outputs step ran before the disk step');
            const made = await makeOutputs(ctx, tmpOut, { profileFile: o.profileFile, platforms, profileBases, disk, stages });
            artifacts = made.artifacts;
            // The outputs are made: a cache that cannot take them only costs the next build time.
            await storeOutputs(o.cacheDir, outKey, tmpOut, { disk, ...made }, o.signal).catch((e: unknown) => o.log.warn(`cannot cache the outputs in ${o.cacheDir}: ${e instanceof Error ? e.message : String(e)}`));
          }
          const sum = { name: 'outputs', key: outKey, cached: !!hit, seconds: (Date.now() - t) / 1000 };
          stages.push(sum);
          task.title = taskTitle(outputsTitle, sum);
        },
      },
    ],
    { renderer: o.renderer, exitOnError: true, registerSignalListeners: false, rendererOptions: (o.renderer === 'default' ? { outputBar: 1, persistentOutput: false } : {}) as never },
  );
  try {
    await tasks.run();
    // A prefetch whose stage was a cache hit after all (its entry kept, an earlier one pruned).
    await Promise.allSettled(ctx.prefetches.values());
    if (o.signal.aborted) throw new BasaltError(BUILD_ERRORS.E_INTERRUPTED, 'the build was interrupted');
    await swapIn(tmpOut, out);
  } catch (e) {
    stop.abort();
    await Promise.allSettled(ctx.prefetches.values());
    await rm(tmpOut, { recursive: true, force: true });
    if (o.signal.aborted) throw new BasaltError(BUILD_ERRORS.E_INTERRUPTED, 'the build was interrupted', { cause: e });
    throw e;
  }
  const usrArt = artifacts.find((a) => a.kind === 'usr')!;
  return {
    out,
    version: profile.os.version,
    seconds: (Date.now() - t0) / 1000,
    platforms,
    stages,
    artifacts,
    usr: { bytes: usrArt.bytes, sha256: usrArt.sha256, rootHash: stageFacts(ctx, 'usr-image').rootHash },
  };
}

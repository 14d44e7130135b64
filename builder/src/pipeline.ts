/**
 * The build pipeline: cached stages (packages → customize → trim → initrd →
 * usr-image → boot), then the uncached disk and outputs steps, run in order
 * under listr2, into a temporary output folder that replaces --out only when
 * everything succeeded.
 *
 * Cache layout: CACHE/stages/<stage>/<key>/ (result.json + files); a stage is
 * built in <key>.tmp-<pid> and renamed when done, so an interrupted build never
 * leaves a half stage that looks complete. Older keys of a stage are pruned.
 */
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Listr } from 'listr2';
import { BasaltError } from '../../common/src/errors.js';
import { run } from '../../common/src/exec.js';
import { kernelCmdline } from '../../common/src/boot.js';
import { createDisk, findPartition, partitionRange, setSlotAttrs, writeGpt } from '../../common/src/gpt/index.js';
import type { Logger } from '../../common/src/log.js';
import { loadProfile } from '../../configs/src/profile.js';
import { sha256, stageKey, type BuildContext, type Stage, type StageResult } from './context.js';
import { writeCpio } from './cpio.js';
import { exists, removeWorkDir, sha256File, treeBytes, writeAtomic } from './fsutil.js';
import { bootStage, FIRST_BOOT_TRIES } from './stages/boot.js';
import { customizeStage } from './stages/customize.js';
import { initrdStage } from './stages/initrd.js';
import { packagesStage, SIZE_GROUPS, type PackageInfo } from './stages/packages.js';
import { trimStage } from './stages/trim.js';
import { usrImageStage, uuidFrom, type UsrImageInfo } from './stages/usr-image.js';

export const STAGES: Stage[] = [packagesStage, customizeStage, trimStage, initrdStage, usrImageStage, bootStage];
export const MANIFEST_FORMAT_VERSION = 1;

export interface BuildOptions {
  profileFile: string;
  outDir: string;
  cacheDir: string;
  repoRoot: string;
  log: Logger;
  signal: AbortSignal;
  /** Ignore (and replace) cached stages. */
  noCache?: boolean;
  /** listr2 renderer: 'default' on a terminal, 'simple' otherwise, 'silent' for --json. */
  renderer: 'default' | 'simple' | 'silent';
}

export interface StageSummary {
  name: string;
  key: string;
  cached: boolean;
  seconds: number;
}

export interface Artifact {
  file: string;
  kind: 'raw' | 'qcow2' | 'pxe-kernel' | 'pxe-initramfs' | 'pxe-cmdline' | 'usr' | 'usr-info' | 'kernel' | 'initrd' | 'esp';
  bytes: number;
  sha256: string;
}

export interface BuildSummary {
  out: string;
  version: string;
  seconds: number;
  stages: StageSummary[];
  artifacts: Artifact[];
  usr: { bytes: number; sha256: string; rootHash: string };
}

async function pruneOthers(dir: string, keep: string): Promise<void> {
  for (const e of await readdir(dir).catch(() => [] as string[])) {
    if (e !== keep) await rm(join(dir, e), { recursive: true, force: true });
  }
}

async function runStage(ctx: BuildContext, stage: Stage, previous: string, noCache: boolean): Promise<StageSummary> {
  const t0 = Date.now();
  const key = stageKey(stage.name, stage.version, await stage.inputs(ctx), previous);
  const base = join(ctx.cacheDir, 'stages', stage.name);
  const dir = join(base, key);
  const resultFile = join(dir, 'result.json');
  if (!noCache && (await exists(resultFile))) {
    ctx.results.set(stage.name, JSON.parse(await readFile(resultFile, 'utf8')) as StageResult);
    ctx.dirs.set(stage.name, dir);
    return { name: stage.name, key, cached: true, seconds: (Date.now() - t0) / 1000 };
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const result = await stage.run(ctx, tmp);
    await writeFile(join(tmp, 'result.json'), JSON.stringify(result, null, 1) + '\n');
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    ctx.results.set(stage.name, result);
    ctx.dirs.set(stage.name, dir);
  } catch (e) {
    await removeWorkDir(tmp);
    throw e;
  }
  await pruneOthers(base, key);
  return { name: stage.name, key, cached: false, seconds: (Date.now() - t0) / 1000 };
}

/** Copies `src` into the disk image at byte `offset` without growing or un-sparsing it. */
async function writeAt(disk: string, src: string, offset: number, limit: number, what: string, signal: AbortSignal): Promise<void> {
  const size = (await stat(src)).size;
  if (size > limit) throw new BasaltError('E_DISK_TOO_SMALL', `${what} (${size} bytes) does not fit its partition (${limit} bytes)`, { hint: 'use a larger layout or a smaller package set' });
  if (offset % (1024 * 1024) !== 0) throw new BasaltError('E_INTERNAL', `${what}: partition offset ${offset} is not MiB-aligned`);
  await run('dd', [`if=${src}`, `of=${disk}`, 'bs=1M', `seek=${offset / (1024 * 1024)}`, 'conv=notrunc,sparse', 'status=none'], { signal });
}

/** Disk step: GPT from the layout on a sparse file, ESP, USR-A, OEM and an empty ROOT copied in. */
async function makeDisk(ctx: BuildContext, tmpOut: string): Promise<{ file: string; facts: Record<string, unknown> }> {
  const p = ctx.profile;
  const disk = join(tmpOut, `${p.os.id}_production_image.bin`);
  let gpt = await createDisk(disk, { layout: p.disk.layout, sizeBytes: p.disk.size, seed: `${p.os.id}:${p.os.version}`, force: true });
  const work = join(tmpOut, '.work');
  await mkdir(work, { recursive: true });
  const range = (label: string) => partitionRange(gpt, findPartition(gpt, label));
  const esp = range('EFI-SYSTEM');
  await writeAt(disk, join(ctx.dirs.get('boot')!, 'esp.img'), esp.offset, esp.length, 'EFI-SYSTEM image', ctx.signal);
  const usrA = range('USR-A');
  await writeAt(disk, join(ctx.dirs.get('usr-image')!, 'usr.img'), usrA.offset, usrA.length, 'USR image', ctx.signal);
  const env = { E2FSPROGS_FAKE_TIME: String(p.sourceDateEpoch) };
  for (const [label, what] of [['ROOT', 'root'], ['OEM', 'oem']] as const) {
    const part = gpt.partitions.find((x) => x.label === label);
    if (!part) continue;
    const r = partitionRange(gpt, part);
    const img = join(work, `${what}.img`);
    await run('mkfs.ext4', ['-q', '-F', '-L', label, '-U', uuidFrom(sha256(`${p.os.id}:${p.os.version}:${label}`)), '-E', 'root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1', img, `${Math.floor(r.length / 1024)}k`], { env, signal: ctx.signal });
    await writeAt(disk, img, r.offset, r.length, `${label} filesystem`, ctx.signal);
    await rm(img);
  }
  const a = findPartition(gpt, 'USR-A').index;
  const b = findPartition(gpt, 'USR-B').index;
  gpt = setSlotAttrs(gpt, a, { priority: 1, tries: FIRST_BOOT_TRIES, successful: false });
  gpt = setSlotAttrs(gpt, b, { priority: 0, tries: 0, successful: false });
  await writeGpt(disk, gpt);
  await rm(work, { recursive: true, force: true });
  return { file: disk, facts: { sizeBytes: p.disk.size, layout: p.disk.layout, usrA: { index: a, priority: 1, tries: FIRST_BOOT_TRIES, successful: false } } };
}

/** Kernel command line for PXE: tmpfs root, /usr from the image in the initramfs. */
export function pxeCmdline(usr: UsrImageInfo, extra: readonly string[]): string {
  const disk = kernelCmdline({ slot: 'a', version: usr.version, rootHash: usr.rootHash || undefined, hashOffset: usr.rootHash ? usr.hashOffset : undefined, fsType: usr.fsType, extraCmdline: extra });
  return disk
    .split(' ')
    .map((w) => (w === 'basalt.usr=PARTLABEL=USR-A' ? 'basalt.usr=/usr.img' : w === 'basalt.slot=A' ? 'basalt.slot=PXE' : w === 'root=PARTLABEL=ROOT' ? 'root=tmpfs' : w === 'rootfstype=ext4' ? 'rootflags=mode=0755' : w))
    .join(' ');
}

async function artifact(dir: string, file: string, kind: Artifact['kind']): Promise<Artifact> {
  const f = join(dir, file);
  return { file, kind, bytes: (await stat(f)).size, sha256: await sha256File(f) };
}

/** Bytes of the files of each size group still present in the final tree. */
async function componentSizes(ctx: BuildContext): Promise<Record<string, number>> {
  const root = join(ctx.dirs.get('initrd')!, 'root');
  const lists = JSON.parse(await readFile(join(ctx.dirs.get('packages')!, 'pkgfiles.json'), 'utf8')) as Record<string, string[]>;
  const sizes: Record<string, number> = {};
  for (const group of Object.keys(SIZE_GROUPS)) {
    let n = 0;
    for (const f of new Set(lists[group] ?? [])) {
      try {
        const st = await import('node:fs/promises').then((m) => m.lstat(join(root, f.replace(/^\/(bin|sbin|lib)\//, '/usr/$1/'))));
        if (st.isFile()) n += st.size;
      } catch {
        /* removed by trim */
      }
    }
    sizes[group] = n;
  }
  const kver = ctx.results.get('initrd')!.facts['kernelVersion'] as string;
  sizes['kernel'] = (await stat(join(ctx.dirs.get('initrd')!, 'vmlinuz'))).size;
  sizes['modules'] = await treeBytes(join(root, 'usr/lib/modules', kver));
  sizes['nodeRuntime'] = await treeBytes(join(root, 'usr/lib/basalt/node'));
  sizes['basaltApp'] = await treeBytes(join(root, 'usr/lib/basalt/app'));
  sizes['initrd'] = (await stat(join(ctx.dirs.get('initrd')!, 'initrd'))).size;
  sizes['usrTree'] = await treeBytes(join(root, 'usr'));
  return sizes;
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
  chroot: 'coreutils',
  npm: 'npm (or Node.js from nodesource)',
};

/** Fails early, naming every missing tool and the apt-get line that installs them. */
export async function checkHostTools(profile: { usr: { fs: string }; outputs: string[] }): Promise<void> {
  const { haveTool } = await import('../../common/src/exec.js');
  const need = Object.keys(HOST_TOOLS).filter((t) => !(t === 'qemu-img' && !profile.outputs.includes('qcow2')) && !(t === 'mksquashfs' && profile.usr.fs !== 'squashfs'));
  if (profile.usr.fs === 'erofs') need.push('mkfs.erofs');
  const missing: string[] = [];
  for (const t of need) if (!(await haveTool(t))) missing.push(t);
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => HOST_TOOLS[t] ?? 'erofs-utils'))];
    throw new BasaltError('E_TOOL_MISSING', `host tools missing: ${missing.join(', ')}`, { hint: `sudo apt-get install -y ${pkgs.join(' ')}` });
  }
}

/** Runs the whole build; returns the summary. Throws BasaltError on failure (the previous output stays). */
export async function build(o: BuildOptions): Promise<BuildSummary> {
  const t0 = Date.now();
  const { profile } = await loadProfile(o.profileFile);
  await checkHostTools(profile);
  const out = resolve(o.outDir);
  const ctx: BuildContext = { profile, profileFile: o.profileFile, repoRoot: o.repoRoot, cacheDir: o.cacheDir, log: o.log, signal: o.signal, results: new Map(), dirs: new Map() };
  await mkdir(o.cacheDir, { recursive: true });
  await mkdir(dirname(out), { recursive: true });
  const tmpOut = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  await rm(tmpOut, { recursive: true, force: true });
  await mkdir(tmpOut, { recursive: true });
  const stages: StageSummary[] = [];
  const artifacts: Artifact[] = [];
  let previous = '';
  const title = (s: string, sum: StageSummary) => `${s} ${sum.cached ? '(cached)' : `(${sum.seconds.toFixed(1)} s)`}`;
  const tasks = new Listr(
    [
      ...STAGES.map((stage) => ({
        title: stage.title,
        task: async (_: unknown, task: { title: string }) => {
          const sum = await runStage(ctx, stage, previous, !!o.noCache);
          previous = sum.key;
          stages.push(sum);
          task.title = title(stage.title, sum);
        },
      })),
      {
        title: 'Disk (GPT, EFI-SYSTEM, USR-A, ROOT)',
        task: async (_: unknown, task: { title: string }) => {
          const t = Date.now();
          const d = await makeDisk(ctx, tmpOut);
          ctx.results.set('disk', { facts: d.facts });
          const sum = { name: 'disk', key: '-', cached: false, seconds: (Date.now() - t) / 1000 };
          stages.push(sum);
          task.title = title('Disk (GPT, EFI-SYSTEM, USR-A, ROOT)', sum);
        },
      },
      {
        title: 'Outputs (raw, qcow2, PXE, manifest)',
        task: async (_: unknown, task: { title: string }) => {
          const t = Date.now();
          const usr = ctx.results.get('usr-image')!.facts as unknown as UsrImageInfo;
          const id = profile.os.id;
          const raw = `${id}_production_image.bin`;
          const usrDir = ctx.dirs.get('usr-image')!;
          const initrdDir = ctx.dirs.get('initrd')!;
          await copyFile(join(usrDir, 'usr.img'), join(tmpOut, 'usr.img'));
          await copyFile(join(usrDir, 'usr.img.json'), join(tmpOut, 'usr.img.json'));
          await copyFile(join(initrdDir, 'vmlinuz'), join(tmpOut, 'vmlinuz'));
          await copyFile(join(initrdDir, 'initrd'), join(tmpOut, 'initrd'));
          if (profile.outputs.includes('qcow2')) {
            await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(tmpOut, raw), join(tmpOut, `${id}_production_qemu_image.qcow2`)], { signal: o.signal });
          }
          if (profile.outputs.includes('pxe')) {
            await copyFile(join(initrdDir, 'vmlinuz'), join(tmpOut, `${id}_production_pxe.vmlinuz`));
            // The dracut initrd followed by an uncompressed cpio holding /usr.img.
            const pxe = join(tmpOut, `${id}_production_pxe_image.cpio`);
            await copyFile(join(initrdDir, 'initrd'), pxe);
            // The kernel looks for the next archive's header at a 4-byte boundary after zero padding.
            await truncate(pxe, Math.ceil((await stat(pxe)).size / 512) * 512);
            await writeCpio(pxe, [{ name: 'usr.img', source: join(usrDir, 'usr.img'), mode: 0o644 }], profile.sourceDateEpoch, { append: true });
            await writeFile(join(tmpOut, `${id}_production_pxe.cmdline`), pxeCmdline(usr, profile.kernel.cmdline) + '\n');
          }
          if (!profile.outputs.includes('raw')) await rm(join(tmpOut, raw));
          const kinds: [string, Artifact['kind']][] = [
            [raw, 'raw'],
            [`${id}_production_qemu_image.qcow2`, 'qcow2'],
            [`${id}_production_pxe.vmlinuz`, 'pxe-kernel'],
            [`${id}_production_pxe_image.cpio`, 'pxe-initramfs'],
            [`${id}_production_pxe.cmdline`, 'pxe-cmdline'],
            ['usr.img', 'usr'],
            ['usr.img.json', 'usr-info'],
            ['vmlinuz', 'kernel'],
            ['initrd', 'initrd'],
          ];
          for (const [f, k] of kinds) if (await exists(join(tmpOut, f))) artifacts.push(await artifact(tmpOut, f, k));
          const packages = JSON.parse(await readFile(join(ctx.dirs.get('packages')!, 'packages.json'), 'utf8')) as PackageInfo[];
          const trim = JSON.parse(await readFile(join(ctx.dirs.get('trim')!, 'trim.json'), 'utf8')) as unknown;
          const manifest = {
            formatVersion: MANIFEST_FORMAT_VERSION,
            os: profile.os,
            board: profile.board,
            sourceDateEpoch: profile.sourceDateEpoch,
            profile: { file: o.profileFile, sha256: sha256(await readFile(o.profileFile)) },
            kernel: { version: ctx.results.get('initrd')!.facts['kernelVersion'], cmdline: ctx.results.get('boot')!.facts['cmdline'], entry: ctx.results.get('boot')!.facts['entry'] },
            usr: { fsType: usr.fsType, compression: profile.usr.compression, bytes: usr.imageBytes, fsBytes: usr.fsBytes, hashOffset: usr.hashOffset, rootHash: usr.rootHash, salt: usr.salt, sha256: usr.sha256 },
            sizes: await componentSizes(ctx),
            trim,
            disk: ctx.results.get('disk')!.facts,
            stages,
            artifacts,
            packages,
          };
          await writeAtomic(join(tmpOut, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
          const sum = { name: 'outputs', key: '-', cached: false, seconds: (Date.now() - t) / 1000 };
          stages.push(sum);
          task.title = title('Outputs (raw, qcow2, PXE, manifest)', sum);
        },
      },
    ],
    { renderer: o.renderer, exitOnError: true, registerSignalListeners: false, rendererOptions: {} as never },
  );
  try {
    await tasks.run();
    if (o.signal.aborted) throw new BasaltError('E_INTERRUPTED', 'the build was interrupted', { hint: 'the previous output was left as it was' });
    // Swap the finished folder in.
    const old = join(dirname(out), `.${basename(out)}.old-${process.pid}`);
    const had = await exists(out);
    if (had) await rename(out, old);
    await rename(tmpOut, out);
    if (had) await rm(old, { recursive: true, force: true });
  } catch (e) {
    await rm(tmpOut, { recursive: true, force: true });
    if (o.signal.aborted) throw new BasaltError('E_INTERRUPTED', 'the build was interrupted; the previous output was left as it was', { cause: e });
    throw e;
  }
  const usrArt = artifacts.find((a) => a.kind === 'usr')!;
  return {
    out,
    version: profile.os.version,
    seconds: (Date.now() - t0) / 1000,
    stages,
    artifacts,
    usr: { bytes: usrArt.bytes, sha256: usrArt.sha256, rootHash: (ctx.results.get('usr-image')!.facts as unknown as UsrImageInfo).rootHash },
  };
}

/**
 * `basalt build --platform`, the I/O shell: each platform's disk is a sparse
 * copy of the built raw disk with the platform id put on its boot entry (the
 * boot stage's entry edited by entryWithPlatform of common/src/platform.ts,
 * the edit `basalt install -o` makes, and copied over it on EFI-SYSTEM with
 * mtools), converted to the format the
 * platform imports (platforms.ts plans names and argv). Runs inside the
 * outputs step, in its temporary output folder (renamed over --out only when
 * the whole build succeeded); work files go under `<tmpOut>/.work-<platform>`
 * and are removed when the platform is done.
 *
 * Side effects: cp, mcopy, qemu-img, tar + gzip; files in tmpOut.
 */
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BasaltError, COMMON_ERRORS } from '../../common/src/errors.js';
import { run } from '../../common/src/exec.js';
import { findPartition, partitionRange, readGpt } from '../../common/src/gpt/index.js';
import { entryWithPlatform } from '../../common/src/platform.js';
import { sparseSha256 } from '../../common/src/sparse.js';
import { stageDir, stageFacts, type BuildContext } from './context.js';
import { isoVolumeId, makeIso } from './iso.js';
import { sha256File } from './fsutil.js';
import { alignMiB, convertArgs, gceTarArgs, ovaMembers, ovaTarArgs, platformFiles, renderMf, renderOvf, type BuildPlatform, type PlatformFile } from './platforms.js';

/** The VM the OVA describes (the user changes it on import). */
const OVA_VM = { cpus: 2, memoryMiB: 2048 } as const;

export interface PlatformInputs {
  ctx: BuildContext;
  tmpOut: string;
  /** The raw disk the disk step wrote (no platform id). */
  base: string;
  /** Makes the disk again at another size (Azure's whole MiB when the profile's size is not). */
  makeDiskAt: (file: string, sizeBytes: number) => Promise<void>;
  /** Writes PXE's kernel and initramfs (with the USR image) into a folder (the live ISO boots them). */
  makePxeAt: (dir: string) => Promise<PxeFiles>;
  /** manifest.json's format version (the live ISO carries a manifest naming its disk). */
  manifestFormat: number;
}

/** PXE's boot files as the outputs step writes them. */
export interface PxeFiles {
  kernel: string;
  initramfs: string;
  cmdline: string;
}

/**
 * The live ISO: PXE's kernel and initramfs behind systemd-boot (iso.ts), and
 * in its ISO 9660 tree the disk to install, zstd-compressed, with a
 * manifest.json naming it (the raw disk's sparse digest, what `basalt
 * install -f` checks after expanding it). The disk carries no platform id:
 * `basalt install -o` gives the installed machine its own.
 */
async function makeLiveIso(i: PlatformInputs, out: string, work: string): Promise<void> {
  const p = i.ctx.profile;
  const pxe = await i.makePxeAt(work);
  const tree = join(work, 'image');
  await mkdir(tree);
  const rawName = basename(i.base);
  const zst = join(tree, `${rawName}.zst`);
  i.ctx.progress?.(`iso: compressing ${rawName}`);
  await run('zstd', ['-q', '-T0', '-3', '-o', zst, i.base], { signal: i.ctx.signal });
  const manifest = join(tree, 'manifest.json');
  const raw = { file: rawName, kind: 'raw', bytes: (await stat(i.base)).size, sha256: await sparseSha256(i.base), digest: 'sparse-sha256' };
  await writeFile(manifest, JSON.stringify({ formatVersion: i.manifestFormat, os: p.os, artifacts: [raw] }, null, 2) + '\n');
  const scratch = join(work, 'iso');
  await mkdir(scratch);
  await makeIso(
    {
      kernel: pxe.kernel,
      initramfs: pxe.initramfs,
      cmdline: pxe.cmdline,
      systemdBoot: join(stageDir(i.ctx, 'initrd'), 'root/usr/lib/systemd/boot/efi/systemd-bootx64.efi'),
      osName: p.os.name,
      version: p.os.version,
      volumeId: isoVolumeId(p.os.id, p.os.version),
      sourceDateEpoch: p.sourceDateEpoch,
      extraFiles: [zst, manifest],
    },
    out,
    scratch,
    i.ctx.signal,
  );
}


/** Puts `basalt.oem.id=<platform>` on the disk's boot entry (the one the boot stage wrote). */
async function setPlatform(i: PlatformInputs, disk: string, platform: BuildPlatform, work: string): Promise<void> {
  const entry = stageFacts(i.ctx, 'boot').entry;
  const edited = entryWithPlatform(await readFile(join(stageDir(i.ctx, 'boot'), entry), 'utf8'), platform);
  if (edited === undefined) throw new BasaltError(COMMON_ERRORS.E_INTERNAL, `${entry}: the boot stage's entry has no options line`);
  const file = join(work, entry);
  await writeFile(file, edited);
  const gpt = await readGpt(disk);
  const esp = partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM'));
  await run('mcopy', ['-o', '-i', `${disk}@@${esp.offset}`, file, `::/loader/entries/${entry}`], { env: { MTOOLS_SKIP_CHECK: '1' }, signal: i.ctx.signal });
  await rm(file);
}

/** A sparse copy of `from` at `to` with `basalt.oem.id=<platform>` on its boot entry. */
async function diskFor(i: PlatformInputs, platform: BuildPlatform, to: string, from = i.base): Promise<void> {
  await run('cp', ['--sparse=always', '--reflink=auto', from, to], { signal: i.ctx.signal });
  await setPlatform(i, to, platform, join(i.tmpOut, `.work-${platform}`));
}

async function qemuImg(i: PlatformInputs, format: 'vmdk' | 'vhd' | 'qcow2', from: string, to: string): Promise<void> {
  await run('qemu-img', convertArgs(format, from, to), { signal: i.ctx.signal });
}

/** Writes one platform's files (platformFiles) into tmpOut. */
async function makeOne(i: PlatformInputs, platform: BuildPlatform, files: PlatformFile[]): Promise<void> {
  const p = i.ctx.profile;
  const out = (kind: PlatformFile['kind']) => join(i.tmpOut, files.find((f) => f.kind === kind)!.file);
  const work = join(i.tmpOut, `.work-${platform}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const raw = join(work, 'disk.raw');
  try {
    switch (platform) {
      case 'metal':
        await diskFor(i, platform, out('raw'));
        break;
      case 'aws':
        await diskFor(i, platform, out('raw'));
        await qemuImg(i, 'vmdk', out('raw'), out('vmdk'));
        break;
      case 'gce':
        await diskFor(i, platform, raw);
        await run('tar', gceTarArgs(out('gce-tar'), work, p.sourceDateEpoch), { signal: i.ctx.signal });
        break;
      case 'azure': {
        const size = alignMiB(p.disk.size);
        let from = i.base;
        if (size !== p.disk.size) {
          from = join(work, 'aligned.raw');
          await i.makeDiskAt(from, size);
        }
        await diskFor(i, platform, raw, from);
        await qemuImg(i, 'vhd', raw, out('vhd'));
        break;
      }
      case 'openstack':
      case 'digitalocean':
        await diskFor(i, platform, raw);
        await qemuImg(i, 'qcow2', raw, out('qcow2'));
        break;
      case 'vmware': {
        await diskFor(i, platform, raw);
        const m = ovaMembers(p.os.id);
        await qemuImg(i, 'vmdk', raw, join(work, m.vmdk));
        const ovf = renderOvf({ name: `${p.os.name} ${p.os.version}`, osId: p.os.id, vmdkBytes: (await stat(join(work, m.vmdk))).size, capacity: (await stat(raw)).size, ...OVA_VM });
        await writeFile(join(work, m.ovf), ovf);
        const sums = [];
        for (const f of [m.ovf, m.vmdk]) sums.push({ file: f, sha256: await sha256File(join(work, f)) });
        await writeFile(join(work, m.mf), renderMf(sums));
        await run('tar', ovaTarArgs(out('ova'), work, p.os.id, p.sourceDateEpoch), { signal: i.ctx.signal });
        break;
      }
      case 'iso':
        await makeLiveIso(i, out('iso'), work);
        break;
      case 'qemu':
      case 'pxe':
        break;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes the files of every platform but qemu and pxe (the outputs step makes theirs), in order. */
export async function makePlatformOutputs(i: PlatformInputs, platforms: readonly BuildPlatform[]): Promise<void> {
  for (const platform of platforms) {
    const files = platformFiles(i.ctx.profile.os.id, platform);
    if (files.length === 0) continue;
    i.ctx.progress?.(`${platform}: ${files.map((f) => f.file).join(', ')}`);
    await makeOne(i, platform, files);
  }
}

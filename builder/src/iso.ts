/**
 * The live ISO: a hybrid EFI image for a CD-ROM or a USB stick that boots as
 * PXE does (the kernel and the PXE initramfs, which carries the USR image;
 * root on tmpfs, /usr from dm-verity), with `basalt.oem.id=iso` on its
 * command line so the live system knows it is one.
 *
 * Layout: systemd-boot, its loader.conf, one entry and the kernel and
 * initramfs live in a FAT image (EFI can only read a FAT file system). xorriso
 * appends that image as GPT partition 2 (the EFI System Partition a firmware
 * boots from a USB stick) and points the El Torito EFI boot entry at the same
 * bytes (what a firmware boots from a CD-ROM). The ISO 9660 tree holds the
 * disk image to install (`basalt install -f` from the mounted ISO) when given.
 *
 * Pure planning (names, entry, argv) apart from makeIso, the thin I/O shell.
 * Side effects of makeIso: writes `out` (through a temporary file renamed into
 * place) and a scratch FAT image in `scratch`; runs mkfs.vfat, mmd, mcopy and
 * xorriso.
 */
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LOADER_CONF } from '../../common/src/boot.js';
import { run } from '../../common/src/exec.js';
import { entryWithPlatform, type PlatformId } from '../../common/src/platform.js';

/** The platform id the live system's command line carries. */
export const ISO_PLATFORM = 'iso' satisfies PlatformId;
/** Where the ISO's loader entry finds the kernel and the initramfs on its FAT image. */
export const ISO_KERNEL = '/basalt/live/vmlinuz';
export const ISO_INITRD = '/basalt/live/initrd';
export const ISO_ENTRY = 'basalt-live.conf';
/** The folder of the ISO 9660 tree that holds the installable disk image. */
export const ISO_IMAGE_DIR = 'basalt';

export interface IsoInputs {
  /** The kernel and the PXE initramfs (initrd + usr.img). */
  kernel: string;
  initramfs: string;
  /** The PXE command line (root on tmpfs, /usr from the initramfs's usr.img). */
  cmdline: string;
  /** systemd-boot's EFI binary. */
  systemdBoot: string;
  osName: string;
  version: string;
  /** ISO 9660 volume id (at most 32 characters of A-Z, 0-9 and _). */
  volumeId: string;
  sourceDateEpoch: number;
  /** Files put into the ISO 9660 tree under basalt/ (e.g. the compressed disk image and its manifest). */
  extraFiles?: string[];
}

/** The loader entry of the live system. Pure. */
export function isoEntry(i: Pick<IsoInputs, 'cmdline' | 'osName' | 'version'>): string {
  const entry = [`title ${i.osName} ${i.version} (live)`, `version ${i.version}`, `linux ${ISO_KERNEL}`, `initrd ${ISO_INITRD}`, `options ${i.cmdline.trim()}`, ''].join('\n');
  return entryWithPlatform(entry, ISO_PLATFORM)!;
}

/** An ISO 9660 volume id from an OS id and version: upper case, [A-Z0-9_], at most 32 characters. Pure. */
export function isoVolumeId(osId: string, version: string): string {
  return `${osId}_${version}`.toUpperCase().replace(/[^A-Z0-9_]/g, '_').slice(0, 32);
}

/** Bytes of the FAT image for files of these sizes: the files, 4 % and 8 MiB for FAT32's tables, in whole MiB. Pure. */
export function fatBytes(fileBytes: readonly number[]): number {
  const MiB = 1024 * 1024;
  const sum = fileBytes.reduce((a, b) => a + b, 0);
  return Math.ceil((sum * 1.04 + 8 * MiB) / MiB) * MiB;
}

/**
 * xorriso's argv: the tree as ISO 9660 (Rock Ridge and Joliet), the FAT image
 * appended as GPT partition 2 and used as the El Torito EFI boot image. Pure.
 */
export function xorrisoArgs(o: { out: string; tree: string; efiImage: string; volumeId: string }): string[] {
  return [
    '-as', 'mkisofs',
    '-o', o.out,
    '-V', o.volumeId,
    '-R', '-J', '-joliet-long',
    '-append_partition', '2', 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', o.efiImage,
    '-appended_part_as_gpt',
    '-e', '--interval:appended_partition_2:all::',
    '-no-emul-boot',
    '-partition_offset', '16',
    o.tree,
  ];
}

/** Writes the live ISO to `out`; `scratch` is an empty directory for the FAT image and the tree. */
export async function makeIso(i: IsoInputs, out: string, scratch: string, signal?: AbortSignal): Promise<void> {
  const env = { MTOOLS_SKIP_CHECK: '1', SOURCE_DATE_EPOCH: String(i.sourceDateEpoch) };
  const fat = join(scratch, 'efiboot.img');
  const entry = join(scratch, ISO_ENTRY);
  const loader = join(scratch, 'loader.conf');
  await writeFile(entry, isoEntry(i));
  await writeFile(loader, `default ${ISO_ENTRY}\n${LOADER_CONF}`);
  const files: [string, string][] = [
    [i.systemdBoot, '::/EFI/BOOT/BOOTX64.EFI'],
    [loader, '::/loader/loader.conf'],
    [entry, `::/loader/entries/${ISO_ENTRY}`],
    [i.kernel, `::${ISO_KERNEL}`],
    [i.initramfs, `::${ISO_INITRD}`],
  ];
  const sizes = await Promise.all(files.map(async ([f]) => (await stat(f)).size));
  await run('mkfs.vfat', ['-F', '32', '-n', 'BASALT-ISO', '-i', i.sourceDateEpoch.toString(16).padStart(8, '0').slice(-8), '--invariant', '-C', fat, String(fatBytes(sizes) / 1024)], { signal, env });
  await run('mmd', ['-i', fat, '::/EFI', '::/EFI/BOOT', '::/loader', '::/loader/entries', '::/basalt', '::/basalt/live'], { env, signal });
  for (const [from, to] of files) await run('mcopy', ['-i', fat, from, to], { env, signal });
  const tree = join(scratch, 'tree');
  await run('mkdir', ['-p', join(tree, ISO_IMAGE_DIR)]);
  await writeFile(join(tree, 'README.txt'), `${i.osName} ${i.version} live ISO. It boots with EFI from a CD-ROM or a USB stick; /usr is verified with dm-verity.\nInstall to a disk from the live system: sudo basalt install -d /dev/sdX -f IMAGE -c cloud-config.yml\n`);
  for (const f of i.extraFiles ?? []) await run('cp', ['--sparse=always', f, join(tree, ISO_IMAGE_DIR, basename(f))], { signal });
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    await run('xorriso', xorrisoArgs({ out: tmp, tree, efiImage: fat, volumeId: i.volumeId }), { env, signal });
    await rename(tmp, out);
  } finally {
    await rm(tmp, { force: true });
  }
}

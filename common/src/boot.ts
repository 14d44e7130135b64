/**
 * Boot Loader Specification entries for Basalt's A/B slots (systemd-boot).
 * Shared by the builder (slot A at build time) and the update-engine (slot B
 * after an update). Pure functions: no I/O.
 *
 * Layout on EFI-SYSTEM:
 *   /EFI/BOOT/BOOTX64.EFI              systemd-boot
 *   /loader/loader.conf                timeout 0, editor no, auto-entries no, auto-firmware no
 *   /loader/entries/basalt-a.conf      a good slot (no tries counter)
 *   /loader/entries/basalt-b+3.conf    a fresh slot with 3 tries (systemd-boot boot counting)
 *   /basalt/<slot>/{vmlinuz,initrd}    kernel and initrd of each slot
 *
 * The kernel command line mounts /usr from /dev/mapper/usr, which the
 * initrd's basalt-verity unit opens from the slot's partition with the root
 * hash and the hash-tree offset given as basalt.usrhash= / basalt.usrhashoffset=
 * (the hash tree is appended to the filesystem in the same partition).
 */
import { SLOT_PARTLABEL, slotOfKey, type SlotKey } from './contracts.js';

export interface EntryInput {
  slot: SlotKey;
  /** OS version of the image in this slot; the higher version boots first. */
  version: string;
  /** dm-verity root hash (64 hex); undefined or '' = verity off. */
  rootHash?: string | undefined;
  /** Byte offset of the hash tree in the partition (= filesystem size rounded up to 4096). */
  hashOffset?: number | undefined;
  fsType: 'squashfs' | 'erofs' | 'ext4' | 'btrfs';
  /** Extra command-line words (profile kernel.cmdline), e.g. console=ttyS0,115200 panic=10. */
  extraCmdline?: readonly string[];
  /** Title prefix, default "Basalt". */
  osName?: string;
}

export const ENTRY_SORT_KEY = 'basalt';
export const ESP_SLOT_DIR: Record<SlotKey, string> = { a: '/basalt/a', b: '/basalt/b' };

export const LOADER_CONF = 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\n';

/** Kernel command line of a slot (words joined by single spaces). */
export function kernelCmdline(e: Omit<EntryInput, 'osName'>): string {
  const label = SLOT_PARTLABEL[slotOfKey(e.slot)];
  const verity = !!e.rootHash;
  if (verity) {
    if (!/^[0-9a-f]{64}$/.test(e.rootHash!)) throw new RangeError(`rootHash '${e.rootHash}' is not 64 lowercase hex digits`);
    if (e.hashOffset === undefined || !Number.isSafeInteger(e.hashOffset) || e.hashOffset <= 0 || e.hashOffset % 4096 !== 0) {
      throw new RangeError(`hashOffset ${e.hashOffset} must be a positive multiple of 4096`);
    }
  }
  const words = [
    verity ? 'mount.usr=/dev/mapper/usr' : `mount.usr=PARTLABEL=${label}`,
    `mount.usrfstype=${e.fsType}`,
    'mount.usrflags=ro,x-systemd.device-timeout=30s',
    ...(verity ? [`basalt.usr=PARTLABEL=${label}`, `basalt.usrhash=${e.rootHash}`, `basalt.usrhashoffset=${e.hashOffset}`] : []),
    `basalt.slot=${e.slot.toUpperCase()}`,
    'root=PARTLABEL=ROOT',
    'rootfstype=ext4',
    'rw',
    ...(e.extraCmdline ?? []),
  ];
  for (const w of words) if (/\s/.test(w) || w === '') throw new RangeError(`command-line word '${w}' is empty or has spaces`);
  return words.join(' ');
}

/** Text of the Boot Loader Spec entry of a slot. */
export function renderEntry(e: EntryInput): string {
  if (!/^[A-Za-z0-9.+~_-]+$/.test(e.version)) throw new RangeError(`version '${e.version}' has characters not allowed in a boot entry`);
  const dir = ESP_SLOT_DIR[e.slot];
  return [
    `title ${e.osName ?? 'Basalt'} ${e.version} (${SLOT_PARTLABEL[slotOfKey(e.slot)]})`,
    `version ${e.version}`,
    `sort-key ${ENTRY_SORT_KEY}`,
    `linux ${dir}/vmlinuz`,
    `initrd ${dir}/initrd`,
    `options ${kernelCmdline(e)}`,
    '',
  ].join('\n');
}

/**
 * File name of a slot's entry under /loader/entries/: `basalt-a.conf` (no
 * counting: a good slot) or `basalt-b+3.conf` (3 tries left, none done).
 */
export function entryFileName(slot: SlotKey, tries?: number): string {
  if (tries === undefined) return `basalt-${slot}.conf`;
  if (!Number.isInteger(tries) || tries < 0 || tries > 15) throw new RangeError(`tries ${tries} must be 0-15`);
  return `basalt-${slot}+${tries}.conf`;
}

export interface EntryName {
  slot: SlotKey;
  /** Tries left; undefined when the entry has no counter (blessed or never counted). */
  left?: number;
  /** Tries done so far (systemd-boot appends -N on each attempt). */
  done?: number;
}

/** Parses `basalt-b+2-1.conf` and friends; undefined for names that are not Basalt entries. */
export function parseEntryFileName(name: string): EntryName | undefined {
  const m = /^basalt-([ab])(?:\+(\d+)(?:-(\d+))?)?\.conf$/.exec(name);
  if (!m) return undefined;
  const r: EntryName = { slot: m[1] as SlotKey };
  if (m[2] !== undefined) r.left = Number(m[2]);
  if (m[3] !== undefined) r.done = Number(m[3]);
  return r;
}

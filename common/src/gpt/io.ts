/**
 * The I/O shell of the GPT library: reads and writes partition tables on
 * image files and block devices with plain file I/O (no external tools).
 *
 * Writes are crash-safe: the backup entry array and header are written and
 * synced first, then the primary ones, so a cut in between leaves one valid
 * copy that `repairGpt` restores the other from.
 */
import { constants, type FileHandle, open, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { BasaltError, COMMON_ERRORS, fsError } from '../errors.js';
import { replaceFile } from '../fsutil.js';
import { GPT_ERRORS } from './errors.js';
import { decodeEntries, decodeHeader, encodeGpt, entrySectors, hasProtectiveMbr, type Header, protectiveMbr } from './codec.js';
import { type Layout, loadLayout, planLayout, type PlanOptions } from './layout.js';
import { findPartition } from './slots.js';
import type { Gpt, Partition } from './types.js';

interface DiskInfo {
  path: string;
  sectorSize: number;
  totalSectors: bigint;
  isBlock: boolean;
}

async function diskInfo(path: string): Promise<DiskInfo> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw fsError(e, path, 'open disk');
  }
  if (st.isBlockDevice()) {
    const maj = Math.floor(st.rdev / 256) & 0xfff;
    const min = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    const sys = `/sys/dev/block/${maj}:${min}`;
    try {
      const sectors512 = BigInt(readFileSync(`${sys}/size`, 'utf8').trim());
      const lbs = Number(readFileSync(`${sys}/queue/logical_block_size`, 'utf8').trim()) || 512;
      return { path, sectorSize: lbs, totalSectors: (sectors512 * 512n) / BigInt(lbs), isBlock: true };
    } catch (e) {
      throw fsError(e, sys, 'read the size of block device ' + path);
    }
  }
  if (!st.isFile()) throw new BasaltError(GPT_ERRORS.E_NOT_A_DISK, `${path}: not an image file or block device`);
  return { path, sectorSize: 512, totalSectors: BigInt(st.size) / 512n, isBlock: false };
}

async function readAt(fh: FileHandle, pos: bigint, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  const { bytesRead } = await fh.read(b, 0, len, Number(pos));
  return bytesRead === len ? b : b.subarray(0, bytesRead);
}

interface Copy {
  header: Header;
  entries: Partition[];
}

async function readCopy(fh: FileHandle, info: DiskInfo, lba: bigint): Promise<Copy | string> {
  if (lba < 1n || lba >= info.totalSectors) return `header LBA ${lba} lies beyond the end of the disk (${info.totalSectors} sectors; file truncated?)`;
  const sector = await readAt(fh, lba * BigInt(info.sectorSize), info.sectorSize);
  const h = decodeHeader(sector, lba);
  if (typeof h === 'string') return h;
  const bytes = h.entryCount * h.entrySize;
  const end = h.entriesLba + BigInt(Math.ceil(bytes / info.sectorSize));
  if (end > info.totalSectors) return `partition entries at LBA ${h.entriesLba} run past the end of the disk (file truncated?)`;
  const raw = await readAt(fh, h.entriesLba * BigInt(info.sectorSize), bytes);
  if (raw.length !== bytes) return 'short read of the partition entries';
  if (crc32(raw) !== h.entriesCrc) return 'partition entries CRC32 mismatch';
  if (h.lastUsableLba >= info.totalSectors) return `last usable LBA ${h.lastUsableLba} lies beyond the end of the disk (file truncated?)`;
  return { header: h, entries: decodeEntries(raw, h.entryCount, h.entrySize) };
}

function sameTable(a: Copy, b: Copy): boolean {
  const h = (x: Header) => [x.firstUsableLba, x.lastUsableLba, x.diskGuid, x.entryCount, x.entrySize, x.entriesCrc].join(',');
  return h(a.header) === h(b.header);
}

/**
 * Reads the partition table of an image file or block device. Uses the
 * primary copy when it is valid, otherwise the backup; `status` tells which
 * copies were damaged. Throws E_GPT_NOT_FOUND / E_GPT_CORRUPT / E_GPT_TRUNCATED.
 */
export async function readGpt(path: string): Promise<Gpt> {
  const info = await diskInfo(path);
  if (info.totalSectors < 67n) {
    throw new BasaltError(GPT_ERRORS.E_GPT_NOT_FOUND, `${path}: too small to hold a GPT (${info.totalSectors * BigInt(info.sectorSize)} bytes)`, { hint: "create a table with 'basalt disk create'" });
  }
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fsError(e, path, 'open disk');
  }
  try {
    const mbr = await readAt(fh, 0n, 512);
    const primary = await readCopy(fh, info, 1n);
    const backupLba = typeof primary === 'string' ? info.totalSectors - 1n : primary.header.alternateLba;
    const backup = await readCopy(fh, info, backupLba);
    const problems: string[] = [];
    if (typeof primary === 'string') problems.push(`primary GPT: ${primary}`);
    if (typeof backup === 'string') problems.push(`backup GPT: ${backup}`);
    if (typeof primary === 'string' && typeof backup === 'string') {
      const trunc = (primary + backup).includes('truncated');
      const noSig = (r: string) => r.includes('no "EFI PART" signature') || r.includes('beyond the end');
      const anySig = !noSig(primary) || !noSig(backup);
      if (trunc) throw new BasaltError(GPT_ERRORS.E_GPT_TRUNCATED, `${path}: the GPT describes a larger disk than the file (${primary}; ${backup})`);
      if (!anySig && !hasProtectiveMbr(mbr)) throw new BasaltError(GPT_ERRORS.E_GPT_NOT_FOUND, `${path}: no GPT partition table found`);
      throw new BasaltError(GPT_ERRORS.E_GPT_CORRUPT, `${path}: both GPT copies are damaged (${problems.join('; ')})`);
    }
    if (typeof primary !== 'string' && typeof backup !== 'string' && !sameTable(primary, backup)) {
      problems.push('primary and backup GPT differ');
    }
    if (typeof primary !== 'string' && primary.header.alternateLba !== info.totalSectors - 1n) {
      problems.push(`backup GPT is at LBA ${primary.header.alternateLba}, not at the end of the disk (LBA ${info.totalSectors - 1n})`);
    }
    if (!hasProtectiveMbr(mbr)) problems.push('no protective MBR');
    const use = typeof primary !== 'string' ? primary : (backup as Copy);
    const gpt: Gpt = {
      sectorSize: info.sectorSize,
      totalSectors: info.totalSectors,
      diskGuid: use.header.diskGuid,
      firstUsableLba: use.header.firstUsableLba,
      lastUsableLba: use.header.lastUsableLba,
      primaryEntriesLba: typeof primary !== 'string' ? primary.header.entriesLba : 2n,
      backupHeaderLba: typeof primary !== 'string' ? primary.header.alternateLba : backupLba,
      entryCount: use.header.entryCount,
      entrySize: use.header.entrySize,
      partitions: use.entries,
      status: { primaryOk: typeof primary !== 'string', backupOk: typeof backup !== 'string', problems },
    };
    return gpt;
  } finally {
    await fh.close();
  }
}

async function checkWritable(path: string, isBlock: boolean): Promise<void> {
  if (isBlock) return;
  const st = await stat(path);
  if ((st.mode & 0o222) === 0) {
    throw new BasaltError(COMMON_ERRORS.E_READ_ONLY, `${path}: the image is read-only (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`, {
      hint: 'make it writable (chmod u+w) if you really mean to change it',
    });
  }
}

export interface WriteOptions {
  /** Also (re)write the protective MBR. */
  mbr?: boolean;
}

/**
 * Writes `gpt` to the disk: backup entries + header, sync, then primary
 * entries + header, sync. The table is validated first; nothing is written
 * when it is invalid.
 */
export async function writeGpt(path: string, gpt: Gpt, opts: WriteOptions = {}): Promise<void> {
  const info = await diskInfo(path);
  if (info.sectorSize !== gpt.sectorSize) throw new BasaltError(GPT_ERRORS.E_GPT_INVALID, `${path}: sector size ${info.sectorSize} differs from the table's ${gpt.sectorSize}`);
  if (gpt.backupHeaderLba >= info.totalSectors) {
    throw new BasaltError(GPT_ERRORS.E_GPT_INVALID, `${path}: the table needs ${gpt.backupHeaderLba + 1n} sectors but the disk has ${info.totalSectors}`);
  }
  const s = encodeGpt({ ...gpt, totalSectors: info.totalSectors });
  await checkWritable(path, info.isBlock);
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDWR);
  } catch (e) {
    throw fsError(e, path, 'open disk for writing');
  }
  try {
    const ss = BigInt(info.sectorSize);
    const w = async (buf: Buffer, lba: bigint) => {
      await fh.write(buf, 0, buf.length, Number(lba * ss));
    };
    await w(s.backupEntries, s.backupEntriesLba);
    await w(s.backupHeader, s.backupHeaderLba);
    await fh.sync();
    await w(s.primaryEntries, s.primaryEntriesLba);
    await w(s.primaryHeader, s.primaryHeaderLba);
    if (opts.mbr) await w(protectiveMbr(info.totalSectors, info.sectorSize), 0n);
    await fh.sync();
  } catch (e) {
    throw fsError(e, path, 'write the partition table');
  } finally {
    await fh.close();
  }
}

export interface CreateOptions extends PlanOptions {
  layout?: string | Layout;
  /** Overwrite an existing file. */
  force?: boolean;
}

/**
 * Creates a sparse image file (mode 0644) holding the layout's partition table.
 * The file is built under a temporary name and renamed into place (replaceFile).
 */
export async function createDisk(path: string, opts: CreateOptions): Promise<Gpt> {
  const layout = typeof opts.layout === 'object' ? opts.layout : loadLayout(opts.layout ?? 'coreos');
  const gpt = planLayout(layout, opts);
  const exists = await stat(path).then(
    (s) => s,
    () => null,
  );
  if (exists && !exists.isFile()) throw new BasaltError(GPT_ERRORS.E_NOT_A_FILE, `${path}: exists and is not a regular file`);
  if (exists && !opts.force) throw new BasaltError(COMMON_ERRORS.E_EXISTS, `${path}: already exists`, { hint: 'remove it first, or pass --force to overwrite it' });
  await replaceFile(
    path,
    async (tmp) => {
      try {
        const fh = await open(tmp, 'wx', 0o600);
        try {
          await fh.truncate(Number(gpt.totalSectors * BigInt(gpt.sectorSize)));
        } finally {
          await fh.close();
        }
        await writeGpt(tmp, gpt, { mbr: true });
      } catch (e) {
        throw fsError(e, path, 'create disk image');
      }
    },
    { mode: 0o644, mkdir: false },
  );
  return { ...gpt, status: { primaryOk: true, backupOk: true, problems: [] } };
}

export interface RepairResult {
  repaired: boolean;
  problems: string[];
}

/** Rewrites a damaged primary or backup copy (and the protective MBR) from the good one, like cgpt repair. */
export async function repairGpt(path: string): Promise<RepairResult> {
  const gpt = await readGpt(path);
  const problems = gpt.status?.problems ?? [];
  const needs = problems.filter((p) => !p.includes('not at the end of the disk'));
  if (needs.length === 0) return { repaired: false, problems };
  // Keep a backup that was deliberately left where the header says (a grown
  // disk): only `grow` moves it.
  await writeGpt(path, gpt, { mbr: problems.includes('no protective MBR') || !gpt.status?.primaryOk });
  return { repaired: true, problems: needs };
}

/**
 * Grows partition `which` to the end of the disk and moves the backup GPT to
 * the last sector (first boot on a bigger disk, like cgpt resize). The
 * partition must be the last one on the disk.
 */
export async function growPartition(path: string, which: number | string): Promise<{ before: Partition; after: Partition; gpt: Gpt }> {
  const gpt = await readGpt(path);
  const p = findPartition(gpt, which);
  const later = gpt.partitions.filter((x) => x.firstLba > p.firstLba);
  if (later.length > 0) {
    throw new BasaltError(GPT_ERRORS.E_GPT_GROW, `partition ${p.index} (${p.label}) is followed by partition ${later[0]!.index} and cannot grow`);
  }
  const es = entrySectors(gpt);
  const backupHeaderLba = gpt.totalSectors - 1n;
  const lastUsableLba = backupHeaderLba - es - 1n;
  // End on a 1 MiB boundary, as partitioning tools expect.
  const align = BigInt(Math.max(1, (1024 * 1024) / gpt.sectorSize));
  const end = ((lastUsableLba + 1n) / align) * align - 1n;
  const grown: Partition = { ...p, lastLba: end > p.lastLba ? end : p.lastLba };
  const next: Gpt = {
    ...gpt,
    backupHeaderLba,
    lastUsableLba,
    partitions: gpt.partitions.map((x) => (x.index === p.index ? grown : x)),
  };
  await writeGpt(path, next, { mbr: true });
  return { before: p, after: grown, gpt: next };
}

/** Byte range of a partition on the disk. */
export function partitionRange(gpt: Pick<Gpt, 'sectorSize'>, p: Pick<Partition, 'firstLba' | 'lastLba'>): { offset: number; length: number } {
  const ss = BigInt(gpt.sectorSize);
  return { offset: Number(p.firstLba * ss), length: Number((p.lastLba - p.firstLba + 1n) * ss) };
}

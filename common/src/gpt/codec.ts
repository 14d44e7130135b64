/**
 * Pure GPT codec: protective MBR, headers and partition entry arrays to and
 * from bytes, with their CRC32s. No I/O here.
 */
import { crc32 } from 'node:zlib';
import { BasaltError } from '../errors.js';
import { GPT_ERRORS } from './errors.js';
import { bytesToGuid, guidToBytes, ZERO_GUID } from './guid.js';
import type { Gpt, Partition } from './types.js';

export const SIGNATURE = 'EFI PART';
export const REVISION = 0x00010000;
export const HEADER_SIZE = 92;
export const MAX_NAME_UNITS = 36;

export interface Header {
  revision: number;
  headerSize: number;
  headerCrc: number;
  myLba: bigint;
  alternateLba: bigint;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  diskGuid: string;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** Decodes a header sector. Returns a reason string when it is not a valid GPT header. */
export function decodeHeader(sector: Buffer, expectLba: bigint): Header | string {
  if (sector.length < HEADER_SIZE) return 'short read';
  if (sector.toString('latin1', 0, 8) !== SIGNATURE) return 'no "EFI PART" signature';
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < HEADER_SIZE || headerSize > sector.length) return `bad header size ${headerSize}`;
  const stored = sector.readUInt32LE(16);
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== stored) return 'header CRC32 mismatch';
  const h: Header = {
    revision: sector.readUInt32LE(8),
    headerSize,
    headerCrc: stored,
    myLba: sector.readBigUInt64LE(24),
    alternateLba: sector.readBigUInt64LE(32),
    firstUsableLba: sector.readBigUInt64LE(40),
    lastUsableLba: sector.readBigUInt64LE(48),
    diskGuid: bytesToGuid(sector, 56),
    entriesLba: sector.readBigUInt64LE(72),
    entryCount: sector.readUInt32LE(80),
    entrySize: sector.readUInt32LE(84),
    entriesCrc: sector.readUInt32LE(88),
  };
  if (h.myLba !== expectLba) return `header says it is at LBA ${h.myLba}, read from LBA ${expectLba}`;
  if (h.entrySize < 128 || h.entrySize % 8 !== 0 || h.entrySize > 4096) return `bad partition entry size ${h.entrySize}`;
  if (h.entryCount < 1 || h.entryCount > 1024) return `bad partition entry count ${h.entryCount}`;
  if (h.firstUsableLba > h.lastUsableLba) return 'first usable LBA after last usable LBA';
  return h;
}

export function encodeHeader(h: Omit<Header, 'headerCrc' | 'revision' | 'headerSize'>, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  b.write(SIGNATURE, 0, 'latin1');
  b.writeUInt32LE(REVISION, 8);
  b.writeUInt32LE(HEADER_SIZE, 12);
  b.writeBigUInt64LE(h.myLba, 24);
  b.writeBigUInt64LE(h.alternateLba, 32);
  b.writeBigUInt64LE(h.firstUsableLba, 40);
  b.writeBigUInt64LE(h.lastUsableLba, 48);
  guidToBytes(h.diskGuid).copy(b, 56);
  b.writeBigUInt64LE(h.entriesLba, 72);
  b.writeUInt32LE(h.entryCount, 80);
  b.writeUInt32LE(h.entrySize, 84);
  b.writeUInt32LE(h.entriesCrc, 88);
  b.writeUInt32LE(crc32(b.subarray(0, HEADER_SIZE)), 16);
  return b;
}

export function decodeEntries(buf: Buffer, count: number, size: number): Partition[] {
  const parts: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const e = buf.subarray(i * size, i * size + size);
    const type = bytesToGuid(e, 0);
    if (type === ZERO_GUID) continue;
    let label = e.toString('utf16le', 56, 56 + 72);
    const nul = label.indexOf('\0');
    if (nul >= 0) label = label.slice(0, nul);
    parts.push({
      index: i + 1,
      type,
      guid: bytesToGuid(e, 16),
      firstLba: e.readBigUInt64LE(32),
      lastLba: e.readBigUInt64LE(40),
      attributes: e.readBigUInt64LE(48),
      label,
    });
  }
  return parts;
}

export function encodeEntries(parts: readonly Partition[], count: number, size: number): Buffer {
  const b = Buffer.alloc(count * size);
  for (const p of parts) {
    const o = (p.index - 1) * size;
    guidToBytes(p.type).copy(b, o);
    guidToBytes(p.guid).copy(b, o + 16);
    b.writeBigUInt64LE(p.firstLba, o + 32);
    b.writeBigUInt64LE(p.lastLba, o + 40);
    b.writeBigUInt64LE(BigInt.asUintN(64, p.attributes), o + 48);
    b.write(p.label, o + 56, 72, 'utf16le');
  }
  return b;
}

/** Sectors taken by the entry array. */
export function entrySectors(gpt: Pick<Gpt, 'entryCount' | 'entrySize' | 'sectorSize'>): bigint {
  return BigInt(Math.ceil((gpt.entryCount * gpt.entrySize) / gpt.sectorSize));
}

/** The protective MBR for a disk of `totalSectors`. */
export function protectiveMbr(totalSectors: bigint, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  const e = 446;
  b[e] = 0x00; // not bootable
  b[e + 1] = 0x00; // CHS of first sector: 0/0/2
  b[e + 2] = 0x02;
  b[e + 3] = 0x00;
  b[e + 4] = 0xee; // GPT protective
  b[e + 5] = 0xff; // CHS end: saturated
  b[e + 6] = 0xff;
  b[e + 7] = 0xff;
  b.writeUInt32LE(1, e + 8);
  const size = totalSectors - 1n > 0xffffffffn ? 0xffffffff : Number(totalSectors - 1n);
  b.writeUInt32LE(size, e + 12);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** True when the sector is an MBR with a 0xEE protective (or hybrid) entry. */
export function hasProtectiveMbr(sector: Buffer): boolean {
  if (sector.length < 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) return false;
  for (let i = 0; i < 4; i++) if (sector[446 + i * 16 + 4] === 0xee) return true;
  return false;
}

export interface Structures {
  primaryHeader: Buffer;
  primaryHeaderLba: bigint;
  primaryEntries: Buffer;
  primaryEntriesLba: bigint;
  backupHeader: Buffer;
  backupHeaderLba: bigint;
  backupEntries: Buffer;
  backupEntriesLba: bigint;
}

/** Checks the table for consistency; throws E_GPT_INVALID naming the partition. Pure. */
export function validateGpt(gpt: Gpt): void {
  const bad = (msg: string, hint?: string) => new BasaltError(GPT_ERRORS.E_GPT_INVALID, msg, { hint });
  const es = entrySectors(gpt);
  if (gpt.firstUsableLba < gpt.primaryEntriesLba + es) throw bad(`first usable LBA ${gpt.firstUsableLba} overlaps the primary partition entries`);
  if (gpt.lastUsableLba >= gpt.backupHeaderLba - es) throw bad(`last usable LBA ${gpt.lastUsableLba} overlaps the backup partition entries`);
  if (gpt.backupHeaderLba >= gpt.totalSectors) throw bad(`backup header LBA ${gpt.backupHeaderLba} is past the end of the disk (${gpt.totalSectors} sectors)`);
  const seen = new Set<number>();
  const sorted = [...gpt.partitions].sort((a, b) => (a.firstLba < b.firstLba ? -1 : 1));
  for (const p of gpt.partitions) {
    if (!Number.isInteger(p.index) || p.index < 1 || p.index > gpt.entryCount) throw bad(`partition ${p.index}: number out of range 1-${gpt.entryCount}`);
    if (seen.has(p.index)) throw bad(`partition ${p.index} is defined twice`);
    seen.add(p.index);
    if (p.type === ZERO_GUID) throw bad(`partition ${p.index}: the type GUID must not be all zeros`);
    if (p.firstLba > p.lastLba) throw bad(`partition ${p.index}: first LBA ${p.firstLba} is after last LBA ${p.lastLba}`);
    if (p.firstLba < gpt.firstUsableLba || p.lastLba > gpt.lastUsableLba) {
      throw bad(`partition ${p.index} (${p.label || 'unnamed'}): sectors ${p.firstLba}-${p.lastLba} lie outside the usable area ${gpt.firstUsableLba}-${gpt.lastUsableLba}`);
    }
    if (p.label.includes('\0') || Buffer.byteLength(p.label, 'utf16le') > MAX_NAME_UNITS * 2) {
      throw bad(`partition ${p.index}: label '${p.label}' is longer than ${MAX_NAME_UNITS} UTF-16 units`);
    }
    if (p.attributes < 0n || p.attributes > 0xffffffffffffffffn) throw bad(`partition ${p.index}: attributes do not fit in 64 bits`);
  }
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.firstLba <= a.lastLba) throw bad(`partitions ${a.index} and ${b.index} overlap`);
  }
}

/** Encodes the primary and backup structures of `gpt` (validated first). Pure. */
export function encodeGpt(gpt: Gpt): Structures {
  validateGpt(gpt);
  const entries = encodeEntries(gpt.partitions, gpt.entryCount, gpt.entrySize);
  const es = entrySectors(gpt);
  const padded = Buffer.alloc(Number(es) * gpt.sectorSize);
  entries.copy(padded);
  const entriesCrc = crc32(entries);
  const backupEntriesLba = gpt.backupHeaderLba - es;
  const common = {
    firstUsableLba: gpt.firstUsableLba,
    lastUsableLba: gpt.lastUsableLba,
    diskGuid: gpt.diskGuid,
    entryCount: gpt.entryCount,
    entrySize: gpt.entrySize,
    entriesCrc,
  };
  return {
    primaryHeaderLba: 1n,
    primaryHeader: encodeHeader({ ...common, myLba: 1n, alternateLba: gpt.backupHeaderLba, entriesLba: gpt.primaryEntriesLba }, gpt.sectorSize),
    primaryEntriesLba: gpt.primaryEntriesLba,
    primaryEntries: padded,
    backupHeaderLba: gpt.backupHeaderLba,
    backupHeader: encodeHeader({ ...common, myLba: gpt.backupHeaderLba, alternateLba: 1n, entriesLba: backupEntriesLba }, gpt.sectorSize),
    backupEntriesLba,
    backupEntries: padded,
  };
}

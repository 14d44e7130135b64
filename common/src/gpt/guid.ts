/** GUID text <-> on-disk (mixed-endian) bytes, as UEFI stores them. */
import { createHash, randomBytes } from 'node:crypto';
import { BasaltError } from '../errors.js';
import { GPT_ERRORS } from './errors.js';

const RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const ZERO_GUID = '00000000-0000-0000-0000-000000000000';

export function isGuid(s: string): boolean {
  return RE.test(s.toLowerCase());
}

/** Normalises a GUID string to lower case; throws E_GPT_BAD_GUID naming `what` when malformed. */
export function normGuid(s: string, what = 'GUID'): string {
  const g = s.trim().toLowerCase();
  if (!RE.test(g)) throw new BasaltError(GPT_ERRORS.E_GPT_BAD_GUID, `${what}: '${s}' is not a GUID`);
  return g;
}

/** Encodes a GUID into 16 bytes: the first three fields little-endian, the rest as written. */
export function guidToBytes(guid: string): Buffer {
  const h = normGuid(guid).replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  const out = Buffer.alloc(16);
  out.writeUInt32LE(b.readUInt32BE(0), 0);
  out.writeUInt16LE(b.readUInt16BE(4), 4);
  out.writeUInt16LE(b.readUInt16BE(6), 6);
  b.copy(out, 8, 8, 16);
  return out;
}

export function bytesToGuid(buf: Uint8Array, off = 0): string {
  const b = Buffer.from(buf.buffer, buf.byteOffset + off, 16);
  const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
  const tail = b.subarray(8, 16).toString('hex');
  return `${hex(b.readUInt32LE(0), 8)}-${hex(b.readUInt16LE(4), 4)}-${hex(b.readUInt16LE(6), 4)}-${tail.slice(0, 4)}-${tail.slice(4)}`;
}

function format(b: Buffer): string {
  b[6] = (b[6]! & 0x0f) | 0x40; // version 4
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function randomGuid(): string {
  return format(randomBytes(16));
}

/** A stable GUID derived from a seed (for reproducible images). */
export function derivedGuid(seed: string): string {
  return format(createHash('sha256').update(seed).digest().subarray(0, 16));
}

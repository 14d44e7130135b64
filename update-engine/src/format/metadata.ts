/**
 * The release repository's formats, one definition each, and their pure
 * checks: the payload manifest (formatVersion 2, and 1 which is still read),
 * the channel metadata and the signed envelope around both (formatVersion 1).
 * Used by the publisher, the server and the host; nothing here writes.
 *
 * Layout (a plain directory any web server or object store can serve):
 *   payloads/<version>/usr.img.payload     format 2: the image's chunks, each stored as is or as one zstd frame
 *   payloads/<version>/usr.img.xz          format 1: concatenated xz streams, one per chunk
 *   payloads/<version>/<payload>.sig       detached OpenPGP signature (gpg --verify accepts it)
 *   payloads/<version>/manifest.json       signed envelope around the payload manifest
 *   channels/<channel>.json                signed envelope around the channel metadata (with expiry)
 *
 *   metadata/                              TUF metadata (trust/publish.ts): every file above is a signed target
 *
 * Envelopes are {formatVersion:1, signed:"<json text>", signature:"<armored detached sig over signed>"},
 * so each is published with a single atomic rename. The engine trusts a manifest
 * or channel file only as a TUF target (trust/decide.ts), not by its envelope's signature.
 */
import { createHash } from 'node:crypto';
import { BasaltError } from '../../../common/src/errors.js';
import { verifyDetached, type Keyring } from './signature.js';
import { checkVersion, isVersion } from './version.js';
import { UE_ERRORS } from '../errors.js';
import { CONTRACT_ERRORS } from '../../../common/src/contracts.js';

/** The payload formats this update-engine applies; `release` writes the newest unless told otherwise. */
export type PayloadFormat = 1 | 2;
export const PAYLOAD_FORMAT: PayloadFormat = 2;
/** The payload file's name in payloads/<version>/, per format. */
export const PAYLOAD_FILES: Readonly<Record<PayloadFormat, string>> = { 1: 'usr.img.xz', 2: 'usr.img.payload' };
export const DEFAULT_CHUNK = 4 * 1024 * 1024;
/** The largest chunk (stored or uncompressed) a format 2 manifest may name: the client holds one chunk in memory. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * How a format 2 chunk is stored: its image bytes as they are, or one zstd
 * frame of them; in a delta also 'seed': no payload bytes, the image bytes
 * are the machine's running image's [seedOffset, +uncompressedSize).
 */
export type ChunkCompression = 'none' | 'zstd' | 'seed';
export const CHUNK_COMPRESSIONS: readonly ChunkCompression[] = ['none', 'zstd', 'seed'];

export interface PayloadChunk {
  /** Byte offset of this chunk in the payload file. */
  offset: number;
  /** Stored (compressed, or raw for 'none') size. */
  size: number;
  /** SHA-256 (hex) of the stored bytes. */
  sha256: string;
  /** Uncompressed size (the chunk covers image bytes [sum of previous, +uncompressedSize)). */
  uncompressedSize: number;
}

/**
 * A format 2 chunk: also says how it is stored (chosen per chunk for its
 * content) and the SHA-256 of the image bytes it holds (the same as `sha256`
 * when stored as it is). The chunks' image hashes, contiguous over the whole
 * image, are its signed hash list: the client verifies the slot chunk by chunk.
 */
export interface PayloadChunkV2 extends PayloadChunk {
  compression: ChunkCompression;
  imageSha256: string;
  /** 'seed' only: where its bytes start in the running image. */
  seedOffset?: number;
}

/**
 * A delta (format 2 with `delta`): the image is rebuilt from the running
 * image of version `from` (its 'seed' chunks) and the payload (the rest).
 * `full` names the full release beside it, taken when the seed does not match.
 */
export interface DeltaInfo {
  from: string;
  seedSize: number;
  seedSha256: string;
  full: { manifest: string; payload: string; size: number; sha256: string };
}

export interface UsrInfo {
  fsType: string;
  fsBytes: number | null;
  hashOffset: number | null;
  rootHash: string | null;
  salt: string | null;
  kernel: string;
  initrd: string;
}

/** What every payload manifest format carries besides the payload's description. */
interface ManifestCommon {
  kind: 'basalt-payload';
  version: string;
  channels: string[];
  board: string;
  created: string;
  image: { size: number; sha256: string };
  usr: UsrInfo;
}

/** Format 1: every chunk is its own xz stream (xz -dc reads the payload whole). */
export interface PayloadManifestV1 extends ManifestCommon {
  formatVersion: 1;
  payload: { file: string; size: number; sha256: string; sha1: string; compression: 'xz'; chunks: PayloadChunk[] };
}

/** Format 2: every chunk is stored as it is ('none') or as one zstd frame, as its content is best served, with its image bytes' hash. */
export interface PayloadManifestV2 extends ManifestCommon {
  formatVersion: 2;
  payload: { file: string; size: number; sha256: string; sha1: string; chunks: PayloadChunkV2[] };
  delta?: DeltaInfo;
}

/** Where a delta from `from` to a release sits, relative to payloads/<version>/. */
export function deltaDir(from: string): string {
  return `delta-from-${from}`;
}

export type PayloadManifest = PayloadManifestV1 | PayloadManifestV2;

/** How chunk `k` of a payload is stored. */
export function chunkCompression(m: PayloadManifest, k: number): ChunkCompression | 'xz' {
  return m.formatVersion === 1 ? 'xz' : m.payload.chunks[k]!.compression;
}

export interface ChannelMeta {
  formatVersion: 1;
  kind: 'basalt-channel';
  channel: string;
  version: string;
  board: string;
  manifest: string;
  manifestSha256: string;
  payload: { path: string; size: number; sha256: string };
  serial: number;
  issued: string;
  expires: string;
  rollout: { percent: number };
  /**
   * Older releases of this repository that every machine below must install
   * first (multi-hop), ascending; absent = none. Signed with the channel, and
   * copied into its TUF target, so a machine takes a floor only when the
   * publisher named it.
   */
  floors?: string[];
  /** Older releases a fleet server may hold a group at (a pin), ascending; absent = none. */
  holds?: string[];
}

export interface Envelope {
  formatVersion: 1;
  signed: string;
  signature: string;
}

const CHANNEL_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const BOARD_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkChannel(c: string, what = 'channel'): string {
  if (!CHANNEL_RE.test(c)) throw new BasaltError(UE_ERRORS.E_CHANNEL_INVALID, `${what}: '${c}' is not a channel name`, { hint: 'use lower-case letters, digits, - and _' });
  return c;
}

/** Verifies an envelope with the keyring and returns its parsed content (unknown; validate it next). */
export async function unseal(text: string, ring: Keyring, what: string): Promise<unknown> {
  let env: Partial<Envelope>;
  try {
    env = JSON.parse(text) as Partial<Envelope>;
  } catch {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: not JSON`);
  }
  if (env.formatVersion !== 1 || typeof env.signed !== 'string' || typeof env.signature !== 'string') {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: not a formatVersion 1 signed envelope`);
  }
  await verifyDetached(new TextEncoder().encode(env.signed), env.signature, ring, what);
  try {
    return JSON.parse(env.signed) as unknown;
  } catch {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: signed content is not JSON`);
  }
}

/** Reads the content of an envelope WITHOUT verifying it (for the repository owner's own tools). */
export function peekEnvelope(text: string, what: string): unknown {
  try {
    const env = JSON.parse(text) as Envelope;
    return JSON.parse(env.signed) as unknown;
  } catch {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: not a signed envelope`);
  }
}

type Obj = Record<string, unknown>;
interface FieldTypes {
  string: string;
  number: number;
  object: Obj;
}
function field<K extends keyof FieldTypes>(o: Obj, k: string, type: K, what: string): FieldTypes[K] {
  const v = o[k];
  if (typeof v !== type || v === null) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: field '${k}' is missing or not a ${type}`);
  return v as FieldTypes[K];
}
const isHex64 = (s: string) => /^[0-9a-f]{64}$/.test(s);

/** Validates a payload manifest, format 1 or 2 (after unseal). */
export function validateManifest(raw: unknown, what: string): PayloadManifest {
  if (typeof raw !== 'object' || raw === null) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: not an object`);
  const o = raw as Obj;
  const fv = o['formatVersion'];
  if ((fv !== 1 && fv !== 2) || o['kind'] !== 'basalt-payload') {
    throw new BasaltError(CONTRACT_ERRORS.E_METADATA_VERSION, `${what}: unsupported manifest (formatVersion ${String(fv)}, kind ${String(o['kind'])})`, {
      hint: 'this update-engine reads formatVersion 1 and 2 payload manifests; a newer release needs a newer update-engine first',
    });
  }
  checkVersion(field(o, 'version', 'string', what), `${what} version`);
  const channels = o['channels'];
  if (!Array.isArray(channels) || !channels.every((c) => typeof c === 'string')) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: 'channels' is not a list of names`);
  field(o, 'board', 'string', what);
  const p = field(o, 'payload', 'object', what);
  const size = field(p, 'size', 'number', `${what} payload`);
  if (!isHex64(field(p, 'sha256', 'string', `${what} payload`))) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: payload.sha256 is not 64 hex digits`);
  if (fv === 1 && p['compression'] !== 'xz') throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: payload.compression is ${JSON.stringify(p['compression'])}; format 1 payloads are xz`);
  const chunks = p['chunks'];
  if (!Array.isArray(chunks) || chunks.length === 0) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: payload.chunks is empty`);
  let off = 0;
  let usize = 0;
  for (const [i, c] of (chunks as Obj[]).entries()) {
    if (c['offset'] !== off || !isCount(c['size']) || (c['size'] === 0) !== (c['compression'] === 'seed') || !isCount(c['uncompressedSize']) || !isHex64(String(c['sha256']))) {
      throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: payload.chunks[${i}] is not contiguous or malformed`);
    }
    if (fv === 2) checkChunkV2(c, i, what);
    off += c['size'];
    usize += c['uncompressedSize'];
  }
  if (off !== size) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: chunks cover ${off} bytes but payload.size is ${size}`);
  const img = field(o, 'image', 'object', what);
  if (field(img, 'size', 'number', `${what} image`) !== usize || !isHex64(String(img['sha256']))) {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: image.size does not match the chunks, or image.sha256 is malformed`);
  }
  const usr = field(o, 'usr', 'object', what);
  field(usr, 'kernel', 'string', `${what} usr`);
  field(usr, 'initrd', 'string', `${what} usr`);
  const seeds = (chunks as Obj[]).filter((c) => c['compression'] === 'seed');
  if (fv === 2 && o['delta'] !== undefined) checkDelta(o['delta'], seeds, what);
  else if (seeds.length > 0) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: 'seed' chunks in a manifest that is not a delta`);
  return raw as PayloadManifest;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** A delta names its base version, the base image (size and hash) and the full release; its seed chunks lie inside that image. */
function checkDelta(raw: unknown, seeds: Obj[], what: string): void {
  if (typeof raw !== 'object' || raw === null) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: 'delta' is not an object`);
  const d = raw as Obj;
  checkVersion(field(d, 'from', 'string', `${what} delta`), `${what} delta.from`);
  const seedSize = field(d, 'seedSize', 'number', `${what} delta`);
  if (!isHex64(String(d['seedSha256']))) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: delta.seedSha256 is not 64 hex digits`);
  const full = field(d, 'full', 'object', `${what} delta`);
  for (const k of ['manifest', 'payload'] as const) field(full, k, 'string', `${what} delta.full`);
  field(full, 'size', 'number', `${what} delta.full`);
  if (!isHex64(String(full['sha256']))) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: delta.full.sha256 is not 64 hex digits`);
  for (const c of seeds) {
    if ((c['seedOffset'] as number) + (c['uncompressedSize'] as number) > seedSize) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: a seed chunk reaches past the ${seedSize}-byte base image`);
  }
}

/** A format 2 chunk names its compression and image hash, is at most MAX_CHUNK_BYTES either way, and a stored chunk is its image bytes. */
function checkChunkV2(c: Obj, i: number, what: string): void {
  const where = `${what}: payload.chunks[${i}]`;
  const comp = c['compression'];
  if (!CHUNK_COMPRESSIONS.includes(comp as ChunkCompression)) {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${where}.compression is ${JSON.stringify(comp)}, not one of ${CHUNK_COMPRESSIONS.join(', ')}`);
  }
  const size = c['size'] as number;
  const usize = c['uncompressedSize'] as number;
  if (size > MAX_CHUNK_BYTES || usize > MAX_CHUNK_BYTES || usize === 0) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${where}: ${size} stored / ${usize} image bytes; a chunk holds 1 to ${MAX_CHUNK_BYTES} bytes`);
  if (!isHex64(String(c['imageSha256']))) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${where}.imageSha256 is not 64 hex digits`);
  if (comp === 'none' && (size !== usize || c['imageSha256'] !== c['sha256'])) {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${where}: stored as it is, but its size or imageSha256 differs from its uncompressedSize or sha256`);
  }
  if ((comp === 'seed') !== isCount(c['seedOffset']) || (comp === 'seed' && c['sha256'] !== c['imageSha256'])) {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${where}: a 'seed' chunk (and only one) has a seedOffset, and its sha256 is its imageSha256`);
  }
}

/** Validates channel metadata (after unseal): kind, channel name, expiry against `now`. Throws E_METADATA_EXPIRED. */
export function validateChannel(raw: unknown, what: string, expectChannel: string | undefined, now: Date): ChannelMeta {
  if (typeof raw !== 'object' || raw === null) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: not an object`);
  const o = raw as Obj;
  if (o['formatVersion'] !== 1 || o['kind'] !== 'basalt-channel') throw new BasaltError(CONTRACT_ERRORS.E_METADATA_VERSION, `${what}: unsupported channel metadata (formatVersion ${String(o['formatVersion'])})`);
  const ch = field(o, 'channel', 'string', what);
  if (expectChannel !== undefined && ch !== expectChannel) throw new BasaltError(UE_ERRORS.E_METADATA_CHANNEL, `${what}: metadata is for channel '${ch}', not '${expectChannel}'`);
  checkVersion(field(o, 'version', 'string', what), `${what} version`);
  const expires = Date.parse(field(o, 'expires', 'string', what));
  if (Number.isNaN(expires)) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: 'expires' is not a date`);
  if (expires <= now.getTime()) {
    throw new BasaltError(UE_ERRORS.E_METADATA_EXPIRED, `${what}: channel metadata expired at ${new Date(expires).toISOString()}`, {
      hint: "the publisher must re-sign it ('basalt release refresh'); an expired file may be a replayed or frozen mirror",
    });
  }
  field(o, 'manifest', 'string', what);
  for (const k of ['floors', 'holds'] as const) {
    const v = o[k];
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string' && isVersion(x)))) throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${what}: '${k}' is not a list of versions`);
  }
  return raw as ChannelMeta;
}

/** Phased rollout: true when the machine is inside the first `percent` % for this version (stable hash of machine id and version). */
export function inRollout(machineId: string, version: string, percent: number): boolean {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  const h = createHash('sha256').update(`${machineId}\0${version}`).digest();
  return h.readUInt32BE(0) % 10000 < percent * 100;
}

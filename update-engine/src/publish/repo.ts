/**
 * Publishing into the static release repository (layout: format/metadata.ts):
 * `basalt release` (payload, signed manifest, channel), `promote` and
 * `refresh`, and the publisher's reads of its own repository.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rename, mkdir, rm, stat, writeFile, readdir, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { constants as zc, zstdCompress, zstdDecompressSync } from 'node:zlib';
import { join, dirname, basename } from 'node:path';
import type * as openpgp from 'openpgp';
import { BasaltError, COMMON_ERRORS, fsError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { syncDir, writeFileAtomic } from '../../../common/src/fsutil.js';
import { MAX_PIECE, planDelta, seedIndex } from './delta.js';
import { BOARD_RE, chunkCompression, checkChannel, deltaDir, DEFAULT_CHUNK, MAX_CHUNK_BYTES, PAYLOAD_FILES, PAYLOAD_FORMAT, peekEnvelope, unseal, validateChannel, validateManifest, type ChannelMeta, type ChunkCompression, type Envelope, type PayloadChunk, type PayloadChunkV2, type PayloadFormat, type PayloadManifest, type PayloadManifestV2 } from '../format/metadata.js';
import type { Keyring } from '../format/signature.js';
import { checkVersion, compareVersions } from '../format/version.js';
import { signDetached, signFileDetached } from './keys.js';
import { UE_ERRORS } from '../errors.js';
import { checkSigners, DEFAULT_EXPIRY, IMAGE_DIR, initRepository, METADATA_DIR, publishTargets, type Expiries, type Published } from '../trust/publish.js';
import { rawArtifact } from '../install/plan.js';
import type { TufSigner } from '../trust/keys.js';
import { CONTRACT_ERRORS, DEFAULT_BOARD, parseUsrImageInfo, type UsrImageInfo } from '../../../common/src/contracts.js';

/** Upper bound of chunks compressed at once in `release` (each holds two chunks in memory). */
export const MAX_JOBS = 8;
/** zstd level `release` tries each chunk with (format 2): fast, and the USR image is mostly compressed already. */
export const DEFAULT_ZSTD_LEVEL = 3;
/**
 * A format 2 chunk is stored as zstd only when that saves at least this
 * fraction of its bytes; below it the client's decompression buys next to
 * nothing (a squashfs compressed with zstd or xz does not compress again).
 */
export const MIN_ZSTD_SAVING = 0.05;

const zstdCompressAsync = promisify(zstdCompress);

/** Wraps a JSON document in a signed envelope. */
export async function seal(doc: unknown, key: openpgp.PrivateKey): Promise<string> {
  const signed = JSON.stringify(doc, null, 1);
  const signature = (await signDetached(new TextEncoder().encode(signed), key, true)) as string;
  const env: Envelope = { formatVersion: 1, signed, signature };
  return JSON.stringify(env, null, 1) + '\n';
}

/** Reads and verifies channels/<channel>.json from a repository directory. */
export async function readChannelFile(repo: string, channel: string, ring: Keyring, now: Date): Promise<ChannelMeta> {
  const path = join(repo, 'channels', `${checkChannel(channel)}.json`);
  const text = await readFile(path, 'utf8').catch((e: unknown) => {
    throw fsError(e, path, 'read');
  });
  return validateChannel(await unseal(text, ring, path), path, channel, now);
}

/** Reads the builder's usr.img.json next to the image (USR.img.json, or usr.img.json in the same folder). */
export async function readSidecar(usr: string): Promise<UsrImageInfo | undefined> {
  for (const p of [`${usr}.json`, join(dirname(usr), 'usr.img.json')]) {
    let text: string;
    try {
      text = await readFile(p, 'utf8');
    } catch {
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new BasaltError(CONTRACT_ERRORS.E_USR_INFO_INVALID, `${p}: not JSON`);
    }
    return parseUsrImageInfo(json, p);
  }
  return undefined;
}

export interface ReleaseOptions {
  usr: string;
  version: string;
  channel: string;
  board?: string | undefined;
  key: openpgp.PrivateKey;
  repo: string;
  now: Date;
  expiresMs: number;
  chunkSize?: number;
  /** Payload format to write (default PAYLOAD_FORMAT, 2; 1 is xz for update-engines that read only format 1). */
  payloadFormat?: PayloadFormat;
  /** zstd level tried on each chunk (format 2). */
  zstdLevel?: number;
  /** xz preset (format 1). */
  xzLevel?: number;
  /** Chunks compressed at once (default: one per CPU, at most 8); the payload's bytes do not depend on it. */
  jobs?: number;
  /** Also publish a delta from each of these released versions (format 2), in payloads/<version>/delta-from-<from>/. */
  deltaFrom?: string[] | undefined;
  rollout?: number;
  allowOlder?: boolean;
  /** TUF keys at hand: targets, snapshot and timestamp metadata are re-published after the release. */
  tuf?: TufPublish | undefined;
  /**
   * The whole disk image basalt build wrote (the raw .bin, its manifest.json
   * beside it), published zstd-compressed with that manifest in
   * payloads/<version>/image/ as TUF targets, for `basalt install -C CHANNEL`.
   */
  image?: string | undefined;
}

/** The TUF keys and lifetimes a publishing command signs with. */
export interface TufPublish {
  signers: TufSigner[];
  expiries?: Partial<Expiries>;
  /** A signed root.json installed as the repository's first root when it has none (a new repository). */
  initRoot?: string | undefined;
}

/** Re-publishes the repository's TUF metadata, when keys are given. */
export async function publishTuf(repo: string, tuf: TufPublish | undefined, now: Date): Promise<Published | undefined> {
  if (!tuf) return undefined;
  if (tuf.initRoot && !(await exists(join(repo, METADATA_DIR, 'root.json')))) {
    await initRepository(repo, await readFile(tuf.initRoot, 'utf8').catch((e: unknown) => {
      throw fsError(e, tuf.initRoot!, 'read the TUF root');
    }), tuf.initRoot);
  }
  return publishTargets(repo, tuf.signers, now.getTime(), { ...DEFAULT_EXPIRY, ...tuf.expiries });
}

/** What `release` found out before writing anything. */
interface ReleasePlan {
  /** The builder's usr.img.json, if any. */
  side: UsrImageInfo | undefined;
  board: string;
  /** payloads/<version> in the repository. */
  dest: string;
  /** The channel's metadata before this release, if any. */
  current: ChannelMeta | undefined;
}

/** Checks the version, channel and board and that the release is new (and newer than the channel's, unless allowOlder). */
async function planRelease(o: ReleaseOptions): Promise<ReleasePlan> {
  checkVersion(o.version, '--version');
  checkChannel(o.channel, '--channel');
  const side = await readSidecar(o.usr);
  const board = o.board ?? side?.board ?? DEFAULT_BOARD;
  if (!BOARD_RE.test(board)) throw new BasaltError(UE_ERRORS.E_BOARD_INVALID, `--board: '${board}' is not a board name`);
  if (side?.version && side.version !== o.version) {
    throw new BasaltError(UE_ERRORS.E_VERSION_MISMATCH, `${o.usr}.json says version ${side.version} but --version is ${o.version}`);
  }
  const dest = join(o.repo, 'payloads', o.version);
  if (await exists(dest)) throw new BasaltError(UE_ERRORS.E_RELEASE_EXISTS, `${dest}: version ${o.version} is already released`, { hint: 'releases are immutable; use a new version' });
  for (const from of o.deltaFrom ?? []) {
    checkVersion(from, '--delta-from');
    if ((o.payloadFormat ?? PAYLOAD_FORMAT) !== 2) throw new BasaltError(COMMON_ERRORS.E_INVALID_VALUE, '--delta-from: deltas are format 2 payloads; drop --payload-format 1', { hint: 'release the full payload in format 2 with the delta' });
    if (!(await exists(join(o.repo, 'payloads', from, 'manifest.json')))) {
      throw new BasaltError(UE_ERRORS.E_DELTA_BASE, `--delta-from: version ${from} is not released in ${o.repo}`, { hint: 'a delta is made from a release of the same repository' });
    }
  }
  const current = await currentChannel(o.repo, o.channel);
  if (current && compareVersions(o.version, current.version) <= 0 && !o.allowOlder) {
    throw new BasaltError(UE_ERRORS.E_VERSION_NOT_NEWER, `channel ${o.channel} is at ${current.version}; ${o.version} is not newer`);
  }
  return { side, board, dest, current };
}

/** One chunk of the image as the payload stores it. */
interface StoredChunk {
  uncompressedSize: number;
  /** SHA-256 of the image bytes (format 2's hash list). */
  imageSha256: string;
  compression: ChunkCompression | 'xz';
  stored: Buffer;
  /** 'seed' only: where its bytes are in the base image. */
  seedOffset?: number;
}

/** What the payload file and the image it was made from are, as the manifest records them. */
interface WrittenPayload {
  format: PayloadFormat;
  file: string;
  size: number;
  sha256: string;
  sha1: string;
  chunks: ChunkRecord[];
  image: PayloadManifest['image'];
}

/** A chunk as the writer records it, before the manifest's format shapes it. */
type ChunkRecord = PayloadChunk & Pick<StoredChunk, 'compression' | 'imageSha256' | 'seedOffset'>;

/** How `release` encodes: payload format, chunk size, levels and chunks encoded at once. */
interface EncodeSettings {
  format: PayloadFormat;
  chunkSize: number;
  zstdLevel: number;
  xzLevel: number;
  jobs: number;
}

/** Reads up to `chunkSize` bytes of the image at `position` (fewer only at its end). */
async function readChunk(src: FileHandle, chunkSize: number, position: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(chunkSize);
  let got = 0;
  while (got < chunkSize) {
    const { bytesRead } = await src.read(buf, got, chunkSize - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Format 2's choice for one chunk, from its size and its size as zstd. Pure. */
export function chooseCompression(rawBytes: number, zstdBytes: number): ChunkCompression {
  return zstdBytes <= rawBytes * (1 - MIN_ZSTD_SAVING) ? 'zstd' : 'none';
}

/** Format 2: one zstd frame when that pays (chooseCompression), else the bytes as they are. zstd runs on libuv's thread pool. */
async function zstdOrRaw(raw: Buffer, imageSha256: string, level: number): Promise<StoredChunk> {
  const z = await zstdCompressAsync(raw, { params: { [zc.ZSTD_c_compressionLevel]: level, [zc.ZSTD_c_checksumFlag]: 0 } });
  const compression = chooseCompression(raw.length, z.length);
  return { uncompressedSize: raw.length, imageSha256, compression, stored: compression === 'zstd' ? z : raw };
}

/** Format 1: one chunk as an xz stream of its own. */
async function xzChunk(raw: Buffer, imageSha256: string, level: number, signal: AbortSignal): Promise<StoredChunk> {
  const r = await run('xz', ['-z', '-c', `-${level}`, '-T1', '--check=crc64'], { input: raw, encoding: 'buffer', signal });
  return { uncompressedSize: raw.length, imageSha256, compression: 'xz', stored: Buffer.from(r.stdoutBuffer ?? new Uint8Array()) };
}

/** Appends stored chunks to the payload file, hashing the payload and recording each chunk. */
class PayloadWriter {
  readonly chunks: ChunkRecord[] = [];
  private offset = 0;
  private readonly sha256 = createHash('sha256');
  private readonly sha1 = createHash('sha1');

  constructor(private readonly out: FileHandle) {}

  async write({ uncompressedSize, imageSha256, compression, stored, seedOffset }: StoredChunk): Promise<void> {
    if (stored.length > 0) await this.out.write(stored);
    this.sha256.update(stored);
    this.sha1.update(stored);
    const sha256 = compression === 'none' || compression === 'seed' ? imageSha256 : createHash('sha256').update(stored).digest('hex');
    this.chunks.push({ offset: this.offset, size: stored.length, sha256, uncompressedSize, imageSha256, compression, ...(seedOffset !== undefined ? { seedOffset } : {}) });
    this.offset += stored.length;
  }

  /** The payload's size and digests (once every chunk is written). */
  finish(): { size: number; sha256: string; sha1: string } {
    return { size: this.offset, sha256: this.sha256.digest('hex'), sha1: this.sha1.digest('base64') };
  }
}

/**
 * Chunks are encoded independently: up to `jobs` at once (zstd on the thread
 * pool, or one xz process each), and the results are written (and hashed) in
 * image order, so the payload is the same bytes whatever the number of jobs.
 * When one job fails, the xz processes still running are killed and awaited
 * before the error goes up: nothing outlives the failed release.
 * Returns the image's size and hash.
 */
async function encodeChunks(src: FileHandle, writer: PayloadWriter, enc: EncodeSettings): Promise<PayloadManifest['image']> {
  const imgHash = createHash('sha256');
  let imageSize = 0;
  const inFlight: Promise<StoredChunk>[] = [];
  const stop = new AbortController();
  const writeNext = async (): Promise<void> => writer.write(await inFlight.shift()!);
  try {
    for (;;) {
      const raw = await readChunk(src, enc.chunkSize, imageSize);
      if (raw.length === 0) break;
      imgHash.update(raw);
      imageSize += raw.length;
      const rawSha256 = createHash('sha256').update(raw).digest('hex');
      const job = enc.format === 1 ? xzChunk(raw, rawSha256, enc.xzLevel, stop.signal) : zstdOrRaw(raw, rawSha256, enc.zstdLevel);
      // Awaited in order by writeNext; this only keeps an early failure from being reported as unhandled.
      job.catch(() => {});
      inFlight.push(job);
      if (inFlight.length >= enc.jobs) await writeNext();
      if (raw.length < enc.chunkSize) break;
    }
    while (inFlight.length > 0) await writeNext();
  } catch (e) {
    stop.abort();
    await Promise.allSettled(inFlight);
    throw e;
  }
  return { size: imageSize, sha256: imgHash.digest('hex') };
}

/** Checks and completes the encoding settings. */
function encodeSettings(o: ReleaseOptions): EncodeSettings {
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 4096 || chunkSize > MAX_CHUNK_BYTES) {
    throw new BasaltError(COMMON_ERRORS.E_INVALID_VALUE, `--chunk-size: ${chunkSize} bytes is not from 4 KiB to ${MAX_CHUNK_BYTES / 1048576} MiB`, { hint: 'the client holds one chunk in memory; 4M is the default' });
  }
  return { format: o.payloadFormat ?? PAYLOAD_FORMAT, chunkSize, zstdLevel: o.zstdLevel ?? DEFAULT_ZSTD_LEVEL, xzLevel: o.xzLevel ?? 6, jobs: o.jobs ?? Math.min(availableParallelism(), MAX_JOBS) };
}

/** Encodes the USR image into tmp/<payload file> (synced). */
async function writePayload(o: ReleaseOptions, tmp: string): Promise<WrittenPayload> {
  const enc = encodeSettings(o);
  const file = PAYLOAD_FILES[enc.format];
  const src = await open(o.usr, 'r').catch((e: unknown) => {
    throw fsError(e, o.usr, 'read');
  });
  const out = await open(join(tmp, file), 'w');
  try {
    const writer = new PayloadWriter(out);
    const image = await encodeChunks(src, writer, enc);
    await out.sync();
    return { format: enc.format, file, ...writer.finish(), chunks: writer.chunks, image };
  } finally {
    await src.close();
    await out.close();
  }
}

/** A recorded chunk as a format 2 manifest lists it. */
function v2Chunk(c: ChunkRecord): PayloadChunkV2 {
  const compression = c.compression === 'xz' ? 'none' : c.compression;
  return { offset: c.offset, size: c.size, sha256: c.sha256, uncompressedSize: c.uncompressedSize, compression, imageSha256: c.imageSha256, ...(c.seedOffset !== undefined ? { seedOffset: c.seedOffset } : {}) };
}

function releaseManifest(o: ReleaseOptions, plan: ReleasePlan, written: WrittenPayload): PayloadManifest {
  const { side } = plan;
  const common = {
    kind: 'basalt-payload' as const,
    version: o.version,
    channels: [o.channel],
    board: plan.board,
    created: o.now.toISOString(),
    image: written.image,
    usr: {
      fsType: side?.fsType ?? 'squashfs',
      fsBytes: side?.fsBytes ?? null,
      hashOffset: side?.hashOffset ?? null,
      rootHash: side?.rootHash ?? null,
      salt: side?.salt ?? null,
      kernel: side?.kernel ?? '/lib/basalt/boot/vmlinuz',
      initrd: side?.initrd ?? '/lib/basalt/boot/initrd',
    },
  };
  const { file, size, sha256, sha1 } = written;
  if (written.format === 2) {
    const chunks = written.chunks.map(v2Chunk);
    return { formatVersion: 2, ...common, payload: { file, size, sha256, sha1, chunks } };
  }
  const chunks = written.chunks.map((c): PayloadChunk => ({ offset: c.offset, size: c.size, sha256: c.sha256, uncompressedSize: c.uncompressedSize }));
  return { formatVersion: 1, ...common, payload: { file, size, sha256, sha1, compression: 'xz', chunks } };
}

/** Writes the signed manifest and the payload's detached signature beside the payload, then syncs the directory. */
async function signRelease(tmp: string, manifest: PayloadManifest, key: openpgp.PrivateKey): Promise<void> {
  const file = manifest.payload.file;
  await writeFile(join(tmp, 'manifest.json'), await seal(manifest, key));
  await writeFile(join(tmp, `${file}.sig`), await signFileDetached(join(tmp, file), key));
  await syncDir(tmp);
}

/** Publishes the release directory with one rename onto payloads/<version>. */
async function publishPayloadDir(tmp: string, dest: string): Promise<void> {
  await rename(tmp, dest).catch((e: unknown) => {
    throw fsError(e, dest, 'publish');
  });
  await syncDir(dirname(dest));
}

/**
 * Encodes a USR image into a chunked payload (format 2: each chunk stored as
 * it is or as zstd, whichever its content calls for; format 1: xz), writes the signed
 * manifest and detached payload signature into payloads/<version>/ (published
 * by one directory rename), then points channels/<channel>.json at it.
 */
export async function release(o: ReleaseOptions): Promise<{ manifest: PayloadManifest; channel: ChannelMeta; deltas: PayloadManifestV2[]; tuf?: Published | undefined }> {
  const plan = await planRelease(o);
  if (o.tuf) await checkSigners(o.repo, o.tuf.signers, o.tuf.initRoot ? await readFile(o.tuf.initRoot, 'utf8') : undefined);
  const tmp = join(o.repo, 'payloads', `.tmp-${o.version}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { recursive: true });
  try {
    const written = await writePayload(o, tmp);
    if (written.image.size === 0) throw new BasaltError(UE_ERRORS.E_USR_EMPTY, `${o.usr}: image is empty`);
    const manifest = releaseManifest(o, plan, written);
    await signRelease(tmp, manifest, o.key);
    const deltas: PayloadManifestV2[] = [];
    for (const from of new Set(o.deltaFrom ?? [])) deltas.push(await writeDelta(o, manifest, from, join(tmp, deltaDir(from))));
    if (o.image) await writeDiskImage(o.image, join(tmp, IMAGE_DIR));
    await publishPayloadDir(tmp, plan.dest);
    const { current } = plan;
    const channel = await publishChannel(o.repo, o.channel, manifest, o.key, o.now, o.expiresMs, o.rollout ?? current?.rollout.percent ?? 100, (current?.serial ?? 0) + 1, current ?? {});
    return { manifest, channel, deltas, tuf: await publishTuf(o.repo, o.tuf, o.now) };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Writes the disk image (zstd) and its build manifest into `dir`. The manifest
 * must list the image as its raw artifact of the same size (install checks
 * the digest after expanding it).
 */
async function writeDiskImage(image: string, dir: string): Promise<void> {
  const manifestPath = join(dirname(image), 'manifest.json');
  const text = await readFile(manifestPath, 'utf8').catch((e: unknown) => {
    throw fsError(e, manifestPath, 'read the build manifest beside --image');
  });
  let art: { bytes: number };
  try {
    art = rawArtifact(JSON.parse(text), basename(image), manifestPath);
  } catch (e) {
    throw new BasaltError(UE_ERRORS.E_RELEASE_IMAGE, `--image ${image}: ${(e as Error).message}`);
  }
  const size = (await stat(image).catch((e: unknown) => {
    throw fsError(e, image, 'read --image');
  })).size;
  if (size !== art.bytes) throw new BasaltError(UE_ERRORS.E_RELEASE_IMAGE, `--image ${image}: ${size} bytes, ${manifestPath} says ${art.bytes}`);
  await mkdir(dir);
  await run('zstd', ['-q', '-T0', '-3', '-o', join(dir, `${basename(image)}.zst`), image]);
  await writeFile(join(dir, 'manifest.json'), text);
}

/**
 * The image of a released version, rebuilt from its payload in the
 * repository (format 2: its stored and zstd chunks; format 1: xz, one chunk
 * at a time) and checked against its manifest's image hash.
 */
export async function releasedImage(repo: string, version: string): Promise<{ manifest: PayloadManifest; image: Buffer }> {
  const manifest = await readRepoManifest(repo, version);
  const path = join(repo, 'payloads', version, manifest.payload.file);
  const payload = await readFile(path).catch((e: unknown) => {
    throw fsError(e, path, 'read');
  });
  const parts: Buffer[] = [];
  for (const [k, c] of manifest.payload.chunks.entries()) {
    const stored = payload.subarray(c.offset, c.offset + c.size);
    const how = chunkCompression(manifest, k);
    if (how === 'none') parts.push(stored);
    else if (how === 'zstd') parts.push(zstdDecompressSync(stored, { maxOutputLength: c.uncompressedSize }));
    else if (how === 'xz') parts.push(Buffer.from((await run('xz', ['-dc'], { input: stored, encoding: 'buffer' })).stdoutBuffer ?? new Uint8Array()));
    else throw new BasaltError(UE_ERRORS.E_DELTA_BASE, `${path}: version ${version} is itself a delta`);
  }
  const image = Buffer.concat(parts);
  if (createHash('sha256').update(image).digest('hex') !== manifest.image.sha256) {
    throw new BasaltError(UE_ERRORS.E_DELTA_BASE, `${path}: the payload of ${version} does not rebuild its signed image`, { hint: 'the repository is damaged: republish that version' });
  }
  return { manifest, image };
}

/**
 * Writes a delta from `from` to the release `full` into `dir`: the image's
 * content-defined chunks found in `from`'s image are 'seed' chunks (no
 * payload bytes), the rest data chunks stored as the full payload's are; a
 * signed manifest naming the full release for the fallback; the payload's
 * signature.
 */
async function writeDelta(o: ReleaseOptions, full: PayloadManifest, from: string, dir: string): Promise<PayloadManifestV2> {
  const base = await releasedImage(o.repo, from);
  if (base.manifest.board !== full.board) throw new BasaltError(UE_ERRORS.E_DELTA_BASE, `--delta-from: ${from} is for board ${base.manifest.board}, not ${full.board}`);
  const image = await readFile(o.usr).catch((e: unknown) => {
    throw fsError(e, o.usr, 'read');
  });
  const pieces = planDelta(image, seedIndex(base.image), Math.min(MAX_PIECE, encodeSettings(o).chunkSize));
  await mkdir(dir);
  const file = PAYLOAD_FILES[2];
  const out = await open(join(dir, file), 'w');
  let written: { size: number; sha256: string; sha1: string };
  const writer = new PayloadWriter(out);
  try {
    for (const p of pieces) {
      const raw = image.subarray(p.at, p.at + p.length);
      const imageSha256 = createHash('sha256').update(raw).digest('hex');
      if (p.kind === 'seed') await writer.write({ uncompressedSize: p.length, imageSha256, compression: 'seed', stored: Buffer.alloc(0), seedOffset: p.seedOffset });
      else await writer.write(await zstdOrRaw(Buffer.from(raw), imageSha256, o.zstdLevel ?? DEFAULT_ZSTD_LEVEL));
    }
    await out.sync();
    written = writer.finish();
  } finally {
    await out.close();
  }
  const { payload: fp } = full;
  const manifest: PayloadManifestV2 = {
    ...full,
    formatVersion: 2,
    payload: { file, ...written, chunks: writer.chunks.map(v2Chunk) },
    delta: { from, seedSize: base.image.length, seedSha256: base.manifest.image.sha256, full: { manifest: '../manifest.json', payload: `../${fp.file}`, size: fp.size, sha256: fp.sha256 } },
  };
  await signRelease(dir, manifest, o.key);
  return manifest;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** The current (unverified: the publisher's own repository) metadata of a channel, if any. */
export async function currentChannel(repo: string, channel: string): Promise<ChannelMeta | undefined> {
  const p = join(repo, 'channels', `${channel}.json`);
  let text: string;
  try {
    text = await readFile(p, 'utf8');
  } catch {
    return undefined;
  }
  return peekEnvelope(text, p) as ChannelMeta;
}

/** The floors and holds a channel at `version` keeps: those older than it. Pure. */
export function keptStops(cur: Pick<ChannelMeta, 'floors' | 'holds'> | undefined, version: string): Pick<ChannelMeta, 'floors' | 'holds'> {
  const keep = (l: string[] | undefined) => [...new Set(l ?? [])].filter((v) => compareVersions(v, version) < 0).sort(compareVersions);
  const floors = keep(cur?.floors);
  const holds = keep(cur?.holds);
  return { ...(floors.length ? { floors } : {}), ...(holds.length ? { holds } : {}) };
}

async function publishChannel(repo: string, channel: string, m: PayloadManifest, key: openpgp.PrivateKey, now: Date, expiresMs: number, percent: number, serial: number, stops: Pick<ChannelMeta, 'floors' | 'holds'>): Promise<ChannelMeta> {
  const mpath = `payloads/${m.version}/manifest.json`;
  const mtext = await readFile(join(repo, mpath));
  const meta: ChannelMeta = {
    formatVersion: 1,
    kind: 'basalt-channel',
    channel,
    version: m.version,
    board: m.board,
    manifest: mpath,
    manifestSha256: createHash('sha256').update(mtext).digest('hex'),
    payload: { path: `payloads/${m.version}/${m.payload.file}`, size: m.payload.size, sha256: m.payload.sha256 },
    serial,
    issued: now.toISOString(),
    expires: new Date(now.getTime() + expiresMs).toISOString(),
    rollout: { percent },
    ...keptStops(stops, m.version),
  };
  await writeFileAtomic(join(repo, 'channels', `${channel}.json`), await seal(meta, key));
  return meta;
}

/** Reads payloads/<version>/manifest.json of the publisher's own repository (verified with the given key's public part). */
export async function readRepoManifest(repo: string, version: string): Promise<PayloadManifest> {
  const p = join(repo, 'payloads', checkVersion(version, 'version'), 'manifest.json');
  const text = await readFile(p, 'utf8').catch((e: unknown) => {
    throw fsError(e, p, 'read');
  });
  return validateManifest(peekEnvelope(text, p), p);
}

/**
 * Points channels/<to>.json at a version released to `from`, then
 * re-publishes the TUF targets. The release's manifest and payload are not
 * touched: a manifest's bytes never change after its release, so every
 * channel file's manifestSha256 (and its TUF target) stays true. The
 * manifest's `channels` lists where it was first released; which channels
 * carry it is what the signed channel files and their targets say.
 */
export async function promote(repo: string, version: string, from: string, to: string, key: openpgp.PrivateKey, now: Date, expiresMs: number, rollout?: number, tuf?: TufPublish): Promise<ChannelMeta> {
  checkChannel(from, '--from');
  checkChannel(to, '--to');
  const m = await readRepoManifest(repo, version);
  const src = await currentChannel(repo, from);
  if (!m.channels.includes(from) && src?.version !== version) throw new BasaltError(UE_ERRORS.E_PROMOTE_SOURCE, `version ${version} was not released to channel ${from} (it is in: ${m.channels.join(', ')})`);
  const cur = await currentChannel(repo, to);
  if (cur && compareVersions(version, cur.version) <= 0) throw new BasaltError(UE_ERRORS.E_VERSION_NOT_NEWER, `channel ${to} is at ${cur.version}; ${version} is not newer`);
  const meta = await publishChannel(repo, to, m, key, now, expiresMs, rollout ?? cur?.rollout.percent ?? 100, (cur?.serial ?? 0) + 1, cur ?? {});
  await publishTuf(repo, tuf, now);
  return meta;
}

/** Re-signs a channel's metadata with a new expiry and/or rollout percentage. */
export async function refreshChannel(repo: string, channel: string, key: openpgp.PrivateKey, now: Date, expiresMs: number, rollout?: number, tuf?: TufPublish): Promise<ChannelMeta> {
  const cur = await currentChannel(repo, checkChannel(channel));
  if (!cur) throw new BasaltError(UE_ERRORS.E_CHANNEL_UNKNOWN, `channel ${channel} has no release in ${repo}`);
  const m = await readRepoManifest(repo, cur.version);
  const meta = await publishChannel(repo, channel, m, key, now, expiresMs, rollout ?? cur.rollout.percent, cur.serial + 1, cur);
  await publishTuf(repo, tuf, now);
  return meta;
}

/** What `basalt release floor|hold|drop` changes in a channel's stops. */
export interface StopChange {
  floor?: string[];
  hold?: string[];
  drop?: string[];
}

/**
 * Adds or drops a channel's floors and holds and re-signs it (and the TUF
 * targets, which carry them). A stop must be a release of this repository,
 * of the channel's board, older than the channel's release; all are checked
 * before anything is written.
 */
export async function setChannelStops(repo: string, channel: string, change: StopChange, key: openpgp.PrivateKey, now: Date, expiresMs: number, tuf?: TufPublish): Promise<ChannelMeta> {
  const cur = await currentChannel(repo, checkChannel(channel));
  if (!cur) throw new BasaltError(UE_ERRORS.E_CHANNEL_UNKNOWN, `channel ${channel} has no release in ${repo}`);
  for (const v of [...(change.floor ?? []), ...(change.hold ?? [])]) {
    checkVersion(v, 'version');
    if (compareVersions(v, cur.version) >= 0) throw new BasaltError(UE_ERRORS.E_CHANNEL_STOP, `${v}: channel ${channel} is at ${cur.version}; a floor or hold is an older release`);
    const m = await readRepoManifest(repo, v).catch(() => undefined);
    if (!m) throw new BasaltError(UE_ERRORS.E_CHANNEL_STOP, `${v}: not released in ${repo} (no payloads/${v}/manifest.json)`);
    if (m.board !== cur.board) throw new BasaltError(UE_ERRORS.E_CHANNEL_STOP, `${v}: is for board ${m.board}, channel ${channel} for ${cur.board}`);
  }
  const drop = new Set(change.drop ?? []);
  for (const v of drop) {
    if (!cur.floors?.includes(v) && !cur.holds?.includes(v)) throw new BasaltError(UE_ERRORS.E_CHANNEL_STOP, `${v}: is not a floor or hold of channel ${channel}`);
  }
  const next = (l: string[] | undefined, add: string[] | undefined) => [...(l ?? []), ...(add ?? [])].filter((v) => !drop.has(v));
  const m = await readRepoManifest(repo, cur.version);
  const meta = await publishChannel(repo, channel, m, key, now, expiresMs, cur.rollout.percent, cur.serial + 1, { floors: next(cur.floors, change.floor), holds: next(cur.holds, change.hold) });
  await publishTuf(repo, tuf, now);
  return meta;
}

/** Lists channel names present in a repository. */
export async function listChannels(repo: string): Promise<string[]> {
  try {
    return (await readdir(join(repo, 'channels'))).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => basename(f, '.json')).sort();
  } catch {
    return [];
  }
}


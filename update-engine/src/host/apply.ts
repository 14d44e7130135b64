/**
 * Download, verify and finalize one offered update into the inactive USR
 * slot. Order (each step persisted, so a kill -9 anywhere resumes or leaves
 * the old slot booting):
 *   1. fetch and verify the signed payload manifest (before any write);
 *   2. refuse an older/equal version, another channel or board, a blocked version;
 *   3. invalidate the target slot (GPT P0/T0/S0, remove its boot entry);
 *   4. stream the payload in one pass: each chunk is hash-checked against the
 *      signed manifest BEFORE it is decoded (format 2: stored or zstd, and
 *      the result against the chunk's image hash; format 1: xz) and written
 *      into the inactive slot; a checkpoint (slot fdatasync, then
 *      progress.json) every few chunks, overlapped with the transfer; cuts
 *      resume with HTTP Range, a restart reads the checkpointed prefix back
 *      from the slot and checks it (format 2: chunk by chunk against the hash
 *      list; format 1: into the image's running SHA-256). A delta's seed
 *      chunks are read from the running slot (read-only) in the same pass
 *      and checked the same way; one that does not match gives way to the
 *      full release the delta names (downloadOffer);
 *   5. the whole image against the signed manifest after the final
 *      fdatasync and before progress says 'written' (finalize requires it):
 *      format 2's hash list covers it end to end, chunk by chunk; format 1's
 *      SHA-256 over exactly the bytes written must be image.sha256;
 *   6. finalize: kernel+initrd onto the ESP, stage the entry, rename it into
 *      place (the commit point), then GPT attributes as flatcar-postinst,
 *      then /run/reboot-required.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { zstdDecompress } from 'node:zlib';
import { join } from 'node:path';
import { HTTPError, type Got } from 'got';
import { fetchText, httpClient, httpStatusOf } from '../../../common/src/http.js';
import { createRequire } from 'node:module';
import { BasaltError, InternalError, fsError, type ErrorDef } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import type { Logger } from '../../../common/src/log.js';
import { readGpt, writeGpt } from '../../../common/src/gpt/index.js';
import { renderEntry, kernelCmdline, entryFileName, parseEntryFileName } from '../../../common/src/boot.js';
import type { Esp } from './esp.js';
import { ErrorCode, type UpdateOffer } from '../format/omaha.js';
import { chunkCompression, type PayloadChunk, type PayloadChunkV2, type PayloadManifest } from '../format/metadata.js';
import { assertInactiveWrite, invalidateTarget, postinstAttrs, type SlotPlan } from './slots.js';
import { compareVersions } from '../format/version.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { hashFileRange, hexToBase64 } from '../format/digest.js';

import { afterFailure, classifyFailure, tooSlow, type FailureKind, type HttpOptions, type MirrorState } from './http.js';
import { HashThread, sharedBuffer } from './hash-thread.js';
import { UE_ERRORS } from '../errors.js';
import { slotKey } from '../../../common/src/contracts.js';

export interface Identity {
  version: string;
  channel: string;
  board: string;
}

export interface ApplyDeps {
  disk: string;
  plan: SlotPlan;
  esp: Esp;
  stateDir: string;
  /**
   * Turns a fetched manifest into a trusted one: its bytes must be a manifest
   * target of the repository's verified TUF targets (the engine's check made
   * them), else it throws.
   */
  trustManifest(url: string, text: string): PayloadManifest;
  /** The most a manifest of the offered release may be: the longest of its signed manifest targets. */
  manifestMaxBytes(): number;
  http: HttpOptions;
  me: Identity;
  /** Versions that failed (rollback or bad payload) and must not be retried. */
  blocked: string[];
  tries: number;
  rebootRequiredPath: string;
  log: Logger;
  /** Test hook: may kill the process at a named point. */
  failpoint(name: string): void;
  sleep(ms: number): Promise<void>;
  onDownloadStarted(resumed: boolean): void;
  onProgress(fraction: number): void;
}

export interface Progress {
  formatVersion: 1;
  version: string;
  payloadSha256: string;
  target: 'A' | 'B';
  diskGuid: string;
  chunksDone: number;
  phase: 'writing' | 'written' | 'committed';
  resumes: number;
}

// xz-decompress is CommonJS without detectable named exports; load it through require.
const { XzReadableStream } = createRequire(import.meta.url)('xz-decompress') as typeof import('xz-decompress');
const fail = (def: ErrorDef, message: string, errorCode: number, hint?: string) => new BasaltError(def, message, { details: { errorCode }, hint });


export function progressPath(stateDir: string): string {
  return join(stateDir, 'progress.json');
}

export async function readProgress(stateDir: string): Promise<Progress | undefined> {
  try {
    // Whatever is on the disk: only a formatVersion 1 record is taken.
    const p = JSON.parse(await readFile(progressPath(stateDir), 'utf8')) as { formatVersion?: unknown };
    return p.formatVersion === 1 ? (p as Progress) : undefined;
  } catch {
    return undefined;
  }
}

async function saveProgress(stateDir: string, p: Progress): Promise<void> {
  await writeFileAtomic(progressPath(stateDir), JSON.stringify(p) + '\n');
}

/** The largest signed payload manifest accepted (a 100 GiB image in 1 MiB chunks is about 20 MiB of JSON). */
export const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;

/**
 * Fetches and verifies the signed payload manifest named by the offer, from
 * its codebases in turn: one that sends a manifest its TUF target refuses, is
 * over its longest signed manifest target (MAX_MANIFEST_BYTES at most), or answers 4xx is dropped; a stall, a 5xx or one
 * slower than the document deadline moves on to the next after a back-off.
 */
export async function fetchManifest(offer: UpdateOffer, d: Pick<ApplyDeps, 'http' | 'trustManifest' | 'manifestMaxBytes' | 'sleep' | 'log'>): Promise<PayloadManifest> {
  const http = httpClient({ connectMs: Math.min(d.http.connectMs, d.http.documentMs), stallMs: Math.min(d.http.stallMs, d.http.documentMs), totalMs: d.http.documentMs });
  const n = offer.codebases.length;
  // A manifest is small: a few tries per mirror, not the payload's twenty.
  const limits = { ...d.http, maxRetries: Math.min(d.http.maxRetries, 5 + n) };
  let s: MirrorState = { n, current: 0, out: new Set(), retries: 0 };
  let refusal: BasaltError | undefined;
  for (;;) {
    const url = new URL(offer.manifestName, offer.codebases[s.current]).toString();
    try {
      const text = await fetchText(http, url, { maxBytes: Math.min(MAX_MANIFEST_BYTES, d.manifestMaxBytes()) });
      return d.trustManifest(url, text);
    } catch (e) {
      const kind = classifyFailure(e);
      if (kind === 'fatal') throw e;
      if (kind === 'refused' && e instanceof BasaltError) refusal = e;
      const next = afterFailure(s, kind, limits);
      if (next.action === 'give-up') {
        // A mirror that sent something the keyring refuses says more than the network failures of the others.
        if (refusal) throw withCode(refusal, ErrorCode.DownloadPayloadPubKeyVerificationError);
        const status = httpStatusOf(e);
        const tried = n > 1 ? ` (tried ${n} mirrors)` : '';
        throw fail(UE_ERRORS.E_DOWNLOAD, `cannot fetch the payload manifest${tried}: ${failureText(url, e, undefined)}`, status ? ErrorCode.HttpBase + status : ErrorCode.DownloadTransferError);
      }
      const to = new URL(offer.manifestName, offer.codebases[next.mirror]).toString();
      d.log.warn(`${failureText(url, e, undefined)}; trying ${to === url ? 'again' : to}${next.waitMs ? ` in ${next.waitMs} ms` : ''}`);
      if (next.waitMs > 0) await d.sleep(next.waitMs);
      s = next.state;
    }
  }
}

function withCode(e: BasaltError, errorCode: number): BasaltError {
  if (typeof e.details['errorCode'] !== 'number') e.details['errorCode'] = errorCode;
  return e;
}

/** Refuses an offer that is not for this machine. Pure apart from the arguments. */
export function checkApplicable(m: PayloadManifest, offer: UpdateOffer, me: Identity, blocked: string[], slotBytes: number): void {
  const policy = ErrorCode.OmahaUpdateIgnoredPerPolicy;
  if (m.version !== offer.version) throw fail(UE_ERRORS.E_UPDATE_MISMATCH, `the server offered ${offer.version} but the signed manifest is for ${m.version}`, ErrorCode.OmahaResponseInvalid);
  if (m.payload.size !== offer.size) throw fail(UE_ERRORS.E_PAYLOAD_SIZE, `the server announced ${offer.size} bytes but the signed manifest says ${m.payload.size}`, ErrorCode.PayloadSizeMismatchError);
  if (m.payload.sha256 !== offer.sha256Hex.toLowerCase()) throw fail(UE_ERRORS.E_PAYLOAD_HASH, `the server's payload sha256 does not match the signed manifest`, ErrorCode.PayloadHashMismatchError);
  if (compareVersions(m.version, me.version) <= 0) {
    throw fail(UE_ERRORS.E_UPDATE_NOT_NEWER, `refusing ${m.version}: it is not newer than the running ${me.version}`, policy, 'a downgrade needs a rollback, not an update');
  }
  // The channel is bound by the TUF targets (trust/decide.ts): the engine took the offer only as its channel's signed release.
  if (m.board !== me.board) throw fail(UE_ERRORS.E_UPDATE_BOARD, `refusing ${m.version}: it is for board ${m.board}, this machine is ${me.board}`, policy);
  if (blocked.includes(m.version)) throw fail(UE_ERRORS.E_UPDATE_BLOCKED, `refusing ${m.version}: it failed on this machine before (rolled back or rejected)`, policy, "a newer release will be taken; 'basalt update unblock' allows it again");
  if (m.image.size > slotBytes) throw fail(UE_ERRORS.E_SLOT_TOO_SMALL, `the ${m.image.size}-byte image does not fit the ${slotBytes}-byte slot`, ErrorCode.InstallDeviceOpenError);
  if (m.formatVersion === 2 && m.delta && m.delta.from !== me.version) {
    throw fail(UE_ERRORS.E_DELTA_SEED, `the offer is a delta from ${m.delta.from}, and this machine runs ${me.version}`, ErrorCode.DownloadOperationHashMismatch);
  }
}

/** The full release a delta names, offered from the same place (its manifest and payload are beside the delta's directory). */
export function fullOffer(m: PayloadManifest, offer: UpdateOffer): UpdateOffer | undefined {
  if (m.formatVersion !== 2 || !m.delta) return undefined;
  const f = m.delta.full;
  return { ...offer, packageName: f.payload, manifestName: f.manifest, size: f.size, sha256Hex: f.sha256, sha256Base64: hexToBase64(f.sha256), sha1Base64: '' };
}

/**
 * Steps 1-5 for an offer: its signed manifest, the checks, and the download
 * into the inactive slot. A delta whose seed is not what the running slot
 * holds (or that is from another version) gives way to the full release it
 * names. Returns the manifest that was applied.
 */
export async function downloadOffer(offer: UpdateOffer, d: ApplyDeps): Promise<PayloadManifest> {
  const m = await fetchManifest(offer, d);
  try {
    checkApplicable(m, offer, d.me, d.blocked, d.plan.range.length);
    await downloadAndWrite(m, offer, d);
    return m;
  } catch (e) {
    const full = fullOffer(m, offer);
    if (!full || !(e instanceof BasaltError) || e.code !== UE_ERRORS.E_DELTA_SEED.code) throw e;
    d.log.warn(`${e.message}; taking the full payload of ${m.version} instead of the delta`);
    const fm = await fetchManifest(full, d);
    checkApplicable(fm, full, d.me, d.blocked, d.plan.range.length);
    if (fm.image.sha256 !== m.image.sha256) throw fail(UE_ERRORS.E_UPDATE_MISMATCH, `the full release the delta names is another image than the delta's`, ErrorCode.OmahaResponseInvalid);
    await downloadAndWrite(fm, full, d);
    return fm;
  }
}

async function unxz(buf: Buffer): Promise<Buffer> {
  const xs = new XzReadableStream(new Blob([buf]).stream() as ReadableStream<Uint8Array>);
  return Buffer.from(await new Response(xs as unknown as ReadableStream).arrayBuffer());
}

const unzstd = promisify(zstdDecompress);

/** A verified chunk's image bytes: the stored bytes themselves, or decoded (never more than the manifest's size). */
async function decodeChunk(m: PayloadManifest, k: number, stored: Buffer): Promise<Buffer> {
  const c = m.payload.chunks[k]!;
  const how = chunkCompression(m, k);
  if (how === 'none' || how === 'seed') return stored;
  try {
    return how === 'zstd' ? await unzstd(stored, { maxOutputLength: c.uncompressedSize }) : await unxz(stored);
  } catch (e) {
    throw fail(UE_ERRORS.E_PAYLOAD_DECOMPRESS, `chunk ${k}: ${how} data is corrupt or larger than the manifest's ${c.uncompressedSize} bytes (${(e as Error).message})`, ErrorCode.DownloadWriteError);
  }
}

/**
 * Progress is made durable at most every CHECKPOINT_BYTES of image, at most
 * CHECKPOINTS times an image, and at the end: fdatasync of the slot, then
 * progress.json. Each checkpoint's sync runs while the next chunks arrive; a
 * checkpoint waits only for the one before it. Fewer would lose more to a
 * power cut; more would hold up the writes behind the file system's journal.
 */
export const CHECKPOINT_BYTES = 64 * 1024 * 1024;
export const CHECKPOINTS = 8;

/** The chunks after which progress is checkpointed (see CHECKPOINT_BYTES), always the last among them. Pure. */
export function checkpointChunks(chunks: Pick<PayloadChunk, 'uncompressedSize'>[], every = CHECKPOINT_BYTES): number[] {
  const total = chunks.reduce((a, c) => a + c.uncompressedSize, 0);
  const step = Math.max(1, Math.min(every, Math.ceil(total / CHECKPOINTS)));
  const out: number[] = [];
  let since = 0;
  for (const [k, c] of chunks.entries()) {
    since += c.uncompressedSize;
    if (since >= step || k === chunks.length - 1) {
      out.push(k);
      since = 0;
    }
  }
  return out;
}

/** Steps 3-5. Returns when the slot holds the verified image (progress 'written'). */
export async function downloadAndWrite(m: PayloadManifest, offer: UpdateOffer, d: ApplyDeps): Promise<void> {
  const prog = await startOrResume(m, d);
  if (!prog) return;
  d.onDownloadStarted(prog.chunksDone > 0);
  let fh: FileHandle;
  try {
    fh = await open(d.disk, 'r+');
  } catch (e) {
    throw withCode(fsError(e, d.disk, 'open for writing'), ErrorCode.InstallDeviceOpenError);
  }
  const imageOff = imageOffsets(m.payload.chunks);
  const w: ChunkWriter = {
    m,
    d,
    fh,
    prog,
    imageOff,
    hasher: new HashThread(),
    checkpoints: new Set(checkpointChunks(m.payload.chunks)),
    syncing: Promise.resolve(),
    next: prog.chunksDone,
    tail: Promise.resolve(),
    inflight: new Set(),
    seed: undefined,
    failure: undefined,
  };
  try {
    if (m.formatVersion === 2 && m.delta) w.seed = await openSeed(m, d);
    await resumePrefix(w);
    await fetchChunks(w, offer);
    await w.tail;
    await w.syncing;
    await finishImage(w);
  } finally {
    // No write or checkpoint outlives the download (a failed one was reported, or the failure before it is).
    await settled(w);
    await w.syncing.catch(() => {});
    await w.hasher.close();
    await w.seed?.close();
    await fh.close();
  }
}

/** Opens the running slot read-only as a delta's seed, after checking the seed fits it. */
async function openSeed(m: PayloadManifest, d: ApplyDeps): Promise<FileHandle> {
  const size = m.formatVersion === 2 ? (m.delta?.seedSize ?? 0) : 0;
  if (size > d.plan.activeRange.length) throw fail(UE_ERRORS.E_DELTA_SEED, `the delta's ${size}-byte seed is larger than slot ${d.plan.booted}`, ErrorCode.DownloadOperationHashMismatch);
  return open(d.disk, 'r').catch((e: unknown) => {
    throw withCode(fsError(e, d.disk, 'read the running slot'), ErrorCode.InstallDeviceOpenError);
  });
}

/** Reads chunk k's bytes from the running slot (a delta's seed chunk) into `buf`. */
async function readSeed(w: ChunkWriter, k: number, buf: Buffer): Promise<Buffer> {
  const c = w.m.payload.chunks[k] as PayloadChunkV2;
  const at = w.d.plan.activeRange.offset + c.seedOffset!;
  let got = 0;
  while (got < c.uncompressedSize) {
    const { bytesRead } = await w.seed!.read(buf, got, c.uncompressedSize - got, at + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** Reads `length` bytes of the slot at image offset `at` into `buf`. */
async function readSlot(w: ChunkWriter, buf: Buffer, at: number, length: number): Promise<Buffer> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await w.fh.read(buf, got, length - got, w.d.plan.range.offset + at + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/**
 * A restart takes over the chunks already written (the checkpointed prefix),
 * read back from the slot: format 2 checks each against its signed image hash
 * and carries on from the first that does not match; format 1 feeds them to
 * the image's running hash.
 */
async function resumePrefix(w: ChunkWriter): Promise<void> {
  const { m } = w;
  const done = w.prog.chunksDone;
  if (done === 0) return;
  const buf = sharedBuffer(m.payload.chunks.slice(0, done).reduce((a, c) => Math.max(a, c.uncompressedSize), 0));
  for (let k = 0; k < done; k++) {
    const bytes = await readSlot(w, buf, w.imageOff[k]!, m.payload.chunks[k]!.uncompressedSize);
    if (m.formatVersion === 1) await w.hasher.update(bytes);
    else if (bytes.length !== m.payload.chunks[k]!.uncompressedSize || (await w.hasher.digest(bytes)) !== m.payload.chunks[k]!.imageSha256) {
      w.d.log.warn(`${w.d.disk}: chunk ${k} of slot ${w.d.plan.target} is not as written before the restart; downloading from it again`);
      w.next = k;
      w.prog.chunksDone = k;
      return;
    }
  }
}

/**
 * Step 5: every chunk is written and the slot synced; the slot must hold the
 * signed image before progress says 'written'. Format 2: every chunk of it
 * was checked against the manifest's hash list (before it was written, or
 * read back after a restart), which covers the image end to end. Format 1:
 * the SHA-256 over the bytes written must be the image's. A mismatch starts
 * the next attempt from the first chunk.
 */
async function finishImage(w: ChunkWriter): Promise<void> {
  const { m, d } = w;
  if (w.next !== m.payload.chunks.length || w.prog.chunksDone !== m.payload.chunks.length) {
    throw new InternalError(`download of ${m.version} ended at chunk ${w.next}/${m.payload.chunks.length}`);
  }
  d.failpoint('download-done');
  if (m.formatVersion === 1) {
    const sum = await w.hasher.final();
    if (sum !== m.image.sha256) {
      await saveProgress(d.stateDir, { ...w.prog, chunksDone: 0 });
      throw fail(UE_ERRORS.E_SLOT_VERIFY, `${d.disk}: slot ${d.plan.target} does not hold the signed image after writing (sha256 ${sum.slice(0, 12)}...)`, ErrorCode.NewRootfsVerificationError);
    }
  }
  await saveProgress(d.stateDir, { ...w.prog, phase: 'written' });
  d.failpoint('verified');
}

/**
 * Step 3: a fresh start makes the target unbootable (GPT and entries) before a
 * byte of it is written and records the progress; the same download resumes.
 * Undefined when the download is already complete.
 */
async function startOrResume(m: PayloadManifest, d: ApplyDeps): Promise<Progress | undefined> {
  const gpt0 = await readGpt(d.disk);
  const p = await readProgress(d.stateDir);
  const same = p?.version === m.version && p.payloadSha256 === m.payload.sha256 && p.target === d.plan.target && p.diskGuid === gpt0.diskGuid;
  if (same) {
    if (p.phase !== 'writing') return undefined;
    d.log.info(`resuming ${m.version} at chunk ${p.chunksDone}/${m.payload.chunks.length}`);
    return { ...p, resumes: p.resumes + 1 };
  }
  await writeGpt(d.disk, invalidateTarget(gpt0, d.plan));
  d.failpoint('invalidated');
  await removeEntries(d.esp, slotKey(d.plan.target));
  const fresh: Progress = { formatVersion: 1, version: m.version, payloadSha256: m.payload.sha256, target: d.plan.target, diskGuid: gpt0.diskGuid, chunksDone: 0, phase: 'writing', resumes: 0 };
  await saveProgress(d.stateDir, fresh);
  d.failpoint('progress-created');
  return fresh;
}

/** Where each chunk's bytes start in the image. */
function imageOffsets(chunks: PayloadChunk[]): number[] {
  const out: number[] = [];
  let acc = 0;
  for (const c of chunks) {
    out.push(acc);
    acc += c.uncompressedSize;
  }
  return out;
}

/** What the writer of one download holds. */
interface ChunkWriter {
  m: PayloadManifest;
  d: ApplyDeps;
  fh: FileHandle;
  /** progress.json as last saved (chunksDone: the chunks durable in the slot). */
  prog: Progress;
  imageOff: number[];
  /** SHA-256 off the event loop: chunk digests, and (format 1) the running hash over the image bytes written, in image order. */
  hasher: HashThread;
  /** Chunks after which a checkpoint is taken (checkpointChunks). */
  checkpoints: Set<number>;
  /** The checkpoint in flight (resolved when none is). */
  syncing: Promise<void>;
  /** The next chunk to verify and write; chunks before it are in the slot. */
  next: number;
  /** The last chunk handed to the writer: chunks are recorded (progress, checkpoints) in order, one after the other. */
  tail: Promise<void>;
  /** Chunks being verified and written, several at once. */
  inflight: Set<Promise<Buffer>>;
  /** A delta's seed: the running slot, opened read-only. */
  seed: FileHandle | undefined;
  /** The first failure of the writer, seen by the transfer at its next piece. */
  failure: Error | undefined;
}

const NOTHING = Buffer.alloc(0);

/** Chunk buffers of a transfer: one being received while the ones before it are hashed and written (several writes at once). */
export const PIPELINE_DEPTH = 4;

/** Where a download stands between attempts. */
interface Transfer {
  /** The next chunk to receive. */
  k: number;
  /** Chunk k's stored bytes received so far: bufs[k % PIPELINE_DEPTH][0, filled). */
  filled: number;
  bufs: Buffer[];
  /** The writer's job for the chunk each buffer last held, and whether it is still running (the buffer is reused once it settled). */
  jobs: Promise<void>[];
  busy: boolean[];
  attempt: number;
  urlIndex: number;
  /** Codebases out of this download (they sent bytes the signed manifest refuses, or answered 4xx): not asked again. */
  refused: Set<number>;
}

/** Step 4: fetches the chunks from chunksDone on, retrying with Range (next codebase each time) until all are written. */
async function fetchChunks(w: ChunkWriter, offer: UpdateOffer): Promise<void> {
  const http = httpClient({ connectMs: w.d.http.connectMs, stallMs: w.d.http.stallMs });
  const chunks = w.m.payload.chunks;
  const biggest = chunks.slice(w.prog.chunksDone).reduce((a, c) => Math.max(a, c.size === 0 ? c.uncompressedSize : c.size), 0);
  const t: Transfer = {
    k: w.next,
    filled: 0,
    bufs: Array.from({ length: PIPELINE_DEPTH }, () => sharedBuffer(biggest)),
    jobs: [],
    busy: [],
    attempt: 0,
    urlIndex: 0,
    refused: new Set(),
  };
  const n = offer.codebases.length;
  while (w.next < chunks.length) {
    const url = new URL(offer.packageName, offer.codebases[t.urlIndex]).toString();
    try {
      // A delta's seed chunks at this point come from the running slot, not the network.
      await takeData(w, t, url, chunks[t.k]?.offset ?? w.m.payload.size, NOTHING, undefined);
      if (t.k === chunks.length) await w.tail;
      else await transferOnce(w, http, url, t);
    } catch (caught) {
      const e = await settleWriter(w, t, caught);
      const status = e instanceof HTTPError ? e.response.statusCode : httpStatusOf(e);
      const kind = classifyFailure(e, status);
      if (kind === 'fatal') throw e;
      const next = afterFailure({ n, current: t.urlIndex, out: t.refused, retries: t.attempt }, kind, w.d.http);
      if (next.action === 'give-up') throw payloadFailure(w, url, e, kind, status, next.why === 'retries-exhausted');
      // Bytes a mirror sent that the manifest refused are not kept; a partly received chunk resumes with Range elsewhere.
      if (kind === 'refused') t.filled = 0;
      t.urlIndex = next.mirror;
      t.refused = new Set(next.state.out);
      t.attempt = next.state.retries;
      const to = new URL(offer.packageName, offer.codebases[next.mirror]).toString();
      w.d.log.warn(`download of ${w.m.version} interrupted at chunk ${w.next}/${chunks.length}: ${failureText(url, e, status)}; ${kind === 'transient' ? 'retrying' : 'trying the next mirror'}${to === url ? '' : ` from ${to}`}${next.waitMs ? ` in ${next.waitMs} ms` : ''} with Range`);
      if (kind === 'transient') w.prog.resumes++;
      if (next.waitMs > 0) await w.d.sleep(next.waitMs);
    }
  }
}

/** The error a download ends with: the mirror's refusal as it is; a missing file or a transfer that kept failing as E_DOWNLOAD naming the URL. */
function payloadFailure(w: ChunkWriter, url: string, e: unknown, kind: FailureKind, status: number | undefined, exhausted: boolean): BasaltError {
  if (kind === 'refused' && e instanceof BasaltError) return e;
  const code = status ? ErrorCode.HttpBase + status : ErrorCode.DownloadTransferError;
  const why = failureText(url, e, status);
  return fail(UE_ERRORS.E_DOWNLOAD, exhausted ? `giving up after ${w.d.http.maxRetries} retries: ${why}` : why, code);
}

/** A failed request as one phrase that names its URL once. */
function failureText(url: string, e: unknown, status: number | undefined): string {
  if (status) return `${url}: HTTP ${status}`;
  const msg = e instanceof Error ? e.message : String(e);
  return msg.includes(url) ? msg : `${url}: ${msg}`;
}

/**
 * After a failed request: waits for the chunks handed to the writer, and
 * takes the transfer back to the first chunk not written (keeping the bytes
 * of a partly received chunk when every chunk before it was written). The
 * writer's failure, if any, is the one that counts.
 */
async function settleWriter(w: ChunkWriter, t: Transfer, caught: unknown): Promise<unknown> {
  await settled(w);
  const e = w.failure ?? caught;
  if (w.next !== t.k) t.filled = 0;
  t.k = w.next;
  t.jobs = [];
  t.busy = [];
  w.failure = undefined;
  w.tail = Promise.resolve();
  return e;
}

/** Waits until no chunk is being written (the ones after a failed chunk are not in the ordered chain, and may still be). */
async function settled(w: ChunkWriter): Promise<void> {
  await w.tail.catch(() => {});
  await Promise.allSettled([...w.inflight]);
}

/** One HTTP request from the first byte not yet received; hands every chunk it completes to the writer. */
async function transferOnce(w: ChunkWriter, http: Got, url: string, t: Transfer): Promise<void> {
  const { m } = w;
  const chunks = m.payload.chunks;
  const start = chunks[t.k]!.offset + t.filled;
  const stream = http.stream(url, { headers: { range: `bytes=${start}-` } });
  let refused: BasaltError | undefined;
  stream.once('response', (res: { statusCode: number; headers: Record<string, string | undefined> }) => {
    if (res.statusCode === 200 && start !== 0) refused = fail(UE_ERRORS.E_NO_RANGE, `${url}: the server ignored the Range request`, ErrorCode.DownloadTransferError);
    const len = Number(res.headers['content-length'] ?? NaN);
    if (len > m.payload.size - start) {
      refused = fail(UE_ERRORS.E_PAYLOAD_TOO_LARGE, `${url}: the server sends ${len} bytes from offset ${start}, more than the announced ${m.payload.size}-byte payload; aborted`, ErrorCode.PayloadSizeMismatchError);
    }
  });
  let received = 0;
  const slow = slowRetrievalGuard(stream, w.d.http);
  // 'data' events, not an async iterator: most pieces are taken without a promise; the stream pauses only while a buffer is busy.
  await new Promise<void>((resolve, reject) => {
    let done = false;
    /** The rest of a piece that waits for a buffer: the transfer ends only after it (nothing of this request is taken later). */
    let pending: Promise<void> = Promise.resolve();
    const stop = (e?: unknown) => {
      if (done) return;
      done = true;
      slow.stop();
      if (e !== undefined) stream.destroy();
      void pending.then(() => (e === undefined ? resolve() : reject(e instanceof Error ? e : new Error('the transfer failed'))));
    };
    stream.on('data', (data: Buffer) => {
      if (done) return;
      slow.bytes += data.length;
      const at = start + received;
      received += data.length;
      let later: Promise<void> | undefined;
      try {
        later = takeData(w, t, url, at, data, refused);
      } catch (e) {
        stop(e);
        return;
      }
      if (later) {
        stream.pause();
        pending = later.then(
          () => {
            if (!done) stream.resume();
          },
          (e: unknown) => {
            pending = Promise.resolve();
            stop(e);
          },
        );
      }
    });
    stream.once('end', () => stop());
    stream.once('error', stop);
  });
  if (refused) throw refused;
  await w.tail;
  if (t.k < chunks.length) throw Object.assign(new Error(`connection closed at byte ${start + received} of ${m.payload.size}`), { code: 'ERR_PREMATURE_CLOSE' });
}

/**
 * Drops a transfer that sends less than minBytesPerSec over any stallMs window: a
 * server that dribbles bytes can delay an update no longer than one window per try.
 */
function slowRetrievalGuard(stream: { destroy(e: Error): void }, h: HttpOptions): { bytes: number; stop(): void } {
  const g = {
    bytes: 0,
    stop: () => clearInterval(timer),
  };
  const timer = setInterval(() => {
    if (tooSlow(g.bytes, h.stallMs, h.minBytesPerSec)) stream.destroy(new Error(`slower than ${h.minBytesPerSec} bytes/s (${g.bytes} bytes in ${h.stallMs / 1000} s)`));
    g.bytes = 0;
  }, h.stallMs);
  return g;
}

/**
 * One piece of the payload, at payload offset `at`: checked against the
 * announced size and copied once into its chunk's buffer; every chunk it
 * completes goes to the writer while the next one is received. Returns a
 * promise only when the piece must wait for a buffer (from `from` on).
 */
function takeData(w: ChunkWriter, t: Transfer, url: string, at: number, data: Buffer, refused: BasaltError | undefined, from = 0): Promise<void> | undefined {
  const { m } = w;
  const chunks = m.payload.chunks;
  if (refused) throw refused;
  if (w.failure !== undefined) throw w.failure;
  if (at + data.length > m.payload.size) {
    throw fail(UE_ERRORS.E_PAYLOAD_TOO_LARGE, `${url}: received more than the announced ${m.payload.size} bytes; aborted`, ErrorCode.PayloadSizeMismatchError);
  }
  let pos = from;
  // Also past the piece's end while the next chunks have no payload bytes (a delta's seed chunks).
  while (t.k < chunks.length && (pos < data.length || chunks[t.k]!.size === 0)) {
    const c = chunks[t.k]!;
    const slot = t.k % PIPELINE_DEPTH;
    // The buffer's previous chunk must be written before its bytes are overwritten: the rest of the piece waits for it.
    if (t.filled === 0 && t.busy[slot]) {
      const rest = pos;
      return t.jobs[slot]!.then(() => takeData(w, t, url, at, data, refused, rest));
    }
    const buf = t.bufs[slot]!;
    const piece = data.subarray(pos, pos + (c.size - t.filled));
    piece.copy(buf, t.filled);
    t.filled += piece.length;
    pos += piece.length;
    if (t.filled === c.size) {
      const job = handOver(w, t.k, buf, url);
      t.jobs[slot] = job;
      t.busy[slot] = true;
      const free = () => {
        if (t.jobs[slot] === job) t.busy[slot] = false;
      };
      job.then(free, free);
      t.k++;
      t.filled = 0;
      t.attempt = 0;
    }
  }
  return undefined;
}

/**
 * Hands chunk k to the writer: it is hashed (on the hashing thread), verified,
 * decoded and written at once, beside the chunks before it (each has its own
 * range of the slot), and then recorded in order after them.
 */
function handOver(w: ChunkWriter, k: number, stored: Buffer, url: string): Promise<void> {
  const work = verifyAndWrite(w, k, stored, url);
  w.inflight.add(work);
  const settled = () => w.inflight.delete(work);
  work.then(settled, settled);
  const job = w.tail.then(async () => recordChunk(w, k, await work));
  job.catch((e: unknown) => {
    w.failure ??= e instanceof Error ? e : new Error(String(e));
  });
  w.tail = job;
  return job;
}

/**
 * Chunk k's stored bytes against the signed manifest's SHA-256, then decoded
 * (and, for zstd, checked against its image hash) and written into the
 * inactive slot. Returns its image bytes.
 */
async function verifyAndWrite(w: ChunkWriter, k: number, buf: Buffer, url: string): Promise<Buffer> {
  const { m, d } = w;
  const c = m.payload.chunks[k]!;
  const seed = chunkCompression(m, k) === 'seed';
  const stored = seed ? await readSeed(w, k, buf) : buf.subarray(0, c.size);
  if ((await w.hasher.digest(stored)) !== c.sha256) {
    if (seed) {
      const from = (c as PayloadChunkV2).seedOffset ?? 0;
      throw fail(UE_ERRORS.E_DELTA_SEED, `${d.disk}: slot ${d.plan.booted} does not hold the delta's seed chunk ${k} (its bytes ${from}-${from + c.uncompressedSize})`, ErrorCode.DownloadOperationHashMismatch);
    }
    throw fail(UE_ERRORS.E_PAYLOAD_HASH, `${url}: chunk ${k} (bytes ${c.offset}-${c.offset + c.size}) does not match the signed manifest; nothing of it was written`, ErrorCode.DownloadOperationHashMismatch);
  }
  const raw = await decodeChunk(m, k, stored);
  if (raw.length !== c.uncompressedSize) throw fail(UE_ERRORS.E_PAYLOAD_SIZE, `chunk ${k}: ${raw.length} bytes after ${chunkCompression(m, k)}, manifest says ${c.uncompressedSize}`, ErrorCode.PayloadSizeMismatchError);
  if (m.formatVersion === 2 && raw !== stored && (await w.hasher.digest(raw)) !== m.payload.chunks[k]!.imageSha256) {
    throw fail(UE_ERRORS.E_PAYLOAD_HASH, `chunk ${k}: its bytes after zstd do not match the signed manifest's image hash; nothing of it was written`, ErrorCode.DownloadOperationHashMismatch);
  }
  const off = d.plan.range.offset + w.imageOff[k]!;
  assertInactiveWrite(d.plan, off, raw.length);
  await writeAll(w.fh, raw, off).catch((e: unknown) => {
    throw withCode(fsError(e, d.disk, 'write'), ErrorCode.DownloadWriteError);
  });
  return raw;
}

/**
 * Chunk k is written and so is every chunk before it: the running hash takes
 * its bytes (format 1), and at a checkpoint the slot is synced and progress
 * saved behind the transfer.
 */
async function recordChunk(w: ChunkWriter, k: number, raw: Buffer): Promise<void> {
  const { m, d } = w;
  const c = m.payload.chunks[k]!;
  if (m.formatVersion === 1) await w.hasher.update(raw);
  w.next = k + 1;
  d.failpoint('chunk-written');
  if (w.checkpoints.has(k)) {
    await w.syncing;
    const done = k + 1;
    w.syncing = w.fh
      .datasync()
      .catch((e: unknown) => {
        throw withCode(fsError(e, d.disk, 'sync'), ErrorCode.DownloadWriteError);
      })
      .then(async () => {
        w.prog.chunksDone = done;
        await saveProgress(d.stateDir, w.prog);
        d.failpoint('chunk-saved');
      });
    // Awaited at the next checkpoint or at the end; this only keeps a failure meanwhile from being reported as unhandled.
    w.syncing.catch(() => {});
  }
  // Format 2 counts the image written (a delta's seed chunks are work too); format 1 the payload fetched.
  d.onProgress(m.formatVersion === 2 ? (w.imageOff[k]! + c.uncompressedSize) / m.image.size : (c.offset + c.size) / m.payload.size);
}

/** Writes all of `buf` at `position` (a write may take part of it). */
async function writeAll(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Step 5 as its own step: a download that ended verified ('written') passes;
 * a slot still 'writing' is re-read from the disk and must hold exactly the
 * signed image.
 */
export async function verifySlot(m: PayloadManifest, d: ApplyDeps): Promise<void> {
  const prog = await readProgress(d.stateDir);
  if (prog?.version !== m.version) throw fail(UE_ERRORS.E_SLOT_VERIFY, `no download of ${m.version} to verify`, ErrorCode.NewRootfsVerificationError);
  if (prog.phase !== 'writing') return;
  const sum = await hashFileRange(d.disk, d.plan.range.offset, m.image.size);
  if (sum !== m.image.sha256) {
    await saveProgress(d.stateDir, { ...prog, chunksDone: 0 });
    throw fail(UE_ERRORS.E_SLOT_VERIFY, `${d.disk}: slot ${d.plan.target} does not hold the signed image after writing (sha256 ${sum.slice(0, 12)}...)`, ErrorCode.NewRootfsVerificationError);
  }
  await saveProgress(d.stateDir, { ...prog, phase: 'written' });
  d.failpoint('verified');
}

async function removeEntries(esp: Esp, slot: 'a' | 'b'): Promise<void> {
  for (const f of await esp.list('/loader/entries')) {
    if (parseEntryFileName(f)?.slot === slot || f === `basalt-${slot}.tmp`) await esp.remove(`/loader/entries/${f}`);
  }
}

/** Words of the booted entry's options that Basalt does not generate (console=, panic=, ...), to carry over. */
export function extraWords(options: string | undefined): string[] {
  if (!options) return [];
  return options
    .split(/\s+/)
    .filter(Boolean)
    .filter((w) => !/^(mount\.usr|mount\.usrfstype|mount\.usrflags|basalt\.|root=|rootfstype=|usrhash=|verity\.|systemd\.verity)/.test(w) && w !== 'rw' && w !== 'ro');
}

async function extract(disk: string, offset: number, path: string): Promise<Buffer> {
  const r = await run('unsquashfs', ['-o', String(offset), '-cat', disk, path], { encoding: 'buffer' });
  const b = Buffer.from(r.stdoutBuffer ?? new Uint8Array());
  if (b.length === 0) throw fail(UE_ERRORS.E_FINALIZE, `${path} is empty in the new USR image`, ErrorCode.PostinstallRunnerError);
  return b;
}

/** Step 6. Idempotent: a restarted engine completes a half-done finalize. */
export async function finalize(m: PayloadManifest, d: ApplyDeps, activeEntryText: string | undefined): Promise<void> {
  const prog = await readProgress(d.stateDir);
  if (prog?.version !== m.version || (prog.phase !== 'written' && prog.phase !== 'committed')) {
    throw fail(UE_ERRORS.E_FINALIZE, `finalize of ${m.version} without a verified slot`, ErrorCode.PostinstallRunnerError);
  }
  const slot = slotKey(d.plan.target);
  if (prog.phase === 'written') {
    if (m.usr.fsType !== 'squashfs') throw fail(UE_ERRORS.E_FINALIZE, `cannot extract the kernel from a ${m.usr.fsType} USR (squashfs only)`, ErrorCode.PostinstallRunnerError);
    const kernel = await extract(d.disk, d.plan.range.offset, m.usr.kernel);
    d.failpoint('kernel-extracted');
    const initrd = await extract(d.disk, d.plan.range.offset, m.usr.initrd);
    await d.esp.write(`/basalt/${slot}/vmlinuz`, kernel);
    d.failpoint('kernel-installed');
    await d.esp.write(`/basalt/${slot}/initrd`, initrd);
    d.failpoint('initrd-installed');
    const opts = /^options\s+(.*)$/m.exec(activeEntryText ?? '')?.[1];
    const entry = {
      slot,
      version: m.version,
      rootHash: m.usr.rootHash ?? undefined,
      hashOffset: m.usr.hashOffset ?? undefined,
      fsType: 'squashfs' as const,
      extraCmdline: extraWords(opts),
    };
    kernelCmdline(entry);
    await d.esp.write(`/loader/entries/basalt-${slot}.tmp`, renderEntry(entry));
    d.failpoint('entry-staged');
    // Commit point: from here the boot loader offers the new slot (with tries).
    await d.esp.rename(`/loader/entries/basalt-${slot}.tmp`, `/loader/entries/${entryFileName(slot, d.tries)}`);
    await saveProgress(d.stateDir, { ...prog, phase: 'committed' });
    d.failpoint('entry-committed');
  }
  const gpt = await readGpt(d.disk);
  await writeGpt(d.disk, postinstAttrs(gpt, d.plan, d.tries));
  d.failpoint('gpt-written');
  await writeFileAtomic(d.rebootRequiredPath, '');
}

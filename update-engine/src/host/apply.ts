/**
 * Download, verify and finalize one offered update into the inactive USR
 * slot. Order (each step persisted, so a kill -9 anywhere resumes or leaves
 * the old slot booting):
 *   1. fetch and verify the signed payload manifest (before any write);
 *   2. refuse an older/equal version, another channel or board, a blocked version;
 *   3. invalidate the target slot (GPT P0/T0/S0, remove its boot entry);
 *   4. stream the payload: each xz chunk is hash-checked against the signed
 *      manifest BEFORE it is decompressed and written into the inactive slot;
 *      progress is fsync'd per chunk; cuts resume with HTTP Range;
 *   5. re-read the slot and compare its SHA-256 with the manifest;
 *   6. finalize: kernel+initrd onto the ESP, stage the entry, rename it into
 *      place (the commit point), then GPT attributes as flatcar-postinst,
 *      then /run/reboot-required.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { HTTPError, type Got } from 'got';
import { fetchText, httpClient, httpStatusOf, isTransferFailure } from '../../../common/src/http.js';
import { createRequire } from 'node:module';
import { BasaltError, fsError, type ErrorDef } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import type { Logger } from '../../../common/src/log.js';
import { readGpt, writeGpt } from '../../../common/src/gpt/index.js';
import { renderEntry, kernelCmdline, entryFileName, parseEntryFileName } from '../../../common/src/boot.js';
import type { Esp } from './esp.js';
import type { Keyring } from '../format/signature.js';
import { ErrorCode, type UpdateOffer } from '../format/omaha.js';
import { unseal, validateManifest, type PayloadChunk, type PayloadManifest } from '../format/metadata.js';
import { assertInactiveWrite, invalidateTarget, postinstAttrs, type SlotPlan } from './slots.js';
import { compareVersions } from '../format/version.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { hashFileRange } from '../format/digest.js';

import type { HttpOptions } from './http.js';
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
  ring: Keyring;
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

/** Fetches and verifies the signed payload manifest named by the offer. */
export async function fetchManifest(offer: UpdateOffer, d: Pick<ApplyDeps, 'http' | 'ring' | 'sleep' | 'log'>): Promise<PayloadManifest> {
  const http = httpClient({ connectMs: d.http.connectMs, stallMs: d.http.stallMs, totalMs: d.http.stallMs });
  const n = offer.codebases.length;
  /** Codebases out of this fetch: they answered 4xx or sent a manifest that does not verify. */
  const out = new Map<number, unknown>();
  let last: unknown;
  for (let attempt = 0; attempt <= Math.min(d.http.maxRetries, 5) + n && out.size < n; attempt++) {
    const i = attempt % n;
    if (out.has(i)) continue;
    const url = new URL(offer.manifestName, offer.codebases[i]).toString();
    try {
      const text = await fetchText(http, url, { maxBytes: MAX_MANIFEST_BYTES });
      return validateManifest(await unseal(text, d.ring, url), url);
    } catch (e) {
      last = e;
      const st = httpStatusOf(e);
      if (!isTransferFailure(e) || (st !== undefined && st < 500)) {
        // A refusal of what this mirror sent, or a mirror without the file: the next mirror may do.
        out.set(i, e);
        if (out.size < n) d.log.warn(`${url}: ${(e as Error).message}; trying the next mirror`);
        continue;
      }
      await d.sleep(backoff(d.http, attempt));
    }
  }
  const refusal = [...out.values()].find((e) => e instanceof BasaltError && !isTransferFailure(e));
  if (refusal instanceof BasaltError) throw withCode(refusal, ErrorCode.DownloadPayloadPubKeyVerificationError);
  throw fail(UE_ERRORS.E_DOWNLOAD, `cannot fetch the payload manifest: ${String((last as Error | undefined)?.message)}`, ErrorCode.DownloadTransferError);
}

function withCode(e: BasaltError, errorCode: number): BasaltError {
  if (typeof e.details['errorCode'] !== 'number') e.details['errorCode'] = errorCode;
  return e;
}

function backoff(h: HttpOptions, attempt: number): number {
  return Math.min(h.maxRetryMs, h.retryBaseMs * 2 ** attempt);
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
  if (!m.channels.includes(me.channel)) throw fail(UE_ERRORS.E_UPDATE_CHANNEL, `refusing ${m.version}: it is released to ${m.channels.join(', ')}, not to this machine's channel ${me.channel}`, policy);
  if (m.board !== me.board) throw fail(UE_ERRORS.E_UPDATE_BOARD, `refusing ${m.version}: it is for board ${m.board}, this machine is ${me.board}`, policy);
  if (blocked.includes(m.version)) throw fail(UE_ERRORS.E_UPDATE_BLOCKED, `refusing ${m.version}: it failed on this machine before (rolled back or rejected)`, policy, "a newer release will be taken; 'basalt update unblock' allows it again");
  if (m.image.size > slotBytes) throw fail(UE_ERRORS.E_SLOT_TOO_SMALL, `the ${m.image.size}-byte image does not fit the ${slotBytes}-byte slot`, ErrorCode.InstallDeviceOpenError);
}

async function decompress(buf: Buffer): Promise<Buffer> {
  const xs = new XzReadableStream(new Blob([buf]).stream() as ReadableStream<Uint8Array>);
  return Buffer.from(await new Response(xs as unknown as ReadableStream).arrayBuffer());
}

/** Steps 3-5. Returns when the slot holds the verified image. */
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
  try {
    await fetchChunks({ m, d, fh, prog, imageOff: imageOffsets(m.payload.chunks) }, offer);
  } finally {
    await fh.close();
  }
  d.failpoint('download-done');
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
  prog: Progress;
  imageOff: number[];
}

/** Where a download stands between attempts. */
interface Transfer {
  /** The next chunk to write. */
  k: number;
  /** Bytes of chunk k received so far. */
  partial: Buffer[];
  partialLen: number;
  attempt: number;
  urlIndex: number;
  /** Codebases that sent bytes the signed manifest refuses: not asked again in this download. */
  refused: Set<number>;
}

/** Step 4: fetches the chunks from chunksDone on, retrying with Range (next codebase each time) until all are written. */
async function fetchChunks(w: ChunkWriter, offer: UpdateOffer): Promise<void> {
  const http = httpClient({ connectMs: w.d.http.connectMs, stallMs: w.d.http.stallMs });
  const t: Transfer = { k: w.prog.chunksDone, partial: [], partialLen: 0, attempt: 0, urlIndex: 0, refused: new Set() };
  const n = offer.codebases.length;
  while (t.k < w.m.payload.chunks.length) {
    const url = new URL(offer.packageName, offer.codebases[t.urlIndex % n]).toString();
    try {
      await transferOnce(w, http, url, t);
    } catch (e) {
      if (isMirrorFault(e) && t.refused.size + 1 < n) {
        // A mirror that sends bad bytes is dropped for this download; the next one starts at the same chunk.
        t.refused.add(t.urlIndex % n);
        w.d.log.warn(`${url}: ${(e as Error).message}; trying the next mirror`);
        t.partial = [];
        t.partialLen = 0;
        t.urlIndex = nextMirror(t, n);
        continue;
      }
      await retryOrGiveUp(w, url, t, e);
      t.urlIndex = nextMirror(t, n);
    }
  }
}

/** One HTTP request from the first byte not yet received; writes every chunk it completes. */
async function transferOnce(w: ChunkWriter, http: Got, url: string, t: Transfer): Promise<void> {
  const { m } = w;
  const chunks = m.payload.chunks;
  const start = chunks[t.k]!.offset + t.partialLen;
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
  try {
    for await (const data of stream as AsyncIterable<Buffer>) {
      slow.bytes += data.length;
      await takeData(w, t, url, start, received, data, refused);
      received += data.length;
    }
  } finally {
    slow.stop();
  }
  if (refused) throw refused;
  if (t.k < chunks.length) throw Object.assign(new Error(`connection closed at byte ${start + received} of ${m.payload.size}`), { code: 'ERR_PREMATURE_CLOSE' });
}

/**
 * Drops a transfer that sends less than minBytesPerSec over any stallMs window: a
 * server that dribbles bytes can delay an update no longer than one window per try.
 */
function slowRetrievalGuard(stream: { destroy(e: Error): void }, h: HttpOptions): { bytes: number; stop(): void } {
  const floor = Math.ceil((h.minBytesPerSec * h.stallMs) / 1000);
  const g = {
    bytes: 0,
    stop: () => clearInterval(timer),
  };
  const timer = setInterval(() => {
    if (g.bytes < floor) stream.destroy(new Error(`slower than ${h.minBytesPerSec} bytes/s (${g.bytes} bytes in ${h.stallMs / 1000} s)`));
    g.bytes = 0;
  }, h.stallMs);
  return g;
}

/** One piece of the payload (after `received` bytes of this request): checked against the announced size, then every chunk it completes is written. */
async function takeData(w: ChunkWriter, t: Transfer, url: string, start: number, received: number, data: Buffer, refused: BasaltError | undefined): Promise<void> {
  const { m } = w;
  const chunks = m.payload.chunks;
  if (refused) throw refused;
  if (start + received + data.length > m.payload.size) {
    throw fail(UE_ERRORS.E_PAYLOAD_TOO_LARGE, `${url}: received more than the announced ${m.payload.size} bytes; aborted`, ErrorCode.PayloadSizeMismatchError);
  }
  t.partial.push(data);
  t.partialLen += data.length;
  while (t.k < chunks.length && t.partialLen >= chunks[t.k]!.size) {
    await writeChunk(w, t.k, takeBytes(t, chunks[t.k]!.size), url);
    t.k++;
    t.attempt = 0;
  }
}

/** Takes the first `n` received bytes (one chunk) off the transfer's buffer. */
function takeBytes(t: Transfer, n: number): Buffer {
  const all = Buffer.concat(t.partial);
  const rest = all.subarray(n);
  t.partial = rest.length ? [Buffer.from(rest)] : [];
  t.partialLen = rest.length;
  return all.subarray(0, n);
}

/** Verifies chunk k against the signed manifest, decompresses it and writes it into the inactive slot, then records it. */
async function writeChunk(w: ChunkWriter, k: number, comp: Buffer, url: string): Promise<void> {
  const { m, d } = w;
  const c = m.payload.chunks[k]!;
  if (createHash('sha256').update(comp).digest('hex') !== c.sha256) {
    throw fail(UE_ERRORS.E_PAYLOAD_HASH, `${url}: chunk ${k} (bytes ${c.offset}-${c.offset + c.size}) does not match the signed manifest; nothing of it was written`, ErrorCode.DownloadOperationHashMismatch);
  }
  let raw: Buffer;
  try {
    raw = await decompress(comp);
  } catch (e) {
    throw fail(UE_ERRORS.E_PAYLOAD_DECOMPRESS, `chunk ${k}: xz data is corrupt (${(e as Error).message})`, ErrorCode.DownloadWriteError);
  }
  if (raw.length !== c.uncompressedSize) throw fail(UE_ERRORS.E_PAYLOAD_SIZE, `chunk ${k}: ${raw.length} bytes after xz, manifest says ${c.uncompressedSize}`, ErrorCode.PayloadSizeMismatchError);
  const off = d.plan.range.offset + w.imageOff[k]!;
  assertInactiveWrite(d.plan, off, raw.length);
  await w.fh.write(raw, 0, raw.length, off);
  d.failpoint('chunk-written');
  await w.fh.datasync();
  w.prog.chunksDone = k + 1;
  await saveProgress(d.stateDir, w.prog);
  d.failpoint('chunk-saved');
  d.onProgress(c.offset / m.payload.size + c.size / m.payload.size);
}

/** After a failed attempt: a refusal or a client error ends the download; a transfer failure waits and retries. */
async function retryOrGiveUp(w: ChunkWriter, url: string, t: Transfer, e: unknown): Promise<void> {
  const { d } = w;
  if (e instanceof BasaltError) throw e;
  const status = e instanceof HTTPError ? e.response.statusCode : undefined;
  if (status !== undefined && status < 500 && status !== 408 && status !== 429) {
    throw fail(UE_ERRORS.E_DOWNLOAD, `${url}: HTTP ${status}`, ErrorCode.HttpBase + status);
  }
  if (++t.attempt > d.http.maxRetries) {
    throw fail(UE_ERRORS.E_DOWNLOAD, `${url}: giving up after ${d.http.maxRetries} retries: ${(e as Error).message}`, status ? ErrorCode.HttpBase + status : ErrorCode.DownloadTransferError);
  }
  const wait = backoff(d.http, t.attempt - 1);
  d.log.warn(`download of ${w.m.version} interrupted at chunk ${t.k}/${w.m.payload.chunks.length} (${status ? `HTTP ${status}` : (e as Error).message}); retrying in ${wait} ms with Range`);
  w.prog.resumes++;
  await d.sleep(wait);
}

/** Errors that say a mirror's bytes are wrong (not that the network failed): another mirror may be right. */
function isMirrorFault(e: unknown): boolean {
  return e instanceof BasaltError && [UE_ERRORS.E_PAYLOAD_HASH, UE_ERRORS.E_PAYLOAD_DECOMPRESS, UE_ERRORS.E_PAYLOAD_SIZE, UE_ERRORS.E_PAYLOAD_TOO_LARGE, UE_ERRORS.E_NO_RANGE].some((d) => d.code === e.code);
}

/** The next codebase after the current one that has not sent refused bytes. */
function nextMirror(t: Transfer, n: number): number {
  for (let i = 1; i <= n; i++) if (!t.refused.has((t.urlIndex + i) % n)) return t.urlIndex + i;
  return t.urlIndex + 1;
}

/** Step 5: the slot must hold exactly the signed image (re-read from the disk). */
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

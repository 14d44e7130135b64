/**
 * Never flip before verification: finalize (kernel, entry, GPT priority)
 * refuses a slot that was not verified against the signed image, and a slot
 * whose bytes differ fails verification and stays unverified. On a small
 * sparse disk image and a folder ESP; no network, no external tools.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../common/src/log.js';
import { createDisk, readGpt } from '../../../common/src/gpt/index.js';
import type { PayloadManifest } from '../format/metadata.js';
import { CHECKPOINT_BYTES, CHECKPOINTS, checkpointChunks, finalize, progressPath, readProgress, verifySlot, type ApplyDeps, type Progress } from './apply.js';
import { DirEsp } from './esp.js';
import { defaultHttp } from './http.js';
import { planSlots } from './slots.js';

let dir: string;
let d: ApplyDeps;
const image = Buffer.alloc(64 * 1024, 7);
const m = {
  formatVersion: 1,
  kind: 'basalt-payload',
  version: '2.0.0',
  channels: ['stable'],
  board: 'amd64-usr',
  created: '2026-01-01T00:00:00Z',
  payload: { file: 'usr.img.xz', size: 1, sha256: 'a'.repeat(64), sha1: '', compression: 'xz', chunks: [] },
  image: { size: image.length, sha256: createHash('sha256').update(image).digest('hex') },
  usr: { fsType: 'squashfs', fsBytes: null, hashOffset: null, rootHash: null, salt: null, kernel: '/lib/basalt/boot/vmlinuz', initrd: '/lib/basalt/boot/initrd' },
} satisfies PayloadManifest;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'basalt-apply-'));
  const disk = join(dir, 'disk.img');
  const gpt = await createDisk(disk, { layout: 'small', sizeBytes: 256 * 1024 * 1024 });
  await mkdir(join(dir, 'esp/loader/entries'), { recursive: true });
  await mkdir(join(dir, 'state'));
  d = {
    disk,
    plan: planSlots(gpt, 'A'),
    esp: new DirEsp(join(dir, 'esp')),
    stateDir: join(dir, 'state'),
    trustManifest: () => {
      throw new Error('no manifest in this test');
    },
    manifestMaxBytes: () => 0,
    http: defaultHttp,
    me: { version: '1.0.0', channel: 'stable', board: 'amd64-usr' },
    blocked: [],
    tries: 1,
    rebootRequiredPath: join(dir, 'reboot-required'),
    log: silentLogger,
    failpoint: () => {},
    sleep: () => Promise.resolve(),
    onDownloadStarted: () => {},
    onProgress: () => {},
  };
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function progress(p: Partial<Progress>): Promise<void> {
  const gpt = await readGpt(d.disk);
  const full: Progress = { formatVersion: 1, version: m.version, payloadSha256: m.payload.sha256, target: 'B', diskGuid: gpt.diskGuid, chunksDone: 0, phase: 'writing', resumes: 0, ...p };
  await writeFile(progressPath(d.stateDir), JSON.stringify(full));
}

async function writeSlot(bytes: Buffer): Promise<void> {
  const fh = await open(d.disk, 'r+');
  await fh.write(bytes, 0, bytes.length, d.plan.range.offset);
  await fh.close();
}

describe('no flip before verification', () => {
  it('finalize refuses without a download, and with a written but unverified slot; the GPT and ESP stay as they were', async () => {
    const before = await readFile(d.disk);
    await expect(finalize(m, d, undefined)).rejects.toMatchObject({ code: 'E_FINALIZE' });
    await writeSlot(image);
    await progress({ chunksDone: 0, phase: 'writing' });
    await expect(finalize(m, d, undefined)).rejects.toMatchObject({ code: 'E_FINALIZE', message: 'finalize of 2.0.0 without a verified slot' });
    // Only the slot's bytes changed: no GPT write, no entry, no reboot flag.
    const after = await readFile(d.disk);
    expect(after.subarray(0, d.plan.range.offset).equals(before.subarray(0, d.plan.range.offset))).toBe(true);
    expect(after.subarray(d.plan.range.offset + d.plan.range.length).equals(before.subarray(d.plan.range.offset + d.plan.range.length))).toBe(true);
    expect(await d.esp.list('/loader/entries')).toEqual([]);
    await expect(readFile(d.rebootRequiredPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a slot that does not hold the signed image fails verification, starts over, and still cannot be finalized', async () => {
    const wrong = Buffer.from(image);
    wrong[wrong.length - 1] = 8;
    await writeSlot(wrong);
    await progress({ chunksDone: 5, phase: 'writing' });
    await expect(verifySlot(m, d)).rejects.toMatchObject({ code: 'E_SLOT_VERIFY' });
    expect(await readProgress(d.stateDir)).toMatchObject({ phase: 'writing', chunksDone: 0 });
    await expect(finalize(m, d, undefined)).rejects.toMatchObject({ code: 'E_FINALIZE' });
  });

  it('the signed image verifies and only then is the slot ready for finalize', async () => {
    await writeSlot(image);
    await progress({ chunksDone: 1, phase: 'writing' });
    await verifySlot(m, d);
    expect(await readProgress(d.stateDir)).toMatchObject({ phase: 'written' });
  });
});

describe('checkpoints of a download', () => {
  const sizes = (n: number, each: number) => Array.from({ length: n }, () => ({ uncompressedSize: each }));
  it('checkpoints a large image every CHECKPOINT_BYTES at most and about CHECKPOINTS times, always after the last chunk', () => {
    const mib = 1024 * 1024;
    // The default image: 40 chunks of 4 MiB; an eighth of it is 20 MiB, so every 5 chunks.
    expect(checkpointChunks(sizes(40, 4 * mib))).toEqual([4, 9, 14, 19, 24, 29, 34, 39]);
    // 2 GiB: capped at 64 MiB, every 16 chunks.
    const big = checkpointChunks(sizes(512, 4 * mib));
    expect(big.length).toBe(32);
    expect(big.slice(0, 2)).toEqual([15, 31]);
    expect(CHECKPOINT_BYTES).toBe(64 * mib);
    expect(CHECKPOINTS).toBe(8);
  });
  it('a small image still gets several checkpoints; one chunk gets one', () => {
    expect(checkpointChunks(sizes(32, 48 * 1024)).length).toBe(8);
    expect(checkpointChunks([{ uncompressedSize: 10 }])).toEqual([0]);
    // The cap: 20 chunks of 100 bytes, at most 150 bytes apart: every second chunk.
    expect(checkpointChunks(sizes(20, 100), 150)).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    // A short last chunk is a checkpoint of its own.
    expect(checkpointChunks([...sizes(16, 100), { uncompressedSize: 1 }]).at(-1)).toBe(16);
  });
});

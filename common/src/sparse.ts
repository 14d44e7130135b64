/**
 * The digest of a sparse disk image by its data (manifest.json's
 * `digest: sparse-sha256`): written by `basalt build`, checked by `basalt
 * install` before it writes anything. Side effects: reads the file, runs
 * filefrag.
 */
import { createHash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { run } from './exec.js';

/** The block size of the sparse digest: a block that is all zeros (a hole, or zeros written) is left out. */
export const SPARSE_BLOCK = 1024 * 1024;

/** Pure: the byte ranges [start, end) of a file's data from `filefrag -v -b1` (FIEMAP: what SEEK_DATA/SEEK_HOLE report). */
export function parseFilefrag(text: string): [number, number][] {
  const ranges: [number, number][] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*\d+:\s+(\d+)\.\.\s*(\d+):/.exec(line);
    if (m) ranges.push([Number(m[1]), Number(m[2]) + 1]);
  }
  return ranges;
}

/** Pure: the indexes of the `block`-sized blocks the byte ranges [start, end) touch, ascending, each once. */
export function blocksTouched(ranges: readonly [number, number][], block: number): number[] {
  const out = new Set<number>();
  for (const [start, end] of ranges) for (let b = Math.floor(start / block); b * block < end; b++) out.add(b);
  return [...out].sort((a, b) => a - b);
}

/** Where a file's data is (byte ranges), or undefined when the file system does not say (then every block is read). */
async function dataRanges(path: string): Promise<[number, number][] | undefined> {
  const r = await run('filefrag', ['-v', '-b1', path], { reject: false }).catch(() => undefined);
  if (r?.exitCode !== 0 || !/ extents? found/.test(r.stdout)) return undefined;
  return parseFilefrag(r.stdout);
}

/**
 * The blocks of an open file (given by index, ascending) that are not all
 * zeros, with their byte offset; each chunk is valid until the next one.
 */
async function* nonZeroBlocks(fh: FileHandle, blocks: readonly number[], size: number, onBlock?: (done: number, total: number) => void): AsyncGenerator<{ at: number; chunk: Buffer }> {
  const buf = Buffer.alloc(SPARSE_BLOCK);
  const zero = Buffer.alloc(SPARSE_BLOCK);
  for (const [k, b] of blocks.entries()) {
    const at = b * SPARSE_BLOCK;
    if (at >= size) break;
    const want = Math.min(SPARSE_BLOCK, size - at);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, at + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    onBlock?.(k + 1, blocks.length);
    const chunk = buf.subarray(0, got);
    if (!chunk.equals(zero.subarray(0, got))) yield { at, chunk };
  }
}

/** The indexes of the SPARSE_BLOCK-sized blocks that hold a file's data (every block when the file system does not say). */
export async function dataBlocks(path: string, size: number): Promise<number[]> {
  return blocksTouched((await dataRanges(path)) ?? [[0, size]], SPARSE_BLOCK);
}

/**
 * Copies the data of the sparse file `src` onto `dest` (a block device or a
 * file at least as large), block by block (SPARSE_BLOCK): blocks that are
 * holes or all zeros in `src` are not written. Returns the bytes written.
 */
export async function copyData(src: string, dest: string, onBlock?: (done: number, total: number) => void, known?: readonly number[]): Promise<number> {
  const size = (await stat(src)).size;
  // `known`: the blocks that hold data, when the writer of `src` recorded them (no scan needed).
  const blocks = known ?? (await dataBlocks(src, size));
  const inp = await open(src, 'r');
  const out = await open(dest, 'r+');
  let written = 0;
  try {
    for await (const { at, chunk } of nonZeroBlocks(inp, blocks, size, onBlock)) {
      let done = 0;
      while (done < chunk.length) done += (await out.write(chunk, done, chunk.length - done, at + done)).bytesWritten;
      written += chunk.length;
    }
    await out.sync();
  } finally {
    await inp.close();
    await out.close();
  }
  return written;
}

/**
 * The digest of a sparse file by its data, not its holes: SHA-256 over a
 * header (format, block size, file size) and, for each 1 MiB block that is
 * not all zeros, its offset (8 bytes, big-endian) and its bytes. Only the
 * blocks holding data (filefrag: the file's extents) are read, so an 8 GiB
 * disk with 600 MB in it reads 600 MB. The digest depends on the bytes only:
 * a hole and written zeros give the same one.
 */
export async function sparseSha256(path: string): Promise<string> {
  const size = (await stat(path)).size;
  const blocks = await dataBlocks(path, size);
  const h = new SparseHasher(size);
  const fh = await open(path, 'r');
  try {
    for await (const { at, chunk } of nonZeroBlocks(fh, blocks, size)) h.block(at, chunk);
  } finally {
    await fh.close();
  }
  return h.digest();
}

/**
 * The sparse digest fed block by block, for a writer that sees the blocks go
 * by (an image being expanded): `block` takes each SPARSE_BLOCK-aligned block
 * that is not all zeros, in ascending order; the result equals sparseSha256 of
 * the file written, when that file is `size` bytes long.
 */
export class SparseHasher {
  private readonly h = createHash('sha256');

  constructor(size: number) {
    this.h.update(`basalt-sparse-sha256 1 ${SPARSE_BLOCK} ${size}\n`);
  }

  block(at: number, chunk: Buffer): void {
    const off = Buffer.alloc(8);
    off.writeBigUInt64BE(BigInt(at));
    this.h.update(off).update(chunk);
  }

  digest(): string {
    return this.h.digest('hex');
  }
}

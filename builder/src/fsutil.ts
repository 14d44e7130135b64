/** File helpers for the builder (tree copies, sizes, hashes, mounts). Atomic writes: common/src/fsutil.ts. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, readdir, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../common/src/exec.js';

/** Copies a tree preserving owners, modes, links, xattrs (cp -a; reflinks where the filesystem has them). */
export async function copyTree(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await run('cp', ['-a', '--reflink=auto', from, to], signal ? { signal } : {});
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Apparent size in bytes of a file or tree (symlinks count as their own size; not followed). */
export async function treeBytes(path: string): Promise<number> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const e of await readdir(path)) total += await treeBytes(join(path, e));
  return total;
}

export async function removeIfExists(path: string): Promise<number> {
  const n = await treeBytes(path);
  await rm(path, { recursive: true, force: true });
  return n;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const prefix = dir.replace(/\/+$/, '');
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((m) => m === prefix || m.startsWith(prefix + '/'))
    .sort((a, b) => b.length - a.length);
}

/**
 * Unmounts whatever a killed tool (mmdebstrap, chroot steps) left mounted
 * below `dir`, so that removing `dir` never reaches into /proc, /sys or /dev.
 * Returns what was still mounted.
 */
export async function unmountAllUnder(dir: string): Promise<string[]> {
  const left = await mountsUnder(dir);
  for (const m of left) await run('umount', ['--lazy', m], { reject: false });
  return left;
}

/** Removes a work directory after unmounting anything below it. */
export async function removeWorkDir(dir: string): Promise<void> {
  await unmountAllUnder(dir);
  if ((await mountsUnder(dir)).length > 0) return; // never remove through a mount
  await rm(dir, { recursive: true, force: true });
}

/**
 * Digest of a tree as an image takes it: every entry's relative path, type,
 * mode, and the contents of a file or the target of a link (for cache keys of
 * input folders such as a profile's overlay).
 */
export async function treeDigest(dir: string): Promise<string> {
  const h = createHash('sha256');
  async function walk(d: string, rel: string): Promise<void> {
    const names = (await readdir(d)).sort();
    for (const name of names) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        h.update(`d ${r} ${mode}\n`);
        await walk(p, r);
      } else if (st.isSymbolicLink()) h.update(`l ${r} ${await readlink(p)}\n`);
      else if (st.isFile()) h.update(`f ${r} ${mode} ${await sha256File(p)}\n`);
      else h.update(`? ${r} ${mode}\n`);
    }
  }
  await walk(dir, '');
  return h.digest('hex');
}

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
 * The digest of a sparse file by its data, not its holes: SHA-256 over a
 * header (format, block size, file size) and, for each 1 MiB block that is
 * not all zeros, its offset (8 bytes, big-endian) and its bytes. Only the
 * blocks holding data (filefrag: the file's extents) are read, so an 8 GiB
 * disk with 600 MB in it reads 600 MB. The digest depends on the bytes only:
 * a hole and written zeros give the same one.
 */
export async function sparseSha256(path: string): Promise<string> {
  const size = (await stat(path)).size;
  const blocks = blocksTouched((await dataRanges(path)) ?? [[0, size]], SPARSE_BLOCK);
  const h = createHash('sha256').update(`basalt-sparse-sha256 1 ${SPARSE_BLOCK} ${size}\n`);
  const buf = Buffer.alloc(SPARSE_BLOCK);
  const zero = Buffer.alloc(SPARSE_BLOCK);
  const fh = await open(path, 'r');
  try {
    for (const b of blocks) {
      const at = b * SPARSE_BLOCK;
      if (at >= size) break;
      const want = Math.min(SPARSE_BLOCK, size - at);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, at + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const chunk = buf.subarray(0, got);
      if (chunk.equals(zero.subarray(0, got))) continue;
      const off = Buffer.alloc(8);
      off.writeBigUInt64BE(BigInt(at));
      h.update(off).update(chunk);
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

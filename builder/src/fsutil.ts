/** File helpers for the builder (tree copies, sizes, hashes, mounts). Atomic writes: common/src/fsutil.ts. */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../common/src/exec.js';
import { mapLimit } from '../../common/src/limit.js';

/**
 * A tree of hard links to `from`'s files (folders made anew): no data copied.
 * Whoever changes the new tree must replace paths (unlink, then create), never
 * write into a file in place: that would change `from` too.
 */
export async function linkTree(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await run('cp', ['-a', '--link', from, to], signal ? { signal } : {});
}

/**
 * Writes `data` to `path` as a new file: what is there is unlinked first, so
 * a hard link (linkTree) keeps the content it shares with another tree.
 */
export async function writeNewFile(path: string, data: string | Uint8Array): Promise<void> {
  await rm(path, { force: true });
  await writeFile(path, data);
}

export async function sha256File(path: string): Promise<string> {
  return (await hashFileInto(createHash('sha256'), path)).digest('hex');
}

/** Feeds `path`'s bytes from `start` on into `h` (a file that grew since: its new part only); returns `h`. */
export async function hashFileInto(h: Hash, path: string, start = 0): Promise<Hash> {
  for await (const chunk of createReadStream(path, { start })) h.update(chunk as Buffer);
  return h;
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
  const sizes = await mapLimit(await readdir(path), 8, (e) => treeBytes(join(path, e)));
  return sizes.reduce((a, b) => a + b, 0);
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

// The sparse digest moved to common/ so that `basalt install` (not a builder command) checks it too.
export { SPARSE_BLOCK, blocksTouched, parseFilefrag, sparseSha256 } from '../../common/src/sparse.js';

/** File helpers for the builder (atomic writes, tree copies, sizes, hashes). */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '../../common/src/exec.js';

/** Writes `data` to `path` via a temp file + rename. */
export async function writeAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${path.split('/').pop()}.tmp-${process.pid}`);
  await writeFile(tmp, data, { mode });
  await rename(tmp, path);
}

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

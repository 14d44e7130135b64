/**
 * The one way Basalt replaces a file: write a temporary file beside it, fsync,
 * rename over the target, fsync the folder. A reader sees the old file or the
 * new one, never half of either, even across a power cut.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsError } from './errors.js';

export interface AtomicWriteOptions {
  /** File mode (default 0644), set on the temporary file before the rename. */
  mode?: number;
  /** Create the folder when it is missing (default true). */
  mkdir?: boolean;
  /** Runs on the complete temporary file before the rename (chown, a check). */
  prepare?: (tmp: string) => Promise<void>;
}

/**
 * Replaces `path` with what `fill` writes into the temporary path it is given
 * (a file in the same folder): then fsync, rename and fsync of the folder. On
 * any failure the temporary file goes and `path` is left as it was.
 */
export async function replaceFile(path: string, fill: (tmp: string) => Promise<void>, o: AtomicWriteOptions = {}): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    if (o.mkdir !== false) await mkdir(dir, { recursive: true });
    await fill(tmp);
    const fh = await open(tmp, 'r+');
    try {
      // open() applies the umask; the mode asked for is the mode written.
      await fh.chmod(o.mode ?? 0o644);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (o.prepare) await o.prepare(tmp);
    await rename(tmp, path);
    await syncDir(dir);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw fsError(e, path, 'write');
  }
}

/** Writes `data` to `path` atomically (see replaceFile); a number is the mode. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions | number = {}): Promise<void> {
  const o = typeof opts === 'number' ? { mode: opts } : opts;
  await replaceFile(path, (tmp) => writeFile(tmp, data, { mode: 0o600, flag: 'wx' }), o);
}

/** fsyncs a folder so that a rename in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* some file systems refuse fsync on folders */
  }
}

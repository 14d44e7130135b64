/** Small file helpers shared by the update-engine modules. */
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, mkdir, unlink } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { fsError } from '../../common/src/errors.js';

/** Writes `data` to `path` through a temp file in the same directory, fsync and rename. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await syncDir(dir);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw fsError(e, path, 'write');
  }
}

/** fsyncs a directory so a rename in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* some file systems refuse fsync on directories */
  }
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hex SHA-256 → base64 (Omaha's action sha256 form). */
export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/** SHA-256 of `length` bytes of `path` from `offset`, read in 4 MiB blocks. */
export async function hashFileRange(path: string, offset: number, length: number, algo = 'sha256'): Promise<string> {
  const h = createHash(algo);
  const fh = await open(path, 'r').catch((e) => {
    throw fsError(e, path, 'read');
  });
  try {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    let pos = 0;
    while (pos < length) {
      const want = Math.min(buf.length, length - pos);
      const { bytesRead } = await fh.read(buf, 0, want, offset + pos);
      if (bytesRead === 0) {
        h.update(Buffer.alloc(want));
        pos += want;
        continue;
      }
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** Parses durations such as 30d, 12h, 45m, 90s, 1h30m into milliseconds; undefined when invalid. */
export function parseDuration(s: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/g;
  let total = 0;
  let used = 0;
  for (const m of s.matchAll(re)) {
    const v = Number(m[1]);
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    total += v * unit;
    used += m[0].length;
  }
  return used === s.length && used > 0 ? Math.round(total) : undefined;
}

/** Timeouts and retries of the host's transfers. */
export interface HttpOptions {
  /** First retry delay; doubles per failure up to maxRetryMs. */
  retryBaseMs: number;
  maxRetryMs: number;
  /** Transfer retries before giving up (curl in update_engine: 20). */
  maxRetries: number;
  /** Abort a transfer that receives nothing for this long. */
  stallMs: number;
  connectMs: number;
}

export const defaultHttp: HttpOptions = { retryBaseMs: 1000, maxRetryMs: 60_000, maxRetries: 20, stallMs: 90_000, connectMs: 30_000 };

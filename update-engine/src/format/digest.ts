/** Digests: SHA-256 of bytes and of file ranges, hex to base64 (Omaha sends base64). */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { fsError } from '../../../common/src/errors.js';

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
  const fh = await open(path, 'r').catch((e: unknown) => {
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


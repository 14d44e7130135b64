/**
 * A minimal writer for the newc cpio format the kernel unpacks as an
 * initramfs. Deterministic: fixed inode numbers, owner root, mtime from the
 * caller. Used to append the USR image to the PXE initramfs.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { once } from 'node:events';

export interface CpioEntry {
  /** Path inside the archive, without a leading slash. */
  name: string;
  /** Regular file source on disk; undefined for a directory. */
  source?: string;
  mode: number;
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');
const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** Pure: one newc header plus the padded name. */
export function newcHeader(ino: number, mode: number, size: number, mtime: number, name: string): Buffer {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const fields = [ino, mode, 0, 0, 1, mtime, size, 0, 0, 0, 0, nameBytes.length, 0];
  const head = Buffer.from('070701' + fields.map(hex8).join(''), 'ascii');
  const total = head.length + nameBytes.length;
  return Buffer.concat([head, nameBytes, Buffer.alloc(pad4(total))]);
}

/** Writes `entries` (then the trailer) as an uncompressed newc archive to `dest` (appended with opts.append). */
export async function writeCpio(dest: string, entries: readonly CpioEntry[], mtime: number, opts: { append?: boolean } = {}): Promise<void> {
  const out = createWriteStream(dest, { flags: opts.append ? 'a' : 'w' });
  const write = async (b: Buffer) => {
    if (!out.write(b)) await once(out, 'drain');
  };
  let ino = 1;
  for (const e of entries) {
    if (e.source === undefined) {
      await write(newcHeader(ino++, 0o040000 | e.mode, 0, mtime, e.name));
      continue;
    }
    const size = (await stat(e.source)).size;
    await write(newcHeader(ino++, 0o100000 | e.mode, size, mtime, e.name));
    for await (const chunk of createReadStream(e.source, { highWaterMark: 1 << 20 })) await write(chunk as Buffer);
    await write(Buffer.alloc(pad4(size)));
  }
  await write(newcHeader(0, 0, 0, 0, 'TRAILER!!!'));
  out.end();
  await once(out, 'finish');
}

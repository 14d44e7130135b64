/** The sparse digest and the data-only copy on real sparse files (filefrag), in os.tmpdir(). */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyData, sparseSha256, SPARSE_BLOCK } from './sparse.js';

const dir = mkdtempSync(join(tmpdir(), 'basalt-sparse-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function sparseFile(name: string, size: number, data: [number, Buffer][]): Promise<string> {
  const p = join(dir, name);
  writeFileSync(p, '');
  await truncate(p, size);
  const fh = await open(p, 'r+');
  for (const [at, b] of data) await fh.write(b, 0, b.length, at);
  await fh.close();
  return p;
}

describe('sparse files', () => {
  it('digest by data: a hole and written zeros give the same digest', async () => {
    const d = randomBytes(3000);
    const a = await sparseFile('a.img', 64 * SPARSE_BLOCK, [[5 * SPARSE_BLOCK + 17, d]]);
    const b = await sparseFile('b.img', 64 * SPARSE_BLOCK, [[5 * SPARSE_BLOCK + 17, d], [9 * SPARSE_BLOCK, Buffer.alloc(SPARSE_BLOCK)]]);
    expect(await sparseSha256(a)).toBe(await sparseSha256(b));
  });

  it("copies only the source's data blocks: what it leaves zero is not written", async () => {
    const d = randomBytes(SPARSE_BLOCK + 100);
    const src = await sparseFile('src.img', 32 * SPARSE_BLOCK, [[3 * SPARSE_BLOCK, d]]);
    const dest = join(dir, 'dest.img');
    writeFileSync(dest, Buffer.alloc(32 * SPARSE_BLOCK, 0xff));
    const written = await copyData(src, dest);
    expect(written).toBe(2 * SPARSE_BLOCK);
    const out = readFileSync(dest);
    expect(out.subarray(3 * SPARSE_BLOCK, 3 * SPARSE_BLOCK + d.length).equals(d)).toBe(true);
    // The rest of block 4 is the source's zeros; block 0 was not written.
    expect(out[3 * SPARSE_BLOCK + d.length]).toBe(0);
    expect(out[0]).toBe(0xff);
    expect(statSync(dest).size).toBe(32 * SPARSE_BLOCK);
  });
});

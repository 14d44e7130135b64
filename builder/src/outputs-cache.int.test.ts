/** The sparse digest with the real filefrag, and the outputs cache on real files (links, a changed file is a miss). */
import { mkdir, open, readFile, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/src/log.js';
import { testdir } from '../../common/test/helpers.js';
import { sparseSha256, SPARSE_BLOCK } from './fsutil.js';
import { storeOutputs, takeCachedOutputs } from './outputs-cache.js';

async function writeAt(file: string, offset: number, data: Uint8Array): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

describe('sparseSha256', () => {
  it('hashes a sparse file by its data: the same digest as the file with its zeros written, reading only the data', async () => {
    const dir = await testdir();
    const sparse = join(dir, 'sparse.img');
    const dense = join(dir, 'dense.img');
    const size = 3 * 1024 ** 3 + 12345;
    await writeFile(sparse, '');
    await truncate(sparse, size);
    const data = Buffer.alloc(3 * SPARSE_BLOCK + 7, 0x5a);
    await writeAt(sparse, 100 * SPARSE_BLOCK + 17, data);
    await writeAt(sparse, size - 5, Buffer.from('tail!'));
    expect((await stat(sparse)).blocks * 512).toBeLessThan(16 * SPARSE_BLOCK);
    const t = Date.now();
    const d = await sparseSha256(sparse);
    // 3 GiB of holes are not read.
    expect(Date.now() - t).toBeLessThan(2000);
    expect(d).toMatch(/^[0-9a-f]{64}$/);
    // The same bytes with the zeros of the data blocks' neighbourhood written out.
    await writeFile(dense, '');
    await truncate(dense, size);
    await writeAt(dense, 99 * SPARSE_BLOCK, Buffer.alloc(6 * SPARSE_BLOCK));
    await writeAt(dense, 100 * SPARSE_BLOCK + 17, data);
    await writeAt(dense, size - 5, Buffer.from('tail!'));
    expect(await sparseSha256(dense)).toBe(d);
    // One byte changed changes it.
    await writeAt(dense, 2 * SPARSE_BLOCK, Buffer.from([1]));
    expect(await sparseSha256(dense)).not.toBe(d);
  });
});

describe('outputs cache', () => {
  it('gives back the files of a build with the same key, and nothing once a file changed', async () => {
    const dir = await testdir();
    const cache = join(dir, 'cache');
    const out1 = join(dir, 'out1');
    await mkdir(out1);
    await writeFile(join(out1, 'usr.img'), 'usr bytes');
    await writeFile(join(out1, 'disk.bin'), 'disk bytes');
    const artifacts = [
      { file: 'disk.bin', kind: 'raw' as const, bytes: 10, sha256: 'ab'.repeat(32), digest: 'sparse-sha256' as const },
      { file: 'usr.img', kind: 'usr' as const, bytes: 9, sha256: 'cd'.repeat(32) },
    ];
    const disk = { sizeBytes: 10, layout: 'coreos', usrA: { index: 3, priority: 1, tries: 3, successful: false } };
    expect(await takeCachedOutputs(cache, 'k1', out1, silentLogger)).toBeUndefined();
    await storeOutputs(cache, 'k1', out1, { disk, artifacts, sizes: { kernel: 1 } });
    const out2 = join(dir, 'out2');
    await mkdir(out2);
    const hit = await takeCachedOutputs(cache, 'k1', out2, silentLogger);
    expect(hit).toMatchObject({ disk, artifacts, sizes: { kernel: 1 } });
    expect(await readFile(join(out2, 'disk.bin'), 'utf8')).toBe('disk bytes');
    expect(await takeCachedOutputs(cache, 'k2', join(dir, 'nowhere'), silentLogger)).toBeUndefined();
    // Written through the output folder (a hard link): the entry is not used again.
    await writeFile(join(out1, 'disk.bin'), 'DISK bytes');
    await utimes(join(out1, 'disk.bin'), new Date(), new Date(Date.now() + 5000));
    const out3 = join(dir, 'out3');
    await mkdir(out3);
    expect(await takeCachedOutputs(cache, 'k1', out3, silentLogger)).toBeUndefined();
    // Another key replaces the entry.
    await storeOutputs(cache, 'k3', out2, { disk, artifacts, sizes: {} });
    expect(await takeCachedOutputs(cache, 'k3', out3, silentLogger)).toBeDefined();
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HashThread, shared, sharedBuffer } from './hash-thread.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('SHA-256 on the hashing thread', () => {
  it('digests shared bytes where they are, and other bytes through a copy', async () => {
    const h = new HashThread();
    try {
      const data = randomBytes(300_000);
      const buf = sharedBuffer(400_000);
      data.copy(buf, 1000);
      const view = buf.subarray(1000, 1000 + data.length);
      // A view of shared memory is not copied.
      expect(shared(view).buf).toBe(buf.buffer);
      expect(await h.digest(view)).toBe(sha(data));
      expect(await h.digest(data.subarray(5, 70_005))).toBe(sha(data.subarray(5, 70_005)));
      expect(await h.digest(new Uint8Array(0))).toBe(sha(new Uint8Array(0)));
    } finally {
      await h.close();
    }
  });

  it('keeps a running hash in order between digests, and starts it over after final', async () => {
    const h = new HashThread();
    try {
      const parts = [randomBytes(1000), randomBytes(70_000), randomBytes(5)];
      const asked = parts.map((p, i) => (i === 1 ? Promise.all([h.update(p), h.digest(p)]) : h.update(p)));
      await Promise.all(asked);
      expect(await h.final()).toBe(sha(Buffer.concat(parts)));
      await h.update(parts[2]!);
      expect(await h.final()).toBe(sha(parts[2]!));
    } finally {
      await h.close();
    }
  });

  it('fails what is asked after it was closed', async () => {
    const h = new HashThread();
    await h.close();
    await expect(h.digest(Buffer.from('x'))).rejects.toThrow(/the hashing thread exited/);
  });
});

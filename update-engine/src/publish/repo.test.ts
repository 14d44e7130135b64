import { describe, expect, it } from 'vitest';
import { chooseCompression, MIN_ZSTD_SAVING } from './repo.js';

describe("format 2's choice of compression per chunk", () => {
  it('stores a chunk as zstd only when that saves at least MIN_ZSTD_SAVING of it', () => {
    expect(MIN_ZSTD_SAVING).toBe(0.05);
    expect(chooseCompression(4096, 1000)).toBe('zstd');
    expect(chooseCompression(4000, 3800)).toBe('zstd');
    expect(chooseCompression(4000, 3801)).toBe('none');
    // Already compressed data (a squashfs with zstd) grows a little under zstd: stored as it is.
    expect(chooseCompression(4096, 4110)).toBe('none');
  });
});

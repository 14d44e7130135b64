import { describe, expect, it } from 'vitest';
import { chunkCompression, MAX_CHUNK_BYTES, validateManifest, type PayloadManifestV1, type PayloadManifestV2 } from './metadata.js';

const h = (c: string) => c.repeat(64);
const usr = { fsType: 'squashfs', fsBytes: null, hashOffset: null, rootHash: null, salt: null, kernel: '/lib/basalt/boot/vmlinuz', initrd: '/lib/basalt/boot/initrd' };
const common = { kind: 'basalt-payload' as const, version: '2.0.0', channels: ['stable'], board: 'amd64-usr', created: '2026-01-01T00:00:00Z', usr };

const v2: PayloadManifestV2 = {
  ...common,
  formatVersion: 2,
  payload: {
    file: 'usr.img.payload',
    size: 4096 + 100,
    sha256: h('a'),
    sha1: '',
    chunks: [
      { offset: 0, size: 4096, sha256: h('b'), uncompressedSize: 4096, compression: 'none', imageSha256: h('b') },
      { offset: 4096, size: 100, sha256: h('c'), uncompressedSize: 4096, compression: 'zstd', imageSha256: h('d') },
    ],
  },
  image: { size: 8192, sha256: h('e') },
};

const v1: PayloadManifestV1 = {
  ...common,
  formatVersion: 1,
  payload: { file: 'usr.img.xz', size: 300, sha256: h('a'), sha1: '', compression: 'xz', chunks: [{ offset: 0, size: 300, sha256: h('b'), uncompressedSize: 8192 }] },
  image: { size: 8192, sha256: h('e') },
};

/** v2 with chunk `i` changed. */
function chunk(i: number, change: Record<string, unknown>): unknown {
  const m = structuredClone(v2) as unknown as { payload: { chunks: Record<string, unknown>[] } };
  Object.assign(m.payload.chunks[i]!, change);
  return m;
}

describe('payload manifests: format 2 and format 1', () => {
  it('validates both formats and tells how each chunk is stored', () => {
    expect(validateManifest(structuredClone(v2), 'm.json')).toEqual(v2);
    expect(validateManifest(structuredClone(v1), 'm.json')).toEqual(v1);
    expect([chunkCompression(v2, 0), chunkCompression(v2, 1), chunkCompression(v1, 0)]).toEqual(['none', 'zstd', 'xz']);
  });

  it('refuses a format it does not know, naming the file and the version', () => {
    expect(() => validateManifest({ ...v2, formatVersion: 3 }, 'm.json')).toThrow(/^m\.json: unsupported manifest \(formatVersion 3, kind basalt-payload\)$/);
    let caught: unknown;
    try {
      validateManifest({ ...v2, formatVersion: 3 }, 'm.json');
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'E_METADATA_VERSION', hint: 'this update-engine reads formatVersion 1 and 2 payload manifests; a newer release needs a newer update-engine first' });
  });

  it('refuses a format 2 chunk without a known compression, with a bad image hash, or over the size limit', () => {
    expect(() => validateManifest(chunk(1, { compression: 'xz' }), 'm.json')).toThrow(/m\.json: payload\.chunks\[1\]\.compression is "xz", not one of none, zstd/);
    expect(() => validateManifest(chunk(1, { compression: undefined }), 'm.json')).toThrow(/chunks\[1\]\.compression is undefined/);
    expect(() => validateManifest(chunk(1, { imageSha256: 'x' }), 'm.json')).toThrow(/chunks\[1\]\.imageSha256 is not 64 hex digits/);
    expect(() => validateManifest(chunk(1, { uncompressedSize: MAX_CHUNK_BYTES + 1 }), 'm.json')).toThrow(/chunks\[1\]: 100 stored \/ 67108865 image bytes; a chunk holds 1 to 67108864 bytes/);
  });

  it('refuses a chunk stored as it is whose sizes or hashes differ', () => {
    expect(() => validateManifest(chunk(0, { uncompressedSize: 4095 }), 'm.json')).toThrow(/chunks\[0\]: stored as it is, but its size or imageSha256 differs/);
    expect(() => validateManifest(chunk(0, { imageSha256: h('f') }), 'm.json')).toThrow(/chunks\[0\]: stored as it is/);
  });

  it('refuses chunks that leave a gap, do not add up to the payload, or do not cover the image', () => {
    expect(() => validateManifest(chunk(1, { offset: 4097 }), 'm.json')).toThrow(/chunks\[1\] is not contiguous or malformed/);
    expect(() => validateManifest({ ...v2, payload: { ...v2.payload, size: 5000 } }, 'm.json')).toThrow(/chunks cover 4196 bytes but payload\.size is 5000/);
    expect(() => validateManifest({ ...v2, image: { ...v2.image, size: 8191 } }, 'm.json')).toThrow(/image\.size does not match the chunks/);
  });

  it('keeps format 1 as it was: xz, no per-chunk compression', () => {
    expect(() => validateManifest({ ...v1, payload: { ...v1.payload, compression: 'zstd' } }, 'm.json')).toThrow(/payload\.compression is "zstd"; format 1 payloads are xz/);
  });
});

describe('delta manifests', () => {
  const delta = (): PayloadManifestV2 => ({
    ...structuredClone(v2),
    payload: {
      ...structuredClone(v2.payload),
      size: 100,
      chunks: [
        { offset: 0, size: 0, sha256: h('b'), uncompressedSize: 4096, compression: 'seed', imageSha256: h('b'), seedOffset: 8192 },
        { offset: 0, size: 100, sha256: h('c'), uncompressedSize: 4096, compression: 'zstd', imageSha256: h('d') },
      ],
    },
    delta: { from: '1.0.0', seedSize: 16384, seedSha256: h('f'), full: { manifest: '../manifest.json', payload: '../usr.img.payload', size: 8192, sha256: h('a') } },
  });

  it('validates a delta: seed chunks without payload bytes, inside the base image, and the full release it names', () => {
    expect(validateManifest(delta(), 'd.json')).toEqual(delta());
    expect(chunkCompression(delta(), 0)).toBe('seed');
  });

  it('refuses seed chunks outside a delta, past the base image, with payload bytes or without a seedOffset', () => {
    const noDelta = { ...delta(), delta: undefined };
    expect(() => validateManifest(noDelta, 'd.json')).toThrow(/d\.json: 'seed' chunks in a manifest that is not a delta/);
    const past = delta();
    past.payload.chunks[0]!.seedOffset = 16000;
    expect(() => validateManifest(past, 'd.json')).toThrow(/a seed chunk reaches past the 16384-byte base image/);
    const bytes = delta();
    bytes.payload.chunks[0]!.size = 10;
    expect(() => validateManifest(bytes, 'd.json')).toThrow(/chunks\[0\] is not contiguous or malformed/);
    const where = delta();
    delete where.payload.chunks[0]!.seedOffset;
    expect(() => validateManifest(where, 'd.json')).toThrow(/a 'seed' chunk \(and only one\) has a seedOffset/);
  });

  it('refuses a delta that does not name its base version or the full release', () => {
    expect(() => validateManifest({ ...delta(), delta: { ...delta().delta, from: 'x' } }, 'd.json')).toThrow(/d\.json delta\.from/);
    const { full: _full, ...rest } = delta().delta!;
    expect(() => validateManifest({ ...delta(), delta: rest }, 'd.json')).toThrow(/d\.json delta: field 'full' is missing/);
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultProfilePath, parseProfile } from '../../configs/src/profile.js';
import { blocksTouched, parseFilefrag, SPARSE_BLOCK } from './fsutil.js';
import { outputsKey, readCachedOutputs, type CachedOutputs } from './outputs-cache.js';

const profile = parseProfile(readFileSync(defaultProfilePath(), 'utf8'), 'default.yaml').value!;

const good: CachedOutputs = {
  formatVersion: 1,
  disk: { sizeBytes: 8 * 1024 ** 3, layout: 'coreos', usrA: { index: 3, priority: 1, tries: 3, successful: false } },
  artifacts: [
    { file: 'basalt_production_image.bin', kind: 'raw', bytes: 8 * 1024 ** 3, sha256: 'ab'.repeat(32), digest: 'sparse-sha256' },
    { file: 'usr.img', kind: 'usr', bytes: 4096, sha256: 'cd'.repeat(32) },
    { file: 'basalt_production_vmware_image.ova', kind: 'ova', platform: 'vmware', bytes: 1000, sha256: 'ef'.repeat(32) },
  ],
  sizes: { kernel: 8_000_000 },
  files: { 'basalt_production_image.bin': { bytes: 8 * 1024 ** 3, mtimeNs: '1700000000000000000' }, 'usr.img': { bytes: 4096, mtimeNs: '1700000000000000001' }, 'basalt_production_vmware_image.ova': { bytes: 1000, mtimeNs: '1700000000000000002' } },
};

describe('outputs cache', () => {
  it('keys on the last stage and the fields only the disk and outputs steps read', () => {
    const k = outputsKey(profile, 'boot1');
    expect(outputsKey(profile, 'boot1')).toBe(k);
    expect(outputsKey(profile, 'boot2')).not.toBe(k);
    expect(outputsKey({ ...profile, outputs: ['raw'] }, 'boot1')).not.toBe(k);
    // The platforms written are an input: the profile's, or --platform's.
    expect(outputsKey(profile, 'boot1', ['qemu'])).toBe(k);
    expect(outputsKey(profile, 'boot1', ['qemu', 'aws'])).not.toBe(k);
    expect(outputsKey({ ...profile, platforms: ['gce'] }, 'boot1')).toBe(outputsKey(profile, 'boot1', ['gce']));
    expect(outputsKey({ ...profile, disk: { ...profile.disk, size: 4 * 1024 ** 3 } }, 'boot1')).not.toBe(k);
    // What earlier stages read is in their keys, not here.
    expect(outputsKey({ ...profile, packages: [...profile.packages, 'htop'] }, 'boot1')).toBe(k);
  });
  it('reads back outputs.json as written, and rejects anything else', () => {
    expect(readCachedOutputs(JSON.parse(JSON.stringify(good)), 'o.json')).toEqual(good);
    expect(() => readCachedOutputs({ ...good, formatVersion: 2 }, 'o.json')).toThrow(expect.objectContaining({ code: 'E_STAGE_CACHE_INVALID' }));
    expect(() => readCachedOutputs({ ...good, artifacts: [{ ...good.artifacts[0], file: '../x' }] }, 'o.json')).toThrow(/file must be a file name/);
    expect(() => readCachedOutputs({ ...good, artifacts: [{ ...good.artifacts[0], kind: 'tarball' }] }, 'o.json')).toThrow(/kind/);
    expect(() => readCachedOutputs({ ...good, files: {} }, 'o.json')).toThrow(/every artifact/);
    expect(() => readCachedOutputs({ ...good, artifacts: [{ ...good.artifacts[2], platform: 'nimbus' }] }, 'o.json')).toThrow(/platform must be a platform/);
    expect(() => readCachedOutputs('x', 'o.json')).toThrow(/o\.json/);
  });
});

describe('sparse digest helpers', () => {
  it('reads the data ranges filefrag reports (inclusive ends) as [start, end)', () => {
    const text = [
      'Filesystem type is: ef53',
      'File size of x is 1073741824 (1073741824 blocks of 1 bytes)',
      ' ext:     logical_offset:        physical_offset: length:   expected: flags:',
      '   0: 104857600..104861695:          0..         0:      0:             unknown_loc,delalloc',
      '   1: 524288000..527433727:   34816000..  37961727: 3145728:             last,eof',
      'x: 2 extents found',
    ].join('\n');
    expect(parseFilefrag(text)).toEqual([
      [104857600, 104861696],
      [524288000, 527433728],
    ]);
  });
  it('lists each block a range touches once', () => {
    const B = SPARSE_BLOCK;
    expect(blocksTouched([[0, 1]], B)).toEqual([0]);
    expect(blocksTouched([[B - 1, B + 1]], B)).toEqual([0, 1]);
    expect(blocksTouched([[3 * B, 4 * B]], B)).toEqual([3]);
    expect(blocksTouched([[5 * B, 5 * B + 10], [10, 20], [5 * B + 20, 6 * B + 1]], B)).toEqual([0, 5, 6]);
    expect(blocksTouched([], B)).toEqual([]);
  });
});

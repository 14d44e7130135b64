import { describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { decodeEntries, decodeHeader, encodeGpt, validateGpt } from './codec.js';
import { bytesToGuid, guidToBytes } from './guid.js';
import { loadLayout, parseLayout, planLayout } from './layout.js';

describe('GUID encoding', () => {
  it('stores the first three fields little-endian (UEFI mixed endian)', () => {
    const b = guidToBytes('c12a7328-f81f-11d2-ba4b-00a0c93ec93b');
    expect(b.toString('hex')).toBe('28732ac11ff8d211ba4b00a0c93ec93b');
    expect(bytesToGuid(b)).toBe('c12a7328-f81f-11d2-ba4b-00a0c93ec93b');
  });
});

describe('GPT codec', () => {
  const gpt = planLayout(loadLayout('coreos'), { sizeBytes: 8 * 1024 ** 3, seed: 'x' });
  it('round-trips headers and entries with valid CRCs', () => {
    const s = encodeGpt(gpt);
    const h = decodeHeader(s.primaryHeader, 1n);
    expect(typeof h).toBe('object');
    if (typeof h === 'string') return;
    expect(h.alternateLba).toBe(gpt.totalSectors - 1n);
    expect(h.entriesLba).toBe(2n);
    expect(h.firstUsableLba).toBe(34n);
    expect(h.lastUsableLba).toBe(gpt.totalSectors - 34n);
    expect(crc32(s.primaryEntries.subarray(0, 128 * 128))).toBe(h.entriesCrc);
    const b = decodeHeader(s.backupHeader, gpt.totalSectors - 1n);
    expect(typeof b === 'object' && b.entriesLba).toBe(gpt.totalSectors - 33n);
    expect(decodeEntries(s.primaryEntries, 128, 128)).toEqual(gpt.partitions);
  });
  it('detects a corrupted header', () => {
    const s = encodeGpt(gpt);
    s.primaryHeader.writeUInt8(s.primaryHeader.readUInt8(40) ^ 1, 40);
    expect(decodeHeader(s.primaryHeader, 1n)).toBe('header CRC32 mismatch');
    expect(decodeHeader(Buffer.alloc(512), 1n)).toMatch(/signature/);
  });
  it('lays out the CoreOS partitions at their numbers, 2 MiB aligned, with the fixed USR UUIDs', () => {
    const byNum = Object.fromEntries(gpt.partitions.map((p) => [p.index, p]));
    expect(Object.keys(byNum).map(Number)).toEqual([1, 2, 3, 4, 6, 7, 9]);
    expect(byNum[3]!.guid).toBe('7130c94a-213a-4e5a-8e26-6cce9662f132');
    expect(byNum[4]!.guid).toBe('e03dd35c-7c2d-4a47-b3fe-27f15780a57c');
    expect(byNum[9]!.type).toBe('3884dd41-8582-4404-b9a8-e9b84f2df50e');
    for (const p of gpt.partitions) expect(p.firstLba % 4096n).toBe(0n);
    expect(gpt.diskGuid).toBe('00000000-0000-0000-0000-000000000001');
  });
  it('is reproducible with a seed', () => {
    const a = planLayout(loadLayout('coreos'), { sizeBytes: 8 * 1024 ** 3, seed: 's' });
    const b = planLayout(loadLayout('coreos'), { sizeBytes: 8 * 1024 ** 3, seed: 's' });
    expect(encodeGpt(a).primaryEntries.equals(encodeGpt(b).primaryEntries)).toBe(true);
  });
  it('rejects overlapping partitions and partitions outside the usable area', () => {
    const [p1, p2] = gpt.partitions;
    expect(() => validateGpt({ ...gpt, partitions: [p1!, { ...p2!, firstLba: p1!.lastLba }] })).toThrow(/overlap/);
    expect(() => validateGpt({ ...gpt, partitions: [{ ...p1!, firstLba: 10n }] })).toThrow(/outside the usable area/);
    expect(() => validateGpt({ ...gpt, partitions: [{ ...p1!, label: 'x'.repeat(37) }] })).toThrow(/longer than 36/);
  });
  it('refuses a disk too small for the layout, naming the minimum', () => {
    expect(() => planLayout(loadLayout('coreos'), { sizeBytes: 1024 ** 3 })).toThrow(/too small for layout coreos/);
  });
  it('honours size overrides and rejects unknown labels', () => {
    const g = planLayout(loadLayout('coreos'), { sizeBytes: 16 * 1024 ** 3, sizes: { 'USR-A': 4 * 1024 ** 3 } });
    const a = g.partitions.find((p) => p.label === 'USR-A')!;
    expect((a.lastLba - a.firstLba + 1n) * 512n).toBe(4n * 1024n ** 3n);
    expect(() => planLayout(loadLayout('coreos'), { sizes: { NOPE: 1 } })).toThrow(/has no such partition/);
  });
});

describe('layout files', () => {
  const good = { formatVersion: 1, name: 't', partitions: [{ number: 1, label: 'A', type: 'efi', size: '1MiB' }] };
  it('names the file and field of every error', () => {
    expect(() => parseLayout({ ...good, formatVersion: 2 }, 'x.json')).toThrow(/x\.json: formatVersion: 2 is not supported/);
    expect(() => parseLayout({ ...good, partitions: [{ ...good.partitions[0], size: '1X' }] }, 'x.json')).toThrow(/x\.json: partitions\[0\]\.size: '1X' is not a size/);
    expect(() => parseLayout({ ...good, partitions: [{ ...good.partitions[0], type: 'bogus' }] }, 'x.json')).toThrow(/partitions\[0\]\.type/);
    expect(() => parseLayout({ ...good, extra: 1 }, 'x.json')).toThrow(/extra: unknown key/);
  });
  it('reports an unknown layout name with the folder to look in', () => {
    expect(() => loadLayout('nope')).toThrow(/unknown layout 'nope'/);
  });
});

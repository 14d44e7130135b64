import { describe, expect, it } from 'vitest';
import { busyReason, entryWithPlatform, parseMounts, rawArtifact } from './plan.js';

const MOUNTS = ['/dev/vda9 / ext4 rw,relatime 0 0', '/dev/mapper/usr /usr squashfs ro 0 0', '/dev/vda1 /boot vfat rw 0 0', '/dev/sdb1 /mnt/my\\040data ext4 rw 0 0', 'proc /proc proc rw 0 0'].join('\n');

describe('busyReason', () => {
  const mounts = parseMounts(MOUNTS);
  it('unescapes /proc/self/mounts', () => {
    expect(mounts[3]).toEqual(['/dev/sdb1', '/mnt/my data']);
  });
  it('refuses the disk holding the running system, by its partitions', () => {
    const tree = { name: '/dev/vda', path: '/dev/vda', children: [{ path: '/dev/vda1' }, { path: '/dev/vda9' }] };
    expect(busyReason(['/dev/vda'], mounts, tree)).toBe('/dev/vda9 is mounted at /: it holds the running system');
  });
  it('refuses a mounted data disk, and one lsblk sees mounted', () => {
    expect(busyReason(['/dev/sdb'], mounts, { path: '/dev/sdb', children: [{ path: '/dev/sdb1' }] })).toBe('/dev/sdb1 is mounted at /mnt/my data');
    expect(busyReason(['/dev/sdc'], [], { path: '/dev/sdc', children: [{ path: '/dev/sdc2', mountpoints: ['/srv', null] }] })).toBe('/dev/sdc is in use: /dev/sdc2 at /srv mounted');
  });
  it('lets an unused disk through', () => {
    expect(busyReason(['/dev/sdd'], mounts, { path: '/dev/sdd', mountpoints: [null], children: [{ path: '/dev/sdd1', mountpoints: [null] }] })).toBeNull();
  });
});

describe('entryWithPlatform', () => {
  const entry = 'title Basalt 1.0.0 (USR-A)\nversion 1.0.0\nlinux /basalt/a/vmlinuz\ninitrd /basalt/a/initrd\noptions mount.usr=/dev/mapper/usr basalt.slot=A console=ttyS0 coreos.oem.id=gce\n';
  it('puts basalt.oem.id last on the options line, replacing an earlier platform id', () => {
    expect(entryWithPlatform(entry, 'aws')).toBe(entry.replace('console=ttyS0 coreos.oem.id=gce', 'console=ttyS0 basalt.oem.id=aws'));
    expect(entryWithPlatform(entryWithPlatform(entry, 'aws'), 'azure')).toContain('console=ttyS0 basalt.oem.id=azure\n');
  });
  it('refuses an entry without options', () => {
    expect(() => entryWithPlatform('title x\n', 'aws')).toThrow(expect.objectContaining({ code: 'E_INSTALL_IMAGE' }));
  });
});

describe('rawArtifact', () => {
  const m = { artifacts: [{ file: 'a.qcow2', kind: 'qcow2', bytes: 1, sha256: 'x' }, { file: 'disk.bin', kind: 'raw', bytes: 8, sha256: 'ab', digest: 'sparse-sha256' }] };
  it('finds the raw disk by file name', () => {
    expect(rawArtifact(m, 'disk.bin', 'm.json')).toEqual({ file: 'disk.bin', bytes: 8, sha256: 'ab', digest: 'sparse-sha256' });
  });
  it('names the manifest when there is none', () => {
    expect(() => rawArtifact(m, 'other.bin', '/out/manifest.json')).toThrow('/out/manifest.json: no raw disk artifact named other.bin');
    expect(() => rawArtifact({}, 'disk.bin', 'm.json')).toThrow(expect.objectContaining({ code: 'E_INSTALL_MANIFEST' }));
  });
});

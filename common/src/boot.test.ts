import { describe, expect, it } from 'vitest';
import { entryFileName, kernelCmdline, parseEntryFileName, renderEntry } from './boot.js';

const hash = 'ab'.repeat(32);

describe('renderEntry', () => {
  it('renders slot A with verity on the command line', () => {
    const t = renderEntry({ slot: 'a', version: '1.2.3', rootHash: hash, hashOffset: 8192, fsType: 'squashfs', extraCmdline: ['console=ttyS0,115200', 'panic=10'] });
    expect(t).toBe(
      [
        'title Basalt 1.2.3 (USR-A)',
        'version 1.2.3',
        'sort-key basalt',
        'linux /basalt/a/vmlinuz',
        'initrd /basalt/a/initrd',
        `options mount.usr=/dev/mapper/usr mount.usrfstype=squashfs mount.usrflags=ro,x-systemd.device-timeout=30s basalt.usr=PARTLABEL=USR-A basalt.usrhash=${hash} basalt.usrhashoffset=8192 basalt.slot=A root=PARTLABEL=ROOT rootfstype=ext4 rw console=ttyS0,115200 panic=10`,
        '',
      ].join('\n'),
    );
  });
  it('mounts the partition directly when verity is off', () => {
    const c = kernelCmdline({ slot: 'b', version: '2.0.0', fsType: 'erofs' });
    expect(c).toContain('mount.usr=PARTLABEL=USR-B');
    expect(c).not.toContain('basalt.usrhash');
    expect(c).toContain('basalt.slot=B');
  });
  it('rejects bad hashes, offsets, versions and words', () => {
    expect(() => kernelCmdline({ slot: 'a', version: '1', rootHash: 'xyz', hashOffset: 4096, fsType: 'squashfs' })).toThrow(/64/);
    expect(() => kernelCmdline({ slot: 'a', version: '1', rootHash: hash, hashOffset: 100, fsType: 'squashfs' })).toThrow(/4096/);
    expect(() => renderEntry({ slot: 'a', version: '1 2', fsType: 'squashfs' })).toThrow(/version/);
    expect(() => kernelCmdline({ slot: 'a', version: '1', fsType: 'squashfs', extraCmdline: ['a b'] })).toThrow(/spaces/);
  });
});

describe('entry file names', () => {
  it('round-trips boot counting names', () => {
    expect(entryFileName('a')).toBe('basalt-a.conf');
    expect(entryFileName('b', 3)).toBe('basalt-b+3.conf');
    expect(parseEntryFileName('basalt-b+3.conf')).toEqual({ slot: 'b', left: 3 });
    expect(parseEntryFileName('basalt-b+2-1.conf')).toEqual({ slot: 'b', left: 2, done: 1 });
    expect(parseEntryFileName('basalt-b+0-3.conf')).toEqual({ slot: 'b', left: 0, done: 3 });
    expect(parseEntryFileName('basalt-a.conf')).toEqual({ slot: 'a' });
    expect(parseEntryFileName('other.conf')).toBeUndefined();
    expect(() => entryFileName('b', 16)).toThrow();
  });
});

import { describe, expect, it } from 'vitest';
import { fatBytes, isoEntry, isoVolumeId, xorrisoArgs } from './iso.js';

describe('the live ISO plan', () => {
  it("boots the PXE command line with the iso platform id in place of any other", () => {
    const e = isoEntry({ cmdline: 'basalt.usr=/usr.img basalt.slot=PXE root=tmpfs basalt.oem.id=qemu console=ttyS0,115200', osName: 'Basalt', version: '1.2.3' });
    expect(e).toBe('title Basalt 1.2.3 (live)\nversion 1.2.3\nlinux /basalt/live/vmlinuz\ninitrd /basalt/live/initrd\noptions basalt.usr=/usr.img basalt.slot=PXE root=tmpfs console=ttyS0,115200 basalt.oem.id=iso\n');
  });

  it('makes an ISO 9660 volume id of A-Z, 0-9 and _, at most 32 characters', () => {
    expect(isoVolumeId('basalt', '1.2.3+dev.4')).toBe('BASALT_1_2_3_DEV_4');
    expect(isoVolumeId('a-very-long-operating-system-name', '10.20.30')).toHaveLength(32);
  });

  it('sizes the FAT image in whole MiB with room for its tables', () => {
    expect(fatBytes([100 * 2 ** 20])).toBe(112 * 2 ** 20);
    expect(fatBytes([]) % 2 ** 20).toBe(0);
  });

  it('appends the FAT image as GPT partition 2 and boots El Torito EFI from the same bytes', () => {
    const a = xorrisoArgs({ out: 'o.iso', tree: 't', efiImage: 'efi.img', volumeId: 'V' });
    expect(a.slice(0, 2)).toEqual(['-as', 'mkisofs']);
    expect(a.join(' ')).toContain('-append_partition 2 C12A7328-F81F-11D2-BA4B-00A0C93EC93B efi.img -appended_part_as_gpt -e --interval:appended_partition_2:all:: -no-emul-boot');
    expect(a.at(-1)).toBe('t');
  });
});

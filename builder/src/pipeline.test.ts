import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultProfilePath, parseProfile } from '../../configs/src/profile.js';
import { stableJson, stageKey } from './context.js';
import { newcHeader } from './cpio.js';
import { pxeCmdline } from './pipeline.js';
import { espBytes } from './stages/boot.js';
import { osRelease } from './stages/customize.js';
import { dracutArgs } from './stages/initrd.js';
import { mmdebstrapArgs, parseDpkgQuery } from './stages/packages.js';
import { parseShowDepends } from './stages/trim.js';
import { hashOffsetFor, mksquashfsArgs, parseRootHash, uuidFrom, type UsrImageInfo } from './stages/usr-image.js';

const profile = parseProfile(readFileSync(defaultProfilePath(), 'utf8'), 'default.yaml').value!;

describe('stage cache keys', () => {
  it('change with inputs, stage version and the previous stage, not with key order', () => {
    const k = stageKey('trim', 1, { a: 1, b: [1, 2] }, 'p');
    expect(stageKey('trim', 1, { b: [1, 2], a: 1 }, 'p')).toBe(k);
    expect(stageKey('trim', 2, { a: 1, b: [1, 2] }, 'p')).not.toBe(k);
    expect(stageKey('trim', 1, { a: 1, b: [2, 1] }, 'p')).not.toBe(k);
    expect(stageKey('trim', 1, { a: 1, b: [1, 2] }, 'q')).not.toBe(k);
    expect(stableJson({ b: 1, a: { d: 2, c: 3 } })).toBe('{"a":{"c":3,"d":2},"b":1}');
  });
});

describe('packages stage', () => {
  it('builds the mmdebstrap argv with the apt cache hooks and all three suites', () => {
    const a = mmdebstrapArgs(profile, '/c/aptroot', '/w/root');
    expect(a).toContain('--mode=root');
    expect(a).toContain('--variant=minbase');
    expect(a.find((x) => x.startsWith('--include='))).toContain('etcd-server');
    expect(a).toContain('--setup-hook=sync-in /c/aptroot /');
    expect(a).toContain('--customize-hook=sync-out /var/cache/apt/archives /c/aptroot/var/cache/apt/archives');
    expect(a.slice(-5)).toEqual([
      'bookworm',
      '/w/root',
      'deb http://deb.debian.org/debian bookworm main',
      'deb http://deb.debian.org/debian bookworm-updates main',
      'deb http://deb.debian.org/debian-security bookworm-security main',
    ]);
  });
  it('parses dpkg-query output', () => {
    expect(parseDpkgQuery('zlib1g\t1:1.2.13\t164\nbash\t5.2.15-2+b2\t7164\n')).toEqual([
      { name: 'bash', version: '5.2.15-2+b2', installedKiB: 7164 },
      { name: 'zlib1g', version: '1:1.2.13', installedKiB: 164 },
    ]);
  });
});

describe('trim and initrd', () => {
  it('parses modprobe --show-depends', () => {
    const r = parseShowDepends('insmod /lib/modules/6.1.0-56-amd64/kernel/drivers/md/dm-mod.ko \ninsmod /lib/modules/6.1.0-56-amd64/kernel/drivers/md/dm-verity.ko \nbuiltin ext4\n');
    expect(r.files).toEqual(['lib/modules/6.1.0-56-amd64/kernel/drivers/md/dm-mod.ko', 'lib/modules/6.1.0-56-amd64/kernel/drivers/md/dm-verity.ko']);
    expect(r.builtin).toEqual(['ext4']);
  });
  it('asks dracut for a reproducible systemd initrd with the Basalt module and an explicit driver list', () => {
    const a = dracutArgs('6.1.0-56-amd64', ['virtio_blk', 'dm_verity'], '/usr/lib/basalt/boot/initrd');
    expect(a).toContain('--reproducible');
    expect(a).toContain('--no-hostonly');
    expect(a[a.indexOf('-m') + 1]).toMatch(/\bsystemd-initrd\b.*\bbasalt$/);
    expect(a[a.indexOf('--drivers') + 1]).toBe('virtio_blk dm_verity');
    expect(a.at(-1)).toBe('/usr/lib/basalt/boot/initrd');
  });
});

describe('USR image', () => {
  it('makes squashfs deterministic: fixed times, no append', () => {
    const a = mksquashfsArgs('/t/usr', '/o/usr.img', profile.usr, 1704067200);
    expect(a).toEqual(expect.arrayContaining(['-noappend', '-mkfs-time', '1704067200', '-all-time', '1704067200', '-b', '1048576']));
    expect(a[a.indexOf('-comp') + 1]).toBe(profile.usr.compression);
  });
  it('puts the hash tree at the filesystem size rounded up to 4096', () => {
    expect(hashOffsetFor(4096)).toBe(4096);
    expect(hashOffsetFor(4097)).toBe(8192);
    expect(hashOffsetFor(205033000)).toBe(205033472);
  });
  it('reads the root hash from veritysetup format', () => {
    expect(parseRootHash(`VERITY header information for usr.img\nUUID: x\nRoot hash:      ${'0a'.repeat(32)}\n`)).toBe('0a'.repeat(32));
    expect(() => parseRootHash('nothing')).toThrow(/root hash/);
    expect(uuidFrom('f'.repeat(64))).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('boot, PXE and release files', () => {
  it('sizes the ESP from the layout', () => {
    expect(espBytes(profile)).toBe(256 * 1024 * 1024);
  });
  it('boots PXE with a tmpfs root and /usr from the image in the initramfs', () => {
    const usr = { version: '0.1.0', rootHash: 'ab'.repeat(32), hashOffset: 8192, fsType: 'squashfs' } as UsrImageInfo;
    const c = pxeCmdline(usr, ['console=ttyS0,115200']).split(' ');
    expect(c).toEqual(expect.arrayContaining(['root=tmpfs', 'basalt.usr=/usr.img', 'mount.usr=/dev/mapper/usr', `basalt.usrhash=${'ab'.repeat(32)}`, 'basalt.usrhashoffset=8192', 'console=ttyS0,115200']));
    expect(c.some((w) => w.startsWith('root=PARTLABEL'))).toBe(false);
  });
  it('writes newc headers the kernel accepts (magic, 4-byte padding)', () => {
    const h = newcHeader(1, 0o100644, 10, 0, 'usr.img');
    expect(h.subarray(0, 6).toString()).toBe('070701');
    expect(h.length % 4).toBe(0);
    expect(h.toString('ascii', 6 + 6 * 8, 6 + 7 * 8)).toBe('0000000a');
  });
  it('writes os-release with the version and channel', () => {
    const t = osRelease(profile);
    expect(t).toMatch(/^ID=basalt$/m);
    expect(t).toMatch(new RegExp(`^VERSION_ID=${profile.os.version}$`, 'm'));
    expect(t).toMatch(/^BASALT_CHANNEL=stable$/m);
    expect(t).toMatch(/^VARIANT_ID=container$/m);
    expect(t).toMatch(new RegExp(`^PRETTY_NAME="Basalt ${profile.os.version} \\(stable\\)"$`, 'm'));
    expect(t).toMatch(/^BUILD_ID=2024-01-01-0000$/m);
  });
});

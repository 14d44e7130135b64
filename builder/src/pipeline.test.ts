import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseEnvFile, type UsrImageInfo } from '../../common/src/contracts.js';
import { BasaltError, COMMON_ERRORS, describeCode } from '../../common/src/errors.js';
import { defaultProfilePath, parseProfile } from '../../configs/src/profile.js';
import { stableJson, stageKey } from './context.js';
import { newcHeader } from './cpio.js';
import { BUILD_ERRORS } from './errors.js';
import { mkfsExt4InPlaceArgs, neededTools, pxeCmdline, qemuPxeOutputs, STAGES } from './pipeline.js';
import { bootStage, espBytes } from './stages/boot.js';
import { customizeStage, imageUpdateConf, osRelease, releaseFile, useraddArgs } from './stages/customize.js';
import { installDirs, layerPath, layerStage } from './stages/layer.js';
import { dracutArgs, initrdStage, initrdZstdArgs } from './stages/initrd.js';
import { aptKeyName, aptSourceLine, debCacheHook, mmdebstrapArgs, packagesStage, parseDpkgQuery } from './stages/packages.js';
import { parseShowDepends, trimStage } from './stages/trim.js';
import { hashOffsetFor, mksquashfsArgs, parseRootHash, usrImageStage, usrInfoJson, uuidFrom } from './stages/usr-image.js';

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
    const a = mmdebstrapArgs(profile, '/r/builder/hooks/deb-cache', '/w/root');
    expect(a).toContain('--mode=root');
    expect(a).toContain('--variant=minbase');
    expect(a.find((x) => x.startsWith('--include='))).toContain('etcd-server');
    // One hook, run before apt (cache → tree) and after the packages are in (tree → cache).
    expect(a).toContain('--setup-hook=/r/builder/hooks/deb-cache');
    expect(a).toContain('--customize-hook=/r/builder/hooks/deb-cache');
    expect(debCacheHook('/r')).toBe('/r/builder/hooks/deb-cache');
    expect(a.slice(-5)).toEqual([
      'bookworm',
      '/w/root',
      'deb http://deb.debian.org/debian bookworm main',
      'deb http://deb.debian.org/debian bookworm-updates main',
      'deb http://deb.debian.org/debian-security bookworm-security main',
    ]);
  });
  it('adds the extra apt repositories, each signed by its own key', () => {
    const repo = { url: 'https://apt.example.com/debian', suite: 'bookworm', components: ['main', 'extra'], key: '/p/example.asc' };
    expect(aptSourceLine(repo, '/w/apt-keys/repo-00.asc')).toBe('deb [signed-by=/w/apt-keys/repo-00.asc] https://apt.example.com/debian bookworm main extra');
    expect(aptSourceLine({ ...repo, suite: './' }, '/k.gpg')).toBe('deb [signed-by=/k.gpg] https://apt.example.com/debian ./');
    expect(aptKeyName(0, Buffer.from('-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF...'))).toBe('repo-00.asc');
    expect(aptKeyName(3, Uint8Array.of(0x99, 0x02, 0x0d))).toBe('repo-03.gpg');
    const a = mmdebstrapArgs(profile, '/r/builder/hooks/deb-cache', '/w/root', ['deb [signed-by=/k.asc] https://apt.example.com/debian bookworm main']);
    expect(a.slice(-4)[3]).toBe('deb [signed-by=/k.asc] https://apt.example.com/debian bookworm main');
    expect(a.slice(-5, -1)[0]).toBe('/w/root');
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
    // A plain cpio: the stage compresses it with the host's zstd (initrdZstdArgs).
    expect(a).toContain('--no-compress');
    expect(a.some((x) => /^--(gzip|zstd|xz|lz4|bzip2|lzma|lzo)$/.test(x))).toBe(false);
    expect(a).toContain('--no-hostonly');
    expect(a[a.indexOf('-m') + 1]).toMatch(/\bsystemd-initrd\b.*\bbasalt$/);
    expect(a[a.indexOf('--drivers') + 1]).toBe('virtio_blk dm_verity');
    expect(a.at(-1)).toBe('/usr/lib/basalt/boot/initrd');
  });
  it('compresses the initrd with zstd into a temporary name, writing nothing else', () => {
    expect(initrdZstdArgs('/t/tmp/initrd.cpio', '/t/initrd.tmp')).toEqual(['-q', '-9', '-T0', '--no-progress', '-f', '-o', '/t/initrd.tmp', '/t/tmp/initrd.cpio']);
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
    const usr = { version: '0.1.0', rootHash: 'ab'.repeat(32), hashOffset: 8192, fsType: 'squashfs' } as const;
    const c = pxeCmdline(usr, ['console=ttyS0,115200']).split(' ');
    expect(c).toEqual(expect.arrayContaining(['root=tmpfs', 'basalt.usr=/usr.img', 'mount.usr=/dev/mapper/usr', `basalt.usrhash=${'ab'.repeat(32)}`, 'basalt.usrhashoffset=8192', 'console=ttyS0,115200']));
    expect(c.some((w) => w.startsWith('root=PARTLABEL'))).toBe(false);
    // The exact words written into the PXE cmdline file (with and without verity).
    expect(pxeCmdline(usr, ['console=ttyS0,115200'])).toBe(
      `mount.usr=/dev/mapper/usr mount.usrfstype=squashfs mount.usrflags=ro,x-systemd.device-timeout=30s basalt.usr=/usr.img basalt.usrhash=${'ab'.repeat(32)} basalt.usrhashoffset=8192 basalt.slot=PXE root=tmpfs rootflags=mode=0755 rw console=ttyS0,115200`,
    );
    expect(pxeCmdline({ ...usr, rootHash: '', fsType: 'erofs' }, ['console=ttyS0,115200'])).toBe(
      'mount.usr=PARTLABEL=USR-A mount.usrfstype=erofs mount.usrflags=ro,x-systemd.device-timeout=30s basalt.slot=PXE root=tmpfs rootflags=mode=0755 rw console=ttyS0,115200',
    );
  });
  it('writes the release file and update.conf byte for byte as before the contracts module', () => {
    const p = { ...profile, os: { ...profile.os, version: '1.2.3', channel: 'beta' } };
    expect(releaseFile(p)).toBe('VERSION=1.2.3\nBOARD=amd64-usr\nAPPID={e96281a6-d1af-4bde-9a0a-97b76e56dc57}\nCHANNEL=beta\n');
    expect(imageUpdateConf(p)).toBe('GROUP=beta\nREBOOT_STRATEGY=reboot\nHEALTH_UNITS="etcd.service docker.socket"\n');
  });
  it("writes the profile's update settings into update.conf as the update-engine and locksmith read them", () => {
    const p = { ...profile, update: { ...profile.update, repository: 'https://example.com/repo/', group: 'canary', rebootStrategy: 'etcd-lock' as const, rebootWindow: { start: 'Thu 23:00', length: '1h30m' }, healthUnits: ['etcd.service'] } };
    const conf = imageUpdateConf(p);
    expect(parseEnvFile(conf)).toEqual({
      GROUP: 'canary',
      SERVER: 'static+https://example.com/repo/',
      REBOOT_STRATEGY: 'etcd-lock',
      LOCKSMITHD_REBOOT_WINDOW_START: 'Thu 23:00',
      LOCKSMITHD_REBOOT_WINDOW_LENGTH: '1h30m',
      HEALTH_UNITS: 'etcd.service',
    });
    expect(parseEnvFile(imageUpdateConf({ ...profile, update: { ...profile.update, server: 'https://u.example.com/v1/update/' } }))['SERVER']).toBe('https://u.example.com/v1/update/');
  });
  it('enables units where their [Install] section says, else by their type', () => {
    expect(installDirs('[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target graphical.target\nRequiredBy=boot-complete.target\n', 'a.service')).toEqual(['multi-user.target.wants', 'graphical.target.wants', 'boot-complete.target.requires']);
    expect(installDirs('[Service]\nWantedBy=not-install.target\n', 'b.service')).toEqual(['multi-user.target.wants']);
    expect(installDirs('', 'c.socket')).toEqual(['sockets.target.wants']);
    expect(installDirs('', 'c.timer')).toEqual(['timers.target.wants']);
  });
  it("adds the profile's users without a home on /usr", () => {
    expect(useraddArgs({ name: 'ops', uid: 1001, groups: ['docker', 'sudo'], shell: '/bin/bash' })).toEqual(['useradd', '--no-create-home', '--home-dir', '/home/ops', '--shell', '/bin/bash', '--user-group', '--uid', '1001', '--groups', 'docker,sudo', 'ops']);
    expect(useraddArgs({ name: 'svc', groups: [], shell: '/usr/sbin/nologin' })).toEqual(['useradd', '--no-create-home', '--home-dir', '/home/svc', '--shell', '/usr/sbin/nologin', '--user-group', 'svc']);
  });
  it('writes usr.img.json with its keys in the order of format 1', () => {
    const info: UsrImageInfo = { formatVersion: 1, fsType: 'squashfs', fsBytes: 4097, hashOffset: 8192, rootHash: 'ab'.repeat(32), salt: 'cd'.repeat(32), version: '0.1.0', board: 'amd64-usr', kernel: '/lib/basalt/boot/vmlinuz', initrd: '/lib/basalt/boot/initrd', imageBytes: 16384, sha256: 'ef'.repeat(32) };
    expect(usrInfoJson(info)).toBe(
      `{\n  "formatVersion": 1,\n  "fsType": "squashfs",\n  "fsBytes": 4097,\n  "hashOffset": 8192,\n  "rootHash": "${'ab'.repeat(32)}",\n  "salt": "${'cd'.repeat(32)}",\n  "version": "0.1.0",\n  "board": "amd64-usr",\n  "kernel": "/lib/basalt/boot/vmlinuz",\n  "initrd": "/lib/basalt/boot/initrd",\n  "imageBytes": 16384,\n  "sha256": "${'ef'.repeat(32)}"\n}\n`,
    );
    // What the cache reads back is what the stage reported.
    expect(usrImageStage.readFacts(JSON.parse(usrInfoJson(info)), 'result.json')).toEqual(info);
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

describe('stage results read back from the cache', () => {
  const cases = [
    [packagesStage, { count: 312, kernelPackage: 'linux-image-6.1.0-56-amd64 6.1.153-1' }],
    [packagesStage, { count: 0, kernelPackage: null }],
    [customizeStage, { nodeRuntimeBytes: 120_000_000, packageManagerBytesRemoved: 4_000_000, purged: ['perl'] }],
    [trimStage, { removed: { docs: { files: 10, bytes: 2000 }, 'kernel modules': { files: 3000, bytes: 9_000_000 } }, modulesKept: 40, modulesMissing: [] }],
    [initrdStage, { kernelVersion: '6.1.0-56-amd64', kernelBytes: 8_000_000, initrdBytes: 12_000_000 }],
    [layerStage, { files: 1, overlays: 0, units: 2 }],
    [bootStage, { entry: 'basalt-a+3.conf', cmdline: 'mount.usr=/dev/mapper/usr rw' }],
  ] as const;
  it.each(cases)('%s: facts survive result.json', (stage, facts) => {
    // As runStage writes it and reads it back.
    const json: unknown = JSON.parse(JSON.stringify({ facts }, null, 1));
    expect(stage.readFacts((json as { facts: unknown }).facts, 'result.json')).toEqual(facts);
  });
  it('rejects facts that are not what the stage writes', () => {
    for (const [stage, facts] of cases) {
      const bad = { ...facts, [Object.keys(facts)[0]!]: { wrong: true } };
      expect(() => stage.readFacts(bad, 'r.json')).toThrow(BasaltError);
      expect(() => stage.readFacts('text', 'r.json')).toThrow(expect.objectContaining({ code: 'E_STAGE_CACHE_INVALID' }));
    }
    expect(() => usrImageStage.readFacts({ formatVersion: 1 }, 'r.json')).toThrow(BasaltError);
  });
  it('covers every stage of the pipeline', () => {
    expect(STAGES.map((s) => s.name)).toEqual(['packages', 'customize', 'trim', 'initrd', 'layer', 'usr-image', 'boot']);
  });
});

describe('platforms in the outputs step', () => {
  it("qemu writes the profile's outputs; pxe's come with either; the others add only their own", () => {
    const all = ['raw', 'qcow2', 'pxe'];
    expect(qemuPxeOutputs(all, ['qemu'])).toEqual({ raw: true, qcow2: true, pxe: true });
    expect(qemuPxeOutputs(['raw'], ['qemu'])).toEqual({ raw: true, qcow2: false, pxe: false });
    expect(qemuPxeOutputs(all, ['aws', 'gce'])).toEqual({ raw: false, qcow2: false, pxe: false });
    expect(qemuPxeOutputs(['raw'], ['pxe', 'metal'])).toEqual({ raw: false, qcow2: false, pxe: true });
  });
  it('needs qemu-img and tar only for what the platforms write', () => {
    const p = { usr: { fs: 'squashfs' }, outputs: ['raw', 'qcow2', 'pxe'] };
    const qemuOnly = neededTools(p, ['qemu']);
    expect(qemuOnly).toContain('qemu-img');
    expect(qemuOnly).not.toContain('tar');
    // zstd compresses every image's initrd; xorriso is for the live ISO alone.
    expect(qemuOnly).toContain('zstd');
    expect(qemuOnly).not.toContain('xorriso');
    expect(neededTools({ ...p, outputs: ['raw'] }, ['qemu', 'metal'])).toEqual(expect.not.arrayContaining(['qemu-img', 'tar']));
    expect(neededTools({ ...p, outputs: ['raw'] }, ['metal'])).toEqual(expect.arrayContaining(['mcopy']));
    expect(neededTools({ ...p, outputs: ['raw'] }, ['gce'])).toEqual(expect.arrayContaining(['tar', 'gzip']));
    expect(neededTools({ ...p, outputs: ['raw'] }, ['azure'])).toContain('qemu-img');
  });
  it("the default profile keeps every platform's drivers (one USR image for all) and the root disk controllers in the initrd", () => {
    const platformModules = ['ena', 'nvme', 'gve', 'virtio_scsi', 'hv_vmbus', 'hv_storvsc', 'hv_netvsc', 'hv_utils', 'vmxnet3', 'vmw_pvscsi', 'ixgbe', 'i40e', 'ice', 'mlx5_core', 'bnxt_en', 'igb', 'megaraid_sas', 'mpt3sas'];
    expect(profile.kernel.modules).toEqual(expect.arrayContaining(platformModules));
    expect(profile.initrd.drivers).toEqual(expect.arrayContaining(['nvme', 'virtio_scsi', 'hv_vmbus', 'hv_storvsc', 'vmw_pvscsi']));
    expect(profile.platforms).toEqual(['qemu']);
  });
});

describe('error codes', () => {
  it('keep the strings scripts match, each with a meaning and a default hint', () => {
    expect(Object.keys(BUILD_ERRORS).sort()).toEqual(['E_DISK_TOO_SMALL', 'E_INTERRUPTED', 'E_KERNEL', 'E_NEED_ROOT', 'E_NODE_RUNTIME', 'E_OVERLAY', 'E_PLATFORM_UNKNOWN', 'E_PROFILE_PRIVATE_KEY', 'E_PROFILE_UNIT', 'E_STAGE_CACHE_INVALID', 'E_TRIM_LINKS', 'E_VERITY']);
    for (const [code, def] of Object.entries(BUILD_ERRORS)) {
      expect(def.code).toBe(code);
      expect(def.meaning).not.toBe('');
      expect(def.hint).toBeTruthy();
      expect(describeCode(code)?.part).toBe('builder');
      expect(code in COMMON_ERRORS).toBe(false);
    }
  });
});

describe('mkfsExt4InPlaceArgs', () => {
  it('makes the filesystem at the partition offset in the disk file, with a fixed hash seed and no discard of the rest', () => {
    const uuid = '11111111-2222-4333-8444-555555555555';
    const argv = mkfsExt4InPlaceArgs('/o/disk.bin', 'ROOT', uuid, { offset: 1_090_519_040, length: 7 * 1024 ** 3 });
    expect(argv).toEqual(['-q', '-F', '-L', 'ROOT', '-U', uuid, '-E', `root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,hash_seed=${uuid},offset=1090519040,nodiscard`, '/o/disk.bin', '7340032k']);
  });
});

describe('layerPath', () => {
  it("puts /etc paths in the factory copy and /usr paths where they are, in the layer stage's usr/ tree", () => {
    expect(layerPath('/etc/motd')).toBe('usr/share/factory/etc/motd');
    expect(layerPath('/etc')).toBe('usr/share/factory/etc');
    expect(layerPath('/etc/systemd/system/a.service')).toBe('usr/share/factory/etc/systemd/system/a.service');
    expect(layerPath('/usr/share/x')).toBe('usr/share/x');
    expect(layerPath('/etcetera/x')).toBe('etcetera/x');
  });
});

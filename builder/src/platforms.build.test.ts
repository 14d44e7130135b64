/**
 * Issue 17's acceptance for `basalt build --platform`, checked with real
 * tools on a real build: qemu-img info and check (vmdk streamOptimized, vpc
 * fixed with its footer and 1 MiB alignment, qcow2), tar -tvf of GCE's
 * archive (one disk.raw, GNU format, sparse), the OVA's member order, its OVF
 * (the required elements) and its SHA256 manifest, and the platform id on the
 * boot entry of every platform's disk (read as install.int.test.ts does:
 * mtools on EFI-SYSTEM). The stages come from the shared cache when it is on
 * this file system (hard links of CACHE/stages; the stages are only read),
 * else they are built; everything else under os.tmpdir(). `npm run test:build`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../common/src/exec.js';
import { partitionRange, readGpt } from '../../common/src/gpt/index.js';
import { cli } from '../../common/test/helpers.js';
import { MtoolsEsp } from '../../update-engine/src/host/esp.js';
import { MiB, ovaMembers, platformFiles, type BuildPlatform } from './platforms.js';

const isRoot = process.getuid?.() === 0;
const sharedCache = process.env['BASALT_CACHE'] ?? '/var/cache/basalt';
const PLATFORMS: BuildPlatform[] = ['metal', 'aws', 'gce', 'azure', 'openstack', 'vmware', 'digitalocean'];
const ID = 'basalt';

interface Manifest {
  platforms: string[];
  disk: { sizeBytes: number };
  artifacts: { file: string; kind: string; platform?: string; bytes: number; sha256: string }[];
}

interface QemuImgInfo {
  format: string;
  'virtual-size': number;
  'format-specific'?: { type: string; data: Record<string, unknown> };
}

async function imgInfo(file: string, format: string): Promise<QemuImgInfo> {
  return JSON.parse((await run('qemu-img', ['info', '--output=json', '-f', format, file])).stdout) as QemuImgInfo;
}

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** The first `n` bytes of a gzip file, decompressed. */
async function gunzipHead(file: string, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  const s = createReadStream(file).pipe(createGunzip());
  for await (const c of s) {
    chunks.push(c as Buffer);
    got += (c as Buffer).length;
    if (got >= n) break;
  }
  s.destroy();
  return Buffer.concat(chunks).subarray(0, n);
}

/** The 512-byte header of the first member of a tar stream: name, typeflag, magic+version. */
function tarHeader(b: Buffer): { name: string; type: string; magic: string } {
  return { name: b.subarray(0, 100).toString('latin1').replace(/\0.*$/s, ''), type: String.fromCharCode(b[156]!), magic: b.subarray(257, 265).toString('latin1') };
}

/** The boot entries' options lines of a raw disk, as the first boot reads them. */
async function entryOptions(raw: string): Promise<string[]> {
  const gpt = await readGpt(raw);
  const esp = new MtoolsEsp(raw, partitionRange(gpt, gpt.partitions.find((p) => p.label === 'EFI-SYSTEM')!).offset);
  const names = (await esp.list('/loader/entries')).filter((n) => n.endsWith('.conf'));
  const out: string[] = [];
  for (const n of names) out.push(((await esp.read(`/loader/entries/${n}`)) ?? '').split('\n').find((l) => l.startsWith('options ')) ?? '');
  return out;
}

describe.skipIf(!isRoot)('basalt build --platform: every format checked by real tools (skipped unless root)', () => {
  let work: string;
  let cache: string;
  let out: string;
  let manifest: Manifest;
  const file = (p: BuildPlatform, kind: string) => join(out, platformFiles(ID, p).find((f) => f.kind === kind)!.file);

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'basalt-platforms-'));
    cache = join(work, 'cache');
    await mkdir(cache);
    for (const d of ['aptroot', 'npm', 'app']) {
      await mkdir(join(sharedCache, d), { recursive: true });
      await symlink(join(sharedCache, d), join(cache, d));
    }
    // Hard links of the shared stages: a miss rebuilds only what changed, and never writes into the shared cache.
    await run('cp', ['-al', join(sharedCache, 'stages'), join(cache, 'stages')], { reject: false });
    out = join(work, 'out');
    const r = await cli(['--json', 'build', '--platform', PLATFORMS.join(','), '--cache', cache, '--out', out]);
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as Manifest;
  }, 1_800_000);
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("lists each platform's files in the manifest with its platform, and none of qemu's without qemu", async () => {
    expect(manifest.platforms).toEqual(PLATFORMS);
    const want = PLATFORMS.flatMap((p) => platformFiles(ID, p).map((f) => ({ file: f.file, kind: f.kind, platform: p })));
    expect(manifest.artifacts.filter((a) => a.platform).map(({ file, kind, platform }) => ({ file, kind, platform }))).toEqual(want);
    expect(manifest.artifacts.map((a) => a.kind)).not.toContain('pxe-kernel');
    expect(manifest.artifacts.map((a) => a.file)).not.toContain(`${ID}_production_image.bin`);
    for (const a of manifest.artifacts) expect((await stat(join(out, a.file))).size).toBe(a.bytes);
  });

  it('aws: a raw disk and a stream-optimized vmdk of the same virtual size', async () => {
    expect((await stat(file('aws', 'raw'))).size).toBe(manifest.disk.sizeBytes);
    const info = await imgInfo(file('aws', 'vmdk'), 'vmdk');
    expect(info.format).toBe('vmdk');
    expect(info['format-specific']?.data['create-type']).toBe('streamOptimized');
    expect(info['virtual-size']).toBe(manifest.disk.sizeBytes);
    await run('qemu-img', ['check', '-f', 'vmdk', file('aws', 'vmdk')]);
  });

  it('azure: a fixed VHD (conectix footer, disk type 2) of a whole number of MiB', async () => {
    const vhd = file('azure', 'vhd');
    const info = await imgInfo(vhd, 'vpc');
    expect(info.format).toBe('vpc');
    expect(info['virtual-size'] % MiB).toBe(0);
    expect(info['virtual-size']).toBe(manifest.disk.sizeBytes);
    // A fixed VHD is the raw disk followed by the 512-byte footer.
    const size = (await stat(vhd)).size;
    expect(size).toBe(info['virtual-size'] + 512);
    const fh = await open(vhd, 'r');
    const footer = Buffer.alloc(512);
    await fh.read(footer, 0, 512, size - 512);
    await fh.close();
    expect(footer.subarray(0, 8).toString('latin1')).toBe('conectix');
    expect(footer.readUInt32BE(60)).toBe(2);
    expect(Number(footer.readBigUInt64BE(48))).toBe(info['virtual-size']);
    // qemu-img has no check for vpc (exit 63), and its probe takes a fixed VHD for raw (the footer is at the end): -f vpc above.
    const check = await run('qemu-img', ['check', '-f', 'vpc', vhd], { reject: false });
    expect(check.exitCode).toBe(63);
    expect(check.stderr).toContain('does not support checks');
  });

  it('openstack and digitalocean: qcow2 that qemu-img checks clean', async () => {
    for (const p of ['openstack', 'digitalocean'] as const) {
      const info = await imgInfo(file(p, 'qcow2'), 'qcow2');
      expect(info.format).toBe('qcow2');
      expect(info['virtual-size']).toBe(manifest.disk.sizeBytes);
      await run('qemu-img', ['check', '-f', 'qcow2', file(p, 'qcow2')]);
    }
  });

  it('gce: a .tar.gz holding exactly one member, disk.raw, GNU format, sparse', async () => {
    const tgz = file('gce', 'gce-tar');
    const list = (await run('tar', ['-tvf', tgz])).stdout.trim().split('\n');
    expect(list).toHaveLength(1);
    expect(list[0]).toMatch(/ disk\.raw$/);
    expect(list[0]).toContain(String(manifest.disk.sizeBytes));
    const h = tarHeader(await gunzipHead(tgz, 512));
    expect(h.name).toBe('disk.raw');
    // GNU: magic "ustar  \0" (POSIX ustar has "ustar\000"); 'S' is GNU's sparse member.
    expect(h.magic).toBe('ustar  \0');
    expect(h.type).toBe('S');
  });

  it('vmware: an OVA (ustar) with the OVF first, the stream-optimized vmdk, then the SHA256 manifest', async () => {
    const ova = file('vmware', 'ova');
    const m = ovaMembers(ID);
    expect((await run('tar', ['-tf', ova])).stdout.trim().split('\n')).toEqual([m.ovf, m.vmdk, m.mf]);
    const head = Buffer.alloc(512);
    const fh = await open(ova, 'r');
    await fh.read(head, 0, 512, 0);
    await fh.close();
    expect(tarHeader(head).magic).toBe('ustar\x0000');
    const x = join(work, 'ova');
    await mkdir(x);
    await run('tar', ['-xf', ova, '-C', x]);
    const ovf = await readFile(join(x, m.ovf), 'utf8');
    // The elements OVF 1.0 requires, and what the VM needs.
    expect(ovf).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n<Envelope [^>]*xmlns="http:\/\/schemas\.dmtf\.org\/ovf\/envelope\/1"/);
    expect(ovf).toMatch(/<References>\s*<File ovf:href="([^"]+)" ovf:id="file1" ovf:size="(\d+)"\/>\s*<\/References>/);
    const ref = /<File ovf:href="([^"]+)" ovf:id="file1" ovf:size="(\d+)"\/>/.exec(ovf)!;
    expect(ref[1]).toBe(m.vmdk);
    expect(Number(ref[2])).toBe((await stat(join(x, m.vmdk))).size);
    expect(ovf).toMatch(new RegExp(`<DiskSection>[\\s\\S]*<Disk ovf:capacity="${manifest.disk.sizeBytes}"[^>]*ovf:fileRef="file1"[\\s\\S]*</DiskSection>`));
    const hw = /<VirtualHardwareSection[^>]*>([\s\S]*)<\/VirtualHardwareSection>/.exec(ovf)?.[1] ?? '';
    expect(ovf).toMatch(/<VirtualSystem ovf:id="[^"]+">[\s\S]*<VirtualHardwareSection[\s\S]*<\/VirtualSystem>\s*<\/Envelope>\s*$/);
    const items = [...hw.matchAll(/<Item>([\s\S]*?)<\/Item>/g)].map((i) => i[1]!);
    const typeOf = (it: string) => /<rasd:ResourceType>(\d+)</.exec(it)?.[1];
    const sub = (it: string) => /<rasd:ResourceSubType>([^<]+)</.exec(it)?.[1];
    expect(items.map(typeOf).sort()).toEqual(['10', '17', '3', '4', '6']);
    expect(sub(items.find((i) => typeOf(i) === '6')!)).toMatch(/^(lsilogic|VirtualSCSI)$/);
    expect(sub(items.find((i) => typeOf(i) === '10')!)).toBe('VmxNet3');
    expect(items.find((i) => typeOf(i) === '17')).toContain('ovf:/disk/vmdisk1');
    expect(ovf).toContain('ovf:key="guestinfo.coreos.config.data"');
    // The manifest: one SHA256 line per file, matching.
    const mf = (await readFile(join(x, m.mf), 'utf8')).trim().split('\n');
    expect(mf).toEqual([`SHA256(${m.ovf})= ${await sha256Of(join(x, m.ovf))}`, `SHA256(${m.vmdk})= ${await sha256Of(join(x, m.vmdk))}`]);
    const info = await imgInfo(join(x, m.vmdk), 'vmdk');
    expect(info['format-specific']?.data['create-type']).toBe('streamOptimized');
    await run('qemu-img', ['check', '-f', 'vmdk', join(x, m.vmdk)]);
  });

  it('azure: a disk size that is not a whole MiB is made again at the next MiB before the VHD', async () => {
    const odd = 8 * 1024 ** 3 + 3 * 4096;
    const profile = join(work, 'odd.yaml');
    await writeFile(profile, `extends: default\ndisk: {size: ${odd}}\n`);
    const out2 = join(work, 'out-odd');
    const r = await cli(['--json', 'build', '--profile', profile, '--platform', 'azure', '--cache', cache, '--out', out2]);
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    const vhd = join(out2, platformFiles(ID, 'azure')[0]!.file);
    const info = await imgInfo(vhd, 'vpc');
    expect(info['virtual-size']).toBe(8 * 1024 ** 3 + MiB);
    // Its partition table fills the aligned disk (the backup header at its end), and the platform id is on its entry.
    const raw = join(work, 'odd.raw');
    await run('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', vhd, raw]);
    const gpt = await readGpt(raw);
    expect(gpt.status?.primaryOk && gpt.status.backupOk).toBe(true);
    expect(Number(gpt.totalSectors) * gpt.sectorSize).toBe(8 * 1024 ** 3 + MiB);
    expect(await entryOptions(raw)).toEqual([expect.stringMatching(/ basalt\.oem\.id=azure$/)]);
    await rm(raw);
  });

  it('iso: a hybrid EFI ISO (El Torito UEFI image and GPT partition 2 of the ESP type, xorriso and isoinfo) whose FAT boots the live entry, and which carries the disk and its manifest', async () => {
    const out3 = join(work, 'out-iso');
    const r = await cli(['--json', 'build', '--platform', 'iso', '--cache', cache, '--out', out3]);
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    const iso = join(out3, platformFiles(ID, 'iso')[0]!.file);
    const torito = await run('xorriso', ['-indev', iso, '-report_el_torito', 'plain', '-report_system_area', 'plain']);
    const report = torito.stdout + torito.stderr;
    expect(report).toMatch(/El Torito boot img : +1 +UEFI +y +none/);
    // C12A7328-F81F-11D2-BA4B-00A0C93EC93B, the EFI System Partition, as GPT stores it.
    expect(report).toMatch(/GPT type GUID +: +2 +28732ac11ff8d211ba4b00a0c93ec93b/);
    const start = Number(/GPT start and size : +2 +(\d+) +(\d+)/.exec(report)![1]) * 512;
    const info = (await run('isoinfo', ['-d', '-i', iso])).stdout;
    expect(info).toMatch(/Volume id: BASALT_/);
    const files = (await run('isoinfo', ['-f', '-R', '-i', iso])).stdout.split('\n');
    expect(files).toEqual(expect.arrayContaining(['/README.txt', `/basalt/${ID}_production_image.bin.zst`, '/basalt/manifest.json']));
    const inIso = JSON.parse((await run('isoinfo', ['-R', '-x', '/basalt/manifest.json', '-i', iso])).stdout) as Manifest;
    expect(inIso.artifacts).toEqual([expect.objectContaining({ file: `${ID}_production_image.bin`, kind: 'raw', digest: 'sparse-sha256' })]);
    // The ESP inside: systemd-boot, and the live entry with the iso platform id.
    const esp = new MtoolsEsp(iso, start);
    expect(await esp.list('/EFI/BOOT')).toContain('BOOTX64.EFI');
    expect(await esp.read('/loader/loader.conf')).toMatch(/^default basalt-live\.conf$/m);
    const entry = (await esp.read('/loader/entries/basalt-live.conf')) ?? '';
    expect(entry).toMatch(/^linux \/basalt\/live\/vmlinuz$/m);
    expect(entry).toMatch(/^options .*basalt\.usr=\/usr\.img .*root=tmpfs.* basalt\.oem\.id=iso$/m);
    expect(await esp.list('/basalt/live')).toEqual(['initrd', 'vmlinuz']);
  });

  it("puts the platform id on the boot entry of each platform's disk", async () => {
    const raws = join(work, 'raws');
    await mkdir(raws, { recursive: true });
    const asRaw = async (p: BuildPlatform): Promise<string> => {
      const to = join(raws, `${p}.raw`);
      const [f] = platformFiles(ID, p);
      const src = join(out, f!.file);
      switch (f!.kind) {
        case 'raw':
          return src;
        case 'gce-tar':
          await mkdir(join(raws, 'gce'));
          await run('tar', ['-xSzf', src, '-C', join(raws, 'gce')]);
          return join(raws, 'gce', 'disk.raw');
        case 'ova': {
          const vmdk = ovaMembers(ID).vmdk;
          await run('tar', ['-xf', src, '-C', raws, vmdk]);
          return asRawImage(join(raws, vmdk), 'vmdk', to);
        }
        case 'vhd':
          return asRawImage(src, 'vpc', to);
        default:
          return asRawImage(src, f!.kind, to);
      }
    };
    const asRawImage = async (src: string, format: string, to: string) => {
      await run('qemu-img', ['convert', '-f', format, '-O', 'raw', src, to]);
      return to;
    };
    for (const p of PLATFORMS) {
      const raw = await asRaw(p);
      const options = await entryOptions(raw);
      expect(options.length, p).toBeGreaterThan(0);
      for (const o of options) {
        expect(o, p).toMatch(new RegExp(` basalt\\.oem\\.id=${p}$`));
        expect(o.match(/oem\.id=/g), p).toHaveLength(1);
      }
      if (raw.startsWith(raws)) await rm(raw, { force: true });
    }
  });
});

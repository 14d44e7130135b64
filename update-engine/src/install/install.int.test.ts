/**
 * `basalt install` onto image files: a small test disk (the coreos layout
 * with small partitions, an ESP made with mkfs.vfat holding a boot entry,
 * some data in USR-A) and its manifest.json with the sparse digest, as
 * `basalt build` writes them. Checks what the first boot reads (the config
 * drive on OEM-CONFIG through cloudinit's config-drive reader, the platform
 * id on the boot entry) and that bad input writes nothing. All under
 * os.tmpdir(); no block devices (the mounted-device refusal is in
 * plan.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../../common/src/exec.js';
import { createDisk, partitionRange, readGpt } from '../../../common/src/gpt/index.js';
import { sparseSha256 } from '../../../common/src/sparse.js';
import { configDrive } from '../../../cloudinit/src/datasource/index.js';
import { MtoolsEsp } from '../host/esp.js';
import { install } from './install.js';

const have = (t: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, t)));
const tools = ['mkfs.vfat', 'mmd', 'mcopy', 'mtype', 'filefrag'].every(have);
const MiB = 1024 * 1024;
const CONFIG = '#cloud-config\nhostname: installed\nssh_authorized_keys:\n  - ssh-ed25519 AAAA test\n';
const ENTRY = 'title Basalt 1.0.0 (USR-A)\nversion 1.0.0\nsort-key basalt\nlinux /basalt/a/vmlinuz\ninitrd /basalt/a/initrd\noptions mount.usr=/dev/mapper/usr basalt.slot=A console=ttyS0,115200\n';

async function writeAt(path: string, offset: number, data: Buffer) {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

describe.skipIf(!tools)('basalt install onto an image file (skipped without dosfstools, mtools, e2fsprogs filefrag)', () => {
  let dir: string;
  let image: string;
  let manifest: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'basalt-install-'));
    image = join(dir, 'basalt_test_image.bin');
    const gpt = await createDisk(image, { layout: 'coreos', sizes: { 'EFI-SYSTEM': 32 * MiB, 'USR-A': 8 * MiB, 'USR-B': 8 * MiB, OEM: 8 * MiB, 'OEM-CONFIG': 8 * MiB }, seed: 'install-test' });
    const espPart = gpt.partitions.find((p) => p.label === 'EFI-SYSTEM')!;
    const esp = join(dir, 'esp.vfat');
    await run('mkfs.vfat', ['-C', '-n', 'EFI-SYSTEM', esp, String(partitionRange(gpt, espPart).length / 1024)]);
    await run('mmd', ['-i', esp, '::/loader', '::/loader/entries'], { env: { MTOOLS_SKIP_CHECK: '1' } });
    writeFileSync(join(dir, 'entry.conf'), ENTRY);
    await run('mcopy', ['-i', esp, join(dir, 'entry.conf'), '::/loader/entries/basalt-a+3.conf'], { env: { MTOOLS_SKIP_CHECK: '1' } });
    await writeAt(image, partitionRange(gpt, espPart).offset, readFileSync(esp));
    rmSync(esp);
    await writeAt(image, partitionRange(gpt, gpt.partitions.find((p) => p.label === 'USR-A')!).offset, randomBytes(MiB));
    manifest = join(dir, 'manifest.json');
    const bytes = Number(gpt.totalSectors * BigInt(gpt.sectorSize));
    writeFileSync(manifest, JSON.stringify({ formatVersion: 2, artifacts: [{ file: 'basalt_test_image.bin', kind: 'raw', bytes, sha256: await sparseSha256(image), digest: 'sparse-sha256' }] }));
    writeFileSync(join(dir, 'user_data.yml'), CONFIG);
    writeFileSync(join(dir, 'bad.yml'), '#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: [1\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the image, the cloud-config as a config-2 drive and the platform id', async () => {
    const target = join(dir, 'target.bin');
    writeFileSync(target, 'old contents');
    const r = await install({ target, image, cloudConfig: join(dir, 'user_data.yml'), platform: 'aws' });
    expect(r).toMatchObject({ kind: 'file', platform: 'aws' });
    // The partition table as `basalt disk show` reads it.
    const gpt = await readGpt(target);
    expect(gpt.status?.primaryOk && gpt.status.backupOk).toBe(true);
    expect(gpt.partitions.map((p) => p.label)).toEqual(['EFI-SYSTEM', 'BIOS-BOOT', 'USR-A', 'USR-B', 'OEM', 'OEM-CONFIG', 'ROOT']);
    // The boot entry carries the platform id; the rest of the line as it was.
    const esp = new MtoolsEsp(target, partitionRange(gpt, gpt.partitions.find((p) => p.label === 'EFI-SYSTEM')!).offset);
    expect(await esp.read('/loader/entries/basalt-a+3.conf')).toBe(ENTRY.replace('console=ttyS0,115200', 'console=ttyS0,115200 basalt.oem.id=aws'));
    // The OEM-CONFIG partition is what the first boot's config-drive unit reads.
    const oc = partitionRange(gpt, gpt.partitions.find((p) => p.label === 'OEM-CONFIG')!);
    const drive = join(dir, 'oem-config.vfat');
    const fh = await open(target, 'r');
    const buf = Buffer.alloc(oc.length);
    await fh.read(buf, 0, oc.length, oc.offset);
    await fh.close();
    writeFileSync(drive, buf);
    expect(Buffer.from(await configDrive(drive).fetchUserdata()).toString()).toBe(CONFIG);
    // USR-A is the image's, byte for byte; no temporary file is left.
    const usr = partitionRange(gpt, gpt.partitions.find((p) => p.label === 'USR-A')!);
    const a = Buffer.alloc(MiB);
    const b = Buffer.alloc(MiB);
    for (const [f, x] of [[image, a], [target, b]] as const) {
      const h = await open(f, 'r');
      await h.read(x, 0, MiB, usr.offset);
      await h.close();
    }
    expect(a.equals(b)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('installs a zstd-compressed image (as the live ISO carries it), checked against the raw artifact; refuses garbage and an image larger than its manifest says', async () => {
    const zdir = join(dir, 'zst');
    await run('mkdir', ['-p', zdir]);
    const z = join(zdir, 'basalt_test_image.bin.zst');
    await run('zstd', ['-q', '-3', '-o', z, image]);
    const target = join(dir, 'from-zst.bin');
    const r = await install({ target, image: z, manifest, platform: 'iso' });
    expect(r).toMatchObject({ kind: 'file', platform: 'iso', sha256: await sparseSha256(image) });
    // The written file is sparse: its holes stayed holes.
    expect(statSync(target).blocks * 512).toBeLessThan(statSync(target).size / 2);
    const garbage = join(zdir, 'garbage.bin.zst');
    writeFileSync(garbage, randomBytes(4096));
    const gm = join(zdir, 'manifest.json');
    writeFileSync(gm, readFileSync(manifest, 'utf8').replace('basalt_test_image.bin', 'garbage.bin'));
    await expect(install({ target: join(dir, 'g.bin'), image: garbage })).rejects.toMatchObject({ code: 'E_INSTALL_VERIFY', message: expect.stringMatching(/garbage\.bin\.zst: not a zstd-compressed image .*; nothing written/) as unknown });
    const small = join(zdir, 'manifest-small.json');
    writeFileSync(small, readFileSync(manifest, 'utf8').replace(/"bytes":\d+/, '"bytes":1048576'));
    await expect(install({ target: join(dir, 's.bin'), image: z, manifest: small })).rejects.toMatchObject({ code: 'E_INSTALL_VERIFY', message: expect.stringMatching(/expands to more than the 1048576 bytes its manifest says; nothing written/) as unknown });
    // One byte changed in the image's data, the size kept: the digest taken while expanding differs.
    const bad = readFileSync(image);
    const at = bad.findIndex((b) => b !== 0);
    bad[at] = bad[at]! ^ 0xff;
    const tampered = join(zdir, 'tampered', 'basalt_test_image.bin');
    await run('mkdir', ['-p', dirname(tampered)]);
    writeFileSync(tampered, bad);
    await run('zstd', ['-q', '-3', '--rm', '-o', `${tampered}.zst`, tampered]);
    await expect(install({ target: join(dir, 't.bin'), image: `${tampered}.zst`, manifest })).rejects.toMatchObject({ code: 'E_INSTALL_VERIFY', message: expect.stringMatching(/basalt_test_image\.bin\.zst: digest [0-9a-f]{64} differs from .*; nothing written/) as unknown });
    expect(existsSync(join(dir, 'g.bin')) || existsSync(join(dir, 's.bin')) || existsSync(join(dir, 't.bin'))).toBe(false);
  });

  it('downloads with -u: the signed manifest first (basalt keys sign), then the image no larger than it says; refuses a wrong or missing signature and an endless image, asking no further', async () => {
    const { makeKeys } = await import('../../test/helpers.js');
    const { main } = await import('../../../cli/main.js');
    const { createServer } = await import('node:http');
    const keys = await makeKeys(dir);
    const other = await makeKeys(dir, true);
    const site = join(dir, 'site');
    await run('mkdir', ['-p', site]);
    await run('zstd', ['-q', '-3', '-o', join(site, 'basalt_test_image.bin.zst'), image]);
    writeFileSync(join(site, 'manifest.json'), readFileSync(manifest));
    let err = '';
    expect(await main(['keys', 'sign', join(site, 'manifest.json'), '--key', keys.priv], 'basalt', { out: () => {}, err: (t) => (err += t) }), err).toBe(0);
    const asked: string[] = [];
    let endless = false;
    const srv = createServer((req, res) => {
      asked.push(req.url ?? '');
      if (endless && req.url?.endsWith('.zst')) {
        res.writeHead(200);
        const tick = () => {
          if (!res.destroyed && res.write(Buffer.alloc(65536, 1))) setImmediate(tick);
          else if (!res.destroyed) res.once('drain', tick);
        };
        return tick();
      }
      const path = join(site, decodeURIComponent(req.url ?? '/').slice(1));
      if (existsSync(path)) res.writeHead(200).end(readFileSync(path));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/basalt_test_image.bin.zst`;
    try {
      const target = join(dir, 'from-url.bin');
      const r = await install({ target, image: url, keyring: keys.pub, platform: 'metal' });
      expect(r).toMatchObject({ kind: 'file', signedBy: keys.fingerprint.toUpperCase(), sha256: await sparseSha256(image) });
      expect(asked).toEqual(['/manifest.json', '/manifest.json.sig', '/basalt_test_image.bin.zst']);
      // Another publisher's keys: refused before the image is asked for.
      asked.length = 0;
      await expect(install({ target: join(dir, 'u1.bin'), image: url, keyring: other.pub })).rejects.toMatchObject({ code: 'E_INSTALL_SIGNATURE', message: expect.stringMatching(/manifest\.json: .*; nothing written/) as unknown });
      expect(asked).toEqual(['/manifest.json', '/manifest.json.sig']);
      // No signature at all.
      rmSync(join(site, 'manifest.json.sig'));
      await expect(install({ target: join(dir, 'u2.bin'), image: url, keyring: keys.pub })).rejects.toMatchObject({ code: 'E_INSTALL_SIGNATURE', message: expect.stringMatching(/manifest\.json\.sig: no signature of the manifest; nothing written/) as unknown });
      // -f with a keyring wants the signature too.
      await expect(install({ target: join(dir, 'u3.bin'), image: join(site, 'basalt_test_image.bin.zst'), keyring: keys.pub })).rejects.toMatchObject({ code: 'E_INSTALL_SIGNATURE' });
      await main(['keys', 'sign', join(site, 'manifest.json'), '--key', keys.priv], 'basalt', { out: () => {}, err: () => {} });
      // An image that never ends is cut at the manifest's size.
      endless = true;
      await expect(install({ target: join(dir, 'u4.bin'), image: url, keyring: keys.pub })).rejects.toMatchObject({ code: 'E_INSTALL_DOWNLOAD', message: expect.stringMatching(/basalt_test_image\.bin\.zst: the reply is larger than \d+ bytes; nothing written/) as unknown });
      for (const f of ['u1.bin', 'u2.bin', 'u3.bin', 'u4.bin']) expect(existsSync(join(dir, f))).toBe(false);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  }, 60_000);

  it('installs with -C the disk image of the release a channel is at (basalt release --image), verified with TUF; refuses bytes that are not the signed target, and a release without an image', async () => {
    const { makeKeys, makeUsr } = await import('../../test/helpers.js');
    const { readPrivateKeyFile } = await import('../publish/keys.js');
    const { release } = await import('../publish/repo.js');
    const { createServer } = await import('node:http');
    const keys = await makeKeys(dir);
    const key = await readPrivateKeyFile(keys.priv);
    const repo = join(dir, 'repo');
    const now = new Date();
    await release({ usr: await makeUsr(dir, '1.0.0', { randomKiB: 16 }), version: '1.0.0', channel: 'stable', key, repo, now, expiresMs: 86_400_000, tuf: keys.tuf.publish, image });
    await release({ usr: await makeUsr(dir, '1.1.0', { randomKiB: 16 }), version: '1.1.0', channel: 'beta', key, repo, now, expiresMs: 86_400_000, tuf: keys.tuf.publish });
    const zst = join(repo, 'payloads/1.0.0/image/basalt_test_image.bin.zst');
    expect(existsSync(zst) && existsSync(join(repo, 'payloads/1.0.0/image/manifest.json'))).toBe(true);
    const srv = createServer((req, res) => {
      const path = join(repo, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).slice(1));
      if (existsSync(path) && statSync(path).isFile()) res.writeHead(200).end(readFileSync(path));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/`;
    try {
      const r = await install({ target: join(dir, 'from-channel.bin'), image: url, channel: 'stable', tufRoot: keys.tuf.root, platform: 'metal' });
      expect(r).toMatchObject({ kind: 'file', sha256: await sparseSha256(image), signedBy: expect.stringMatching(/^TUF, stable 1\.0\.0, targets v\d+$/) as unknown });
      await expect(install({ target: join(dir, 'c1.bin'), image: url, channel: 'beta', tufRoot: keys.tuf.root })).rejects.toMatchObject({ code: 'E_INSTALL_DOWNLOAD', message: expect.stringMatching(/channel beta is at 1\.1\.0, which has no disk image/) as unknown });
      // A mirror that serves other bytes of the same length.
      const good = readFileSync(zst);
      writeFileSync(zst, Buffer.from(good).fill(7, 100, 200));
      await expect(install({ target: join(dir, 'c2.bin'), image: url, channel: 'stable', tufRoot: keys.tuf.root })).rejects.toMatchObject({ code: 'E_INSTALL_SIGNATURE', message: expect.stringMatching(/not the signed target payloads\/1\.0\.0\/image\/basalt_test_image\.bin\.zst/) as unknown });
      writeFileSync(zst, good);
      for (const f of ['c1.bin', 'c2.bin']) expect(existsSync(join(dir, f))).toBe(false);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  }, 60_000);

  it.each([
    ['an unknown platform', { platform: 'nimbus' }, 'E_INSTALL_PLATFORM', /-o nimbus: not a platform Basalt knows/],
    ['a cloud-config with an error', { cloudConfig: 'bad.yml' }, 'E_INSTALL_CONFIG', /bad\.yml: line \d+: /],
    ['a digest that differs from the manifest', { manifestSha: '00'.repeat(32) }, 'E_INSTALL_VERIFY', /digest [0-9a-f]{64} differs from 0{64} in .*manifest-bad\.json; nothing written/],
    ['an image the manifest does not name', { manifestFile: 'other.bin' }, 'E_INSTALL_MANIFEST', /no raw disk artifact named basalt_test_image\.bin/],
  ])('refuses %s with one error and writes nothing', async (_what, bad: { platform?: string; cloudConfig?: string; manifestSha?: string; manifestFile?: string }, code, message) => {
    const target = join(dir, `refused-${code}.bin`);
    let m = manifest;
    if (bad.manifestSha !== undefined || bad.manifestFile !== undefined) {
      const doc = JSON.parse(readFileSync(manifest, 'utf8')) as { artifacts: { file: string; sha256: string }[] };
      if (bad.manifestSha) doc.artifacts[0]!.sha256 = bad.manifestSha;
      if (bad.manifestFile) doc.artifacts[0]!.file = bad.manifestFile;
      m = join(dir, 'manifest-bad.json');
      writeFileSync(m, JSON.stringify(doc));
    }
    await expect(install({ target, image, manifest: m, platform: bad.platform, cloudConfig: bad.cloudConfig ? join(dir, bad.cloudConfig) : undefined })).rejects.toMatchObject({ code, message: expect.stringMatching(message) as unknown });
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('through the basalt command: one line and exit 1 on bad input; a summary line on success', async () => {
    const { main } = await import('../../../cli/main.js');
    const cli = async (argv: string[]) => {
      let out = '';
      let err = '';
      const code = await main(argv, 'basalt', { out: (t) => (out += t), err: (t) => (err += t) });
      return { code, out, err };
    };
    const target = join(dir, 'cli.bin');
    const bad = await cli(['install', '-d', target, '-f', image, '-o', 'nimbus']);
    expect(bad.code).toBe(1);
    expect(bad.err.trim().split('\n').filter((l) => !l.startsWith('hint:') && !/^\s/.test(l))).toHaveLength(1);
    expect(bad.err).toContain('-o nimbus: not a platform Basalt knows');
    expect(existsSync(target)).toBe(false);
    expect((await cli(['install', '-f', image])).code).toBe(2);
    const ok = await cli(['install', '-d', target, '-f', image, '-o', 'gce']);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^installed .*basalt_test_image\.bin \(sha256 [0-9a-f]{12}…\) to .*cli\.bin, platform gce\n$/);
  });

  const rootDev = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[1] === '/')?.[0];
  const rootIsBlock = rootDev !== undefined && rootDev.startsWith('/dev/') && existsSync(rootDev) && statSync(rootDev).isBlockDevice();
  it.skipIf(!rootIsBlock)('refuses the block device that holds the running system, before reading the image (skipped when / is not on a block device, as in a container)', async () => {
    await expect(install({ target: rootDev!, image })).rejects.toMatchObject({ code: 'E_INSTALL_TARGET_BUSY', message: `${rootDev!}: ${rootDev!} is mounted at /: it holds the running system; nothing written` });
  });

  it('refuses to write the image onto itself, and a folder that does not exist', async () => {
    await expect(install({ target: image, image })).rejects.toMatchObject({ code: 'E_INSTALL_TARGET' });
    await expect(install({ target: join(dir, 'no/such/dir/x.bin'), image })).rejects.toMatchObject({ code: 'E_INSTALL_TARGET' });
  });
});

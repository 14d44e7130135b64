/**
 * A cloud image boots from its metadata service: the default image, given the
 * aws platform id by `basalt install -o aws` (the id goes on the boot entry;
 * the USR image is the same for every platform), boots under QEMU with the
 * user network addressed as EC2's link-local net, so that the guest's
 * 169.254.169.254 is the host, where an IMDS emulation (IMDSv2 required:
 * token PUT with its TTL header, the token on every read) listens on port 80.
 * The first boot must take its user data and the metadata's SSH key from
 * there: the hostname and a file from the user data, core's login with the
 * key the metadata lists.
 *
 * The live ISO (`basalt build --platform iso`) boots from a CD-ROM under
 * OVMF to the live system (root in RAM, /usr verified), which takes an SSH
 * key from a config drive; core mounts the ISO and runs `basalt install` onto
 * a blank second disk with a cloud-config; that disk then boots alone to
 * basalt-ready with the cloud-config applied.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { run as exec } from '../../common/src/exec.js';
import { makeConfigDrive } from '../src/configdrive.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../common/test/helpers.js';
import { imds, serveHandler } from '../../cloudinit/test/imds.js';
import { Vm } from '../src/vm.js';
import { Ssh } from './fleet.js';
import { basalt, buildImage, haveQemu, isRoot, vmOutDir, keepLogsIfFailed, partitions, type Manifest } from './image.js';

const canRun = isRoot && haveQemu;
const outDir = vmOutDir('default-platforms');
let manifest: Manifest;
let work: string;
/** The live ISO's build: its own output folder. */
let isoOut: string;
let isoManifest: Manifest;

describe.skipIf(!canRun)('platforms (skipped unless root with qemu-system-x86 and ovmf: the build needs root, the metadata service port 80)', () => {
  beforeAll(async () => {
    manifest = await buildImage(outDir);
    work = await mkdtemp(join(tmpdir(), 'basalt-vm-platforms-'));
    isoOut = join(work, 'out-iso');
    isoManifest = await buildImage(isoOut, ['--platform', 'iso']);
  });
  afterAll(async ({}, suite) => {
    await keepLogsIfFailed(suite, work, 'platforms');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('aws: the first boot applies the user data and the SSH key of the instance metadata service (IMDSv2)', async () => {
    const key = await Ssh.keypair(work);
    const raw = join(outDir, manifest.artifacts.find((a) => a.kind === 'raw')!.file);
    const disk = join(work, 'aws.raw');
    expect(await basalt(['install', '-d', disk, '-f', raw, '-o', 'aws'])).toMatch(/aws/);
    expect((await partitions(disk)).map((p) => p.label)).toContain('USR-A');
    const userData = ['#cloud-config', 'hostname: basalt-aws-1', 'write_files:', '  - path: /etc/basalt-platform-test', '    content: from the instance user data', ''].join('\n');
    const svc = await serveHandler(
      imds({ required: true }, {
        '/latest/user-data': userData,
        '/latest/meta-data/local-hostname': 'ip-169-254-169-15.ec2.internal',
        '/latest/meta-data/local-ipv4': '169.254.169.15',
        '/latest/meta-data/public-keys/': '0=basalt-test',
        '/latest/meta-data/public-keys/0/openssh-key': `${key.pub}\n`,
      }),
      80,
    );
    const sshPort = await freePort();
    await mkdir(join(work, 'vm-aws'), { recursive: true });
    const vm = new Vm({ workdir: join(work, 'vm-aws'), disk, net: { net: '169.254.169.0/24', host: '169.254.169.254', dhcpStart: '169.254.169.15' }, hostfwd: [{ host: sshPort, guest: 22 }] });
    try {
      await vm.start();
      const ready = await vm.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 25 * 60_000, { what: 'basalt-ready on the aws image' });
      process.stderr.write(`[platforms aws] basalt-ready after ${(ready.atMs / 1000).toFixed(1)} s, ${svc.reqs.length} metadata requests\n`);
      const ssh = new Ssh(sshPort, key.key);
      await ssh.waitUp(5 * 60_000, 'core');
      expect((await ssh.exec('hostname', 'core')).trim()).toBe('basalt-aws-1');
      expect((await ssh.exec('cat /etc/basalt-platform-test', 'core')).trim()).toBe('from the instance user data');
      expect((await ssh.exec('cat /proc/cmdline', 'core')).trim()).toMatch(/(^| )basalt\.oem\.id=aws( |$)/);
      // IMDSv2: a token PUT with its TTL, then every read carried a token the service issued.
      const puts = svc.reqs.filter((r) => r.method === 'PUT');
      expect(puts.length).toBeGreaterThanOrEqual(1);
      expect(puts[0]!.headers['x-aws-ec2-metadata-token-ttl-seconds']).toMatch(/^\d+$/);
      const gets = svc.reqs.filter((r) => r.method === 'GET');
      expect(gets.map((r) => r.url)).toContain('/latest/user-data');
      expect(gets.every((r) => typeof r.headers['x-aws-ec2-metadata-token'] === 'string')).toBe(true);
      await vm.qmp.execute('system_powerdown');
      await vm.waitForExit(5 * 60_000);
    } finally {
      await vm.dispose();
      await svc.close();
    }
  });

  it('iso: the live ISO boots from a CD-ROM, installs onto a blank disk with a cloud-config, and that disk boots with it applied', async () => {
    const key = await Ssh.keypair(work);
    const iso = join(isoOut, isoManifest.artifacts.find((a) => a.kind === 'iso')!.file);
    const live = await makeConfigDrive(join(work, 'live-config.iso'), ['#cloud-config', 'ssh_authorized_keys:', `  - ${key.pub}`, ''].join('\n'));
    const target = join(work, 'target.qcow2');
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', target, '10G']);
    const sshPort = await freePort();
    await mkdir(join(work, 'vm-iso'), { recursive: true });
    const vm = new Vm({ workdir: join(work, 'vm-iso'), cdrom: iso, configDrive: live, disks: [target], memoryMiB: 3072, hostfwd: [{ host: sshPort, guest: 22 }] });
    const installed = ['#cloud-config', 'hostname: basalt-installed', 'ssh_authorized_keys:', `  - ${key.pub}`, 'write_files:', '  - path: /etc/basalt-install-test', '    content: written by the installer', ''].join('\n');
    try {
      await vm.start();
      const ready = await vm.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 20 * 60_000, { what: 'basalt-ready from the live ISO' });
      process.stderr.write(`[platforms iso] live system ready after ${(ready.atMs / 1000).toFixed(1)} s\n`);
      expect(ready.match[1]).toBe('PXE');
      const ssh = new Ssh(sshPort, key.key);
      await ssh.waitUp(5 * 60_000, 'core');
      expect((await ssh.exec('cat /proc/cmdline', 'core')).trim()).toMatch(/(^| )basalt\.oem\.id=iso( |$)/);
      expect((await ssh.exec('findmnt -no FSTYPE /', 'core')).trim()).toBe('tmpfs');
      // The blank disk: the 10 GiB one (the config drive is the other virtio disk).
      const disks = (await ssh.exec('lsblk -dbnpo PATH,SIZE,TYPE', 'core')).trim().split('\n').map((l) => l.trim().split(/\s+/));
      const dev = disks.find((d) => d[1] === String(10 * 1024 ** 3) && d[2] === 'disk')?.[0];
      expect(dev, JSON.stringify(disks)).toMatch(/^\/dev\/vd[a-z]$/);
      await ssh.exec(`cat > /tmp/installed.yml <<'EOF'\n${installed}EOF`, 'core');
      const t0 = Date.now();
      const out = await ssh.exec(`sudo mkdir -p /run/basalt-iso && sudo mount -o ro /dev/sr0 /run/basalt-iso && sudo basalt install -d ${dev!} -f /run/basalt-iso/basalt/${isoManifest.artifacts.find((a) => a.kind === 'raw')?.file ?? 'basalt_production_image.bin'}.zst -c /tmp/installed.yml -o qemu 2>&1; echo "exit=$?"`, 'core', 20 * 60_000);
      process.stderr.write(`[platforms iso] basalt install took ${((Date.now() - t0) / 1000).toFixed(1)} s: ${out.trim().split('\n').at(-2) ?? ''}\n`);
      expect(out).toMatch(/exit=0\n$/);
      expect(out).toMatch(/^installed .* to \/dev\/vd[a-z]/m);
      await vm.qmp.execute('system_powerdown');
      await vm.waitForExit(5 * 60_000);
    } finally {
      await vm.dispose();
    }
    await mkdir(join(work, 'vm-installed'), { recursive: true });
    const port2 = await freePort();
    const vm2 = new Vm({ workdir: join(work, 'vm-installed'), disk: target, diskMode: 'direct', hostfwd: [{ host: port2, guest: 22 }] });
    try {
      await vm2.start();
      const ready = await vm2.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 25 * 60_000, { what: 'basalt-ready on the installed disk' });
      process.stderr.write(`[platforms iso] installed disk ready after ${(ready.atMs / 1000).toFixed(1)} s\n`);
      expect(ready.match[1]).toBe('A');
      const ssh = new Ssh(port2, key.key);
      await ssh.waitUp(5 * 60_000, 'core');
      expect((await ssh.exec('hostname', 'core')).trim()).toBe('basalt-installed');
      expect((await ssh.exec('cat /etc/basalt-install-test', 'core')).trim()).toBe('written by the installer');
      await vm2.qmp.execute('system_powerdown');
      await vm2.waitForExit(5 * 60_000);
    } finally {
      await vm2.dispose();
    }
  });
});

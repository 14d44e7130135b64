/**
 * Boot tests of the default image (`basalt build` into out/) under QEMU + OVMF
 * (TCG unless KVM works):
 * 1. with USR-A corrupted after the build and left with one try (as an update
 *    leaves a new slot) and a good copy in USR-B (kernel, initrd and entry
 *    installed on the ESP), the initrd refuses A and boot counting moves to B;
 * 2. `basalt qemu run IMAGE --snapshot --cloud-config FILE`, the command for
 *    people, boots the image to slot A with its console on stdout (/usr from
 *    dm-verity, etcd and docker active, the cloud-config applied) and quits on
 *    Ctrl-A X without writing the image.
 * First boot on a grown disk (ROOT grown, slot A marked good, entry blessed)
 * and PXE are checked by scenarios.vm.test.ts, on the same builder's images.
 * One VM at a time; each boot gets minutes, not seconds (TCG).
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFileName, renderEntry } from '../../common/src/boot.js';
import { Vm } from '../src/vm.js';
import { Ssh } from './fleet.js';
import { run as exec } from '../../common/src/exec.js';
import { freePort, spawnCli } from '../../common/test/helpers.js';
import { basalt, buildImage, copyDisk, corrupt, keepLogsIfFailed, espCopy, espList, espMkdir, espRename, haveQemu, isRoot, vmOutDir, parseStatus, part, partitions, writeInto, type Manifest } from './image.js';

const canRun = isRoot && haveQemu;
const outDir = vmOutDir('default-boot');
let manifest: Manifest;
let work: string;

describe.skipIf(!canRun)('boot (skipped unless root with qemu-system-x86 and ovmf: the build needs root)', () => {
  beforeAll(async () => {
    manifest = await buildImage(outDir);
    work = await mkdtemp(join(tmpdir(), 'basalt-vm-'));
  });
  afterAll(async ({}, suite) => {
    await keepLogsIfFailed(suite, work, 'boot');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('falls back to slot B when USR-A is corrupted and its last try fails', async () => {
    const disk = await copyDisk(outDir, manifest, join(work, 'fallback.raw'));
    let parts = await partitions(disk);
    const esp = part(parts, 'EFI-SYSTEM');
    // As built, A is on trial with three tries: the entry's counter and the GPT agree.
    expect(await espList(disk, esp, '/loader/entries')).toEqual([entryFileName('a', 3)]);
    expect(part(parts, 'USR-A').slot).toMatchObject({ priority: 1, tries: 3, successful: false });
    // Slot A as an update leaves a new slot: one try left (entry +1, GPT tries 1). Each of the
    // three would be refused the same way, ~1 min apiece under TCG.
    await espRename(disk, esp, `/loader/entries/${entryFileName('a', 3)}`, `/loader/entries/${entryFileName('a', 1)}`);
    await basalt(['disk', 'set', disk, '-i', String(part(parts, 'USR-A').index), '--tries', '1']);
    // A good copy of /usr in USR-B, its kernel and initrd, and its (older) entry.
    await writeInto(disk, join(outDir, 'usr.img'), part(parts, 'USR-B').offset);
    await espMkdir(disk, esp, '/basalt/b');
    await espCopy(disk, esp, join(outDir, 'vmlinuz'), '/basalt/b/vmlinuz');
    await espCopy(disk, esp, join(outDir, 'initrd'), '/basalt/b/initrd');
    const entryB = join(work, entryFileName('b'));
    const extra = manifest.kernel.cmdline.split(' ').filter((w) => w.startsWith('console=') || w.startsWith('panic='));
    await writeFile(entryB, renderEntry({ slot: 'b', version: '0.0.1', rootHash: manifest.usr.rootHash, hashOffset: manifest.usr.hashOffset, fsType: manifest.usr.fsType, extraCmdline: extra }));
    await espCopy(disk, esp, entryB, `/loader/entries/${entryFileName('b')}`);
    // Corrupt the start of USR-A's filesystem (its superblock): verity must refuse it.
    await corrupt(disk, part(parts, 'USR-A').offset, 64 * 1024);
    await mkdir(join(work, 'vm-fallback'), { recursive: true });
    const vm = new Vm({ workdir: join(work, 'vm-fallback'), disk, diskMode: 'direct' });
    try {
      await vm.start();
      await vm.waitFor(/basalt\.slot=A/, 6 * 60_000, { what: 'a boot attempt of slot A' });
      const ready = await vm.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 25 * 60_000, { what: 'basalt-ready after falling back' });
      process.stderr.write(`[boot fallback] basalt-ready slot=${ready.match[1]} after ${(ready.atMs / 1000).toFixed(1)} s, ${vm.restarts} restart(s) by the guest\n`);
      expect(ready.match[1]).toBe('B');
      // Slot A's refused try ended in the guest's own reset: QEMU exited (-no-reboot) and was started again.
      expect(vm.restarts).toBeGreaterThanOrEqual(1);
      expect(vm.events.some((e) => e.event === 'SHUTDOWN' && e.data?.['reason'] === 'guest-reset')).toBe(true);
      const log = await readFile(vm.logPath, 'utf8');
      expect(log).toMatch(/device-mapper: verity|basalt-verity|Failed to mount|emergency/i);
      expect(log).not.toMatch(/Give root password for maintenance/);
      await vm.qmp.execute('system_powerdown');
      await vm.waitForExit(5 * 60_000);
    } finally {
      await vm.dispose();
    }
    parts = await partitions(disk);
    expect(part(parts, 'USR-B').slot).toMatchObject({ successful: true });
    expect(part(parts, 'USR-B').slot!.priority).toBeGreaterThan(part(parts, 'USR-A').slot!.priority);
    const entries = await espList(disk, esp, '/loader/entries');
    expect(entries).toContain(entryFileName('b'));
    // The loader counted the one failed try of A.
    expect(entries).toContain('basalt-a+0-1.conf');
    expect(part(parts, 'USR-A').slot!.successful).toBe(false);
  });
  it('basalt qemu run: boots the image for a person with a cloud-config, console on stdout; the operator logs in as core (sudo, status, locksmithctl, toolbox, motd); Ctrl-A X quits, --snapshot leaves the image alone', async () => {
    const raw = join(outDir, manifest.artifacts.find((a) => a.kind === 'raw')!.file);
    const before = await stat(raw);
    const key = await Ssh.keypair(work);
    const cc = join(work, 'qemu-run.yml');
    await writeFile(
      cc,
      [
        '#cloud-config',
        'hostname: basalt-qemu-run',
        'ssh_authorized_keys:',
        `  - ${key.pub}`,
        'users:',
        // A user the cloud-config puts in wheel gets sudo; one in no group gets status only.
        '  - name: ops',
        '    groups: [wheel]',
        '    ssh_authorized_keys:',
        `      - ${key.pub}`,
        '  - name: plain',
        '    ssh_authorized_keys:',
        `      - ${key.pub}`,
        'coreos:',
        '  units:',
        '    - name: say-hostname.service',
        '      command: start',
        '      content: |',
        '        [Service]',
        '        Type=oneshot',
        '        ExecStart=/bin/sh -c "echo qemu-run-hostname=$(hostname) > /dev/ttyS0"',
        '',
      ].join('\n'),
    );
    const sshPort = await freePort();
    const t0 = Date.now();
    const run = spawnCli(['qemu', 'run', raw, '--snapshot', '--cloud-config', cc, '--ssh-port', String(sshPort)]);
    try {
      const ready = await run.waitForStdout(/basalt-ready slot=(\S+) version=(\S+)\r?\n/, 12 * 60_000, 'the ready line');
      process.stderr.write(`[qemu run] basalt-ready ${((Date.now() - t0) / 1000).toFixed(1)} s after 'basalt qemu run' started\n`);
      const hostname = await run.waitForStdout(/qemu-run-hostname=(\S+)/, 2 * 60_000, "the cloud-config unit's hostname line");
      expect(hostname[1]).toBe('basalt-qemu-run');
      expect([ready[1], ready[2]]).toEqual(['A', manifest.os.version]);
      // The default image as built: /usr read-only from dm-verity, docker's socket listening; etcd
      // off, as on CoreOS, because this cloud-config does not start it (the gate skips it).
      const st = parseStatus((await run.waitForStdout(/basalt-status [^\r\n]+/, 1000, 'the status line'))[0]);
      expect(st['usr-source']).toBe('/dev/mapper/usr');
      expect(st['usr-options']?.split(',')[0]).toBe('ro');
      expect(st['verity']).toBe('verified');
      expect(st['etcd']).toBe('inactive');
      // docker is socket-activated: the socket listens from boot, dockerd starts on first use.
      expect(st['docker-socket']).toBe('active');
      await operatorChecks(new Ssh(sshPort, key.key), manifest);
      // QEMU's monitor on the terminal: Ctrl-A X quits.
      run.proc.stdin!.write('\x01x');
      const r = await run.proc.exited;
      expect(r.exitCode).toBe(0);
      expect(run.stderr()).toMatch(/booting .* with (TCG|KVM) \(/);
    } finally {
      // basalt stops its QEMU on SIGTERM (a SIGKILL would leave QEMU running).
      run.proc.kill('SIGTERM');
      await run.proc.exited;
    }
    const after = await stat(raw);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.size).toBe(before.size);
  });
});

/** A toolbox image as an operator might provide one offline: a root filesystem tarball (busybox). */
async function toolboxTarball(dir: string): Promise<string> {
  const tree = join(dir, 'toolbox-root');
  await mkdir(join(tree, 'usr/bin'), { recursive: true });
  await mkdir(join(tree, 'etc'), { recursive: true });
  await exec('cp', ['/bin/busybox', join(tree, 'usr/bin/busybox')]);
  for (const t of ['sh', 'id', 'cat', 'ls']) await exec('ln', ['-s', 'busybox', join(tree, 'usr/bin', t)]);
  await exec('ln', ['-s', 'usr/bin', join(tree, 'bin')]);
  await writeFile(join(tree, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(tree, 'etc/group'), 'root:x:0:\n');
  const tar = join(dir, 'toolbox-busybox.tar.gz');
  await exec('tar', ['-czf', tar, '-C', tree, '--owner=0', '--group=0', '.']);
  return tar;
}

/** What a CoreOS operator does first, as core (and as two cloud-config users) over SSH. */
async function operatorChecks(ssh: Ssh, m: Manifest): Promise<void> {
  await ssh.waitUp(5 * 60_000, 'core');
  expect((await ssh.exec('sudo -n true && sudo -n id -u', 'core')).trim()).toBe('0');
  expect((await ssh.exec('sudo -n id -u', 'ops')).trim()).toBe('0');
  expect(await ssh.exec('sudo -n true 2>&1 || echo refused', 'plain')).toMatch(/refused/);
  // The update-engine starts after the ready line; wait for its start line in the journal (core reads it).
  await ssh.exec("timeout 180 journalctl -b -u update-engine.service -f -n all -o cat | grep -m1 -q 'sockets '", 'core', 4 * 60_000);
  const status = await ssh.exec('update_engine_client -status', 'core');
  expect(status).toMatch(/^LAST_CHECKED_TIME=\d+\nPROGRESS=[\d.]+\nCURRENT_OP=UPDATE_STATUS_[A-Z_]+\nNEW_VERSION=\S+\nNEW_SIZE=\d+\n$/);
  expect(await ssh.exec('update_engine_client -status', 'plain')).toMatch(/^LAST_CHECKED_TIME=/);
  const denied = await ssh.exec('update_engine_client -check_for_update 2>&1; echo "exit=$?"', 'plain');
  expect(denied).toMatch(/needs root or the basalt-update group/);
  expect(denied).toMatch(/exit=1\n$/);
  const js = JSON.parse(await ssh.exec('basalt update status --json', 'core')) as Record<string, unknown>;
  expect(js).toMatchObject({ currentVersion: m.os.version, bootedSlot: 'A', status: 'UPDATE_STATUS_IDLE' });
  expect(await ssh.exec('basalt update status', 'core')).toMatch(new RegExp(`^Running: +${m.os.version.replace(/\./g, '\\.')} on \\S+, slot A$`, 'm'));
  // etcd is off on a machine whose cloud-config does not start it (CoreOS's rule): locksmithctl
  // says so in one line naming the endpoints; the operator starts etcd with sudo and asks again.
  const noEtcd = await ssh.exec('locksmithctl status 2>&1; echo "exit=$?"', 'core');
  expect(noEtcd).toMatch(/^locksmithctl: error: .*127\.0\.0\.1:2379.*\(hint: [^\n]*etcd is running/);
  expect(noEtcd).toMatch(/exit=1\n$/);
  expect(noEtcd).not.toMatch(/\n\s+at /);
  await ssh.exec('sudo -n systemctl start etcd2.service', 'core', 5 * 60_000);
  expect(await ssh.exec('locksmithctl status', 'core')).toMatch(/^Available: 1\nMax: 1\n/);
  // os-release and the motd of a login shell.
  const osr = await ssh.exec('cat /etc/os-release', 'core');
  for (const k of ['ID', 'VERSION_ID', 'BUILD_ID', 'VARIANT_ID', 'PRETTY_NAME']) expect(osr).toMatch(new RegExp(`^${k}=\\S`, 'm'));
  const motd = await ssh.exec('bash -lic true 2>/dev/null', 'core');
  expect(motd).toMatch(new RegExp(`^Basalt ${m.os.version.replace(/\./g, '\\.')} \\(stable\\), slot A, build \\S+$`, 'm'));
  expect(motd).not.toMatch(/Failed Units/);
  // toolbox from an offline tarball: a privileged container with the host at /media/root.
  const tar = await toolboxTarball(work);
  await exec('scp', ['-q', '-i', ssh.keyFile, '-P', String(ssh.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', tar, 'core@127.0.0.1:/home/core/toolbox.tar.gz'], { timeoutMs: 5 * 60_000 });
  await ssh.exec('echo TOOLBOX_TARBALL=/home/core/toolbox.tar.gz > ~/.toolboxrc', 'core');
  expect((await ssh.exec('toolbox id', 'core', 5 * 60_000)).trim()).toMatch(/^uid=0\(root\) gid=0\(root\)/);
  expect(await ssh.exec('toolbox cat /media/root/etc/os-release', 'core', 5 * 60_000)).toMatch(new RegExp(`^VERSION_ID=${m.os.version.replace(/\./g, '\\.')}$`, 'm'));
  // No image at all: one clear line, exit 1.
  const none = await ssh.exec('echo TOOLBOX_TARBALL=/nonexistent.tar > ~/.toolboxrc; toolbox id 2>&1; echo "exit=$?"', 'core');
  expect(none).toMatch(/toolbox: error: \/nonexistent\.tar: no such tarball/);
  expect(none).toMatch(/exit=1\n$/);
  // An empty config validates quickly inside the guest (printed; bench/boot.ts measures it beside node -e 0).
  process.stderr.write(`[qemu run] in the guest: ${(await ssh.exec("touch /tmp/empty; s=$(date +%s%N); coreos-cloudinit -validate -from-file /tmp/empty >/dev/null 2>&1; echo \"coreos-cloudinit -validate of an empty file: $(( ($(date +%s%N) - s) / 1000000 )) ms\"", 'core')).trim()}\n`);
}

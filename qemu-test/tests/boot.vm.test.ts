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
import { projectRoot } from '../../common/src/paths.js';
import { Vm } from '../src/vm.js';
import { freePort, spawnCli } from '../../common/test/helpers.js';
import { basalt, buildImage, copyDisk, corrupt, keepLogsIfFailed, espCopy, espList, espMkdir, espRename, haveQemu, isRoot, parseStatus, part, partitions, writeInto, type Manifest } from './image.js';

const canRun = isRoot && haveQemu;
const outDir = process.env['BASALT_VM_OUT'] ?? join(projectRoot(), 'out');
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
      process.stderr.write(`[boot fallback] basalt-ready slot=${ready.match[1]} after ${(ready.atMs / 1000).toFixed(1)} s\n`);
      expect(ready.match[1]).toBe('B');
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
  it('basalt qemu run: boots the image for a person with a cloud-config, console on stdout, Ctrl-A X quits, --snapshot leaves the image alone', async () => {
    const raw = join(outDir, manifest.artifacts.find((a) => a.kind === 'raw')!.file);
    const before = await stat(raw);
    const cc = join(work, 'qemu-run.yml');
    await writeFile(
      cc,
      [
        '#cloud-config',
        'hostname: basalt-qemu-run',
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
    const t0 = Date.now();
    const run = spawnCli(['qemu', 'run', raw, '--snapshot', '--cloud-config', cc, '--ssh-port', String(await freePort())]);
    try {
      const ready = await run.waitForStdout(/basalt-ready slot=(\S+) version=(\S+)\r?\n/, 12 * 60_000, 'the ready line');
      process.stderr.write(`[qemu run] basalt-ready ${((Date.now() - t0) / 1000).toFixed(1)} s after 'basalt qemu run' started\n`);
      const hostname = await run.waitForStdout(/qemu-run-hostname=(\S+)/, 2 * 60_000, "the cloud-config unit's hostname line");
      expect(hostname[1]).toBe('basalt-qemu-run');
      expect([ready[1], ready[2]]).toEqual(['A', manifest.os.version]);
      // The default image as built: /usr read-only from dm-verity, etcd and docker running.
      const st = parseStatus((await run.waitForStdout(/basalt-status [^\r\n]+/, 1000, 'the status line'))[0]);
      expect(st['usr-source']).toBe('/dev/mapper/usr');
      expect(st['usr-options']?.split(',')[0]).toBe('ro');
      expect(st['verity']).toBe('verified');
      expect(st['etcd']).toBe('active');
      expect(st['docker']).toBe('active');
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

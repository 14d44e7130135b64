/**
 * Boot smoke tests of the built image under QEMU + OVMF (TCG unless KVM works):
 * 1. the raw disk, grown by 2 GiB, boots slot A to `basalt-ready slot=A`, with
 *    /usr read-only from dm-verity, etcd and docker active and ROOT grown; after
 *    a clean power-off the host sees USR-A marked good and the entry blessed;
 * 2. with USR-A corrupted after the build and a good copy in USR-B (kernel,
 *    initrd and entry installed on the ESP), boot counting moves to B;
 * 3. the PXE pair boots with root on tmpfs;
 * 4. `basalt qemu run IMAGE --snapshot --cloud-config FILE`, the command for
 *    people, boots the image with its console on stdout and quits on Ctrl-A X
 *    without writing the image.
 * One VM at a time; each boot gets minutes, not seconds (TCG).
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFileName, renderEntry } from '../../common/src/boot.js';
import { projectRoot } from '../../common/src/paths.js';
import { execa } from 'execa';
import { Vm } from '../src/vm.js';
import { freePort } from './fleet.js';
import { buildImage, copyDisk, corrupt, keepLogsIfFailed, espCopy, espList, espMkdir, haveQemu, isRoot, parseStatus, part, partitions, writeInto, type Manifest } from './image.js';

const canRun = isRoot && haveQemu;
const outDir = process.env['BASALT_VM_OUT'] ?? join(projectRoot(), 'out');
const GiB = 1024 ** 3;
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

  it('boots slot A: ready on the console, /usr verity and read-only, etcd and docker active, ROOT grown, slot marked good', async () => {
    const disk = await copyDisk(outDir, manifest, join(work, 'smoke.raw'), 2 * GiB);
    const before = part(await partitions(disk), 'ROOT');
    await mkdir(join(work, 'vm-smoke'), { recursive: true });
    const vm = new Vm({ workdir: join(work, 'vm-smoke'), disk, diskMode: 'direct' });
    try {
      await vm.start();
      const ready = await vm.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 12 * 60_000, { what: 'basalt-ready' });
      process.stderr.write(`[boot smoke] basalt-ready after ${(ready.atMs / 1000).toFixed(1)} s (accel ${vm.accel})\n`);
      expect(ready.match[1]).toBe('A');
      expect(ready.match[2]).toBe(manifest.os.version);
      const st = parseStatus(vm.console.output.match(/basalt-status [^\n]+/)![0]);
      expect(st['usr-source']).toBe('/dev/mapper/usr');
      expect(st['usr-options']?.split(',')[0]).toBe('ro');
      expect(st['verity']).toBe('verified');
      expect(st['etcd']).toBe('active');
      expect(st['docker']).toBe('active');
      expect(Number(st['root-bytes'])).toBeGreaterThan(before.length + GiB);
      expect(Number(st['root-fs-bytes'])).toBeGreaterThan(before.length);
      // A clean power-off so the guest's writes (GPT, ESP rename) reach the disk.
      const mark = vm.console.mark();
      await vm.qmp.execute('system_powerdown');
      await vm.waitForExit(5 * 60_000).catch(async (e) => {
        throw new Error(`${String(e)}\n${vm.console.tail(20)} (from ${mark})`);
      });
    } finally {
      await vm.dispose();
    }
    const parts = await partitions(disk);
    const root = part(parts, 'ROOT');
    expect(root.length).toBeGreaterThan(before.length + GiB);
    expect(part(parts, 'USR-A').slot).toMatchObject({ successful: true, tries: 0 });
    expect(part(parts, 'USR-A').slot!.priority).toBeGreaterThan(part(parts, 'USR-B').slot!.priority);
    expect(await espList(disk, part(parts, 'EFI-SYSTEM'), '/loader/entries')).toEqual([entryFileName('a')]);
  });

  it('falls back to slot B when USR-A is corrupted after the build', async () => {
    const disk = await copyDisk(outDir, manifest, join(work, 'fallback.raw'));
    let parts = await partitions(disk);
    const esp = part(parts, 'EFI-SYSTEM');
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
    expect(entries.some((e) => /^basalt-a\+0-\d+\.conf$/.test(e))).toBe(true);
  });
  it('boots the PXE pair: tmpfs root, /usr verity-backed from the image inside the initramfs', async () => {
    const file = (kind: string) => join(outDir, manifest.artifacts.find((a) => a.kind === kind)!.file);
    const append = (await readFile(file('pxe-cmdline'), 'utf8')).trim();
    await mkdir(join(work, 'vm-pxe'), { recursive: true });
    const vm = new Vm({ workdir: join(work, 'vm-pxe'), kernel: file('pxe-kernel'), initrd: file('pxe-initramfs'), append, bios: true, memoryMiB: 3072 });
    try {
      await vm.start();
      const ready = await vm.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 12 * 60_000, { what: 'basalt-ready (PXE)' });
      process.stderr.write(`[boot pxe] basalt-ready after ${(ready.atMs / 1000).toFixed(1)} s\n`);
      expect(ready.match[1]).toBe('PXE');
      const st = parseStatus(vm.console.output.match(/basalt-status [^\n]+/)![0]);
      expect(st['usr-source']).toBe('/dev/mapper/usr');
      expect(st['usr-options']?.split(',')[0]).toBe('ro');
      expect(st['verity']).toBe('verified');
      expect(st['etcd']).toBe('active');
      expect(st['docker']).toBe('active');
    } finally {
      await vm.dispose();
    }
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
    const proc = execa(process.execPath, [join(projectRoot(), 'bin/basalt.js'), 'qemu', 'run', raw, '--snapshot', '--cloud-config', cc, '--ssh-port', String(await freePort())], {
      stdin: 'pipe',
      reject: false,
      timeout: 20 * 60_000,
    });
    let out = '';
    try {
      const hostname = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no qemu-run-hostname and ready lines within 12 min; console tail:\n${out.slice(-2000)}`)), 12 * 60_000);
        proc.stdout!.on('data', (d: Buffer) => {
          out += d.toString('utf8');
          const m = /qemu-run-hostname=(\S+)/.exec(out);
          if (m && /basalt-ready slot=\S+ version=\S+\r?\n/.test(out)) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        void proc.then((r) => {
          clearTimeout(timer);
          reject(new Error(`basalt qemu run ended (exit ${r.exitCode}) before the line: ${r.stderr}\n${out.slice(-2000)}`));
        });
      });
      process.stderr.write(`[qemu run] cloud-config applied ${((Date.now() - t0) / 1000).toFixed(1)} s after start\n`);
      expect(hostname).toBe('basalt-qemu-run');
      expect(out).toMatch(/basalt-ready slot=A /);
      proc.stdin!.write('\x01x');
      const r = await proc;
      expect(r.exitCode).toBe(0);
      expect(r.stderr).toMatch(/booting .* with (TCG|KVM)/);
    } finally {
      proc.kill('SIGKILL');
    }
    const after = await stat(raw);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.size).toBe(before.size);
  });
});

/**
 * The harness itself, on real QEMU with OVMF and no disk: the firmware's
 * serial output is awaited, QMP resets (QEMU is started again: a cold
 * restart) and powers off the machine.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { testdir } from '../../common/test/helpers.js';
import { makeConfigDrive } from './configdrive.js';
import { run } from '../../common/src/exec.js';
import { Vm, OVMF_CODE } from './vm.js';
import { RESTART_LINE } from './watchdog.js';
import { FIRMWARE_READY, probeKvm } from './accel.js';

const haveQemu = existsSync('/usr/bin/qemu-system-x86_64') && OVMF_CODE.some((p) => existsSync(p));

describe('qemu harness', () => {
  it.skipIf(!haveQemu)('waits for firmware output, resets through QMP (a cold restart: QEMU started again) and powers off (skipped unless qemu-system-x86 and ovmf are installed)', async () => {
    const dir = await testdir();
    const vm = new Vm({ workdir: dir, memoryMiB: 256, cpus: 1 });
    try {
      await vm.start();
      const first = await vm.waitFor(/BdsDxe|UEFI Interactive Shell|Shell>/, 180_000, { what: 'OVMF boot manager output' });
      expect(first.atMs).toBeGreaterThan(0);
      const mark = vm.console.mark();
      await vm.reset();
      await vm.waitFor(/BdsDxe|UEFI Interactive Shell|Shell>/, 180_000, { from: mark, what: 'firmware output after reset' });
      // QEMU runs with -no-reboot: the reset made it exit, and the harness started it again (a cold restart).
      expect(vm.events.some((e) => e.event === 'SHUTDOWN' && e.data?.['reason'] === 'host-qmp-system-reset')).toBe(true);
      expect(vm.restarts).toBe(1);
      expect(vm.running).toBe(true);
      const after = vm.console.output.slice(mark);
      expect(after).toContain('[basalt-qemu] the machine was reset (host-qmp-system-reset): QEMU started again on the same disk (cold restart 1)');
      expect(after.indexOf('[basalt-qemu] start accel=')).toBeGreaterThan(after.indexOf('[basalt-qemu] qemu exited (code 0)'));
      await vm.powerCut();
      expect(vm.running).toBe(false);
      await expect(vm.waitFor(/never printed/, 1000)).rejects.toThrow(/exited|stopped/);
    } finally {
      await vm.dispose();
    }
    const log = await readFile(vm.logPath, 'utf8');
    expect(log).toContain('[basalt-qemu] start accel=');
  });

  it.skipIf(!haveQemu)('power-cycles a guest that prints nothing after "reboot: machine restart"; a wait in progress sees the firmware come back (skipped unless qemu-system-x86 and ovmf are installed)', async () => {
    const dir = await testdir();
    const vm = new Vm({ workdir: dir, memoryMiB: 256, cpus: 1, restartSilenceMs: 3000 });
    try {
      await vm.start();
      // With no disk OVMF tries the network: iPXE's banner, then the boot manager's lines.
      await vm.waitFor(/BdsDxe/, 180_000, { what: 'the boot manager' });
      // A guest that hangs after its restart line: its CPU stops (QMP stop), the kernel's
      // last line is on the console, and the restart the kernel asked for never happens.
      await vm.qmp.execute('stop');
      const mark = vm.console.mark();
      const line = `[  160.663304] ${RESTART_LINE}\r\n`;
      vm.console.push(line);
      vm.restartWatch.feed(line);
      expect(vm.restartWatch.armed).toBe(true);
      // A wait that began before the power cycle: QEMU's exit for the cycle does not end it.
      // iPXE's banner comes once per firmware start, before the boot manager's first line.
      const back = await vm.waitFor(/iPXE \d/, 180_000, { from: mark, what: 'the firmware starting again after the power cycle' });
      // A second cycle comes when the new firmware is silent for 3 s too (a busy host).
      expect(vm.cycles).toBeGreaterThanOrEqual(1);
      expect(vm.cycles).toBeLessThanOrEqual(2);
      expect(vm.running).toBe(true);
      expect(vm.restartWatch.armed).toBe(false);
      const after = vm.console.output.slice(mark);
      process.stderr.write(`[power cycle] ${after.split('\n').filter((l) => l.startsWith('[basalt-qemu]')).join('\n[power cycle] ')}\n`);
      expect(after).toMatch(/\[basalt-qemu\] no output for 3 s after "reboot: machine restart": power-cycling the guest, QEMU stopped and started again on the same disk \(1 of 2\)/);
      // Where the stopped CPU was, for the log: in the firmware, with its instruction pointer.
      expect(after).toMatch(/\[basalt-qemu\] {3}RIP=[0-9a-f]{16}/);
      expect(after.indexOf('[basalt-qemu] qemu exited')).toBeGreaterThan(-1);
      expect(after.indexOf('[basalt-qemu] start accel=')).toBeGreaterThan(after.indexOf('[basalt-qemu] qemu exited'));
      expect(back.match.index).toBeGreaterThan(mark + after.indexOf('[basalt-qemu] start accel='));
    } finally {
      await vm.dispose();
    }
  });

  it.skipIf(!haveQemu)('chooses KVM only when OVMF really runs under it; a KVM guest that stops for good fails its waits at once (skipped unless qemu-system-x86 and ovmf are installed)', async () => {
    const choice = await probeKvm(60_000);
    process.stderr.write(`[kvm probe] ${choice.accel}: ${choice.reason}\n`);
    expect(choice.reason.length).toBeGreaterThan(0);
    // What the probe said must be what a KVM guest does on this machine.
    const dir = await testdir();
    const vm = new Vm({ workdir: dir, memoryMiB: 256, cpus: 1, accel: 'kvm' });
    try {
      const started = await vm.start().then(
        () => true,
        () => false,
      );
      if (!started) {
        expect(choice.accel).toBe('tcg');
        return;
      }
      const t0 = Date.now();
      const outcome = await vm.waitFor(FIRMWARE_READY, 180_000, { what: 'OVMF under KVM' }).then(
        () => 'ready',
        (e: unknown) => (e as Error).message,
      );
      if (choice.accel === 'kvm') expect(outcome).toBe('ready');
      else {
        expect(outcome).toMatch(/exited|stopped/);
        expect(Date.now() - t0).toBeLessThan(60_000);
      }
    } finally {
      await vm.dispose();
    }
  });

  it('makes config drives labelled config-2 that carry the user data', async () => {
    const dir = await testdir();
    const iso = await makeConfigDrive(`${dir}/cd.iso`, '#cloud-config\nhostname: x\n');
    const info = await run('isoinfo', ['-d', '-i', iso], { reject: false });
    if (info.exitCode === 0) expect(info.stdout).toMatch(/Volume id: config-2/);
    const blkid = await run('blkid', ['-o', 'export', iso]);
    expect(blkid.stdout).toMatch(/LABEL=config-2/);
    expect(blkid.stdout).toMatch(/TYPE=iso9660/);
    const vfat = await makeConfigDrive(`${dir}/cd.img`, '#cloud-config\nhostname: y\n', { format: 'vfat' });
    expect((await run('blkid', ['-o', 'export', vfat])).stdout).toMatch(/LABEL=config-2/);
    expect((await run('mtype', ['-i', vfat, '::openstack/latest/user_data'])).stdout).toBe('#cloud-config\nhostname: y\n');
  });
});

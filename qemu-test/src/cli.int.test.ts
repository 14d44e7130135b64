/**
 * `basalt qemu run` on real QEMU with OVMF and a blank disk (the firmware
 * starts, finds nothing to boot and prints its boot manager lines): the
 * console is on stdout, the image is left alone with --snapshot, and a SIGTERM
 * to basalt stops QEMU and removes the work directory. Bad input is refused
 * with one line naming the file.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, freePort, spawnCli, testdir } from '../../common/test/helpers.js';
import { FIRMWARE_READY } from './accel.js';
import { OVMF_CODE } from './firmware.js';

const haveQemu = existsSync('/usr/bin/qemu-system-x86_64') && OVMF_CODE.some((p) => existsSync(p));

async function workDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((f) => f.startsWith('basalt-qemu-'));
}

describe('basalt qemu run', () => {
  it.skipIf(!haveQemu)('shows the console on stdout and stops QEMU when basalt gets SIGTERM (skipped unless qemu-system-x86 and ovmf are installed)', async () => {
    const dir = await testdir();
    const img = join(dir, 'blank.img');
    await writeFile(img, Buffer.alloc(4 * 1024 * 1024));
    const before = await stat(img);
    const dirsBefore = await workDirs();
    const run = spawnCli(['qemu', 'run', img, '--snapshot', '--memory', '256', '--cpus', '1', '--ssh-port', String(await freePort())]);
    try {
      await run.waitForStdout(FIRMWARE_READY, 180_000, 'firmware output');
      expect(run.stderr()).toMatch(/booting .*blank\.img with (TCG|KVM) \(/);
      const t0 = Date.now();
      run.proc.kill('SIGTERM');
      const r = await run.proc.exited;
      expect(r.exitCode).toBe(1);
      expect(Date.now() - t0).toBeLessThan(20_000);
    } finally {
      run.proc.kill('SIGKILL');
    }
    // QEMU is gone with it (nothing holds the overlay), the work directory was removed, the image is unchanged.
    const ps = await readdir('/proc');
    const left: string[] = [];
    for (const pid of ps.filter((x) => /^\d+$/.test(x))) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmd.startsWith('qemu-system') && cmd.includes('basalt-qemu-') && !dirsBefore.some((d) => cmd.includes(d))) left.push(pid);
    }
    expect(left).toEqual([]);
    expect((await workDirs()).filter((d) => !dirsBefore.includes(d))).toEqual([]);
    const after = await stat(img);
    expect([after.size, after.mtimeMs]).toEqual([before.size, before.mtimeMs]);
  });

  it('refuses a missing image and a bad --memory with one line naming it', async () => {
    const missing = await cli(['qemu', 'run', '/nonexistent/disk.img']);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/\/nonexistent\/disk\.img/);
    expect(missing.stderr).not.toMatch(/^\s+at /m);
    const dir = await testdir();
    const img = join(dir, 'x.img');
    await writeFile(img, '');
    const mem = await cli(['qemu', 'run', img, '--memory', 'lots']);
    expect(mem.exitCode).toBe(1);
    expect(mem.stderr).toMatch(/memory/);
    expect(mem.stderr).not.toMatch(/^\s+at /m);
  });
});

/**
 * Chooses QEMU's accelerator: KVM only when a probe proves that the firmware
 * Basalt boots actually runs under it, TCG otherwise.
 *
 * /dev/kvm being there is not enough: on nested machines it opens, a paused
 * guest reports KVM enabled, and then OVMF stops at its first instructions
 * with "KVM internal error. Suberror: 1 (emulation failure)". So the probe
 * boots OVMF itself (no disk) under KVM and waits for an event: the boot
 * manager's first line on the serial console means KVM works; a QMP STOP
 * (internal-error), QEMU exiting or the deadline mean TCG.
 */
import { constants } from 'node:fs';
import { access, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnTool } from '../../common/src/exec.js';
import { findFirmware, OVMF_CODE, OVMF_VARS } from './firmware.js';
import { Qmp, type QmpEvent } from './qmp.js';

export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  /** Why: what the probe saw, or that the choice was forced. */
  reason: string;
}

/** The console line OVMF prints when its boot manager starts (after SEC, PEI and DXE ran). */
export const FIRMWARE_READY = /BdsDxe:|UEFI Interactive Shell|Shell> /;

let cached: Promise<AccelChoice> | undefined;

/** Boots OVMF under KVM and waits for its boot manager, a guest stop, QEMU's exit or the deadline. */
export async function probeKvm(timeoutMs: number): Promise<AccelChoice> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is missing or not writable' };
  }
  const code = findFirmware(OVMF_CODE);
  const vars = findFirmware(OVMF_VARS);
  if (!code || !vars) return { accel: 'tcg', reason: 'no OVMF firmware to probe KVM with (apt-get install ovmf)' };
  const dir = await mkdtemp(join(tmpdir(), 'basalt-kvm-probe-'));
  const qmp = new Qmp();
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let q: ReturnType<typeof spawnTool> | undefined;
  try {
    await copyFile(vars, join(dir, 'vars.fd'));
    await qmp.listen(join(dir, 'qmp.sock'));
    // prettier-ignore
    q = spawnTool('qemu-system-x86_64', [
      '-machine', 'q35,accel=kvm', '-cpu', 'host', '-m', '128', '-smp', '1',
      '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio',
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${code}`,
      '-drive', `if=pflash,format=raw,unit=1,file=${join(dir, 'vars.fd')}`,
      ...Qmp.args(join(dir, 'qmp.sock')),
    ], { signal: ac.signal });
    const qemu = q;
    let serial = '';
    let stderr = '';
    const outcome = new Promise<AccelChoice>((resolve) => {
      qemu.stdout?.on('data', (d: Buffer) => {
        serial += d.toString('utf8');
        if (FIRMWARE_READY.test(serial)) resolve({ accel: 'kvm', reason: 'OVMF reached its boot manager under KVM' });
      });
      qemu.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      qmp.on('event', (e: QmpEvent) => {
        if (e.event !== 'STOP') return;
        void qmp
          .execute<{ status: string }>('query-status')
          .then((s) => s.status, () => 'unknown')
          .then((status) => {
            const why = /KVM internal error[^\n]*/.exec(stderr)?.[0];
            resolve({ accel: 'tcg', reason: `OVMF stopped under KVM (status ${status}${why ? `, ${why.trim()}` : ''})` });
          });
      });
      void qemu.exited.then((i) => resolve({ accel: 'tcg', reason: `QEMU exited under KVM (code ${i.exitCode}): ${stderr.trim().split('\n')[0] ?? ''}` }));
      timer = setTimeout(() => resolve({ accel: 'tcg', reason: `OVMF did not reach its boot manager under KVM within ${Math.round(timeoutMs / 1000)} s` }), timeoutMs);
    });
    return await outcome;
  } catch (e) {
    return { accel: 'tcg', reason: `the KVM probe failed: ${(e as Error).message}` };
  } finally {
    clearTimeout(timer);
    ac.abort();
    await q?.exited.catch(() => undefined);
    qmp.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The accelerator and why: BASALT_QEMU_ACCEL=kvm|tcg forces one; otherwise probed once per process. */
export function chooseAccelWithReason(timeoutMs = 30_000): Promise<AccelChoice> {
  const forced = process.env['BASALT_QEMU_ACCEL'];
  if (forced === 'kvm' || forced === 'tcg') return Promise.resolve({ accel: forced, reason: 'forced by BASALT_QEMU_ACCEL' });
  cached ??= probeKvm(timeoutMs);
  return cached;
}

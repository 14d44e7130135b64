/**
 * Chooses QEMU's accelerator: KVM only when a probe proves it works (nested
 * KVM on these machines can hang or assert), TCG otherwise.
 */
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnTool } from '../../common/src/exec.js';
import { Qmp } from './qmp.js';

export type Accel = 'kvm' | 'tcg';

let cached: Promise<Accel> | undefined;

/** Starts a paused KVM guest, asks QMP whether KVM is enabled, and quits; any failure or a hang means TCG. */
async function probe(timeoutMs: number): Promise<Accel> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'tcg';
  }
  const dir = await mkdtemp(join(tmpdir(), 'basalt-kvm-probe-'));
  const qmp = new Qmp();
  const ac = new AbortController();
  try {
    await qmp.listen(join(dir, 'qmp.sock'));
    const q = spawnTool('qemu-system-x86_64', ['-machine', 'q35,accel=kvm', '-cpu', 'host', '-m', '64', '-nodefaults', '-display', 'none', '-S', ...Qmp.args(join(dir, 'qmp.sock'))], { signal: ac.signal });
    const exitedEarly = q.exited.then(() => 'exited' as const);
    const ready = qmp.whenReady(timeoutMs).then(() => 'ready' as const);
    if ((await Promise.race([ready, exitedEarly])) !== 'ready') return 'tcg';
    // Run a few instructions: a broken nested KVM fails here rather than at start.
    await qmp.execute('cont');
    const kvm = await Promise.race([
      qmp.execute<{ enabled: boolean; present: boolean }>('query-kvm'),
      new Promise<null>((res) => setTimeout(() => res(null), timeoutMs)),
    ]);
    const status = await Promise.race([qmp.execute<{ status: string }>('query-status'), new Promise<null>((res) => setTimeout(() => res(null), timeoutMs))]);
    await qmp.execute('quit').catch(() => {});
    await q.exited;
    return kvm?.enabled && status?.status === 'running' ? 'kvm' : 'tcg';
  } catch {
    return 'tcg';
  } finally {
    ac.abort();
    qmp.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The accelerator to use: BASALT_QEMU_ACCEL=kvm|tcg forces one; otherwise probed once per process. */
export function chooseAccel(timeoutMs = 15_000): Promise<Accel> {
  const forced = process.env['BASALT_QEMU_ACCEL'];
  if (forced === 'kvm' || forced === 'tcg') return Promise.resolve(forced);
  cached ??= probe(timeoutMs);
  return cached;
}

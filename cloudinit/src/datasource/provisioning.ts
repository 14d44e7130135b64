/**
 * Azure's provisioning medium: the CD-ROM Azure attaches at a VM's creation,
 * a UDF (or ISO 9660) file system holding ovf-env.xml, whose CustomData is
 * what `az vm create --custom-data` gave. WALinuxAgent and afterburn read it
 * the same way: mount it read-only, copy ovf-env.xml out, unmount.
 *
 * Side effects: mount/umount (through the one exec wrapper), a temporary
 * mount point, `dest` written (mode 0600: custom data may hold secrets).
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../common/src/exec.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import type { Log } from './index.js';

const MAX_OVF_ENV = 1024 * 1024;

/**
 * Mounts each device that exists (read-only; a regular file through a loop
 * device) until one holds ovf-env.xml, copies it to `dest` and unmounts.
 * Returns `dest`, or undefined when no device has one.
 */
export async function readProvisioningMedium(devices: readonly string[], dest: string, log: Log = () => {}): Promise<string | undefined> {
  for (const dev of devices) {
    if (!existsSync(dev)) continue;
    const dir = await mkdtemp(join(tmpdir(), 'basalt-provisioning-'));
    try {
      const loop = statSync(dev).isFile() ? ',loop' : '';
      const m = await run('mount', ['-t', 'udf,iso9660', '-o', `ro${loop}`, dev, dir], { reject: false, timeoutMs: 60_000 }).catch((e: unknown) => ({ exitCode: -1, stderr: (e as Error).message }));
      if (m.exitCode !== 0) {
        log(`${dev}: not a provisioning medium (${m.stderr.trim() || `mount exit ${m.exitCode}`})`);
        continue;
      }
      try {
        const file = join(dir, 'ovf-env.xml');
        if (!existsSync(file)) continue;
        const xml = await readFile(file);
        if (xml.length > MAX_OVF_ENV) {
          log(`${dev}: ovf-env.xml is larger than ${MAX_OVF_ENV} bytes; ignored`);
          continue;
        }
        await writeFileAtomic(dest, xml, 0o600);
        log(`${dev}: ovf-env.xml of the provisioning medium copied to ${dest}`);
        return dest;
      } finally {
        await run('umount', [dir], { reject: false, timeoutMs: 60_000 }).catch((e: unknown) => log(`${dev}: umount ${dir}: ${(e as Error).message}`));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return undefined;
}

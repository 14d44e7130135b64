/** Where Debian's ovmf package puts the UEFI firmware (4M builds first). */
import { existsSync } from 'node:fs';
import { BasaltError } from '../../common/src/errors.js';
import { QEMU_ERRORS } from './errors.js';

export const OVMF_CODE = ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd'];
export const OVMF_VARS = ['/usr/share/OVMF/OVMF_VARS_4M.fd', '/usr/share/OVMF/OVMF_VARS.fd'];

/** The first path that exists, or undefined. */
export function findFirmware(paths: readonly string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

/** The first path that exists; a clear error naming the package when none does. */
export function requireFirmware(paths: readonly string[], what: string): string {
  const p = findFirmware(paths);
  if (!p) throw new BasaltError(QEMU_ERRORS.E_VM_FIRMWARE, `${what} not found (looked at ${paths.join(', ')})`);
  return p;
}

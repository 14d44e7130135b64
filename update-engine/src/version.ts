/**
 * Release versions: dotted numbers with an optional "-suffix" or "+build"
 * (2079.3.2, 1.2.0-rc1). Pure.
 */
import { BasaltError } from '../../common/src/errors.js';

const RE = /^(\d+(?:\.\d+){0,3})(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z._-]+)?$/;

/** True when `v` is a valid release version string. */
export function isVersion(v: string): boolean {
  return RE.test(v);
}

/** Throws E_VERSION_INVALID naming `what` when `v` is not a version. */
export function checkVersion(v: string, what: string): string {
  if (!isVersion(v)) {
    throw new BasaltError('E_VERSION_INVALID', `${what}: '${v}' is not a release version`, { hint: 'use dotted numbers such as 2079.3.2 or 1.2.0-rc1' });
  }
  return v;
}

/** Compares two versions: negative when a < b, 0 when equal, positive when a > b. A pre-release sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const ma = RE.exec(a);
  const mb = RE.exec(b);
  if (!ma || !mb) throw new BasaltError('E_VERSION_INVALID', `cannot compare versions '${a}' and '${b}'`);
  const na = ma[1]!.split('.').map(Number);
  const nb = mb[1]!.split('.').map(Number);
  for (let i = 0; i < Math.max(na.length, nb.length); i++) {
    const d = (na[i] ?? 0) - (nb[i] ?? 0);
    if (d !== 0) return d;
  }
  const pa = ma[2];
  const pb = mb[2];
  if (pa === pb) return 0;
  if (pa === undefined) return 1;
  if (pb === undefined) return -1;
  return pa < pb ? -1 : 1;
}

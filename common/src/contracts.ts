/**
 * The contracts between Basalt's parts, one definition each: what the builder
 * writes and the update-engine, cloudinit and the image's units read. Pure: no
 * I/O. A format written to disk carries its version here.
 *
 * - the USR image description (`usr.img.json`, format 1), written by the
 *   builder's usr-image stage, read by `basalt release`;
 * - the release file (`/usr/share/basalt/release`), written by the builder,
 *   read by the update-engine;
 * - update.conf: where it lives, its syntax and the defaults the image ships;
 * - slot names, the Omaha app id and the default board;
 * - the update-engine's sockets and group, and the first-boot unit order.
 */
import { BasaltError, defineErrors } from './errors.js';

export const CONTRACT_ERRORS = defineErrors('contracts', {
  E_METADATA_VERSION: { meaning: 'a metadata file has a format version this Basalt does not read', hint: 'rebuild it with this version of Basalt' },
  E_USR_INFO_INVALID: { meaning: 'usr.img.json is not the description the builder writes', hint: "use the usr.img.json that 'basalt build' wrote next to usr.img" },
});

// ---------------------------------------------------------------------------
// Identity

/** The Omaha application id of CoreOS (and of Basalt, so that CoreOS servers answer it). */
export const APP_ID = '{e96281a6-d1af-4bde-9a0a-97b76e56dc57}';

/** The board a release is for when nothing names one (CoreOS's amd64 board). */
export const DEFAULT_BOARD = 'amd64-usr';

// ---------------------------------------------------------------------------
// Slots

/** A USR slot as the update-engine and the kernel command line name it (basalt.slot=A). */
export type SlotName = 'A' | 'B';

/** The same slot as boot entries and ESP folders spell it (basalt-a.conf, /basalt/a). */
export type SlotKey = Lowercase<SlotName>;

export const SLOT_NAMES: readonly SlotName[] = ['A', 'B'];

/** The GPT partition label of each slot. */
export const SLOT_PARTLABEL: Record<SlotName, string> = { A: 'USR-A', B: 'USR-B' };

export const otherSlot = (s: SlotName): SlotName => (s === 'A' ? 'B' : 'A');
export const slotKey = (s: SlotName): SlotKey => (s === 'A' ? 'a' : 'b');
export const slotOfKey = (k: SlotKey): SlotName => (k === 'a' ? 'A' : 'B');

/** Parses a slot as written anywhere (A, b, USR-A); undefined for anything else. */
export function parseSlot(text: string): SlotName | undefined {
  const t = text.trim().toUpperCase().replace(/^USR-/, '');
  return t === 'A' || t === 'B' ? t : undefined;
}

// ---------------------------------------------------------------------------
// usr.img.json

export const USR_INFO_FORMAT = 1;

/** The builder's description of usr.img (format 1): the filesystem, its dm-verity tree, the kernel and initrd inside. */
export interface UsrImageInfo {
  formatVersion: typeof USR_INFO_FORMAT;
  fsType: 'squashfs' | 'erofs';
  fsBytes: number;
  /** Byte offset of the hash tree (fsBytes rounded up to 4096). */
  hashOffset: number;
  /** dm-verity root hash, 64 hex; '' when verity is off. */
  rootHash: string;
  salt: string;
  version: string;
  board: string;
  /** Paths of the kernel and initrd inside /usr's image, as the image sees them. */
  kernel: string;
  initrd: string;
  /** Total bytes of usr.img (filesystem + padding + hash tree). */
  imageBytes: number;
  sha256: string;
}

/** Checks a parsed usr.img.json (`where` names the file in messages). Pure. */
export function parseUsrImageInfo(json: unknown, where: string): UsrImageInfo {
  const bad = (field: string, what: string) => new BasaltError(CONTRACT_ERRORS.E_USR_INFO_INVALID, `${where}: ${field} ${what}`);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('the file', 'is not a JSON object');
  const j = json as Record<string, unknown>;
  if (j['formatVersion'] !== USR_INFO_FORMAT) throw new BasaltError(CONTRACT_ERRORS.E_METADATA_VERSION, `${where}: unsupported formatVersion ${JSON.stringify(j['formatVersion'])} (this Basalt reads ${USR_INFO_FORMAT})`);
  const str = (k: string, re?: RegExp): string => {
    const v = j[k];
    if (typeof v !== 'string' || (re && !re.test(v))) throw bad(k, re ? `must match ${String(re)}` : 'must be a string');
    return v;
  };
  const int = (k: string): number => {
    const v = j[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(k, 'must be a non-negative integer');
    return v;
  };
  const fsType = str('fsType');
  if (fsType !== 'squashfs' && fsType !== 'erofs') throw bad('fsType', "must be 'squashfs' or 'erofs'");
  const info: UsrImageInfo = {
    formatVersion: USR_INFO_FORMAT,
    fsType,
    fsBytes: int('fsBytes'),
    hashOffset: int('hashOffset'),
    rootHash: str('rootHash', /^(|[0-9a-f]{64})$/),
    salt: str('salt', /^[0-9a-f]*$/),
    version: str('version'),
    board: str('board'),
    kernel: str('kernel'),
    initrd: str('initrd'),
    imageBytes: int('imageBytes'),
    sha256: str('sha256', /^[0-9a-f]{64}$/),
  };
  if (info.hashOffset % 4096 !== 0 || info.hashOffset < info.fsBytes) throw bad('hashOffset', 'must be fsBytes rounded up to a multiple of 4096');
  return info;
}

// ---------------------------------------------------------------------------
// KEY=VALUE files (update.conf, the release file)

/** Parses shell-style KEY=VALUE lines (comments, blank lines, optional quotes), as CoreOS's tools read them. Pure. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!;
    if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2) || (v.startsWith("'") && v.endsWith("'") && v.length >= 2)) v = v.slice(1, -1);
    else v = v.replace(/\s+#.*$/, '');
    out[m[1]!] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The release file

/** Where the update-engine reads VERSION, BOARD, APPID and CHANNEL (first file wins per key). */
export const RELEASE_FILES = ['/usr/share/basalt/release', '/usr/share/coreos/release'];

export interface ReleaseInfo {
  version: string;
  board: string;
  channel: string;
}

/** The text of /usr/share/basalt/release. */
export function renderReleaseFile(r: ReleaseInfo): string {
  return `VERSION=${r.version}\nBOARD=${r.board}\nAPPID=${APP_ID}\nCHANNEL=${r.channel}\n`;
}

// ---------------------------------------------------------------------------
// update.conf

/** update.conf as CoreOS reads it: /etc/coreos/update.conf, then the image's copy; the first file that sets a key wins. */
export const CONF_FILES = ['/etc/coreos/update.conf', '/usr/share/coreos/update.conf'];

/** The image's copy, written by the builder. */
export const IMAGE_UPDATE_CONF = '/usr/share/coreos/update.conf';

export type RebootStrategy = 'reboot' | 'etcd-lock' | 'fleetlock' | 'off';
export const REBOOT_STRATEGIES: readonly RebootStrategy[] = ['reboot', 'etcd-lock', 'fleetlock', 'off'];

/** What a key that no file sets means. */
export const UPDATE_CONF_DEFAULTS = {
  group: 'stable',
  rebootStrategy: 'reboot' as RebootStrategy,
  etcdEndpoints: ['http://127.0.0.1:2379', 'http://127.0.0.1:4001'],
  /** Tries a freshly installed slot gets (flatcar-postinst: 1). */
  tries: 1,
};

/** The units a machine's health gate checks by default (each only when the machine is meant to run it). */
export const DEFAULT_HEALTH_UNITS = ['etcd.service', 'docker.socket'];

/**
 * The TUF root metadata an image ships (the update-engine's trust anchor,
 * from the profile's update.root). The engine copies it into its state dir
 * once (…/tuf/root.json) and from then on trusts only what that root and its
 * signed successors say.
 */
export const TUF_ROOT_PATH = '/usr/share/basalt/root.json';

/** SERVER's prefix for a static release repository (SERVER=static+https://...); without it SERVER is an Omaha URL. */
export const STATIC_SERVER_PREFIX = 'static+';

/**
 * The reboot window as update.conf writes it (LOCKSMITHD_REBOOT_WINDOW_START
 * and _LENGTH): a start '[Day ]HH:MM' ('Thu 23:00', '04:00') and a length
 * such as 1h30m (units ms, s, m, h, d). The patterns the profile checks; locksmith parses the same.
 */
export const REBOOT_WINDOW_START = /^(?:(\w{3})\w*\s+)?(\d{1,2}):(\d{2})$/;
export const REBOOT_WINDOW_LENGTH = /^(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+$/;

/** What an image's update.conf sets (the build profile's `update` section). */
export interface ImageUpdateSettings {
  group: string;
  /** SERVER: an Omaha URL, STATIC_SERVER_PREFIX + a repository URL, or 'disabled'; unset: no SERVER line. */
  server?: string | undefined;
  rebootStrategy?: RebootStrategy | undefined;
  rebootWindow?: { start: string; length: string } | undefined;
  healthUnits?: readonly string[] | undefined;
}

/** A value for a KEY=VALUE line: double-quoted when it holds more than URL characters (parseEnvFile takes the quotes off; values never hold a quote). */
function envValue(v: string): string {
  return /^[\w@%+=:,./-]*$/.test(v) ? v : `"${v}"`;
}

/**
 * The text of the image's update.conf (IMAGE_UPDATE_CONF). With the group
 * only, the three lines images have always carried.
 */
export function renderImageUpdateConf(s: ImageUpdateSettings): string {
  const lines = [`GROUP=${envValue(s.group)}`];
  if (s.server !== undefined) lines.push(`SERVER=${envValue(s.server)}`);
  lines.push(`REBOOT_STRATEGY=${s.rebootStrategy ?? UPDATE_CONF_DEFAULTS.rebootStrategy}`);
  if (s.rebootWindow) {
    lines.push(`LOCKSMITHD_REBOOT_WINDOW_START=${envValue(s.rebootWindow.start)}`, `LOCKSMITHD_REBOOT_WINDOW_LENGTH=${envValue(s.rebootWindow.length)}`);
  }
  lines.push(`HEALTH_UNITS="${(s.healthUnits ?? DEFAULT_HEALTH_UNITS).join(' ')}"`);
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// The host: sockets, group, first-boot order

/** Members of this group (core is one) may run update actions and reboot-lock changes without root. */
export const UPDATE_GROUP = 'basalt-update';

/** The update-engine's action socket: check, reset, rollback, mark-good (root and UPDATE_GROUP, mode 0660). */
export const UPDATE_SOCKET = '/run/basalt/update-engine.sock';

/** The update-engine's read-only socket: status and watch, for every local user (mode 0666). */
export const UPDATE_STATUS_SOCKET = '/run/basalt/update-engine-status.sock';

/**
 * The services a cloud-config configures, which must start from the configured state on the
 * first boot: the cloud-config units are ordered Before= each of them (builder/files), and
 * etcd is not started by any target until a cloud-config starts it.
 */
export const CONFIGURED_SERVICES = ['etcd.service', 'docker.service', 'containerd.service', 'locksmithd.service', 'update-engine.service'];

/** The units that apply a cloud-config at boot, one per datasource. */
export const CLOUDINIT_UNITS = ['basalt-cloudinit-configdrive.service', 'basalt-cloudinit-cmdline.service'];

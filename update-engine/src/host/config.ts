/**
 * update.conf as CoreOS reads it: KEY=VALUE lines from /etc/coreos/update.conf,
 * then /usr/share/coreos/update.conf; the first file that sets a key wins.
 * Plus Basalt's release file (/usr/share/basalt/release) for VERSION and BOARD.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONF_FILES, parseEnvFile, REBOOT_STRATEGIES, RELEASE_FILES, STATIC_SERVER_PREFIX, UPDATE_CONF_DEFAULTS, type RebootStrategy } from '../../../common/src/contracts.js';

export interface UpdateConf {
  group: string;
  /** Omaha URL, 'static+URL' for a static repository, or undefined when updates are disabled. */
  server: string | undefined;
  /** TUF_URL: the release repository's root URL for the TUF metadata (metadata/ under it); unset: SERVER's (static) or derived from the Omaha codebase. */
  tufUrl?: string | undefined;
  disabledReason?: string | undefined;
  rebootStrategy: RebootStrategy;
  rebootWindowStart?: string | undefined;
  rebootWindowLength?: string | undefined;
  etcdEndpoints: string[];
  /** Units that must be active before a new slot is marked good. */
  healthUnits: string[];
  /** Tries a freshly installed slot gets (flatcar-postinst: 1). */
  tries: number;
  version?: string | undefined;
  board?: string | undefined;
  /** Which file set each key (for `basalt update status`). */
  sources: Record<string, string>;
  /** Every KEY=VALUE of the config files, merged (first file wins per key), for settings read elsewhere (LOCKSMITHD_*). */
  vars: Record<string, string>;
  warnings: string[];
}

/** Merges config files (first wins per key) into UpdateConf. Pure: `files` are [path, text|undefined]. */
export function resolveConf(files: [string, string | undefined][], releaseFiles: [string, string | undefined][]): UpdateConf {
  const vals: Record<string, string> = {};
  const sources: Record<string, string> = {};
  for (const [path, text] of files) {
    if (text === undefined) continue;
    for (const [k, v] of Object.entries(parseEnvFile(text))) {
      if (!(k in vals)) {
        vals[k] = v;
        sources[k] = path;
      }
    }
  }
  const rel: Record<string, string> = {};
  for (const [, text] of releaseFiles) {
    if (text === undefined) continue;
    for (const [k, v] of Object.entries(parseEnvFile(text))) if (!(k in rel)) rel[k] = v;
  }
  const warnings: string[] = [];
  const strategy = (vals['REBOOT_STRATEGY'] ?? UPDATE_CONF_DEFAULTS.rebootStrategy).trim();
  let rebootStrategy: RebootStrategy = UPDATE_CONF_DEFAULTS.rebootStrategy;
  if ((REBOOT_STRATEGIES as readonly string[]).includes(strategy)) rebootStrategy = strategy as RebootStrategy;
  else if (strategy === 'best-effort') warnings.push("REBOOT_STRATEGY=best-effort was removed in locksmith 0.6.0; using 'reboot'");
  else warnings.push(`REBOOT_STRATEGY='${strategy}' is not reboot, etcd-lock or off; using 'reboot'`);
  const serverRaw = vals['SERVER']?.trim();
  let server: string | undefined;
  let disabledReason: string | undefined;
  if (serverRaw === undefined || serverRaw === '') disabledReason = 'no SERVER is configured';
  else if (serverRaw === 'disabled') disabledReason = 'SERVER=disabled';
  else {
    const url = serverRaw.startsWith(STATIC_SERVER_PREFIX) ? serverRaw.slice(STATIC_SERVER_PREFIX.length) : serverRaw;
    try {
      const u = new URL(url);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      server = serverRaw;
    } catch {
      disabledReason = `SERVER='${serverRaw}' is not an http(s) URL`;
    }
  }
  const tries = Number(vals['UPDATE_TRIES'] ?? String(UPDATE_CONF_DEFAULTS.tries));
  const ws = vals['LOCKSMITHD_REBOOT_WINDOW_START'];
  const wl = vals['LOCKSMITHD_REBOOT_WINDOW_LENGTH'];
  if ((ws === undefined) !== (wl === undefined)) warnings.push('LOCKSMITHD_REBOOT_WINDOW_START and _LENGTH must be set together; ignoring the window');
  return {
    group: vals['GROUP']?.trim() || UPDATE_CONF_DEFAULTS.group,
    server,
    tufUrl: vals['TUF_URL']?.trim() || undefined,
    disabledReason,
    rebootStrategy,
    rebootWindowStart: ws !== undefined && wl !== undefined ? ws : undefined,
    rebootWindowLength: ws !== undefined && wl !== undefined ? wl : undefined,
    etcdEndpoints: (vals['LOCKSMITHD_ENDPOINT'] ?? UPDATE_CONF_DEFAULTS.etcdEndpoints.join(',')).split(',').map((s) => s.trim()).filter(Boolean),
    healthUnits: (vals['HEALTH_UNITS'] ?? '').split(/[\s,]+/).filter(Boolean),
    tries: Number.isInteger(tries) && tries >= 1 && tries <= 15 ? tries : UPDATE_CONF_DEFAULTS.tries,
    version: rel['VERSION'] ?? rel['COREOS_RELEASE_VERSION'] ?? rel['VERSION_ID'],
    board: rel['BOARD'] ?? rel['COREOS_RELEASE_BOARD'],
    sources,
    vars: vals,
    warnings,
  };
}

/** Reads the config files under `root` (default /). */
export async function loadConf(root = '/'): Promise<UpdateConf> {
  const rd = async (p: string): Promise<[string, string | undefined]> => [p, await readFile(join(root, p), 'utf8').catch(() => undefined)];
  return resolveConf(await Promise.all(CONF_FILES.map(rd)), await Promise.all([...RELEASE_FILES, '/usr/lib/os-release'].map(rd)));
}

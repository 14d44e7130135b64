/**
 * Builds the engine's environment from command-line flags: either a disk
 * image (`--disk IMAGE --booted-slot A|B`, ESP edited with mtools) or the
 * running host (slot from /proc/cmdline, disk from PARTLABEL, ESP mounted).
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BasaltError, UsageError, COMMON_ERRORS } from '../../../common/src/errors.js';
import type { Logger } from '../../../common/src/log.js';
import { readGpt, findPartition, partitionRange } from '../../../common/src/gpt/index.js';
import { loadConf, type UpdateConf } from './config.js';
import { DirEsp, MtoolsEsp, entriesOf, type Esp } from './esp.js';
import { coreosTimings, realClock, type Clock, type SchedulerTimings } from './scheduler.js';
import type { EngineEnv } from './engine.js';
import { DEFAULT_BOARD, SLOT_PARTLABEL, TUF_ROOT_PATH, type SlotName } from '../../../common/src/contracts.js';
import { randomUUID } from 'node:crypto';
import { defaultHttp, type HttpOptions } from './http.js';
import { parseDuration } from '../format/duration.js';
import { intOpt, parseSize } from '../../../common/src/cli/args.js';
import { UE_ERRORS } from '../errors.js';

export interface EnvFlags {
  disk?: string | undefined;
  'booted-slot'?: string | undefined;
  esp?: string | undefined;
  root?: string | undefined;
  'state-dir'?: string | undefined;
  keyring?: string | undefined;
  'tuf-root'?: string | undefined;
  'tuf-url'?: string | undefined;
  server?: string | undefined;
  channel?: string | undefined;
  board?: string | undefined;
  'current-version'?: string | undefined;
  'machine-id'?: string | undefined;
  'boot-id'?: string | undefined;
  'retry-base'?: string | undefined;
  'stall-timeout'?: string | undefined;
  'document-timeout'?: string | undefined;
  'min-rate'?: string | undefined;
  retries?: string | undefined;
  'first-check'?: string | undefined;
  interval?: string | undefined;
}

export const envFlagSpec = {
  disk: { type: 'string' },
  'booted-slot': { type: 'string' },
  esp: { type: 'string' },
  root: { type: 'string' },
  'state-dir': { type: 'string' },
  keyring: { type: 'string' },
  'tuf-root': { type: 'string' },
  'tuf-url': { type: 'string' },
  server: { type: 'string' },
  channel: { type: 'string' },
  board: { type: 'string' },
  'current-version': { type: 'string' },
  'machine-id': { type: 'string' },
  'boot-id': { type: 'string' },
  'retry-base': { type: 'string' },
  'stall-timeout': { type: 'string' },
  'document-timeout': { type: 'string' },
  'min-rate': { type: 'string' },
  retries: { type: 'string' },
  'first-check': { type: 'string' },
  interval: { type: 'string' },
} as const;

export const envFlagHelp = `Target (an image file needs no VM):
  --disk IMAGE          disk image or block device (default: the disk holding USR-A/USR-B)
  --booted-slot A|B     slot running now (default: from /proc/cmdline basalt.slot= / PARTLABEL=USR-X)
  --esp DIR             mounted ESP (default: /efi or /boot on a host; mtools inside --disk)
  --root DIR            where /etc/coreos/update.conf, /usr/share/... are read (default /)
  --state-dir DIR       engine state (default ROOT/var/lib/basalt/update-engine)
  --keyring PATH        (unused since the TUF trust model; accepted for old scripts)
  --tuf-root PATH       the trusted TUF root.json the state dir starts from (default ROOT/usr/share/basalt/root.json)
  --tuf-url URL         the release repository (its metadata/ holds the TUF metadata); default: TUF_URL
                        of update.conf, else SERVER's repository (static) or the one the Omaha codebase is in
  --server URL          override SERVER (Omaha URL, or static+URL of a repository)
  --channel C, --board B, --current-version V, --machine-id ID, --boot-id ID
  --retry-base DUR, --stall-timeout DUR, --first-check DUR, --interval DUR   timing overrides
  --document-timeout DUR  whole deadline of the Omaha answer, a channel file, a manifest (default 60s)
  --min-rate SIZE       slowest payload transfer kept, per second over each stall window (default 1K)
  --retries N           transfer retries before a download gives up (default 20)
`;

function dur(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = parseDuration(v);
  if (n === undefined) throw new UsageError(`--${name}: '${v}' is not a duration (e.g. 500ms, 7m, 1h)`);
  return n;
}

async function readOr(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch(() => undefined);
}

/** Finds the whole disk holding a partition with the given PARTLABEL (host mode). */
async function diskOfLabel(label: string): Promise<string> {
  let part: string;
  try {
    part = await realpath(`/dev/disk/by-partlabel/${label}`);
  } catch {
    throw new BasaltError(UE_ERRORS.E_NO_SLOT_DISK, `no partition labelled ${label} on this host`, { hint: 'pass --disk IMAGE --booted-slot A|B to work on an image file' });
  }
  // /sys/class/block/vda3 links to .../block/vda/vda3: the disk is the parent
  // directory of the resolved link (path.join would drop '..' before resolving).
  const parent = dirname(await realpath(join('/sys/class/block', basename(part))));
  return `/dev/${basename(parent)}`;
}

export interface BuiltEnv {
  env: EngineEnv;
  conf: UpdateConf;
}

export async function buildEnv(f: EnvFlags, log: Logger, failpoint: (n: string) => void, clock: Clock = realClock): Promise<BuiltEnv> {
  const root = f.root ?? '/';
  const conf = await loadConf(root);
  for (const w of conf.warnings) log.warn(w);
  let booted: SlotName;
  const bs = f['booted-slot']?.toUpperCase();
  if (bs !== undefined) {
    if (bs !== 'A' && bs !== 'B') throw new UsageError(`--booted-slot: '${f['booted-slot']}' is not A or B`);
    booted = bs;
  } else {
    if (f.disk) throw new UsageError('--booted-slot A|B is required with --disk');
    const cmd = (await readOr('/proc/cmdline')) ?? '';
    const m = /\bbasalt\.slot=([AB])\b/i.exec(cmd) ?? /PARTLABEL=USR-([AB])\b/.exec(cmd);
    if (!m) throw new BasaltError(UE_ERRORS.E_NO_BOOTED_SLOT, 'cannot tell the booted slot from /proc/cmdline (no basalt.slot= or PARTLABEL=USR-A/B)', { hint: 'pass --booted-slot' });
    booted = m[1]!.toUpperCase() as SlotName;
  }
  const disk = f.disk ?? (await diskOfLabel(SLOT_PARTLABEL[booted]));
  await stat(disk).catch(() => {
    throw new BasaltError(COMMON_ERRORS.E_NOT_FOUND, `${disk}: no such disk or image`);
  });
  let esp: Esp;
  if (f.esp) esp = new DirEsp(f.esp);
  else if (f.disk) {
    const gpt = await readGpt(disk);
    esp = new MtoolsEsp(disk, partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).offset);
  } else {
    const cand = ['/efi', '/boot'];
    let found: string | undefined;
    for (const c of cand) if (await stat(join(c, 'loader')).then(() => true, () => false)) found = found ?? c;
    if (!found) throw new BasaltError(UE_ERRORS.E_NO_ESP, 'no mounted ESP with /loader at /efi or /boot', { hint: 'mount the ESP or pass --esp DIR' });
    esp = new DirEsp(found);
  }
  let version = f['current-version'] ?? (f.disk ? undefined : conf.version);
  if (!version) {
    const mine = (await entriesOf(esp)).find((e) => e.slot === booted);
    version = mine?.version;
  }
  if (!version) throw new BasaltError(UE_ERRORS.E_NO_VERSION, `cannot tell the running version (no release file, no boot entry for slot ${booted} on ${esp.describe})`, { hint: 'pass --current-version' });
  const machineId = f['machine-id'] ?? (await readOr(join(root, 'etc/machine-id')))?.trim() ?? 'unknown-machine';
  const bootId = f['boot-id'] ?? (f.disk ? 'image-mode' : ((await readOr('/proc/sys/kernel/random/boot_id'))?.trim() ?? randomUUID()));
  const http: HttpOptions = { ...defaultHttp };
  const rb = dur(f['retry-base'], 'retry-base');
  if (rb !== undefined) http.retryBaseMs = rb;
  const st = dur(f['stall-timeout'], 'stall-timeout');
  if (st !== undefined) http.stallMs = st;
  const dt = dur(f['document-timeout'], 'document-timeout');
  if (dt !== undefined) http.documentMs = dt;
  if (f['min-rate'] !== undefined) http.minBytesPerSec = parseSize(f['min-rate'], 'min-rate');
  const retries = intOpt(f.retries, 'retries', 0, 1000);
  if (retries !== undefined) http.maxRetries = retries;
  const timings: SchedulerTimings = { ...coreosTimings };
  const fc = dur(f['first-check'], 'first-check');
  if (fc !== undefined) timings.firstMs = fc;
  const iv = dur(f.interval, 'interval');
  if (iv !== undefined) timings.intervalMs = iv;
  if (fc !== undefined || iv !== undefined) timings.fuzzMs = 0;
  const stateDir = f['state-dir'] ?? join(root, 'var/lib/basalt/update-engine');
  const server = f.server ?? conf.server;
  return {
    conf,
    env: {
      disk,
      booted,
      esp,
      stateDir,
      keyringPath: f.keyring ?? join(root, 'usr/share/basalt/keys'),
      tufRoot: f['tuf-root'] ?? join(root, TUF_ROOT_PATH.slice(1)),
      tufUrl: f['tuf-url'] ?? conf.tufUrl,
      server: server === 'disabled' ? undefined : server,
      me: { version, channel: f.channel ?? conf.group, board: f.board ?? conf.board ?? DEFAULT_BOARD },
      machineId,
      bootId,
      tries: conf.tries,
      http,
      timings,
      clock,
      rand: Math.random,
      rebootRequiredPath: f.disk ? join(stateDir, 'reboot-required') : '/run/reboot-required',
      log,
      failpoint,
    },
  };
}

/**
 * Failpoints for crash tests: BASALT_FAILPOINT="name" or "name:N" makes the
 * process SIGKILL itself at the N-th time it reaches `name` (like kill -9).
 */
export function failpointFromEnv(spec: string | undefined): (name: string) => void {
  if (!spec) return () => {};
  const [want, nth] = spec.split(':');
  let left = Number(nth ?? '1');
  return (name) => {
    if (name === want && --left <= 0) process.kill(process.pid, 'SIGKILL');
  };
}

/** locksmithctl with CoreOS's subcommands (status, lock [id], unlock [id], set-max N) and Basalt's set-expire DURATION. */
import { readFile } from 'node:fs/promises';
import { BasaltError } from '../../../common/src/errors.js';
import { requireActionRights } from '../host/control.js';
import {
  EtcdKv, RebootLock, checkEndpoint, checkEtcdOptions, expiredMessage, formatDuration, formatStatus, listWaiters, parseExpire, type EtcdOptions,
} from '../locksmith/locksmith.js';
import { UE_ERRORS } from '../errors.js';
import { UPDATE_CONF_DEFAULTS } from '../../../common/src/contracts.js';

const USAGE = `Usage: locksmithctl [-endpoint URL] [-group NAME] [-etcd-cafile FILE] [-etcd-certfile FILE]
                    [-etcd-keyfile FILE] [-etcd-username USER] [-etcd-password PASS] COMMAND

Commands:
  status               the semaphore, how long each holder has held the lock (STALE past
                       the expiry), and the machines waiting for the lock or their window
  lock [ID]            take the reboot lock for ID (default: /etc/machine-id)
  unlock [ID]          release the lock of ID (also a stale holder's)
  set-max N            allow N holders at a time
  set-expire DURATION  the next lock attempt that finds the lock full drops holders that
                       held it longer than DURATION (15m, 1h30m); 0 disables

-endpoint may be repeated or comma-separated (default http://127.0.0.1:2379,http://127.0.0.1:4001).
Flags not given come from LOCKSMITHCTL_ENDPOINT, LOCKSMITHCTL_GROUP, LOCKSMITHCTL_ETCD_CAFILE,
LOCKSMITHCTL_ETCD_CERTFILE, LOCKSMITHCTL_ETCD_KEYFILE, LOCKSMITHCTL_ETCD_USERNAME and
LOCKSMITHCTL_ETCD_PASSWORD. lock, unlock, set-max and set-expire need root or the update group.
`;

const FLAGS = ['endpoint', 'group', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password'] as const;
type Flag = (typeof FLAGS)[number];

export interface CtlIo {
  out(t: string): void;
  err(t: string): void;
  /** The environment for LOCKSMITHCTL_* (default process.env). */
  env?: Record<string, string | undefined>;
  /** The clock for status (default now). */
  now?: () => Date;
}

/** The command line split into flags (each value given, in order) and the rest (command and argument). */
interface CtlArgs {
  given: Map<Flag, string[]>;
  rest: string[];
}

/** Splits argv; a number is the exit code when there is nothing to run (help printed, or a flag without its value). */
function parseArgv(argv: string[], io: CtlIo): CtlArgs | number {
  const given = new Map<Flag, string[]>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--?([a-z-]+)(?:=(.*))?$/s.exec(a);
    const flag = m && (FLAGS as readonly string[]).includes(m[1]!) ? (m[1] as Flag) : undefined;
    if (m && flag) {
      const v = m[2] ?? argv[++i];
      if (v === undefined) {
        io.err(`locksmithctl: -${flag} needs a value\n${USAGE}`);
        return 2;
      }
      given.set(flag, [...(given.get(flag) ?? []), v]);
    } else if (a === '-h' || a === '--help' || a === 'help') {
      io.out(USAGE);
      return 0;
    } else rest.push(a);
  }
  return { given, rest };
}

/** The etcd client and the reboot lock of the group. */
interface CtlClient {
  kv: EtcdKv;
  lock: RebootLock;
  group: string | undefined;
}

/** Builds the client from the flags, and LOCKSMITHCTL_* for the flags not given. */
function ctlClient(given: Map<Flag, string[]>, env: Record<string, string | undefined>): CtlClient {
  // CoreOS's flagsFromEnv: a flag not on the command line comes from LOCKSMITHCTL_<FLAG>.
  const value = (f: Flag): string | undefined => {
    const v = given.get(f)?.at(-1) ?? env[`LOCKSMITHCTL_${f.toUpperCase().replace(/-/g, '_')}`];
    return v === undefined || v === '' ? undefined : v;
  };
  const envEndpoint = value('endpoint');
  const epFlags = given.get('endpoint') ?? (envEndpoint !== undefined ? [envEndpoint] : []);
  const endpoints = epFlags.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const e of endpoints) checkEndpoint(e, given.has('endpoint') ? '-endpoint' : 'LOCKSMITHCTL_ENDPOINT');
  const etcd: EtcdOptions = {
    caFile: value('etcd-cafile'),
    certFile: value('etcd-certfile'),
    keyFile: value('etcd-keyfile'),
    username: value('etcd-username'),
    password: value('etcd-password'),
  };
  checkEtcdOptions(etcd, 'LOCKSMITHCTL_ETCD_');
  const group = value('group');
  const kv = new EtcdKv(endpoints.length ? endpoints : UPDATE_CONF_DEFAULTS.etcdEndpoints, etcd);
  return { kv, lock: new RebootLock(kv, group), group };
}

async function machineId(): Promise<string> {
  const id = (await readFile('/etc/machine-id', 'utf8').catch(() => '')).trim();
  if (!id) throw new BasaltError(UE_ERRORS.E_NO_MACHINE_ID, '/etc/machine-id is missing', { hint: 'pass the id: locksmithctl lock ID' });
  return id;
}

async function status(c: CtlClient, io: CtlIo): Promise<number> {
  const [{ sem }, waiters] = await Promise.all([c.lock.get(), listWaiters(c.kv, c.group)]);
  io.out(formatStatus(sem, waiters, (io.now ?? (() => new Date()))()));
  return 0;
}

async function lock(c: CtlClient, io: CtlIo, id: string | undefined): Promise<number> {
  const r = await c.lock.lock(id ?? (await machineId()));
  for (const x of r.expired) io.out(expiredMessage(x, r.sem.expire ?? 0) + '\n');
  return 0;
}

async function unlock(c: CtlClient, id: string | undefined): Promise<number> {
  await c.lock.unlock(id ?? (await machineId()));
  return 0;
}

async function setMax(c: CtlClient, io: CtlIo, arg: string | undefined): Promise<number> {
  if (!arg || !/^\d+$/.test(arg)) {
    io.err(`locksmithctl: set-max needs a number\n${USAGE}`);
    return 2;
  }
  const { sem } = await c.lock.get();
  const next = await c.lock.setMax(Number(arg));
  io.out(`Old: ${sem.max}\nNew: ${next.max}\n`);
  return 0;
}

async function setExpire(c: CtlClient, io: CtlIo, arg: string | undefined): Promise<number> {
  if (arg === undefined) {
    io.err(`locksmithctl: set-expire needs a duration such as 15m, or 0\n${USAGE}`);
    return 2;
  }
  const seconds = parseExpire(arg);
  const { sem } = await c.lock.get();
  const next = await c.lock.setExpire(seconds);
  const show = (s: number | undefined) => (s ? formatDuration(s * 1000) : 'never');
  io.out(`Old: ${show(sem.expire)}\nNew: ${show(next.expire)}\n`);
  return 0;
}

export async function main(argv: string[], io: CtlIo): Promise<number> {
  const args = parseArgv(argv, io);
  if (typeof args === 'number') return args;
  const c = ctlClient(args.given, io.env ?? process.env);
  const [cmd, arg] = args.rest;
  if (cmd === 'lock' || cmd === 'unlock' || cmd === 'set-max' || cmd === 'set-expire') await requireActionRights(`locksmithctl ${cmd}`);
  switch (cmd) {
    case 'status':
      return status(c, io);
    case 'lock':
      return lock(c, io, arg);
    case 'unlock':
      return unlock(c, arg);
    case 'set-max':
      return setMax(c, io, arg);
    case 'set-expire':
      return setExpire(c, io, arg);
    default:
      io.err(USAGE);
      return 2;
  }
}

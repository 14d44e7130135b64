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

export async function main(argv: string[], io: CtlIo): Promise<number> {
  const env = io.env ?? process.env;
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
  // CoreOS's flagsFromEnv: a flag not on the command line comes from LOCKSMITHCTL_<FLAG>.
  const value = (f: Flag): string | undefined => {
    const v = given.get(f)?.at(-1) ?? env[`LOCKSMITHCTL_${f.toUpperCase().replace(/-/g, '_')}`];
    return v === undefined || v === '' ? undefined : v;
  };
  const epFlags = given.get('endpoint') ?? (value('endpoint') !== undefined ? [value('endpoint')!] : []);
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
  const lock = new RebootLock(kv, group);
  const machineId = async () =>
    (await readFile('/etc/machine-id', 'utf8').catch(() => '')).trim() ||
    (() => {
      throw new BasaltError(UE_ERRORS.E_NO_MACHINE_ID, '/etc/machine-id is missing', { hint: 'pass the id: locksmithctl lock ID' });
    })();
  const [cmd, arg] = rest;
  if (cmd === 'lock' || cmd === 'unlock' || cmd === 'set-max' || cmd === 'set-expire') await requireActionRights(`locksmithctl ${cmd}`);
  switch (cmd) {
    case 'status': {
      const [{ sem }, waiters] = await Promise.all([lock.get(), listWaiters(kv, group)]);
      io.out(formatStatus(sem, waiters, (io.now ?? (() => new Date()))()));
      return 0;
    }
    case 'lock': {
      const r = await lock.lock(arg ?? (await machineId()));
      for (const x of r.expired) io.out(expiredMessage(x, r.sem.expire ?? 0) + '\n');
      return 0;
    }
    case 'unlock':
      await lock.unlock(arg ?? (await machineId()));
      return 0;
    case 'set-max': {
      if (!arg || !/^\d+$/.test(arg)) {
        io.err(`locksmithctl: set-max needs a number\n${USAGE}`);
        return 2;
      }
      const { sem } = await lock.get();
      const next = await lock.setMax(Number(arg));
      io.out(`Old: ${sem.max}\nNew: ${next.max}\n`);
      return 0;
    }
    case 'set-expire': {
      if (arg === undefined) {
        io.err(`locksmithctl: set-expire needs a duration such as 15m, or 0\n${USAGE}`);
        return 2;
      }
      const seconds = parseExpire(arg);
      const { sem } = await lock.get();
      const next = await lock.setExpire(seconds);
      const show = (s: number | undefined) => (s ? formatDuration(s * 1000) : 'never');
      io.out(`Old: ${show(sem.expire)}\nNew: ${show(next.expire)}\n`);
      return 0;
    }
    default:
      io.err(USAGE);
      return 2;
  }
}

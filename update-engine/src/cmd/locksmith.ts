/** `basalt locksmith`: locksmithd. Reboots after an update per REBOOT_STRATEGY, window and etcd lock. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { BasaltError } from '../../../common/src/errors.js';
import { run as exec } from '../../../common/src/exec.js';
import { loadConf } from '../host/config.js';
import { DEFAULT_SOCKET, request } from '../host/control.js';
import type { Status } from '../host/engine.js';
import { fleetLockCall } from '../fleet/fleetlock.js';
import { EtcdKv, EtcdWaiting, RebootLock, coordinateReboot, locksmithSettings, releaseOwnLock, type CoordinatorDeps } from '../locksmith/locksmith.js';
import { UE_ERRORS } from '../errors.js';

export const help = `Usage: basalt locksmith [--root DIR] [--socket PATH] [--group NAME]

Waits for update-engine to reach UPDATED_NEED_REBOOT, then reboots per REBOOT_STRATEGY
(reboot, etcd-lock, off), inside the reboot window when one is set, holding the etcd
reboot lock with etcd-lock. On start it releases the lock this machine holds (the unit
runs after the health gate passed). The reboot runs 'systemctl reboot'.

Settings come from the environment (the unit's drop-ins, as coreos-cloudinit writes
from coreos.locksmith) over /etc/coreos/update.conf and /usr/share/coreos/update.conf:
  REBOOT_STRATEGY
  LOCKSMITHD_REBOOT_WINDOW_START, LOCKSMITHD_REBOOT_WINDOW_LENGTH
      ('Thu 23:00' or '04:00', '1h30m'; REBOOT_WINDOW_START/_LENGTH also work)
  LOCKSMITHD_ENDPOINT      comma-separated etcd URLs (default http://127.0.0.1:2379,http://127.0.0.1:4001)
  LOCKSMITHD_GROUP         the lock's group (--group wins)
  LOCKSMITHD_ETCD_CAFILE, LOCKSMITHD_ETCD_CERTFILE, LOCKSMITHD_ETCD_KEYFILE
  LOCKSMITHD_ETCD_USERNAME, LOCKSMITHD_ETCD_PASSWORD
  LOCKSMITHD_FLEETLOCK_URL REBOOT_STRATEGY=fleetlock: the FleetLock server (Zincati's protocol,
                           e.g. basalt serve --fleetlock-etcd); the group is LOCKSMITHD_GROUP or 'default'
While it waits for the window or the lock it registers under the lock's waiting/ key,
for 'locksmithctl status'.
`;

export async function run(ctx: CommandContext): Promise<number> {
  const { values } = parse(ctx.args, { root: { type: 'string' }, socket: { type: 'string' }, group: { type: 'string' } }, 'locksmith');
  const root = values.root ?? '/';
  const conf = await loadConf(root);
  const s = locksmithSettings(process.env, conf.vars, { group: values.group });
  for (const w of s.warnings) ctx.log.warn(w);
  if (s.strategy === 'off') {
    ctx.log.info('REBOOT_STRATEGY=off: locksmith exits');
    return 0;
  }
  const id = (await readFile(join(root, 'etc/machine-id'), 'utf8').catch(() => '')).trim();
  if (!id && (s.strategy === 'etcd-lock' || s.strategy === 'fleetlock')) {
    throw new BasaltError(UE_ERRORS.E_NO_MACHINE_ID, `${join(root, 'etc/machine-id')} is missing or empty`, { hint: 'the reboot lock is held by machine id: run systemd-machine-id-setup' });
  }
  const kv = s.strategy === 'etcd-lock' ? new EtcdKv(s.endpoints, s.etcd) : undefined;
  const lock = kv && new RebootLock(kv, s.group);
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const fl = () => ({ url: s.fleetLockUrl!, id, group: s.group ?? 'default' });
  const d: CoordinatorDeps = {
    strategy: s.strategy,
    window: s.window,
    lock,
    ...(s.strategy === 'fleetlock' && s.fleetLockUrl
      ? { fleetLock: { preReboot: () => fleetLockCall(fl(), 'pre-reboot'), steadyState: () => fleetLockCall(fl(), 'steady-state') } }
      : {}),
    // A waiting machine goes as soon as a holder releases the lock, not at its next backoff step.
    ...(lock ? { waitForLock: (ms: number) => lock.waitForChange(ms, sleep) } : {}),
    waiting: kv && new EtcdWaiting(kv, id, s.group),
    id: id || 'unknown',
    now: () => new Date(),
    sleep,
    reboot: async () => {
      ctx.log.info('rebooting for the installed update');
      await exec('systemctl', ['reboot']);
    },
    log: ctx.log,
  };
  ctx.log.info(
    `REBOOT_STRATEGY=${s.strategy}` +
      (s.windowText ? `, reboot window ${s.windowText}` : '') +
      (s.fleetLockUrl ? `, FleetLock ${s.fleetLockUrl}` : '') +
      (kv ? `, etcd ${s.endpoints.join(',')}${s.group ? `, group ${s.group}` : ''}` : ''),
  );
  await releaseOwnLock(d);
  await request(values.socket ?? DEFAULT_SOCKET, 'watch', (o) => (o['status'] as Status).status !== 'UPDATE_STATUS_UPDATED_NEED_REBOOT');
  await coordinateReboot(d);
  return 0;
}

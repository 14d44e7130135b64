/** `basalt locksmith`: locksmithd. Reboots after an update per REBOOT_STRATEGY, window and etcd lock. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CommandContext } from '../../../cli/types.js';
import { parse } from '../../../cli/args.js';
import { run as exec } from '../../../common/src/exec.js';
import { loadConf } from '../config.js';
import { DEFAULT_SOCKET, request } from '../control.js';
import type { Status } from '../engine.js';
import { EtcdKv, RebootLock, coordinateReboot, parseWindow, releaseOwnLock } from '../locksmith.js';

export const help = `Usage: basalt locksmith [--root DIR] [--socket PATH] [--group NAME]

Waits for update-engine to reach UPDATED_NEED_REBOOT, then reboots per REBOOT_STRATEGY
(reboot, etcd-lock, off) from update.conf, inside LOCKSMITHD_REBOOT_WINDOW_START/_LENGTH
when set, holding the etcd reboot lock (LOCKSMITHD_ENDPOINT) with etcd-lock. On start it
releases the lock this machine holds. The reboot runs 'systemctl reboot'.
`;

export async function run(ctx: CommandContext): Promise<number> {
  const { values } = parse(ctx.args, { root: { type: 'string' }, socket: { type: 'string' }, group: { type: 'string' } }, 'locksmith');
  const root = values.root ?? '/';
  const conf = await loadConf(root);
  const id = (await readFile(join(root, 'etc/machine-id'), 'utf8').catch(() => 'unknown')).trim();
  const d = {
    strategy: conf.rebootStrategy,
    window: conf.rebootWindowStart && conf.rebootWindowLength ? parseWindow(conf.rebootWindowStart, conf.rebootWindowLength) : undefined,
    lock: conf.rebootStrategy === 'etcd-lock' ? new RebootLock(new EtcdKv(conf.etcdEndpoints), values.group) : undefined,
    id,
    now: () => new Date(),
    sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)),
    reboot: async () => {
      ctx.log.info('rebooting for the installed update');
      await exec('systemctl', ['reboot']);
    },
    log: ctx.log,
  };
  if (d.strategy === 'off') {
    ctx.log.info('REBOOT_STRATEGY=off: locksmith exits');
    return 0;
  }
  await releaseOwnLock(d);
  await request(values.socket ?? DEFAULT_SOCKET, 'watch', (o) => (o['status'] as Status).status !== 'UPDATE_STATUS_UPDATED_NEED_REBOOT');
  await coordinateReboot(d);
  return 0;
}

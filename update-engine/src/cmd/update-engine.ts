/** `basalt update-engine`: the daemon (started by update-engine.service). */
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { buildEnv, envFlagHelp, envFlagSpec, failpointFromEnv } from '../host/hostenv.js';
import { Engine } from '../host/engine.js';
import { DEFAULT_SOCKET, activatedSockets, serveControl, statusSocketFor, updateGroupId } from '../host/control.js';
import { healthGate, markGood, rollback } from '../host/health.js';

export const help = `Usage: basalt update-engine [--socket PATH] [options]

Checks for updates on CoreOS's schedule (first check 7±5 min after start, then every 45±5 min,
doubling up to 4 h after server errors), installs them into the inactive slot, reports Omaha
events, detects and reports rollbacks, and answers clients on a unix socket.

${envFlagHelp}`;

export async function run(ctx: CommandContext): Promise<number> {
  const { values } = parse(ctx.args, { ...envFlagSpec, socket: { type: 'string' } }, 'update-engine');
  const { env, conf } = await buildEnv(values, ctx.log, failpointFromEnv(process.env['BASALT_FAILPOINT']));
  const engine = new Engine(env);
  await engine.start(true);
  const sock = values.socket ?? DEFAULT_SOCKET;
  const server = await serveControl(sock, engine, {
    'mark-good': async () => ({ ...(await markGood(env.disk, env.esp, env.booted, await healthGate(values.disk ? [] : ['boot-complete.target'], conf.healthUnits))) }),
    rollback: async () => ({ next: await rollback(env.disk, env.esp, env.booted) }),
    unblock: async () => {
      await engine.unblock();
      return {};
    },
  }, { gid: await updateGroupId(), fds: values.socket ? {} : activatedSockets(process.env, process.pid) });
  ctx.log.info(`update-engine: ${env.me.version} on ${env.me.channel}, slot ${env.booted}, server ${env.server ?? 'disabled'}; sockets ${sock} (actions), ${statusSocketFor(sock)} (status)`);
  await new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  engine.stop();
  await server.close();
  if (engine.busy()) {
    // The install is crash-safe (progress is kept per chunk and the new slot is only
    // prioritized at the very end): stop now, the next start resumes where it was.
    ctx.log.info(`update-engine: stopping during ${engine.status().status}; the update resumes at the next start`);
    process.exit(0);
  }
  return 0;
}

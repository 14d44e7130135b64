/** `basalt serve`: Omaha v3 update server over a release repository. */
import { join, resolve } from 'node:path';
import type { CommandContext } from '../../../common/src/cli/types.js';
import { intOpt, parse, parseSize } from '../../../common/src/cli/args.js';
import { parseDuration } from '../format/duration.js';
import { DEFAULT_EVENT_LIMITS } from '../serve/events.js';
import { UsageError } from '../../../common/src/errors.js';
import { loadKeyring } from '../format/signature.js';
import { defaultAppIds, startServer } from '../serve/server.js';
import { readFile } from 'node:fs/promises';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import { openStore } from '../fleet/store.js';
import { FleetService } from '../fleet/service.js';
import { FleetLock } from '../fleet/fleetlock.js';
import { EtcdKv } from '../locksmith/locksmith.js';
import { parsePolicyDuration } from '../fleet/policy.js';

/** The admin token from a file (first line) or BASALT_ADMIN_TOKEN; at least 16 characters. */
export async function loadAdminToken(file: string | undefined, env: Record<string, string | undefined>): Promise<string | undefined> {
  let token: string | undefined;
  if (file) {
    try {
      token = (await readFile(file, 'utf8')).split('\n')[0]!.trim();
    } catch (e) {
      throw new BasaltError(UE_ERRORS.E_FLEET_AUTH, `${file}: cannot read the admin token: ${(e as Error).message}`);
    }
  } else token = env['BASALT_ADMIN_TOKEN']?.trim() || undefined;
  if (token !== undefined && token.length < 16) throw new BasaltError(UE_ERRORS.E_FLEET_AUTH, 'the admin token is shorter than 16 characters', { hint: 'make one with: head -c 32 /dev/urandom | base64' });
  return token;
}

export const help = `Usage: basalt serve --repo DIR [--listen 127.0.0.1:8080] [options]

Answers Omaha v3 update checks (POST /v1/update/) from the release repository's signed channel
metadata, records events and pings as JSON lines, and serves the repository's files (payloads
with HTTP Range). A client that says delta_okay="true" is offered the release's delta from its
version when one is published (payloads/V/delta-from-ITS_VERSION/). The repository stays usable
without this server (static mode, where the engine looks for the delta itself).

Options:
  --listen HOST:PORT  address (default 127.0.0.1:8080; port 0 = random)
  --base-url URL      public URL of the repository for payload urls (default: from the Host header)
  --keyring PATH      verify channel metadata with these public keys before offering it
  --events FILE       events log (default DIR/../basalt-serve-events.jsonl)
  --appid ID          answer this Omaha app id (repeatable; default CoreOS's)
  --max-body SIZE     largest request body accepted (default 64K; more is answered 413)
  --request-timeout DUR  time a client has to send its whole request, headers and body (default 30s; 408)
  --events-max SIZE   rotate the events log at this size (default 16M)
  --events-keep N     rotated event logs kept (default 3: the log takes at most 4 x --events-max)

An app id it does not answer gets HTTP 400 with status="error-unknownApplication" (as go-omaha).

Fleet service (rollout policies per group, admin API, dashboard, metrics, FleetLock):
  --database URL|FILE  postgres://user@host/db (shared by replicas), or a SQLite file
                       (default DIR/../basalt-fleet.sqlite)
  --admin-token-file F bearer token of the admin API (/admin/v1/) and the dashboard
                       (/dashboard/); or BASALT_ADMIN_TOKEN. Without one the admin API is off.
  --event-retention DUR keep the fleet's events this long (default 30d)
  --fleetlock-etcd URL serve FleetLock (POST /v1/pre-reboot, /v1/steady-state) from this etcd
  --fleetlock-max N    reboot slots per group (default 1)
  --fleetlock-ttl DUR  a slot's lease: a machine that does not report steady state within it
                       loses its slot (default 15m)
Prometheus metrics are at /metrics.
`;

export async function run(ctx: CommandContext): Promise<number> {
  const { values } = parse(
    ctx.args,
    { repo: { type: 'string' }, listen: { type: 'string' }, 'base-url': { type: 'string' }, keyring: { type: 'string' }, events: { type: 'string' }, appid: { type: 'string', multiple: true }, 'max-body': { type: 'string' }, 'request-timeout': { type: 'string' }, 'events-max': { type: 'string' }, 'events-keep': { type: 'string' }, database: { type: 'string' }, 'admin-token-file': { type: 'string' }, 'fleetlock-etcd': { type: 'string' }, 'fleetlock-max': { type: 'string' }, 'fleetlock-ttl': { type: 'string' }, 'event-retention': { type: 'string' } },
    'serve',
  );
  if (!values.repo) throw new UsageError('serve: --repo DIR is required');
  const listen = values.listen ?? '127.0.0.1:8080';
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m) throw new UsageError(`--listen: '${listen}' is not HOST:PORT`);
  const repo = resolve(values.repo);
  let requestTimeoutMs: number | undefined;
  if (values['request-timeout'] !== undefined) {
    requestTimeoutMs = parseDuration(values['request-timeout']);
    if (requestTimeoutMs === undefined || requestTimeoutMs <= 0) throw new UsageError(`--request-timeout: '${values['request-timeout']}' is not a duration (e.g. 30s)`);
  }
  const eventLimits = {
    ...DEFAULT_EVENT_LIMITS,
    ...(values['events-max'] !== undefined ? { maxFileBytes: parseSize(values['events-max'], 'events-max') } : {}),
    ...(values['events-keep'] !== undefined ? { keepFiles: intOpt(values['events-keep'], 'events-keep', 0, 100)! } : {}),
  };
  const max = Number(values['fleetlock-max'] ?? '1');
  if (!Number.isInteger(max) || max < 1) throw new UsageError(`--fleetlock-max: '${values['fleetlock-max']}' is not a whole number of at least 1`);
  const ttl = Math.ceil(parsePolicyDuration(values['fleetlock-ttl'] ?? '15m', '--fleetlock-ttl') / 1000);
  const adminToken = await loadAdminToken(values['admin-token-file'], process.env);
  const store = await openStore(values.database ?? join(repo, '..', 'basalt-fleet.sqlite'));
  const fleet = new FleetService({
    store,
    repo,
    adminToken,
    eventRetentionMs: parsePolicyDuration(values['event-retention'] ?? '30d', '--event-retention'),
    fleetLock: values['fleetlock-etcd'] ? new FleetLock(new EtcdKv(values['fleetlock-etcd'].split(',')), { max, ttlSeconds: Math.max(5, ttl) }) : undefined,
    now: () => new Date(),
    log: ctx.log,
  });
  const srv = await startServer(
    {
      repo,
      eventsFile: values.events ?? join(repo, '..', 'basalt-serve-events.jsonl'),
      appIds: (values.appid ?? defaultAppIds).map((a) => a.toLowerCase()),
      baseUrl: values['base-url'],
      keyring: values.keyring ? await loadKeyring(values.keyring) : undefined,
      maxBodyBytes: values['max-body'] ? parseSize(values['max-body'], 'max-body') : 64 * 1024,
      requestTimeoutMs,
      eventLimits,
      now: () => new Date(),
      log: ctx.log,
      fleet,
    },
    m[1]!.replace(/^\[|\]$/g, ''),
    Number(m[2]),
  );
  ctx.log.info(`serving ${repo} on ${srv.url} (Omaha: ${srv.url}v1/update/)`);
  await new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  await srv.close();
  await store.close();
  return 0;
}

/** Test support for the fleet service: a repository with three releases, CoreOS-shaped checks, a server with the fleet on a given database. */
import { join } from 'node:path';
import { silentLogger } from '../../common/src/log.js';
import { APP_ID } from '../../common/src/contracts.js';
import { makeUsr, makeKeys } from './helpers.js';
import { release, setChannelStops } from '../src/publish/repo.js';
import { readPrivateKeyFile } from '../src/publish/keys.js';
import { startServer } from '../src/serve/server.js';
import { openStore, type FleetStore } from '../src/fleet/store.js';
import { FleetService } from '../src/fleet/service.js';
import type { FleetLock } from '../src/fleet/fleetlock.js';
import { parseXml, kid } from '../src/format/xml.js';

export const TOKEN = 'test-admin-token-0123456789abcdef';

/** A repository whose stable channel is at 3.0.0, with 2.0.0 and 1.0.0 released before it; 2.0.0 is a signed hold (a group may be pinned there). */
export async function makeFleetRepo(dir: string): Promise<string> {
  const keys = await makeKeys(dir);
  const key = await readPrivateKeyFile(keys.priv);
  const repo = join(dir, 'repo');
  const now = new Date();
  for (const v of ['1.0.0', '2.0.0', '3.0.0']) {
    await release({ usr: await makeUsr(dir, v, { randomKiB: 16 }), version: v, channel: 'stable', key, repo, now, expiresMs: 86_400_000, xzLevel: 0 });
  }
  await setChannelStops(repo, 'stable', { hold: ['2.0.0'] }, key, now, 86_400_000);
  return repo;
}

/** An update check as CoreOS update_engine 0.4.10 sends it, with optional events. */
export function coreosCheck(version: string, track: string, machineid: string, events = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="${version}_x86_64"></os>
    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="${version}" track="${track}" bootid="{6a0b2a36-8a5e-4b9f-8a83-2b3c3f2e4a11}" oem="qemu" oemversion="0.0.1" alephversion="${version}" machineid="${machineid}" machinealias="" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false" >
        <ping active="1"></ping>
        <updatecheck></updatecheck>${events}
    </app>
</request>
`;
}

/** The version a check was offered, or 'noupdate'. */
export async function check(url: string, version: string, machineId: string, track = 'stable', events = ''): Promise<string> {
  const r = await fetch(`${url}v1/update/`, { method: 'POST', body: coreosCheck(version, track, machineId, events), headers: { 'content-type': 'text/xml' } });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${text}`);
  const uc = kid(kid(parseXml(text), 'app'), 'updatecheck')!;
  if (uc.attrs['status'] !== 'ok') return String(uc.attrs['status']);
  return String(kid(uc, 'manifest')!.attrs['version']);
}

export async function startFleetServer(o: { repo: string; database: string; eventsFile: string; now?: () => Date; fleetLock?: FleetLock; token?: string | undefined }): Promise<{ url: string; store: FleetStore; fleet: FleetService; close(): Promise<void> }> {
  const store = await openStore(o.database);
  const now = o.now ?? (() => new Date());
  const fleet = new FleetService({ store, repo: o.repo, adminToken: 'token' in o ? o.token : TOKEN, fleetLock: o.fleetLock, now, log: silentLogger });
  const srv = await startServer({ repo: o.repo, eventsFile: o.eventsFile, appIds: [APP_ID], maxBodyBytes: 64 * 1024, now, log: silentLogger, fleet }, '127.0.0.1', 0);
  return {
    url: srv.url,
    store,
    fleet,
    close: async () => {
      await srv.close();
      await store.close();
    },
  };
}

/** An admin API call with the test token (or the one given). */
export async function admin(url: string, method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  const r = await fetch(`${url}admin/v1/${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

/**
 * FleetLock (Zincati's protocol) served by `basalt serve` from a REAL etcd
 * (started here on random 127.0.0.1 ports): 20 clients with max 1 never hold
 * more than one slot at a time, and the slot of a client that died comes free
 * when its lease expires. Also locksmith's fleetlock client calls.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { tempDir, startEtcd, waitFor } from '../../test/helpers.js';
import { makeFleetRepo, startFleetServer } from '../../test/fleet.js';
import { EtcdKv } from '../locksmith/locksmith.js';
import { FleetLock, fleetLockCall } from './fleetlock.js';

let t: Awaited<ReturnType<typeof tempDir>> | undefined;
let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
let srv: Awaited<ReturnType<typeof startFleetServer>> | undefined;
let lock: FleetLock;

beforeAll(async () => {
  t = await tempDir('basalt-fleetlock-');
  etcd = await startEtcd(t.dir);
  lock = new FleetLock(new EtcdKv([etcd.url]), { max: 1, ttlSeconds: 3 });
  srv = await startFleetServer({ repo: await makeFleetRepo(t.dir), database: join(t.dir, 'fleet.sqlite'), eventsFile: join(t.dir, 'events.jsonl'), fleetLock: lock });
});
afterAll(async () => {
  await srv?.close();
  await etcd?.stop();
  await t?.cleanup();
});

const call = async (op: string, body: unknown, header = true) => {
  const r = await fetch(`${srv!.url}v1/${op}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(header ? { 'fleet-lock-protocol': 'true' } : {}) }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
};
const params = (id: string, group = 'workers') => ({ client_params: { id, group } });

describe('FleetLock from etcd', () => {
  it('checks the protocol header and body', async () => {
    expect(await call('pre-reboot', params('a'), false)).toMatchObject({ status: 400, json: { kind: 'missing_header' } });
    expect(await call('pre-reboot', { client_params: {} })).toMatchObject({ status: 400, json: { kind: 'invalid_client_id' } });
    expect((await fetch(`${srv!.url}v1/pre-reboot`)).status).toBe(405);
  });

  it('20 clients with max 1 never hold more than one slot at a time', async () => {
    let holding = 0;
    let most = 0;
    const order: string[] = [];
    const client = async (id: string) => {
      await waitFor(async () => (await call('pre-reboot', params(id, 'twenty'))).status === 200, 120_000, `${id} to get the reboot slot`);
      holding++;
      most = Math.max(most, holding);
      order.push(id);
      // While it holds the slot, etcd has exactly this holder and nobody else gets in.
      expect(await lock.holders('twenty')).toEqual([id]);
      expect((await call('pre-reboot', params(`${id}-other`, 'twenty'))).status).toBe(409);
      // Asking again keeps the slot.
      expect((await call('pre-reboot', params(id, 'twenty'))).status).toBe(200);
      holding--;
      expect((await call('steady-state', params(id, 'twenty'))).status).toBe(200);
    };
    await Promise.all(Array.from({ length: 20 }, (_, i) => client(`machine-${i}`)));
    expect(most).toBe(1);
    expect(new Set(order).size).toBe(20);
    expect(await lock.holders('twenty')).toEqual([]);
  });

  it("frees the slot of a client that died when its lease expires", async () => {
    expect((await call('pre-reboot', params('dies', 'lease'))).status).toBe(200);
    const r = await call('pre-reboot', params('waits', 'lease'));
    expect(r).toMatchObject({ status: 409, json: { kind: 'semaphore_full' } });
    const t0 = Date.now();
    await waitFor(async () => (await call('pre-reboot', params('waits', 'lease'))).status === 200, 30_000, 'the dead client\'s lease to expire');
    expect(Date.now() - t0).toBeGreaterThan(500);
    expect(await lock.holders('lease')).toEqual(['waits']);
  });

  it("locksmith's fleetlock client: granted, refused, released", async () => {
    const o = { url: srv!.url, id: 'ls-1', group: 'ls' };
    expect(await fleetLockCall(o, 'pre-reboot')).toBe(true);
    expect(await fleetLockCall({ ...o, id: 'ls-2' }, 'pre-reboot')).toBe(false);
    expect(await fleetLockCall(o, 'steady-state')).toBe(true);
    expect(await fleetLockCall({ ...o, id: 'ls-2' }, 'pre-reboot')).toBe(true);
    await expect(fleetLockCall({ ...o, url: 'http://127.0.0.1:1/' }, 'pre-reboot')).rejects.toMatchObject({ code: 'E_FLEETLOCK' });
  });
});

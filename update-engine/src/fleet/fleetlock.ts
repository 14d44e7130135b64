/**
 * FleetLock (Zincati's reboot-coordination protocol over HTTP), served from
 * etcd so that machines need no etcd credentials:
 *   POST /v1/pre-reboot    take (or keep) a reboot slot of the group: 200 = granted
 *   POST /v1/steady-state  give the slot back after the reboot: 200 = released (or not held)
 * Both need the header `fleet-lock-protocol: true` and the body
 * {"client_params":{"id":"<machine>","group":"<group>"}}; any other status
 * means "not now" with {"kind":"…","value":"…"} as the error body.
 *
 * In etcd each holder is a key basalt/fleetlock/<group>/holders/<id> bound to
 * a lease of `ttlSeconds`: a machine that never comes back (it died during its
 * reboot) loses its slot when the lease expires. A slot is taken in one etcd
 * transaction that also bumps basalt/fleetlock/<group>/guard, compared to the
 * revision read with the holders, so two servers never admit past `max`.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { httpClient, requestText } from '../../../common/src/http.js';
import { UE_ERRORS } from '../errors.js';
import type { EtcdKv } from '../locksmith/locksmith.js';

export const FLEETLOCK_PREFIX = 'basalt/fleetlock/';

export interface FleetLockParams {
  id: string;
  group: string;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** The client parameters of a FleetLock request body, checked; a FleetLock error kind and text when malformed. Pure. */
export function parseFleetLockBody(text: string): FleetLockParams | { kind: string; value: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { kind: 'failed_parsing', value: 'the body is not JSON' };
  }
  const p = (raw as { client_params?: { id?: unknown; group?: unknown } } | null)?.client_params;
  if (!p || typeof p.id !== 'string' || !ID_RE.test(p.id)) return { kind: 'invalid_client_id', value: 'client_params.id is missing or not a machine id' };
  const group = p.group === undefined || p.group === '' ? 'default' : p.group;
  if (typeof group !== 'string' || !ID_RE.test(group)) return { kind: 'invalid_group', value: 'client_params.group is not a group name' };
  return { id: p.id, group };
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const prefixEnd = (p: string) => {
  const b = Buffer.from(p, 'utf8');
  b[b.length - 1]! += 1;
  return b.toString('base64');
};

export interface FleetLockOptions {
  /** Slots per group (default 1). */
  max: number;
  /** Lease of a slot: a holder that does not report steady state within it loses the slot. */
  ttlSeconds: number;
}

/** The FleetLock semaphore of every group, in etcd. */
export class FleetLock {
  constructor(
    private readonly kv: EtcdKv,
    readonly o: FleetLockOptions,
  ) {}

  private holdersPrefix(group: string) {
    return `${FLEETLOCK_PREFIX}${group}/holders/`;
  }

  async holders(group: string): Promise<string[]> {
    const p = this.holdersPrefix(group);
    return (await this.kv.range(p, Buffer.from(prefixEnd(p), 'base64'))).map((k) => k.key.slice(p.length));
  }

  /** Takes a slot (true) or finds the group full (false). A holder asking again keeps its slot with a fresh lease. */
  async preReboot(c: FleetLockParams): Promise<boolean> {
    const prefix = this.holdersPrefix(c.group);
    const mine = prefix + c.id;
    const guard = `${FLEETLOCK_PREFIX}${c.group}/guard`;
    for (let attempt = 0; attempt < 50; attempt++) {
      const r = await this.kv.post('v3/kv/txn', {
        success: [{ request_range: { key: b64(prefix), range_end: prefixEnd(prefix), keys_only: true } }, { request_range: { key: b64(guard) } }],
      });
      const resp = (r['responses'] ?? []) as { response_range?: { kvs?: { key?: string; mod_revision?: string }[] } }[];
      const held = (resp[0]?.response_range?.kvs ?? []).map((k) => Buffer.from(k.key ?? '', 'base64').toString('utf8'));
      const guardRev = resp[1]?.response_range?.kvs?.[0]?.mod_revision ?? '0';
      if (!held.includes(mine) && held.length >= this.o.max) return false;
      const lease = await this.kv.leaseGrant(this.o.ttlSeconds);
      const compare = guardRev === '0' ? { key: b64(guard), target: 'CREATE', result: 'EQUAL', create_revision: '0' } : { key: b64(guard), target: 'MOD', result: 'EQUAL', mod_revision: guardRev };
      const t = await this.kv.post('v3/kv/txn', {
        compare: [compare],
        success: [{ request_put: { key: b64(mine), value: b64(JSON.stringify({ since: new Date().toISOString() })), lease } }, { request_put: { key: b64(guard), value: b64(c.id) } }],
      });
      if (t['succeeded'] === true) return true;
      await this.kv.leaseRevoke(lease);
    }
    throw new BasaltError(UE_ERRORS.E_LOCK_CONTENDED, `FleetLock group '${c.group}': too many concurrent requests`);
  }

  /** Gives the slot back (a client that holds none gets true as well: steady state is reached either way). */
  async steadyState(c: FleetLockParams): Promise<boolean> {
    await this.kv.deleteRange(this.holdersPrefix(c.group) + c.id);
    return true;
  }
}

// ---------------------------------------------------------------------------
// The client side (locksmith REBOOT_STRATEGY=fleetlock)

export interface FleetLockClientOptions {
  url: string;
  id: string;
  group: string;
  timeoutMs?: number;
}

/** One FleetLock call: true when the server answers 200, false for any other status; throws E_FLEETLOCK when it cannot be reached. */
export async function fleetLockCall(o: FleetLockClientOptions, op: 'pre-reboot' | 'steady-state'): Promise<boolean> {
  const url = new URL(`v1/${op}`, o.url.endsWith('/') ? o.url : o.url + '/');
  const ms = o.timeoutMs ?? 10_000;
  try {
    // The answer's body is only an error text: read 64 KiB of it at most.
    const reply = await requestText(httpClient({ connectMs: ms, stallMs: ms, totalMs: ms }), url.toString(), {
      method: 'POST',
      headers: { 'fleet-lock-protocol': 'true', 'content-type': 'application/json' },
      body: JSON.stringify({ client_params: { id: o.id, group: o.group } }),
      maxBytes: 64 * 1024,
    });
    return reply.status === 200;
  } catch (e) {
    throw new BasaltError(UE_ERRORS.E_FLEETLOCK, `FleetLock ${url.toString()}: ${(e as Error).message}`, { cause: e });
  }
}

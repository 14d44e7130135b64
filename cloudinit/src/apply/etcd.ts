/**
 * The cloud-config `coreos.etcd2` section as the etcd the image ships reads
 * it: Debian's etcd 3.4, run as etcd.service (etcd2.service is only an
 * alias name of it). Apply only; validation keeps v1.14.0's schema
 * (schema.ts) untouched. Pure data and pure functions.
 *
 * etcd reads ETCD_<FLAG> for each flag (upper-cased, '-' -> '_'). Every key
 * of the CoreOS etcd2 schema maps onto the etcd 3.4 flag of the same name
 * (checked against `etcd --help` of 3.4.23 and by etcd.int.test.ts against
 * the installed binary), except ca_file and peer_ca_file: etcd 3.4 removed
 * --ca-file and --peer-ca-file (deprecated since etcd 2.1) and only warns
 * "unrecognized environment variable" for them, so they are not written and
 * apply warns instead.
 *
 * The v0.4 `coreos.etcd` section stays validation-only: apply writes nothing
 * for it (etcd 3.4 reads none of ETCD_ADDR, ETCD_PEERS, ...) and warns.
 */
import { etcd2Fields, etcdFields, type Field } from '../schema.js';

/** The unit the etcd2 section's drop-in belongs to (the real unit, not its alias). */
export const ETCD_UNIT = 'etcd.service';

export type Etcd34Mapping =
  /** Honoured: written as flagEnv(flag). `deprecated`: still honoured, but apply warns. */
  | { key: string; flag: string; deprecated?: string }
  /** etcd 3.4 has no such flag: not written, apply warns with `instead`. */
  | { key: string; flag: null; gone: string; instead: string };

const same = (key: string, deprecated?: string): Etcd34Mapping => (deprecated ? { key, flag: key.replace(/_/g, '-'), deprecated } : { key, flag: key.replace(/_/g, '-') });

/** One entry per key of the CoreOS etcd2 schema, in its struct order. */
export const etcd2ToEtcd34: readonly Etcd34Mapping[] = [
  same('advertise_client_urls'),
  { key: 'ca_file', flag: null, gone: '--ca-file', instead: 'trusted_ca_file (and client_cert_auth: true)' },
  same('cert_file'),
  same('client_cert_auth'),
  same('cors'),
  same('data_dir'),
  same('debug', 'etcd 3.4 still honours --debug but deprecates it (removed in 3.5); its successor is --log-level=debug (ETCD_LOG_LEVEL=debug in a drop-in of etcd.service)'),
  same('discovery'),
  same('discovery_fallback'),
  same('discovery_srv'),
  same('discovery_proxy'),
  same('election_timeout'),
  same('enable_pprof'),
  same('force_new_cluster'),
  same('heartbeat_interval'),
  same('initial_advertise_peer_urls'),
  same('initial_cluster'),
  same('initial_cluster_state'),
  same('initial_cluster_token'),
  same('key_file'),
  same('listen_client_urls'),
  same('listen_peer_urls'),
  same('log_package_levels', 'etcd 3.4 still honours --log-package-levels but deprecates it (removed in 3.5); its successor is --log-level (ETCD_LOG_LEVEL in a drop-in of etcd.service)'),
  same('max_snapshots'),
  same('max_wals'),
  same('name'),
  { key: 'peer_ca_file', flag: null, gone: '--peer-ca-file', instead: 'peer_trusted_ca_file (and peer_client_cert_auth: true)' },
  same('peer_cert_file'),
  same('peer_key_file'),
  same('peer_client_cert_auth'),
  same('peer_trusted_ca_file'),
  same('proxy'),
  same('proxy_dial_timeout'),
  same('proxy_failure_wait'),
  same('proxy_read_timeout'),
  same('proxy_refresh_interval'),
  same('proxy_write_timeout'),
  same('snapshot_count'),
  same('strict_reconfig_check'),
  same('trusted_ca_file'),
  same('wal_dir'),
];

/** The environment variable etcd reads for a flag (pkg/flags FlagToEnv). */
export function flagEnv(flag: string): string {
  return 'ETCD_' + flag.toUpperCase().replace(/-/g, '_');
}

/**
 * The etcd2 schema fields etcd 3.4 honours, in struct order, with the
 * variable names of etcd 3.4 (for serviceContents: same zero-value and
 * quoting rules as v1.14.0's drop-ins).
 */
export const etcd34Fields: Field[] = etcd2Fields.flatMap((f) => {
  const m = etcd2ToEtcd34.find((x) => x.key === f.name);
  return m && m.flag !== null ? [{ ...f, env: flagEnv(m.flag) }] : [];
});

type Obj = Record<string, unknown>;
/** Go's zero values, as the typed decode fills absent fields (see envVars in plan.ts). */
const isSet = (v: unknown): boolean => !(v === '' || v === 0n || v === 0 || v === false || v === null || v === undefined);

/**
 * The first origin of a --cors value etcd 3.4 rejects (null: it takes the
 * value). etcd 2 took free-form origins; 3.4 parses "*" alone, or a comma-
 * separated list of http/https/unix/unixs URLs of the form scheme://host:port
 * without a path (pkg/types NewURLs).
 */
export function corsRejects(value: string): string | null {
  if (value === '*') return null;
  for (const part of value.split(',')) {
    const o = part.trim();
    if (!/^(https?|unixs?):\/\/(\[[^\]]*\]|[^/?#@[\]:]*):[0-9]*$/.test(o)) return o;
  }
  return null;
}

/**
 * The warnings apply prints for the etcd sections: the v0.4 section when any
 * of its keys is set, each etcd2 key etcd 3.4 lacks or deprecates, a cors
 * value etcd 3.4 refuses, a proxy mode etcd 3.4 serves for the v2 API only,
 * and bootstrap settings etcd refuses to combine (those values are written
 * all the same: etcd, not apply, decides). Lines start with "warning: ".
 */
export function etcdWarnings(v04: Obj, etcd2: Obj): string[] {
  const out: string[] = [];
  const v04Set = etcdFields.filter((f) => isSet(v04[f.name])).map((f) => f.name);
  if (v04Set.length > 0) {
    out.push(`warning: coreos.etcd: etcd v0.4 settings are ignored (set: ${v04Set.join(', ')}); the image ships etcd 3.4 as ${ETCD_UNIT}, configure it with coreos.etcd2`);
  }
  for (const m of etcd2ToEtcd34) {
    if (!isSet(etcd2[m.key])) continue;
    if (m.flag === null) out.push(`warning: coreos.etcd2.${m.key}: etcd 3.4 has no ${m.gone}; use ${m.instead}`);
    else if (m.deprecated) out.push(`warning: coreos.etcd2.${m.key}: ${m.deprecated}`);
  }
  const cors = etcd2['cors'];
  const badOrigin = typeof cors === 'string' && cors !== '' ? corsRejects(cors) : null;
  if (badOrigin !== null) {
    out.push(
      `warning: coreos.etcd2.cors: etcd 3.4 takes only "*" or origins with an explicit port (e.g. http://localhost:8080) and refuses to start on ${JSON.stringify(badOrigin)}; an origin on a default port can only be allowed with "*"`,
    );
  }
  const proxy = etcd2['proxy'];
  if (proxy === 'on' || proxy === 'readonly') {
    out.push(`warning: coreos.etcd2.proxy: etcd 3.4 still runs --proxy=${proxy}, but as its v2 proxy (to be deprecated), which serves the v2 API only; etcd 3.4 members serve v2 only with --enable-v2, consider 'etcd grpc-proxy' instead`);
  }
  const bootstrap = ['initial_cluster', 'discovery', 'discovery_srv'].filter((k) => isSet(etcd2[k]));
  if (bootstrap.length > 1) {
    out.push(
      `warning: coreos.etcd2: ${bootstrap.join(' and ')} are ${bootstrap.length === 2 ? 'both' : 'all'} set; etcd 3.4 refuses to start with more than one of initial_cluster, discovery and discovery_srv ("multiple discovery or bootstrap flags are set"); keep one`,
    );
  }
  return out;
}

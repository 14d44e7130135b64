/**
 * The cloud-config schema of coreos-cloudinit v1.14.0 (config/*.go): field
 * names, Go types, `valid` regexps, `deprecated` messages and `env` names,
 * in struct order (which matters for generated drop-ins). Pure data.
 */

export type FieldType = 'string' | 'int' | 'float64' | 'bool' | 'struct' | '[]string' | '[]struct';

export interface Field {
  name: string;
  type: FieldType;
  struct?: Field[];
  /** The Go regexp source as in the `valid` tag (for messages). */
  valid?: string;
  /** The same regexp in JavaScript syntax. */
  validRe?: RegExp;
  deprecated?: string;
  env?: string;
  /**
   * A string whose Go bytes are written out as they are (file, unit and
   * drop-in contents): a !!binary value that is not valid UTF-8 is kept as
   * a Buffer (see GoString in yaml/decode.ts).
   */
  bytes?: boolean;
}

const s = (name: string, env?: string, extra: Partial<Field> = {}): Field => ({ name, type: 'string', env, ...extra });
const i = (name: string, env?: string, extra: Partial<Field> = {}): Field => ({ name, type: 'int', env, ...extra });
const f = (name: string, env?: string, extra: Partial<Field> = {}): Field => ({ name, type: 'float64', env, ...extra });
const b = (name: string, env?: string, extra: Partial<Field> = {}): Field => ({ name, type: 'bool', env, ...extra });

const etcd2Gone = { deprecated: 'etcd2 options no longer work for etcd' };

export const etcdFields: Field[] = [
  s('addr', 'ETCD_ADDR'),
  s('advertise_client_urls', 'ETCD_ADVERTISE_CLIENT_URLS', etcd2Gone),
  s('bind_addr', 'ETCD_BIND_ADDR'),
  s('ca_file', 'ETCD_CA_FILE'),
  s('cert_file', 'ETCD_CERT_FILE'),
  i('cluster_active_size', 'ETCD_CLUSTER_ACTIVE_SIZE'),
  f('cluster_remove_delay', 'ETCD_CLUSTER_REMOVE_DELAY'),
  f('cluster_sync_interval', 'ETCD_CLUSTER_SYNC_INTERVAL'),
  s('cors', 'ETCD_CORS'),
  s('data_dir', 'ETCD_DATA_DIR'),
  s('discovery', 'ETCD_DISCOVERY'),
  s('discovery_fallback', 'ETCD_DISCOVERY_FALLBACK', etcd2Gone),
  s('discovery_srv', 'ETCD_DISCOVERY_SRV', etcd2Gone),
  s('discovery_proxy', 'ETCD_DISCOVERY_PROXY', etcd2Gone),
  i('election_timeout', 'ETCD_ELECTION_TIMEOUT', etcd2Gone),
  b('force_new_cluster', 'ETCD_FORCE_NEW_CLUSTER', etcd2Gone),
  s('graphite_host', 'ETCD_GRAPHITE_HOST'),
  i('heartbeat_interval', 'ETCD_HEARTBEAT_INTERVAL', etcd2Gone),
  f('http_read_timeout', 'ETCD_HTTP_READ_TIMEOUT'),
  f('http_write_timeout', 'ETCD_HTTP_WRITE_TIMEOUT'),
  s('initial_advertise_peer_urls', 'ETCD_INITIAL_ADVERTISE_PEER_URLS', etcd2Gone),
  s('initial_cluster', 'ETCD_INITIAL_CLUSTER', etcd2Gone),
  s('initial_cluster_state', 'ETCD_INITIAL_CLUSTER_STATE', etcd2Gone),
  s('initial_cluster_token', 'ETCD_INITIAL_CLUSTER_TOKEN', etcd2Gone),
  s('key_file', 'ETCD_KEY_FILE'),
  s('listen_client_urls', 'ETCD_LISTEN_CLIENT_URLS', etcd2Gone),
  s('listen_peer_urls', 'ETCD_LISTEN_PEER_URLS', etcd2Gone),
  i('max_result_buffer', 'ETCD_MAX_RESULT_BUFFER'),
  i('max_retry_attempts', 'ETCD_MAX_RETRY_ATTEMPTS'),
  i('max_snapshots', 'ETCD_MAX_SNAPSHOTS', etcd2Gone),
  i('max_wals', 'ETCD_MAX_WALS', etcd2Gone),
  s('name', 'ETCD_NAME'),
  s('peer_addr', 'ETCD_PEER_ADDR'),
  s('peer_bind_addr', 'ETCD_PEER_BIND_ADDR'),
  s('peer_ca_file', 'ETCD_PEER_CA_FILE'),
  s('peer_cert_file', 'ETCD_PEER_CERT_FILE'),
  i('peer_election_timeout', 'ETCD_PEER_ELECTION_TIMEOUT'),
  i('peer_heartbeat_interval', 'ETCD_PEER_HEARTBEAT_INTERVAL'),
  s('peer_key_file', 'ETCD_PEER_KEY_FILE'),
  s('peers', 'ETCD_PEERS'),
  s('peers_file', 'ETCD_PEERS_FILE'),
  s('proxy', 'ETCD_PROXY', etcd2Gone),
  f('retry_interval', 'ETCD_RETRY_INTERVAL'),
  b('snapshot', 'ETCD_SNAPSHOT'),
  i('snapshot_count', 'ETCD_SNAPSHOTCOUNT'),
  s('trace', 'ETCD_TRACE'),
  b('verbose', 'ETCD_VERBOSE'),
  b('very_verbose', 'ETCD_VERY_VERBOSE'),
  b('very_very_verbose', 'ETCD_VERY_VERY_VERBOSE'),
];

export const etcd2Fields: Field[] = [
  s('advertise_client_urls', 'ETCD_ADVERTISE_CLIENT_URLS'),
  s('ca_file', 'ETCD_CA_FILE', { deprecated: 'ca_file obsoleted by trusted_ca_file and client_cert_auth' }),
  s('cert_file', 'ETCD_CERT_FILE'),
  b('client_cert_auth', 'ETCD_CLIENT_CERT_AUTH'),
  s('cors', 'ETCD_CORS'),
  s('data_dir', 'ETCD_DATA_DIR'),
  b('debug', 'ETCD_DEBUG'),
  s('discovery', 'ETCD_DISCOVERY'),
  s('discovery_fallback', 'ETCD_DISCOVERY_FALLBACK'),
  s('discovery_srv', 'ETCD_DISCOVERY_SRV'),
  s('discovery_proxy', 'ETCD_DISCOVERY_PROXY'),
  i('election_timeout', 'ETCD_ELECTION_TIMEOUT'),
  b('enable_pprof', 'ETCD_ENABLE_PPROF'),
  b('force_new_cluster', 'ETCD_FORCE_NEW_CLUSTER'),
  i('heartbeat_interval', 'ETCD_HEARTBEAT_INTERVAL'),
  s('initial_advertise_peer_urls', 'ETCD_INITIAL_ADVERTISE_PEER_URLS'),
  s('initial_cluster', 'ETCD_INITIAL_CLUSTER'),
  s('initial_cluster_state', 'ETCD_INITIAL_CLUSTER_STATE'),
  s('initial_cluster_token', 'ETCD_INITIAL_CLUSTER_TOKEN'),
  s('key_file', 'ETCD_KEY_FILE'),
  s('listen_client_urls', 'ETCD_LISTEN_CLIENT_URLS'),
  s('listen_peer_urls', 'ETCD_LISTEN_PEER_URLS'),
  s('log_package_levels', 'ETCD_LOG_PACKAGE_LEVELS'),
  i('max_snapshots', 'ETCD_MAX_SNAPSHOTS'),
  i('max_wals', 'ETCD_MAX_WALS'),
  s('name', 'ETCD_NAME'),
  s('peer_ca_file', 'ETCD_PEER_CA_FILE', { deprecated: 'peer_ca_file obsoleted peer_trusted_ca_file and peer_client_cert_auth' }),
  s('peer_cert_file', 'ETCD_PEER_CERT_FILE'),
  s('peer_key_file', 'ETCD_PEER_KEY_FILE'),
  b('peer_client_cert_auth', 'ETCD_PEER_CLIENT_CERT_AUTH'),
  s('peer_trusted_ca_file', 'ETCD_PEER_TRUSTED_CA_FILE'),
  s('proxy', 'ETCD_PROXY', { valid: '^(on|off|readonly)$', validRe: /^(on|off|readonly)$/ }),
  i('proxy_dial_timeout', 'ETCD_PROXY_DIAL_TIMEOUT'),
  i('proxy_failure_wait', 'ETCD_PROXY_FAILURE_WAIT'),
  i('proxy_read_timeout', 'ETCD_PROXY_READ_TIMEOUT'),
  i('proxy_refresh_interval', 'ETCD_PROXY_REFRESH_INTERVAL'),
  i('proxy_write_timeout', 'ETCD_PROXY_WRITE_TIMEOUT'),
  i('snapshot_count', 'ETCD_SNAPSHOT_COUNT'),
  b('strict_reconfig_check', 'ETCD_STRICT_RECONFIG_CHECK'),
  s('trusted_ca_file', 'ETCD_TRUSTED_CA_FILE'),
  s('wal_dir', 'ETCD_WAL_DIR'),
];

export const fleetFields: Field[] = [
  s('agent_ttl', 'FLEET_AGENT_TTL'),
  s('authorized_keys_file', 'FLEET_AUTHORIZED_KEYS_FILE'),
  b('disable_engine', 'FLEET_DISABLE_ENGINE'),
  f('engine_reconcile_interval', 'FLEET_ENGINE_RECONCILE_INTERVAL'),
  s('etcd_cafile', 'FLEET_ETCD_CAFILE'),
  s('etcd_certfile', 'FLEET_ETCD_CERTFILE'),
  s('etcd_keyfile', 'FLEET_ETCD_KEYFILE'),
  s('etcd_key_prefix', 'FLEET_ETCD_KEY_PREFIX'),
  f('etcd_request_timeout', 'FLEET_ETCD_REQUEST_TIMEOUT'),
  s('etcd_servers', 'FLEET_ETCD_SERVERS'),
  s('etcd_username', 'FLEET_ETCD_USERNAME'),
  s('etcd_password', 'FLEET_ETCD_PASSWORD'),
  s('metadata', 'FLEET_METADATA'),
  s('public_ip', 'FLEET_PUBLIC_IP'),
  i('token_limit', 'FLEET_TOKEN_LIMIT'),
  i('verbosity', 'FLEET_VERBOSITY'),
  b('verify_units', 'FLEET_VERIFY_UNITS'),
];

export const flannelFields: Field[] = [
  s('etcd_endpoints', 'FLANNELD_ETCD_ENDPOINTS'),
  s('etcd_cafile', 'FLANNELD_ETCD_CAFILE'),
  s('etcd_certfile', 'FLANNELD_ETCD_CERTFILE'),
  s('etcd_keyfile', 'FLANNELD_ETCD_KEYFILE'),
  s('etcd_prefix', 'FLANNELD_ETCD_PREFIX'),
  s('etcd_username', 'FLANNELD_ETCD_USERNAME'),
  s('etcd_password', 'FLANNELD_ETCD_PASSWORD'),
  s('ip_masq', 'FLANNELD_IP_MASQ'),
  s('subnet_file', 'FLANNELD_SUBNET_FILE'),
  s('interface', 'FLANNELD_IFACE'),
  s('public_ip', 'FLANNELD_PUBLIC_IP'),
];

const dow = '(?:[Ss][Uu][Nn]|[Mm][Oo][Nn]|[Tt][Uu][Ee]|[Ww][Ee][Dd]|[Tt][Hh][Uu]|[Ff][Rr][Ii]|[Ss][Aa][Tt]|[Ss][Uu][Nn])';
export const locksmithFields: Field[] = [
  s('endpoint', 'LOCKSMITHD_ENDPOINT'),
  s('etcd_cafile', 'LOCKSMITHD_ETCD_CAFILE'),
  s('etcd_certfile', 'LOCKSMITHD_ETCD_CERTFILE'),
  s('etcd_keyfile', 'LOCKSMITHD_ETCD_KEYFILE'),
  s('etcd_username', 'LOCKSMITHD_ETCD_USERNAME'),
  s('etcd_password', 'LOCKSMITHD_ETCD_PASSWORD'),
  s('group', 'LOCKSMITHD_GROUP'),
  s('window_start', 'REBOOT_WINDOW_START', {
    valid: '^((?i:sun|mon|tue|wed|thu|fri|sat|sun) )?0*([0-9]|1[0-9]|2[0-3]):0*([0-9]|[1-5][0-9])$',
    validRe: new RegExp(`^(${dow} )?0*([0-9]|1[0-9]|2[0-3]):0*([0-9]|[1-5][0-9])$`),
  }),
  s('window_length', 'REBOOT_WINDOW_LENGTH', { valid: '^[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+$', validRe: /^[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+$/ }),
];

export const oemFields: Field[] = [s('id'), s('name'), s('version_id'), s('home_url'), s('bug_report_url')];

export const rebootStrategies = ['etcd-lock', 'reboot', 'off'] as const;
export const updateFields: Field[] = [
  s('reboot_strategy', 'REBOOT_STRATEGY', { valid: '^(etcd-lock|reboot|off)$', validRe: /^(etcd-lock|reboot|off)$/ }),
  s('group', 'GROUP'),
  s('server', 'SERVER'),
];

export const unitCommands = ['start', 'stop', 'restart', 'reload', 'try-restart', 'reload-or-restart', 'reload-or-try-restart'] as const;
export const dropInFields: Field[] = [s('name'), s('content', undefined, { bytes: true })];
export const unitFields: Field[] = [
  s('name'),
  b('mask'),
  b('enable'),
  b('runtime'),
  s('content', undefined, { bytes: true }),
  s('command', undefined, {
    valid: '^(start|stop|restart|reload|try-restart|reload-or-restart|reload-or-try-restart)$',
    validRe: /^(start|stop|restart|reload|try-restart|reload-or-restart|reload-or-try-restart)$/,
  }),
  { name: 'drop_ins', type: '[]struct', struct: dropInFields },
];

export const encodings = ['base64', 'b64', 'gz', 'gzip', 'gz+base64', 'gzip+base64', 'gz+b64', 'gzip+b64'] as const;
export const fileFields: Field[] = [
  s('encoding', undefined, { valid: '^(base64|b64|gz|gzip|gz\\+base64|gzip\\+base64|gz\\+b64|gzip\\+b64)$', validRe: /^(base64|b64|gz|gzip|gz\+base64|gzip\+base64|gz\+b64|gzip\+b64)$/ }),
  s('content', undefined, { bytes: true }),
  s('owner'),
  s('path'),
  s('permissions', undefined, { valid: '^0?[0-7]{3,4}$', validRe: /^0?[0-7]{3,4}$/ }),
];

const remote = { deprecated: 'trying to fetch from a remote endpoint introduces too many intermittent errors' };
export const userFields: Field[] = [
  s('name'),
  s('passwd'),
  { name: 'ssh_authorized_keys', type: '[]string' },
  s('coreos_ssh_import_github', undefined, remote),
  { name: 'coreos_ssh_import_github_users', type: '[]string', ...remote },
  s('coreos_ssh_import_url', undefined, remote),
  s('gecos'),
  s('homedir'),
  b('no_create_home'),
  s('primary_group'),
  { name: 'groups', type: '[]string' },
  b('no_user_group'),
  b('system'),
  b('no_log_init'),
  s('shell'),
];

export const coreosFields: Field[] = [
  { name: 'etcd', type: 'struct', struct: etcdFields, deprecated: 'etcd is no longer shipped in Container Linux' },
  { name: 'etcd2', type: 'struct', struct: etcd2Fields, deprecated: 'etcd2 is no longer shipped in Container Linux' },
  { name: 'flannel', type: 'struct', struct: flannelFields },
  { name: 'fleet', type: 'struct', struct: fleetFields, deprecated: 'fleet is no longer shipped in Container Linux' },
  { name: 'locksmith', type: 'struct', struct: locksmithFields },
  { name: 'oem', type: 'struct', struct: oemFields },
  { name: 'update', type: 'struct', struct: updateFields },
  { name: 'units', type: '[]struct', struct: unitFields },
];

export const cloudConfigFields: Field[] = [
  { name: 'ssh_authorized_keys', type: '[]string' },
  { name: 'coreos', type: 'struct', struct: coreosFields },
  { name: 'write_files', type: '[]struct', struct: fileFields },
  s('hostname'),
  { name: 'users', type: '[]struct', struct: userFields },
  s('manage_etc_hosts'),
];

/** The root pseudo-field. */
export const rootField: Field = { name: '', type: 'struct', struct: cloudConfigFields };

/** Human type name as the validator prints it (`want T`). */
export function humanType(t: FieldType): string {
  return t;
}

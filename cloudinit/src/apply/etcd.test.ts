/**
 * coreos.etcd2 -> Debian's etcd 3.4 (etcd.service): the variable each key
 * becomes, the warnings for what etcd 3.4 lacks or deprecates, the ignored
 * v0.4 section, and that validation still reports what v1.14.0 reports.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { etcd2Fields } from '../schema.js';
import { parseCloudConfigTyped, validateUserData } from '../validate/validate.js';
import { corsRejects, etcd2ToEtcd34, etcd34Fields, etcdWarnings, flagEnv } from './etcd.js';
import { plan, type Action, type SystemView } from './plan.js';
import { runApply } from './run.js';

const view: SystemView = { readFile: () => null, userExists: () => true, hostname: () => 'hostbox', env: {} };
const opts = { sshKeyName: 'coreos-cloudinit', workspace: '/var/lib/coreos-cloudinit' };
const DROP_IN = '/run/systemd/system/etcd.service.d/20-cloudinit.conf';

function planOf(doc: string) {
  const r = parseCloudConfigTyped(Buffer.from('#cloud-config\n' + doc));
  if ('error' in r) throw new Error(r.error);
  return plan(r.config, null, {}, view, opts);
}
const fileAt = (as: Action[], path: string) => as.find((a): a is Action & { kind: 'file' } => a.kind === 'file' && a.path === path);
const dropIn = (as: Action[]) => fileAt(as, DROP_IN)?.content.toString();
const etcd2 = (body: Record<string, string>) => 'coreos:\n  etcd2:\n' + Object.entries(body).map(([k, v]) => `    ${k}: ${v}\n`).join('');

/** key, the YAML value, the Environment= line expected (null: not written), the warning expected (if any). */
const cases: [key: string, yaml: string, line: string | null, warning?: string][] = [
  ['advertise_client_urls', 'http://10.0.0.5:2379', 'ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.5:2379'],
  ['ca_file', '/etc/ssl/etcd/ca.pem', null, 'warning: coreos.etcd2.ca_file: etcd 3.4 has no --ca-file; use trusted_ca_file (and client_cert_auth: true)'],
  ['cert_file', '/etc/ssl/etcd/server.pem', 'ETCD_CERT_FILE=/etc/ssl/etcd/server.pem'],
  ['client_cert_auth', 'true', 'ETCD_CLIENT_CERT_AUTH=true'],
  ['cors', 'http://ui.example.com:8080', 'ETCD_CORS=http://ui.example.com:8080'],
  ['data_dir', '/var/lib/etcd/default', 'ETCD_DATA_DIR=/var/lib/etcd/default'],
  [
    'debug',
    'true',
    'ETCD_DEBUG=true',
    'warning: coreos.etcd2.debug: etcd 3.4 still honours --debug but deprecates it (removed in 3.5); its successor is --log-level=debug (ETCD_LOG_LEVEL=debug in a drop-in of etcd.service)',
  ],
  ['discovery', 'https://discovery.etcd.io/abc', 'ETCD_DISCOVERY=https://discovery.etcd.io/abc'],
  ['discovery_fallback', 'exit', 'ETCD_DISCOVERY_FALLBACK=exit'],
  ['discovery_srv', 'example.com', 'ETCD_DISCOVERY_SRV=example.com'],
  ['discovery_proxy', 'http://proxy.example.com:3128', 'ETCD_DISCOVERY_PROXY=http://proxy.example.com:3128'],
  ['election_timeout', '1200', 'ETCD_ELECTION_TIMEOUT=1200'],
  ['enable_pprof', 'true', 'ETCD_ENABLE_PPROF=true'],
  ['force_new_cluster', 'true', 'ETCD_FORCE_NEW_CLUSTER=true'],
  ['heartbeat_interval', '120', 'ETCD_HEARTBEAT_INTERVAL=120'],
  ['initial_advertise_peer_urls', 'http://10.0.0.5:2380', 'ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.5:2380'],
  ['initial_cluster', 'node1=http://10.0.0.5:2380,node2=http://10.0.0.6:2380', 'ETCD_INITIAL_CLUSTER=node1=http://10.0.0.5:2380,node2=http://10.0.0.6:2380'],
  ['initial_cluster_state', 'existing', 'ETCD_INITIAL_CLUSTER_STATE=existing'],
  ['initial_cluster_token', 'etcd-cluster-1', 'ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-1'],
  ['key_file', '/etc/ssl/etcd/server-key.pem', 'ETCD_KEY_FILE=/etc/ssl/etcd/server-key.pem'],
  ['listen_client_urls', 'http://0.0.0.0:2379', 'ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379'],
  ['listen_peer_urls', 'http://10.0.0.5:2380', 'ETCD_LISTEN_PEER_URLS=http://10.0.0.5:2380'],
  [
    'log_package_levels',
    'etcdserver=DEBUG,etcdmain=INFO',
    'ETCD_LOG_PACKAGE_LEVELS=etcdserver=DEBUG,etcdmain=INFO',
    'warning: coreos.etcd2.log_package_levels: etcd 3.4 still honours --log-package-levels but deprecates it (removed in 3.5); its successor is --log-level (ETCD_LOG_LEVEL in a drop-in of etcd.service)',
  ],
  ['max_snapshots', '10', 'ETCD_MAX_SNAPSHOTS=10'],
  ['max_wals', '12', 'ETCD_MAX_WALS=12'],
  ['name', 'node1', 'ETCD_NAME=node1'],
  ['peer_ca_file', '/etc/ssl/etcd/peer-ca.pem', null, 'warning: coreos.etcd2.peer_ca_file: etcd 3.4 has no --peer-ca-file; use peer_trusted_ca_file (and peer_client_cert_auth: true)'],
  ['peer_cert_file', '/etc/ssl/etcd/peer.pem', 'ETCD_PEER_CERT_FILE=/etc/ssl/etcd/peer.pem'],
  ['peer_key_file', '/etc/ssl/etcd/peer-key.pem', 'ETCD_PEER_KEY_FILE=/etc/ssl/etcd/peer-key.pem'],
  ['peer_client_cert_auth', 'true', 'ETCD_PEER_CLIENT_CERT_AUTH=true'],
  ['peer_trusted_ca_file', '/etc/ssl/etcd/peer-ca.pem', 'ETCD_PEER_TRUSTED_CA_FILE=/etc/ssl/etcd/peer-ca.pem'],
  [
    'proxy',
    'readonly',
    'ETCD_PROXY=readonly',
    "warning: coreos.etcd2.proxy: etcd 3.4 still runs --proxy=readonly, but as its v2 proxy (to be deprecated), which serves the v2 API only; etcd 3.4 members serve v2 only with --enable-v2, consider 'etcd grpc-proxy' instead",
  ],
  ['proxy_dial_timeout', '1500', 'ETCD_PROXY_DIAL_TIMEOUT=1500'],
  ['proxy_failure_wait', '6000', 'ETCD_PROXY_FAILURE_WAIT=6000'],
  ['proxy_read_timeout', '100', 'ETCD_PROXY_READ_TIMEOUT=100'],
  ['proxy_refresh_interval', '40000', 'ETCD_PROXY_REFRESH_INTERVAL=40000'],
  ['proxy_write_timeout', '7000', 'ETCD_PROXY_WRITE_TIMEOUT=7000'],
  ['snapshot_count', '5000', 'ETCD_SNAPSHOT_COUNT=5000'],
  ['strict_reconfig_check', 'true', 'ETCD_STRICT_RECONFIG_CHECK=true'],
  ['trusted_ca_file', '/etc/ssl/etcd/ca.pem', 'ETCD_TRUSTED_CA_FILE=/etc/ssl/etcd/ca.pem'],
  ['wal_dir', '/var/lib/etcd/wal', 'ETCD_WAL_DIR=/var/lib/etcd/wal'],
];

describe('coreos.etcd2 -> etcd 3.4', () => {
  it('the tables cover every key of the CoreOS etcd2 schema, in struct order', () => {
    expect(cases.map(([k]) => k)).toEqual(etcd2Fields.map((f) => f.name));
    expect(etcd2ToEtcd34.map((m) => m.key)).toEqual(etcd2Fields.map((f) => f.name));
    expect(etcd34Fields.map((f) => f.name)).toEqual(cases.filter(([, , line]) => line !== null).map(([k]) => k));
    expect(flagEnv('initial-advertise-peer-urls')).toBe('ETCD_INITIAL_ADVERTISE_PEER_URLS');
  });

  it.each(cases)('%s: %s', (key, yaml, line, warning) => {
    const p = planOf(etcd2({ [key]: yaml }));
    expect(dropIn(p.actions)).toBe(line === null ? undefined : `[Service]\nEnvironment="${line}"\n`);
    expect(p.warnings).toEqual(warning ? [warning] : []);
    // the dashed spelling CoreOS also accepts gives the same
    const dashed = planOf(etcd2({ [key.replace(/_/g, '-')]: yaml }));
    expect(dropIn(dashed.actions)).toBe(dropIn(p.actions));
  });

  it('writes only to etcd.service (the real unit), never to the alias etcd2.service', () => {
    const p = planOf(etcd2({ name: 'node1' }));
    const paths = p.actions.flatMap((a) => (a.kind === 'file' ? [a.path] : []));
    expect(paths).toEqual([DROP_IN]);
    expect(p.actions.filter((a) => a.kind === 'unit-unmask').map((a) => (a as { unit: string }).unit)).toEqual(['etcd.service', 'fleet.service', 'locksmithd.service']);
    expect(p.actions).toContainEqual({ kind: 'daemon-reload' });
  });

  it('proxy off is written without a warning; zero values (false, 0, "") are not written, as by v1.14.0', () => {
    const p = planOf(etcd2({ proxy: 'off', debug: 'false', max_wals: '0', name: '""', strict_reconfig_check: 'false' }));
    expect(dropIn(p.actions)).toBe('[Service]\nEnvironment="ETCD_PROXY=off"\n');
    expect(p.warnings).toEqual([]);
    const none = planOf(etcd2({ ca_file: '""' }));
    expect(dropIn(none.actions)).toBeUndefined();
    expect(none.warnings).toEqual([]);
  });

  it('keeps v1.14.0 quoting: Environment="KEY=value" with the value as written (no escaping of % or spaces)', () => {
    const p = planOf(etcd2({ cors: "'http://a.example.com:8080, https://b.example.com:8443'", data_dir: '/var/lib/etcd/my data', initial_cluster_token: "'a %n b'" }));
    expect(dropIn(p.actions)).toBe(
      '[Service]\nEnvironment="ETCD_CORS=http://a.example.com:8080, https://b.example.com:8443"\nEnvironment="ETCD_DATA_DIR=/var/lib/etcd/my data"\nEnvironment="ETCD_INITIAL_CLUSTER_TOKEN=a %n b"\n',
    );
    expect(p.warnings).toEqual([]);
  });

  it('cors: etcd 3.4 wants "*" or origins with a port; anything else is written as it is, with a warning', () => {
    for (const ok of ['*', 'http://localhost:8080', 'http://a:1,https://b.example.com:443', 'http://[::1]:8080']) expect(corsRejects(ok), ok).toBeNull();
    expect(corsRejects('https://ui.example.com')).toBe('https://ui.example.com');
    expect(corsRejects('http://a:1,*')).toBe('*');
    expect(corsRejects('ui.example.com:80')).toBe('ui.example.com:80');
    expect(corsRejects('http://a:80/')).toBe('http://a:80/');
    const p = planOf(etcd2({ cors: 'https://ui.example.com' }));
    expect(dropIn(p.actions)).toBe('[Service]\nEnvironment="ETCD_CORS=https://ui.example.com"\n');
    expect(p.warnings).toEqual([
      'warning: coreos.etcd2.cors: etcd 3.4 takes only "*" or origins with an explicit port (e.g. http://localhost:8080) and refuses to start on "https://ui.example.com"; an origin on a default port can only be allowed with "*"',
    ]);
  });

  it('a TLS config with the removed CA keys: the rest is written, one warning per removed key', () => {
    const p = planOf(
      etcd2({
        ca_file: '/etc/ssl/etcd/ca.pem',
        cert_file: '/etc/ssl/etcd/server.pem',
        key_file: '/etc/ssl/etcd/server-key.pem',
        peer_ca_file: '/etc/ssl/etcd/ca.pem',
        peer_cert_file: '/etc/ssl/etcd/peer.pem',
        peer_key_file: '/etc/ssl/etcd/peer-key.pem',
      }),
    );
    expect(dropIn(p.actions)).toBe(
      '[Service]\n' +
        'Environment="ETCD_CERT_FILE=/etc/ssl/etcd/server.pem"\n' +
        'Environment="ETCD_KEY_FILE=/etc/ssl/etcd/server-key.pem"\n' +
        'Environment="ETCD_PEER_CERT_FILE=/etc/ssl/etcd/peer.pem"\n' +
        'Environment="ETCD_PEER_KEY_FILE=/etc/ssl/etcd/peer-key.pem"\n',
    );
    expect(p.warnings).toEqual([
      'warning: coreos.etcd2.ca_file: etcd 3.4 has no --ca-file; use trusted_ca_file (and client_cert_auth: true)',
      'warning: coreos.etcd2.peer_ca_file: etcd 3.4 has no --peer-ca-file; use peer_trusted_ca_file (and peer_client_cert_auth: true)',
    ]);
  });

  it('a typical CoreOS cluster config gives the expected drop-in (and a warning: etcd refuses initial_cluster with discovery)', () => {
    const p = planOf(`coreos:
  etcd2:
    name: node1
    initial-cluster: node1=http://10.0.0.5:2380,node2=http://10.0.0.6:2380,node3=http://10.0.0.7:2380
    initial-advertise-peer-urls: http://10.0.0.5:2380
    listen-peer-urls: http://10.0.0.5:2380
    listen-client-urls: http://0.0.0.0:2379,http://127.0.0.1:4001
    advertise-client-urls: http://10.0.0.5:2379
    initial-cluster-state: new
    initial-cluster-token: etcd-cluster-1
    discovery: https://discovery.etcd.io/0123456789abcdef
`);
    expect(dropIn(p.actions)).toBe(
      '[Service]\n' +
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.5:2379"\n' +
        'Environment="ETCD_DISCOVERY=https://discovery.etcd.io/0123456789abcdef"\n' +
        'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.5:2380"\n' +
        'Environment="ETCD_INITIAL_CLUSTER=node1=http://10.0.0.5:2380,node2=http://10.0.0.6:2380,node3=http://10.0.0.7:2380"\n' +
        'Environment="ETCD_INITIAL_CLUSTER_STATE=new"\n' +
        'Environment="ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-1"\n' +
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://127.0.0.1:4001"\n' +
        'Environment="ETCD_LISTEN_PEER_URLS=http://10.0.0.5:2380"\n' +
        'Environment="ETCD_NAME=node1"\n',
    );
    expect(p.warnings).toEqual([
      'warning: coreos.etcd2: initial_cluster and discovery are both set; etcd 3.4 refuses to start with more than one of initial_cluster, discovery and discovery_srv ("multiple discovery or bootstrap flags are set"); keep one',
    ]);
  });

  it('the same cluster bootstrapped statically or by discovery alone: no warnings', () => {
    const base = { name: 'node1', 'initial-advertise-peer-urls': 'http://10.0.0.5:2380', 'listen-peer-urls': 'http://10.0.0.5:2380', 'listen-client-urls': 'http://0.0.0.0:2379', 'advertise-client-urls': 'http://10.0.0.5:2379' };
    expect(planOf(etcd2({ ...base, 'initial-cluster': 'node1=http://10.0.0.5:2380', 'initial-cluster-state': 'new', 'initial-cluster-token': 't' })).warnings).toEqual([]);
    expect(planOf(etcd2({ ...base, discovery: 'https://discovery.etcd.io/abc' })).warnings).toEqual([]);
    expect(etcdWarnings({}, { initial_cluster: 'a=http://x:2380', discovery: 'https://d/x', discovery_srv: 'example.com' })[0]).toMatch(/^warning: coreos\.etcd2: initial_cluster and discovery and discovery_srv are all set;/);
  });

  it('coreos.etcd (v0.4) writes nothing and warns; an empty section says nothing', () => {
    const p = planOf('coreos:\n  etcd:\n    addr: 10.0.0.5:4001\n    peer-addr: 10.0.0.5:7001\n    peers: 10.0.0.6:7001\n    snapshot: true\n');
    expect(p.actions.filter((a) => a.kind === 'file')).toEqual([]);
    expect(p.actions.some((a) => a.kind === 'daemon-reload')).toBe(false);
    expect(p.warnings).toEqual(['warning: coreos.etcd: etcd v0.4 settings are ignored (set: addr, peer_addr, peers, snapshot); the image ships etcd 3.4 as etcd.service, configure it with coreos.etcd2']);
    expect(planOf('coreos:\n  etcd: {}\n').warnings).toEqual([]);
    expect(planOf('hostname: x\n').warnings).toEqual([]);
  });

  it('coreos.etcd next to coreos.etcd2: only the etcd2 section reaches etcd.service', () => {
    const p = planOf('coreos:\n  etcd:\n    name: old\n    snapshot_count: 5\n  etcd2:\n    name: new\n');
    expect(dropIn(p.actions)).toBe('[Service]\nEnvironment="ETCD_NAME=new"\n');
    expect(p.warnings).toHaveLength(1);
    expect(p.warnings[0]).toMatch(/^warning: coreos\.etcd: etcd v0\.4 settings are ignored \(set: name, snapshot_count\)/);
  });

  it('units: entries naming etcd2.service or etcd.service work as before', () => {
    const p = planOf(`coreos:
  etcd2:
    name: node1
  units:
    - name: etcd2.service
      command: start
      drop_ins:
        - name: 30-limits.conf
          content: |
            [Service]
            LimitNOFILE=100000
    - name: etcd.service
      command: restart
      drop_ins:
        - name: 40-env.conf
          content: |
            [Service]
            Environment=ETCD_LOG_LEVEL=warn
`);
    expect(fileAt(p.actions, '/etc/systemd/system/etcd2.service.d/30-limits.conf')!.content.toString()).toBe('[Service]\nLimitNOFILE=100000\n');
    expect(fileAt(p.actions, '/etc/systemd/system/etcd.service.d/40-env.conf')!.content.toString()).toBe('[Service]\nEnvironment=ETCD_LOG_LEVEL=warn\n');
    expect(dropIn(p.actions)).toBe('[Service]\nEnvironment="ETCD_NAME=node1"\n');
    const cmds = p.actions.filter((a) => a.kind === 'unit-command');
    expect(cmds).toEqual([
      { kind: 'unit-command', unit: 'etcd2.service', command: 'start' },
      { kind: 'unit-command', unit: 'etcd.service', command: 'restart' },
    ]);
    expect(p.actions.filter((a) => a.kind === 'daemon-reload')).toHaveLength(1);
  });

  it('validation is unchanged: v1.14.0 still reports its own deprecations, not these warnings', () => {
    const doc = Buffer.from('#cloud-config\ncoreos:\n  etcd:\n    addr: x\n  etcd2:\n    ca_file: /a\n    peer_ca_file: /b\n    debug: true\n');
    expect(validateUserData(doc).entries.map((e) => `line ${e.line}: ${e.kind}: ${e.message}`)).toEqual([
      'line 3: warning: deprecated key "etcd" (etcd is no longer shipped in Container Linux)',
      'line 5: warning: deprecated key "etcd2" (etcd2 is no longer shipped in Container Linux)',
      'line 6: warning: deprecated key "ca_file" (ca_file obsoleted by trusted_ca_file and client_cert_auth)',
      'line 7: warning: deprecated key "peer_ca_file" (peer_ca_file obsoleted peer_trusted_ca_file and peer_client_cert_auth)',
    ]);
  });

  it('apply logs the warnings before applying, and writes the drop-in', async () => {
    const root = mkdtempSync(join(tmpdir(), 'basalt-ci-etcd-'));
    try {
      const userdata = Buffer.from('#cloud-config\ncoreos:\n  etcd:\n    addr: 10.0.0.5:4001\n  etcd2:\n    name: node1\n    ca_file: /etc/ssl/etcd/ca.pem\n');
      const log: string[] = [];
      const code = await runApply({
        userdata,
        metadata: {},
        report: validateUserData(userdata),
        root,
        workspace: '/var/lib/coreos-cloudinit',
        sshKeyName: 'coreos-cloudinit',
        convertNetconf: '',
        ignoreFailure: false,
        failure: false,
        log: (l) => log.push(l),
        out: (t) => log.push(t),
        configRoot: '',
        env: {},
      });
      expect(code).toBe(0);
      const w = log.filter((l) => l.startsWith('warning: '));
      expect(w).toEqual([
        'warning: coreos.etcd: etcd v0.4 settings are ignored (set: addr); the image ships etcd 3.4 as etcd.service, configure it with coreos.etcd2',
        'warning: coreos.etcd2.ca_file: etcd 3.4 has no --ca-file; use trusted_ca_file (and client_cert_auth: true)',
      ]);
      expect(log.indexOf(w[1]!)).toBeLessThan(log.findIndex((l) => l.startsWith('Wrote file')));
      expect(readFileSync(join(root, DROP_IN), 'utf8')).toBe('[Service]\nEnvironment="ETCD_NAME=node1"\n');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

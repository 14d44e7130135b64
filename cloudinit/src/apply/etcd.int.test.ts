/**
 * The etcd2 section's drop-in against the REAL etcd the image ships
 * (/usr/bin/etcd, Debian's etcd 3.4): `etcd --help` has every flag apply
 * writes and none it drops; etcd recognizes every variable apply writes
 * (and not the dropped ones); and a member started with exactly the
 * drop-in's environment (temp data dir, random 127.0.0.1 ports) serves,
 * with the configured name and peer URL. Skipped without /usr/bin/etcd.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../common/test/helpers.js';
import { waitFor } from '../../../update-engine/test/helpers.js';
import { parseCloudConfigTyped } from '../validate/validate.js';
import { etcd2ToEtcd34, flagEnv } from './etcd.js';
import { plan, type SystemView } from './plan.js';

const ETCD = '/usr/bin/etcd';
const haveEtcd = existsSync(ETCD);
const view: SystemView = { readFile: () => null, userExists: () => true, hostname: () => 'hostbox', env: {} };

/** The variables of the etcd.service drop-in apply writes for a cloud-config. */
function dropInVars(doc: string): Record<string, string> {
  const r = parseCloudConfigTyped(Buffer.from('#cloud-config\n' + doc));
  if ('error' in r) throw new Error(r.error);
  const a = plan(r.config, null, {}, view, { sshKeyName: 'coreos-cloudinit', workspace: '/var/lib/coreos-cloudinit' }).actions.find(
    (x) => x.kind === 'file' && x.path === '/run/systemd/system/etcd.service.d/20-cloudinit.conf',
  );
  if (a?.kind !== 'file') throw new Error('no etcd.service drop-in planned');
  const lines = a.content.toString().split('\n').filter(Boolean);
  expect(lines[0]).toBe('[Service]');
  const vars: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const m = /^Environment="([A-Z0-9_]+)=(.*)"$/.exec(l);
    if (!m) throw new Error(`not an Environment= line: ${l}`);
    vars[m[1]!] = m[2]!;
  }
  return vars;
}

const etcd2 = (body: Record<string, string>) => 'coreos:\n  etcd2:\n' + Object.entries(body).map(([k, v]) => `    ${k}: ${v}\n`).join('');

interface Proc {
  p: ChildProcess;
  stderr(): string;
  stop(): Promise<void>;
}
/** Starts etcd with exactly `env` (no arguments), collecting the start of its log. */
function startEtcd(env: Record<string, string>): Proc {
  const p = spawn(ETCD, [], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d: Buffer) => {
    if (err.length < 512 * 1024) err += d.toString();
  });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  return {
    p,
    stderr: () => err,
    stop: async () => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

describe.skipIf(!haveEtcd)(`coreos.etcd2 against the real etcd (skipped: needs ${ETCD}, Debian's etcd-server)`, () => {
  const honoured = etcd2ToEtcd34.flatMap((m) => (m.flag === null ? [] : [m.flag]));
  const gone = etcd2ToEtcd34.flatMap((m) => (m.flag === null ? [m.gone.replace(/^--/, '')] : []));
  let dir: string;
  const procs: Proc[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'basalt-ci-etcd-'));
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is etcd 3.4, and its --help lists every flag apply writes and none it drops', () => {
    expect(execFileSync(ETCD, ['--version'], { encoding: 'utf8' })).toMatch(/^etcd Version: 3\.4\./);
    const h = spawnSync(ETCD, ['--help'], { encoding: 'utf8' });
    const help = h.stdout + h.stderr;
    const flags = new Set([...help.matchAll(/^\s+--([a-z0-9-]+)/gm)].map((m) => m[1]!));
    expect(honoured.filter((f) => !flags.has(f))).toEqual([]);
    expect(gone.filter((f) => flags.has(f))).toEqual([]);
    expect(gone).toEqual(['ca-file', 'peer-ca-file']);
  });

  it('recognizes every variable apply writes, and not the ones it drops', async () => {
    const [client, peer] = [await freePort(), await freePort()];
    const d = join(dir, 'all');
    // Every key (initial_cluster with discovery: etcd reads all variables, then refuses the combination and exits).
    const vars = dropInVars(
      etcd2({
        advertise_client_urls: `http://127.0.0.1:${client}`,
        ca_file: '/nonexistent/ca.pem',
        cert_file: '/nonexistent/server.pem',
        client_cert_auth: 'true',
        cors: 'http://ui.example.com:8080',
        data_dir: d,
        debug: 'true',
        discovery: 'https://discovery.etcd.io/abc',
        discovery_fallback: 'exit',
        discovery_srv: 'example.com',
        discovery_proxy: 'http://127.0.0.1:9',
        election_timeout: '1200',
        enable_pprof: 'true',
        force_new_cluster: 'true',
        heartbeat_interval: '120',
        initial_advertise_peer_urls: `http://127.0.0.1:${peer}`,
        initial_cluster: `n=http://127.0.0.1:${peer}`,
        initial_cluster_state: 'new',
        initial_cluster_token: 't',
        key_file: '/nonexistent/server-key.pem',
        listen_client_urls: `http://127.0.0.1:${client}`,
        listen_peer_urls: `http://127.0.0.1:${peer}`,
        log_package_levels: 'etcdmain=INFO',
        max_snapshots: '10',
        max_wals: '12',
        name: 'n',
        peer_ca_file: '/nonexistent/peer-ca.pem',
        peer_cert_file: '/nonexistent/peer.pem',
        peer_key_file: '/nonexistent/peer-key.pem',
        peer_client_cert_auth: 'true',
        peer_trusted_ca_file: '/nonexistent/peer-ca.pem',
        proxy: 'readonly',
        proxy_dial_timeout: '1500',
        proxy_failure_wait: '6000',
        proxy_read_timeout: '100',
        proxy_refresh_interval: '40000',
        proxy_write_timeout: '7000',
        snapshot_count: '5000',
        strict_reconfig_check: 'true',
        trusted_ca_file: '/nonexistent/ca.pem',
        wal_dir: join(d, 'wal'),
      }),
    );
    expect(Object.keys(vars).sort()).toEqual(honoured.map(flagEnv).sort());
    // The dropped variables, set by hand: etcd 3.4 only warns about them.
    const e = startEtcd({ ...vars, ETCD_CA_FILE: '/nonexistent/ca.pem', ETCD_PEER_CA_FILE: '/nonexistent/peer-ca.pem' });
    procs.push(e);
    await waitFor(() => e.p.exitCode !== null, 30_000, 'etcd to refuse the combined bootstrap settings and exit');
    const log = e.stderr();
    for (const [k, v] of Object.entries(vars)) expect(log, k).toContain(`recognized and used environment variable ${k}=${v}\n`);
    expect(log).toContain('unrecognized environment variable ETCD_CA_FILE=/nonexistent/ca.pem');
    expect(log).toContain('unrecognized environment variable ETCD_PEER_CA_FILE=/nonexistent/peer-ca.pem');
    expect(log).toContain('multiple discovery or bootstrap flags are set');
    expect(e.p.exitCode).not.toBe(0);
    expect(existsSync(d)).toBe(false);
  });

  it('a member started with exactly the drop-in environment serves with the configured name and peer URL', async () => {
    const [client, peer] = [await freePort(), await freePort()];
    const clientUrl = `http://127.0.0.1:${client}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    const data = join(dir, 'member');
    const vars = dropInVars(
      etcd2({
        name: 'node1',
        'data-dir': data,
        'wal-dir': join(data, 'wal'),
        'initial-cluster': `node1=${peerUrl}`,
        'initial-advertise-peer-urls': peerUrl,
        'listen-peer-urls': peerUrl,
        'listen-client-urls': clientUrl,
        'advertise-client-urls': clientUrl,
        'initial-cluster-state': 'new',
        'initial-cluster-token': 'basalt-test',
        'heartbeat-interval': '50',
        'election-timeout': '500',
        'snapshot-count': '5000',
        'max-snapshots': '3',
        'max-wals': '3',
        'strict-reconfig-check': 'true',
        'enable-pprof': 'true',
        cors: "'http://localhost:8080,https://ui.example.com:8443'",
        'discovery-fallback': 'exit',
        proxy: 'off',
        'proxy-dial-timeout': '1500',
        'log-package-levels': 'etcdmain=INFO',
      }),
    );
    expect(vars['ETCD_NAME']).toBe('node1');
    expect(vars['ETCD_INITIAL_ADVERTISE_PEER_URLS']).toBe(peerUrl);
    const e = startEtcd(vars);
    procs.push(e);
    await waitFor(
      async () => {
        if (e.p.exitCode !== null) throw new Error(`etcd exited (${e.p.exitCode}): ${e.stderr().slice(-3000)}`);
        try {
          const r = await fetch(`${clientUrl}/health`);
          return r.ok && ((await r.json()) as { health?: string }).health === 'true';
        } catch {
          return false;
        }
      },
      60_000,
      'etcd /health',
    );
    const r = await fetch(`${clientUrl}/v3/cluster/member/list`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(200);
    const list = (await r.json()) as { members?: { name?: string; peerURLs?: string[]; clientURLs?: string[] }[] };
    expect(list.members?.map((m) => ({ name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs }))).toEqual([{ name: 'node1', peerURLs: [peerUrl], clientURLs: [clientUrl] }]);
    expect((await fetch(`${clientUrl}/debug/pprof/`)).status).toBe(200);
    expect((await fetch(`${clientUrl}/version`, { headers: { origin: 'http://localhost:8080' } })).headers.get('access-control-allow-origin')).toBe('http://localhost:8080');
    expect((await fetch(`${clientUrl}/version`, { headers: { origin: 'http://elsewhere.example:8080' } })).headers.get('access-control-allow-origin')).toBeNull();
    const log = e.stderr();
    for (const [k, v] of Object.entries(vars)) expect(log, k).toContain(`recognized and used environment variable ${k}=${v}\n`);
    expect(log).not.toContain('unrecognized environment variable');
    expect(existsSync(join(data, 'wal'))).toBe(true);
    await e.stop();
    expect(e.p.exitCode !== null || e.p.signalCode !== null).toBe(true);
  });
});

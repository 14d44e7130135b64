import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseCloudConfigTyped } from '../validate/validate.js';
import { mergeEnv, parsePermissions, plan, serviceContents, substitute, substitutions, unitDestination, updateConf, type Action, type SystemView } from './plan.js';
import { etcd2Fields } from '../schema.js';

const view = (files: Record<string, string> = {}, users: string[] = ['core'], env: Record<string, string> = {}): SystemView => ({
  readFile: (p) => (p in files ? Buffer.from(files[p]!) : null),
  userExists: (n) => users.includes(n),
  hostname: () => 'hostbox',
  env,
});
const opts = { sshKeyName: 'coreos-cloudinit', workspace: '/var/lib/coreos-cloudinit' };

function cfg(text: string) {
  const r = parseCloudConfigTyped(Buffer.from('#cloud-config\n' + text));
  if ('error' in r) throw new Error(r.error);
  return r.config;
}
const files = (as: Action[]) => Object.fromEntries(as.filter((a) => a.kind === 'file').map((a) => [a.path, a]));

describe('plan', () => {
  const cluster = readFileSync(join(import.meta.dirname, '..', '..', 'testdata', 'apply', 'cluster.yml'), 'utf8');
  const md = { privateIPv4: '10.0.0.5' };
  const text = substitute(cluster, substitutions(md, {}));
  const actions = plan((parseCloudConfigTyped(Buffer.from(text)) as { config: Record<string, unknown> }).config, null, md, view({ '/usr/share/coreos/update.conf': 'GROUP=alpha\nSERVER=https://old\n' }), opts).actions;
  const f = files(actions);

  it("writes the etcd2 section's drop-in for etcd.service under /run with Environment= lines in struct order", () => {
    expect(f['/run/systemd/system/etcd.service.d/20-cloudinit.conf']!.content.toString()).toBe(
      '[Service]\n' +
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.5:2379"\n' +
        'Environment="ETCD_DEBUG=true"\n' +
        'Environment="ETCD_DISCOVERY=https://discovery.etcd.io/abc"\n' +
        'Environment="ETCD_HEARTBEAT_INTERVAL=100"\n' +
        'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.5:2380"\n' +
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379"\n' +
        'Environment="ETCD_LISTEN_PEER_URLS=http://10.0.0.5:2380"\n' +
        'Environment="ETCD_NAME=node1"\n',
    );
    expect(f['/run/systemd/system/fleet.service.d/20-cloudinit.conf']!.content.toString()).toBe(
      '[Service]\nEnvironment="FLEET_ETCD_REQUEST_TIMEOUT=1.5"\nEnvironment="FLEET_METADATA=region=us-west"\nEnvironment="FLEET_PUBLIC_IP=10.0.0.5"\n',
    );
    expect(f['/run/systemd/system/locksmithd.service.d/20-cloudinit.conf']!.content.toString()).toBe(
      '[Service]\nEnvironment="LOCKSMITHD_GROUP=webservers"\nEnvironment="REBOOT_WINDOW_START=Sun 1:00"\nEnvironment="REBOOT_WINDOW_LENGTH=2h"\n',
    );
    expect(f['/run/systemd/system/etcd2.service.d/20-cloudinit.conf']).toBeUndefined();
  });

  it('writes flannel options.env without a trailing newline, and the update.conf rewrite', () => {
    expect(f['/run/flannel/options.env']!.content.toString()).toBe('FLANNELD_ETCD_PREFIX=/coreos.com/network\nFLANNELD_IFACE=10.0.0.5');
    expect(f['/etc/coreos/update.conf']!.content.toString()).toBe('GROUP=stable\nSERVER=https://public.update.core-os.net/v1/update/\nREBOOT_STRATEGY=etcd-lock\n');
    expect(f['/etc/oem-release']!.content.toString()).toBe('ID=basalt\nVERSION_ID=1.0.0\nNAME="Basalt Test"\nHOME_URL="https://example.com/"\nBUG_REPORT_URL="https://example.com/bugs"\n');
    expect(f['/etc/hosts']!.content.toString()).toBe('127.0.0.1 node1\n');
  });

  it('decodes every encoding and keeps modes', () => {
    expect(f['/etc/b64.txt']!.content.toString()).toBe('base64 content\n');
    expect(f['/etc/gzb64.txt']!.content.toString()).toBe('gzip+base64 content\n');
    expect(f['/etc/gzb64.txt']!.mode).toBe(0o600);
    expect(f['/opt/bin/tool']!.mode).toBe(0o755);
    expect(f['/opt/bin/tool']!.owner).toBe('root:root');
    expect(f['/etc/plain.txt']!.mode).toBe(0o644);
  });

  it('orders units: files, mask/unmask, enable, one daemon-reload, networkd restart, then commands', () => {
    const kinds = actions.map((a) => (a.kind === 'file' ? null : a.kind === 'unit-command' ? `${a.command} ${a.unit}` : a.kind)).filter((x) => x !== null);
    const reload = kinds.indexOf('daemon-reload');
    expect(kinds.filter((k) => k === 'daemon-reload')).toHaveLength(1);
    expect(kinds.slice(reload + 1)).toEqual(['networkd-restart', 'start hello.service', 'restart locksmithd.service', 'restart update-engine.service']);
    expect(actions).toContainEqual({ kind: 'unit-mask', unit: 'masked.service', path: '/etc/systemd/system/masked.service' });
    expect(actions).toContainEqual({ kind: 'unit-enable', unit: 'hello.service', runtime: false });
    expect(f['/etc/systemd/network/10-eth.network']).toBeDefined();
    expect(f['/run/systemd/system/runtime.service']).toBeDefined();
    expect(f['/etc/systemd/system/docker.service.d/50-opts.conf']!.content.toString()).toContain('DOCKER_OPTS');
  });

  it('creates new users with v1.14.0 useradd options (gecos quoted with %q) and adds keys', () => {
    const ua = actions.find((a) => a.kind === 'user-create');
    expect(ua).toEqual({ kind: 'user-create', name: 'elroy', useraddArgs: ['--password', '$6$salt$hashhashhash', '--comment', '"Elroy Jetson"', '--create-home', '--groups', 'sudo', '--shell', '/bin/sh', 'elroy'] });
    expect(actions).toContainEqual({ kind: 'ssh-keys', user: 'core', keyName: 'coreos-cloudinit', keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcore core@example'] });
  });

  it('sets only the password of an existing user', () => {
    const as = plan(cfg('users:\n  - name: core\n    passwd: x\n    gecos: ignored\n'), null, {}, view(), opts).actions;
    expect(as.filter((a) => a.kind !== 'unit-unmask')).toEqual([{ kind: 'user-password', name: 'core', hash: 'x' }]);
    // the generated etcd (for the etcd2 section), fleet and locksmithd units are always "unmasked" (runtime: true)
    expect(as.filter((a) => a.kind === 'unit-unmask').map((a) => (a as { unit: string }).unit)).toEqual(['etcd.service', 'fleet.service', 'locksmithd.service']);
  });

  it('reboot_strategy off stops and masks locksmithd', () => {
    const as = plan(cfg('coreos:\n  update:\n    reboot_strategy: off\n'), null, {}, view({ '/etc/coreos/update.conf': 'GROUP=stable\nREBOOT_STRATEGY=reboot\n' }), opts).actions;
    expect(files(as)['/etc/coreos/update.conf']!.content.toString()).toBe('GROUP=stable\nREBOOT_STRATEGY=off\n');
    expect(as).toContainEqual({ kind: 'unit-mask', unit: 'locksmithd.service', path: '/run/systemd/system/locksmithd.service' });
    expect(as).toContainEqual({ kind: 'unit-command', unit: 'locksmithd.service', command: 'stop' });
  });

  it('refuses manage_etc_hosts other than localhost and invalid update options', () => {
    expect(() => plan(cfg('manage_etc_hosts: true\n'), null, {}, view(), opts)).toThrow(/Invalid option to manage_etc_hosts/);
    expect(() => updateConf({ reboot_strategy: 'best-effort' }, view({ '/etc/coreos/update.conf': '' }))).toThrow('invalid value "best-effort" for option "RebootStrategy" (valid options: "^(etcd-lock|reboot|off)$")');
  });

  it('parses permissions like strconv.ParseInt(p, 8, 32) and Go chmod', () => {
    expect(parsePermissions('0644', 'x')).toBe(0o644);
    expect(parsePermissions('644', 'x')).toBe(0o644);
    expect(parsePermissions('', 'x')).toBe(0o644);
    expect(parsePermissions('01777', 'x')).toBe(0o777);
    expect(() => parsePermissions('0o644', 'x')).toThrow(/Unable to parse file permissions/);
  });

  it('substitutes $private_ipv4 like Environment.Apply, including its quirks', () => {
    const s = { $public_ipv4: '1.2.3.4', $private_ipv4: '10.0.0.1', $public_ipv6: '', $private_ipv6: '' };
    expect(substitute('a $public_ipv4 b', s)).toBe('a 1.2.3.4 b');
    expect(substitute('$public_ipv4s', s)).toBe('1.2.3.4s');
    expect(substitute('\\$public_ipv4', s)).toBe('$public_ipv4');
    expect(substitute('${public_ipv4}', s)).toBe('${public_ipv4}');
    expect(substitute('$public_ipv4$public_ipv4', s)).toBe('1.2.3.4$public_ipv4');
    expect(substitutions({}, { COREOS_PRIVATE_IPV4: '192.168.1.1' })['$private_ipv4']).toBe('192.168.1.1');
  });

  it('merges /etc/environment keeping lines and order, appending sorted new keys', () => {
    expect(mergeEnv(Buffer.from('A=1\nCOREOS_PUBLIC_IPV4=old\n# c'), new Map([['COREOS_PUBLIC_IPV4', 'new'], ['COREOS_PRIVATE_IPV4', 'p']])).toString()).toBe('A=1\nCOREOS_PUBLIC_IPV4=new\n# c\nCOREOS_PRIVATE_IPV4=p\n');
    const as = plan(cfg('hostname: x\n'), null, { publicIPv4: '1.2.3.4' }, view({ '/etc/environment': 'COREOS_PUBLIC_IPV4=1.2.3.4\n' }), opts).actions;
    expect(files(as)['/etc/environment']).toBeUndefined();
  });

  it('generated drop-ins: bools only when true, floats with %v, nothing when empty', () => {
    expect(serviceContents({ debug: false, name: '', election_timeout: 0n }, etcd2Fields)).toBe('');
    expect(serviceContents({ debug: true, election_timeout: 1000n }, etcd2Fields)).toBe('[Service]\nEnvironment="ETCD_DEBUG=true"\nEnvironment="ETCD_ELECTION_TIMEOUT=1000"\n');
    expect(unitDestination({ name: 'a.netdev', runtime: true })).toBe('/run/systemd/network/a.netdev');
    expect(unitDestination({ name: 'a.service', runtime: false })).toBe('/etc/systemd/system/a.service');
  });

  it('plans a #! script as a transient unit with a stable name', () => {
    const as = plan(null, Buffer.from('#!/bin/sh\necho hi\n'), {}, view(), opts).actions.filter((a) => a.kind !== 'unit-unmask');
    expect(as).toHaveLength(1);
    expect(as[0]!.kind).toBe('script');
    const s = as[0] as Action & { kind: 'script' };
    expect(s.unit).toMatch(/^coreos-cloudinit-[0-9a-f]{12}\.service$/);
    expect(s.path.startsWith('/var/lib/coreos-cloudinit/scripts/')).toBe(true);
  });

  it('gz content is decompressed to the end', () => {
    const gz = gzipSync(Buffer.from('hello')).toString('base64');
    const as = plan(cfg(`write_files:\n  - path: /etc/x\n    encoding: gz+b64\n    content: ${gz}\n`), null, {}, view(), opts).actions;
    expect(files(as)['/etc/x']!.content.toString()).toBe('hello');
  });
});

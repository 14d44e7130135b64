/**
 * `basalt cloudinit apply --root DIR` on a full cluster config with real
 * tools: useradd --root, chpasswd, systemctl --root enable, then
 * `systemd-analyze verify` on every unit and drop-in written, a second apply
 * that changes nothing, and refusal of configs with validation errors.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..', '..');
const cluster = join(repo, 'cloudinit', 'testdata', 'apply', 'cluster.yml');
const isRoot = process.getuid?.() === 0;
const have = (t: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, t)));
const built = existsSync(join(repo, 'dist', 'cloudinit', 'src', 'cli', 'basalt-cloudinit.js'));
const canRun = isRoot && have('useradd') && have('chpasswd') && have('systemd-analyze') && have('systemctl') && built;

async function basalt(args: string[], env: Record<string, string> = {}) {
  try {
    const r = await exec(process.execPath, [join(repo, 'bin', 'basalt.js'), ...args], { env: { ...process.env, ...env } });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, base));
    else out.push(p.slice(base.length));
  }
  return out;
}

function snapshot(root: string): Record<string, string> {
  const s: Record<string, string> = {};
  for (const f of walk(root)) {
    const p = join(root, f);
    const st = lstatSync(p);
    s[f] = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${st.mtimeMs} ${readFileSync(p).toString('base64')}`;
  }
  return s;
}

describe.skipIf(!canRun)('cloudinit apply --root (needs root, useradd, chpasswd, systemctl, systemd-analyze and a tsc build)', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'basalt-ci-root-'));
    mkdirSync(join(root, 'etc'), { recursive: true });
    for (const f of ['passwd', 'group', 'shadow', 'gshadow']) if (existsSync(`/etc/${f}`)) cpSync(`/etc/${f}`, join(root, 'etc', f));
    mkdirSync(join(root, 'usr/share/coreos'), { recursive: true });
    writeFileSync(join(root, 'usr/share/coreos/update.conf'), 'GROUP=alpha\nSERVER=https://old.example/\n');
    mkdirSync(join(root, 'home'), { recursive: true });
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('creates core first (the OS image provides it)', async () => {
    await exec('useradd', ['--root', root, '--create-home', '--home-dir', '/home/core', 'core']);
  });

  it('applies the full cluster config with the reference paths and contents', async () => {
    const r = await basalt(['cloudinit', 'apply', '--root', root, '--from-file', cluster], { COREOS_PRIVATE_IPV4: '10.0.0.5' });
    expect(r.err).toContain('Applied:');
    expect(r.code).toBe(0);
    const rd = (p: string) => readFileSync(join(root, p), 'utf8');
    expect(rd('run/systemd/system/etcd.service.d/20-cloudinit.conf')).toContain('Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.5:2379"\n');
    expect(existsSync(join(root, 'run/systemd/system/etcd2.service.d'))).toBe(false);
    // the plan's warnings reach stderr (cluster.yml sets the deprecated etcd2 debug)
    expect(r.err).toMatch(/ warning: coreos\.etcd2\.debug: etcd 3\.4 still honours --debug but deprecates it/);
    expect(rd('run/systemd/system/fleet.service.d/20-cloudinit.conf')).toContain('Environment="FLEET_PUBLIC_IP=10.0.0.5"');
    expect(rd('run/systemd/system/locksmithd.service.d/20-cloudinit.conf')).toContain('Environment="REBOOT_WINDOW_START=Sun 1:00"');
    expect(rd('run/flannel/options.env')).toBe('FLANNELD_ETCD_PREFIX=/coreos.com/network\nFLANNELD_IFACE=10.0.0.5');
    expect(rd('etc/coreos/update.conf')).toBe('GROUP=stable\nSERVER=https://public.update.core-os.net/v1/update/\nREBOOT_STRATEGY=etcd-lock\n');
    expect(rd('etc/oem-release')).toMatch(/^ID=basalt\nVERSION_ID=1.0.0\nNAME="Basalt Test"\n/);
    expect(rd('etc/hosts')).toBe('127.0.0.1 node1\n');
    expect(rd('etc/hostname')).toBe('node1\n');
    expect(rd('etc/environment')).toBe('COREOS_PRIVATE_IPV4=10.0.0.5\n');
    expect(rd('etc/b64.txt')).toBe('base64 content\n');
    expect(rd('etc/gzb64.txt')).toBe('gzip+base64 content\n');
    expect(statSync(join(root, 'etc/gzb64.txt')).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, 'opt/bin/tool')).mode & 0o777).toBe(0o755);
    expect(rd('opt/bin/tool')).toBe('#!/bin/sh\necho 10.0.0.5\n');
    expect(readlinkSync(join(root, 'etc/systemd/system/masked.service'))).toBe('/dev/null');
    expect(lstatSync(join(root, 'etc/systemd/system/multi-user.target.wants/hello.service')).isSymbolicLink()).toBe(true);
    expect(existsSync(join(root, 'etc/systemd/network/10-eth.network'))).toBe(true);
    expect(rd('etc/passwd')).toMatch(/^elroy:x:\d+:\d+:"Elroy Jetson":\/home\/elroy:\/bin\/sh$/m);
    expect(rd('etc/shadow')).toMatch(/^elroy:\$6\$salt\$hashhashhash:/m);
    expect(rd('home/elroy/.ssh/authorized_keys.d/coreos-cloudinit')).toBe('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIelroy elroy@example\n');
    expect(rd('home/core/.ssh/authorized_keys')).toContain('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcore core@example\n');
    expect(statSync(join(root, 'home/core/.ssh/authorized_keys')).mode & 0o777).toBe(0o600);
    expect(r.err).toContain('Planned (not run under --root');
    expect(walk(root).some((f) => f.includes('cloudinit-temp'))).toBe(false);
  });

  it('systemd-analyze verify accepts every unit and drop-in written (on copies, with stub base units for drop-in-only units)', async () => {
    const v = mkdtempSync(join(tmpdir(), 'basalt-ci-verify-'));
    try {
      const units = new Set<string>();
      for (const dir of ['etc/systemd/system', 'run/systemd/system']) {
        const d = join(root, dir);
        if (!existsSync(d)) continue;
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const src = join(d, e.name);
          if (e.isDirectory() && e.name.endsWith('.d')) {
            mkdirSync(join(v, e.name), { recursive: true });
            for (const f of readdirSync(src)) cpSync(join(src, f), join(v, e.name, f));
            units.add(e.name.slice(0, -2));
          } else if (e.isFile()) {
            cpSync(src, join(v, e.name));
            units.add(e.name);
          }
        }
      }
      for (const u of units) {
        if (!existsSync(join(v, u))) writeFileSync(join(v, u), `[Unit]\nDescription=stub base unit for ${u}\n\n[Service]\nExecStart=/bin/true\n`);
      }
      expect([...units].sort()).toEqual(['docker.service', 'etcd.service', 'fleet.service', 'hello.service', 'locksmithd.service', 'runtime.service']);
      const r = await exec('systemd-analyze', ['verify', ...units], { cwd: v, env: { ...process.env, SYSTEMD_UNIT_PATH: `${v}:` } }).then(
        (x) => ({ code: 0, err: x.stderr }),
        (e: unknown) => ({ code: (e as { code: number }).code, err: (e as { stderr: string }).stderr }),
      );
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
    } finally {
      rmSync(v, { recursive: true, force: true });
    }
  });

  it('a second apply changes nothing', async () => {
    const before = snapshot(root);
    const r = await basalt(['cloudinit', 'apply', '--root', root, '--from-file', cluster], { COREOS_PRIVATE_IPV4: '10.0.0.5' });
    expect(r.code).toBe(0);
    expect(r.err).toContain('Applied: 0 change(s)');
    expect(snapshot(root)).toEqual(before);
  });

  it('a config with a validation error is not applied at all', async () => {
    const bad = join(root, '..', `bad-${Date.now()}.yml`);
    writeFileSync(bad, '#cloud-config\nwrite_files:\n  - path: /etc/should-not-exist\n    content: x\ncoreos:\n  units:\n    - name: a.service\n      command: bogus\n');
    try {
      const before = snapshot(root);
      const r = await basalt(['cloudinit', 'apply', '--root', root, '--from-file', bad]);
      expect(r.code).toBe(1);
      expect(r.err).toContain('line 8: error: invalid value bogus');
      expect(r.err).toContain('Refusing to apply');
      expect(snapshot(root)).toEqual(before);
    } finally {
      rmSync(bad, { force: true });
    }
  });

  it('--dry-run prints the plan and writes nothing', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'basalt-ci-dry-'));
    try {
      mkdirSync(join(fresh, 'usr/share/coreos'), { recursive: true });
      writeFileSync(join(fresh, 'usr/share/coreos/update.conf'), '');
      const r = await basalt(['cloudinit', 'apply', '--root', fresh, '--dry-run', '--from-file', cluster]);
      expect(r.code).toBe(0);
      expect(r.err).toContain('would write /run/systemd/system/etcd.service.d/20-cloudinit.conf');
      expect(r.err).toContain('would systemctl daemon-reload');
      expect(walk(fresh)).toEqual(['/usr/share/coreos/update.conf']);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});

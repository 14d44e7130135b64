/** The CLI wiring, as users run it: basalt keys/release/serve/update and their errors. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../common/src/exec.js';
import { tempDir, makeUsr, makeDisk, waitFor } from '../test/helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let t: Awaited<ReturnType<typeof tempDir>>;
let serve: ChildProcess | undefined;

beforeAll(async () => {
  if (!(await stat(join(root, 'dist/update-engine/src/cmd/release.js')).then(() => true, () => false))) await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, reject: false });
  t = await tempDir();
});
afterAll(async () => {
  serve?.kill('SIGTERM');
  await t.cleanup();
});

function basalt(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(root, 'bin/basalt.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

describe('basalt keys, release, serve, update (CLI)', () => {
  it('generates keys, releases v1/v2, promotes, serves, and updates a disk image', async () => {
    const kd = join(t.dir, 'k');
    const g = await basalt(['keys', 'generate', '--out', kd, '--json']);
    expect(g.code, g.err).toBe(0);
    expect((JSON.parse(g.out) as { fingerprint?: unknown }).fingerprint).toMatch(/^[0-9A-F]{40}$/);
    expect(((await stat(join(kd, 'release.key'))).mode & 0o777).toString(8)).toBe('600');
    expect((await basalt(['keys', 'generate', '--out', kd])).err).toMatch(/already exists/);
    const ex = await basalt(['keys', 'export', '--key', join(kd, 'release.key')]);
    expect(ex.out).toBe(await readFile(join(kd, 'release.pub.asc'), 'utf8'));
    const repo = join(t.dir, 'repo');
    const u1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 1024 });
    const u2 = await makeUsr(t.dir, '2.0.0', { like: '1.0.0' });
    for (const [u, v] of [[u1, '1.0.0'], [u2, '2.0.0']]) {
      // 2.0.0 comes with a delta from 1.0.0, which the disk below (running 1.0.0) is offered.
      const delta = v === '2.0.0' ? ['--delta-from', '1.0.0'] : [];
      const r = await basalt(['release', '--usr', u!, '--version', v!, '--channel', 'beta', '--key', join(kd, 'release.key'), '--repo', repo, ...delta]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(new RegExp(`^released ${v!.replace(/\./g, '\\.')} to beta: \\d+ bytes -> \\d+ bytes in \\d+ chunks \\(format 2: \\d+ stored, \\d+ zstd\\)`));
      if (delta.length) expect(r.out).toMatch(/\ndelta from 1\.0\.0: \d+ bytes \([\d.]+ % of the full payload\) in \d+ chunks \(format 2: \d+ stored, \d+ zstd, \d+ from the running slot\)\n$/);
    }
    const p = await basalt(['release', 'promote', '2.0.0', '--from', 'beta', '--to', 'stable', '--key', join(kd, 'release.key'), '--repo', repo]);
    expect(p.code, p.err).toBe(0);
    const bad = await basalt(['release', '--usr', u1, '--version', 'one', '--channel', 'beta', '--key', join(kd, 'release.key'), '--repo', repo]);
    expect(bad.code).toBe(1);
    expect(bad.err).toBe("basalt: error: --version: 'one' is not a release version (hint: use dotted numbers such as 2079.3.2 or 1.2.0-rc1)\n");
    expect((await basalt(['release', '--usr', u1])).code).toBe(2);

    serve = spawn(process.execPath, [join(root, 'bin/basalt.js'), 'serve', '--repo', repo, '--listen', '127.0.0.1:0', '--keyring', join(kd, 'release.pub.asc')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    serve.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const url = await waitFor(() => /serving .* on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(log)?.[1], 20_000, 'basalt serve');

    const disk = await makeDisk(t.dir, u1, '1.0.0');
    const common = ['--disk', disk, '--booted-slot', 'A', '--state-dir', `${disk}.state`, '--keyring', join(kd, 'release.pub.asc'), '--tuf-root', join(kd, 'root.json'), '--root', join(t.dir, 'none'), '--channel', 'stable'];
    const ap = await basalt(['update', 'apply', ...common, '--server', `${url}v1/update/`]);
    expect(ap.code, ap.err).toBe(0);
    expect(ap.out).toBe('updated USR-B to 2.0.0; reboot to use it\n');
    const st = await basalt(['update', 'status', '--json', ...common]);
    const sj = JSON.parse(st.out) as { slots?: unknown };
    expect(sj).toMatchObject({ status: 'UPDATE_STATUS_UPDATED_NEED_REBOOT', newVersion: '2.0.0', loaderNext: 'B', gptNext: 'B' });
    // What the machine trusts now: the repository's TUF versions, kept in its state dir.
    expect(sj).toMatchObject({ trusted: { root: { version: 1 }, timestamp: { version: 3 }, snapshot: { version: 3 }, targets: { version: 3 } } });
    expect(sj.slots).toEqual([
      { slot: 'A', partition: 3, priority: 1, tries: 0, successful: true },
      { slot: 'B', partition: 4, priority: 2, tries: 1, successful: false },
    ]);
    // The new slot boots and passes the gate.
    const mg = await basalt(['update', 'mark-good', '--no-units', ...common.map((a) => (a === 'A' ? 'B' : a))]);
    expect(mg.code, mg.err).toBe(0);
    expect(mg.out).toBe('USR-B marked good; boot entry blessed as basalt-b.conf\n');
    // Updates off: SERVER=disabled.
    const off = await basalt(['update', 'apply', ...common, '--state-dir', join(t.dir, 'fresh-state'), '--server', 'disabled']);
    expect(off.code).toBe(1);
    expect(off.err).toMatch(/^basalt: error: updates are disabled/);
  });
});

describe('basalt update health (the boot health gate)', () => {
  // No systemd runs on a build host, so systemctl is replaced by a script that answers
  // `is-active` and `show` as systemctl does, from a table (a unit in `idle` is inactive, never
  // started and pulled in by nothing); the boot of a failing slot is checked for real in
  // qemu-test (scenario 3).
  async function gate(states: Record<string, string>, conf: string, extra: string[] = [], idle: string[] = []) {
    const { mkdir, writeFile, chmod } = await import('node:fs/promises');
    const dir = join(t.dir, `gate-${Object.values(states).join('-').replace(/>/g, '_')}-${extra.length}`);
    await mkdir(join(dir, 'bin'), { recursive: true });
    await mkdir(join(dir, 'root/usr/share/coreos'), { recursive: true });
    await writeFile(join(dir, 'root/usr/share/coreos/update.conf'), conf);
    // A state 'activating>active' is activating for the first two looks, then active (a unit still starting).
    const cases = Object.entries(states)
      .map(([u, s]) => {
        const [first, then] = s.split('>');
        if (!then) return `  ${u}) echo ${s}; [ ${s} = active ] ;;`;
        return `  ${u}) n=$(cat "${dir}/looks-${u}" 2>/dev/null || echo 0); echo $((n + 1)) > "${dir}/looks-${u}"; if [ "$n" -lt 2 ]; then echo ${first}; false; else echo ${then}; [ ${then} = active ]; fi ;;`;
      })
      .join('\n');
    const shows = Object.entries(states)
      .map(([u, s]) => `  ${u}) printf 'ActiveState=%s\\nInactiveExitTimestampMonotonic=%s\\nWantedBy=%s\\nRequiredBy=\\nTriggeredBy=\\n' ${s.split('>')[0]} ${idle.includes(u) ? '0 basalt-health.service' : '5 multi-user.target'} ;;`)
      .join('\n');
    // Like systemctl: with several units it succeeds when any one is active (the trap the gate must avoid).
    const show = `if [ "$1" = show ]; then\n  for u in "$@"; do :; done\n  case "$u" in\n${shows}\n  *) printf 'ActiveState=inactive\\n' ;;\n  esac\n  exit 0\nfi\n`;
    await writeFile(join(dir, 'bin/systemctl'), `#!/bin/sh\n${show}[ "$1" = is-active ] || exit 64\nshift\n[ "$1" = --quiet ] && shift\nrc=3\nfor u in "$@"; do\n  case "$u" in\n${cases}\n  *) echo inactive; false ;;\n  esac && rc=0\ndone\nexit $rc\n`);
    await chmod(join(dir, 'bin/systemctl'), 0o755);
    return basalt(['update', 'health', '--root', join(dir, 'root'), ...extra], { ...process.env, PATH: `${join(dir, 'bin')}:${process.env['PATH']}` });
  }
  const conf = 'GROUP=stable\nHEALTH_UNITS="etcd.service docker.service"\n';

  it('passes when every HEALTH_UNITS unit is active', async () => {
    const r = await gate({ 'etcd.service': 'active', 'docker.service': 'active' }, conf);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('healthy: etcd.service, docker.service active\n');
  });

  it('fails naming the unit when one of them is not active, even though the other is', async () => {
    const r = await gate({ 'etcd.service': 'failed', 'docker.service': 'active' }, conf);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^basalt: error: unhealthy boot: etcd\.service is failed \(hint: this boot will not be blessed/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it('skips a HEALTH_UNITS unit this machine is not meant to run (etcd with no cloud-config asking for it)', async () => {
    const r = await gate({ 'etcd.service': 'inactive', 'docker.service': 'active' }, conf, [], ['etcd.service']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('healthy: docker.service active (not meant to run here: etcd.service)\n');
  });

  it('checks a unit that is meant to run but never started, and every --unit even when idle', async () => {
    const r = await gate({ 'etcd.service': 'inactive', 'docker.service': 'active' }, conf);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/etcd\.service is inactive/);
    const r2 = await gate({ 'etcd.service': 'active', 'docker.service': 'active', 'app.service': 'inactive' }, conf, ['--unit', 'app.service'], ['app.service']);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/app\.service is inactive/);
  });

  it('adds --unit to the configured units; a unit still starting at the deadline fails as activating', async () => {
    const r = await gate({ 'etcd.service': 'active', 'docker.service': 'active', 'app.service': 'activating' }, conf, ['--unit', 'app.service', '--settle', '1s']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/app\.service is activating/);
  });

  it('waits for a unit that is still starting (etcd started by the cloud-config just before the gate)', async () => {
    const r = await gate({ 'etcd.service': 'activating>active', 'docker.service': 'active' }, conf, ['--settle', '30s']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('healthy: etcd.service, docker.service active\n');
  });
});

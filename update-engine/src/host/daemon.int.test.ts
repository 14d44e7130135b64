/**
 * The daemon and its clients as real processes: `basalt update-engine` on a
 * disk image with a unix socket, `update_engine_client` and `basalt update`
 * talking to it. Plus the check schedule with an injected clock.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../common/src/exec.js';
import { projectRoot } from '../../../common/src/paths.js';
import { silentLogger, createLogger } from '../../../common/src/log.js';
import { tempDir, makeUsr, makeKeys, makeDisk, waitFor } from '../../test/helpers.js';
import { release } from '../publish/repo.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { startServer } from '../serve/server.js';
import { APP_ID } from '../../../common/src/contracts.js';
import { buildEnv } from './hostenv.js';
import { Engine } from './engine.js';
import { statusSocketFor } from './control.js';
import type { Clock } from './scheduler.js';

const root = projectRoot();
let t: Awaited<ReturnType<typeof tempDir>>;
let srv: Awaited<ReturnType<typeof startServer>> | undefined;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let usr1: string;
let fail500 = false;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  const built = await stat(join(root, 'dist/update-engine/src/cmd/update-engine-client.js')).then(() => true, () => false);
  if (!built) await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, reject: false });
  t = await tempDir();
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  const repo = join(t.dir, 'repo');
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 256 });
  await release({ usr: await makeUsr(t.dir, '2.0.0', { randomKiB: 256 }), version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now: new Date(), expiresMs: 86_400_000, xzLevel: 0 });
  srv = await startServer({ repo, eventsFile: join(t.dir, 'events.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0, (h) => (req, res) => {
    if (fail500 && req.method === 'POST') {
      res.writeHead(500).end();
      return;
    }
    h(req, res);
  });
});
afterAll(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await srv?.close();
  await t.cleanup();
});

function node(args: string[], bin = 'basalt.js'): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(root, 'bin', bin), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

function daemon(disk: string, sock: string, extra: string[] = []): ChildProcess {
  const c = spawn(
    process.execPath,
    [join(root, 'bin/basalt.js'), 'update-engine', '--disk', disk, '--booted-slot', 'A', '--state-dir', `${disk}.state`, '--keyring', keys.pub, '--tuf-root', keys.tuf.root, '--server', `${srv!.url}v1/update/`, '--channel', 'stable', '--board', 'amd64-usr', '--root', join(t.dir, 'none'), '--socket', sock, ...extra],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  procs.push(c);
  return c;
}

describe('update-engine daemon and clients', () => {
  it('update_engine_client -status/-update/-reset_status against the daemon', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const sock = join(t.dir, 'ue.sock');
    const d = daemon(disk, sock, ['--first-check', '1h']);
    await waitFor(() => stat(sock).then(() => true, () => false), 20_000, 'the daemon socket');
    const s0 = await node(['-status', `-socket=${sock}`], 'update_engine_client.js');
    expect(s0.out).toBe('LAST_CHECKED_TIME=0\nPROGRESS=0\nCURRENT_OP=UPDATE_STATUS_IDLE\nNEW_VERSION=0.0.0\nNEW_SIZE=0\n');
    // A watcher sees every state as it happens (not after the download that was running).
    const watcher = spawn(process.execPath, [join(root, 'bin/update_engine_client.js'), '-watch_for_updates', `-socket=${sock}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    procs.push(watcher);
    let watched = '';
    watcher.stdout.on('data', (b: Buffer) => (watched += b.toString()));
    await waitFor(async () => watched.includes('CURRENT_OP='), 20_000, 'the watcher to connect');
    const u = await node(['-update', `-socket=${sock}`], 'update_engine_client.js');
    await waitFor(async () => watched.includes('UPDATED_NEED_REBOOT'), 20_000, 'the watcher to see NEED_REBOOT');
    const ops = [...watched.matchAll(/CURRENT_OP=UPDATE_STATUS_(\w+)/g)].map((m) => m[1]).filter((o, i, a) => o !== a[i - 1]);
    expect(ops).toEqual(['IDLE', 'CHECKING_FOR_UPDATE', 'UPDATE_AVAILABLE', 'DOWNLOADING', 'VERIFYING', 'FINALIZING', 'UPDATED_NEED_REBOOT']);
    const downloading = [...watched.matchAll(/PROGRESS=([\d.e-]+)\nCURRENT_OP=UPDATE_STATUS_DOWNLOADING/g)].map((m) => Number(m[1]));
    expect(downloading.at(-1)).toBe(1);
    expect(u.code, u.err).toBe(0);
    expect(u.out).toMatch(/Update succeeded -- reboot needed/);
    const s1 = await node(['-status', `-socket=${sock}`], 'update_engine_client.js');
    expect(s1.out).toMatch(/^LAST_CHECKED_TIME=\d{10}\nPROGRESS=1\nCURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=2\.0\.0\nNEW_SIZE=\d+\n$/);
    const js = await node(['update', 'status', '--json', '--socket', sock]);
    expect(JSON.parse(js.out)).toMatchObject({ status: 'UPDATE_STATUS_UPDATED_NEED_REBOOT', currentVersion: '1.0.0', bootedSlot: 'A' });
    expect((await run('cgpt', ['show', '-i', '4', '-P', disk])).stdout.trim()).toBe('2');
    const r = await node(['-reset_status', `-socket=${sock}`], 'update_engine_client.js');
    expect(r.code, r.err).toBe(0);
    await waitFor(async () => (await run('cgpt', ['show', '-i', '4', '-P', disk])).stdout.trim() === '0', 10_000, 'B lowered after reset');
    const s2 = await node(['-status', `-socket=${sock}`], 'update_engine_client.js');
    expect(s2.out).toMatch(/CURRENT_OP=UPDATE_STATUS_IDLE/);
    const again = await node(['-reset_status', `-socket=${sock}`], 'update_engine_client.js');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^update_engine_client: error: ResetStatus: no update is waiting/);
    // SIGTERM ends the daemon at once even with a client still watching (systemd must not wait 90 s).
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => d.once('exit', (code) => r(code)));
    d.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    watcher.kill();
  });

  it.skipIf(process.getuid?.() !== 0)('status for every user, actions for root and the update group (skipped unless root: it runs clients as nobody)', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    // A folder every user can enter, as /run/basalt is.
    const dir = await mkdtemp(join(tmpdir(), 'basalt-ue-perm-'));
    await chmod(dir, 0o755);
    const sock = join(dir, 'ue.sock');
    daemon(disk, sock, ['--first-check', '1h']);
    await waitFor(() => stat(statusSocketFor(sock)).then(() => true, () => false), 20_000, 'the daemon sockets');
    // No basalt-update group on this host: the action socket is root's alone; the status socket is everyone's.
    expect((await stat(sock)).mode & 0o777).toBe(0o600);
    expect((await stat(statusSocketFor(sock))).mode & 0o777).toBe(0o666);
    const nobody = (args: string[], bin: string) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(root, 'bin', bin), ...args], { reject: false });
    const st = await nobody(['-status', `-socket=${sock}`], 'update_engine_client.js');
    expect(st.exitCode, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/^LAST_CHECKED_TIME=0\nPROGRESS=0\nCURRENT_OP=UPDATE_STATUS_IDLE\n/);
    const human = await nobody(['update', 'status', '--socket', sock], 'basalt.js');
    expect(human.exitCode, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^State: +idle \(UPDATE_STATUS_IDLE\)\nRunning: +1\.0\.0 on stable, slot A\n/);
    const js = await nobody(['update', 'status', '--json', '--socket', sock], 'basalt.js');
    expect(JSON.parse(js.stdout)).toMatchObject({ status: 'UPDATE_STATUS_IDLE', currentVersion: '1.0.0' });
    for (const [args, bin] of [[['-check_for_update', `-socket=${sock}`], 'update_engine_client.js'], [['update', 'check', '--socket', sock], 'basalt.js'], [['update', 'rollback', '--socket', sock], 'basalt.js']] as const) {
      const r = await nobody([...args], bin);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/needs root or the basalt-update group .*permission denied.*hint: run it with sudo/);
    }
    // The status socket refuses actions even if someone reaches it.
    const direct = await run(process.execPath, ['-e', `const s=require('net').createConnection(${JSON.stringify(statusSocketFor(sock))});s.on('connect',()=>s.write('{"cmd":"check"}\\n'));s.on('data',d=>{process.stdout.write(d);s.destroy()})`]);
    expect(JSON.parse(direct.stdout)).toMatchObject({ ok: false, error: { code: 'E_PERMISSION' } });
    await rm(dir, { recursive: true, force: true });
  });

  it.skipIf(!existsSync('/usr/bin/systemd-socket-activate'))('takes its sockets from systemd (socket activation by name) (skipped without systemd-socket-activate)', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const dir = await mkdtemp(join(tmpdir(), 'basalt-ue-act-'));
    const sock = join(dir, 'ue.sock');
    // The status socket is named first: the daemon must go by the names, not the order.
    const c = spawn(
      'systemd-socket-activate',
      ['-l', statusSocketFor(sock), '-l', sock, '--fdname=status:action', process.execPath, join(root, 'bin/basalt.js'), 'update-engine', '--disk', disk, '--booted-slot', 'A', '--state-dir', `${disk}.state`, '--keyring', keys.pub, '--tuf-root', keys.tuf.root, '--server', `${srv!.url}v1/update/`, '--channel', 'stable', '--board', 'amd64-usr', '--root', join(t.dir, 'none'), '--first-check', '1h'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    procs.push(c);
    await waitFor(() => stat(sock).then(() => true, () => false), 20_000, 'the activation sockets');
    // The first client starts the daemon (systemd-socket-activate execs it on the first connection).
    const st = await node(['-status', `-socket=${sock}`], 'update_engine_client.js');
    expect(st.code, st.err).toBe(0);
    expect(st.out).toMatch(/^LAST_CHECKED_TIME=0\n/);
    const ck = await node(['update', 'check', '--json', '--socket', sock]);
    expect(ck.code, ck.err).toBe(0);
    expect(JSON.parse(ck.out)).toMatchObject({ ok: true });
    c.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  it('checks by itself on its schedule (first check after --first-check) and installs', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const sock = join(t.dir, 'ue2.sock');
    daemon(disk, sock, ['--first-check', '300ms']);
    await waitFor(() => stat(sock).then(() => true, () => false), 20_000, 'the daemon socket');
    await waitFor(async () => (await node(['-status', `-socket=${sock}`], 'update_engine_client.js')).out.includes('UPDATED_NEED_REBOOT'), 60_000, 'the scheduled update');
  });

  it('backs off after 5xx on the check: 45 min doubles to 90, 180, then 240 (cap)', async () => {
    const disk = await makeDisk(t.dir, usr1, '1.0.0');
    const delays: number[] = [];
    const fns: (() => void)[] = [];
    const clock: Clock = {
      now: () => Date.now(),
      setTimeout(fn, ms) {
        delays.push(ms);
        fns.push(fn);
        return { cancel() {} };
      },
    };
    const { env } = await buildEnv(
      { disk, 'booted-slot': 'A', 'state-dir': `${disk}.state`, keyring: keys.pub, 'tuf-root': keys.tuf.root, server: `${srv!.url}v1/update/`, channel: 'stable', root: join(t.dir, 'none') },
      createLogger({ level: 'error', write: () => {} }),
      () => {},
      clock,
    );
    env.rand = () => 0.5;
    const e = new Engine(env);
    await e.start(true);
    expect(delays).toEqual([7 * 60_000]);
    fail500 = true;
    for (let i = 0; i < 4; i++) {
      fns.shift()!();
      await e.idle();
    }
    fail500 = false;
    fns.shift()!();
    await e.idle();
    expect(delays.map((d) => d / 60_000)).toEqual([7, 90, 180, 240, 240, 45]);
    expect(e.lastFailure?.message).toMatch(/500/);
    e.stop();
  });
});

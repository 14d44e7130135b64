/**
 * The promises of Basalt, checked from outside on one machine in QEMU:
 *
 *   1. first boot with a cloud-config (user + ssh key, a unit, a file, the
 *      hostname), ROOT grown, /usr read-only from dm-verity, etcd and docker (socket-activated)
 *      active, slot A marked good and its boot entry blessed;
 *   4. a power cut in the middle of writing an update (a delta from the running
 *      release): the old slot boots and the delta's apply resumes and completes;
 *   2. the update A → B (through that delta) from `basalt serve` on the host, rebooted by the
 *      reboot strategy, B healthy and marked good, A's bytes unchanged;
 *   5. manual rollback: `basalt update rollback`, reboot, the other slot runs
 *      (and back again);
 *   3. automatic rollback: a release whose health gate fails (etcd broken)
 *      boots once, the machine comes back on the previous release by itself,
 *      reports the rollback and does not install the bad release again;
 *   6. PXE: kernel + initramfs with root on tmpfs, /usr from dm-verity, etcd
 *      and docker active, the cloud-config fetched from a URL on the kernel
 *      command line, the update-engine off.
 *
 * The tests run in this order on one disk (each builds on the state the
 * previous one left); a failing promise fails its own test. Every boot prints
 * how long it took from firmware start to the ready line.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeConfigDrive } from '../src/configdrive.js';
import { Vm } from '../src/vm.js';
import { freePort, hashRange, release, releaseKeys, Ssh, TEST_SCHEDULE_UNIT, UpdateServer, variantProfile } from './fleet.js';
import { entryFileName } from '../../common/src/boot.js';
import { buildImage, copyDisk, haveQemu, isRoot, keepLogsIfFailed, parseStatus, part, partitions, vmCacheDir, vmOutDir, type Manifest } from './image.js';

const canRun = isRoot && haveQemu;
// Three image builds and about ten TCG boots (~25 minutes); BASALT_VM_SCENARIOS=0 leaves them out
// (for a quick run of the boot tests alone).
const wanted = process.env['BASALT_VM_SCENARIOS'] !== '0';
const GiB = 1024 ** 3;
const BOOT_MS = 12 * 60_000;
const V1 = '1.0.0';
const V2 = '1.1.0';
const V3 = '1.2.0';

let work: string;
let outs: Record<string, string>;
let manifests: Record<string, Manifest>;
let server: UpdateServer;
let keys: { key: string; pub: string };
let sshKey: { key: string; pub: string };
let sshPort: number;
let ssh: Ssh;
let disk: string;
let vm: Vm | undefined;
let usrAHashBefore: string;

const boots: string[] = [];

/** Starts the VM (again) and waits for the ready line of `slot`/`version`; logs the boot time. */
async function bootAndWait(label: string, slot: string, version: string, from?: number): Promise<void> {
  if (!vm!.running) await vm!.start();
  const ready = await vm!.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, BOOT_MS, { from, what: `basalt-ready (${label})` });
  const line = `[scenario] ${label}: basalt-ready slot=${ready.match[1]} version=${ready.match[2]} ${(ready.atMs / 1000).toFixed(1)} s after firmware start (restarts so far: ${vm!.restarts}, power cycles: ${vm!.cycles})`;
  boots.push(line);
  process.stderr.write(line + '\n');
  expect(`${ready.match[1]} ${ready.match[2]}`).toBe(`${slot} ${version}`);
}

/** Waits for the guest to restart by itself and come up on `slot`/`version`. */
async function rebootAndWait(label: string, slot: string, version: string, mark: number): Promise<void> {
  const reboot = await vm!.waitFor(/reboot: Restarting system|Reached target.*(Reboot|System Reboot)|Rebooting/, BOOT_MS, { from: mark, what: `the reboot (${label})` });
  // The wait resolves as the line arrives: the boot is timed from there, not from the request.
  await readyAfter(label, slot, version, reboot.end, Date.now());
}

/** Waits for the ready line after console offset `from` and checks its slot/version. */
async function readyAfter(label: string, slot: string, version: string, from: number, t0 = Date.now()): Promise<void> {
  const ready = await vm!.waitFor(/basalt-ready slot=(\S+) version=(\S+)\n/, 2 * BOOT_MS, { from, what: `basalt-ready after reboot (${label})` });
  const line = `[scenario] ${label}: basalt-ready slot=${ready.match[1]} version=${ready.match[2]} ${((Date.now() - t0) / 1000).toFixed(1)} s after the reboot began`;
  boots.push(line);
  process.stderr.write(line + '\n');
  expect(`${ready.match[1]} ${ready.match[2]}`).toBe(`${slot} ${version}`);
}

/**
 * REBOOT_STRATEGY=reboot, switched on as a CoreOS user does it: the cloud-config's 'off'
 * (applied again at every boot) masks locksmithd for the boot, as coreos-cloudinit does;
 * unmask it and restart it, and it reboots a machine with an installed update by itself.
 */
async function rebootStrategyOn(): Promise<void> {
  await ssh.exec("sed -i 's/^REBOOT_STRATEGY=.*/REBOOT_STRATEGY=reboot/' /etc/coreos/update.conf && systemctl unmask --runtime locksmithd.service && systemctl restart --no-block locksmithd.service");
}

type EngineStatus = Record<string, string>;

/** Parses the status blocks update_engine_client prints (KEY=VALUE lines); returns the last complete one. */
function lastStatus(text: string): EngineStatus | undefined {
  let cur: EngineStatus = {};
  let last: EngineStatus | undefined;
  for (const l of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(l.trim());
    if (!m) continue;
    if (m[1] === 'LAST_CHECKED_TIME') cur = {};
    cur[m[1]!] = m[2]!;
    if (m[1] === 'NEW_SIZE') last = cur;
  }
  return last;
}

/** Follows update_engine_client -watch_for_updates until `pred` holds for a status. */
async function waitForStatus(pred: (s: EngineStatus) => boolean, timeoutMs: number, what: string): Promise<EngineStatus> {
  let hit: EngineStatus | undefined;
  await ssh
    .stream(
      'update_engine_client -status; update_engine_client -watch_for_updates',
      (out) => {
        const s = lastStatus(out);
        if (s && pred(s)) hit = s;
        return hit !== undefined;
      },
      timeoutMs,
    )
    .catch((e: unknown) => {
      throw new Error(`waiting for ${what}: ${String(e)}`);
    });
  return hit!;
}

function cloudConfig(): string {
  return [
    '#cloud-config',
    'hostname: basalt-vm-1',
    'ssh_authorized_keys:',
    `  - ${sshKey.pub}`,
    'users:',
    '  - name: alice',
    '    groups: [docker]',
    '    ssh_authorized_keys:',
    `      - ${sshKey.pub}`,
    '  - name: root',
    '    ssh_authorized_keys:',
    `      - ${sshKey.pub}`,
    'write_files:',
    '  - path: /etc/basalt-test/hello.txt',
    "    permissions: '0640'",
    '    content: |',
    '      written by cloud-config',
    'coreos:',
    '  update:',
    '    group: stable',
    `    server: ${server.guestUrl}`,
    // Off until scenario 2 turns it on, so that nothing reboots while the test reads the guest.
    "    reboot_strategy: 'off'",
    // etcd runs because the config starts it (CoreOS's rule), named by its etcd2 section.
    '  etcd2:',
    '    name: basalt-vm-1',
    '  units:',
    '    - name: etcd2.service',
    '      command: start',
    '    - name: hello.service',
    '      command: start',
    '      content: |',
    '        [Unit]',
    '        Description=Hello from cloud-config',
    '        [Service]',
    '        Type=oneshot',
    '        RemainAfterExit=yes',
    '        ExecStart=/bin/sh -c "echo hello > /run/hello"',
    // The test decides when to check for updates (update_engine_client -check_for_update);
    // the daemon's own schedule is pushed out so that it cannot race the scenarios.
    ...TEST_SCHEDULE_UNIT,
    '',
  ].join('\n');
}

describe.skipIf(!canRun || !wanted)('scenarios (skipped when not root, without qemu-system-x86 and ovmf, or with BASALT_VM_SCENARIOS=0)', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'basalt-scenarios-'));
    keys = await releaseKeys(vmCacheDir);
    sshKey = await Ssh.keypair(work);
    const v3Broken = { '/usr/lib/systemd/system/etcd.service.d/90-broken-release.conf': '[Service]\nExecStart=\nExecStart=/bin/false\n' };
    outs = {};
    manifests = {};
    // v1 boots from its disk and over PXE; v2 and v3 are only released (usr.img).
    const variants = [
      [V1, undefined, ['raw', 'pxe']],
      [V2, undefined, ['raw']],
      [V3, v3Broken, ['raw']],
    ] as const;
    for (const [v, files, outputs] of variants) {
      const profile = await variantProfile(join(work, 'profiles'), { version: v, keys: [keys.pub], files, outputs: [...outputs] });
      outs[v] = vmOutDir(v);
      manifests[v] = await buildImage(outs[v], ['--profile', profile]);
    }
    server = new UpdateServer(join(work, 'repo'));
    await server.start();
    sshPort = await freePort();
    ssh = new Ssh(sshPort, sshKey.key);
    disk = await copyDisk(outs[V1]!, manifests[V1]!, join(work, 'disk.raw'), 2 * GiB);
    await mkdir(join(work, 'vm'), { recursive: true });
    const cd = await makeConfigDrive(join(work, 'config-2.iso'), cloudConfig());
    vm = new Vm({ workdir: join(work, 'vm'), disk, diskMode: 'direct', configDrive: cd, hostfwd: [{ host: sshPort, guest: 22 }] });
  }, 90 * 60_000);

  afterAll(async ({}, suite) => {
    await vm?.dispose();
    // Unset when beforeAll failed before starting it.
    await (server as UpdateServer | undefined)?.stop();
    process.stderr.write(`[scenario] boot times:\n${boots.join('\n')}\n`);
    await keepLogsIfFailed(suite, work, 'scenarios');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('1. first boot: ROOT grows, the cloud-config is applied, etcd and docker run, slot A is marked good', async () => {
    const parts0 = await partitions(disk);
    const usrA = part(parts0, 'USR-A');
    usrAHashBefore = await hashRange(disk, usrA.offset, usrA.length);
    const rootBefore = part(parts0, 'ROOT').length;
    await bootAndWait('first boot', 'A', V1);
    await ssh.waitUp(5 * 60_000);
    expect((await ssh.exec('hostname')).trim()).toBe('basalt-vm-1');
    expect((await ssh.exec('id -nG', 'alice')).split(/\s+/)).toContain('docker');
    expect((await ssh.exec('cat /etc/basalt-test/hello.txt')).trim()).toBe('written by cloud-config');
    expect((await ssh.exec('stat -c %a /etc/basalt-test/hello.txt')).trim()).toBe('640');
    expect((await ssh.exec('systemctl is-active hello.service; cat /run/hello')).split('\n').slice(0, 2)).toEqual(['active', 'hello']);
    // docker is socket-activated: the first client (alice, in the docker group) starts dockerd.
    expect((await ssh.exec('systemctl is-active etcd.service docker.socket')).trim().split('\n')).toEqual(['active', 'active']);
    // The first start of etcd already had the cloud-config's settings: the member carries its name.
    expect(await ssh.exec('etcdctl member list')).toMatch(/, started, basalt-vm-1, /);
    expect((await ssh.exec("docker version --format '{{.Server.Version}}'", 'alice')).trim()).toMatch(/^\d+\.\d+/);
    expect((await ssh.exec('systemctl is-active docker.service containerd.service')).trim().split('\n')).toEqual(['active', 'active']);
    const conf = await ssh.exec('cat /etc/coreos/update.conf');
    expect(conf).toMatch(new RegExp(`SERVER=${server.guestUrl.replace(/[.:/]/g, '\\$&')}`));
    expect(conf).toMatch(/^REBOOT_STRATEGY=off$/m);
    const rootNow = Number((await ssh.exec('blockdev --getsize64 /dev/disk/by-partlabel/ROOT')).trim());
    // The disk was grown by 2 GiB: ROOT (the last partition) takes all of it but the
    // 1 MiB alignment at its end and the backup GPT.
    expect(rootNow).toBeGreaterThanOrEqual(rootBefore + 2 * GiB - 2 * 1024 * 1024);
    const rootFs = Number((await ssh.exec('df -B1 --output=size / | tail -n1')).trim());
    expect(rootFs).toBeGreaterThan(rootBefore);
    // /usr is the read-only verity device; the boot entry was blessed (no tries counter left).
    expect((await ssh.exec('findmnt -no SOURCE,OPTIONS /usr')).trim()).toMatch(/^\/dev\/mapper\/usr ro,/);
    expect((await ssh.exec('veritysetup status usr')).trim()).toMatch(/status:\s+verified/);
    expect((await ssh.exec('ls /efi/loader/entries 2>/dev/null || ls /boot/loader/entries')).trim().split('\n')).toEqual([entryFileName('a')]);
    // The GPT on the host side: USR-A successful and first.
    const parts = await partitions(disk);
    expect(part(parts, 'USR-A').slot).toMatchObject({ successful: true, tries: 0 });
    expect(part(parts, 'USR-A').slot!.priority).toBeGreaterThan(part(parts, 'USR-B').slot!.priority);
  });

  it('4. power cut while the update is being written: the old slot boots, the update resumes and completes', async () => {
    // v2 is published with a delta from v1 (v1's release first: a delta is made from a released version);
    // the machine, running v1, takes the delta: the cut falls in the middle of a delta's apply.
    await release(join(outs[V1]!, 'usr.img'), V1, keys, server.repo);
    await release(join(outs[V2]!, 'usr.img'), V2, keys, server.repo, 'stable', [V1]);
    await ssh.exec('update_engine_client -check_for_update');
    await server.waitForEvent((e) => e.kind === 'updatecheck' && e.delta === V1, 5 * 60_000, 'the delta from v1 to be offered');
    const st = await waitForStatus((s) => s['CURRENT_OP'] === 'UPDATE_STATUS_DOWNLOADING' && Number(s['PROGRESS']) >= 0.15, 20 * 60_000, 'the download to reach 15 %');
    process.stderr.write(`[scenario] power cut at progress ${st['PROGRESS']}\n`);
    await vm!.powerCut();
    let parts = await partitions(disk);
    expect(part(parts, 'USR-A').slot!.priority).toBeGreaterThan(part(parts, 'USR-B').slot!.priority);
    const mark = vm!.console.mark();
    await bootAndWait('after the power cut', 'A', V1, mark);
    await ssh.waitUp(5 * 60_000);
    await ssh.exec('update_engine_client -check_for_update');
    const done = await waitForStatus((s) => s['CURRENT_OP'] === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' || s['CURRENT_OP'] === 'UPDATE_STATUS_REPORTING_ERROR_EVENT', 30 * 60_000, 'the resumed update to finish');
    expect(done['CURRENT_OP']).toBe('UPDATE_STATUS_UPDATED_NEED_REBOOT');
    expect(done['NEW_VERSION']).toBe(V2);
    const journal = await ssh.exec('journalctl -b -u update-engine.service --no-pager -o cat');
    expect(journal).toMatch(/resum/i);
    // Resumed through the same delta: no fallback to the full payload was needed.
    expect(journal).not.toMatch(/taking the full payload/);
    const offers = (await server.events()).filter((e) => e.kind === 'updatecheck' && e.answer === 'ok').map((e) => e.delta);
    expect(offers.length).toBeGreaterThanOrEqual(2);
    expect(offers.every((d) => d === V1), `every offer a delta from ${V1}: ${offers.join(' ')}`).toBe(true);
    parts = await partitions(disk);
    expect(part(parts, 'USR-B').slot).toMatchObject({ tries: 1, successful: false });
  });

  it('2. update A → B: rebooted by the strategy, B passes the health gate and is marked good, A is unchanged', async () => {
    const mark = vm!.console.mark();
    await rebootStrategyOn();
    await rebootAndWait('update to B', 'B', V2, mark);
    await ssh.waitUp(5 * 60_000);
    const parts = await partitions(disk);
    expect(part(parts, 'USR-B').slot).toMatchObject({ successful: true, tries: 0 });
    expect(part(parts, 'USR-B').slot!.priority).toBeGreaterThan(part(parts, 'USR-A').slot!.priority);
    const usrA = part(parts, 'USR-A');
    expect(await hashRange(disk, usrA.offset, usrA.length)).toBe(usrAHashBefore);
    const usrB = part(parts, 'USR-B');
    const v2 = manifests[V2]!.usr;
    expect(await hashRange(disk, usrB.offset, v2.bytes)).toBe(v2.sha256);
    expect((await ssh.exec('. /usr/lib/os-release; echo $VERSION_ID')).trim()).toBe(V2);
    // The first check after the update carries event 3/2 with the previous version (as update_engine's).
    await ssh.exec('update_engine_client -check_for_update');
    const ev = await server.waitForEvent((e) => e.eventType === 3 && e.eventResult === 2 && e.version === V2, 10 * 60_000, 'the post-update 3/2 event from B');
    expect(ev.previousVersion).toBe(V1);
  });

  it('5. manual rollback: basalt update rollback, reboot, the other slot runs (and back again)', async () => {
    await ssh.exec('basalt update rollback');
    let mark = vm!.console.mark();
    await ssh.exec('systemctl reboot').catch(() => {});
    await rebootAndWait('manual rollback to A', 'A', V1, mark);
    await ssh.waitUp(5 * 60_000);
    await ssh.exec('basalt update rollback');
    mark = vm!.console.mark();
    await ssh.exec('systemctl reboot').catch(() => {});
    await rebootAndWait('manual rollback back to B', 'B', V2, mark);
    await ssh.waitUp(5 * 60_000);
  });

  it('3. automatic rollback: a release with a failing health gate boots once, the machine returns to the previous release and does not retry it', async () => {
    await release(join(outs[V3]!, 'usr.img'), V3, keys, server.repo);
    const mark = vm!.console.mark();
    await ssh.exec('update_engine_client -check_for_update');
    // Installed (event 3/1 from the running v2); the strategy then reboots into A by itself.
    await server.waitForEvent((e) => e.eventType === 3 && e.eventResult === 1 && e.version === V2, 30 * 60_000, 'v3 to be installed (event 3/1)');
    const installed = await waitForStatus((s) => s['CURRENT_OP'] === 'UPDATE_STATUS_UPDATED_NEED_REBOOT', 5 * 60_000, 'the engine to say v3 needs a reboot');
    expect(installed['NEW_VERSION']).toBe(V3);
    await rebootStrategyOn();
    // locksmithd reboots the machine; if it does not, say what it and the engine logged.
    const down = await vm!.waitFor(/reboot: Restarting system|Reached target.*(Reboot|System Reboot)|Rebooting/, BOOT_MS, { from: mark, what: 'the reboot into v3 by locksmithd' }).catch(async (e: unknown) => {
      const logs = await ssh.exec('journalctl -b -u locksmithd.service -u update-engine.service --no-pager -o short-monotonic | tail -n 60', 'root', 60_000).catch((x: unknown) => String(x));
      throw new Error(`${(e as Error).message}\n--- locksmithd and update-engine ---\n${logs}`);
    });
    // The v3 boot attempt: A's kernel starts, etcd fails, the health gate fails, the machine reboots.
    const attempt = await vm!.waitFor(/Command line:.*basalt\.slot=([AB])\b/, BOOT_MS, { from: down.end, what: 'the boot attempt of v3 in slot A' });
    expect(attempt.match[1], 'the boot after installing v3 into A must try A').toBe('A');
    const t0 = Date.now();
    // A ready line first means v3 was blessed: fail at once instead of waiting for a reboot that does not come.
    const reboot = await vm!.waitFor(/reboot: Restarting system|basalt-ready slot=\S+ version=\S+\n/, BOOT_MS, { from: attempt.end, what: 'the reboot after the failed health gate of v3' });
    expect(reboot.match[0], 'the trial boot of v3 must not reach the ready line').toBe('reboot: Restarting system');
    const trial = `[scenario] trial boot of v3 in A: no ready line, restarted by the failed health gate ${((Date.now() - t0) / 1000).toFixed(1)} s after its kernel started`;
    boots.push(trial);
    process.stderr.write(trial + '\n');
    await readyAfter('automatic rollback to B', 'B', V2, reboot.end, t0);
    await ssh.waitUp(5 * 60_000);
    const rollback = await server.waitForEvent((e) => e.eventType === 3 && e.eventResult === 0 && e.errorCode !== null, 10 * 60_000, 'the rollback report');
    expect(rollback.version).toBe(V2);
    let parts = await partitions(disk);
    expect(part(parts, 'USR-B').slot!.priority).toBeGreaterThan(part(parts, 'USR-A').slot!.priority);
    // Not again: a new check finds v3 and leaves it alone.
    const before = (await server.events()).length;
    await ssh.exec('update_engine_client -check_for_update');
    // The first status after the check answered: IDLE when v3 is refused; UPDATE_AVAILABLE or
    // DOWNLOADING (a retry) fails here at once instead of waiting for a download to end.
    const settled = await waitForStatus((s) => Number(s['LAST_CHECKED_TIME']) > 0 && s['CURRENT_OP'] !== 'UPDATE_STATUS_CHECKING_FOR_UPDATE', 10 * 60_000, 'the check to be answered');
    expect(settled['CURRENT_OP']).toBe('UPDATE_STATUS_IDLE');
    const after = (await server.events()).slice(before);
    expect(after.some((e) => e.eventType === 13)).toBe(false);
    parts = await partitions(disk);
    expect(part(parts, 'USR-A').slot!.tries).toBe(0);
    expect(part(parts, 'USR-A').slot!.successful).toBe(false);
  });

  it('6. PXE: root on tmpfs, the cloud-config from a URL on the kernel command line, the update-engine off', async () => {
    await vm?.dispose();
    vm = undefined;
    const out = outs[V1]!;
    const m = manifests[V1]!;
    const file = (kind: string) => join(out, m.artifacts.find((a) => a.kind === kind)!.file);
    await writeFile(join(server.repo, 'pxe-cloud-config.yml'), ['#cloud-config', 'hostname: basalt-pxe-1', 'users:', '  - name: root', '    ssh_authorized_keys:', `      - ${sshKey.pub}`, 'coreos:', '  units:', '    - name: etcd2.service', '      command: start', ''].join('\n'));
    const append = `${(await readFile(file('pxe-cmdline'), 'utf8')).trim()} cloud-config-url=http://10.0.2.2:${server.port}/pxe-cloud-config.yml`;
    const port = await freePort();
    const pxe = new Vm({ workdir: join(work, 'vm-pxe'), kernel: file('pxe-kernel'), initrd: file('pxe-initramfs'), append, bios: true, memoryMiB: 3072, hostfwd: [{ host: port, guest: 22 }] });
    vm = pxe;
    await mkdir(join(work, 'vm-pxe'), { recursive: true });
    await bootAndWait('PXE', 'PXE', V1);
    const st = parseStatus(/basalt-status [^\n]+/.exec(vm.console.output)![0]);
    expect([st['usr-source'], st['usr-options']?.split(',')[0], st['verity'], st['etcd'], st['docker-socket']]).toEqual(['/dev/mapper/usr', 'ro', 'verified', 'active', 'active']);
    const s = new Ssh(port, sshKey.key);
    await s.waitUp(5 * 60_000);
    expect((await s.exec('hostname')).trim()).toBe('basalt-pxe-1');
    expect((await s.exec('findmnt -no FSTYPE /')).trim()).toBe('tmpfs');
    expect((await s.exec('systemctl is-active update-engine.service || true')).trim()).not.toBe('active');
    expect((await s.exec('systemctl show -p ConditionResult update-engine.service locksmithd.service')).split('\n').filter(Boolean)).toEqual(['ConditionResult=no', 'ConditionResult=no']);
  });
});

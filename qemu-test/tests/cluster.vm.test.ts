/**
 * A cluster, not a node: machines booted from one image, each with its own
 * config drive, form an etcd cluster from their cloud-configs on the first
 * boot and take an update one machine at a time under the etcd reboot lock.
 *
 *   1. static: three members with a static `initial-cluster`; from the host,
 *      `etcdctl member list` names node1..node3 and every endpoint is healthy;
 *      then v2 rolls through them with REBOOT_STRATEGY=etcd-lock (node3 with a
 *      reboot window that is closed until the test opens it): never more than
 *      one machine down, quorum kept, a key written before is read after, all
 *      on v2, USR-A's bytes unchanged.
 *   2. discovery: three members bootstrap through a discovery URL served by an
 *      etcd v2 keys API on the host, plus a worker (no etcd) that takes the
 *      cluster's lock through configured endpoints; a holder powered off
 *      mid-reboot never returns: `locksmithctl status` shows it STALE and, with
 *      the semaphore's expiry set, the next machine takes the lock.
 *
 * The machines reach each other only through the host's loopback. Each boot's
 * time and, for each moment of the rolling update, how many machines were down
 * are printed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd } from '../../update-engine/test/helpers.js';
import { SEMAPHORE_KEY } from '../../update-engine/src/locksmith/locksmith.js';
import { hashRange, release, releaseKeys, Ssh, UpdateServer, variantProfile } from './fleet.js';
import { buildImage, haveQemu, isRoot, keepLogsIfFailed, part, partitions, vmCacheDir, vmOutDir, type Manifest } from './image.js';
import { ClusterObserver, etcdctl, hostClient, HOST, makeNode, memberCloudConfig, memberNames, nodePorts, peerUrl, READY, type ClusterNode } from './cluster.js';

const canRun = isRoot && haveQemu;
// Runs in CI (~15 min here: static 9.6 min, discovery 4.6 min); BASALT_VM_CLUSTER=0 leaves it out of a local run.
const wanted = process.env['BASALT_VM_CLUSTER'] !== '0';
// The same variants as the scenarios (so their builds are shared through the stage cache).
const V1 = '1.0.0';
const V2 = '1.1.0';
const BOOT_MS = 20 * 60_000;

let work: string;
let outs: Record<string, string>;
let manifests: Record<string, Manifest>;
let server: UpdateServer;
let sshKey: { key: string; pub: string };
const boots: string[] = [];
const all: ClusterNode[] = [];

function note(line: string): void {
  boots.push(line);
  process.stderr.write(line + '\n');
}

/** Starts the machines together and waits for each one's ready line; returns them with their ids. */
async function bootAll(nodes: ClusterNode[], label: string): Promise<void> {
  await Promise.all(nodes.map((n) => n.vm.start()));
  await Promise.all(
    nodes.map(async (n) => {
      const r = await n.vm.waitFor(READY, BOOT_MS, { what: `basalt-ready of ${n.name} (${label})` });
      note(`[cluster] ${label}: ${n.name} basalt-ready slot=${r.match[1]} version=${r.match[2]} ${(r.atMs / 1000).toFixed(1)} s after firmware start`);
      expect(`${r.match[1]} ${r.match[2]}`).toBe(`A ${V1}`);
      await n.ssh.waitUp(5 * 60_000);
      n.id = (await n.ssh.exec('cat /etc/machine-id')).trim();
    }),
  );
}

/** The cluster's health, from the host and from inside every member. */
async function checkFormed(nodes: ClusterNode[]): Promise<void> {
  const eps = nodes.map(hostClient);
  expect(memberNames(await etcdctl(eps, ['member', 'list']))).toEqual(nodes.map((n) => n.name).sort());
  const health = await etcdctl(eps, ['endpoint', 'health']);
  expect(health.match(/is healthy/g)?.length, health).toBe(nodes.length);
  // --cluster reaches every member at its advertised client URL, which only the guests can resolve.
  for (const n of nodes) {
    const h = await n.ssh.exec('etcdctl endpoint health --cluster 2>&1');
    expect(h.match(/is healthy/g)?.length, `${n.name}: ${h}`).toBe(nodes.length);
  }
}

describe.skipIf(!canRun || !wanted)('cluster (skipped with BASALT_VM_CLUSTER=0, and when not root or without qemu-system-x86 and ovmf)', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'basalt-cluster-'));
    const keys = await releaseKeys(vmCacheDir);
    sshKey = await Ssh.keypair(work);
    outs = {};
    manifests = {};
    for (const [v, outputs] of [
      [V1, ['raw', 'pxe']],
      [V2, ['raw']],
    ] as const) {
      const profile = await variantProfile(join(work, 'profiles'), { version: v, keys: [keys.pub], outputs: [...outputs] });
      outs[v] = vmOutDir(v);
      manifests[v] = await buildImage(outs[v], ['--profile', profile]);
    }
    server = new UpdateServer(join(work, 'repo'));
    await server.start();
    await release(join(outs[V2]!, 'usr.img'), V2, keys, server.repo);
  }, 90 * 60_000);

  afterAll(async ({}, suite) => {
    await Promise.all(all.map((n) => n.vm.dispose()));
    // Unset when beforeAll failed before starting it.
    await (server as UpdateServer | undefined)?.stop();
    process.stderr.write(`[cluster] boot times:\n${boots.join('\n')}\n`);
    await keepLogsIfFailed(suite, work, 'cluster');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('1. static: three members form the cluster on the first boot, then v2 rolls through them one machine at a time', async () => {
    const names = ['node1', 'node2', 'node3'];
    const ports = await Promise.all(names.map(() => nodePorts()));
    const initialCluster = names.map((n, i) => `${n}=${peerUrl(ports[i]!)}`).join(',');
    // node3's reboot window is closed until the test opens it (it must wait, and say so).
    const closed = new Date(Date.now() + 12 * 3600_000);
    const hhmm = (d: Date) => `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
    const nodes = await Promise.all(
      names.map((name, i) =>
        makeNode(work, outs[V1]!, manifests[V1]!, name, ports[i]!, memberCloudConfig({ name, ports: ports[i]!, sshPub: sshKey.pub, updateServer: server.guestUrl, initialCluster, rebootStrategy: 'etcd-lock', ...(name === 'node3' ? { window: { start: hhmm(closed), length: '1h' } } : {}) }), sshKey.key),
      ),
    );
    all.push(...nodes);
    await bootAll(nodes, 'static cluster, first boot');
    await checkFormed(nodes);
    // etcd ran with the cloud-config's settings from its very first start.
    for (const n of nodes) expect(await n.ssh.exec('systemctl show -p NRestarts --value etcd.service')).toBe('0\n');

    const eps = nodes.map(hostClient);
    await etcdctl(eps, ['put', 'basalt/cluster-test', 'written before the update']);
    const membersBefore = await etcdctl(eps, ['member', 'list']);
    const usrA: Record<string, string> = {};
    for (const n of nodes) {
      const a = part(await partitions(n.disk), 'USR-A');
      usrA[n.name] = await hashRange(n.disk, a.offset, a.length);
    }

    const observer = new ClusterObserver(nodes, SEMAPHORE_KEY);
    observer.start();
    const marks = new Map(nodes.map((n) => [n.name, n.vm.console.mark()]));
    try {
      // Every machine finds v2 at once; locksmithd reboots them one at a time.
      await Promise.all(nodes.map((n) => n.ssh.exec('update_engine_client -check_for_update')));
      const node3 = nodes[2]!;
      // node3 installs v2 and waits for its window; the others go first.
      await node3.ssh.stream('update_engine_client -status; update_engine_client -watch_for_updates', (o) => o.includes('CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT'), 30 * 60_000);
      const waiting = await waitForOutput(nodes[0]!, 'locksmithctl status', (o) => o.includes(node3.id!) && o.includes('window'), 30 * 60_000);
      note(`[cluster] node1 sees node3 wait for its window:\n${waiting}`);
      const order: string[] = [];
      await Promise.all(
        nodes.slice(0, 2).map(async (n) => {
          const r = await n.vm.waitFor(READY, 2 * BOOT_MS, { from: marks.get(n.name), what: `${n.name} on v2` });
          order.push(n.name);
          note(`[cluster] rolling update: ${n.name} basalt-ready slot=${r.match[1]} version=${r.match[2]} ${(r.atMs / 1000).toFixed(1)} s after its firmware started again`);
          expect(`${r.match[1]} ${r.match[2]}`).toBe(`B ${V2}`);
        }),
      );
      // node3 has not moved: its window is still closed.
      expect(node3.vm.console.output.slice(marks.get('node3'))).not.toMatch(READY);
      // Open it, as an operator would (a runtime drop-in), and node3 goes.
      const now = new Date(Date.now() - 60_000);
      await node3.ssh.exec(
        `mkdir -p /run/systemd/system/locksmithd.service.d && printf '[Service]\\nEnvironment=REBOOT_WINDOW_START=${hhmm(now)}\\nEnvironment=REBOOT_WINDOW_LENGTH=2h\\n' > /run/systemd/system/locksmithd.service.d/60-test-window.conf && systemctl daemon-reload && systemctl restart --no-block locksmithd.service`,
      );
      const r3 = await node3.vm.waitFor(READY, 2 * BOOT_MS, { from: marks.get('node3'), what: 'node3 on v2' });
      note(`[cluster] rolling update: node3 basalt-ready slot=${r3.match[1]} version=${r3.match[2]} ${(r3.atMs / 1000).toFixed(1)} s after its firmware started again`);
      expect(`${r3.match[1]} ${r3.match[2]}`).toBe(`B ${V2}`);
      // The last holder releases the lock once its gate passed.
      await waitForOutput(nodes[0]!, 'locksmithctl status', (o) => /^Available: 1$/m.test(o), 10 * 60_000);
    } finally {
      await observer.stop();
      process.stderr.write(`[cluster] rolling update, machines down over time:\n${observer.timeline().join('\n')}\n`);
    }
    expect(observer.maxDown()).toBeLessThanOrEqual(1);
    expect(Math.max(...observer.samples.map((s) => s.holders.filter((h) => h !== '?').length))).toBeLessThanOrEqual(1);
    // Every machine was down at some point (each rebooted) and quorum was never lost.
    for (const n of nodes) expect(observer.samples.some((s) => s.down.includes(n.name)), `${n.name} never went down`).toBe(true);
    expect((await etcdctl(eps, ['get', '--print-value-only', 'basalt/cluster-test'])).trim()).toBe('written before the update');
    await checkFormed(nodes);
    // The same cloud-config applied again at every boot re-initialised no member (same ids).
    expect(await etcdctl(eps, ['member', 'list'])).toBe(membersBefore);
    for (const n of nodes) {
      expect((await n.ssh.exec('. /usr/lib/os-release; echo $VERSION_ID')).trim()).toBe(V2);
      await n.vm.dispose();
      const parts = await partitions(n.disk);
      const a = part(parts, 'USR-A');
      expect(await hashRange(n.disk, a.offset, a.length), `${n.name}: USR-A changed`).toBe(usrA[n.name]);
      expect(part(parts, 'USR-B').slot).toMatchObject({ successful: true });
    }
  });

  it('2. discovery: three members bootstrap through a discovery URL; a worker takes the lock; a holder that never returns goes stale and expires', async () => {
    const disco = await startEtcd(join(work, 'discovery'), ['--enable-v2']);
    try {
      const token = `basalt-${Date.now()}`;
      const size = await fetch(`${disco.url}/v2/keys/discovery/${token}/_config/size`, { method: 'PUT', body: new URLSearchParams({ value: '3' }), signal: AbortSignal.timeout(10_000) });
      expect(size.status).toBe(201);
      const discovery = `http://${HOST}:${new URL(disco.url).port}/v2/keys/discovery/${token}`;
      const names = ['disco1', 'disco2', 'disco3'];
      const ports = await Promise.all([...names, 'worker'].map(() => nodePorts()));
      const members = await Promise.all(names.map((name, i) => makeNode(work, outs[V1]!, manifests[V1]!, name, ports[i]!, memberCloudConfig({ name, ports: ports[i]!, sshPub: sshKey.pub, updateServer: server.guestUrl, discovery, rebootStrategy: 'etcd-lock' }), sshKey.key)));
      const endpoints = members.map((m) => `http://${HOST}:${m.ports.client}`);
      const worker = await makeNode(work, outs[V1]!, manifests[V1]!, 'worker', ports[3]!, memberCloudConfig({ name: 'worker', ports: ports[3]!, sshPub: sshKey.pub, updateServer: server.guestUrl, worker: { endpoints }, rebootStrategy: 'etcd-lock' }), sshKey.key);
      all.push(...members, worker);
      await bootAll([...members, worker], 'discovery cluster, first boot');
      // How often each member's discovery had to back off (it waits for the network first).
      for (const m of members) note(`[cluster] ${m.name}: etcd discovery retries: ${(await m.ssh.exec("journalctl -b -u etcd.service --no-pager -o cat | grep -ci 'retry' || true")).trim()}`);
      await checkFormed(members);
      expect((await worker.ssh.exec('systemctl is-active etcd.service || true')).trim()).toBe('inactive');

      // A holder powered off in the middle of its reboot, never to return.
      const ghost = members[2]!;
      await ghost.ssh.exec('locksmithctl lock');
      const mark = ghost.vm.console.mark();
      await ghost.ssh.exec('systemctl reboot').catch(() => {});
      await ghost.vm.waitFor(/reboot: Restarting system|Reached target.*(Reboot|System Reboot)|Rebooting/, 10 * 60_000, { from: mark, what: 'the reboot of the holder' });
      await ghost.vm.powerCut();
      // The worker reads the cluster's lock through its configured endpoints: the holder is there.
      const env = `LOCKSMITHCTL_ENDPOINT=${endpoints.slice(0, 2).join(',')}`;
      const held = await worker.ssh.exec(`${env} locksmithctl status`);
      expect(held).toMatch(/^Available: 0$/m);
      expect(held).toContain(ghost.id!);
      // The worker cannot take it while it is held and has no expiry.
      expect(await worker.ssh.exec(`${env} locksmithctl lock 2>&1; echo rc=$?`)).toMatch(/rc=[1-9]/);
      // Let holders expire after 30 s; the status shows the holder as stale, and the worker proceeds.
      await members[0]!.ssh.exec('locksmithctl set-expire 30s');
      const stale = await waitForOutput(worker, `${env} locksmithctl status`, (o) => o.includes('STALE'), 5 * 60_000);
      note(`[cluster] a holder that never returned:\n${stale}`);
      expect(stale).toContain(ghost.id!);
      await worker.ssh.exec(`${env} locksmithctl lock`);
      const after = await worker.ssh.exec(`${env} locksmithctl status`);
      expect(after).toContain(worker.id!);
      expect(after).not.toContain(ghost.id!);
      // unlock ID, as in CoreOS.
      await members[0]!.ssh.exec(`locksmithctl unlock ${worker.id!}`);
      expect(await members[0]!.ssh.exec('locksmithctl status')).toMatch(/^Available: 1$/m);
      // Two of three members keep quorum: a key written now is read back.
      const live = members.slice(0, 2).map(hostClient);
      await etcdctl(live, ['put', 'basalt/after-stale', 'ok']);
      expect((await etcdctl(live, ['get', '--print-value-only', 'basalt/after-stale'])).trim()).toBe('ok');
    } finally {
      await disco.stop();
    }
  });
});

/** Runs `command` on `n` until its output satisfies `pred` (each run bounded; the whole wait has a deadline). */
async function waitForOutput(n: ClusterNode, command: string, pred: (o: string) => boolean, timeoutMs: number): Promise<string> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    last = await n.ssh.exec(`${command} 2>&1 || true`, 'root', 60_000).catch((e: unknown) => String(e));
    // Each ssh round trip takes a second or more under TCG: that paces the loop.
    if (pred(last)) return last;
  }
  throw new Error(`${n.name}: '${command}' did not give the expected output within ${timeoutMs / 1000} s; last:\n${last}`);
}

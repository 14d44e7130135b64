/**
 * Helpers for the cluster tests: several machines booted from one image, each
 * with its own config drive, that reach each other only through the host's
 * loopback (QEMU user networking: a guest sees the host as 10.0.2.2, and a host
 * forward per guest and port brings 127.0.0.1:PORT to that guest). Black box:
 * the machines are observed from the host through their forwarded etcd client
 * ports and ssh.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../common/src/exec.js';
import { makeConfigDrive } from '../src/configdrive.js';
import { Vm } from '../src/vm.js';
import { freePort, Ssh, TEST_SCHEDULE_UNIT } from './fleet.js';
import { copyDisk, type Manifest } from './image.js';

/** The host as the guests see it (QEMU user networking). */
export const HOST = '10.0.2.2';

export interface NodePorts {
  ssh: number;
  /** Host port forwarded to the guest's etcd peer port 2380. */
  peer: number;
  /** Host port forwarded to the guest's etcd client port 2379. */
  client: number;
}

export interface ClusterNode {
  name: string;
  ports: NodePorts;
  disk: string;
  vm: Vm;
  ssh: Ssh;
  /** /etc/machine-id, read once the machine is up (the reboot lock's holder id). */
  id?: string;
}

export async function nodePorts(): Promise<NodePorts> {
  return { ssh: await freePort(), peer: await freePort(), client: await freePort() };
}

/** The peer URL of a member as every other member reaches it (through the host). */
export const peerUrl = (p: NodePorts) => `http://${HOST}:${p.peer}`;
export const clientUrl = (p: NodePorts) => `http://${HOST}:${p.client}`;

export interface MemberConfig {
  name: string;
  ports: NodePorts;
  sshPub: string;
  /** Omaha URL of `basalt serve` as the guest sees it. */
  updateServer: string;
  /** Static bootstrap: `name=peerURL,...` of every member. */
  initialCluster?: string;
  /** Bootstrap through a discovery URL instead. */
  discovery?: string;
  /** Not an etcd member: takes the lock through these endpoints. */
  worker?: { endpoints: string[] };
  rebootStrategy: 'etcd-lock' | 'reboot' | 'off';
  window?: { start: string; length: string };
}

/** A CoreOS cluster cloud-config, written as a CoreOS user writes one (etcd2 keys with dashes). */
export function memberCloudConfig(c: MemberConfig): string {
  const l: string[] = ['#cloud-config', `hostname: ${c.name}`, 'ssh_authorized_keys:', `  - ${c.sshPub}`, 'users:', '  - name: root', '    ssh_authorized_keys:', `      - ${c.sshPub}`, 'coreos:'];
  if (!c.worker) {
    l.push(
      '  etcd2:',
      `    name: ${c.name}`,
      `    initial-advertise-peer-urls: ${peerUrl(c.ports)}`,
      '    listen-peer-urls: http://0.0.0.0:2380',
      '    listen-client-urls: http://0.0.0.0:2379',
      `    advertise-client-urls: ${clientUrl(c.ports)}`,
      '    heartbeat-interval: 250',
      '    election-timeout: 5000',
    );
    if (c.discovery) l.push(`    discovery: ${c.discovery}`);
    else l.push(`    initial-cluster: ${c.initialCluster}`, '    initial-cluster-state: new', '    initial-cluster-token: basalt-cluster-test');
  }
  l.push('  update:', '    group: stable', `    server: ${c.updateServer}`, `    reboot-strategy: ${c.rebootStrategy}`);
  if (c.worker || c.window) {
    l.push('  locksmith:');
    if (c.worker) l.push(`    endpoint: ${c.worker.endpoints.join(',')}`);
    if (c.window) l.push(`    window-start: '${c.window.start}'`, `    window-length: ${c.window.length}`);
  }
  l.push('  units:');
  if (!c.worker) l.push('    - name: etcd2.service', '      command: start');
  // The test decides when to check for updates; the daemon's own schedule is pushed out.
  l.push(...TEST_SCHEDULE_UNIT, '');
  return l.join('\n');
}

/** Creates a machine: its own sparse copy of the disk, config drive, ports; not started. */
export async function makeNode(work: string, outDir: string, m: Manifest, name: string, ports: NodePorts, cloudConfig: string, sshKey: string): Promise<ClusterNode> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  const disk = await copyDisk(outDir, m, join(dir, 'disk.raw'), 1024 ** 3);
  const cd = await makeConfigDrive(join(dir, 'config-2.iso'), cloudConfig);
  const hostfwd = [
    { host: ports.ssh, guest: 22 },
    { host: ports.peer, guest: 2380 },
    { host: ports.client, guest: 2379 },
  ];
  // One vCPU each: three or four emulated machines share this host's two cores.
  const vm = new Vm({ workdir: join(dir, 'vm'), disk, diskMode: 'direct', configDrive: cd, hostfwd, cpus: 1, memoryMiB: 1536 });
  return { name, ports, disk, vm, ssh: new Ssh(ports.ssh, sshKey) };
}

/** `etcdctl` on the host against the given client endpoints (127.0.0.1 forwards). */
export async function etcdctl(endpoints: string[], args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run('etcdctl', [`--endpoints=${endpoints.join(',')}`, '--command-timeout=20s', '--dial-timeout=10s', ...args], { reject: false, timeoutMs, env: { ...process.env, ETCDCTL_API: '3' } });
  if (r.exitCode !== 0) throw new Error(`etcdctl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.trim()} ${r.stdout.trim()}`);
  // `endpoint health` reports on stderr.
  return args[0] === 'endpoint' ? `${r.stdout}${r.stderr}` : r.stdout;
}

export const hostClient = (n: ClusterNode) => `http://127.0.0.1:${n.ports.client}`;

/** Names of the members `etcdctl member list` reports (started ones). */
export function memberNames(table: string): string[] {
  return table
    .split('\n')
    .map((l) => l.split(',').map((s) => s.trim()))
    .filter((f) => f.length >= 5 && f[1] === 'started')
    .map((f) => f[2]!)
    .sort();
}

/** One sample of the cluster, seen from the host. */
export interface Sample {
  atMs: number;
  /** Machines whose etcd did not answer /health with a leader. */
  down: string[];
  holders: string[];
}

/** Bounded GET of a member's /health (5 s): true when it answers with a leader. */
/**
 * Whether the machine is up: its etcd member answers /health at all. A member
 * that answers "health": "false" (503) is up: while the leader reboots, the
 * others hold an election and say so for a moment (seen under TCG: a member
 * counted "down" for the seconds node1, the leader, went down), which is no
 * machine going down. Quorum is checked apart (a key written before is read after).
 */
async function healthy(n: ClusterNode): Promise<boolean> {
  try {
    const r = await fetch(`${hostClient(n)}/health`, { signal: AbortSignal.timeout(5000) });
    const text = (await r.text()).slice(0, 4096);
    return /"health":\s*"(true|false)"/.test(text);
  } catch {
    return false;
  }
}

/** Reads the reboot lock's holders through any member that answers (bounded). */
async function holders(nodes: ClusterNode[], key: string): Promise<string[]> {
  for (const n of nodes) {
    try {
      const r = await fetch(`${hostClient(n)}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(key).toString('base64') }), signal: AbortSignal.timeout(5000) });
      const j = JSON.parse((await r.text()).slice(0, 1 << 20)) as { kvs?: { value: string }[] };
      const v = j.kvs?.[0]?.value;
      if (!v) return [];
      return (JSON.parse(Buffer.from(v, 'base64').toString('utf8')) as { holders?: string[] | null }).holders ?? [];
    } catch {
      /* next member */
    }
  }
  return ['?'];
}

/**
 * Watches the cluster from the host while an update rolls through it: each
 * sample says which machines are down (two failed health checks in a row, so a
 * slow answer from a loaded emulated machine is not counted as a reboot) and
 * who holds the reboot lock. Stops at stop().
 */
export class ClusterObserver {
  readonly samples: Sample[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly t0 = Date.now();

  constructor(
    private readonly nodes: ClusterNode[],
    private readonly lockKey: string,
  ) {}

  start(): void {
    const misses = new Map<string, number>();
    this.loop = (async () => {
      while (!this.stopped) {
        const started = Date.now();
        const ok = await Promise.all(this.nodes.map(healthy));
        const down: string[] = [];
        this.nodes.forEach((n, i) => {
          const m = ok[i] ? 0 : (misses.get(n.name) ?? 0) + 1;
          misses.set(n.name, m);
          if (m >= 2) down.push(n.name);
        });
        this.samples.push({ atMs: Date.now() - this.t0, down, holders: await holders(this.nodes, this.lockKey) });
        // Pace the samples (about one per 2 s); this is the sampling period, not a wait for a state.
        const rest = 2000 - (Date.now() - started);
        // stop() may have run during the awaits above: TypeScript keeps the narrowing from the loop test.
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
        if (rest > 0 && !this.stopped) await new Promise((r) => setTimeout(r, rest));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** The moments at which the set of down machines or of holders changed, one line each. */
  timeline(): string[] {
    const out: string[] = [];
    let last = '';
    for (const s of this.samples) {
      const key = `${s.down.join(',')}|${s.holders.join(',')}`;
      if (key === last) continue;
      last = key;
      out.push(`t=${(s.atMs / 1000).toFixed(0).padStart(5)} s  down=${s.down.length} [${s.down.join(', ')}]  lock holders=${s.holders.length}`);
    }
    return out;
  }

  maxDown(): number {
    return Math.max(0, ...this.samples.map((s) => s.down.length));
  }
}

/** Console regexp of a machine's ready line. */
export const READY = /basalt-ready slot=(\S+) version=(\S+)\n/;

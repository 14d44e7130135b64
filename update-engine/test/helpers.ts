/** Test support for update-engine integration tests: temp dirs, small USR images, keys. */
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { DEFAULT_BOARD, type UsrImageInfo } from '../../common/src/contracts.js';
import { projectRoot } from '../../common/src/paths.js';
import { run } from '../../common/src/exec.js';
import { generateKey } from '../src/publish/keys.js';
import { generateTufKey, parseTufKey, type TufKeyFile } from '../src/trust/keys.js';
import { createRoot, type RoleSpec } from '../src/trust/publish.js';
import type { TufPublish } from '../src/publish/repo.js';
import { freePort } from '../../common/test/helpers.js';
import { createLogger } from '../../common/src/log.js';
import { Engine, type EngineEnv } from '../src/host/engine.js';
import { buildEnv, type EnvFlags } from '../src/host/hostenv.js';
import type { Clock } from '../src/host/scheduler.js';
export { freePort };

export async function tempDir(prefix = 'basalt-ue-'): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Makes a USR image as the builder does: a squashfs of a small tree holding
 * /lib/basalt/boot/{vmlinuz,initrd} and some random data, with the dm-verity
 * hash tree appended after it, plus usr.img.json.
 */
export async function makeUsr(dir: string, version: string, opts: { randomKiB?: number; board?: string; like?: string } = {}): Promise<string> {
  const tree = join(dir, `tree-${version}`);
  if (opts.like) {
    // A one-file bump: the tree of version `like` with its release file (and the kernel's first line) changed.
    await run('cp', ['-a', join(dir, `tree-${opts.like}`), tree]);
    await writeFile(join(tree, 'share/basalt/release'), `VERSION=${version}\n`);
    const k = await readFile(join(tree, 'lib/basalt/boot/vmlinuz'));
    await writeFile(join(tree, 'lib/basalt/boot/vmlinuz'), Buffer.concat([Buffer.from(`kernel ${version}\n`), k.subarray(k.indexOf(10) + 1)]));
  } else {
    await mkdir(join(tree, 'lib/basalt/boot'), { recursive: true });
    await mkdir(join(tree, 'share/basalt'), { recursive: true });
    await writeFile(join(tree, 'lib/basalt/boot/vmlinuz'), Buffer.concat([Buffer.from(`kernel ${version}\n`), randomBytes(64 * 1024)]));
    await writeFile(join(tree, 'lib/basalt/boot/initrd'), `initrd ${version}\n`);
    await writeFile(join(tree, 'share/basalt/release'), `VERSION=${version}\n`);
    // Half random, half compressible text, so the payload is realistic and not tiny.
    const kib = opts.randomKiB ?? 1024;
    await writeFile(join(tree, 'share/basalt/blob'), randomBytes(kib * 512));
    await writeFile(join(tree, 'share/basalt/text'), `basalt ${version} `.repeat((kib * 512) / 16));
  }
  const out = join(dir, `usr-${version}`);
  await mkdir(out, { recursive: true });
  const img = join(out, 'usr.img');
  await run('mksquashfs', [tree, img, '-comp', 'gzip', '-all-root', '-noappend', '-quiet', '-no-progress']);
  const fsBytes = (await stat(img)).size;
  const hashOffset = Math.ceil(fsBytes / 4096) * 4096;
  await truncate(img, hashOffset);
  const v = await run('veritysetup', ['format', img, img, `--hash-offset=${hashOffset}`]);
  const rootHash = /Root hash:\s*([0-9a-f]{64})/.exec(v.stdout)?.[1] ?? '';
  const salt = /Salt:\s*([0-9a-f]+)/.exec(v.stdout)?.[1] ?? '';
  await writeFile(
    join(out, 'usr.img.json'),
    JSON.stringify({ formatVersion: 1, fsType: 'squashfs', fsBytes, hashOffset, rootHash, salt, version, board: opts.board ?? DEFAULT_BOARD, kernel: '/lib/basalt/boot/vmlinuz', initrd: '/lib/basalt/boot/initrd', imageBytes: (await stat(img)).size, sha256: createHash('sha256').update(await readFile(img)).digest('hex') } satisfies UsrImageInfo),
  );
  return img;
}

let cachedKey: Awaited<ReturnType<typeof generateKey>> | undefined;
let cachedTuf: TufKeyFile | undefined;

/** TUF keys of a test repository: one ed25519 key for every role (threshold 1), its root v1 and what release() signs with. */
export interface TestTuf {
  key: TufKeyFile;
  /** Its key file (private). */
  keyFile: string;
  /** root v1 (signed), what a machine is given as --tuf-root. */
  root: string;
  /** For release/promote/refresh: the signer, and the root installed in a new repository. */
  publish: TufPublish;
}

/** One key for all four roles, threshold 1, root v1 signed by it. Written into `kd`. */
export async function makeTuf(kd: string, key: TufKeyFile = generateTufKey(), spec?: RoleSpec): Promise<TestTuf> {
  await mkdir(kd, { recursive: true });
  const keyFile = join(kd, `tuf-${key.keyid.slice(0, 8)}.key.json`);
  await writeFile(keyFile, JSON.stringify(key), { mode: 0o600 });
  const signer = parseTufKey(JSON.stringify(key), keyFile).signer!;
  const one = { keys: [key.public], threshold: 1 };
  const root = createRoot(spec ?? { root: one, targets: one, snapshot: one, timestamp: one }, [signer], Date.now());
  const rootFile = join(kd, 'root.json');
  await writeFile(rootFile, JSON.stringify(root.toJSON(), null, 1) + '\n');
  return { key, keyFile, root: rootFile, publish: { signers: [signer], initRoot: rootFile } };
}

/** Writes a release key pair into dir/keys (generated once per test file), with TUF keys and root (`tuf`). */
export async function makeKeys(dir: string, fresh = false): Promise<{ priv: string; pub: string; fingerprint: string; tuf: TestTuf }> {
  const k = fresh || !cachedKey ? await generateKey('Basalt test', 'test@basalt.invalid') : cachedKey;
  if (!fresh) cachedKey = k;
  const tk = fresh || !cachedTuf ? generateTufKey() : cachedTuf;
  if (!fresh) cachedTuf = tk;
  const kd = join(dir, fresh ? `keys-${randomBytes(3).toString('hex')}` : 'keys');
  await mkdir(kd, { recursive: true });
  await writeFile(join(kd, 'release.key'), k.privateArmored, { mode: 0o600 });
  await mkdir(join(kd, 'ring'), { recursive: true });
  await writeFile(join(kd, 'ring', 'release.pub.asc'), k.publicArmored);
  const tuf = await makeTuf(join(kd, 'tuf'), tk);
  return { priv: join(kd, 'release.key'), pub: join(kd, 'ring'), fingerprint: k.fingerprint, tuf };
}

/** Waits until `cond()` is truthy or the deadline passes (no fixed sleeps). */
export async function waitFor<T>(cond: () => T | Promise<T>, ms: number, what: string): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A disk image as the builder makes it, booted from slot A with `version`:
 * the small CoreOS layout, a FAT ESP with A's kernel, initrd and boot entry,
 * the USR image in USR-A, and USR-A at priority 1, successful.
 */
export async function makeDisk(dir: string, usrImg: string, version: string): Promise<string> {
  const { createDisk, findPartition, partitionRange } = await import('../../common/src/gpt/index.js');
  const { MtoolsEsp } = await import('../src/host/esp.js');
  const { renderEntry, entryFileName, LOADER_CONF } = await import('../../common/src/boot.js');
  const { readFile: rf, open } = await import('node:fs/promises');
  const disk = join(dir, `disk-${randomBytes(3).toString('hex')}.img`);
  const gpt = await createDisk(disk, { layout: 'small', sizeBytes: 256 * 1024 * 1024 });
  const esp = partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM'));
  await run('mkfs.vfat', ['-n', 'EFI-SYSTEM', '--offset', String(esp.offset / 512), disk, String(esp.length / 1024)]);
  const a = partitionRange(gpt, findPartition(gpt, 'USR-A'));
  const img = await rf(usrImg);
  const fh = await open(disk, 'r+');
  await fh.write(img, 0, img.length, a.offset);
  await fh.close();
  const side = JSON.parse(await rf(join(usrImg, '..', 'usr.img.json'), 'utf8')) as { rootHash: string; hashOffset: number };
  const m = new MtoolsEsp(disk, esp.offset);
  const tree = join(dir, `tree-${version}`, 'lib/basalt/boot');
  await m.write('/basalt/a/vmlinuz', await rf(join(tree, 'vmlinuz')));
  await m.write('/basalt/a/initrd', await rf(join(tree, 'initrd')));
  await m.write('/loader/loader.conf', LOADER_CONF);
  await m.write(`/loader/entries/${entryFileName('a')}`, renderEntry({ slot: 'a', version, rootHash: side.rootHash, hashOffset: side.hashOffset, fsType: 'squashfs', extraCmdline: ['console=ttyS0,115200', 'panic=10'] }));
  return disk;
}


/** Starts a private etcd on random 127.0.0.1 ports in a temp data dir (plus `args`, e.g. --enable-v2); stop() kills it and waits. */
export async function startEtcd(dir: string, args: string[] = []): Promise<{ url: string; stop(): Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const client = await freePort();
  const peer = await freePort();
  const url = `http://127.0.0.1:${client}`;
  const p = spawn(
    'etcd',
    [
      '--name', 't', '--data-dir', join(dir, 'etcd-data'),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `t=http://127.0.0.1:${peer}`, '--log-level', 'error',
      ...args,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  await waitFor(async () => {
    if (p.exitCode !== null) throw new Error(`etcd exited: ${err}`);
    try {
      const r = await fetch(`${url}/health`);
      return r.ok && ((await r.json()) as { health?: string }).health === 'true';
    } catch {
      return false;
    }
  }, 30_000, 'etcd health');
  return {
    url,
    stop: async () => {
      p.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The CLIs that tests run as processes come from dist/: compile it when a source of
 * update-engine/ or common/ is newer than `probe` (npm test compiles first anyway).
 */
export async function ensureDist(probe = 'dist/update-engine/src/host/engine.js'): Promise<void> {
  const { readdir, stat: st } = await import('node:fs/promises');
  const root = projectRoot();
  const newest = async (dir: string) => {
    let m = 0;
    for (const f of await readdir(join(root, dir), { recursive: true })) if (f.endsWith('.ts')) m = Math.max(m, (await st(join(root, dir, f))).mtimeMs);
    return m;
  };
  const built = await st(join(root, probe)).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  if (built < Math.max(await newest('update-engine/src'), await newest('common/src'))) await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: root, reject: false });
}

/** argv (after node) of `basalt update apply` on an image file booted from A, against an Omaha server, for tests that run it as its own process. */
export function applyArgv(o: { disk: string; keyring: string; tufRoot: string; serverUrl: string; dir: string; extra?: string[] }): string[] {
  return [join(projectRoot(), 'bin/basalt.js'), 'update', 'apply', '--disk', o.disk, '--booted-slot', 'A', '--state-dir', `${o.disk}.state`, '--keyring', o.keyring, '--tuf-root', o.tufRoot, '--server', `${o.serverUrl}v1/update/`, '--channel', 'stable', '--board', 'amd64-usr', '--root', join(o.dir, 'none'), ...(o.extra ?? [])];
}

/** What a CLI process run by runMeasured did. */
export interface MeasuredRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
  /** The highest VmHWM (peak RSS) read from /proc every 20 ms while it ran. */
  peakRssMiB: number;
}

/** Runs `node argv…` (this Node) as its own process and measures its time and peak RSS. */
export function runMeasured(argv: readonly string[]): Promise<MeasuredRun> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peakKiB = 0;
    const sample = setInterval(() => {
      void readFile(`/proc/${c.pid}/status`, 'utf8').then(
        (st) => (peakKiB = Math.max(peakKiB, Number(/^VmHWM:\s+(\d+) kB/m.exec(st)?.[1] ?? 0))),
        () => undefined,
      );
    }, 20);
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', (e) => {
      clearInterval(sample);
      reject(e);
    });
    c.on('close', (code) => {
      clearInterval(sample);
      resolve({ exitCode: code ?? -1, stdout, stderr, ms: Date.now() - t0, peakRssMiB: peakKiB / 1024 });
    });
  });
}

/**
 * An update engine in this process on an image file, booted from A, with the
 * flags a test's server needs (retries fast, short stall), logging at debug
 * into `lines`. With a clock the engine's schedule runs on it.
 */
export async function startTestEngine(flags: EnvFlags & { disk: string }, clock?: Clock): Promise<{ e: Engine; env: EngineEnv; lines: string[] }> {
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', write: (l) => lines.push(l) });
  const { env } = await buildEnv({ 'booted-slot': 'A', 'state-dir': `${flags.disk}.state`, channel: 'stable', board: 'amd64-usr', 'retry-base': '5ms', ...flags }, log, () => {}, clock);
  const e = new Engine(env);
  await e.start(clock !== undefined);
  return { e, env, lines };
}

/** One check with the engine and its download, to the end (installed or failed). */
export async function checkOnce(x: { e: Engine }): Promise<void> {
  x.e.check(true);
  await x.e.idle();
}

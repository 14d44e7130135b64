/**
 * Helpers for the update scenarios: variant profiles, release keys, a release
 * repository served by `basalt serve`, and ssh into the guest. Black box: only
 * CLIs and artifacts.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { freePort } from '../../common/test/helpers.js';
export { freePort };
import { dirname, join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { run, spawnTool, type Spawned } from '../../common/src/exec.js';
import { projectRoot } from '../../common/src/paths.js';
import { basalt } from './image.js';

export interface Variant {
  version: string;
  /** Public keys the image trusts. */
  keys: string[];
  /** The TUF root.json the image trusts (default: root.json beside the first key, as 'basalt keys generate' writes it). */
  root?: string;
  /** Extra files written into the image (path -> content). */
  files?: Record<string, string>;
  /** Artifacts to build besides usr.img (default: the profile's). */
  outputs?: ('raw' | 'qcow2' | 'pxe')[];
}

/**
 * zstd level of the variants' USR. The scenarios are about the update path,
 * not the last few % of compression: level 3 squashes /usr in about a second,
 * the default profile's 9 in about 4 s (182 MB against 172 MB; level 19, 157 MB,
 * takes a minute).
 */
export const VARIANT_USR_LEVEL = 3;

/** Writes a profile derived from the default one. */
export async function variantProfile(dir: string, v: Variant): Promise<string> {
  const base = parseYaml(await readFile(join(projectRoot(), 'configs/profiles/default.yaml'), 'utf8')) as Record<string, unknown>;
  const os = { ...(base['os'] as Record<string, unknown>), version: v.version };
  const usr = { ...(base['usr'] as Record<string, unknown>), level: VARIANT_USR_LEVEL };
  const root = v.root ?? (v.keys[0] ? join(dirname(v.keys[0]), 'root.json') : undefined);
  const profile: Record<string, unknown> = { ...base, os, usr, update: { keys: v.keys, ...(root && existsSync(root) ? { root } : {}) } };
  if (v.outputs) profile['outputs'] = v.outputs;
  if (v.files) profile['files'] = Object.entries(v.files).map(([path, content]) => ({ path, content }));
  await mkdir(dir, { recursive: true });
  const file = join(dir, `profile-${v.version}.yaml`);
  await writeFile(file, stringifyYaml(profile));
  return file;
}

/** A release key pair kept in the build cache, so images built from it stay cached between runs. */
export async function releaseKeys(cacheDir: string): Promise<{ key: string; pub: string }> {
  const dir = join(cacheDir, 'test-release-keys');
  const key = join(dir, 'release.key');
  const pub = join(dir, 'release.pub.asc');
  // Keys cached from before the TUF trust model have no root.json: made again.
  if (!existsSync(key) || !existsSync(pub) || !existsSync(join(dir, 'root.json'))) await basalt(['keys', 'generate', '--out', dir, '--name', 'Basalt VM tests', '--force']);
  return { key, pub };
}

/**
 * cloud-config lines (an entry of `coreos.units`) that push the update-engine's own first check
 * out by 6 h, so the test decides when machines check (update_engine_client -check_for_update).
 */
export const TEST_SCHEDULE_UNIT: readonly string[] = [
  '    - name: update-engine.service',
  '      drop_ins:',
  '        - name: 50-test-schedule.conf',
  '          content: |',
  '            [Service]',
  '            ExecStart=',
  '            ExecStart=/usr/bin/basalt update-engine --first-check 6h',
];

export interface OmahaEvent {
  kind: string;
  machineId?: string;
  version?: string;
  eventType?: number;
  eventResult?: number;
  errorCode?: number | null;
  previousVersion?: string | null;
  /** updatecheck: 'ok' or 'noupdate'. */
  answer?: string;
  /** updatecheck: the version a delta was offered from. */
  delta?: string;
}

/** `basalt serve` on 127.0.0.1 (the guest reaches it at 10.0.2.2). */
export class UpdateServer {
  private proc: Spawned | undefined;
  port = 0;
  readonly eventsFile: string;

  constructor(readonly repo: string) {
    this.eventsFile = join(repo, '..', 'events.jsonl');
  }

  async start(): Promise<void> {
    await mkdir(this.repo, { recursive: true });
    this.proc = spawnTool(process.execPath, [join(projectRoot(), 'bin/basalt.js'), 'serve', '--repo', this.repo, '--listen', '127.0.0.1:0', '--events', this.eventsFile]);
    let out = '';
    this.port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`basalt serve did not start: ${out}`)), 30_000);
      // `basalt serve` announces its address in a log line (stderr).
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      };
      this.proc!.stdout!.on('data', onData);
      this.proc!.stderr!.on('data', onData);
      this.proc!.exited.then(() => reject(new Error(`basalt serve exited: ${out}`)), reject);
    });
  }

  /** The Omaha URL as the guest sees it. */
  get guestUrl(): string {
    return `http://10.0.2.2:${this.port}/v1/update/`;
  }

  async events(): Promise<OmahaEvent[]> {
    if (!existsSync(this.eventsFile)) return [];
    return (await readFile(this.eventsFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as OmahaEvent);
  }

  /** Resolves when an event matching `pred` is recorded (the server appends to its log; we follow it). */
  async waitForEvent(pred: (e: OmahaEvent) => boolean, timeoutMs: number, what: string): Promise<OmahaEvent> {
    const until = Date.now() + timeoutMs;
    const { watch } = await import('node:fs');
    for (;;) {
      const hit = (await this.events()).find(pred);
      if (hit) return hit;
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what} in ${this.eventsFile}:\n${(await this.events()).map((e) => JSON.stringify(e)).join('\n')}`);
      // Wait for the log to change (or a short deadline, in case the file does not exist yet).
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(5000, Math.max(0, until - Date.now())));
        let w: ReturnType<typeof watch> | undefined;
        try {
          w = watch(existsSync(this.eventsFile) ? this.eventsFile : join(this.repo, '..'), done);
        } catch {
          /* fall back to the deadline */
        }
        function done() {
          clearTimeout(t);
          w?.close();
          resolve();
        }
      });
    }
  }

  async stop(): Promise<void> {
    this.proc?.kill();
    await this.proc?.exited.catch(() => {});
  }
}

/** Publishes usrImg as `version` on `channel`; with deltaFrom, also a delta from each of those released versions. */
export async function release(usrImg: string, version: string, keys: { key: string }, repo: string, channel = 'stable', deltaFrom: string[] = []): Promise<void> {
  await basalt(['release', '--usr', usrImg, '--version', version, '--channel', channel, '--key', keys.key, '--repo', repo, ...deltaFrom.flatMap((v) => ['--delta-from', v])]);
}

/** ssh into the guest through the forwarded port. */
export class Ssh {
  constructor(
    readonly port: number,
    readonly keyFile: string,
  ) {}

  static async keypair(dir: string): Promise<{ key: string; pub: string }> {
    const key = join(dir, 'id_ed25519');
    if (!existsSync(key)) await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'basalt-vm-test', '-f', key]);
    return { key, pub: (await readFile(`${key}.pub`, 'utf8')).trim() };
  }

  private args(user: string, command: string): string[] {
    return ['-i', this.keyFile, '-p', String(this.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=20', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=6', '-o', 'LogLevel=ERROR', `${user}@127.0.0.1`, command];
  }

  /** Runs `command` as `user`; returns stdout, throws with stderr on failure. */
  async exec(command: string, user = 'root', timeoutMs = 10 * 60_000): Promise<string> {
    const r = await run('ssh', this.args(user, command), { reject: false, timeoutMs });
    if (r.exitCode !== 0) throw new Error(`ssh ${user}: '${command}' failed (${r.exitCode}): ${r.stderr.trim()} ${r.stdout.trim()}`);
    return r.stdout;
  }

  /**
   * Runs a streaming command (such as `update_engine_client -watch_for_updates`)
   * and resolves with its output once `done(output)` holds; rejects at the
   * deadline or when the command ends first.
   */
  async stream(command: string, done: (output: string) => boolean, timeoutMs: number, user = 'root'): Promise<string> {
    const p = spawnTool('ssh', this.args(user, command));
    let out = '';
    try {
      return await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs / 1000} s on '${command}'; output so far:\n${out.slice(-2000)}`)), timeoutMs);
        p.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (done(out)) {
            clearTimeout(t);
            resolve(out);
          }
        });
        p.exited.then(
          (r) => {
            clearTimeout(t);
            if (done(out)) resolve(out);
            else reject(new Error(`'${command}' ended (exit ${r.exitCode}) before the condition held; output:\n${out.slice(-2000)}`));
          },
          reject,
        );
      });
    } finally {
      p.kill('SIGKILL');
    }
  }

  /** Retries until sshd answers (it starts with the system; the deadline bounds the wait). */
  async waitUp(timeoutMs: number, user = 'root'): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < until) {
      const r = await run('ssh', this.args(user, 'true'), { reject: false, timeoutMs: 30_000 });
      if (r.exitCode === 0) return;
      last = r.stderr.trim();
    }
    throw new Error(`ssh to 127.0.0.1:${this.port} did not come up within ${timeoutMs / 1000} s: ${last}`);
  }
}

/** SHA-256 of a byte range of a file (a partition of a raw disk). */
export async function hashRange(file: string, offset: number, length: number): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4 * 1024 * 1024);
    let done = 0;
    while (done < length) {
      const n = Math.min(buf.length, length - done);
      const { bytesRead } = await fh.read(buf, 0, n, offset + done);
      if (bytesRead <= 0) break;
      h.update(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}


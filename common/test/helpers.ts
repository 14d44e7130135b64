/** Test helpers: temp dirs removed after each test, and running the built CLIs. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { execa } from 'execa';
import { projectRoot } from '../src/paths.js';
import { spawnTool, type Spawned } from '../src/exec.js';

// Host tools such as sgdisk and cgpt live in /usr/sbin.
for (const d of ['/usr/sbin', '/sbin']) {
  if (!(process.env['PATH'] ?? '').split(':').includes(d)) process.env['PATH'] = `${process.env['PATH']}:${d}`;
}

export async function testdir(prefix = 'basalt-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a built Basalt program (bin/<prog>.js; `npm test` compiles first). */
export async function cli(args: string[], prog = 'basalt', opts: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [join(projectRoot(), 'bin', `${prog}.js`), ...args], { reject: false, input: opts.input, env: opts.env });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs a host tool, failing the test with its stderr when it fails. */
export async function sh(file: string, args: string[], opts: { reject?: boolean } = {}): Promise<CliResult> {
  const r = await execa(file, args, { reject: false });
  const res = { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  if (opts.reject !== false && res.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} failed (${res.exitCode}): ${res.stderr}`);
  return res;
}

/** A free TCP port on 127.0.0.1 (for servers and port forwards in tests). */
export async function freePort(): Promise<number> {
  // The kernel may give a port it gave before once that one is closed again: a test that asks for
  // several before binding any (a VM's forwards) must never get the same one twice.
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await ephemeralPort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no port that this process has not handed out already after 100 tries');
}

const handedOut = new Set<number>();

async function ephemeralPort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** A built Basalt program running in the background, its output collected. */
export interface RunningCli {
  proc: Spawned;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /**
   * Resolves with the first match of `re` in stdout; rejects when the program
   * exits first or after `ms` with the tail of its output.
   */
  waitForStdout(re: RegExp, ms: number, what: string): Promise<RegExpExecArray>;
}

/** Starts bin/<prog>.js with pipes (for long-running commands such as `basalt qemu run`). */
export function spawnCli(args: string[], prog = 'basalt'): RunningCli {
  const proc = spawnTool(process.execPath, [join(projectRoot(), 'bin', `${prog}.js`), ...args]);
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    for (const w of [...waiters]) w();
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
  let ended: { exitCode: number } | undefined;
  void proc.exited.then(
    (r) => {
      ended = r;
      for (const w of [...waiters]) w();
    },
    () => {
      ended = { exitCode: -1 };
      for (const w of [...waiters]) w();
    },
  );
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    waitForStdout: (re, ms, what) =>
      new Promise((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        const check = (): void => {
          const m = re.exec(out);
          if (m) {
            done();
            resolve(m);
          } else if (ended) {
            done();
            reject(new Error(`${prog} ${args[0] ?? ''} ended (exit ${ended.exitCode}) before ${what}: ${err}\n${out.slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${what} within ${Math.round(ms / 1000)} s: ${err}\n${out.slice(-2000)}`));
        }, ms);
        waiters.add(check);
        check();
      }),
  };
}

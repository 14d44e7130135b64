/** Test helpers: temp dirs removed after each test, and running the built CLIs. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { execa } from 'execa';
import { projectRoot } from '../src/paths.js';

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
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Runs a host tool, failing the test with its stderr when it fails. */
export async function sh(file: string, args: string[], opts: { reject?: boolean } = {}): Promise<CliResult> {
  const r = await execa(file, args, { reject: false });
  const res = { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  if (opts.reject !== false && res.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} failed (${res.exitCode}): ${res.stderr}`);
  return res;
}

/** A free TCP port on 127.0.0.1 (for servers and port forwards in tests). */
export async function freePort(): Promise<number> {
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

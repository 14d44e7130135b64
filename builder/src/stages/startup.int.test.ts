/**
 * What a program of the image compiles before it runs. Under TCG every
 * kilobyte of JavaScript loaded at start-up costs time at every start, so the
 * bundle is checked with the options the build uses: `coreos-cloudinit
 * -validate` must not load the HTTP client (got) nor anything else it does
 * not need, and the /usr/bin wrappers give V8's compile cache a directory only
 * the caller can write.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { build, type Metafile } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleOptions, ROOT_COMPILE_CACHE, wrapperScript } from './customize.js';

const repo = join(import.meta.dirname, '..', '..', '..');
let work: string;
let meta: Metafile;

/**
 * The inputs of the outputs loaded before `program` runs: the entry's static
 * imports, and those of the chunk holding the program's module (main loads it
 * with a dynamic import); other dynamic imports stay lazy.
 */
function startupInputs(entry: string, programModule: string): { inputs: string[]; bytes: number } {
  const outputs = meta.outputs;
  const start = Object.keys(outputs).find((o) => outputs[o]?.entryPoint?.endsWith(`bin/${entry}`));
  const program = Object.keys(outputs).find((o) => Object.keys(outputs[o]!.inputs).some((i) => i.endsWith(programModule)));
  if (!start || !program) throw new Error(`no output for bin/${entry} or ${programModule}`);
  const seen = new Set<string>();
  const todo = [start, program];
  while (todo.length) {
    const o = todo.pop()!;
    if (seen.has(o)) continue;
    seen.add(o);
    for (const i of outputs[o]!.imports) if (i.kind === 'import-statement' && !i.external) todo.push(i.path);
  }
  const inputs = [...seen].flatMap((o) => Object.keys(outputs[o]!.inputs));
  const bytes = [...seen].reduce((n, o) => n + outputs[o]!.bytes, 0);
  return { inputs, bytes };
}

beforeAll(async () => {
  if (!existsSync(join(repo, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npx tsc -p tsconfig.json` first (npm test does)');
  work = await mkdtemp(join(tmpdir(), 'basalt-startup-'));
  const out = join(work, 'a', 'b');
  await mkdir(out, { recursive: true });
  const r = await build({ ...bundleOptions(repo, out), metafile: true, write: false });
  meta = r.metafile;
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('start-up of the bundled programs', () => {
  it('coreos-cloudinit loads neither the HTTP client nor the apply code before it runs', () => {
    const { inputs, bytes } = startupInputs('coreos-cloudinit.js', 'dist/cloudinit/src/cli/coreos-cloudinit.js');
    const rel = inputs.map((i) => relative(repo, i));
    expect(rel.filter((i) => /node_modules\/(got|http2-wrapper|cacheable-request|get-stream)\//.test(i))).toEqual([]);
    expect(rel.filter((i) => /cloudinit\/src\/apply\/|update-engine\//.test(i))).toEqual([]);
    // The validator itself (the YAML scanner, the schema) is ~150 KB; the HTTP client alone was 350 KB.
    expect(bytes).toBeLessThan(250_000);
  });
});

describe('wrapper', () => {
  /** The wrapper's environment logic, with the exec replaced by printing what node would get. */
  function cacheDirOf(env: Record<string, string>): string {
    const script = wrapperScript('x').replace(/^exec .*$/m, 'echo "${NODE_COMPILE_CACHE-unset}"');
    return execFileSync('sh', ['-c', script], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, encoding: 'utf8' }).trim();
  }

  it('gives a user with a writable home a cache of their own, and nothing to a service without one', async () => {
    const home = join(work, 'home');
    await mkdir(home);
    expect(cacheDirOf({ HOME: home })).toBe(join(home, '.cache/basalt/node-compile-cache'));
    expect(cacheDirOf({ HOME: home, XDG_CACHE_HOME: join(home, 'c') })).toBe(join(home, 'c/basalt/node-compile-cache'));
    expect(cacheDirOf({ HOME: join(work, 'no-such-home') })).toBe('unset');
    expect(cacheDirOf({})).toBe('unset');
    expect(cacheDirOf({ NODE_COMPILE_CACHE: '/elsewhere' })).toBe('/elsewhere');
  });

  it('never points at a directory others can write', () => {
    const script = wrapperScript('coreos-cloudinit');
    expect(script).toContain(ROOT_COMPILE_CACHE);
    expect(script).not.toMatch(/\/tmp|\/var\/tmp|TMPDIR/);
    expect(script).toMatch(/^exec \/usr\/lib\/basalt\/node\/bin\/node \/usr\/lib\/basalt\/app\/bundle\/cli\/coreos-cloudinit\.mjs "\$@"$/m);
  });
});

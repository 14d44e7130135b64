/**
 * The two command lines as users run them: bin/coreos-cloudinit.js (Go-style
 * flags, v1.14.0 messages and exit codes) and `basalt cloudinit validate`
 * (several files, --json, --strict).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..', '..');
const built = existsSync(join(repo, 'dist', 'cloudinit', 'src', 'cli', 'basalt-cloudinit.js'));

async function run(bin: string, args: string[], env: Record<string, string> = {}) {
  try {
    const r = await exec(process.execPath, [join(repo, 'bin', bin), ...args], { env: { ...process.env, ...env } });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}
const strip = (s: string) => s.split('\n').filter(Boolean).map((l) => l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, ''));

describe.skipIf(!built)('command lines (skipped without a tsc build)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'basalt-ci-cli-'));
    writeFileSync(join(dir, 'bad.yml'), '#cloud-config\nhostname: a\nhostname: b\ncoreos:\n  updates:\n    group: x\n  units:\n    - name: a.service\n      command: go\n');
    writeFileSync(join(dir, 'good.yml'), '#cloud-config\nhostname: a\n');
    writeFileSync(join(dir, 'gz.bin'), gzipSync(Buffer.from('#cloud-config\nbogus: 1\n')));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('coreos-cloudinit without a source prints the v1.14.0 message on stdout and exits 2', async () => {
    const r = await run('coreos-cloudinit.js', ['-validate']);
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/^Provide at least one of --from-file, --from-configdrive/);
  });
  it('-oem with an unknown name exits 2; -version prints the version', async () => {
    expect((await run('coreos-cloudinit.js', ['-oem', 'nope'])).code).toBe(2);
    const v = await run('coreos-cloudinit.js', ['--version']);
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^coreos-cloudinit v1\.14\.0/);
  });
  it('an unknown flag is a usage error (exit 2)', async () => {
    const r = await run('coreos-cloudinit.js', ['-frobnicate']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('flag provided but not defined: -frobnicate');
  });
  it('validates gzip user-data after decompressing it', async () => {
    const r = await run('coreos-cloudinit.js', ['-validate', '-from-file', join(dir, 'gz.bin')]);
    expect(r.code).toBe(1);
    expect(strip(r.err)).toEqual(['Checking availability of "local-file"', 'Fetching user-data from datasource of type "local-file"', 'line 2: warning: unrecognized key "bogus"']);
  });
  it('a missing file is polled until the datasource deadline, then "No datasources available in time"', async () => {
    const r = await run('coreos-cloudinit.js', ['-validate', '-from-file', join(dir, 'missing.yml')], { BASALT_CLOUDINIT_DATASOURCE_TIMEOUT_MS: '400' });
    expect(r.code).toBe(1);
    const l = strip(r.err);
    expect(l.filter((x) => x === 'Checking availability of "local-file"').length).toBeGreaterThanOrEqual(2);
    expect(l[l.length - 1]).toBe('No datasources available in time');
  });
  it('basalt cloudinit validate: several files, exit 1 if any entry, hints in the human output', async () => {
    const r = await run('basalt.js', ['cloudinit', 'validate', join(dir, 'good.yml'), join(dir, 'bad.yml')]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`${join(dir, 'bad.yml')}:line 5: warning: unrecognized key "updates"\n    hint: did you mean "update"?`);
    expect((await run('basalt.js', ['cloudinit', 'validate', join(dir, 'good.yml')])).code).toBe(0);
  });
  it('--json gives {file, entries: [{line, column, kind, code, path, message, hint}]} per file; --strict only adds entries', async () => {
    const r = await run('basalt.js', ['cloudinit', 'validate', '--json', join(dir, 'bad.yml'), join(dir, 'good.yml')]);
    const docs = r.out.trim().split('\n').map((l) => JSON.parse(l) as { file: string; entries: Record<string, unknown>[] });
    expect(docs.map((d) => d.file)).toEqual([join(dir, 'bad.yml'), join(dir, 'good.yml')]);
    expect(docs[0]!.entries).toContainEqual({ line: 9, column: 7, kind: 'error', code: 'E_INVALID_VALUE', path: 'coreos.units[0].command', message: 'invalid value go', hint: expect.stringContaining('allowed: start, stop') as unknown });
    expect(docs[1]!.entries).toEqual([]);
    const s = await run('basalt.js', ['cloudinit', 'validate', '--json', '--strict', join(dir, 'bad.yml')]);
    const strict = JSON.parse(s.out) as { entries: { code: string }[] };
    expect(strict.entries.slice(0, docs[0]!.entries.length)).toEqual(docs[0]!.entries);
    expect(strict.entries.map((e) => e.code)).toContain('W_DUPLICATE_KEY');
  });
});

/**
 * `basalt build` on bad input: a report with file, line and key, exit 1, and
 * nothing built (no output folder, no cache touched).
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, testdir } from '../../common/test/helpers.js';
import { defaultProfilePath } from '../../configs/src/profile.js';

describe('basalt build with a bad profile', () => {
  it('reports every problem with file:line:col and key, exits 1 and builds nothing', async () => {
    const dir = await testdir();
    const bad = readFileSync(defaultProfilePath(), 'utf8').replace('compression: zstd', 'compression: brotli').replace('size: 8GiB', 'size: huge');
    const file = join(dir, 'bad.yaml');
    await writeFile(file, bad);
    const lineOf = (s: string) => bad.split('\n').findIndex((l) => l.includes(s)) + 1;
    const r = await cli(['build', '--profile', file, '--out', join(dir, 'out'), '--cache', join(dir, 'cache')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${file}:${lineOf('compression: brotli')}:`);
    expect(r.stderr).toMatch(/error: usr\.compression: 'brotli' is not one of/);
    expect(r.stderr).toContain(`${file}:${lineOf('size: huge')}:`);
    expect(r.stderr).toMatch(/disk\.size/);
    expect(r.stderr).toMatch(/nothing was built/);
    expect(existsSync(join(dir, 'out'))).toBe(false);
    expect(existsSync(join(dir, 'cache'))).toBe(false);
  });

  it('names a missing profile file', async () => {
    const dir = await testdir();
    const r = await cli(['build', '--profile', join(dir, 'nope.yaml'), '--out', join(dir, 'out')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/nope\.yaml: no such file/);
  });

  it('rejects unknown flags with a usage error', async () => {
    const r = await cli(['build', '--profil', 'x']);
    expect(r.exitCode).toBe(2);
  });
});

/**
 * The golden corpus through the real program: `node bin/coreos-cloudinit.js
 * -validate -from-file CASE` (compiled by tsc) for every case; compares the
 * logged entries (order-insensitive) and the exit code.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { corpusCases, corpusDir, loadExpected } from './corpus-files.js';

const exec = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..', '..');
const bin = join(repo, 'bin', 'coreos-cloudinit.js');
const built = existsSync(join(repo, 'dist', 'cloudinit', 'src', 'cli', 'coreos-cloudinit.js'));
const cases = corpusCases();

async function runValidate(file: string): Promise<{ code: number; stderr: string; stdout: string }> {
  try {
    const r = await exec(process.execPath, [bin, '-validate', '-from-file', file]);
    return { code: 0, stderr: r.stderr, stdout: r.stdout };
  } catch (e) {
    const err = e as { code: number; stderr: string; stdout: string };
    return { code: err.code, stderr: err.stderr, stdout: err.stdout };
  }
}

describe.skipIf(!built)('golden corpus through bin/coreos-cloudinit.js (skipped when dist/ is not built: run tsc first)', () => {
  it('every case matches its expected entries and exit code', async () => {
    const failures: string[] = [];
    const queue = [...cases];
    const worker = async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        const r = await runValidate(join(corpusDir, name + '.yml'));
        const lines = r.stderr.split('\n').filter((l) => l !== '');
        for (const l of lines) if (!/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /.test(l)) failures.push(`${name}: line without Go log timestamp: ${l}`);
        const body = lines.map((l) => l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, ''));
        if (body[0] !== 'Checking availability of "local-file"' || body[1] !== 'Fetching user-data from datasource of type "local-file"') failures.push(`${name}: missing the two leading log lines`);
        const got = body.filter((l) => /^line -?\d+: /.test(l)).sort();
        const want = loadExpected(name);
        if (JSON.stringify(got) !== JSON.stringify(want.entries)) failures.push(`${name}: entries differ:\n  got  ${JSON.stringify(got)}\n  want ${JSON.stringify(want.entries)}`);
        if (r.code !== want.exit) failures.push(`${name}: exit ${r.code}, want ${want.exit}`);
        if (r.stdout !== '') failures.push(`${name}: stdout not empty`);
      }
    };
    await Promise.all([worker(), worker()]);
    expect(failures).toEqual([]);
  }, 300_000);
});

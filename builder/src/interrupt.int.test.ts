/**
 * Ctrl-C during the packages stage: the previous output stays as it was, and
 * no temporary folder, mount or process of the build is left behind.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnTool } from '../../common/src/exec.js';
import { projectRoot } from '../../common/src/paths.js';
import { testdir } from '../../common/test/helpers.js';
import { mountsUnder } from './fsutil.js';

const isRoot = process.getuid?.() === 0;
const haveMmdebstrap = existsSync('/usr/bin/mmdebstrap');
const sharedCache = process.env['BASALT_CACHE'] ?? '/var/cache/basalt';

/** Resolves when `cond()` holds (checked every 200 ms), failing at the deadline. */
async function until(cond: () => boolean | Promise<boolean>, deadlineMs: number, what: string): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(!isRoot || !haveMmdebstrap)('interrupted build (skipped unless root with mmdebstrap: it runs the packages stage)', () => {
  it('leaves the previous output intact and no temp folders, mounts or processes', async () => {
    const dir = await testdir();
    const cache = join(dir, 'cache');
    const out = join(dir, 'out');
    await mkdir(join(sharedCache, 'aptroot'), { recursive: true });
    await mkdir(cache, { recursive: true });
    await symlink(join(sharedCache, 'aptroot'), join(cache, 'aptroot'));
    await mkdir(out);
    await writeFile(join(out, 'manifest.json'), '{"previous":true}\n');
    const child = spawnTool(process.execPath, [join(projectRoot(), 'bin/basalt.js'), 'build', '--cache', cache, '--out', out]);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const stageDir = join(cache, 'stages/packages');
    // Interrupt once mmdebstrap has set up its tree and mounts.
    await until(async () => {
      const tmp = existsSync(stageDir) ? readdirSync(stageDir).find((d) => d.includes('.tmp-')) : undefined;
      return !!tmp && (await mountsUnder(join(stageDir, tmp))).length > 0;
    }, 120_000, 'mmdebstrap to mount proc/sys/dev in its tree');
    child.kill('SIGINT');
    const exit = await child.exited;
    expect(exit.exitCode).toBe(1);
    expect(stderr).toMatch(/interrupted/);
    expect(await readFile(join(out, 'manifest.json'), 'utf8')).toBe('{"previous":true}\n');
    expect(readdirSync(dir).filter((d) => d.includes('.tmp-'))).toEqual([]);
    expect(readdirSync(stageDir).filter((d) => d.includes('.tmp-'))).toEqual([]);
    expect(await mountsUnder(cache)).toEqual([]);
    const ps = await import('node:child_process').then((m) => m.execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }));
    expect(ps.split('\n').filter((l) => l.includes(cache))).toEqual([]);
  }, 300_000);
});

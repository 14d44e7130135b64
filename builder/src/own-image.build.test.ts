/**
 * Issue 20's acceptance on the build host: a three-line profile (extends
 * default, one package, one file) builds, and the package and the file are in
 * the USR image; a rebuild with nothing changed takes every stage, the disk
 * and the outputs from the cache. Own stage cache (the .deb and npm download
 * caches are shared, as in reproducible.build.test.ts); `npm run test:build`.
 */
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../common/src/exec.js';
import { cli } from '../../common/test/helpers.js';

const isRoot = process.getuid?.() === 0;
const sharedCache = process.env['BASALT_CACHE'] ?? '/var/cache/basalt';
let work: string | undefined;

const MOTD = 'Built from three lines\n';
const PROFILE = ['extends: default', 'packages: {add: [htop]}', `files: [{path: /etc/motd, content: ${JSON.stringify(MOTD)}}]`, ''].join('\n');

interface Summary {
  seconds: number;
  stages: { name: string; cached: boolean }[];
}

describe.skipIf(!isRoot)('your own image in three lines (skipped unless root)', () => {
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('builds with the package and the file in the USR image, and rebuilds from the cache when nothing changed', async () => {
    work = await mkdtemp(join(tmpdir(), 'basalt-own-'));
    expect(PROFILE.trimEnd().split('\n')).toHaveLength(3);
    const profile = join(work, 'mine.yaml');
    await writeFile(profile, PROFILE);
    const cache = join(work, 'cache');
    await mkdir(cache);
    for (const d of ['aptroot', 'npm']) {
      await mkdir(join(sharedCache, d), { recursive: true });
      await symlink(join(sharedCache, d), join(cache, d));
    }
    const out = join(work, 'out');
    const build = ['--json', 'build', '--profile', profile, '--cache', cache, '--out', out];
    const first = await cli(build);
    expect(first.exitCode, first.stderr.slice(-3000)).toBe(0);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { packages: { name: string }[]; profile: { extends?: { file: string }[] } };
    expect(manifest.packages.map((p) => p.name)).toContain('htop');
    expect(manifest.profile.extends?.map((x) => x.file.replace(/.*\/configs\//, 'configs/'))).toEqual(['configs/profiles/default.yaml']);
    const usr = join(out, 'usr.img');
    const list = (await run('unsquashfs', ['-lln', usr])).stdout;
    expect(list).toMatch(/ squashfs-root\/bin\/htop$/m);
    // /etc ships as the factory copy the first boot puts in place.
    expect((await run('unsquashfs', ['-cat', usr, 'share/factory/etc/motd'])).stdout).toBe(MOTD);

    const again = await cli(build);
    expect(again.exitCode, again.stderr.slice(-3000)).toBe(0);
    const s = JSON.parse(again.stdout) as Summary;
    expect(s.stages.filter((x) => !x.cached).map((x) => x.name)).toEqual([]);
    expect(s.seconds).toBeLessThan(5);
  });
});

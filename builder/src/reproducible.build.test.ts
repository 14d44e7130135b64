/**
 * Two builds from the same inputs with separate stage caches must give a
 * bit-identical USR image: one in the shared cache (where CI's build of the
 * default image, and every other test, put their stages), one with an empty
 * stage cache of its own (the .deb and npm download caches are shared to spare
 * the mirror). Slow (up to two full builds, ~4-8 min on 2 cores), so it has its
 * own tier: `npm run test:build` (CI runs it after `npm test`).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run } from '../../common/src/exec.js';
import { cli } from '../../common/test/helpers.js';

/** The parts of manifest.json this test compares. */
interface Manifest {
  usr: { sha256: string; rootHash: string };
  artifacts: { kind: string; sha256: string }[];
}

const isRoot = process.getuid?.() === 0;

const sharedCache = process.env['BASALT_CACHE'] ?? '/var/cache/basalt';
let work: string | undefined;

describe.skipIf(!isRoot)('reproducible USR image (skipped unless root: the build runs mmdebstrap and chroot)', () => {
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('two builds with separate stage caches give the same USR SHA-256, verity root hash and disk', async () => {
    work = await mkdtemp(join(tmpdir(), 'basalt-repro-'));
    const manifests: Manifest[] = [];
    await mkdir(join(sharedCache, 'aptroot'), { recursive: true });
    await mkdir(join(sharedCache, 'npm'), { recursive: true });
    for (const name of ['shared', 'own']) {
      let cache = sharedCache;
      if (name === 'own') {
        cache = join(work, 'cache-own');
        await mkdir(cache, { recursive: true });
        await symlink(join(sharedCache, 'aptroot'), join(cache, 'aptroot'));
        await symlink(join(sharedCache, 'npm'), join(cache, 'npm'));
      }
      const out = join(work, `out-${name}`);
      const r = await cli(['build', '--cache', cache, '--out', out]);
      expect(r.exitCode, `basalt build (${name} stage cache) failed: ${r.stderr.slice(-3000)}`).toBe(0);
      manifests.push(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as Manifest);
    }
    // customize (its /usr and /boot), trim, initrd and layer start from hard links to the stage
    // before: no file of a stage's tree may have been written after that stage finished (its
    // result.json). The packages stage's .debs are links shared with the cache's (deb-cache hook).
    for (const stage of ['packages', 'customize', 'trim', 'initrd']) {
      const base = join(work, 'cache-own', 'stages', stage);
      const [key] = await readdir(base);
      const found = await run('find', [join(base, key!), '-newer', join(base, key!, 'result.json'), '-not', '-type', 'd', '-print', '-quit']);
      expect(found.stdout.trim(), `a file of the ${stage} stage's cached tree was written by a later stage`).toBe('');
    }
    // Keep the disk usage down: the private stage trees are not needed any more.
    await run('rm', ['-rf', join(work, 'cache-own', 'stages')]);
    const [a, b] = manifests as [Manifest, Manifest];
    expect(a.usr.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b.usr.sha256).toBe(a.usr.sha256);
    expect(b.usr.rootHash).toBe(a.usr.rootHash);
    const sha = (m: Manifest, kind: string) => m.artifacts.find((x) => x.kind === kind)?.sha256;
    expect(sha(b, 'usr')).toBe(sha(a, 'usr'));
    // The whole disk too: GPT, ESP, USR-A and the empty ROOT and OEM (UUIDs and hash seeds derived, times fixed).
    for (const kind of ['esp', 'raw', 'qcow2']) expect(sha(b, kind), kind).toBe(sha(a, kind));
  });
});

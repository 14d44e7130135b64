/**
 * A change to one field of a profile changes the cache keys of the stages
 * that field goes into and of those after them, never of the stages before:
 * the keys are computed as a build computes them (planKeys), from the real
 * checkout (builder/files, dist/, update-engine/units), without building.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/src/log.js';
import { loadProfile } from '../../configs/src/profile.js';
import { repoRootDir, type BuildContext, type StageName } from './context.js';
import { planKeys, STAGES } from './pipeline.js';

async function keysOf(dir: string, name: string, text: string): Promise<Record<string, string>> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, text);
  const { profile } = await loadProfile(file);
  const ctx: BuildContext = { profile, profileFile: file, repoRoot: repoRootDir(), cacheDir: join(dir, 'cache'), log: silentLogger, signal: new AbortController().signal, done: {}, prefetches: new Map() };
  return Object.fromEntries((await planKeys(ctx)).map((k) => [k.name, k.key]));
}

/** The stages whose keys differ between two plans. */
function changed(a: Record<string, string>, b: Record<string, string>): StageName[] {
  return STAGES.map((s) => s.name).filter((n) => a[n] !== b[n]);
}

describe('stage cache keys of a changed profile', () => {
  let dir: string;
  let base: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'basalt-plan-'));
    base = await keysOf(dir, 'base', 'extends: default\n');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('are the same for the same merged profile, written either way', async () => {
    expect(await keysOf(dir, 'again', 'extends: default\npackages: {remove: []}\n')).toEqual(base);
  });

  it.each([
    ['a package', 'packages: {add: [htop]}', ['packages', 'customize', 'trim', 'initrd', 'layer', 'usr-image', 'boot']],
    ['a file', 'files: [{path: /etc/motd, content: hi}]', ['layer', 'usr-image', 'boot']],
    ['a unit to enable', 'units: {add: [systemd-networkd-wait-online.service]}', ['layer', 'usr-image', 'boot']],
    ['the update server', 'update: {server: https://u.example.com/v1/update/}', ['customize', 'trim', 'initrd', 'layer', 'usr-image', 'boot']],
    ['a user', 'users: [{name: ops}]', ['customize', 'trim', 'initrd', 'layer', 'usr-image', 'boot']],
    ['a trim rule', 'trim: {remove: {add: [bin/docker-proxy]}}', ['trim', 'initrd', 'layer', 'usr-image', 'boot']],
    ['an initrd driver', 'initrd: {drivers: {add: [igb]}}', ['trim', 'initrd', 'layer', 'usr-image', 'boot']],
    ['the USR compression', 'usr: {level: 3}', ['usr-image', 'boot']],
    ['the kernel command line', 'kernel: {cmdline: {add: [quiet]}}', ['boot']],
    ['the outputs', 'outputs: [raw]', []],
  ] as const)('%s: only the stages it goes into and those after them', async (what, line, stages) => {
    const keys = await keysOf(dir, what.replace(/\W+/g, '-'), `extends: default\n${line}\n`);
    expect(changed(base, keys)).toEqual(stages);
  });

  it('an overlay counts by its contents and modes, not its path', async () => {
    const { mkdir, chmod } = await import('node:fs/promises');
    for (const d of ['o1', 'o2']) {
      await mkdir(join(dir, d, 'etc'), { recursive: true });
      await writeFile(join(dir, d, 'etc/x.conf'), 'x=1\n');
    }
    const k1 = await keysOf(dir, 'ov1', 'extends: default\noverlay: o1\n');
    const k2 = await keysOf(dir, 'ov2', 'extends: default\noverlay: o2\n');
    expect(changed(base, k1)).toEqual(['layer', 'usr-image', 'boot']);
    expect(k2).toEqual(k1);
    await chmod(join(dir, 'o2/etc/x.conf'), 0o600);
    expect(changed(k1, await keysOf(dir, 'ov2', 'extends: default\noverlay: o2\n'))).toEqual(['layer', 'usr-image', 'boot']);
  });
});

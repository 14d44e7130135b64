/**
 * `basalt build` on bad input: a report with file, line and key, exit 1, and
 * nothing built (no output folder, no cache touched).
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
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

  it('refuses an unknown platform with one line naming the known ones, exit 1, nothing written', async () => {
    const dir = await testdir();
    const r = await cli(['build', '--platform', 'aws,nimbus', '--out', join(dir, 'out'), '--cache', join(dir, 'cache')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('--platform aws,nimbus: nimbus is not a platform basalt build knows');
    expect(r.stderr).toContain('use one or more of qemu, metal, pxe, iso, aws, gce, azure, openstack, vmware, digitalocean, comma-separated');
    expect(existsSync(join(dir, 'out'))).toBe(false);
    expect(existsSync(join(dir, 'cache'))).toBe(false);
    const empty = await cli(['build', '--platform', 'iso,', '--out', join(dir, 'out')]);
    expect(empty.exitCode).toBe(1);
    expect(empty.stderr.trim().split('\n')).toHaveLength(1);
    expect(empty.stderr).toContain("--platform iso,: '' is not a platform basalt build knows");
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });

  it('rejects unknown flags with a usage error', async () => {
    const r = await cli(['build', '--profil', 'x']);
    expect(r.exitCode).toBe(2);
  });
});

describe('basalt build --print-profile', () => {
  it('prints the merged profile of a three-line profile and builds nothing', async () => {
    const dir = await testdir();
    const file = join(dir, 'mine.yaml');
    await writeFile(file, 'extends: default\npackages: {add: [htop]}\nfiles: [{path: /etc/motd, content: "hello\\n"}]\n');
    const r = await cli(['build', '--print-profile', '--profile', file, '--out', join(dir, 'out'), '--cache', join(dir, 'cache')]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const printed = parseYaml(r.stdout) as { packages: string[]; files: unknown[]; update: unknown; extends?: unknown };
    expect(printed.packages).toContain('htop');
    expect(printed.packages).toContain('linux-image-amd64');
    expect(printed.files).toEqual([{ path: '/etc/motd', content: 'hello\n', mode: '0644' }]);
    expect(printed.update).toEqual({ rebootStrategy: 'reboot', healthUnits: ['etcd.service', 'docker.socket'], keys: [] });
    expect(printed.extends).toBeUndefined();
    expect(existsSync(join(dir, 'out'))).toBe(false);
    expect(existsSync(join(dir, 'cache'))).toBe(false);
    const j = await cli(['--json', 'build', '--print-profile', '--profile', file]);
    expect((JSON.parse(j.stdout) as { packages: string[] }).packages).toContain('htop');
  });

  it('refuses a cycle with a message naming the files, exit 1 and no stack trace', async () => {
    const dir = await testdir();
    await writeFile(join(dir, 'a.yaml'), 'extends: b.yaml\n');
    await writeFile(join(dir, 'b.yaml'), 'extends: a.yaml\n');
    const r = await cli(['build', '--print-profile', '--profile', join(dir, 'a.yaml')]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${join(dir, 'b.yaml')}:1:10: error: extends: extends a.yaml, which leads back to itself: ${join(dir, 'a.yaml')} -> ${join(dir, 'b.yaml')} -> ${join(dir, 'a.yaml')}`);
    expect(r.stderr).toMatch(/E_PROFILE_CYCLE: remove one 'extends'/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('names the file, line and field of a bad edit', async () => {
    const dir = await testdir();
    const file = join(dir, 'p.yaml');
    await writeFile(file, 'extends: default\nkernel:\n  modules: {add: [igb], drop: [e1000]}\n');
    const r = await cli(['build', '--print-profile', '--profile', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`${file}:3:12: error: kernel.modules: want a list, or (to change an inherited list) a mapping with only add: and remove: lists`);
  });
});

/**
 * Profiles that extend others: merging (add, remove, override), chains,
 * cycles, bad fields, paths relative to the file that writes them, and the
 * printed result. The chains are read from memory (the base profiles from
 * configs/profiles/).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BasaltError } from '../../common/src/errors.js';
import { defaultProfilePath, loadProfile, parseProfile, profilesDir, profileYaml, resolveExtends, type LoadedProfile } from './profile.js';

/** Loads `file` from `files` (by absolute path), the shipped profiles from disk. */
function loader(files: Record<string, string>) {
  return (file: string): Promise<string> => (file in files ? Promise.resolve(files[file]!) : readFile(file, 'utf8'));
}

async function load(files: Record<string, string>, file = Object.keys(files).at(-1)!): Promise<LoadedProfile> {
  return loadProfile(file, loader(files));
}

/** The report of a profile that does not load. */
async function reportOf(files: Record<string, string>, file = Object.keys(files).at(-1)!): Promise<{ code: string; path: string; file: string; line: number; message: string; severity: string }[]> {
  try {
    await load(files, file);
  } catch (e) {
    expect(e).toBeInstanceOf(BasaltError);
    return (e as BasaltError).details['report'] as never;
  }
  throw new Error('the profile loaded');
}

const THREE_LINES = 'extends: default\npackages: {add: [htop]}\nfiles: [{path: /etc/motd, content: "hello\\n"}]\n';

describe('extends', () => {
  it('a three-line profile gives the default profile with one more package and one file', async () => {
    const base = await loadProfile(defaultProfilePath());
    const { profile, files, warnings } = await load({ '/t/mine.yaml': THREE_LINES });
    expect(warnings).toEqual([]);
    expect(files).toEqual([defaultProfilePath(), '/t/mine.yaml']);
    expect(profile.packages).toEqual([...base.profile.packages, 'htop']);
    expect(profile.files).toEqual([{ path: '/etc/motd', content: 'hello\n', mode: '0644' }]);
    expect({ ...profile, packages: base.profile.packages, files: [] }).toEqual(base.profile);
  });

  it('names a profile under configs/profiles/, or a path relative to the profile file', () => {
    expect(resolveExtends('default', '/x/y/p.yaml', '/repo/configs/profiles')).toBe('/repo/configs/profiles/default.yaml');
    expect(resolveExtends('../base.yaml', '/x/y/p.yaml', '/d')).toBe('/x/base.yaml');
    expect(resolveExtends('team.yaml', '/x/y/p.yaml', '/d')).toBe('/x/y/team.yaml');
    expect(resolveExtends('/abs/b.yaml', '/x/y/p.yaml', '/d')).toBe('/abs/b.yaml');
    expect(profilesDir()).toBe(join(defaultProfilePath(), '..'));
  });

  it('overrides scalars and merges mappings key by key', async () => {
    const { profile } = await load({ '/t/p.yaml': 'extends: default\nos: {version: 2.0.0}\nusr: {level: 3}\ndisk: {size: 4GiB}\n' });
    expect(profile.os).toMatchObject({ version: '2.0.0', name: 'Basalt', id: 'basalt', channel: 'stable' });
    expect(profile.usr).toMatchObject({ level: 3, compression: 'zstd', blockSize: 1024 * 1024, verity: true });
    expect(profile.disk).toEqual({ layout: 'coreos', size: 4 * 1024 ** 3 });
  });

  it('replaces a list given as a list, edits one given as add/remove', async () => {
    const { profile } = await load({
      '/t/p.yaml': [
        'extends: default',
        'kernel:',
        '  cmdline: [console=tty0]',
        '  modules: {remove: [e1000, e1000e], add: [r8169]}',
        'trim: {remove: {remove: [bin/ctr], add: [bin/docker-proxy]}, locales: {add: [de]}}',
        'initrd: {drivers: {add: [r8169]}}',
        'outputs: {remove: [pxe]}',
        '',
      ].join('\n'),
    });
    const base = (await loadProfile(defaultProfilePath())).profile;
    expect(profile.kernel.cmdline).toEqual(['console=tty0']);
    expect(profile.kernel.modules).toEqual([...base.kernel.modules.filter((m) => m !== 'e1000' && m !== 'e1000e'), 'r8169']);
    expect(profile.trim.remove).toEqual([...base.trim.remove.filter((x) => x !== 'bin/ctr'), 'bin/docker-proxy']);
    expect(profile.trim.locales).toEqual(['de']);
    expect(profile.initrd.drivers.at(-1)).toBe('r8169');
    // No profile lists outputs: the edit starts from the default.
    expect(profile.outputs).toEqual(['raw', 'qcow2']);
  });

  it('removes a pinned package by its name, and a file or user by its key; an added item with the same key replaces it', async () => {
    const files = {
      '/t/base.yaml': 'extends: default\npackages: {add: [htop=3.2.2-2, jq]}\nfiles: [{path: /etc/a, content: a}, {path: /etc/b, content: b}]\nusers: [{name: ops}, {name: dev, groups: [docker]}]\n',
      '/t/p.yaml': 'extends: base.yaml\npackages: {remove: [htop]}\nfiles: {remove: [/etc/a], add: [{path: /etc/b, content: B, mode: "0600"}, {path: /etc/c, content: c}]}\nusers: {remove: [ops], add: [{name: dev, uid: 1500}]}\n',
    };
    const { profile } = await load(files);
    expect(profile.packages).toContain('jq');
    expect(profile.packages.some((p) => p.startsWith('htop'))).toBe(false);
    expect(profile.files).toEqual([
      { path: '/etc/b', content: 'B', mode: '0600' },
      { path: '/etc/c', content: 'c', mode: '0644' },
    ]);
    expect(profile.users).toEqual([{ name: 'dev', uid: 1500, groups: [], shell: '/bin/bash' }]);
  });

  it('follows a chain of three files, each layer over the one it extends', async () => {
    const { profile, files } = await load({
      '/t/team/team.yaml': 'extends: default\npackages: {add: [jq]}\nupdate: {server: https://updates.example.com/v1/update/, group: team}\n',
      '/t/me/mid.yaml': 'extends: ../team/team.yaml\npackages: {add: [htop]}\nupdate: {group: canary}\n',
      '/t/me/leaf.yaml': 'extends: ./mid.yaml\npackages: {remove: [jq]}\n',
    });
    expect(files).toEqual([defaultProfilePath(), '/t/team/team.yaml', '/t/me/mid.yaml', '/t/me/leaf.yaml']);
    expect(profile.packages.slice(-1)).toEqual(['htop']);
    expect(profile.packages).not.toContain('jq');
    expect(profile.update).toMatchObject({ server: 'https://updates.example.com/v1/update/', group: 'canary', rebootStrategy: 'reboot' });
  });

  it('takes paths relative to the file that writes them', async () => {
    const files = {
      '/t/team/team.yaml': 'extends: default\nupdate: {keys: [keys/release.pub.asc]}\n',
      '/t/me/p.yaml': 'extends: ../team/team.yaml\nupdate: {keys: {add: [mine.asc]}}\n',
    };
    // The keys do not exist: the report names each with the file and line that wrote it.
    const report = await reportOf(files);
    expect(report).toEqual([
      expect.objectContaining({ code: 'E_PROFILE_PATH', path: 'update.keys[0]', file: '/t/team/team.yaml', line: 2, message: '/t/team/keys/release.pub.asc does not exist' }),
      expect.objectContaining({ code: 'E_PROFILE_PATH', path: 'update.keys[1]', file: '/t/me/p.yaml', line: 2, message: '/t/me/mine.asc does not exist' }),
    ]);
  });

  it('takes an overlay folder of usr/ and etc/ only, relative to the profile', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'basalt-overlay-'));
    try {
      await mkdir(join(dir, 'ov/usr/lib/systemd/system'), { recursive: true });
      await mkdir(join(dir, 'ov/etc'), { recursive: true });
      await writeFile(join(dir, 'k.asc'), 'key');
      const file = join(dir, 'p.yaml');
      const { profile } = await load({ [file]: 'extends: default\noverlay: ov\nupdate: {keys: [k.asc]}\n' });
      expect(profile.overlay).toEqual([join(dir, 'ov')]);
      expect(profile.update.keys).toEqual([join(dir, 'k.asc')]);
      await mkdir(join(dir, 'ov/opt'));
      expect(await reportOf({ [file]: 'extends: default\noverlay: [ov]\n' })).toEqual([
        expect.objectContaining({ code: 'E_PROFILE_PATH', path: 'overlay[0]', file, line: 2, message: `${join(dir, 'ov')} holds opt: only usr/ and etc/ go into an image (put them under usr/ or etc/)` }),
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a cycle, naming the files', async () => {
    const report = await reportOf({ '/t/a.yaml': 'extends: b.yaml\n', '/t/b.yaml': 'extends: ./a.yaml\n' }, '/t/a.yaml');
    expect(report).toEqual([expect.objectContaining({ code: 'E_PROFILE_CYCLE', path: 'extends', file: '/t/b.yaml', line: 1, message: expect.stringContaining('/t/a.yaml -> /t/b.yaml -> /t/a.yaml') as unknown })]);
    const self = await reportOf({ '/t/s.yaml': 'extends: s.yaml\n' });
    expect(self[0]).toMatchObject({ code: 'E_PROFILE_CYCLE', file: '/t/s.yaml' });
  });

  it('names the file and line of an extends it cannot follow', async () => {
    const report = await reportOf({ '/t/p.yaml': 'formatVersion: 1\nextends: nosuch\n' });
    expect(report).toEqual([expect.objectContaining({ code: 'E_PROFILE_EXTENDS', file: '/t/p.yaml', line: 2, message: expect.stringMatching(/configs\/profiles\/nosuch\.yaml: no such file/) as unknown })]);
    const bad = await reportOf({ '/t/p.yaml': 'extends: [default]\n' });
    expect(bad[0]).toMatchObject({ code: 'E_PROFILE_TYPE', path: 'extends', line: 1 });
  });

  it('reports bad edits with the file, line and field, and says what to do', async () => {
    const files = {
      '/t/p.yaml': ['extends: default', 'packages: {add: 5}', 'kernel: {modules: {add: [x], drop: [y]}}', 'purge: {remove: [[nested]]}', 'usr: {compression: brotli}', ''].join('\n'),
    };
    const report = await reportOf(files);
    const by = Object.fromEntries(report.map((r) => [r.path, r]));
    expect(by['packages.add']).toMatchObject({ code: 'E_PROFILE_TYPE', file: '/t/p.yaml', line: 2, message: 'want a list of the items to add' });
    expect(by['kernel.modules']).toMatchObject({ code: 'E_PROFILE_TYPE', line: 3, message: expect.stringContaining('add: and remove:') as unknown });
    expect(by['purge.remove[0]']).toMatchObject({ code: 'E_PROFILE_TYPE', line: 4 });
    expect(by['usr.compression']).toMatchObject({ code: 'E_PROFILE_VALUE', line: 5 });
    await expect(load(files)).rejects.toThrow(/^profile \/t\/p\.yaml is invalid:\n\/t\/p\.yaml:2:\d+: error: packages\.add: want a list[^]*E_PROFILE_TYPE: see configs\/profiles\/default\.yaml/);
  });

  it("refuses a user the image has, at the line of its name", async () => {
    const report = await reportOf({ '/t/p.yaml': 'extends: default\nusers:\n  - {name: ops}\n  - {name: core, groups: [docker]}\n' });
    expect(report).toEqual([expect.objectContaining({ code: 'E_PROFILE_VALUE', path: 'users[1].name', file: '/t/p.yaml', line: 4, column: 12 })]);
  });

  it('says what an empty profile needs', async () => {
    expect(await reportOf({ '/t/empty.yaml': '# nothing yet\n' })).toEqual([expect.objectContaining({ code: 'E_PROFILE_MISSING', file: '/t/empty.yaml', line: 1, message: expect.stringContaining('extends: default') as unknown })]);
  });

  it('warns when a removal takes nothing away', async () => {
    const { warnings } = await load({ '/t/p.yaml': 'extends: default\npackages: {remove: [vim]}\n' });
    expect(warnings).toEqual([expect.objectContaining({ code: 'E_PROFILE_REMOVE_MISSING', path: 'packages.remove[0]', file: '/t/p.yaml', line: 2 })]);
  });

  it('checks the merged result: a removal of a package the image needs is an error in the file that removed it', async () => {
    const report = await reportOf({ '/t/p.yaml': 'extends: default\npackages: {remove: [systemd]}\n' });
    expect(report).toEqual([expect.objectContaining({ code: 'E_PROFILE_MISSING_PACKAGE', file: '/t/p.yaml', line: 2 })]);
  });

  it('a profile without extends reads as before, and add/remove there starts from nothing', () => {
    const one = parseProfile('formatVersion: 1\nos: {version: 1.0.0}\nsource: {suite: bookworm}\npackages: {add: [linux-image-amd64, systemd, systemd-boot-efi, dracut-core, cryptsetup-bin]}\n', 'min.yaml');
    expect(one.report).toEqual([]);
    expect(one.value?.packages).toHaveLength(5);
    const ext = parseProfile(THREE_LINES, 'mine.yaml');
    expect(ext.report[0]).toMatchObject({ code: 'E_PROFILE_EXTENDS', path: 'extends' });
  });
});

describe('update settings', () => {
  it('take an Omaha server or a static repository (not both), a group, a reboot strategy and window, health units', async () => {
    const { profile } = await load({
      '/t/p.yaml': 'extends: default\nupdate:\n  repository: https://example.com/basalt/\n  group: beta\n  rebootStrategy: etcd-lock\n  rebootWindow: {start: "Thu 23:00", length: 1h30m}\n  healthUnits: [etcd.service]\n',
    });
    expect(profile.update).toEqual({ repository: 'https://example.com/basalt/', group: 'beta', rebootStrategy: 'etcd-lock', rebootWindow: { start: 'Thu 23:00', length: '1h30m' }, healthUnits: ['etcd.service'], keys: [] });
    const report = await reportOf({ '/t/p.yaml': 'extends: default\nupdate:\n  server: https://a/\n  repository: https://b/\n  rebootStrategy: sometimes\n  rebootWindow: {start: "Thu 25:00", length: soon}\n' });
    expect(report.map((r) => [r.path, r.line])).toEqual([
      ['update.rebootStrategy', 5],
      ['update.rebootWindow.length', 6],
    ]);
    const r2 = await reportOf({ '/t/p.yaml': 'extends: default\nupdate:\n  server: https://a/\n  repository: https://b/\n  rebootWindow: {start: "Thu 25:00", length: 1h}\n' });
    expect(r2.map((r) => [r.path, r.line])).toEqual([
      ['update.repository', 4],
      ['update.rebootWindow.start', 5],
    ]);
  });

  it('defaults: group from the channel (unset), reboot, the default health units', async () => {
    const { profile } = await loadProfile(defaultProfilePath());
    expect(profile.update).toEqual({ rebootStrategy: 'reboot', healthUnits: ['etcd.service', 'docker.socket'], keys: [] });
  });
});

describe('--print-profile output', () => {
  it('is YAML that reads back as the same profile', async () => {
    const { profile } = await load({ '/t/mine.yaml': THREE_LINES });
    const text = profileYaml(profile);
    expect(text).not.toMatch(/extends/);
    const again = parseProfile(text, 'printed.yaml');
    expect(again.report).toEqual([]);
    expect(again.value).toEqual(profile);
  });
});

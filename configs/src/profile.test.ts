import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeCode } from '../../common/src/errors.js';
import { PROFILE_ERRORS } from './errors.js';
import { defaultProfilePath, loadProfile, parseProfile } from './profile.js';
import { formatReport } from './report.js';

const base = readFileSync(defaultProfilePath(), 'utf8');

describe('parseProfile', () => {
  it('accepts the default profile with no warnings', () => {
    const { value, report } = parseProfile(base, 'default.yaml');
    expect(report).toEqual([]);
    expect(value?.os.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(value?.usr.blockSize).toBe(1024 * 1024);
    expect(value?.disk.size).toBe(8 * 1024 ** 3);
    expect(value?.packages).toContain('etcd-server');
  });

  it('fills defaults for optional sections', () => {
    const { value, report } = parseProfile(
      'formatVersion: 1\nos: {version: 1.0.0}\nsource: {suite: bookworm}\npackages: [linux-image-amd64, systemd, systemd-boot-efi, dracut-core, cryptsetup-bin]\n',
      'min.yaml',
    );
    expect(report).toEqual([]);
    expect(value?.usr).toEqual({ fs: 'squashfs', compression: 'zstd', blockSize: 131072, verity: true });
    expect(value?.outputs).toEqual(['raw', 'qcow2', 'pxe']);
  });

  it('takes release keys and extra files, and names a bad file path', () => {
    const ok = parseProfile(base.replace(/^ {2}keys: \[\]/m, '  keys: [keys/release.pub.asc]') + 'files:\n  - path: /usr/lib/x.conf\n    content: "a=1\\n"\n', '/p/k.yaml');
    expect(ok.report).toEqual([]);
    // Relative to the profile file that names them.
    expect(ok.value?.update.keys).toEqual(['/p/keys/release.pub.asc']);
    const old = parseProfile(base + 'keys: [keys/release.pub.asc]\n', '/p/k.yaml');
    expect(old.value?.update.keys).toEqual(['/p/keys/release.pub.asc']);
    expect(old.report).toEqual([expect.objectContaining({ severity: 'warning', code: 'E_PROFILE_DEPRECATED', path: 'keys', line: base.split('\n').length })]);
    expect(ok.value?.files).toEqual([{ path: '/usr/lib/x.conf', content: 'a=1\n', mode: '0644' }]);
    const bad = parseProfile(base + 'files:\n  - path: /usr/../boot/x\n    content: x\n', 'k.yaml');
    expect(bad.value).toBeUndefined();
    expect(bad.report[0]).toMatchObject({ path: 'files[0].path', file: 'k.yaml' });
    expect(bad.report[0]!.line).toBe(base.split('\n').length + 1);
  });

  it('reports file, line, column and key for each problem and returns no value', () => {
    const bad = base
      .replace('compression: zstd', 'compression: brotli')
      .replace('verity: true', 'verity: maybe')
      .replace('size: 8GiB', 'size: lots')
      .replace('  version: 0.1.0', '  version: one');
    const { value, report } = parseProfile(bad, 'bad.yaml');
    expect(value).toBeUndefined();
    const lines = bad.split('\n');
    const lineOf = (s: string) => lines.findIndex((l) => l.includes(s)) + 1;
    const byPath = Object.fromEntries(report.map((r) => [r.path, r]));
    expect(byPath['usr.compression']?.line).toBe(lineOf('compression: brotli'));
    expect(byPath['usr.compression']?.message).toMatch(/brotli.*not one of/);
    expect(byPath['usr.verity']?.line).toBe(lineOf('verity: maybe'));
    expect(byPath['disk.size']?.line).toBe(lineOf('size: lots'));
    expect(byPath['os.version']?.line).toBe(lineOf('version: one'));
    const text = formatReport(report);
    expect(text).toMatch(new RegExp(`^bad\\.yaml:${lineOf('compression: brotli')}:\\d+: error: usr\\.compression: `, 'm'));
  });

  it('warns on unknown keys with their line, and errors on missing required keys', () => {
    const { value, report } = parseProfile('formatVersion: 1\nos: {version: 1.0.0}\nsource: {suite: bookworm}\npackagez: [x]\n', 'p.yaml');
    expect(value).toBeUndefined();
    expect(report).toContainEqual(expect.objectContaining({ severity: 'warning', path: 'packagez', line: 4 }));
    expect(report).toContainEqual(expect.objectContaining({ severity: 'error', path: 'packages', code: 'E_PROFILE_MISSING' }));
  });

  it('requires the packages a bootable image needs', () => {
    const { report } = parseProfile(base.replace('  - systemd-boot-efi\n', ''), 'p.yaml');
    expect(report.find((r) => r.code === 'E_PROFILE_MISSING_PACKAGE')?.message).toMatch(/systemd-boot-efi/);
  });

  it('reports YAML syntax errors with a line', () => {
    const { value, report } = parseProfile('formatVersion: 1\nos: [unclosed\n', 's.yaml');
    expect(value).toBeUndefined();
    expect(report[0]).toMatchObject({ code: 'E_PROFILE_SYNTAX', file: 's.yaml' });
    expect(report[0]!.line).toBeGreaterThan(0);
  });

  it('refuses a newer format version', () => {
    const { report } = parseProfile(base.replace('formatVersion: 1', 'formatVersion: 2'), 'p.yaml');
    expect(report).toEqual([expect.objectContaining({ code: 'E_PROFILE_VERSION', line: 2 })]);
  });

  it('takes plain scalars that YAML 1.1 would type as numbers or booleans as written', () => {
    const { value } = parseProfile(base.replace('  version: 0.1.0', '  version: 1.10.0').replace('modules: [', 'modules: [e1000, no, 010, '), 'p.yaml');
    expect(value?.os.version).toBe('1.10.0');
    expect(value?.kernel.modules.slice(0, 3)).toEqual(['e1000', 'no', '010']);
  });

  it('checks rules across keys', () => {
    const { report } = parseProfile(base.replace('fs: squashfs', 'fs: erofs'), 'p.yaml');
    expect(report.find((r) => r.path === 'usr.compression')?.message).toMatch(/lz4/);
    const r2 = parseProfile(base.replace('blockSize: 1MiB', 'blockSize: 100000'), 'p.yaml').report;
    expect(r2.find((r) => r.path === 'usr.blockSize')?.message).toMatch(/power of two/);
  });
});

describe('profile error codes', () => {
  it('keep their strings, each with a meaning and a default hint', () => {
    expect(Object.keys(PROFILE_ERRORS).sort()).toEqual([
      'E_PROFILE_CYCLE',
      'E_PROFILE_DEPRECATED',
      'E_PROFILE_DUPLICATE',
      'E_PROFILE_EXTENDS',
      'E_PROFILE_INVALID',
      'E_PROFILE_MISSING',
      'E_PROFILE_MISSING_PACKAGE',
      'E_PROFILE_PATH',
      'E_PROFILE_REMOVE_MISSING',
      'E_PROFILE_SYNTAX',
      'E_PROFILE_TYPE',
      'E_PROFILE_UNKNOWN_KEY',
      'E_PROFILE_VALUE',
      'E_PROFILE_VERSION',
    ]);
    for (const [code, def] of Object.entries(PROFILE_ERRORS)) {
      expect(def.code).toBe(code);
      expect(def.meaning).not.toBe('');
      expect(def.hint).toBeTruthy();
      expect(describeCode(code)?.part).toBe('configs');
    }
  });

  it('a profile with errors throws E_PROFILE_INVALID with the report and the default hint', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'basalt-profile-'));
    try {
      const file = join(dir, 'bad.yaml');
      await writeFile(file, base.replace('compression: zstd', 'compression: brotli'));
      await expect(loadProfile(file)).rejects.toMatchObject({ code: 'E_PROFILE_INVALID', hint: 'fix the keys above; nothing was built', details: { report: [expect.objectContaining({ code: 'E_PROFILE_VALUE', path: 'usr.compression' })] } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

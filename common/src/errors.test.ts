import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BasaltError, COMMON_ERRORS, defineErrors, describeCode } from './errors.js';
import { projectRoot } from './paths.js';

/** Every TypeScript source of the project that ships or runs (tests and fixtures aside). */
function sources(): string[] {
  const root = projectRoot();
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (['node_modules', 'dist', 'out', 'artifacts', '.git'].includes(e.name)) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') && !e.name.endsWith('.test.ts')) out.push(p);
    }
  };
  for (const d of ['cli', 'common', 'builder', 'update-engine', 'cloudinit', 'configs', 'qemu-test/src', 'bench']) walk(join(root, d));
  return out;
}

describe('error catalogues', () => {
  it('an entry gives its code and default hint; a thrower may give a sharper hint', () => {
    const e = new BasaltError(COMMON_ERRORS.E_NOT_FOUND, 'x: no such file');
    expect(e.code).toBe('E_NOT_FOUND');
    expect(e.hint).toBe(COMMON_ERRORS.E_NOT_FOUND.hint);
    expect(new BasaltError(COMMON_ERRORS.E_NOT_FOUND, 'x', { hint: 'look in /etc' }).hint).toBe('look in /etc');
    expect(describeCode('E_USAGE')).toMatchObject({ part: 'common', code: 'E_USAGE' });
  });

  it('a code belongs to one part, and codes are E_UPPER_CASE', () => {
    expect(() => defineErrors('someone-else', { E_USAGE: { meaning: 'again' } })).toThrow(/defined by both common and someone-else/);
    expect(() => defineErrors('x', { bad: { meaning: 'lower case' } })).toThrow(/E_UPPER_CASE/);
  });

  it('production code throws catalogue entries, never a code written as a string', () => {
    const offenders: string[] = [];
    for (const f of sources()) {
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/new BasaltError\(\s*'E_[A-Z0-9_]+'/g)) {
        const line = text.slice(0, m.index).split('\n').length;
        offenders.push(`${relative(projectRoot(), f)}:${line}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});

/**
 * The rooms' import rules of docs/ARCHITECTURE.md, checked on every source
 * file by resolving its relative imports: cli/ is the roof that nothing
 * imports; common/ imports no other part; the builder imports neither the
 * update-engine nor cloudinit; the host side of the update-engine (host/,
 * format/, locksmith/) never imports the publisher (publish/); qemu-test/src
 * uses other parts only through common/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from './paths.js';

const root = projectRoot();

/** [file, imported file] for every relative import of every non-test source, as paths from the root. */
function edges(): [string, string][] {
  const out: [string, string][] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!['node_modules', 'dist', 'testdata', 'artifacts'].includes(e.name)) walk(p);
      } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) {
        const text = readFileSync(join(root, p), 'utf8');
        for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)) {
          const spec = m[1] ?? m[2]!;
          out.push([p, relative(root, resolve(root, dirname(p), spec))]);
        }
      }
    }
  };
  for (const d of ['cli', 'common/src', 'builder/src', 'update-engine/src', 'cloudinit/src', 'configs/src', 'qemu-test/src']) walk(d);
  return out;
}

const inside = (p: string, dir: string) => p === dir || p.startsWith(dir + '/');

describe('the rooms and their doors', () => {
  const all = edges();
  const broken = (rule: (from: string, to: string) => boolean) => all.filter(([f, t]) => rule(f, t)).map(([f, t]) => `${f} -> ${t}`);

  it('finds the imports it checks', () => {
    expect(all.length).toBeGreaterThan(200);
  });
  it('nothing imports cli/ (the roof)', () => {
    expect(broken((f, t) => !inside(f, 'cli') && inside(t, 'cli'))).toEqual([]);
  });
  it('common/ imports no other part', () => {
    expect(broken((f, t) => inside(f, 'common') && !inside(t, 'common'))).toEqual([]);
  });
  it('the builder imports neither the update-engine nor cloudinit', () => {
    expect(broken((f, t) => inside(f, 'builder') && (inside(t, 'update-engine') || inside(t, 'cloudinit')))).toEqual([]);
  });
  it('the host side of the update-engine never imports the publisher', () => {
    const hostSide = (f: string) => ['host', 'format', 'locksmith'].some((r) => inside(f, `update-engine/src/${r}`));
    expect(broken((f, t) => hostSide(f) && inside(t, 'update-engine/src/publish'))).toEqual([]);
  });
  it('format/ is pure of the other rooms', () => {
    expect(broken((f, t) => inside(f, 'update-engine/src/format') && inside(t, 'update-engine/src') && !inside(t, 'update-engine/src/format') && t !== 'update-engine/src/errors.js')).toEqual([]);
  });
  it('qemu-test/src uses other parts only through common/', () => {
    expect(broken((f, t) => inside(f, 'qemu-test/src') && !inside(t, 'qemu-test') && !inside(t, 'common'))).toEqual([]);
  });
});

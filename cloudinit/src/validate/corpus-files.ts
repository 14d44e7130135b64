/** Locates the golden corpus (cloudinit/testdata/corpus) and reads its .expected files. Reads files only. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const corpusDir = join(import.meta.dirname, '..', '..', '..', ...(import.meta.dirname.includes('/dist/') ? ['..'] : []), 'cloudinit', 'testdata', 'corpus');

export function corpusCases(): string[] {
  return readdirSync(corpusDir).filter((f) => f.endsWith('.yml')).map((f) => f.slice(0, -4)).sort();
}

/** The expected entries (sorted) and exit code of a case; '#' lines are notes. */
export function loadExpected(name: string): { entries: string[]; exit: number } {
  const lines = readFileSync(join(corpusDir, name + '.expected'), 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  const exit = Number(lines.pop()!.replace(/^exit /, ''));
  return { entries: lines.sort(), exit };
}

/**
 * The golden corpus, in-process: every cloudinit/testdata/corpus/*.yml
 * against its .expected file (entries order-insensitive, plus the exit code).
 * Expected outputs were recorded from coreos-cloudinit v1.14.0; for the cases
 * where v1.14.0 crashed, the file says so and holds Basalt's entries.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decompressIfGzip, formatEntry, validateUserData } from './validate.js';
import { corpusCases, corpusDir, loadExpected } from './corpus-files.js';

const cases = corpusCases();

describe('golden corpus (in-process)', () => {
  it('has a large corpus with an expected file per case', () => {
    expect(cases.length).toBeGreaterThanOrEqual(150);
  });
  for (const name of cases) {
    it(name, () => {
      const raw = new Uint8Array(readFileSync(join(corpusDir, name + '.yml')));
      const { data } = decompressIfGzip(raw);
      const r = validateUserData(data);
      const got = r.entries.map(formatEntry).sort();
      const want = loadExpected(name);
      expect(got).toEqual(want.entries);
      expect(r.entries.length > 0 ? 1 : 0).toBe(want.exit);
    });
  }
});

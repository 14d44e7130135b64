import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CDC_MAX, CDC_MIN, cdcCuts, MAX_PIECE, planDelta, seedIndex } from './delta.js';

describe('delta planning', () => {
  it('cuts content-defined chunks between CDC_MIN and CDC_MAX, covering the data, the same cuts for the same content wherever it sits', () => {
    const data = randomBytes(3 * 1024 * 1024);
    const cuts = cdcCuts(data);
    expect(cuts.at(-1)).toBe(data.length);
    cuts.forEach((c, i) => {
      const len = c - (cuts[i - 1] ?? 0);
      if (i < cuts.length - 1) expect(len).toBeGreaterThanOrEqual(CDC_MIN);
      expect(len).toBeLessThanOrEqual(CDC_MAX);
    });
    // The same bytes behind 1000 inserted bytes: after the first chunks the cuts are the same, moved by 1000.
    const moved = cdcCuts(Buffer.concat([randomBytes(1000), data]));
    const shifted = new Set(moved.map((c) => c - 1000));
    expect(cuts.slice(3).filter((c) => shifted.has(c)).length).toBe(cuts.length - 3);
  });

  it('plans a changed middle as data and the rest as seed pieces, contiguous, none over MAX_PIECE', () => {
    const seed = randomBytes(12 * 1024 * 1024);
    const image = Buffer.concat([seed.subarray(0, 5_000_000), randomBytes(70_000), seed.subarray(5_000_000)]);
    const plan = planDelta(image, seedIndex(seed));
    let at = 0;
    for (const p of plan) {
      expect(p.at).toBe(at);
      expect(p.length).toBeLessThanOrEqual(MAX_PIECE);
      if (p.kind === 'seed') expect(Buffer.compare(image.subarray(p.at, p.at + p.length), seed.subarray(p.seedOffset, p.seedOffset + p.length))).toBe(0);
      at += p.length;
    }
    expect(at).toBe(image.length);
    const data = plan.filter((p) => p.kind === 'data').reduce((a, p) => a + p.length, 0);
    // About the inserted bytes and the chunks around them, not the 7 MB behind them.
    expect(data).toBeGreaterThanOrEqual(70_000);
    expect(data).toBeLessThan(70_000 + 4 * CDC_MAX);
  });

  it('plans an image unlike the seed as data only', () => {
    const plan = planDelta(randomBytes(1024 * 1024), seedIndex(randomBytes(1024 * 1024)));
    expect(plan.every((p) => p.kind === 'data')).toBe(true);
  });
});

describe('delta pieces', () => {
  it('splits pieces longer than the limit, seed parts keeping their place in the seed', () => {
    const seed = randomBytes(2 * 1024 * 1024);
    const plan = planDelta(seed, seedIndex(seed), 100_000);
    expect(plan.every((p) => p.kind === 'seed' && p.length <= 100_000 && p.seedOffset === p.at)).toBe(true);
    expect(plan.reduce((a, p) => a + p.length, 0)).toBe(seed.length);
  });
});

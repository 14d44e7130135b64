import { describe, expect, it } from 'vitest';
import { entriesToPrune, tmpOwner } from './cache-prune.js';

describe('entriesToPrune', () => {
  const alive = (pid: number) => pid === 100;

  it('keeps the current key and the newest others, removes the rest', () => {
    const entries = [
      { name: 'a', usedMs: 1 },
      { name: 'b', usedMs: 5 },
      { name: 'cur', usedMs: 0 },
      { name: 'c', usedMs: 3 },
      { name: 'd', usedMs: 4 },
    ];
    expect(entriesToPrune(entries, 'cur', 2, alive).sort()).toEqual(['a', 'c']);
    expect(entriesToPrune(entries, 'cur', 4, alive)).toEqual([]);
    expect(entriesToPrune(entries, 'cur', 0, alive).sort()).toEqual(['a', 'b', 'c', 'd']);
  });

  it("never takes a running build's temporary folder; a dead one's goes", () => {
    const entries = [
      { name: 'k1.tmp-100', usedMs: 1 },
      { name: 'k2.tmp-200', usedMs: 1 },
      { name: 'k3', usedMs: 2 },
    ];
    expect(entriesToPrune(entries, 'k3', 0, alive)).toEqual(['k2.tmp-200']);
  });

  it('reads the owner of a temporary folder', () => {
    expect(tmpOwner('0123abcd.tmp-4242')).toBe(4242);
    expect(tmpOwner('0123abcd')).toBeUndefined();
  });
});

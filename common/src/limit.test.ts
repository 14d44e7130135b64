import { describe, expect, it } from 'vitest';
import { mapLimit } from './limit.js';

describe('mapLimit', () => {
  it('keeps the order and never has more than the limit in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const r = await mapLimit([5, 1, 4, 2, 3], 2, async (x) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise<void>((res) => setImmediate(res));
      inFlight--;
      return x * 10;
    });
    expect(r).toEqual([50, 10, 40, 20, 30]);
    expect(most).toBe(2);
  });
  it('starts nothing new after a failure and throws it once the calls in flight settle', async () => {
    const started: number[] = [];
    let settledAfter = false;
    const p = mapLimit([1, 2, 3, 4, 5, 6], 2, async (x) => {
      started.push(x);
      if (x === 2) throw new Error('two failed');
      await new Promise<void>((res) => setImmediate(res));
      if (x === 1) settledAfter = true;
      return x;
    });
    await expect(p).rejects.toThrow('two failed');
    expect(settledAfter).toBe(true);
    expect(started.length).toBeLessThan(6);
  });
  it('handles an empty list', async () => {
    expect(await mapLimit([], 4, async () => 1)).toEqual([]);
  });
});

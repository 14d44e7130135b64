import { describe, expect, it } from 'vitest';
import { throttled } from '../pipeline.js';
import { mmdebstrapPhase } from './packages.js';
import { squashfsProgress } from './usr-image.js';

describe('build progress', () => {
  it("reads mmdebstrap's last announced phase", () => {
    expect(mmdebstrapPhase('I: chroot architecture amd64 is equal to the native architecture\nI: downloading packages with apt...\n')).toBe('downloading packages with apt');
    expect(mmdebstrapPhase('Get:1 http://deb.debian.org/debian bookworm/main amd64 libc6 [2754 kB]\n')).toBeUndefined();
  });

  it("reads the last state of mksquashfs's progress bar from a chunk of redraws", () => {
    const chunk = '\r[====          ] 120/5678   2%\r[=======|      ] 2840/5678  50%';
    expect(squashfsProgress(chunk)).toEqual({ done: 2840, total: 5678, percent: 50 });
    expect(squashfsProgress('Parallel mksquashfs: Using 2 processors\n')).toBeUndefined();
  });

  it('passes a line on at most every interval (every line on a terminal)', () => {
    let t = 0;
    const seen: string[] = [];
    const say = throttled((x) => seen.push(x), 10_000, () => t);
    for (const [at, x] of [[0, 'a'], [5_000, 'b'], [10_000, 'c'], [19_999, 'd'], [20_001, 'e']] as const) {
      t = at;
      say(x);
    }
    expect(seen).toEqual(['a', 'c', 'e']);
    const all: string[] = [];
    const tty = throttled((x) => all.push(x), 0, () => 0);
    tty('a');
    tty('b');
    expect(all).toEqual(['a', 'b']);
  });
});

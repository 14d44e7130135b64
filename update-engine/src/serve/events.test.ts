import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventLog } from './events.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'basalt-events-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the bounded event log', () => {
  it('keeps at most perMachine records of one machine per window, and counts the rest', async () => {
    let now = 0;
    const log = new EventLog(join(dir, 'ev.jsonl'), { maxFileBytes: 1 << 20, perMachine: 3, windowMs: 1000, maxMachines: 10 }, () => now);
    for (let i = 0; i < 10; i++) await log.append('flood', { i });
    await log.append('quiet', { i: 0 });
    expect((await readFile(log.path, 'utf8')).trim().split('\n')).toHaveLength(4);
    expect(log.dropped).toBe(7);
    now = 1000;
    await log.append('flood', { i: 10 });
    expect((await readFile(log.path, 'utf8')).trim().split('\n')).toHaveLength(5);
  });

  it('rotates the file before it passes maxFileBytes, so the log takes at most twice that', async () => {
    const log = new EventLog(join(dir, 'ev.jsonl'), { maxFileBytes: 1000, perMachine: 1e9, windowMs: 1e9, maxMachines: 10 });
    for (let i = 0; i < 200; i++) await log.append('m', { pad: 'x'.repeat(40), i });
    expect((await stat(log.path)).size).toBeLessThanOrEqual(1000);
    expect((await stat(`${log.path}.1`)).size).toBeLessThanOrEqual(1000);
    const last = (await readFile(log.path, 'utf8')).trim().split('\n').at(-1)!;
    expect(JSON.parse(last)).toMatchObject({ i: 199 });
  });

  it('a failed write fails its own record only; the next one is written', async () => {
    const log = new EventLog(join(dir, 'later/ev.jsonl'));
    await expect(log.append('m', { i: 1 })).rejects.toMatchObject({ code: 'ENOENT' });
    await mkdir(join(dir, 'later'));
    await log.append('m', { i: 2 });
    expect(JSON.parse(await readFile(log.path, 'utf8'))).toEqual({ i: 2 });
  });

  it('forgets the oldest machines when it remembers too many', () => {
    const log = new EventLog(join(dir, 'ev.jsonl'), { maxFileBytes: 1 << 20, perMachine: 1, windowMs: 1e9, maxMachines: 4 }, () => 0);
    for (let i = 0; i < 100; i++) expect(log.admit(`m${i}`)).toBe(true);
    // m99 is still remembered: a second record in its window is dropped.
    expect(log.admit('m99')).toBe(false);
  });
});

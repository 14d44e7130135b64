import { mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { boundString, DEFAULT_EVENT_LIMITS, EventLog, eventRecord } from './events.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'basalt-events-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const limits = (o: Partial<typeof DEFAULT_EVENT_LIMITS>) => ({ ...DEFAULT_EVENT_LIMITS, ...o });
const lines = async (path: string) => (await readFile(path, 'utf8')).trim().split('\n');

describe('what a record holds (pure)', () => {
  it('only the known fields, strings cut to maxFieldChars, numbers only when finite', () => {
    const r = eventRecord({ kind: 'event', machineId: 'm'.repeat(70_000), eventType: 3, eventResult: Number.NaN, errorCode: null, evil: 'x'.repeat(1000), __proto__: { polluted: true }, version: 42 }, 128);
    expect(Object.keys(r).sort()).toEqual(['errorCode', 'eventType', 'kind', 'machineId']);
    expect(r['machineId']).toHaveLength(128);
    expect(r['machineId']).toMatch(/^m{127}…$/);
    expect(r['errorCode']).toBeNull();
  });
  it('boundString cuts by code points, never inside a surrogate pair', () => {
    expect(boundString('abc', 3)).toBe('abc');
    expect(boundString('abcd', 3)).toBe('ab…');
    expect(boundString('😀😀😀😀', 3)).toBe('😀😀…');
  });
});

describe('the bounded event log', () => {
  it('keeps at most perMachine records of one machine per window, and counts the rest', async () => {
    let now = 0;
    const log = new EventLog(join(dir, 'ev.jsonl'), limits({ maxFileBytes: 1 << 20, perMachine: 3, windowMs: 1000, maxMachines: 10 }), () => now);
    for (let i = 0; i < 10; i++) await log.append('flood', { kind: 'event', errorCode: i });
    await log.append('quiet', { kind: 'event', errorCode: 0 });
    expect(await lines(log.path)).toHaveLength(4);
    expect(log.dropped).toBe(7);
    now = 1000;
    await log.append('flood', { kind: 'event', errorCode: 10 });
    expect(await lines(log.path)).toHaveLength(5);
  });

  it('a flood of long machine ids counts each by its bounded form (the memory of the counts stays bounded)', async () => {
    const log = new EventLog(join(dir, 'ev.jsonl'), limits({ perMachine: 1, maxFieldChars: 8 }), () => 0);
    // Ids that differ only after the 7th character are one machine: at most maxFieldChars of an id is kept anywhere.
    await log.append('machine-A'.repeat(1000), { kind: 'ping' });
    await log.append('machine-B'.repeat(1000), { kind: 'ping' });
    expect(await lines(log.path)).toHaveLength(1);
    expect(log.dropped).toBe(1);
  });

  it('rotates before a file passes maxFileBytes and keeps keepFiles old ones, so the log takes at most (keepFiles + 1) x that', async () => {
    const log = new EventLog(join(dir, 'ev.jsonl'), limits({ maxFileBytes: 1000, keepFiles: 2, perMachine: 1e9, windowMs: 1e9, maxMachines: 10 }));
    for (let i = 0; i < 200; i++) await log.append('m', { kind: 'event', reason: 'x'.repeat(40), errorCode: i });
    expect((await readdir(dir)).sort()).toEqual(['ev.jsonl', 'ev.jsonl.1', 'ev.jsonl.2']);
    for (const f of ['ev.jsonl', 'ev.jsonl.1', 'ev.jsonl.2']) expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(1000);
    expect(JSON.parse((await lines(log.path)).at(-1)!)).toMatchObject({ errorCode: 199 });
    // The newest rotated file continues where the oldest left off.
    const first1 = JSON.parse((await lines(`${log.path}.1`))[0]!) as { errorCode: number };
    const last2 = JSON.parse((await lines(`${log.path}.2`)).at(-1)!) as { errorCode: number };
    expect(first1.errorCode).toBe(last2.errorCode + 1);
  });

  it('keepFiles 0: the file is started again, nothing kept', async () => {
    const log = new EventLog(join(dir, 'ev.jsonl'), limits({ maxFileBytes: 500, keepFiles: 0, perMachine: 1e9 }));
    for (let i = 0; i < 50; i++) await log.append('m', { kind: 'event', errorCode: i });
    expect(await readdir(dir)).toEqual(['ev.jsonl']);
    expect((await stat(log.path)).size).toBeLessThanOrEqual(500);
  });

  it('a failed write fails its own record only; the next one is written', async () => {
    const log = new EventLog(join(dir, 'later/ev.jsonl'));
    await expect(log.append('m', { kind: 'ping', errorCode: 1 })).rejects.toMatchObject({ code: 'ENOENT' });
    await mkdir(join(dir, 'later'));
    await log.append('m', { kind: 'ping', errorCode: 2 });
    expect(JSON.parse(await readFile(log.path, 'utf8'))).toEqual({ kind: 'ping', errorCode: 2 });
  });

  it('forgets the oldest machines when it remembers too many', () => {
    const log = new EventLog(join(dir, 'ev.jsonl'), limits({ maxFileBytes: 1 << 20, perMachine: 1, windowMs: 1e9, maxMachines: 4 }), () => 0);
    for (let i = 0; i < 100; i++) expect(log.admit(`m${i}`)).toBe(true);
    // m99 is still remembered: a second record in its window is dropped.
    expect(log.admit('m99')).toBe(false);
  });
});

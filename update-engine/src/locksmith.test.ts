import { describe, it, expect } from 'vitest';
import { encodeSemaphore, decodeSemaphore, lockOp, unlockOp, setMaxOp, parseWindow, untilWindow, semaphoreKey, lockBackoff } from './locksmith.js';

describe('locksmith semaphore (CoreOS format)', () => {
  it('encodes as CoreOS: holders null when empty, sorted otherwise', () => {
    expect(encodeSemaphore({ semaphore: 1, max: 1, holders: null })).toBe('{"semaphore":1,"max":1,"holders":null}');
    const s = lockOp({ semaphore: 2, max: 2, holders: ['b'] }, 'a', 'k');
    expect(encodeSemaphore(s)).toBe('{"semaphore":1,"max":2,"holders":["a","b"]}');
    expect(decodeSemaphore('{"semaphore":0,"max":1,"holders":["x"]}', 'k')).toEqual({ semaphore: 0, max: 1, holders: ['x'] });
  });
  it('lock fails at 0 and for an existing holder; unlock needs a holder; set-max moves the count', () => {
    expect(() => lockOp({ semaphore: 0, max: 1, holders: ['x'] }, 'y', 'k')).toThrow(/maximum of 1/);
    expect(() => lockOp({ semaphore: 1, max: 2, holders: ['x'] }, 'x', 'k')).toThrow(/already holds/);
    expect(() => unlockOp({ semaphore: 1, max: 1, holders: null }, 'x', 'k')).toThrow(/does not hold/);
    expect(unlockOp({ semaphore: 0, max: 1, holders: ['x'] }, 'x', 'k')).toEqual({ semaphore: 1, max: 1, holders: [] });
    expect(setMaxOp({ semaphore: 0, max: 1, holders: ['x'] }, 3)).toEqual({ semaphore: 2, max: 3, holders: ['x'] });
    expect(semaphoreKey()).toBe('coreos.com/updateengine/rebootlock/semaphore');
    expect(semaphoreKey('a b')).toBe('coreos.com/updateengine/rebootlock/groups/a%20b/semaphore');
    expect([0, 1, 5, 6, 9].map(lockBackoff)).toEqual([5000, 10000, 160000, 300000, 300000]);
  });
});

describe('reboot window', () => {
  it('daily window: inside is 0, before waits until the start', () => {
    const w = parseWindow('23:00', '1h30m');
    expect(untilWindow(w, new Date(2026, 0, 7, 23, 30))).toBe(0);
    expect(untilWindow(w, new Date(2026, 0, 8, 0, 29))).toBe(0);
    expect(untilWindow(w, new Date(2026, 0, 8, 0, 31))).toBe((22 * 60 + 29) * 60_000);
    expect(untilWindow(w, new Date(2026, 0, 7, 22, 0))).toBe(3_600_000);
  });
  it('weekly window on a weekday', () => {
    const w = parseWindow('Thu 23:00', '1h');
    // 2026-01-08 is a Thursday.
    expect(untilWindow(w, new Date(2026, 0, 8, 23, 10))).toBe(0);
    expect(untilWindow(w, new Date(2026, 0, 7, 23, 0))).toBe(86_400_000);
    expect(untilWindow(w, new Date(2026, 0, 9, 0, 0))).toBe(7 * 86_400_000 - 3_600_000);
  });
  it('rejects bad windows', () => {
    expect(() => parseWindow('Xyz 23:00', '1h')).toThrow(/not '\[Day \]HH:MM'/);
    expect(() => parseWindow('25:00', '1h')).toThrow();
    expect(() => parseWindow('23:00', 'soon')).toThrow(/duration/);
  });
});

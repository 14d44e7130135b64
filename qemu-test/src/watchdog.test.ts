import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RESTART_LINE, RestartWatchdog } from './watchdog.js';

describe('RestartWatchdog', () => {
  let calls: number[];
  let w: RestartWatchdog;
  beforeEach(() => {
    vi.useFakeTimers();
    calls = [];
    w = new RestartWatchdog({ silenceMs: 1000, maxTries: 2, onSilent: (n) => calls.push(n) });
  });
  afterEach(() => {
    w.disarm();
    vi.useRealTimers();
  });

  it('asks for a remedy when nothing follows the restart line, then once more, then gives up', () => {
    w.feed(`[  171.06] reboot: Restarting system\r\n[  171.07] ${RESTART_LINE}\r\n`);
    expect(w.armed).toBe(true);
    vi.advanceTimersByTime(999);
    expect(calls).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(calls).toEqual([1]);
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([1, 2]);
    vi.advanceTimersByTime(10_000);
    expect(calls).toEqual([1, 2]);
    expect(w.armed).toBe(false);
  });

  it('does nothing when the firmware speaks after the restart', () => {
    w.feed(`${RESTART_LINE}\r\n`);
    vi.advanceTimersByTime(500);
    w.feed('\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001');
    expect(w.armed).toBe(false);
    vi.advanceTimersByTime(5000);
    expect(calls).toEqual([]);
  });

  it('finds the line split across chunks, and blank output does not count as the guest speaking', () => {
    w.feed('[  160.66] reboot: machine');
    expect(w.armed).toBe(false);
    w.feed(' restart\r');
    expect(w.armed).toBe(true);
    w.feed('\n');
    w.feed('  ');
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([1]);
  });

  it('a remedy that brings output back clears the count for the next restart', () => {
    w.feed(`${RESTART_LINE}\n`);
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([1]);
    w.feed('BdsDxe: starting Boot0001\n[    0.000000] Linux version');
    expect(w.armed).toBe(false);
    w.feed(`\n[  99.0] ${RESTART_LINE}\n`);
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([1, 1]);
  });

  it('gives the guest the whole silence time again once a remedy has been applied', () => {
    w.feed(`${RESTART_LINE}\n`);
    vi.advanceTimersByTime(1000);
    expect(calls).toEqual([1]);
    // The remedy (a new QEMU) took 600 ms to start: the next try counts from there.
    vi.advanceTimersByTime(600);
    w.restartTimer();
    vi.advanceTimersByTime(999);
    expect(calls).toEqual([1]);
    vi.advanceTimersByTime(1);
    expect(calls).toEqual([1, 2]);
    // With no try left there is no timer to restart.
    w.restartTimer();
    expect(w.armed).toBe(false);
  });

  it('is not armed by output that only mentions the line in passing', () => {
    w.feed(`${RESTART_LINE}\nlogin: `);
    expect(w.armed).toBe(false);
    w.disarm();
    vi.advanceTimersByTime(5000);
    expect(calls).toEqual([]);
  });
});

/**
 * Update-check timing as update_check_scheduler.cc: the first check 7 min
 * (±5) after start, then every 45 min (±5); after server errors (5xx) the
 * interval doubles up to 4 h; a server PollInterval replaces the base, clamped
 * to [POLL_MIN_S, POLL_MAX_S] so that no server can make a machine check in a
 * loop or never again. Pure: randomness comes in as `rand` in [0,1).
 */

/** The shortest and longest PollInterval a server may set (seconds). */
export const POLL_MIN_S = 5 * 60;
export const POLL_MAX_S = 24 * 3600;

/** A server's PollInterval in the sane range; undefined (the default interval) for anything that is not a positive number. */
export function clampPollInterval(seconds: number | undefined): number | undefined {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds <= 0) return undefined;
  return Math.min(POLL_MAX_S, Math.max(POLL_MIN_S, Math.round(seconds)));
}

/** Node runs a timer of more than 2^31-1 ms at once: longer waits are cut to this and re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
export interface SchedulerTimings {
  firstMs: number;
  intervalMs: number;
  fuzzMs: number;
  maxBackoffMs: number;
}

export const coreosTimings: SchedulerTimings = { firstMs: 7 * 60_000, intervalMs: 45 * 60_000, fuzzMs: 10 * 60_000, maxBackoffMs: 4 * 3_600_000 };

export interface SchedulerState {
  checks: number;
  /** Consecutive server errors. */
  serverErrors: number;
  /** Seconds, from the last Omaha response. */
  pollInterval?: number | undefined;
}

const fuzz = (base: number, fuzzMs: number, rand: number) => {
  const r = Number.isFinite(rand) ? Math.min(1, Math.max(0, rand)) : 0.5;
  return Math.max(0, Math.round(base - fuzzMs / 2 + r * fuzzMs));
};

/**
 * Delay before the next check. After the first, the fuzz is at most half the
 * base either way, so the shortest PollInterval a server may set (5 min)
 * still leaves at least 3.75 min between checks, whatever `rand` is; and a
 * state that holds a PollInterval out of range (an older state, a bug) is
 * clamped again here.
 */
export function nextDelay(s: SchedulerState, t: SchedulerTimings, rand: number): number {
  if (s.checks === 0) return fuzz(t.firstMs, t.fuzzMs, rand);
  const poll = clampPollInterval(s.pollInterval);
  const base = poll ? poll * 1000 : t.intervalMs;
  if (s.serverErrors > 0) {
    const backoff = Math.min(t.maxBackoffMs, base * 2 ** Math.min(s.serverErrors, 30));
    return fuzz(backoff, Math.min(t.fuzzMs, backoff / 2), rand);
  }
  return fuzz(base, Math.min(t.fuzzMs, base / 2), rand);
}

/** The scheduler state after a check ended with `outcome`. */
export function afterCheck(s: SchedulerState, outcome: 'ok' | 'error' | 'server-error', pollInterval?: number): SchedulerState {
  return {
    checks: s.checks + 1,
    serverErrors: outcome === 'server-error' ? s.serverErrors + 1 : 0,
    pollInterval: clampPollInterval(pollInterval) ?? s.pollInterval,
  };
}

/** Timers, injectable so tests never wait. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // A wait past Node's timer limit is run in steps, never as an immediate timer.
    let t: NodeJS.Timeout;
    // Not a number (never from the scheduler, which clamps): the longest single wait, not Node's 1 ms.
    const due = Date.now() + (Number.isFinite(ms) ? Math.max(0, ms) : MAX_TIMER_MS);
    const arm = () => {
      const left = due - Date.now();
      t = setTimeout(left > MAX_TIMER_MS ? arm : fn, Math.min(Math.max(0, left), MAX_TIMER_MS));
      t.unref();
    };
    arm();
    return { cancel: () => clearTimeout(t) };
  },
};

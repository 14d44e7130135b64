/**
 * Update-check timing as update_check_scheduler.cc: the first check 7 min
 * (±5) after start, then every 45 min (±5); after server errors (5xx) the
 * interval doubles up to 4 h; a server PollInterval replaces the base. Pure:
 * randomness comes in as `rand` in [0,1).
 */
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

const fuzz = (base: number, fuzzMs: number, rand: number) => Math.max(0, Math.round(base - fuzzMs / 2 + rand * fuzzMs));

/** Delay before the next check. */
export function nextDelay(s: SchedulerState, t: SchedulerTimings, rand: number): number {
  if (s.checks === 0) return fuzz(t.firstMs, t.fuzzMs, rand);
  const base = s.pollInterval ? s.pollInterval * 1000 : t.intervalMs;
  if (s.serverErrors > 0) {
    const backoff = Math.min(t.maxBackoffMs, base * 2 ** s.serverErrors);
    return fuzz(backoff, Math.min(t.fuzzMs, backoff / 2), rand);
  }
  return fuzz(base, t.fuzzMs, rand);
}

/** The scheduler state after a check ended with `outcome`. */
export function afterCheck(s: SchedulerState, outcome: 'ok' | 'error' | 'server-error', pollInterval?: number): SchedulerState {
  return {
    checks: s.checks + 1,
    serverErrors: outcome === 'server-error' ? s.serverErrors + 1 : 0,
    pollInterval: pollInterval ?? s.pollInterval,
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
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

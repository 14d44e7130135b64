/** Durations as release and update settings write them (30d, 12h, 1h30m, 90s). Pure. */

/** Parses durations such as 30d, 12h, 45m, 90s, 1h30m into milliseconds; undefined when invalid. */
export function parseDuration(s: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/g;
  let total = 0;
  let used = 0;
  for (const m of s.matchAll(re)) {
    const v = Number(m[1]);
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    total += v * unit;
    used += m[0].length;
  }
  return used === s.length && used > 0 ? Math.round(total) : undefined;
}


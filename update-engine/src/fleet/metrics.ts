/**
 * Prometheus counters of one `basalt serve` process, in the text exposition
 * format (version 0.0.4). Each replica counts its own; Prometheus sums them.
 */

type Labels = Record<string, string>;

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const key = (l: Labels) =>
  Object.keys(l)
    .sort()
    .map((k) => `${k}="${esc(l[k]!)}"`)
    .join(',');

class Family {
  readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}
  add(l: Labels, by = 1): void {
    const k = key(l);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  text(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const [k, v] of [...this.values].sort(([a], [b]) => a.localeCompare(b))) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n') + '\n';
  }
}

/** The fleet's counters; keep label values bounded (groups, versions, event codes). */
export class FleetMetrics {
  /** At most this many label sets per family: past it new ones count under "other". */
  static readonly MAX_SERIES = 1000;
  readonly checks = new Family('basalt_fleet_checks_total', 'Omaha update checks answered, by group', 'counter');
  readonly offered = new Family('basalt_fleet_updates_offered_total', 'updates offered, by group and version', 'counter');
  readonly noupdate = new Family('basalt_fleet_noupdate_total', 'checks answered noupdate, by group', 'counter');
  readonly events = new Family('basalt_fleet_events_total', 'Omaha events, by type and result', 'counter');
  readonly rollbacks = new Family('basalt_fleet_rollbacks_total', 'rollbacks reported, by group and version', 'counter');
  readonly autoPauses = new Family('basalt_fleet_auto_pauses_total', 'rollouts paused by their rollback or error rate, by group', 'counter');

  inc(f: Family, l: Labels): void {
    if (f.values.size >= FleetMetrics.MAX_SERIES && !f.values.has(key(l))) l = Object.fromEntries(Object.keys(l).map((k) => [k, 'other']));
    f.add(l);
  }

  /** The exposition text, with gauges computed at scrape time appended. */
  text(gauges: { name: string; help: string; rows: { labels: Labels; value: number }[] }[] = []): string {
    let out = [this.checks, this.offered, this.noupdate, this.events, this.rollbacks, this.autoPauses].map((f) => f.text()).join('');
    for (const g of gauges) {
      const f = new Family(g.name, g.help, 'gauge');
      for (const r of g.rows) f.add(r.labels, r.value);
      out += f.text();
    }
    return out;
  }
}

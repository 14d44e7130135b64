/**
 * The server's event log (JSON lines), bounded: at most `perMachine` records
 * of one machine per window (a machine that floods is heard, not recorded
 * without end), and a file that is rotated to `<file>.1` when it would pass
 * `maxFileBytes`, so the log takes at most twice that on disk.
 */
import { appendFile, rename, stat } from 'node:fs/promises';

export interface EventLimits {
  /** Largest size of the log file before it is rotated. */
  maxFileBytes: number;
  /** Records kept per machine and window. */
  perMachine: number;
  windowMs: number;
  /** Machines remembered for the per-machine count (the oldest windows are forgotten first). */
  maxMachines: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = { maxFileBytes: 64 * 1024 * 1024, perMachine: 100, windowMs: 3_600_000, maxMachines: 100_000 };

export class EventLog {
  private size: number | undefined;
  private readonly seen = new Map<string, { start: number; n: number }>();
  /** Records not written because their machine was over its limit. */
  dropped = 0;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    readonly limits: EventLimits = DEFAULT_EVENT_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Pure part: may this machine have one more record now? Counts it when so. */
  admit(machineId: string): boolean {
    const t = this.now();
    let w = this.seen.get(machineId);
    if (!w || t - w.start >= this.limits.windowMs) {
      if (!w && this.seen.size >= this.limits.maxMachines) this.forgetOldest(t);
      w = { start: t, n: 0 };
      this.seen.set(machineId, w);
    }
    if (w.n >= this.limits.perMachine) {
      this.dropped++;
      return false;
    }
    w.n++;
    return true;
  }

  private forgetOldest(t: number): void {
    for (const [id, w] of this.seen) if (t - w.start >= this.limits.windowMs) this.seen.delete(id);
    // Still full: forget the oldest half (Map keeps insertion order).
    if (this.seen.size >= this.limits.maxMachines) {
      let n = Math.ceil(this.seen.size / 2);
      for (const id of this.seen.keys()) {
        if (n-- <= 0) break;
        this.seen.delete(id);
      }
    }
  }

  /** Appends one record of `machineId` when its limit allows; writes are serialized. */
  append(machineId: string, record: Record<string, unknown>): Promise<void> {
    if (!this.admit(machineId)) return Promise.resolve();
    const line = JSON.stringify(record) + '\n';
    const done = this.queue.then(() => this.write(line));
    // A failed write (a full disk) fails its own caller, not every record after it.
    this.queue = done.catch(() => undefined);
    return done;
  }

  private async write(line: string): Promise<void> {
    const bytes = Buffer.byteLength(line);
    this.size ??= await stat(this.path).then(
      (s) => s.size,
      () => 0,
    );
    if (this.size > 0 && this.size + bytes > this.limits.maxFileBytes) {
      await rename(this.path, `${this.path}.1`);
      this.size = 0;
    }
    await appendFile(this.path, line);
    this.size += bytes;
  }
}

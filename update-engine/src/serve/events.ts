/**
 * The server's event log (JSON lines), bounded in every dimension a client
 * controls: a record holds only the fields the server knows, each string cut
 * to `maxFieldChars` (`eventRecord`, pure); a request adds at most
 * `perRequest` records; a machine at most `perMachine` per window (a machine
 * that floods is heard, not recorded without end); and the file is rotated
 * (`<file>.1` .. `<file>.<keepFiles>`, the oldest dropped) when it would pass
 * `maxFileBytes`, so the log takes at most (keepFiles + 1) x maxFileBytes on
 * disk: 64 MiB with the defaults. Small and simple on purpose: a database
 * replaces it later.
 */
import { appendFile, rename, rm, stat } from 'node:fs/promises';

export interface EventLimits {
  /** Largest size of the log file before it is rotated. */
  maxFileBytes: number;
  /** Rotated files kept beside the live one. */
  keepFiles: number;
  /** The longest string a record keeps of a client's value (longer ones are cut, marked with …). */
  maxFieldChars: number;
  /** Records one request may add (a request may hold many apps and events). */
  perRequest: number;
  /** Records kept per machine and window. */
  perMachine: number;
  windowMs: number;
  /** Machines remembered for the per-machine count (the oldest windows are forgotten first). */
  maxMachines: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = { maxFileBytes: 16 * 1024 * 1024, keepFiles: 3, maxFieldChars: 128, perRequest: 16, perMachine: 100, windowMs: 3_600_000, maxMachines: 100_000 };

/** The fields a record may have, and their kinds: anything else a caller passes is dropped. */
const FIELDS = {
  time: 'string',
  kind: 'string',
  machineId: 'string',
  appId: 'string',
  version: 'string',
  track: 'string',
  board: 'string',
  installSource: 'string',
  eventType: 'number',
  eventResult: 'number',
  errorCode: 'number',
  previousVersion: 'string',
  answer: 'string',
  offered: 'string',
  delta: 'string',
  reason: 'string',
} as const;

/** Cuts a client's string to `max` characters (code points; a cut one ends with …). Pure. */
export function boundString(s: string, max: number): string {
  const cps = Array.from(s);
  return cps.length <= max ? s : cps.slice(0, Math.max(0, max - 1)).join('') + '…';
}

/**
 * A record as it is written: only the known fields, strings cut to
 * maxFieldChars, numbers only when finite, null kept (a field the request did
 * not have). Pure.
 */
export function eventRecord(r: Record<string, unknown>, maxFieldChars: number): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = {};
  for (const [k, kind] of Object.entries(FIELDS)) {
    if (!Object.hasOwn(r, k)) continue;
    const v = r[k];
    if (v === null) out[k] = null;
    else if (kind === 'string' && typeof v === 'string') out[k] = boundString(v, maxFieldChars);
    else if (kind === 'number' && typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

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

  /**
   * Appends one record of `machineId` (bounded by eventRecord) when its limit
   * allows; writes are serialized. The machine id counts by its bounded form,
   * so the memory of the per-machine counts is bounded too.
   */
  append(machineId: string, record: Record<string, unknown>): Promise<void> {
    if (!this.admit(boundString(machineId, this.limits.maxFieldChars))) return Promise.resolve();
    const line = JSON.stringify(eventRecord(record, this.limits.maxFieldChars)) + '\n';
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
      await this.rotate();
      this.size = 0;
    }
    await appendFile(this.path, line);
    this.size += bytes;
  }


  /** <file>.K-1 -> <file>.K, ..., <file> -> <file>.1; the oldest goes (none kept: the file is emptied). */
  private async rotate(): Promise<void> {
    const k = Math.max(0, Math.floor(this.limits.keepFiles));
    if (k === 0) {
      await rm(this.path, { force: true });
      return;
    }
    await rm(`${this.path}.${k}`, { force: true });
    for (let i = k - 1; i >= 1; i--) await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    });
    await rename(this.path, `${this.path}.1`);
  }
}

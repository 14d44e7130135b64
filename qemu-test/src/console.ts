/**
 * The serial console of a VM: everything it prints is appended to a log file
 * and kept in memory so tests can wait for a line with a deadline.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { BasaltError } from '../../common/src/errors.js';
import { QEMU_ERRORS } from './errors.js';

export interface WaitOptions {
  timeoutMs: number;
  /** Only look at output after this offset (see mark()). */
  from?: number;
  /** What is being waited for, for the error message. */
  what?: string;
}

export interface Match {
  match: RegExpExecArray;
  /** Offset just after the match, to continue from. */
  end: number;
}

interface Waiter {
  re: RegExp;
  from: number;
  resolve: (m: Match) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  what: string;
}

/** Console output without the terminal escape sequences (ESC [ ...) and carriage returns firmware and guests print. */
export function plainConsoleText(s: string): string {
  // eslint-disable-next-line no-control-regex -- the escape sequences are what is removed
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
}

export class SerialConsole {
  private text = '';
  private waiters = new Set<Waiter>();
  private closedReason: string | undefined;
  private log: WriteStream | undefined;

  /** The log file is opened at the first output (the VM creates its directory when it starts). */
  constructor(readonly logPath: string) {}

  /** Feeds console bytes (from QEMU's stdout). */
  push(chunk: Buffer | string): void {
    const s = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    if (!this.log) {
      this.log = createWriteStream(this.logPath, { flags: 'a' });
      this.log.on('error', (e) => process.stderr.write(`[basalt-qemu] cannot write the serial log ${this.logPath}: ${e.message}\n`));
    }
    this.log.write(s);
    // Terminal control sequences from firmware and systemd get in the way of matching.
    this.text += plainConsoleText(s);
    for (const w of this.waiters) this.check(w);
  }

  /** The current end of the output, to wait for what comes after it. */
  mark(): number {
    return this.text.length;
  }

  get output(): string {
    return this.text;
  }

  tail(lines = 30): string {
    return this.text.split('\n').slice(-lines).join('\n');
  }

  private check(w: Waiter): void {
    const re = new RegExp(w.re.source, w.re.flags.replace('g', '') + 'g');
    re.lastIndex = w.from;
    const m = re.exec(this.text);
    if (m) {
      clearTimeout(w.timer);
      this.waiters.delete(w);
      w.resolve({ match: m, end: m.index + m[0].length });
    }
  }

  /** Resolves when `re` matches the output after `from`; rejects at the deadline or when the VM stops. */
  waitFor(re: RegExp, opts: WaitOptions): Promise<Match> {
    return new Promise((resolve, reject) => {
      const what = opts.what ?? String(re);
      const w: Waiter = {
        re,
        from: opts.from ?? 0,
        resolve,
        reject,
        what,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new BasaltError(QEMU_ERRORS.E_VM_TIMEOUT, `timed out after ${Math.round(opts.timeoutMs / 1000)} s waiting for ${what} on the serial console (log: ${this.logPath})\n--- last console lines ---\n${this.tail()}`));
        }, opts.timeoutMs),
      };
      this.waiters.add(w);
      this.check(w);
      if (this.waiters.has(w) && this.closedReason !== undefined) this.fail(w, this.closedReason);
    });
  }

  private fail(w: Waiter, reason: string): void {
    clearTimeout(w.timer);
    this.waiters.delete(w);
    w.reject(new BasaltError(QEMU_ERRORS.E_VM_STOPPED, `${reason} while waiting for ${w.what} (log: ${this.logPath})\n--- last console lines ---\n${this.tail()}`));
  }

  /** The VM stopped: pending waits fail at once instead of at their deadline. */
  close(reason: string): void {
    this.closedReason = reason;
    for (const w of [...this.waiters]) this.fail(w, reason);
    this.log?.end();
  }
}

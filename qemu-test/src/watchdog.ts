/**
 * A guest that restarts and then prints nothing: under TCG a guest has been
 * seen to print the kernel's "reboot: machine restart" and then stay silent
 * for good, neither the firmware nor the kernel ever coming back. A test then
 * waits out its whole deadline. The watchdog notices the silence after the
 * restart line and calls `onSilent` (the VM power-cycles the guest, as a
 * person would with a machine that does not come back); any output after the
 * restart line means the restart works.
 *
 * Pure apart from its timer: it is fed the guest's output and calls `onSilent`.
 */

/** What Linux prints just before it resets the machine (kernel/reboot.c). */
export const RESTART_LINE = 'reboot: machine restart';

export interface RestartWatchdogOptions {
  /** How long the guest may stay silent after the restart line. */
  silenceMs: number;
  /** Remedies (`onSilent` calls) per restart, at most; then the test's own deadline decides. */
  maxTries: number;
  /** Called when the guest stayed silent: `n` counts the calls for this restart, from 1. */
  onSilent: (n: number) => void;
}

export class RestartWatchdog {
  private timer: NodeJS.Timeout | undefined;
  /** The end of the previous chunk, so a restart line split across chunks is found. */
  private carry = '';
  private tries = 0;

  constructor(private readonly o: RestartWatchdogOptions) {}

  get armed(): boolean {
    return this.timer !== undefined;
  }

  /** Feeds guest output (the serial console's bytes, as text). */
  feed(chunk: string): void {
    const text = this.carry + chunk;
    const at = text.lastIndexOf(RESTART_LINE);
    // One character short of the line: a line found later always ends in new output.
    this.carry = text.slice(-(RESTART_LINE.length - 1));
    if (at >= 0 && text.slice(at + RESTART_LINE.length).trim() === '') {
      // The restart line ends the output so far: wait for what comes next.
      this.disarm();
      this.tries = 0;
      this.arm();
    } else if (this.timer && chunk.trim() !== '') {
      // Anything but blanks after the restart line (firmware, a kernel): the restart worked.
      this.disarm();
      this.tries = 0;
    }
  }

  /** A remedy has just been applied (a new QEMU started): the guest gets the whole silence time again. */
  restartTimer(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.arm();
  }

  /** Stops watching (the VM stopped). */
  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tries += 1;
      this.o.onSilent(this.tries);
      if (this.tries < this.o.maxTries) this.arm();
    }, this.o.silenceMs);
    this.timer.unref();
  }
}

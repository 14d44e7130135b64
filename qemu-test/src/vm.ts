/**
 * Drives one QEMU virtual machine for tests: UEFI (OVMF) firmware with its
 * own copy of the variable store, the disk as virtio (through a qcow2 overlay
 * by default, so the built image stays untouched), user-mode networking with
 * the host reachable at 10.0.2.2, the serial console captured to a log, and a
 * QMP socket for power-off, reset and kill. A guest that goes silent after
 * it restarts is power-cycled (see watchdog.ts).
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BasaltError } from '../../common/src/errors.js';
import { QEMU_ERRORS } from './errors.js';
import { run, spawnTool, type Spawned } from '../../common/src/exec.js';
import { chooseAccelWithReason, type Accel } from './accel.js';
import { OVMF_CODE, OVMF_VARS, requireFirmware } from './firmware.js';
import { SerialConsole, type Match } from './console.js';
import { Qmp, type QmpEvent } from './qmp.js';
import { RESTART_LINE, RestartWatchdog } from './watchdog.js';

export { OVMF_CODE, OVMF_VARS };

export interface VmOptions {
  /** Working directory for the overlay, firmware variables, sockets and the serial log. */
  workdir: string;
  /** Disk image (raw or qcow2). */
  disk?: string;
  /** 'overlay' (default): writes go to a qcow2 overlay in workdir; 'direct': the image itself is written. */
  diskMode?: 'overlay' | 'direct';
  /** Grow the overlay to this size (e.g. '12G'), to test growing ROOT on first boot. */
  diskSize?: string;
  memoryMiB?: number;
  cpus?: number;
  /** Direct kernel boot (PXE-style). */
  kernel?: string;
  initrd?: string;
  append?: string;
  /** A config drive image (iso or vfat), attached as a second virtio disk. */
  configDrive?: string;
  /** An ISO image in a CD-ROM drive (AHCI), booted first. */
  cdrom?: string;
  /** More virtio disks (raw or qcow2), written in place, after the others. */
  disks?: string[];
  /** TCP ports forwarded from 127.0.0.1 on the host to the guest. */
  hostfwd?: { host: number; guest: number }[];
  /**
   * The user network's addresses, when not QEMU's 10.0.2.0/24: e.g. a cloud's
   * link-local net whose gateway is 169.254.169.254, so that the guest's
   * connections to the metadata service reach the host's loopback.
   */
  net?: { net: string; host: string; dhcpStart: string };
  /** Skip UEFI firmware (direct kernel boot works with SeaBIOS too). */
  bios?: boolean;
  accel?: Accel;
  extraArgs?: string[];
  /**
   * How long the guest may print nothing after the kernel's "reboot: machine
   * restart" before the harness power-cycles it (default 120 s; a TCG guest
   * normally prints firmware output within seconds of a restart).
   */
  restartSilenceMs?: number;
}

function diskFormat(path: string): string {
  return path.endsWith('.qcow2') ? 'qcow2' : 'raw';
}

/** The QEMU command line for `opts` (pure apart from the firmware lookup). */
export function qemuArgs(opts: VmOptions & { accel: Accel; disk?: string; varsPath: string; qmpPath?: string; interactive?: boolean; exitOnReset?: boolean }): string[] {
  const a: string[] = [
    '-machine', `q35,accel=${opts.accel}`,
    '-cpu', opts.accel === 'kvm' ? 'host' : 'max',
    '-m', String(opts.memoryMiB ?? 2048),
    '-smp', String(opts.cpus ?? 2),
    '-nodefaults',
    '-display', 'none',
    // Interactive: the serial console and QEMU's monitor share the terminal (Ctrl-A C / Ctrl-A X).
    '-serial', opts.interactive ? 'mon:stdio' : 'stdio',
    '-no-user-config',
    // A reset makes QEMU exit, and Vm starts it again: every restart is a cold one (see Vm).
    ...(opts.exitOnReset ? ['-no-reboot'] : []),
    ...(opts.qmpPath ? Qmp.args(opts.qmpPath) : []),
  ];
  if (!opts.bios) {
    a.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${requireFirmware(OVMF_CODE, 'OVMF firmware code')}`);
    a.push('-drive', `if=pflash,format=raw,unit=1,file=${opts.varsPath}`);
  }
  if (opts.disk) a.push('-drive', `if=virtio,file=${opts.disk},format=${diskFormat(opts.disk)},cache=unsafe,discard=unmap`);
  if (opts.configDrive) a.push('-drive', `if=virtio,file=${opts.configDrive},format=raw,readonly=on,media=disk`);
  for (const d of opts.disks ?? []) a.push('-drive', `if=virtio,file=${d},format=${diskFormat(d)},cache=unsafe,discard=unmap`);
  if (opts.cdrom) a.push('-drive', `if=none,id=cd0,media=cdrom,readonly=on,file=${opts.cdrom}`, '-device', 'ide-cd,drive=cd0,bootindex=0');
  if (opts.kernel) a.push('-kernel', opts.kernel);
  if (opts.initrd) a.push('-initrd', opts.initrd);
  if (opts.append) a.push('-append', opts.append);
  const fwd = (opts.hostfwd ?? []).map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`).join('');
  const addr = opts.net ? `,net=${opts.net.net},host=${opts.net.host},dhcpstart=${opts.net.dhcpStart}` : '';
  a.push('-netdev', `user,id=n0${addr}${fwd}`, '-device', 'virtio-net-pci,netdev=n0');
  a.push('-device', 'virtio-rng-pci');
  a.push(...(opts.extraArgs ?? []));
  return a;
}

/** QEMU run states a guest never leaves by itself. */
const FATAL_STATUS = new Set(['internal-error', 'io-error', 'guest-panicked']);

const RESTART_SILENCE_MS = 120_000;
/** Power cycles the harness does after one silent restart, at most. */
const RESTART_CYCLES = 2;
/** How long QEMU gets to quit when asked, before it is killed. */
const QUIT_GRACE_MS = 5000;
/** Why QEMU shut down (its SHUTDOWN event) when a reset was asked for: the guest's, or QMP's. */
const RESET_REASONS = new Set(['guest-reset', 'host-qmp-system-reset']);

interface ExitInfo {
  exitCode: number;
  signal: string | undefined;
}

export class Vm {
  readonly console: SerialConsole;
  qmp = new Qmp();
  readonly events: QmpEvent[] = [];
  private proc: Spawned | undefined;
  private startedAt = 0;
  private exitedInfo: ExitInfo | undefined;
  /** A restart in progress (a cold restart or a power cycle): QEMU's exit is then not the VM's end. */
  private cycle: Promise<void> | undefined;
  /** The reason of the running QEMU's SHUTDOWN event, once it sent one. */
  private shutdownReason: string | undefined;
  /** Cold restarts: the guest (or a test, through QMP) reset the machine and QEMU was started again. */
  restarts = 0;
  /** Waits that end when the VM is gone (QEMU exited, and not for a restart or a power cycle). */
  private readonly goneWaiters = new Set<(info: ExitInfo) => void>();
  accel: Accel = 'tcg';
  diskPath: string | undefined;
  /** Power-cycles a guest that went silent after it restarted (see watchdog.ts). */
  readonly restartWatch: RestartWatchdog;
  /** Power cycles the restart watchdog has done, in all. */
  cycles = 0;

  constructor(readonly opts: VmOptions) {
    this.console = new SerialConsole(join(opts.workdir, 'serial.log'));
    const silenceMs = opts.restartSilenceMs ?? RESTART_SILENCE_MS;
    this.restartWatch = new RestartWatchdog({
      silenceMs,
      maxTries: RESTART_CYCLES,
      onSilent: (n) => {
        if (!this.running || this.cycle) return;
        this.cycles += 1;
        this.cycle = this.powerCycle(`no output for ${Math.round(silenceMs / 1000)} s after "${RESTART_LINE}"`, n).finally(() => (this.cycle = undefined));
      },
    });
  }

  /**
   * The restart watchdog's remedy. A QMP system_reset is a warm reset: the
   * guest's memory and QEMU's process stay as they were, and in CI a guest
   * that hung after its restart stayed silent through three of them. So the
   * harness does what a person does with a machine that will not come back:
   * it notes where the CPUs are (for the log), stops QEMU and starts it again
   * on the same disk and firmware variables. Waits in progress carry on.
   */
  private async powerCycle(why: string, n: number): Promise<void> {
    // Two samples a second apart: a CPU whose RIP moves is looping, one that stays is stuck.
    const first = await this.cpuState();
    await new Promise((r) => setTimeout(r, 1000));
    const cpus = `[basalt-qemu]   first sample:\n${first}[basalt-qemu]   a second later:\n${await this.cpuState()}`;
    this.console.push(`\n[basalt-qemu] ${why}: power-cycling the guest, QEMU stopped and started again on the same disk (${n} of ${RESTART_CYCLES})\n${cpus}`);
    try {
      await this.quit();
      await this.launch();
      this.restartWatch.restartTimer();
    } catch (e) {
      this.console.push(`\n[basalt-qemu] the power cycle failed: ${(e as Error).message}\n`);
      this.ended(this.exitedInfo ?? { exitCode: -1, signal: undefined });
    }
  }

  /**
   * QEMU runs with -no-reboot: a reset, the guest's or one asked for through
   * QMP, makes it exit, and it is started again here on the same disk and
   * firmware variables. Every restart is then a cold one, as on a machine
   * whose reset line cycles its power. QEMU's own warm reset keeps the guest's
   * memory and the process's state, and under TCG a guest has hung for good
   * right after one (see watchdog.ts). Any other exit ends the VM.
   */
  private async afterExit(info: ExitInfo): Promise<void> {
    // The SHUTDOWN event is sent before QEMU exits: read all it sent.
    await this.qmp.drained(2000);
    this.qmp.close();
    const reason = this.shutdownReason;
    if (reason === undefined || !RESET_REASONS.has(reason) || info.signal) {
      this.ended(info);
      return;
    }
    this.restarts += 1;
    this.console.push(`\n[basalt-qemu] the machine was reset (${reason}): QEMU started again on the same disk (cold restart ${this.restarts})\n`);
    try {
      await this.launch();
    } catch (e) {
      this.console.push(`\n[basalt-qemu] the restart failed: ${(e as Error).message}\n`);
      this.ended(this.exitedInfo ?? info);
    }
  }

  /** Where each CPU is (instruction pointer, mode, halted), from QEMU's monitor; a note on failure. */
  private async cpuState(): Promise<string> {
    const info = this.qmp.execute<string>('human-monitor-command', { 'command-line': 'info registers -a' });
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('no answer within 5 s')), 5000)));
    try {
      const text = await Promise.race([info, t]);
      const lines = text.split(/\r?\n/).filter((l) => /^(CPU#\d+|RIP=|CR0=|EFER=)/.test(l));
      return lines.map((l) => `[basalt-qemu]   ${l}\n`).join('');
    } catch (e) {
      info.catch(() => {});
      return `[basalt-qemu]   CPU state not available: ${(e as Error).message}\n`;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Asks QEMU to quit, kills it when it does not within the grace time, and waits for it. */
  private async quit(): Promise<void> {
    const proc = this.proc!;
    if (this.exitedInfo === undefined) {
      this.qmp.execute('quit').catch(() => {});
      let t: NodeJS.Timeout | undefined;
      const quitted = await Promise.race([proc.exited.then(() => true), new Promise<boolean>((r) => (t = setTimeout(() => r(false), QUIT_GRACE_MS)))]);
      clearTimeout(t);
      if (!quitted) proc.kill('SIGKILL');
      await proc.exited;
    }
    this.qmp.close();
  }

  /** The VM is gone: every wait on it ends. */
  private ended(info: ExitInfo): void {
    this.restartWatch.disarm();
    for (const w of this.goneWaiters) w(info);
    this.goneWaiters.clear();
  }

  /** Resolves when the VM is gone for good (not when QEMU exits for a restart or a power cycle); `stop` ends the wait. */
  private whenGone(): { gone: Promise<ExitInfo>; stop: () => void } {
    let waiter: ((info: ExitInfo) => void) | undefined;
    const gone = new Promise<ExitInfo>((resolve) => {
      if (this.exitedInfo !== undefined && !this.cycle) return resolve(this.exitedInfo);
      waiter = resolve;
      this.goneWaiters.add(resolve);
    });
    return { gone, stop: () => waiter && this.goneWaiters.delete(waiter) };
  }

  /** Guest output from QEMU: into the console log, and to the restart watchdog. */
  private output(d: Buffer): void {
    this.console.push(d);
    this.restartWatch.feed(d.toString('latin1'));
  }

  get logPath(): string {
    return this.console.logPath;
  }

  get running(): boolean {
    return this.proc !== undefined && this.exitedInfo === undefined;
  }

  /** Milliseconds since QEMU was last started (the firmware's start; a restart starts QEMU again). */
  elapsed(): number {
    return Date.now() - this.startedAt;
  }

  /** Prepares the overlay and firmware variables; call once before the first start(). */
  async prepare(): Promise<void> {
    const o = this.opts;
    await mkdir(o.workdir, { recursive: true });
    if (!o.bios) {
      const vars = join(o.workdir, 'OVMF_VARS.fd');
      if (!existsSync(vars)) await copyFile(requireFirmware(OVMF_VARS, 'OVMF variable store'), vars);
    }
    if (o.disk) {
      if ((o.diskMode ?? 'overlay') === 'overlay') {
        const overlay = join(o.workdir, 'disk.qcow2');
        if (!existsSync(overlay)) {
          await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', diskFormat(o.disk), '-b', resolve(o.disk), overlay, ...(o.diskSize ? [o.diskSize] : [])]);
        }
        this.diskPath = overlay;
      } else this.diskPath = o.disk;
    }
  }

  /** Starts QEMU (again, after a power-off) and waits until QMP is connected. */
  async start(): Promise<void> {
    if (this.cycle) await this.cycle;
    if (this.running) throw new BasaltError(QEMU_ERRORS.E_VM_RUNNING, 'the VM is already running');
    await this.launch();
  }

  private async launch(): Promise<void> {
    await mkdir(this.opts.workdir, { recursive: true });
    if (!this.diskPath && this.opts.disk) await this.prepare();
    if (!this.opts.bios && !existsSync(join(this.opts.workdir, 'OVMF_VARS.fd'))) await this.prepare();
    const choice = this.opts.accel ? { accel: this.opts.accel, reason: 'set by the test' } : await chooseAccelWithReason();
    this.accel = choice.accel;
    const qmpPath = join(this.opts.workdir, `qmp-${process.pid}.sock`);
    await rm(qmpPath, { force: true });
    this.qmp = new Qmp();
    await this.qmp.listen(qmpPath);
    this.shutdownReason = undefined;
    this.qmp.on('event', (e: QmpEvent) => {
      this.events.push(e);
      if (e.event === 'STOP') void this.onStop();
      if (e.event === 'SHUTDOWN') this.shutdownReason = typeof e.data?.['reason'] === 'string' ? e.data['reason'] : 'unknown';
    });
    const args = qemuArgs({ ...this.opts, accel: this.accel, disk: this.diskPath, varsPath: join(this.opts.workdir, 'OVMF_VARS.fd'), qmpPath, exitOnReset: true });
    this.console.push(`\n[basalt-qemu] start accel=${this.accel} (${choice.reason}): qemu-system-x86_64 ${args.join(' ')}\n`);
    this.exitedInfo = undefined;
    this.startedAt = Date.now();
    const proc = spawnTool('qemu-system-x86_64', args);
    this.proc = proc;
    proc.stdout?.on('data', (d: Buffer) => this.output(d));
    proc.stderr?.on('data', (d: Buffer) => this.output(d));
    void proc.exited.then((info) => {
      this.exitedInfo = info;
      this.console.push(`\n[basalt-qemu] qemu exited (code ${info.exitCode}${info.signal ? `, ${info.signal}` : ''})\n`);
      // A power cycle starts QEMU again itself; otherwise see whether this exit was a reset.
      this.cycle ??= this.afterExit(info).finally(() => (this.cycle = undefined));
    });
    const early = proc.exited.then((i) => {
      throw new BasaltError(QEMU_ERRORS.E_VM_START, `QEMU exited at start (code ${i.exitCode}); see ${this.logPath}\n${this.console.tail(10)}`);
    });
    await Promise.race([this.qmp.whenReady(60_000), early]);
    early.catch(() => {});
  }

  /**
   * The guest stopped without being asked to (nothing here pauses it): when
   * QEMU says it can never go on (an accelerator's internal error, a disk I/O
   * error, a guest panic), QEMU is killed so that every wait fails at once
   * with the console tail instead of at its deadline.
   */
  private async onStop(): Promise<void> {
    const status = await this.qmp.execute<{ status: string }>('query-status').then((s) => s.status, () => undefined);
    if (status && FATAL_STATUS.has(status) && this.running) {
      this.console.push(`\n[basalt-qemu] the guest stopped for good (status ${status}); killing QEMU\n`);
      this.proc!.kill('SIGKILL');
    }
  }

  /**
   * Waits for a console line; returns the match and how long after QEMU's
   * latest start it came (a restart starts it again). A restart or a power
   * cycle does not end the wait.
   */
  async waitFor(re: RegExp, timeoutMs: number, opts: { from?: number; what?: string } = {}): Promise<Match & { atMs: number }> {
    const w = this.whenGone();
    const exited = w.gone.then(() => {
      throw new BasaltError(QEMU_ERRORS.E_VM_STOPPED, `QEMU exited while waiting for ${opts.what ?? String(re)} (log: ${this.logPath})\n${this.console.tail()}`);
    });
    exited.catch(() => {});
    try {
      const m = await Promise.race([this.console.waitFor(re, { timeoutMs, from: opts.from, what: opts.what }), exited]);
      return { ...m, atMs: this.elapsed() };
    } finally {
      w.stop();
    }
  }

  /** Hard reset, like pressing the reset button (QEMU exits and is started again, see afterExit). */
  async reset(): Promise<void> {
    await this.qmp.execute('system_reset').catch((e: unknown) => {
      // QEMU may close the connection before its answer: the reset was done all the same.
      if (this.shutdownReason !== 'host-qmp-system-reset') throw e;
    });
  }

  /** Pulls the plug: QEMU quits at once (killed if it does not), nothing is flushed by the guest. */
  async powerCut(): Promise<void> {
    await this.stop();
  }

  /** Waits for the guest to power itself off (or QEMU to exit for good) within the deadline. */
  async waitForExit(timeoutMs: number): Promise<ExitInfo> {
    const w = this.whenGone();
    let t: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        w.gone,
        new Promise<never>((_, rej) => (t = setTimeout(() => rej(new BasaltError(QEMU_ERRORS.E_VM_TIMEOUT, `QEMU did not exit within ${timeoutMs} ms (log: ${this.logPath})`)), timeoutMs))),
      ]);
    } finally {
      clearTimeout(t);
      w.stop();
    }
  }

  /** Stops QEMU if it still runs. */
  async stop(): Promise<void> {
    if (this.cycle) await this.cycle;
    if (this.running) await this.quit();
    // QEMU's exit is looked at (its reason was a quit: the VM ends).
    if (this.cycle) await this.cycle;
    this.qmp.close();
  }

  /** Stops the VM and closes the console log. */
  async dispose(): Promise<void> {
    await this.stop();
    this.console.close('the VM was disposed');
  }
}

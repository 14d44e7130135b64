/**
 * The one wrapper around external tools. Every external program Basalt runs
 * goes through `run()` with an argv array; there is no shell anywhere.
 *
 * Tool names resolve through a table that can be overridden per tool with the
 * environment variable BASALT_TOOL_<NAME> (upper case, '-' and '.' as '_'),
 * e.g. BASALT_TOOL_SGDISK=/opt/bin/sgdisk, so tests can put stubs in place.
 */
import { execa, type Options as ExecaOptions } from 'execa';
import { BasaltError, COMMON_ERRORS } from './errors.js';

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Data written to the tool's stdin. */
  input?: string | Uint8Array;
  /** Do not throw on a non-zero exit; the caller inspects exitCode. */
  reject?: boolean;
  timeoutMs?: number;
  /** Inherit stdio (for interactive tools such as qemu run). */
  inherit?: boolean;
  /** Encoding of stdout: 'utf8' (default) or 'buffer'. */
  encoding?: 'utf8' | 'buffer';
  signal?: AbortSignal;
  /** Called with the tool's output as it arrives (progress); the whole output is still returned. */
  onOutput?: (text: string, stream: 'stdout' | 'stderr') => void;
  /**
   * Runs the tool in a process group of its own; when `signal` aborts or
   * `timeoutMs` passes, the whole group gets SIGTERM (SIGKILL 5 s later). For a tool that forks
   * workers (mmdebstrap): killing it alone leaves them running with its
   * output open, and the run would wait for them to finish.
   */
  group?: boolean;
}

/** How long a canceled process group has between SIGTERM and SIGKILL. */
const GROUP_KILL_GRACE_MS = 5000;

function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    /* the group is gone */
  }
}

export interface RunResult {
  argv: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  stdoutBuffer?: Uint8Array;
}

/** Resolves the program name for a tool, honouring BASALT_TOOL_<NAME>. */
export function tool(name: string): string {
  const key = 'BASALT_TOOL_' + name.toUpperCase().replace(/[-.]/g, '_');
  return process.env[key] || name;
}

/** Quotes an argv for display only (never executed). */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function tail(s: string, lines = 8): string {
  const l = s.trimEnd().split('\n');
  return l.slice(-lines).join('\n');
}

/** Runs `name` (resolved with tool()) with `args`. Throws E_TOOL_FAILED / E_TOOL_MISSING. */
export async function run(name: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const file = tool(name);
  const argv = [file, ...args];
  const eo: ExecaOptions = {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: true,
    reject: false,
    // A group's deadline and cancel are handled below (execa would signal the tool alone).
    ...(opts.group ? { detached: true } : { cancelSignal: opts.signal, timeout: opts.timeoutMs }),
    stripFinalNewline: false,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.inherit ? { stdio: 'inherit' as const } : {}),
    ...(opts.encoding === 'buffer' ? { encoding: 'buffer' as const } : {}),
  };
  const sub = execa(file, [...args], eo);
  const onOutput = opts.onOutput;
  if (onOutput) {
    sub.stdout?.on('data', (d: Buffer | string) => onOutput(d.toString(), 'stdout'));
    sub.stderr?.on('data', (d: Buffer | string) => onOutput(d.toString(), 'stderr'));
  }
  // An object, not a let: the flags are set in listeners, after the narrowing TypeScript does here.
  const group = { canceled: false, timedOut: false };
  let forceKill: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  const stopGroup = (why: 'canceled' | 'timedOut') => {
    if (group.canceled || group.timedOut) return;
    group[why] = true;
    signalGroup(sub.pid, 'SIGTERM');
    forceKill = setTimeout(() => signalGroup(sub.pid, 'SIGKILL'), GROUP_KILL_GRACE_MS);
  };
  const cancelGroup = () => stopGroup('canceled');
  if (opts.group) {
    if (opts.signal?.aborted) cancelGroup();
    else opts.signal?.addEventListener('abort', cancelGroup, { once: true });
    if (opts.timeoutMs !== undefined) deadline = setTimeout(() => stopGroup('timedOut'), opts.timeoutMs);
  }
  const r = await sub.finally(() => {
    opts.signal?.removeEventListener('abort', cancelGroup);
    clearTimeout(deadline);
    clearTimeout(forceKill);
  });
  const timedOut = r.timedOut || group.timedOut;
  const failedToStart = (r as { code?: string }).code === 'ENOENT' || (r.exitCode === undefined && r.signal === undefined && r.failed && !timedOut && !r.isCanceled && !group.canceled);
  if (failedToStart) {
    throw new BasaltError(COMMON_ERRORS.E_TOOL_MISSING, `cannot run ${file}: not installed or not on PATH`, {
      hint: `install the package that provides ${name} (see .ci/run for the host tools Basalt needs)`,
      details: { argv },
    });
  }
  const stdoutRaw = r.stdout as unknown;
  const stdout = typeof stdoutRaw === 'string' ? stdoutRaw : stdoutRaw instanceof Uint8Array ? '' : '';
  const stderrRaw = r.stderr as unknown;
  const stderr = typeof stderrRaw === 'string' ? stderrRaw : stderrRaw instanceof Uint8Array ? Buffer.from(stderrRaw).toString('utf8') : '';
  const result: RunResult = { argv, exitCode: r.exitCode ?? -1, stdout, stderr };
  if (stdoutRaw instanceof Uint8Array) result.stdoutBuffer = stdoutRaw;
  if (timedOut) {
    throw new BasaltError(COMMON_ERRORS.E_TOOL_TIMEOUT, `${quoteArgv(argv)} timed out after ${opts.timeoutMs} ms`, { details: { argv } });
  }
  if (r.isCanceled || group.canceled) {
    throw new BasaltError(COMMON_ERRORS.E_TOOL_CANCELED, `${quoteArgv(argv)} was canceled`, { details: { argv } });
  }
  if (result.exitCode !== 0 && opts.reject !== false) {
    const why = r.signal ? `killed by ${r.signal}` : `exit code ${result.exitCode}`;
    throw new BasaltError(COMMON_ERRORS.E_TOOL_FAILED, `${quoteArgv(argv)} failed (${why})${stderr.trim() ? ': ' + tail(stderr, 1) : ''}`, {
      details: { argv, exitCode: result.exitCode, stderr: tail(stderr, 40) },
    });
  }
  return result;
}

/** True when `name` can be started (probes with `--version`-less `command -v` semantics via PATH lookup). */
export async function haveTool(name: string): Promise<boolean> {
  const { access, constants } = await import('node:fs/promises');
  const file = tool(name);
  if (file.includes('/')) {
    try {
      await access(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }
  const dirs = (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  for (const d of dirs) {
    try {
      await access(`${d}/${file}`, constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

export interface Spawned {
  argv: string[];
  pid: number | undefined;
  /** The child's stdout/stderr streams (null when inherited). */
  stdout: NodeJS.ReadableStream | null;
  stderr: NodeJS.ReadableStream | null;
  stdin: NodeJS.WritableStream | null;
  /** Resolves with the exit code (or -1 when killed by a signal) once the process ends. */
  exited: Promise<{ exitCode: number; signal: string | undefined }>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts a long-running tool (QEMU, etcd, a daemon) with an argv array and
 * returns at once. The process is killed when `signal` aborts.
 */
export function spawnTool(name: string, args: readonly string[], opts: { cwd?: string; env?: Record<string, string | undefined>; inherit?: boolean; signal?: AbortSignal } = {}): Spawned {
  const file = tool(name);
  const argv = [file, ...args];
  const child = execa(file, [...args], {
    cwd: opts.cwd,
    env: opts.env,
    reject: false,
    buffer: false,
    cancelSignal: opts.signal,
    stdio: opts.inherit ? 'inherit' : 'pipe',
  });
  const exited = child.then((r) => {
    if ((r as { code?: string }).code === 'ENOENT') {
      throw new BasaltError(COMMON_ERRORS.E_TOOL_MISSING, `cannot run ${file}: not installed or not on PATH`, { hint: `install the package that provides ${name}`, details: { argv } });
    }
    return { exitCode: r.exitCode ?? -1, signal: r.signal ?? undefined };
  });
  // Avoid unhandled rejections when nobody awaits `exited`.
  exited.catch(() => {});
  return {
    argv,
    pid: child.pid,
    stdout: child.stdout ?? null,
    stderr: child.stderr ?? null,
    stdin: child.stdin ?? null,
    exited,
    kill: (signal: NodeJS.Signals = 'SIGTERM') => {
      child.kill(signal);
    },
  };
}

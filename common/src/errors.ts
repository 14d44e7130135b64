/**
 * Typed errors shared by every part of Basalt.
 *
 * A BasaltError carries a stable machine-readable `code` (E_*), a one-line
 * message that names the file, device or field it is about, and an optional
 * `hint` telling the user what to do. Only cli/main.ts turns errors into exit
 * codes; library code throws and never exits.
 */
export interface ErrorOptions {
  hint?: string | undefined;
  details?: Record<string, unknown> | undefined;
  cause?: unknown;
}

export class BasaltError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown>;
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number;

  constructor(code: string, message: string, opts: ErrorOptions = {}, exitCode = 1) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BasaltError';
    this.code = code;
    this.hint = opts.hint;
    this.details = opts.details ?? {};
    this.exitCode = exitCode;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, hint: this.hint, ...this.details };
  }
}

/** Wrong command-line usage: exit code 2. */
export class UsageError extends BasaltError {
  constructor(message: string, hint?: string) {
    super('E_USAGE', message, { hint }, 2);
    this.name = 'UsageError';
  }
}

/** A bug in Basalt itself, never the user's fault. */
export class InternalError extends BasaltError {
  constructor(message: string, cause?: unknown) {
    super('E_INTERNAL', message, { cause, hint: 'this is a bug in Basalt; please report it with --debug output' });
    this.name = 'InternalError';
  }
}

export function isBasaltError(e: unknown): e is BasaltError {
  return e instanceof BasaltError;
}

/** Turns a Node system error (ENOENT, EACCES, ...) on `path` into a BasaltError. */
export function fsError(e: unknown, path: string, what = 'access'): BasaltError {
  if (e instanceof BasaltError) return e;
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOENT':
      return new BasaltError('E_NOT_FOUND', `${path}: no such file or directory`, { cause: e, hint: 'check the path' });
    case 'EACCES':
    case 'EPERM':
      return new BasaltError('E_PERMISSION', `${path}: permission denied (${what})`, { cause: e, hint: 'check the file permissions, or run as root for block devices' });
    case 'EROFS':
      return new BasaltError('E_READ_ONLY', `${path}: read-only file system`, { cause: e });
    case 'EISDIR':
      return new BasaltError('E_IS_DIR', `${path}: is a directory`, { cause: e });
    case 'ENOSPC':
      return new BasaltError('E_NO_SPACE', `${path}: no space left on device`, { cause: e });
    default:
      return new BasaltError('E_IO', `${path}: cannot ${what}: ${err?.message ?? String(e)}`, { cause: e });
  }
}

/**
 * The error code catalogue: what each stable code means (codes are part of
 * the CLI's interface: scripts match them in --json output). Add a code here
 * when introducing it.
 */
export const ERROR_CODES = {
  // Reboot coordination (update-engine/src/locksmith.ts, locksmithctl).
  E_ETCD: 'etcd did not answer usefully: unreachable, timed out, a reply over the size cap, not JSON, or an etcd error',
  E_ETCD_CONFIG: 'the etcd settings are unusable: an endpoint that is not an http(s) URL, an unreadable TLS file, a certificate without its key',
  E_LOCK_INVALID: 'the reboot lock semaphore in etcd is not a locksmith semaphore',
  E_LOCK_HELD: 'the machine already holds the reboot lock',
  E_LOCK_NOT_HELD: 'the machine does not hold the reboot lock',
  E_LOCK_UNAVAILABLE: 'the reboot lock is at its maximum number of holders (retry later)',
  E_LOCK_CONTENDED: 'too many concurrent writers of the semaphore: the compare-and-swap kept failing',
  E_WINDOW_INVALID: 'the reboot window (LOCKSMITHD_REBOOT_WINDOW_START/_LENGTH) cannot be parsed',
  E_DURATION_INVALID: 'a duration is not Go-style (15m, 1h30m, 90s, 0)',
  E_NO_MACHINE_ID: '/etc/machine-id is missing, and the reboot lock needs the machine id',
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof ERROR_CODES;

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

/**
 * One entry of a part's error-code catalogue: the stable code (part of the CLI's
 * interface: scripts match it in --json output), what it means, and the hint a
 * user gets unless the thrower gives a more precise one.
 */
export interface ErrorDef<C extends string = string> {
  readonly code: C;
  readonly meaning: string;
  readonly hint: string | undefined;
}

/** Every code of every catalogue, for the uniqueness check and for `describeCode`. */
const REGISTRY = new Map<string, { part: string; def: ErrorDef }>();

/**
 * Defines a part's catalogue: `{ E_X: { meaning, hint? } }` becomes `{ E_X: ErrorDef<'E_X'> }`,
 * thrown as `new BasaltError(CAT.E_X, message)`. A code belongs to one part only.
 */
export function defineErrors<const T extends Record<string, { meaning: string; hint?: string }>>(part: string, defs: T): { readonly [K in keyof T & string]: ErrorDef<K> } {
  const out: Record<string, ErrorDef> = {};
  for (const [code, d] of Object.entries(defs)) {
    if (!/^E_[A-Z0-9_]+$/.test(code)) throw new TypeError(`${part}: error code '${code}' is not E_UPPER_CASE`);
    const seen = REGISTRY.get(code);
    if (seen && seen.part !== part) throw new TypeError(`error code ${code} is defined by both ${seen.part} and ${part}`);
    const def: ErrorDef = Object.freeze({ code, meaning: d.meaning, hint: d.hint });
    REGISTRY.set(code, { part, def });
    out[code] = def;
  }
  return Object.freeze(out) as { readonly [K in keyof T & string]: ErrorDef<K> };
}

/** The catalogue entry of a code, when the part that defines it is loaded. */
export function describeCode(code: string): (ErrorDef & { part: string }) | undefined {
  const r = REGISTRY.get(code);
  return r ? { ...r.def, part: r.part } : undefined;
}

/** Codes every part uses. */
export const COMMON_ERRORS = defineErrors('common', {
  E_USAGE: { meaning: 'wrong command-line usage (exit code 2)', hint: "see the command's --help" },
  E_INTERNAL: { meaning: 'a bug in Basalt itself, never the user\'s fault', hint: 'this is a bug in Basalt; please report it with --debug output' },
  E_NOT_FOUND: { meaning: 'a file or directory does not exist', hint: 'check the path' },
  E_PERMISSION: { meaning: 'permission denied', hint: 'check the file permissions, or run as root for block devices' },
  E_READ_ONLY: { meaning: 'the file system is read-only' },
  E_IS_DIR: { meaning: 'a directory where a file was expected' },
  E_NO_SPACE: { meaning: 'no space left on the device', hint: 'free space on the device, or choose another folder' },
  E_IO: { meaning: 'an input/output error the operating system reported' },
  E_TOOL_MISSING: { meaning: 'an external program Basalt runs is not installed', hint: 'run `npm run setup` (Debian host tools) or set BASALT_TOOL_<NAME>' },
  E_TOOL_FAILED: { meaning: 'an external program exited with an error' },
  E_TOOL_TIMEOUT: { meaning: 'an external program ran past its time limit' },
  E_TOOL_CANCELED: { meaning: 'an external program was stopped because the operation was interrupted (Ctrl-C, SIGTERM)' },
  E_INVALID_VALUE: { meaning: 'a value is out of its allowed range or form' },
  E_EXISTS: { meaning: 'the output already exists and the command does not overwrite it', hint: 'remove it first, or pass --force where the command has it' },
});

export class BasaltError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown>;
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number;

  /** `code` is a catalogue entry (its hint is the default) or, for codes of another program's protocol, a string. */
  constructor(code: ErrorDef | string, message: string, opts: ErrorOptions = {}, exitCode = 1) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BasaltError';
    this.code = typeof code === 'string' ? code : code.code;
    this.hint = opts.hint ?? (typeof code === 'string' ? undefined : code.hint);
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
    super(COMMON_ERRORS.E_USAGE.code, message, { hint }, 2);
    this.name = 'UsageError';
  }
}

/** A bug in Basalt itself, never the user's fault. */
export class InternalError extends BasaltError {
  constructor(message: string, cause?: unknown) {
    super(COMMON_ERRORS.E_INTERNAL, message, { cause });
    this.name = 'InternalError';
  }
}

export function isBasaltError(e: unknown): e is BasaltError {
  return e instanceof BasaltError;
}

/** Turns a Node system error (ENOENT, EACCES, ...) on `path` into a BasaltError. */
export function fsError(e: unknown, path: string, what = 'access'): BasaltError {
  if (e instanceof BasaltError) return e;
  // Anything can be thrown, undefined and null included.
  const err = e as NodeJS.ErrnoException | null | undefined;
  switch (err?.code) {
    case 'ENOENT':
      return new BasaltError(COMMON_ERRORS.E_NOT_FOUND, `${path}: no such file or directory`, { cause: e });
    case 'EACCES':
    case 'EPERM':
      return new BasaltError(COMMON_ERRORS.E_PERMISSION, `${path}: permission denied (${what})`, { cause: e });
    case 'EROFS':
      return new BasaltError(COMMON_ERRORS.E_READ_ONLY, `${path}: read-only file system`, { cause: e });
    case 'EISDIR':
      return new BasaltError(COMMON_ERRORS.E_IS_DIR, `${path}: is a directory`, { cause: e });
    case 'ENOSPC':
      return new BasaltError(COMMON_ERRORS.E_NO_SPACE, `${path}: no space left on device`, { cause: e });
    default:
      return new BasaltError(COMMON_ERRORS.E_IO, `${path}: cannot ${what}: ${err?.message ?? String(e)}`, { cause: e });
  }
}


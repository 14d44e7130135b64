import type { Logger } from '../log.js';

/** What every command receives. Commands write data to `out`, never to process.stdout directly. */
export interface CommandContext {
  /** Arguments after the command name (global flags already removed). */
  args: string[];
  /** --json was given: print machine-readable data on stdout. */
  json: boolean;
  /** --debug was given: stack traces and debug logs. */
  debug: boolean;
  log: Logger;
  /** Writes to stdout. */
  out(text: string): void;
}

export interface CommandModule {
  /** Full --help text for the command. */
  help: string;
  /**
   * Optional: the help text of a subcommand. Gets the arguments after the
   * command name (before any `--`, without --help/-h), e.g. ['show', 'disk.img']
   * for `basalt disk show disk.img --help`; undefined means "print `help`".
   */
  helpFor?(args: string[]): string | undefined;
  /** Returns the exit code (0 when undefined). Throws BasaltError on failure. */
  run(ctx: CommandContext): Promise<number | undefined>;
}

/**
 * Where a command can run. 'build-host' commands (build, qemu) are not in the
 * image: customize.ts ships dist/ without dist/builder and dist/qemu-test.
 */
export type CommandWhere = 'anywhere' | 'build-host';

export interface CommandEntry {
  name: string;
  summary: string;
  /** Default 'anywhere'. A 'build-host' command is available when `module` exists. */
  where?: CommandWhere;
  /** The compiled module `load` imports (checked for 'build-host' commands). */
  module?: URL;
  load(): Promise<CommandModule>;
}

/**
 * A standalone program with CoreOS-compatible flags (coreos-cloudinit,
 * update_engine_client, locksmithctl). It gets the raw argv and returns the
 * exit code.
 */
export interface ProgramModule {
  main(argv: string[], io: { out(text: string): void; err(text: string): void }): Promise<number>;
}

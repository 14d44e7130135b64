import type { Logger } from '../common/src/log.js';

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
  /** Returns the exit code (0 when undefined). Throws BasaltError on failure. */
  run(ctx: CommandContext): Promise<number | void>;
}

export interface CommandEntry {
  name: string;
  summary: string;
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

/**
 * The one table of `basalt` subcommands. Modules are imported lazily so that
 * `basalt disk show` never loads the builder or openpgp.
 */
import type { CommandEntry, ProgramModule } from './types.js';

export const commands: CommandEntry[] = [
  // entries are added here by each part
];

/** CoreOS-compatible programs, dispatched by the name they were invoked as. */
export const programs: Record<string, () => Promise<ProgramModule>> = {};

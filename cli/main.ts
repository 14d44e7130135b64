/**
 * Entry point of every Basalt program. The only place that maps errors to
 * exit codes: 0 ok, 1 failure or invalid input, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { UsageError, isBasaltError } from '../common/src/errors.js';
import { createLogger } from '../common/src/log.js';
import { availableCommands, commands, isAvailable, notAvailable, programs } from './commands.js';
import type { CommandContext, CommandEntry } from '../common/src/cli/types.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

function usage(list: readonly CommandEntry[]): string {
  const w = Math.max(...list.map((c) => c.name.length));
  return [
    'Usage: basalt [--json] [--debug] <command> [options]',
    '',
    'Commands:',
    ...list.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    "Run 'basalt <command> --help' for the options of a command.",
    'Global options: --json (data as JSON on stdout), --debug (stack traces), --version, --help',
    '',
  ].join('\n');
}

/** Where main writes, and what it consults (tests inject these). */
export interface MainOptions {
  out?: (text: string) => void;
  err?: (text: string) => void;
  /** The command table (default: commands.ts). */
  commands?: readonly CommandEntry[];
  /** Whether a module file exists (default: moduleExists), for 'build-host' commands. */
  exists?: (path: string) => boolean;
}

const isHelp = (a: string) => a === '--help' || a === '-h';

function report(e: unknown, debug: boolean, prog: string, err: (t: string) => void): number {
  if (isBasaltError(e)) {
    err(`${prog}: error: ${e.message}${e.hint ? ` (hint: ${e.hint})` : ''}\n`);
    const cause = e.cause instanceof Error ? (e.cause.stack ?? e.cause.message) : String(e.cause);
    if (debug) err((e.stack ?? '') + (e.cause ? `\ncaused by: ${cause}` : '') + '\n');
    return e.exitCode;
  }
  // Anything can be thrown: not only Errors (a string, undefined, null).
  const x = e instanceof Error ? e : undefined;
  err(`${prog}: internal error: ${x?.message ?? String(e)} (hint: this is a bug in Basalt; run again with --debug and report it)\n`);
  if (debug) err((x?.stack ?? '') + '\n');
  return 1;
}

/**
 * Runs `prog` with `argv`. For `basalt`: global flags (--json, --debug,
 * --version, --help) before the command; after it, --json and --debug anywhere
 * before a `--`, and --help/-h anywhere before a `--` prints the command's
 * help (the subcommand's, when the module has helpFor) and exits 0. The
 * CoreOS-named programs get their argv untouched and parse it themselves.
 */
export async function main(argv: string[], prog = 'basalt', opts: MainOptions = {}): Promise<number> {
  const dd = argv.indexOf('--');
  const head = dd < 0 ? argv : argv.slice(0, dd);
  const debug = head.includes('--debug') || process.env['BASALT_DEBUG'] === '1';
  const out = opts.out ?? ((t: string) => void process.stdout.write(t));
  const err = opts.err ?? ((t: string) => void process.stderr.write(t));
  const table = opts.commands ?? commands;
  if (prog !== 'basalt') {
    const load = programs[prog];
    if (!load) return report(new UsageError(`unknown program ${prog}`), debug, prog, err);
    try {
      const mod = await load();
      return await mod.main(argv, { out, err });
    } catch (e) {
      return report(e, debug, prog, err);
    }
  }
  let json = false;
  let help = false;
  let i = 0;
  // Global flags before the command name.
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--debug') continue;
    else if (isHelp(a)) help = true;
    else if (a === '--version') {
      out(`basalt ${version()}\n`);
      return 0;
    } else break;
  }
  const name = argv[i];
  if (name === undefined || name === 'help') {
    // `basalt help CMD [SUB...]` is `basalt CMD [SUB...] --help`.
    const target = name === 'help' ? argv.slice(i + 1) : [];
    if (target.length > 0) return main([...target, '--help'], prog, opts);
    out(usage(availableCommands(table, opts.exists)));
    return help || name === 'help' ? 0 : 2;
  }
  const entry = table.find((c) => c.name === name);
  if (!entry) {
    return report(new UsageError(`unknown command '${name}'`, "run 'basalt --help' for the list of commands"), debug, prog, err);
  }
  if (!isAvailable(entry, opts.exists)) return report(notAvailable(entry), debug, prog, err);
  // After the command name: global flags and --help/-h up to a `--`; the rest is the command's.
  const rest: string[] = [];
  const after = argv.slice(i + 1);
  let k = 0;
  for (; k < after.length; k++) {
    const a = after[k]!;
    if (a === '--') break;
    if (a === '--json') json = true;
    else if (a === '--debug') continue;
    else if (isHelp(a)) help = true;
    else rest.push(a);
  }
  try {
    const mod = await entry.load();
    if (help) {
      const text = mod.helpFor?.(rest) ?? mod.help;
      out(text.endsWith('\n') ? text : text + '\n');
      return 0;
    }
    const ctx: CommandContext = {
      args: [...rest, ...after.slice(k)],
      json,
      debug,
      log: createLogger({ level: debug ? 'debug' : 'info' }),
      out,
    };
    const code = await mod.run(ctx);
    return code ?? 0;
  } catch (e) {
    return report(e, debug, prog, err);
  }
}

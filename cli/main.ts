/**
 * Entry point of every Basalt program. The only place that maps errors to
 * exit codes: 0 ok, 1 failure or invalid input, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { BasaltError, UsageError, isBasaltError } from '../common/src/errors.js';
import { createLogger } from '../common/src/log.js';
import { commands, programs } from './commands.js';
import type { CommandContext } from './types.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

function usage(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: basalt [--json] [--debug] <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    "Run 'basalt <command> --help' for the options of a command.",
    'Global options: --json (data as JSON on stdout), --debug (stack traces), --version, --help',
    '',
  ].join('\n');
}

function report(e: unknown, debug: boolean, prog: string): number {
  if (isBasaltError(e)) {
    process.stderr.write(`${prog}: error: ${e.message}${e.hint ? ` (hint: ${e.hint})` : ''}\n`);
    if (debug) process.stderr.write((e.stack ?? '') + (e.cause ? `\ncaused by: ${String((e.cause as Error).stack ?? e.cause)}` : '') + '\n');
    return e.exitCode;
  }
  const err = e as Error;
  process.stderr.write(`${prog}: internal error: ${err?.message ?? String(e)} (hint: this is a bug in Basalt; run again with --debug and report it)\n`);
  if (debug) process.stderr.write((err?.stack ?? '') + '\n');
  return 1;
}

export async function main(argv: string[], prog = 'basalt'): Promise<number> {
  const debug = argv.includes('--debug') || process.env['BASALT_DEBUG'] === '1';
  const out = (t: string) => {
    process.stdout.write(t);
  };
  if (prog !== 'basalt') {
    const load = programs[prog];
    if (!load) return report(new BasaltError('E_USAGE', `unknown program ${prog}`), debug, prog);
    try {
      const mod = await load();
      return await mod.main(argv, { out, err: (t) => process.stderr.write(t) });
    } catch (e) {
      return report(e, debug, prog);
    }
  }
  const rest: string[] = [];
  let json = false;
  let help = false;
  let i = 0;
  // Global flags before the command name.
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--debug') continue;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--version') {
      out(`basalt ${version()}\n`);
      return 0;
    } else break;
  }
  const name = argv[i];
  if (name === undefined || name === 'help') {
    const target = name === 'help' ? argv[i + 1] : undefined;
    if (target) return main([target, '--help'], prog);
    out(usage());
    return help || name === 'help' ? 0 : 2;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    return report(new UsageError(`unknown command '${name}'`, "run 'basalt --help' for the list of commands"), debug, prog);
  }
  for (const a of argv.slice(i + 1)) {
    if (a === '--json') json = true;
    else if (a === '--debug') continue;
    else rest.push(a);
  }
  try {
    const mod = await entry.load();
    if (help || (rest.length > 0 && (rest[0] === '--help' || rest[0] === '-h'))) {
      out(mod.help.endsWith('\n') ? mod.help : mod.help + '\n');
      return 0;
    }
    const ctx: CommandContext = {
      args: rest,
      json,
      debug,
      log: createLogger({ level: debug ? 'debug' : 'info' }),
      out,
    };
    const code = await mod.run(ctx);
    return code ?? 0;
  } catch (e) {
    return report(e, debug, prog);
  }
}

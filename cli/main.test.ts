/**
 * cli/main.ts in process: --help at every depth, build-host commands, and the
 * CoreOS-named programs left to their own flag parsing.
 */
import { describe, expect, it } from 'vitest';
import { availableCommands, commands, isAvailable, moduleExists, notAvailable, programs } from './commands.js';
import { main, type MainOptions } from './main.js';
import type { CommandContext, CommandEntry, CommandModule } from '../common/src/cli/types.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function basalt(argv: string[], opts: Omit<MainOptions, 'out' | 'err'> = {}, prog = 'basalt'): Promise<Run> {
  let out = '';
  let err = '';
  const code = await main(argv, prog, { ...opts, out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

/** The subcommands a help text lists: `basalt CMD a|b ...` usage lines and a "Subcommands:" section. */
function listedSubcommands(name: string, help: string): string[] {
  const subs = new Set<string>();
  const esc = name.replace(/[-]/g, '\\-');
  for (const m of help.matchAll(new RegExp(`basalt ${esc} ([a-z][a-z-]*(?:\\|[a-z][a-z-]*)*)(?=[\\s]|$)`, 'g'))) {
    for (const s of m[1]!.split('|')) subs.add(s);
  }
  const sec = /(?:^|\n)Subcommands:\n([\s\S]*?)(?:\n\n|$)/.exec(help);
  for (const line of sec?.[1]?.split('\n') ?? []) {
    const m = /^ {2}([a-z][a-z-]*)\b/.exec(line);
    if (m) subs.add(m[1]!);
  }
  return [...subs];
}

function expectUsage(r: Run, name: string, what: string): void {
  expect(r.code, `${what}: exit code (stderr: ${r.err})`).toBe(0);
  expect(r.out, `${what}: prints a usage text`).toMatch(new RegExp(`^Usage: basalt ${name.replace(/[-]/g, '\\-')}\\b`));
  expect(r.err, `${what}: nothing on stderr`).toBe('');
  expect(r.out + r.err).not.toMatch(/Unknown option/i);
}

describe('basalt --help at every depth', () => {
  it('prints help and exits 0 for every command and every subcommand its help lists', async () => {
    const walked: string[] = [];
    for (const c of commands) {
      const mod = await c.load();
      expectUsage(await basalt([c.name, '--help']), c.name, `basalt ${c.name} --help`);
      expectUsage(await basalt([c.name, '-h']), c.name, `basalt ${c.name} -h`);
      expectUsage(await basalt(['help', c.name]), c.name, `basalt help ${c.name}`);
      expectUsage(await basalt([c.name, '--no-such-flag', '--help']), c.name, `basalt ${c.name} --no-such-flag --help`);
      for (const sub of listedSubcommands(c.name, mod.help)) {
        walked.push(`${c.name} ${sub}`);
        expectUsage(await basalt([c.name, sub, '--help']), c.name, `basalt ${c.name} ${sub} --help`);
        expectUsage(await basalt([c.name, sub, '-h']), c.name, `basalt ${c.name} ${sub} -h`);
        expectUsage(await basalt([c.name, sub, 'ARG', '--no-such-flag', 'x', '--help']), c.name, `basalt ${c.name} ${sub} ARG --no-such-flag x --help`);
        expectUsage(await basalt(['--json', c.name, '--debug', sub, '--help', '--json']), c.name, `basalt --json ${c.name} --debug ${sub} --help --json`);
        expectUsage(await basalt(['help', c.name, sub]), c.name, `basalt help ${c.name} ${sub}`);
      }
    }
    // The walk reached the subcommands of the bug reports, and all of them.
    for (const s of ['disk show', 'disk create', 'disk grow', 'update status', 'update mark-good', 'qemu run', 'cloudinit validate', 'cloudinit apply', 'release promote', 'release refresh', 'keys generate', 'keys export']) {
      expect(walked).toContain(s);
    }
    expect(walked.length).toBeGreaterThanOrEqual(22);
  });

  it('does not take --help after a `--` as help', async () => {
    const r = await basalt(['keys', 'export', '--', '--help']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe('basalt: error: keys export: --key PRIVATE is required\n');
  });

  it("prints a subcommand's own help when the module gives one (helpFor), else the command's", async () => {
    const seen: string[][] = [];
    const ran: string[][] = [];
    const mod: CommandModule = {
      help: 'Usage: basalt fake show|list\n',
      helpFor: (args) => {
        seen.push(args);
        return args[0] === 'show' ? 'Usage: basalt fake show IMAGE' : undefined;
      },
      run: async (ctx: CommandContext) => {
        ran.push(ctx.args);
        return 0;
      },
    };
    const table: CommandEntry[] = [{ name: 'fake', summary: 'a fake', load: async () => mod }];
    expect(await basalt(['fake', 'show', 'img', '--json', '--help'], { commands: table })).toEqual({ code: 0, out: 'Usage: basalt fake show IMAGE\n', err: '' });
    expect(seen.at(-1)).toEqual(['show', 'img']);
    expect((await basalt(['fake', 'list', '-h'], { commands: table })).out).toBe('Usage: basalt fake show|list\n');
    expect((await basalt(['help', 'fake', 'show'], { commands: table })).out).toBe('Usage: basalt fake show IMAGE\n');
    expect((await basalt(['--help', 'fake'], { commands: table })).out).toBe('Usage: basalt fake show|list\n');
    // After `--` everything is the command's, --help and --json included.
    expect((await basalt(['fake', 'show', '--json', '--', '-h', '--json'], { commands: table })).code).toBe(0);
    expect(ran).toEqual([['show', '--', '-h', '--json']]);
  });
});

describe('build-host commands', () => {
  const missing = () => false;

  it('are build and qemu, found in this checkout', () => {
    expect(commands.filter((c) => c.where === 'build-host').map((c) => c.name)).toEqual(['build', 'qemu']);
    for (const c of commands) expect(isAvailable(c), c.name).toBe(true);
    expect(moduleExists('/nonexistent/basalt/builder/src/cli.js')).toBe(false);
  });

  it('are unavailable when their module file is missing; the others do not depend on it', () => {
    const build = commands.find((c) => c.name === 'build')!;
    expect(isAvailable(build, missing)).toBe(false);
    expect(isAvailable({ ...build, module: new URL('file:///nonexistent/basalt/dist/builder/src/cli.js') })).toBe(false);
    expect(isAvailable(commands.find((c) => c.name === 'disk')!, missing)).toBe(true);
    expect(availableCommands(commands, missing).map((c) => c.name)).toEqual(commands.map((c) => c.name).filter((n) => n !== 'build' && n !== 'qemu'));
  });

  it('are left out of basalt --help when absent', async () => {
    const r = await basalt(['--help'], { exists: missing });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ {2}disk /m);
    expect(r.out).toMatch(/^ {2}cloudinit /m);
    expect(r.out).not.toMatch(/^ {2}build /m);
    expect(r.out).not.toMatch(/^ {2}qemu /m);
    const here = await basalt(['--help']);
    expect(here.out).toMatch(/^ {2}build /m);
    expect(here.out).toMatch(/^ {2}qemu /m);
  });

  it('say so as a usage error (exit 2, one line with a hint) when run, --help included, without loading the module', async () => {
    let loaded = 0;
    const table: CommandEntry[] = commands.map((c) =>
      c.where === 'build-host'
        ? { ...c, module: new URL(`file:///nonexistent/basalt/dist/${c.name}/cli.js`), load: async () => (loaded++, c.load()) }
        : c,
    );
    for (const argv of [['build'], ['build', '--out', 'x'], ['build', '--help'], ['help', 'build'], ['--help', 'build'], ['qemu', 'run', 'disk.img', '--snapshot'], ['qemu', 'run', '--help']]) {
      const r = await basalt(argv, { commands: table });
      const name = argv.find((a) => a === 'build' || a === 'qemu')!;
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toBe(`basalt: error: ${name}: not available on this host (it runs on a build host, from a clone of the repository) (hint: ${notAvailable(commands.find((c) => c.name === name)!).hint})\n`);
    }
    expect(loaded).toBe(0);
    expect(notAvailable(commands[0]!).exitCode).toBe(2);
    expect(notAvailable(commands[0]!).hint).toMatch(/clone/);
  });
});

describe('CoreOS-named programs', () => {
  it('get their argv untouched: --help, -help and -h behave as the program itself parses them', async () => {
    for (const prog of Object.keys(programs)) {
      const mod = await programs[prog]!();
      for (const argv of [['--help'], ['-help'], ['-h']]) {
        let out = '';
        let err = '';
        const code = await mod.main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
        const r = await basalt(argv, {}, prog);
        expect(r, `${prog} ${argv.join(' ')}`).toEqual({ code, out, err });
        expect(r.out + r.err).toMatch(/Usage/);
        expect(r.out + r.err).not.toMatch(/Unknown option/i);
      }
    }
  });

  it("coreos-cloudinit prints Go flag's usage on stderr", async () => {
    for (const argv of [['-help'], ['--help'], ['-h']]) {
      const r = await basalt(argv, {}, 'coreos-cloudinit');
      expect(r.out).toBe('');
      expect(r.err).toMatch(/^Usage of coreos-cloudinit:\n {2}-/);
    }
  });
});

import { describe, expect, it } from 'vitest';
import { cli } from '../common/test/helpers.js';

describe('basalt CLI', () => {
  it('lists the commands with --help and exits 0', async () => {
    const r = await cli(['--help']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/Commands:\n/);
    for (const c of ['build', 'disk', 'qemu', 'release', 'serve', 'update', 'cloudinit']) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
  });
  it('exits 2 with usage when no command is given', async () => {
    const r = await cli([]);
    expect(r.exitCode).toBe(2);
  });
  it('exits 2 on an unknown command, with one line naming it', async () => {
    const r = await cli(['frob']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe("basalt: error: unknown command 'frob' (hint: run 'basalt --help' for the list of commands)");
  });
  it('has --help for each command', async () => {
    const r = await cli(['disk', '--help']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/Usage: basalt disk/);
    expect((await cli(['help', 'disk'])).stdout).toMatch(/Usage: basalt disk/);
  });
  it('has --help after subcommands and options too (no "Unknown option")', async () => {
    for (const argv of [
      ['qemu', 'run', '--help'],
      ['qemu', 'run', 'disk.img', '--snapshot', '-h'],
      ['cloudinit', 'validate', '--help'],
      ['disk', 'show', '--help'],
      ['update', 'status', '--help'],
      ['release', 'promote', '--help'],
      ['help', 'qemu', 'run'],
    ]) {
      const r = await cli(argv);
      const name = argv[0] === 'help' ? argv[1] : argv[0];
      expect(r.exitCode, argv.join(' ')).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: basalt ${name} `));
      expect(r.stderr).toBe('');
    }
  });
  it('leaves --help to the CoreOS-named programs', async () => {
    const ci = await cli(['--help'], 'coreos-cloudinit');
    expect(ci.stdout).toBe('');
    expect(ci.stderr).toMatch(/^Usage of coreos-cloudinit:\n/);
    for (const prog of ['update_engine_client', 'locksmithctl']) {
      const r = await cli(['--help'], prog);
      expect(r.exitCode, prog).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: ${prog} `));
    }
  });
  it('prints a stack trace only with --debug', async () => {
    const plain = await cli(['disk', 'show', '/nonexistent.img']);
    expect(plain.exitCode).toBe(1);
    expect(plain.stderr).not.toMatch(/\n\s+at /);
    const dbg = await cli(['--debug', 'disk', 'show', '/nonexistent.img']);
    expect(dbg.exitCode).toBe(1);
    expect(dbg.stderr).toMatch(/\n\s+at /);
  });
  it('prints its version', async () => {
    expect((await cli(['--version'])).stdout).toMatch(/^basalt \d+\.\d+\.\d+/);
  });
});

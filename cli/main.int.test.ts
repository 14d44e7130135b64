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

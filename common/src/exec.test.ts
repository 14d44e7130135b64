import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { quoteArgv, run, tool } from './exec.js';

/** Whether a process runs (a zombie waiting for its reaper does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

describe('exec wrapper', () => {
  it('runs a tool with an argv array, no shell', async () => {
    const r = await run('printf', ['%s|', 'a b', '$HOME', ';true']);
    expect(r.stdout).toBe('a b|$HOME|;true|');
    expect(r.exitCode).toBe(0);
  });
  it('reports a failing tool with its argv, exit code and stderr', async () => {
    const failed = await run('sh', ['-c', 'echo boom >&2; exit 3']).catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: 'E_TOOL_FAILED' });
    expect((failed as Error).message).toMatch(/sh -c 'echo boom >&2; exit 3' failed \(exit code 3\): boom/);
    const r = await run('sh', ['-c', 'exit 4'], { reject: false });
    expect(r.exitCode).toBe(4);
  });
  it('reports a tool killed by a signal as failed, not as missing', async () => {
    const killed = await run('sh', ['-c', 'kill -9 $$']).catch((e: unknown) => e);
    expect(killed).toMatchObject({ code: 'E_TOOL_FAILED' });
    expect((killed as Error).message).toMatch(/killed by SIGKILL/);
    const r = await run('sh', ['-c', 'kill -9 $$'], { reject: false });
    expect(r.exitCode).toBe(-1);
  });
  /** Runs a tool that forks a worker holding its stdout open; `onWorker` gets the worker's pid. */
  const forkingTool = (opts: { signal?: AbortSignal; timeoutMs?: number }, onWorker: (pid: number) => void) =>
    run('sh', ['-c', 'sleep 60 & echo "worker $!"; wait'], {
      ...opts,
      group: true,
      onOutput: (text) => {
        const m = /worker (\d+)/.exec(text);
        if (m) onWorker(Number(m[1]));
      },
    });
  it('cancels a whole process group: a worker the tool forked stops too, and the run ends at once', async () => {
    const ac = new AbortController();
    let worker = 0;
    // The worker keeps the tool's stdout open: killing the tool alone would leave the run waiting 60 s.
    const p = forkingTool({ signal: ac.signal }, (pid) => {
      worker = pid;
      ac.abort();
    });
    await expect(p).rejects.toMatchObject({ code: 'E_TOOL_CANCELED' });
    expect(worker).toBeGreaterThan(0);
    expect(running(worker)).toBe(false);
  }, 10_000);
  it("a process group's deadline stops the worker too, and says it timed out", async () => {
    let worker = 0;
    await expect(forkingTool({ timeoutMs: 500 }, (pid) => (worker = pid))).rejects.toMatchObject({ code: 'E_TOOL_TIMEOUT' });
    expect(worker).toBeGreaterThan(0);
    expect(running(worker)).toBe(false);
  }, 10_000);
  it('reports a missing tool with a hint', async () => {
    await expect(run('basalt-no-such-tool', [])).rejects.toMatchObject({ code: 'E_TOOL_MISSING' });
  });
  it('resolves tools through BASALT_TOOL_<NAME>', () => {
    process.env['BASALT_TOOL_MKFS_VFAT'] = '/opt/x/mkfs.vfat';
    try {
      expect(tool('mkfs.vfat')).toBe('/opt/x/mkfs.vfat');
    } finally {
      delete process.env['BASALT_TOOL_MKFS_VFAT'];
    }
    expect(tool('mkfs.vfat')).toBe('mkfs.vfat');
  });
  it('quotes argv for display', () => {
    expect(quoteArgv(['sgdisk', '-n', '1:2048:+1M', "it's"])).toBe(`sgdisk -n 1:2048:+1M 'it'\\''s'`);
  });
});

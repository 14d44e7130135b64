import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testdir } from '../../common/test/helpers.js';
import { projectRoot } from '../../common/src/paths.js';
import { defaultArtifactsRoot, keepLogsIfFailed } from './image.js';

describe('keepLogsIfFailed', () => {
  it('keeps the serial logs of a (simulated) failed suite under the given root, and nothing when all passed', async () => {
    const work = await testdir('basalt-keeplogs-work-');
    const root = join(await testdir('basalt-keeplogs-dest-'), 'artifacts');
    await mkdir(join(work, 'vm-pxe'), { recursive: true });
    await writeFile(join(work, 'vm-pxe', 'serial.log'), 'console text\n');
    const lines: string[] = [];
    const log = (l: string) => lines.push(l);

    const passed = { type: 'suite', tasks: [{ type: 'test', result: { state: 'pass' } }] };
    expect(await keepLogsIfFailed(passed, work, 'unit-keeplogs', { root, log })).toBeUndefined();
    expect(lines).toEqual([]);

    // A simulated failure: one nested test is marked failed; nothing really failed.
    const failed = { type: 'suite', tasks: [{ type: 'test', result: { state: 'pass' } }, { type: 'suite', tasks: [{ type: 'test', result: { state: 'fail' } }] }] };
    const dest = await keepLogsIfFailed(failed, work, 'unit-keeplogs', { root, log });
    expect(dest?.startsWith(join(root, 'unit-keeplogs-'))).toBe(true);
    expect(await readdir(root)).toHaveLength(1);
    expect(await readFile(join(dest!, 'vm-pxe_serial.log'), 'utf8')).toBe('console text\n');
    // The logs' last lines are printed too, for a run whose artifacts are out of reach.
    expect(lines).toEqual([`[unit-keeplogs] a test failed: serial logs kept in ${dest}`, `[unit-keeplogs] last lines of ${join('vm-pxe', 'serial.log')}:\nconsole text\n`]);
  });

  it('keeps nothing when the failed suite left no serial log', async () => {
    const work = await testdir('basalt-keeplogs-work-');
    const root = join(await testdir('basalt-keeplogs-dest-'), 'artifacts');
    const lines: string[] = [];
    const failed = { type: 'suite', tasks: [{ type: 'test', result: { state: 'fail' } }] };
    expect(await keepLogsIfFailed(failed, work, 'unit-keeplogs', { root, log: (l) => lines.push(l) })).toBeUndefined();
    expect(await readdir(root).catch(() => 'absent')).toBe('absent');
    expect(lines).toEqual([]);
  });

  it('defaults to $BASALT_VM_ARTIFACTS, else qemu-test/artifacts', () => {
    expect(defaultArtifactsRoot({ BASALT_VM_ARTIFACTS: '/var/tmp/vm-logs' })).toBe('/var/tmp/vm-logs');
    expect(defaultArtifactsRoot({})).toBe(join(projectRoot(), 'qemu-test', 'artifacts'));
  });
});

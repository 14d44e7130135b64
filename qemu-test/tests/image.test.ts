import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keepLogsIfFailed } from './image.js';

describe('keepLogsIfFailed', () => {
  it('keeps the serial logs of a suite with a failed test, and nothing when all passed', async () => {
    const work = await mkdtemp(join(tmpdir(), 'basalt-keeplogs-'));
    try {
      await mkdir(join(work, 'vm-pxe'), { recursive: true });
      await writeFile(join(work, 'vm-pxe', 'serial.log'), 'console text\n');
      const passed = { type: 'suite', tasks: [{ type: 'test', result: { state: 'pass' } }] };
      expect(await keepLogsIfFailed(passed, work, 'unit-keeplogs')).toBeUndefined();
      const failed = { type: 'suite', tasks: [{ type: 'test', result: { state: 'pass' } }, { type: 'suite', tasks: [{ type: 'test', result: { state: 'fail' } }] }] };
      const dest = await keepLogsIfFailed(failed, work, 'unit-keeplogs');
      expect(dest).toMatch(/qemu-test\/artifacts\/unit-keeplogs-/);
      expect(await readFile(join(dest!, 'vm-pxe_serial.log'), 'utf8')).toBe('console text\n');
      await rm(dest!, { recursive: true, force: true });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

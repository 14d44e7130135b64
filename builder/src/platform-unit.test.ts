/**
 * The first boot reads the platform id: the kernel-command-line unit runs on
 * cloud-config-url= or any of the platform-id parameters cloudinit reads, and
 * asks coreos-cloudinit for the platform's datasource.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../common/src/paths.js';
import { PLATFORM_PARAMS } from '../../cloudinit/src/datasource/platform.js';

describe('basalt-cloudinit-cmdline.service', () => {
  const unit = readFileSync(join(projectRoot(), 'builder/files/usr/lib/systemd/system/basalt-cloudinit-cmdline.service'), 'utf8');
  it('runs on cloud-config-url= or a platform id (triggering conditions)', () => {
    const conds = [...unit.matchAll(/^ConditionKernelCommandLine=(.*)$/gm)].map((m) => m[1]);
    expect(conds.sort()).toEqual(['|cloud-config-url', ...PLATFORM_PARAMS.map((p) => `|${p}`)].sort());
  });
  it('asks coreos-cloudinit for both', () => {
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/coreos-cloudinit --from-proc-cmdline --oem-from-cmdline$/m);
  });
});

import { describe, expect, it } from 'vitest';
import { BUILD_PLATFORMS, entryWithPlatform, PLATFORM_IDS } from './platform.js';

describe('the platform id contract', () => {
  it('builds every platform', () => {
    expect(PLATFORM_IDS.filter((p) => !(BUILD_PLATFORMS as readonly string[]).includes(p))).toEqual([]);
  });
  it('puts basalt.oem.id last on the options line, replacing any earlier id', () => {
    const entry = 'title Basalt\nlinux /basalt/a/vmlinuz\noptions basalt.slot=A coreos.oem.id=gce console=ttyS0 flatcar.oem.id=ec2\n';
    expect(entryWithPlatform(entry, 'aws')).toBe('title Basalt\nlinux /basalt/a/vmlinuz\noptions basalt.slot=A console=ttyS0 basalt.oem.id=aws\n');
    expect(entryWithPlatform(entryWithPlatform(entry, 'aws')!, 'vmware')).toContain('console=ttyS0 basalt.oem.id=vmware\n');
    expect(entryWithPlatform('title x\n', 'aws')).toBeUndefined();
  });
});

/**
 * The first boot in CoreOS's order, checked on the unit files the image ships: the
 * cloud-config is applied before the services it configures start, etcd is started by no
 * target (only a cloud-config starts it), and the health gate and locksmithd come after.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLOUDINIT_UNITS, CONFIGURED_SERVICES } from '../../../common/src/contracts.js';
import { projectRoot } from '../../../common/src/paths.js';
import { DEMAND_STARTED, ENABLED_UNITS, UNIT_ALIASES, UPDATE_ENGINE_UNITS } from './customize.js';

function unitFile(name: string): string {
  const dir = UPDATE_ENGINE_UNITS.includes(name) ? 'update-engine/units' : 'builder/files/usr/lib/systemd/system';
  return readFileSync(join(projectRoot(), dir, name), 'utf8');
}

/** Values of a [Unit] dependency key (every line of it, space-separated lists). */
function dep(text: string, key: string): string[] {
  return [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].flatMap((m) => m[1]!.trim().split(/\s+/));
}

describe('first-boot order', () => {
  it.each(CLOUDINIT_UNITS)('%s runs before every service a cloud-config configures', (u) => {
    const before = dep(unitFile(u), 'Before');
    for (const s of CONFIGURED_SERVICES) expect(before, `${u} Before= ${s}`).toContain(s);
    expect(before).toContain('basalt-health.service');
  });

  it('etcd is started by no target: it starts when a cloud-config starts it', () => {
    expect(DEMAND_STARTED).toContain('etcd.service');
    expect(Object.values(ENABLED_UNITS).flat()).not.toContain('etcd.service');
    expect(dep(unitFile('basalt-health.service'), 'Wants')).not.toContain('etcd.service');
    // CoreOS configs name it etcd2.service: the alias lives in /usr, not in a /etc link.
    expect(UNIT_ALIASES['etcd2.service']).toBe('etcd.service');
  });

  it('the health gate waits for the cloud-config and what it started; locksmithd for the gate', () => {
    const after = dep(unitFile('basalt-health.service'), 'After');
    for (const u of [...CLOUDINIT_UNITS, 'etcd.service', 'docker.socket']) expect(after).toContain(u);
    const ls = unitFile('locksmithd.service');
    expect(dep(ls, 'After')).toContain('basalt-ready.service');
    expect(dep(ls, 'Requires')).toContain('basalt-ready.service');
  });
});

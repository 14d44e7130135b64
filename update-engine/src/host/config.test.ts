import { describe, it, expect } from 'vitest';
import { IMAGE_UPDATE_CONF, renderImageUpdateConf } from '../../../common/src/contracts.js';
import { locksmithSettings } from '../locksmith/locksmith.js';
import { resolveConf } from './config.js';

describe('update.conf vars', () => {
  it('exposes every variable of the files, merged first file wins (for LOCKSMITHD_* read by locksmith)', () => {
    const c = resolveConf(
      [
        ['/etc/coreos/update.conf', 'LOCKSMITHD_GROUP=east\nREBOOT_WINDOW_START=Thu 23:00\n'],
        ['/usr/share/coreos/update.conf', 'LOCKSMITHD_GROUP=default\nLOCKSMITHD_ETCD_CAFILE=/etc/ssl/etcd/ca.pem\n'],
      ],
      [],
    );
    expect(c.vars).toEqual({ LOCKSMITHD_GROUP: 'east', REBOOT_WINDOW_START: 'Thu 23:00', LOCKSMITHD_ETCD_CAFILE: '/etc/ssl/etcd/ca.pem' });
  });
});

describe("the image's update.conf as the builder renders it from a profile", () => {
  it('gives the server, group, reboot strategy and window and health units back', () => {
    const text = renderImageUpdateConf({ group: 'canary', server: 'static+https://releases.example.com/basalt/', rebootStrategy: 'etcd-lock', rebootWindow: { start: 'Thu 04:00', length: '1h30m' }, healthUnits: ['etcd.service', 'myapp.service'] });
    const c = resolveConf([['/etc/coreos/update.conf', undefined], [IMAGE_UPDATE_CONF, text]], []);
    expect(c).toMatchObject({ group: 'canary', server: 'static+https://releases.example.com/basalt/', rebootStrategy: 'etcd-lock', rebootWindowStart: 'Thu 04:00', rebootWindowLength: '1h30m', healthUnits: ['etcd.service', 'myapp.service'], warnings: [] });
    const l = locksmithSettings({}, c.vars);
    expect(l.window).toEqual({ day: 4, minuteOfDay: 240, lengthMs: 90 * 60_000 });
    // A machine's /etc/coreos/update.conf still wins key by key.
    expect(resolveConf([['/etc/coreos/update.conf', 'GROUP=stable\n'], [IMAGE_UPDATE_CONF, text]], []).group).toBe('stable');
  });
});

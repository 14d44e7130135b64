import { describe, it, expect } from 'vitest';
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

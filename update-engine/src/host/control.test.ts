import { describe, expect, it } from 'vitest';
import { describeStatus, groupId, statusSocketFor } from './control.js';
import type { Status } from './engine.js';

const idle: Status = { status: 'UPDATE_STATUS_IDLE', lastCheckedTime: 0, progress: 0, newVersion: '0.0.0', newSize: 0, currentVersion: '1.0.0', bootedSlot: 'A', channel: 'stable', server: 'http://10.0.2.2:8080/v1/update/', blocked: [] };

describe('control socket helpers', () => {
  it('puts the status socket beside the action socket', () => {
    expect(statusSocketFor('/run/basalt/update-engine.sock')).toBe('/run/basalt/update-engine-status.sock');
    expect(statusSocketFor('/tmp/x')).toBe('/tmp/x-status');
  });
  it('finds a group id in /etc/group text', () => {
    const text = 'root:x:0:\nsudo:x:27:core\nbasalt-update:x:998:core\n';
    expect(groupId(text, 'basalt-update')).toBe(998);
    expect(groupId(text, 'wheel')).toBeUndefined();
    expect(groupId('broken', 'broken')).toBeUndefined();
  });
  it('describes the status for a person', () => {
    expect(describeStatus(idle, 1000)).toBe(
      ['State:      idle (UPDATE_STATUS_IDLE)', 'Running:    1.0.0 on stable, slot A', 'Server:     http://10.0.2.2:8080/v1/update/', 'Last check: never', ''].join('\n'),
    );
    const t = describeStatus({ ...idle, status: 'UPDATE_STATUS_DOWNLOADING', lastCheckedTime: 1_700_000_000, progress: 0.456, newVersion: '1.1.0', newSize: 167_700_000, blocked: ['1.0.5'] }, 1_700_000_000 + 180);
    expect(t).toMatch(/^State: +downloading \(UPDATE_STATUS_DOWNLOADING\)$/m);
    expect(t).toMatch(/^Last check: +2023-11-14 22:13:20 UTC \(3 min ago\)$/m);
    expect(t).toMatch(/^New version: +1\.1\.0 \(167\.7 MB\), 45 % downloaded$/m);
    expect(t).toMatch(/^Refused: +1\.0\.5 \(rolled back/m);
    const failed = describeStatus({ ...idle, lastError: { code: 'E_HASH', message: 'payload hash mismatch', errorCode: 7 } }, 0);
    expect(failed).toMatch(/^Last error: +E_HASH: payload hash mismatch$/m);
  });
});

describe('socket activation', () => {
  it('maps the fds systemd passed by their names, only for this process', async () => {
    const { activatedSockets } = await import('./control.js');
    expect(activatedSockets({ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'status:action' }, 42)).toEqual({ status: 3, action: 4 });
    expect(activatedSockets({ LISTEN_PID: '41', LISTEN_FDS: '2', LISTEN_FDNAMES: 'action:status' }, 42)).toEqual({});
    expect(activatedSockets({}, 42)).toEqual({});
    expect(activatedSockets({ LISTEN_PID: '42', LISTEN_FDS: 'x' }, 42)).toEqual({});
  });
});

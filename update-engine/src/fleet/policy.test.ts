import { describe, it, expect } from 'vitest';
import { BOTTLEROCKET_WAVES, autoPauseReason, decideUpdate, inOfficeHours, inPercent, parsePolicy, policyJson, targetVersion, underRateLimit, wavePercent, type DecideInput } from './policy.js';
import { parseFleetLockBody } from './fleetlock.js';
import { tokenMatches, bearer } from './service.js';
import { FleetMetrics } from './metrics.js';

const H = 3_600_000;
const D = 24 * H;
const base = (over: Partial<DecideInput> = {}): DecideInput => ({
  policy: {}, channelVersion: '3.0.0', channelPercent: 100, rolloutStartedMs: 0, machineId: 'm1', machineVersion: '2.0.0', now: new Date(10 * D), ...over,
});

describe('rollout waves', () => {
  it('follow Bottlerocket: 0 before 1 h, 1 % at 1 h … 100 % at 6 d', () => {
    expect([0, H - 1, H, 4 * H, D, 2 * D, 4 * D, 5 * D, 6 * D, 30 * D].map((t) => wavePercent(BOTTLEROCKET_WAVES, t))).toEqual([0, 0, 1, 5, 15, 40, 60, 90, 100, 100]);
  });
  it('choose machines by a stable hash: the share is honoured within 1 % over 20,000 machines, and a machine never leaves', () => {
    const ids = Array.from({ length: 20_000 }, (_, i) => `machine-${i}`);
    for (const p of [1, 5, 15, 40, 90]) {
      const n = ids.filter((id) => inPercent(id, '3.0.0', p)).length;
      expect(Math.abs(n / ids.length - p / 100)).toBeLessThan(0.01);
    }
    for (const id of ids.slice(0, 500)) if (inPercent(id, '3.0.0', 5)) expect(inPercent(id, '3.0.0', 15)).toBe(true);
  });
  it('gate the decision by the time since the rollout began', () => {
    const policy = { waves: [{ afterMs: H, percent: 50 }, { afterMs: 2 * H, percent: 100 }] };
    expect(decideUpdate(base({ policy, now: new Date(H / 2) }))).toEqual({ offer: false, why: 'outside the 0% rollout of 3.0.0' });
    expect(decideUpdate(base({ policy, now: new Date(2 * H) }))).toMatchObject({ offer: true, version: '3.0.0' });
    // A start stamped by another replica a moment ahead of this clock counts as now.
    expect(decideUpdate(base({ policy: { waves: [{ afterMs: 0, percent: 100 }] }, rolloutStartedMs: 10 * D + 5 }))).toMatchObject({ offer: true });
  });
});

describe('decideUpdate', () => {
  it('offers nothing to a machine at or past the target, or paused, or outside office hours', () => {
    expect(decideUpdate(base({ machineVersion: '3.0.0' })).offer).toBe(false);
    expect(decideUpdate(base({ machineVersion: 'garbage' })).offer).toBe(false);
    expect(decideUpdate(base({ policy: { paused: true } }))).toEqual({ offer: false, why: 'the rollout is paused' });
    // 10 * D is a Sunday (1970-01-11).
    expect(decideUpdate(base({ policy: { officeHours: { days: [1, 2, 3, 4, 5], startMinute: 0, endMinute: 1440 } } }))).toEqual({ offer: false, why: 'outside office hours' });
  });
  it('holds a pinned group at its version and sends machines below the floor to the floor first', () => {
    expect(targetVersion({ pinnedVersion: '2.5.0' }, '3.0.0', '2.0.0')).toBe('2.5.0');
    expect(targetVersion({ pinnedVersion: '2.5.0' }, '3.0.0', '2.5.0')).toBeUndefined();
    expect(targetVersion({ floorVersion: '2.5.0' }, '3.0.0', '2.0.0')).toBe('2.5.0');
    expect(targetVersion({ floorVersion: '2.5.0' }, '3.0.0', '2.5.0')).toBe('3.0.0');
    expect(decideUpdate(base({ policy: { floorVersion: '2.5.0', waves: [{ afterMs: 100 * D, percent: 100 }] } }))).toMatchObject({ offer: true, version: '2.5.0', why: 'floor version 2.5.0 first' });
    expect(decideUpdate(base({ policy: { maxUpdates: 3 } }))).toMatchObject({ offer: true, counted: true });
  });
  it("applies the channel's signed floors to every group, and offers a pin or floor only when the channel signed it", () => {
    const signed = { channel: 'stable', floors: ['2.2.0'], holds: ['2.5.0'] };
    const all = { waves: [{ afterMs: 0, percent: 100 }] };
    expect(targetVersion({}, '3.0.0', '2.0.0', signed.floors)).toBe('2.2.0');
    expect(decideUpdate(base({ policy: all, signed }))).toMatchObject({ offer: true, version: '2.2.0', why: 'floor version 2.2.0 first' });
    expect(decideUpdate(base({ policy: all, machineVersion: '2.2.0', signed }))).toMatchObject({ offer: true, version: '3.0.0' });
    expect(decideUpdate(base({ policy: { ...all, pinnedVersion: '2.5.0' }, machineVersion: '2.2.0', signed }))).toMatchObject({ offer: true, version: '2.5.0', why: 'pinned at 2.5.0' });
    // Below a signed floor, the floor comes before the pin.
    expect(decideUpdate(base({ policy: { ...all, pinnedVersion: '2.5.0' }, signed }))).toMatchObject({ offer: true, version: '2.2.0' });
    expect(decideUpdate(base({ policy: { ...all, pinnedVersion: '2.4.0' }, signed }))).toMatchObject({ offer: true, version: '2.2.0' });
    expect(decideUpdate(base({ policy: { ...all, pinnedVersion: '2.4.0' }, machineVersion: '2.2.0', signed }))).toEqual({ offer: false, why: "pinned version 2.4.0 is not a signed hold of channel stable: run 'basalt release hold 2.4.0 --channel stable'" });
    expect(decideUpdate(base({ policy: { ...all, floorVersion: '2.1.0' }, signed }))).toEqual({ offer: false, why: "floor version 2.1.0 is not a signed floor of channel stable: run 'basalt release floor 2.1.0 --channel stable'" });
    // An unsigned floor or pin stops only the machines it would send there.
    expect(decideUpdate(base({ policy: { ...all, floorVersion: '2.1.0' }, machineVersion: '2.2.0', signed }))).toMatchObject({ offer: true, version: '3.0.0' });
    expect(decideUpdate(base({ policy: { ...all, pinnedVersion: '2.4.0' }, machineVersion: '2.4.0', signed }))).toMatchObject({ offer: false, why: expect.stringMatching(/client is at 2\.4\.0/) as unknown });
    // A pin at or past the channel's release needs no signature.
    expect(decideUpdate(base({ policy: { ...all, pinnedVersion: '9.0.0' }, machineVersion: '2.2.0', signed }))).toMatchObject({ offer: true, version: '3.0.0' });
  });

  it('counts the rate limit per period', () => {
    expect(underRateLimit({ maxUpdates: 2 }, 1)).toBe(true);
    expect(underRateLimit({ maxUpdates: 2 }, 2)).toBe(false);
    expect(underRateLimit({}, 1e9)).toBe(true);
  });
});

describe('office hours and the automatic pause', () => {
  it('wrap midnight on the day the window opened', () => {
    const night = { days: [5], startMinute: 22 * 60, endMinute: 2 * 60 };
    expect(inOfficeHours(night, new Date('2026-12-04T23:00:00Z'))).toBe(true); // Friday
    expect(inOfficeHours(night, new Date('2026-12-05T01:00:00Z'))).toBe(true); // Saturday, Friday's window
    expect(inOfficeHours(night, new Date('2026-12-05T03:00:00Z'))).toBe(false);
    expect(inOfficeHours(night, new Date('2026-12-05T23:00:00Z'))).toBe(false);
  });
  it('pauses past the rollback or error threshold, not before enough machines took the version', () => {
    const a = { rollbackRate: 0.05, errorRate: 0.2, minMachines: 20 };
    expect(autoPauseReason(a, '3.0.0', { machines: 10, rollbacks: 5, errors: 5 })).toBeUndefined();
    expect(autoPauseReason(a, '3.0.0', { machines: 100, rollbacks: 5, errors: 5 })).toBeUndefined();
    expect(autoPauseReason(a, '3.0.0', { machines: 100, rollbacks: 6, errors: 6 })).toMatch(/rollback rate of 3.0.0 is 6.0 %/);
    expect(autoPauseReason(a, '3.0.0', { machines: 100, rollbacks: 0, errors: 21 })).toMatch(/error rate/);
  });
});

describe('parsePolicy', () => {
  it('reads what admins write and writes it back', () => {
    const p = parsePolicy({ waves: 'bottlerocket', maxUpdates: 5, period: '1h', officeHours: { days: [1, 5], start: '09:00', end: '17:30' }, floorVersion: '2.5.0', autoPause: { rollbackRate: 0.1 } });
    expect(p.waves).toHaveLength(7);
    expect(p).toMatchObject({ maxUpdates: 5, periodMs: H, officeHours: { days: [1, 5], startMinute: 540, endMinute: 1050 }, floorVersion: '2.5.0' });
    expect(parsePolicy(policyJson(p))).toEqual(p);
  });
  it.each([
    [{ maxUpdates: -1 }, /maxUpdates/],
    [{ maxUpdates: 1.5 }, /whole number/],
    [{ period: 'soon' }, /not a duration/],
    [{ waves: [{ after: '1h', percent: 101 }] }, /percent/],
    [{ pinnedVersion: 'latest' }, /not a version/],
    [{ officeHours: { start: '9', end: '17:00' } }, /HH:MM/],
    [{ frobnicate: 1 }, /unknown field/],
    [[], /not a JSON object/],
  ])('refuses %j', (raw, re) => {
    expect(() => parsePolicy(raw)).toThrow(re);
  });
});

describe('admin tokens, FleetLock bodies, metrics', () => {
  it('compares tokens in constant time and only with a configured one', () => {
    expect(tokenMatches('a-long-admin-token', 'a-long-admin-token')).toBe(true);
    expect(tokenMatches('a-long-admin-token-', 'a-long-admin-token')).toBe(false);
    expect(tokenMatches('', undefined)).toBe(false);
    expect(tokenMatches(undefined, 'x')).toBe(false);
    expect(bearer('Bearer abc')).toBe('abc');
    expect(bearer('Basic abc')).toBeUndefined();
  });
  it("reads Zincati's client_params", () => {
    expect(parseFleetLockBody('{"client_params":{"id":"abc","group":"workers"}}')).toEqual({ id: 'abc', group: 'workers' });
    expect(parseFleetLockBody('{"client_params":{"id":"abc"}}')).toEqual({ id: 'abc', group: 'default' });
    expect(parseFleetLockBody('{}')).toMatchObject({ kind: 'invalid_client_id' });
    expect(parseFleetLockBody('nope')).toMatchObject({ kind: 'failed_parsing' });
    expect(parseFleetLockBody('{"client_params":{"id":"a","group":"../x"}}')).toMatchObject({ kind: 'invalid_group' });
  });
  it('writes the Prometheus text format', () => {
    const m = new FleetMetrics();
    m.inc(m.checks, { group: 'stable' });
    m.inc(m.checks, { group: 'stable' });
    m.inc(m.events, { type: '3', result: '2' });
    const text = m.text([{ name: 'basalt_fleet_machines', help: 'machines', rows: [{ labels: { group: 'a"b', version: '1.0.0' }, value: 4 }] }]);
    expect(text).toContain('# TYPE basalt_fleet_checks_total counter\nbasalt_fleet_checks_total{group="stable"} 2\n');
    expect(text).toContain('basalt_fleet_events_total{result="2",type="3"} 1\n');
    expect(text).toContain('basalt_fleet_machines{group="a\\"b",version="1.0.0"} 4\n');
  });
});

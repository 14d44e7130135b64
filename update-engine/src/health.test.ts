import { describe, expect, it } from 'vitest';
import { GATE_UNIT, judgeGate, meantToRun, otherBootChecks, parseShowBlocks } from './health.js';

const show = (o: Record<string, string>) => Object.entries(o).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';

describe('meantToRun (which HEALTH_UNITS the gate checks)', () => {
  it('a unit no target wants and nobody started is not meant to run (etcd without a cloud-config asking)', () => {
    expect(meantToRun(show({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '0', WantedBy: '', RequiredBy: '', TriggeredBy: '' }))).toBe(false);
  });
  it("the gate's own Wants= does not count", () => {
    expect(meantToRun(show({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '0', WantedBy: GATE_UNIT }), [GATE_UNIT])).toBe(false);
    expect(meantToRun(show({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '0', WantedBy: `${GATE_UNIT} sockets.target` }), [GATE_UNIT])).toBe(true);
  });
  it('an enabled unit is meant to run even if it never started (its failure must fail the gate)', () => {
    expect(meantToRun(show({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '0', WantedBy: 'multi-user.target' }))).toBe(true);
  });
  it('a socket-triggered service is meant to run', () => {
    expect(meantToRun(show({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '0', TriggeredBy: 'docker.socket' }))).toBe(true);
  });
  it('a unit a cloud-config started this boot is meant to run, whatever became of it', () => {
    expect(meantToRun(show({ ActiveState: 'failed', InactiveExitTimestampMonotonic: '81234567' }))).toBe(true);
    expect(meantToRun(show({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '81234567' }))).toBe(true);
    expect(meantToRun(show({ ActiveState: 'activating', InactiveExitTimestampMonotonic: '0' }))).toBe(true);
  });
});

describe('judgeGate (one systemctl show for every unit)', () => {
  const block = (o: Record<string, string>) => show(o);
  it('reads the blocks in the order of the units; required units must be active; idle HEALTH_UNITS are skipped', () => {
    const text = [
      block({ ActiveState: 'active', InactiveExitTimestampMonotonic: '5', WantedBy: '' }),
      block({ ActiveState: 'inactive', InactiveExitTimestampMonotonic: '0', WantedBy: GATE_UNIT }),
      block({ ActiveState: 'active', InactiveExitTimestampMonotonic: '7', TriggeredBy: '' }),
    ].join('\n');
    expect(judgeGate(['boot-complete.target'], ['etcd.service', 'docker.socket'], text)).toEqual({ healthy: true, failed: [], states: [], skipped: ['etcd.service'] });
  });
  it('a unit started this boot that failed fails the gate with its state', () => {
    const text = [block({ ActiveState: 'failed', InactiveExitTimestampMonotonic: '9' }), block({ ActiveState: 'active' })].join('\n');
    expect(judgeGate([], ['etcd.service', 'docker.socket'], text)).toEqual({ healthy: false, failed: ['etcd.service'], states: ['failed'], skipped: [] });
  });
  it('no answer from systemctl fails every unit instead of skipping it', () => {
    expect(judgeGate(['app.service'], ['etcd.service'], '')).toEqual({ healthy: false, failed: ['app.service', 'etcd.service'], states: ['unknown', 'unknown'], skipped: [] });
  });
  it('parseShowBlocks splits on blank lines', () => {
    expect(parseShowBlocks('A=1\nB=2\n\nA=3\n').map((m) => Object.fromEntries(m))).toEqual([{ A: '1', B: '2' }, { A: '3' }]);
  });
  it('otherBootChecks: the checks an operator added to boot-complete.target', () => {
    expect(otherBootChecks(`Requires=${GATE_UNIT}\n`)).toEqual([]);
    expect(otherBootChecks(`Requires=${GATE_UNIT} my-app-check.service\n`)).toEqual(['my-app-check.service']);
  });
});

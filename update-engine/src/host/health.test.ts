import { describe, expect, it } from 'vitest';
import { GATE_UNIT, meantToRun } from './health.js';

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

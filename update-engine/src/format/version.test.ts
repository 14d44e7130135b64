import { describe, expect, it } from 'vitest';
import { checkVersion, compareVersions, comparePrerelease, isVersion } from './version.js';

describe('compareVersions', () => {
  it("orders SemVer 2.0.0's own example list (§11)", () => {
    const order = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0'];
    for (let i = 0; i < order.length; i++) {
      for (let j = 0; j < order.length; j++) {
        const c = compareVersions(order[i]!, order[j]!);
        if (i < j) expect(c, `${order[i]} < ${order[j]}`).toBeLessThan(0);
        else if (i > j) expect(c, `${order[i]} > ${order[j]}`).toBeGreaterThan(0);
        else expect(c).toBe(0);
      }
    }
    const shuffled = [...order].reverse();
    shuffled.push(shuffled.shift()!);
    expect(shuffled.sort(compareVersions)).toEqual(order);
  });

  it('puts rc.10 after rc.9 (numeric identifiers compare as numbers)', () => {
    expect(compareVersions('1.2.0-rc.9', '1.2.0-rc.10')).toBeLessThan(0);
    expect(compareVersions('1.2.0-rc.10', '1.2.0-rc.9')).toBeGreaterThan(0);
    expect(compareVersions('1.2.0-rc.10', '1.2.0')).toBeLessThan(0);
    expect(compareVersions('1.2.0-rc.2', '1.2.0-rc.2')).toBe(0);
  });

  it('sorts numeric identifiers before alphanumeric ones, alphanumeric ones in ASCII order', () => {
    expect(comparePrerelease('1', 'a')).toBeLessThan(0);
    expect(comparePrerelease('999', '0a')).toBeLessThan(0);
    expect(comparePrerelease('Z', 'a')).toBeLessThan(0); // ASCII: upper case first
    expect(comparePrerelease('rc-1', 'rc1')).toBeLessThan(0); // '-' < '1'
    expect(comparePrerelease('alpha.1', 'alpha')).toBeGreaterThan(0);
    expect(comparePrerelease('12345678901234567890', '9')).toBeGreaterThan(0);
    expect(comparePrerelease('010', '9')).toBeGreaterThan(0);
  });

  it('keeps the rc1 style valid and ordered as one alphanumeric identifier', () => {
    expect(isVersion('1.2.0-rc1')).toBe(true);
    expect(checkVersion('1.2.0-rc1', 'v')).toBe('1.2.0-rc1');
    expect(compareVersions('1.2.0-rc1', '1.2.0-rc2')).toBeLessThan(0);
    expect(compareVersions('1.2.0-rc1', '1.2.0')).toBeLessThan(0);
    expect(compareVersions('1.2.0-rc2', '1.1.9')).toBeGreaterThan(0);
  });

  it('compares the release part numerically and ignores build metadata', () => {
    expect(compareVersions('2079.3.2', '2079.3.10')).toBeLessThan(0);
    expect(compareVersions('1.0', '1.0.0')).toBe(0);
    expect(compareVersions('1.0.0+build.5', '1.0.0+build.1')).toBe(0);
    expect(compareVersions('1.0.0-rc.1+b2', '1.0.0-rc.2+b1')).toBeLessThan(0);
  });

  it('refuses to compare something that is not a version', () => {
    expect(() => compareVersions('1.x', '1.0')).toThrow(/cannot compare versions/);
    expect(isVersion('v1.0')).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { loadLayout, planLayout } from './layout.js';
import { decodeSlotAttrs, encodeSlotAttrs, prioritize, selectNext, setSlotAttrs, slotAttrs, findPartition } from './slots.js';
import type { Gpt } from './types.js';
import { TYPE } from './types.js';

const base = (): Gpt => planLayout(loadLayout('small'), { seed: 't' });

/** A disk whose USR slots (partition numbers → [priority, tries, successful]) are as given. */
function disk(slots: Record<number, [number, number, 0 | 1]>): Gpt {
  let g = base();
  // Add extra USR slots beyond 3 and 4 when asked, carved from nothing (attributes only matter).
  for (const n of Object.keys(slots).map(Number)) {
    if (!g.partitions.some((p) => p.index === n)) {
      const last = g.partitions[g.partitions.length - 1]!;
      g = { ...g, partitions: [...g.partitions, { index: n, type: TYPE['coreos-usr'], guid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`, firstLba: last.lastLba + 1n, lastLba: last.lastLba + 1n, attributes: 0n, label: `USR-${n}` }] };
    }
  }
  for (const [n, [priority, tries, s]] of Object.entries(slots)) g = setSlotAttrs(g, Number(n), { priority, tries, successful: s === 1 });
  return g;
}

const prio = (g: Gpt, n: number) => slotAttrs(findPartition(g, n)).priority;

describe('slot attribute bits (cgpt layout)', () => {
  it('puts priority in bits 48-51, tries in 52-55, successful in 56', () => {
    expect(encodeSlotAttrs(0n, { priority: 1 })).toBe(1n << 48n);
    expect(encodeSlotAttrs(0n, { priority: 15, tries: 15, successful: true })).toBe(0x01ff000000000000n);
    expect(encodeSlotAttrs(0n, { tries: 1 })).toBe(1n << 52n);
    expect(encodeSlotAttrs(0n, { successful: true })).toBe(1n << 56n);
    expect(decodeSlotAttrs(0x0123000000000000n)).toEqual({ priority: 3, tries: 2, successful: true });
  });
  it('keeps unrelated attribute bits', () => {
    const a = (1n << 60n) | (1n << 63n) | 1n | (1n << 2n);
    const b = encodeSlotAttrs(a, { priority: 2, tries: 3, successful: true });
    expect(b & ~(0x1ffn << 48n)).toBe(a);
    expect(decodeSlotAttrs(encodeSlotAttrs(b, { successful: false }))).toEqual({ priority: 2, tries: 3, successful: false });
  });
  it('rejects values outside 0-15', () => {
    expect(() => encodeSlotAttrs(0n, { priority: 16 })).toThrow(/priority 16 is out of range/);
    expect(() => encodeSlotAttrs(0n, { tries: -1 })).toThrow(/tries -1/);
  });
});

describe('selectNext (gptprio.next / cgpt next)', () => {
  const cases: { name: string; slots: Record<number, [number, number, 0 | 1]>; want: number | null; triesAfter?: number }[] = [
    { name: 'the only good slot', slots: { 3: [1, 0, 1], 4: [0, 0, 0] }, want: 3 },
    { name: 'higher priority wins', slots: { 3: [1, 0, 1], 4: [2, 1, 0] }, want: 4, triesAfter: 0 },
    { name: 'equal priorities go to the lower partition number', slots: { 3: [2, 0, 1], 4: [2, 0, 1] }, want: 3 },
    { name: 'equal priorities, lower number has tries', slots: { 3: [2, 3, 0], 4: [2, 0, 1] }, want: 3, triesAfter: 2 },
    { name: 'tries 0 and not successful is skipped', slots: { 3: [1, 0, 1], 4: [2, 0, 0] }, want: 3 },
    { name: 'successful with tries 0 boots and writes nothing', slots: { 3: [1, 0, 0], 4: [2, 0, 1] }, want: 4 },
    { name: 'priority 0 never boots, even when successful', slots: { 3: [0, 5, 1], 4: [0, 0, 1] }, want: null },
    { name: 'nothing bootable', slots: { 3: [1, 0, 0], 4: [2, 0, 0] }, want: null },
    { name: 'successful and tries left: tries are still decremented', slots: { 3: [1, 0, 1], 4: [3, 2, 1] }, want: 4, triesAfter: 1 },
    { name: 'three slots', slots: { 3: [1, 0, 1], 4: [2, 0, 0], 5: [3, 1, 0] }, want: 5, triesAfter: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const g = disk(c.slots);
      const r = selectNext(g);
      if (c.want === null) {
        expect(r).toBeNull();
        return;
      }
      expect(r?.index).toBe(c.want);
      const before = slotAttrs(findPartition(g, c.want));
      const after = slotAttrs(findPartition(r!.gpt, c.want));
      expect(r!.changed).toBe(before.tries > 0);
      expect(after.tries).toBe(c.triesAfter ?? before.tries);
      expect(after.priority).toBe(before.priority);
      expect(after.successful).toBe(before.successful);
    });
  }
  it('ignores partitions that are not USR slots', () => {
    let g = disk({ 3: [1, 0, 1], 4: [0, 0, 0] });
    g = setSlotAttrs(g, 9, { priority: 15, tries: 15, successful: true });
    expect(selectNext(g)?.index).toBe(3);
  });
  it('a rollback: the new slot fails its one try, the old one boots next', () => {
    // After an update: B P2/T1/S0, A P1/T0/S1.
    let g = disk({ 3: [1, 0, 1], 4: [2, 1, 0] });
    const first = selectNext(g)!;
    expect(first.index).toBe(4);
    g = first.gpt; // B never marked good
    const second = selectNext(g)!;
    expect(second.index).toBe(3);
    expect(second.changed).toBe(false);
  });
});

describe('prioritize (cgpt prioritize)', () => {
  it('after an update: B goes to the top, A is renumbered below', () => {
    const g = prioritize(disk({ 3: [1, 0, 1], 4: [0, 0, 0] }), 4);
    expect([prio(g, 4), prio(g, 3)]).toEqual([2, 1]);
  });
  it('prioritizing the highest slot again keeps the order and renumbers from the group count', () => {
    const g = prioritize(disk({ 3: [1, 0, 1], 4: [5, 0, 1] }), 4);
    expect([prio(g, 4), prio(g, 3)]).toEqual([2, 1]);
  });
  it('keeps the relative order of the others and never lowers an active slot to 0', () => {
    const g = prioritize(disk({ 3: [3, 0, 1], 4: [2, 0, 1], 5: [1, 0, 1], 6: [0, 0, 0] }), 5);
    expect([prio(g, 5), prio(g, 3), prio(g, 4), prio(g, 6)]).toEqual([3, 2, 1, 0]);
  });
  it('equal priorities stay one group', () => {
    const g = prioritize(disk({ 3: [2, 0, 1], 4: [2, 0, 1], 5: [1, 0, 0] }), 5);
    expect([prio(g, 5), prio(g, 3), prio(g, 4)]).toEqual([2, 1, 1]);
  });
  it('with friends the whole group moves up', () => {
    const g = prioritize(disk({ 3: [1, 0, 1], 4: [1, 0, 1], 5: [2, 0, 1] }), 3, { friends: true });
    expect([prio(g, 3), prio(g, 4), prio(g, 5)]).toEqual([2, 2, 1]);
  });
  it('-P sets the top priority and coalesces at 1', () => {
    const g = prioritize(disk({ 3: [3, 0, 1], 4: [2, 0, 1], 5: [1, 0, 1] }), 5, { maxPriority: 2 });
    expect([prio(g, 5), prio(g, 3), prio(g, 4)]).toEqual([2, 1, 1]);
  });
  it('refuses a partition that is not a USR slot', () => {
    expect(() => prioritize(base(), 9)).toThrow(/not a USR slot/);
  });
  it('does not touch tries or successful', () => {
    const g = prioritize(disk({ 3: [1, 0, 1], 4: [0, 1, 0] }), 4);
    expect(slotAttrs(findPartition(g, 4))).toEqual({ priority: 2, tries: 1, successful: false });
    expect(slotAttrs(findPartition(g, 3))).toEqual({ priority: 1, tries: 0, successful: true });
  });
});

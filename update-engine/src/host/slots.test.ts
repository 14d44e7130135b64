/**
 * The rules the update-engine must never break, tested directly on the pure
 * slot functions: no byte outside the inactive slot, and the GPT attribute
 * sequence of an install (invalidate, postinst) and of mark-good, read back
 * through the boot loader's own choice (gptprio.next).
 */
import { describe, expect, it } from 'vitest';
import { findPartition, planLayout, loadLayout, selectNext, setSlotAttrs, slotAttrs, type Gpt } from '../../../common/src/gpt/index.js';
import { SLOT_PARTLABEL } from '../../../common/src/contracts.js';
import { assertInactiveWrite, gptChoice, invalidateTarget, markGoodAttrs, planSlots, postinstAttrs } from './slots.js';

/** A disk as the builder leaves it after a good first boot of A: A priority 1, successful; B empty. */
function builtDisk(): Gpt {
  const gpt = planLayout(loadLayout('small'), { sizeBytes: 256 * 1024 * 1024, seed: 'slots-test' });
  const a = findPartition(gpt, SLOT_PARTLABEL.A).index;
  return setSlotAttrs(gpt, a, { priority: 1, tries: 0, successful: true });
}

const attrs = (gpt: Gpt, s: 'A' | 'B') => slotAttrs(findPartition(gpt, SLOT_PARTLABEL[s]));
/** The slot the boot loader would take (gptprio.next), by name. */
const next = (gpt: Gpt) => {
  const c = selectNext(gpt);
  return c && { slot: c.index === findPartition(gpt, SLOT_PARTLABEL.A).index ? 'A' : 'B', gpt: c.gpt };
};

describe('no write outside the inactive slot', () => {
  for (const booted of ['A', 'B'] as const) {
    it(`booted from ${booted}: only the other slot's bytes may be written`, () => {
      const plan = planSlots(builtDisk(), booted);
      expect(plan.target).toBe(booted === 'A' ? 'B' : 'A');
      const r = plan.range;
      const a = plan.activeRange;
      // The whole inactive slot, its first and last byte.
      expect(() => assertInactiveWrite(plan, r.offset, r.length)).not.toThrow();
      expect(() => assertInactiveWrite(plan, r.offset, 1)).not.toThrow();
      expect(() => assertInactiveWrite(plan, r.offset + r.length - 1, 1)).not.toThrow();
      // Any byte of the active slot, one byte before or after the inactive one, a write across its end.
      for (const [off, len] of [
        [a.offset, 1],
        [a.offset + a.length - 1, 1],
        [a.offset, a.length],
        [r.offset - 1, 1],
        [r.offset + r.length, 1],
        [r.offset + r.length - 10, 11],
        [0, 512],
      ] as const) {
        expect(() => assertInactiveWrite(plan, off, len), `${off}+${len}`).toThrow(expect.objectContaining({ code: 'E_ACTIVE_SLOT_WRITE' }) as Error);
      }
    });
  }
});

describe('the GPT attribute sequence of an install', () => {
  it('invalidate before writing: the target can never boot while it is half written', () => {
    const gpt = builtDisk();
    const plan = planSlots(gpt, 'A');
    const during = invalidateTarget(gpt, plan);
    expect(attrs(during, 'B')).toEqual({ priority: 0, tries: 0, successful: false });
    // The booted slot is untouched and is what the loader picks.
    expect(attrs(during, 'A')).toEqual(attrs(gpt, 'A'));
    expect(gptChoice(during)).toBe('A');
  });

  it('postinst after verification: the new slot on top with its tries, the old one kept as the fallback', () => {
    const gpt = invalidateTarget(builtDisk(), planSlots(builtDisk(), 'A'));
    const plan = planSlots(gpt, 'A');
    const after = postinstAttrs(gpt, plan, 1);
    expect(attrs(after, 'B')).toMatchObject({ tries: 1, successful: false });
    expect(attrs(after, 'B').priority).toBeGreaterThan(attrs(after, 'A').priority);
    expect(attrs(after, 'A')).toMatchObject({ successful: true });
    expect(attrs(after, 'A').priority).toBeGreaterThan(0);
    expect(gptChoice(after)).toBe('B');
    // The trial boot spends B's one try; a failed B leaves A as the loader's choice.
    const first = next(after);
    expect(first?.slot).toBe('B');
    const spent = first!.gpt;
    expect(attrs(spent, 'B')).toMatchObject({ tries: 0, successful: false });
    expect(next(spent)?.slot).toBe('A');
  });

  it('mark-good: the booted slot successful, no tries, on top; the old slot stays a rollback target', () => {
    const plan = planSlots(builtDisk(), 'A');
    const trial = next(postinstAttrs(invalidateTarget(builtDisk(), plan), plan, 1))!.gpt;
    const good = markGoodAttrs(trial, findPartition(trial, SLOT_PARTLABEL.B).index);
    expect(attrs(good, 'B')).toMatchObject({ tries: 0, successful: true });
    expect(attrs(good, 'B').priority).toBeGreaterThan(attrs(good, 'A').priority);
    expect(attrs(good, 'A')).toMatchObject({ successful: true });
    expect(gptChoice(good)).toBe('B');
    // A successful slot boots again and again (its tries are not spent).
    expect(next(next(good)!.gpt)?.slot).toBe('B');
  });
});

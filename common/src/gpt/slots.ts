/**
 * A/B slot attributes in cgpt's bit layout (priority 48-51, tries 52-55,
 * successful 56) and the operations of cgpt and GRUB's gptprio on them.
 * Every function here is pure: it returns a new Gpt and writes nothing.
 */
import { BasaltError } from '../errors.js';
import { GPT_ERRORS } from './errors.js';
import type { Gpt, Partition, SlotAttrs } from './types.js';
import { USR_TYPE } from './types.js';

const PRIORITY_SHIFT = 48n;
const TRIES_SHIFT = 52n;
const SUCCESSFUL_SHIFT = 56n;
const NIBBLE = 0xfn;

export function decodeSlotAttrs(attributes: bigint): SlotAttrs {
  return {
    priority: Number((attributes >> PRIORITY_SHIFT) & NIBBLE),
    tries: Number((attributes >> TRIES_SHIFT) & NIBBLE),
    successful: ((attributes >> SUCCESSFUL_SHIFT) & 1n) === 1n,
  };
}

export function slotAttrs(p: Pick<Partition, 'attributes'>): SlotAttrs {
  return decodeSlotAttrs(p.attributes);
}

function checkNibble(v: number | undefined, what: string): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < 0 || v > 15) {
    throw new BasaltError(GPT_ERRORS.E_GPT_BAD_ATTR, `${what} ${v} is out of range`, { hint: `${what} must be an integer from 0 to 15` });
  }
}

/** Returns `attributes` with the given slot fields replaced; other bits are kept. */
export function encodeSlotAttrs(attributes: bigint, set: Partial<SlotAttrs>): bigint {
  checkNibble(set.priority, 'priority');
  checkNibble(set.tries, 'tries');
  let a = attributes;
  if (set.priority !== undefined) a = (a & ~(NIBBLE << PRIORITY_SHIFT)) | (BigInt(set.priority) << PRIORITY_SHIFT);
  if (set.tries !== undefined) a = (a & ~(NIBBLE << TRIES_SHIFT)) | (BigInt(set.tries) << TRIES_SHIFT);
  if (set.successful !== undefined) a = (a & ~(1n << SUCCESSFUL_SHIFT)) | ((set.successful ? 1n : 0n) << SUCCESSFUL_SHIFT);
  return BigInt.asUintN(64, a);
}

/** Finds a partition by number (1-based) or by label; throws E_GPT_NO_PARTITION. */
export function findPartition(gpt: Gpt, which: number | string): Partition {
  const p =
    typeof which === 'number' || /^\d+$/.test(which)
      ? gpt.partitions.find((x) => x.index === Number(which))
      : gpt.partitions.find((x) => x.label === which);
  if (!p) {
    const have = gpt.partitions.map((x) => `${x.index}${x.label ? ` (${x.label})` : ''}`).join(', ') || 'none';
    throw new BasaltError(GPT_ERRORS.E_GPT_NO_PARTITION, `no partition ${typeof which === 'number' ? which : `'${which}'`} on this disk`, {
      hint: `partitions present: ${have}`,
    });
  }
  return p;
}

function replace(gpt: Gpt, index: number, attributes: bigint): Gpt {
  return { ...gpt, partitions: gpt.partitions.map((p) => (p.index === index ? { ...p, attributes } : p)) };
}

/** Sets priority, tries and/or successful on partition `index` (cgpt add -P/-T/-S). */
export function setSlotAttrs(gpt: Gpt, index: number, set: Partial<SlotAttrs>): Gpt {
  const p = findPartition(gpt, index);
  return replace(gpt, index, encodeSlotAttrs(p.attributes, set));
}

export function isUsrSlot(p: Partition): boolean {
  return p.type === USR_TYPE;
}

/**
 * cgpt prioritize: partition `index` (a USR slot) gets the highest priority;
 * the other USR slots keep their relative order in priority groups below it,
 * numbered down from the number of groups (or from `maxPriority`), never
 * below 1; slots at priority 0 stay at 0. With `friends`, the slots that
 * shared the target's priority move up with it.
 */
export function prioritize(gpt: Gpt, index: number, opts: { maxPriority?: number; friends?: boolean } = {}): Gpt {
  const target = findPartition(gpt, index);
  if (!isUsrSlot(target)) {
    throw new BasaltError(GPT_ERRORS.E_GPT_NOT_SLOT, `partition ${index} (${target.label || 'unnamed'}) is not a USR slot`, {
      hint: `only partitions of type coreos-usr (${USR_TYPE}) can be prioritized`,
    });
  }
  if (opts.maxPriority !== undefined) checkNibble(opts.maxPriority, 'priority');
  const TOP = 99;
  const origPriority = slotAttrs(target).priority;
  // Groups of partition numbers by priority, in order of first appearance.
  const groups: { priority: number; parts: number[] }[] = [];
  const add = (priority: number, part: number) => {
    let g = groups.find((x) => x.priority === priority);
    if (!g) {
      g = { priority, parts: [] };
      groups.push(g);
    }
    g.parts.push(part);
  };
  for (const p of gpt.partitions) {
    if (!isUsrSlot(p)) continue;
    const pr = slotAttrs(p).priority;
    if (p.index === index && !opts.friends) add(TOP, p.index);
    else add(pr, p.index);
  }
  if (opts.friends) {
    const g = groups.find((x) => x.priority === origPriority);
    if (g) g.priority = TOP;
  }
  // Stable sort by priority, highest first (insertion sort keeps equal order).
  const sorted = [...groups].sort((a, b) => b.priority - a.priority);
  let n = sorted.length;
  if (n > 0 && sorted[n - 1]!.priority === 0) n--;
  // No --max-priority (or 0): one level per slot, at most 15.
  let priority = Math.min(n, 15);
  if (opts.maxPriority) priority = opts.maxPriority;
  let out = gpt;
  for (let i = 0; i < n; i++) {
    for (const part of sorted[i]!.parts) {
      const p = findPartition(out, part);
      out = replace(out, part, encodeSlotAttrs(p.attributes, { priority }));
    }
    if (priority > 1) priority--;
  }
  return out;
}

export interface NextChoice {
  /** The partition a gptprio bootloader boots. */
  index: number;
  /** The table after the boot attempt (tries decremented when it was > 0). */
  gpt: Gpt;
  /** True when tries were decremented (the table must be written). */
  changed: boolean;
}

/**
 * GRUB gptprio.next / cgpt next: among USR slots with tries > 0 or
 * successful, the one with the highest priority (> 0); ties go to the lower
 * partition number. Returns null when no slot is bootable.
 */
export function selectNext(gpt: Gpt): NextChoice | null {
  let found: Partition | undefined;
  for (const p of [...gpt.partitions].sort((a, b) => a.index - b.index)) {
    if (!isUsrSlot(p)) continue;
    const a = slotAttrs(p);
    const old = found ? slotAttrs(found).priority : 0;
    if ((a.tries > 0 || a.successful) && a.priority > old) found = p;
  }
  if (!found) return null;
  const a = slotAttrs(found);
  if (a.tries > 0) {
    return { index: found.index, gpt: replace(gpt, found.index, encodeSlotAttrs(found.attributes, { tries: a.tries - 1 })), changed: true };
  }
  return { index: found.index, gpt, changed: false };
}

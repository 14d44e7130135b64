/**
 * Which USR slot is active and which one the engine may write, and the boot
 * chain state of both (GPT attributes in cgpt's layout + Boot Loader Spec
 * entries on the ESP). Selection functions are pure.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { findPartition, partitionRange, prioritize, setSlotAttrs, slotAttrs, selectNext, type Gpt, type Partition } from '../../../common/src/gpt/index.js';
import { entryFileName, parseEntryFileName } from '../../../common/src/boot.js';
import { otherSlot, SLOT_PARTLABEL, type SlotName } from '../../../common/src/contracts.js';
import { UE_ERRORS } from '../errors.js';


export interface SlotPlan {
  booted: SlotName;
  target: SlotName;
  active: Partition;
  inactive: Partition;
  /** Byte range of the inactive partition on the disk: the only range the engine writes. */
  range: { offset: number; length: number };
  activeRange: { offset: number; length: number };
}

/** Resolves the slots by PARTLABEL (never by partition-number arithmetic). */
export function planSlots(gpt: Gpt, booted: SlotName): SlotPlan {
  const active = findPartition(gpt, SLOT_PARTLABEL[booted]);
  const inactive = findPartition(gpt, SLOT_PARTLABEL[otherSlot(booted)]);
  return { booted, target: otherSlot(booted), active, inactive, range: partitionRange(gpt, inactive), activeRange: partitionRange(gpt, active) };
}

/** Throws E_ACTIVE_SLOT_WRITE unless [off, off+len) lies inside the inactive slot. A guard, called before every write. */
export function assertInactiveWrite(plan: SlotPlan, off: number, len: number): void {
  const r = plan.range;
  const a = plan.activeRange;
  if (off < r.offset || off + len > r.offset + r.length || (off < a.offset + a.length && off + len > a.offset)) {
    throw new BasaltError(UE_ERRORS.E_ACTIVE_SLOT_WRITE, `refusing to write bytes ${off}-${off + len} outside the inactive slot ${SLOT_PARTLABEL[plan.target]}`, {
      hint: 'this is a bug in Basalt; the active slot is never written',
    });
  }
}

/** Before writing: the target slot can never be chosen (cgpt add -P0 -T0 -S0). Pure. */
export function invalidateTarget(gpt: Gpt, plan: SlotPlan): Gpt {
  return setSlotAttrs(gpt, plan.inactive.index, { priority: 0, tries: 0, successful: false });
}

/** flatcar-postinst: cgpt add -S0 -T<tries>; cgpt prioritize. Pure. */
export function postinstAttrs(gpt: Gpt, plan: SlotPlan, tries: number): Gpt {
  return prioritize(setSlotAttrs(gpt, plan.inactive.index, { successful: false, tries }), plan.inactive.index);
}

/** flatcar-setgoodroot: cgpt add -S1 -T0; cgpt prioritize on the booted slot. Pure. */
export function markGoodAttrs(gpt: Gpt, index: number): Gpt {
  return prioritize(setSlotAttrs(gpt, index, { successful: true, tries: 0 }), index);
}

/** The slot gptprio would boot next (without the tries side effect), by label. */
export function gptChoice(gpt: Gpt): SlotName | undefined {
  const n = selectNext(gpt);
  if (!n) return undefined;
  const p = gpt.partitions.find((x) => x.index === n.index);
  return p?.label === SLOT_PARTLABEL.B ? 'B' : p?.label === SLOT_PARTLABEL.A ? 'A' : undefined;
}

export interface EntryInfo {
  file: string;
  slot: SlotName;
  version: string;
  left?: number | undefined;
  done?: number | undefined;
}

/** Parses the `version` line of a BLS entry. */
export function entryVersion(text: string): string | undefined {
  return /^version\s+(\S+)\s*$/m.exec(text)?.[1];
}

/**
 * The entry systemd-boot would boot by default among Basalt's: entries with
 * no tries left sort last, then the highest version first (same sort-key).
 */
export function loaderChoice(entries: EntryInfo[]): EntryInfo | undefined {
  const cmp = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });
  return [...entries].sort((x, y) => {
    const bx = x.left === 0 ? 1 : 0;
    const by = y.left === 0 ? 1 : 0;
    if (bx !== by) return bx - by;
    return cmp(y.version, x.version);
  })[0];
}

export function entryInfo(file: string, text: string | undefined): EntryInfo | undefined {
  const n = parseEntryFileName(file);
  if (!n) return undefined;
  return { file, slot: n.slot === 'a' ? 'A' : 'B', version: (text && entryVersion(text)) ?? '0', left: n.left, done: n.done };
}

export { entryFileName, slotAttrs };

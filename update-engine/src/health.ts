/**
 * After a boot: the health gate that marks the booted slot good (GPT
 * successful=1, tries=0, prioritized, like flatcar-setgoodroot) and blesses
 * its boot entry (basalt-b+N-M.conf -> basalt-b.conf, like
 * systemd-bless-boot); and the manual rollback to the other slot.
 */
import { BasaltError } from '../../common/src/errors.js';
import { run } from '../../common/src/exec.js';
import { readGpt, writeGpt, findPartition, prioritize, slotAttrs } from '../../common/src/gpt/index.js';
import { entryFileName, parseEntryFileName } from '../../common/src/boot.js';
import type { Esp } from './esp.js';
import { PARTLABEL, other, lower, markGoodAttrs, type SlotName } from './slots.js';

export interface GateResult {
  healthy: boolean;
  failed: string[];
  /** The state `systemctl is-active` printed for each failed unit (same order). */
  states: string[];
  /** HEALTH_UNITS this machine is not meant to run (not wanted by anything, not started this boot). */
  skipped: string[];
}

/** The facts `systemctl show` gives about a unit that decide whether it is up and whether this machine means to run it. */
export const UNIT_FACTS = ['ActiveState', 'InactiveExitTimestampMonotonic', 'WantedBy', 'RequiredBy', 'TriggeredBy'] as const;

/** `systemctl show` output for several units: one map per unit, in the order they were named. Pure. */
export function parseShowBlocks(text: string): Map<string, string>[] {
  const out: Map<string, string>[] = [];
  let cur: Map<string, string> | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      cur = undefined;
      continue;
    }
    const i = line.indexOf('=');
    if (i <= 0) continue;
    if (!cur) out.push((cur = new Map()));
    cur.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

const asMap = (show: string | Map<string, string>) => (typeof show === 'string' ? (parseShowBlocks(show)[0] ?? new Map<string, string>()) : show);

/**
 * Whether the machine is meant to run a unit, from its UNIT_FACTS. Pure.
 * Yes when it was started this boot (whatever became of it), or when something pulls it in: a
 * target's wants/requires (it is enabled) or a socket or timer that triggers it. `ignore` names
 * units whose own pull does not count (the gate itself wants what it checks).
 */
export function meantToRun(show: string | Map<string, string>, ignore: string[] = []): boolean {
  const f = asMap(show);
  const state = f.get('ActiveState') ?? 'inactive';
  if (state !== 'inactive') return true;
  if (Number(f.get('InactiveExitTimestampMonotonic') ?? '0') > 0) return true;
  const pulledBy = ['WantedBy', 'RequiredBy', 'TriggeredBy'].flatMap((k) => (f.get(k) ?? '').split(/\s+/).filter(Boolean));
  return pulledBy.some((u) => !ignore.includes(u));
}

/** The unit that runs the gate at boot (its Wants= must not make a unit look meant to run). */
export const GATE_UNIT = 'basalt-health.service';

/**
 * The gate's verdict from one `systemctl show` of every unit (`show` holds their blocks in the
 * order of `units`, the union of `required` and `configured`). Every unit of `required` must be
 * active, and every unit of `configured` (HEALTH_UNITS) that this machine is meant to run; the
 * others are skipped. Pure.
 */
export function judgeGate(required: string[], configured: string[], show: string): GateResult {
  const units = [...new Set([...required, ...configured])];
  const blocks = parseShowBlocks(show);
  const failed: string[] = [];
  const states: string[] = [];
  const skipped: string[] = [];
  units.forEach((u, i) => {
    const f = blocks.length === units.length ? blocks[i]! : new Map<string, string>();
    if (!required.includes(u) && f.size > 0 && !meantToRun(f, [GATE_UNIT])) {
      skipped.push(u);
      return;
    }
    const state = f.get('ActiveState') ?? 'unknown';
    if (state !== 'active') {
      failed.push(u);
      states.push(state);
    }
  });
  return { healthy: failed.length === 0, failed, states, skipped };
}

/**
 * The health gate: every unit of `required` must be active, and every unit of `configured`
 * (HEALTH_UNITS) that this machine is meant to run. One `systemctl show` for all of them (a
 * boot under emulation pays for every process it starts).
 */
export async function healthGate(required: string[], configured: string[] = []): Promise<GateResult> {
  const units = [...new Set([...required, ...configured])];
  if (units.length === 0) return { healthy: true, failed: [], states: [], skipped: [] };
  const r = await run('systemctl', ['show', ...UNIT_FACTS.flatMap((p) => ['-p', p]), '--', ...units], { reject: false });
  return judgeGate(required, configured, r.exitCode === 0 ? r.stdout : '');
}

/** Units besides the gate that boot-complete.target requires (checks an operator added), from its `systemctl show -p Requires`. Pure. */
export function otherBootChecks(show: string): string[] {
  const req = parseShowBlocks(show)[0]?.get('Requires') ?? '';
  return req.split(/\s+/).filter((u) => u && u !== GATE_UNIT);
}

/** Marks the booted slot good and blesses its entry. Throws E_HEALTH_GATE when a check failed (nothing is changed then). */
export async function markGood(disk: string, esp: Esp, booted: SlotName, gate: GateResult): Promise<{ blessed: string | undefined }> {
  if (!gate.healthy) {
    throw new BasaltError('E_HEALTH_GATE', `not marking ${PARTLABEL[booted]} good: ${gate.failed.join(', ')} not active`, {
      hint: 'the boot loader falls back to the other slot when this boot is not blessed',
    });
  }
  const gpt = await readGpt(disk);
  await writeGpt(disk, markGoodAttrs(gpt, findPartition(gpt, PARTLABEL[booted]).index));
  let blessed: string | undefined;
  for (const f of await esp.list('/loader/entries')) {
    const n = parseEntryFileName(f);
    if (n?.slot === lower(booted) && n.left !== undefined) {
      blessed = entryFileName(lower(booted));
      await esp.rename(`/loader/entries/${f}`, `/loader/entries/${blessed}`);
    }
  }
  return { blessed };
}

/** Switches the next boot to the other slot, when that slot was good before. */
export async function rollback(disk: string, esp: Esp, booted: SlotName): Promise<SlotName> {
  const to = other(booted);
  const gpt = await readGpt(disk);
  const p = findPartition(gpt, PARTLABEL[to]);
  const entries = await esp.list('/loader/entries');
  const target = entries.find((f) => parseEntryFileName(f)?.slot === lower(to));
  if (!slotAttrs(p).successful || !target) {
    throw new BasaltError('E_ROLLBACK_INVALID', `cannot roll back: ${PARTLABEL[to]} was never marked good or has no boot entry`, { hint: 'only a slot that booted successfully before can be rolled back to' });
  }
  await writeGpt(disk, prioritize(gpt, p.index));
  // The running slot's entry gets no tries left, so the boot loader prefers the other one.
  for (const f of entries) if (parseEntryFileName(f)?.slot === lower(booted)) await esp.rename(`/loader/entries/${f}`, `/loader/entries/${entryFileName(lower(booted), 0)}`);
  return to;
}

/**
 * After a boot: the health gate that marks the booted slot good (GPT
 * successful=1, tries=0, prioritized, like flatcar-setgoodroot) and blesses
 * its boot entry (basalt-b+N-M.conf -> basalt-b.conf, like
 * systemd-bless-boot); and the manual rollback to the other slot.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { readGpt, writeGpt, findPartition, prioritize, slotAttrs } from '../../../common/src/gpt/index.js';
import { entryFileName, parseEntryFileName } from '../../../common/src/boot.js';
import type { Esp } from './esp.js';
import { markGoodAttrs } from './slots.js';
import { UE_ERRORS } from '../errors.js';
import { SLOT_PARTLABEL, otherSlot, slotKey, type SlotName } from '../../../common/src/contracts.js';

export interface GateResult {
  healthy: boolean;
  failed: string[];
  /** The state `systemctl is-active` printed for each failed unit (same order). */
  states: string[];
  /** HEALTH_UNITS this machine is not meant to run (not wanted by anything, not started this boot). */
  skipped: string[];
}

/** The facts `systemctl show` gives about a unit that decide whether this machine means to run it. */
export const UNIT_FACTS = ['ActiveState', 'InactiveExitTimestampMonotonic', 'WantedBy', 'RequiredBy', 'TriggeredBy'] as const;

/**
 * Whether the machine is meant to run a unit, from `systemctl show -p …` output (UNIT_FACTS). Pure.
 * Yes when it was started this boot (whatever became of it), or when something pulls it in: a
 * target's wants/requires (it is enabled) or a socket or timer that triggers it. `ignore` names
 * units whose own pull does not count (the gate itself wants what it checks).
 */
export function meantToRun(show: string, ignore: string[] = []): boolean {
  const f = new Map<string, string>();
  for (const line of show.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) f.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const state = f.get('ActiveState') ?? 'inactive';
  if (state !== 'inactive') return true;
  if (Number(f.get('InactiveExitTimestampMonotonic') ?? '0') > 0) return true;
  const pulledBy = ['WantedBy', 'RequiredBy', 'TriggeredBy'].flatMap((k) => (f.get(k) ?? '').split(/\s+/).filter(Boolean));
  return pulledBy.some((u) => !ignore.includes(u));
}

/** The unit that runs the gate at boot (its Wants= must not make a unit look meant to run). */
export const GATE_UNIT = 'basalt-health.service';

/** States a unit passes through; the gate waits for a unit to leave them (bounded) before it judges. */
export const TRANSITIONAL_STATES = ['activating', 'deactivating', 'reloading'];

export interface GateOptions {
  /** How long a unit may stay in a transitional state before it counts as not active (default 120 s). */
  settleMs?: number;
  /** Between two looks at a transitional unit (default 500 ms). */
  pollMs?: number;
}

/**
 * The health gate: every unit of `required` must be active, and every unit of `configured`
 * (HEALTH_UNITS) that this machine is meant to run; the others are reported as skipped. One
 * `systemctl is-active` per unit (with several it succeeds when any one is active); a unit
 * still starting (etcd coming up after the cloud-config started it) is given until `settleMs`.
 */
export async function healthGate(required: string[], configured: string[] = [], o: GateOptions = {}): Promise<GateResult> {
  const failed: string[] = [];
  const states: string[] = [];
  const skipped: string[] = [];
  const units = [...new Set([...required, ...configured])];
  const deadline = Date.now() + (o.settleMs ?? 120_000);
  for (const u of units) {
    if (!required.includes(u)) {
      const show = await run('systemctl', ['show', ...UNIT_FACTS.flatMap((p) => ['-p', p]), u], { reject: false });
      if (show.exitCode === 0 && !meantToRun(show.stdout, [GATE_UNIT])) {
        skipped.push(u);
        continue;
      }
    }
    const state = await settledState(u, deadline, o.pollMs ?? 500);
    if (state !== 'active') {
      failed.push(u);
      states.push(state);
    }
  }
  return { healthy: failed.length === 0, failed, states, skipped };
}

/** `systemctl is-active` of a unit once it has left a transitional state, or at the deadline. */
async function settledState(unit: string, deadline: number, pollMs: number): Promise<string> {
  for (;;) {
    const r = await run('systemctl', ['is-active', unit], { reject: false });
    const state = r.exitCode === 0 ? 'active' : r.stdout.trim() || 'unknown';
    if (!TRANSITIONAL_STATES.includes(state) || Date.now() >= deadline) return state;
    await new Promise((res) => setTimeout(res, pollMs));
  }
}

/** Marks the booted slot good and blesses its entry. Throws E_HEALTH_GATE when a check failed (nothing is changed then). */
export async function markGood(disk: string, esp: Esp, booted: SlotName, gate: GateResult): Promise<{ blessed: string | undefined }> {
  if (!gate.healthy) {
    throw new BasaltError(UE_ERRORS.E_HEALTH_GATE, `not marking ${SLOT_PARTLABEL[booted]} good: ${gate.failed.join(', ')} not active`, {
      hint: 'the boot loader falls back to the other slot when this boot is not blessed',
    });
  }
  const gpt = await readGpt(disk);
  await writeGpt(disk, markGoodAttrs(gpt, findPartition(gpt, SLOT_PARTLABEL[booted]).index));
  let blessed: string | undefined;
  for (const f of await esp.list('/loader/entries')) {
    const n = parseEntryFileName(f);
    if (n?.slot === slotKey(booted) && n.left !== undefined) {
      blessed = entryFileName(slotKey(booted));
      await esp.rename(`/loader/entries/${f}`, `/loader/entries/${blessed}`);
    }
  }
  return { blessed };
}

/** Switches the next boot to the other slot, when that slot was good before. */
export async function rollback(disk: string, esp: Esp, booted: SlotName): Promise<SlotName> {
  const to = otherSlot(booted);
  const gpt = await readGpt(disk);
  const p = findPartition(gpt, SLOT_PARTLABEL[to]);
  const entries = await esp.list('/loader/entries');
  const target = entries.find((f) => parseEntryFileName(f)?.slot === slotKey(to));
  if (!slotAttrs(p).successful || !target) {
    throw new BasaltError(UE_ERRORS.E_ROLLBACK_INVALID, `cannot roll back: ${SLOT_PARTLABEL[to]} was never marked good or has no boot entry`, { hint: 'only a slot that booted successfully before can be rolled back to' });
  }
  await writeGpt(disk, prioritize(gpt, p.index));
  // The running slot's entry gets no tries left, so the boot loader prefers the other one.
  for (const f of entries) if (parseEntryFileName(f)?.slot === slotKey(booted)) await esp.rename(`/loader/entries/${f}`, `/loader/entries/${entryFileName(slotKey(booted), 0)}`);
  return to;
}

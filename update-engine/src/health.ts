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
}

/** Checks that each unit is active, one `systemctl is-active` per unit (with several it succeeds when any one is active). */
export async function checkUnits(units: string[]): Promise<GateResult> {
  const failed: string[] = [];
  const states: string[] = [];
  for (const u of units) {
    const r = await run('systemctl', ['is-active', u], { reject: false });
    if (r.exitCode !== 0) {
      failed.push(u);
      states.push(r.stdout.trim() || 'unknown');
    }
  }
  return { healthy: failed.length === 0, failed, states };
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

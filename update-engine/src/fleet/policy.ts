/**
 * Rollout policies of a fleet group and the decision whether a machine is
 * offered an update. Everything here is pure: the clock, the counts read from
 * the database and the machine's record are passed in.
 *
 * A group's policy combines (each optional):
 * - waves: the share of the group that may take a release, growing with the
 *   time since the rollout of that release began (Bottlerocket's waves);
 *   machines are chosen by a stable hash of machine id and version;
 * - maxUpdates per periodMs: at most N machines are offered an update per
 *   sliding period (Nebraska's policy), counted across every server replica;
 * - officeHours: updates are offered only on these days between these hours (UTC);
 * - paused: nothing is offered (set by an admin or by the automatic pause);
 * - pinnedVersion: the group is held at this version (offered up to it, not beyond);
 * - floorVersion: a machine below it is offered the floor first (multi-hop);
 * - autoPause: the rollout pauses itself once the share of machines on the
 *   target version that rolled back (or reported an error) passes a threshold.
 */
import { createHash } from 'node:crypto';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import { compareVersions, isVersion } from '../format/version.js';

export interface Wave {
  /** Time since the rollout began, in ms. */
  afterMs: number;
  /** Share of the group's machines, 0-100. */
  percent: number;
}

export interface OfficeHours {
  /** Days of the week (0 = Sunday) in UTC; empty or absent = every day. */
  days?: number[] | undefined;
  /** Minutes after midnight UTC: offers from start (inclusive) to end (exclusive); end < start wraps midnight. */
  startMinute: number;
  endMinute: number;
}

export interface AutoPause {
  /** Pause when rollbacks / machines that took the version pass this share (0-1). */
  rollbackRate?: number | undefined;
  /** Pause when machines that reported an error for the version / machines that took it pass this share (0-1). */
  errorRate?: number | undefined;
  /** Do not judge before this many machines took the version (default 10). */
  minMachines?: number | undefined;
}

export interface Policy {
  paused?: boolean | undefined;
  pinnedVersion?: string | undefined;
  floorVersion?: string | undefined;
  waves?: Wave[] | undefined;
  maxUpdates?: number | undefined;
  periodMs?: number | undefined;
  officeHours?: OfficeHours | undefined;
  autoPause?: AutoPause | undefined;
}

/** Bottlerocket's default waves: 1 % at 1 h, 5 % at 4 h, 15 % at 1 d, 40 % at 2 d, 60 % at 4 d, 90 % at 5 d, 100 % at 6 d. */
export const BOTTLEROCKET_WAVES: Wave[] = [
  { afterMs: 3_600_000, percent: 1 },
  { afterMs: 4 * 3_600_000, percent: 5 },
  { afterMs: 86_400_000, percent: 15 },
  { afterMs: 2 * 86_400_000, percent: 40 },
  { afterMs: 4 * 86_400_000, percent: 60 },
  { afterMs: 5 * 86_400_000, percent: 90 },
  { afterMs: 6 * 86_400_000, percent: 100 },
];

/** The share (0-100) reached `elapsedMs` after the rollout began: the last wave whose time has come (0 before the first). */
export function wavePercent(waves: readonly Wave[], elapsedMs: number): number {
  let p = 0;
  for (const w of waves) if (elapsedMs >= w.afterMs) p = Math.max(p, w.percent);
  return p;
}

/** A machine's stable place in [0, 10000) for a version: the same machine gets the same answer on every check and replica. */
export function machineSlot(machineId: string, version: string): number {
  return createHash('sha256').update(`${machineId}\0${version}`).digest().readUInt32BE(0) % 10000;
}

/** Whether a machine is inside `percent` % of the group for `version`. */
export function inPercent(machineId: string, version: string, percent: number): boolean {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return machineSlot(machineId, version) < Math.round(percent * 100);
}

/** Whether `now` is inside the office hours. */
export function inOfficeHours(h: OfficeHours, now: Date): boolean {
  const day = now.getUTCDay();
  const minute = now.getUTCHours() * 60 + now.getUTCMinutes();
  const wraps = h.endMinute < h.startMinute;
  // After midnight in a window that wraps, the window began on the previous day.
  const startDay = wraps && minute < h.endMinute ? (day + 6) % 7 : day;
  if (h.days && h.days.length > 0 && !h.days.includes(startDay)) return false;
  if (h.startMinute === h.endMinute) return true;
  return wraps ? minute >= h.startMinute || minute < h.endMinute : minute >= h.startMinute && minute < h.endMinute;
}

/** What the version's rollout looks like in the group, read from the database. */
export interface VersionHealth {
  /** Machines that took (were offered and reported on) the version. */
  machines: number;
  rollbacks: number;
  errors: number;
}

/** Why the rollout should pause itself, or undefined when it is healthy (or too young to judge). */
export function autoPauseReason(a: AutoPause | undefined, version: string, h: VersionHealth): string | undefined {
  if (!a) return undefined;
  if (h.machines < (a.minMachines ?? 10) || h.machines === 0) return undefined;
  const rb = h.rollbacks / h.machines;
  if (a.rollbackRate !== undefined && rb > a.rollbackRate) return `rollback rate of ${version} is ${(rb * 100).toFixed(1)} % (${h.rollbacks}/${h.machines}), over ${(a.rollbackRate * 100).toFixed(1)} %`;
  const er = h.errors / h.machines;
  if (a.errorRate !== undefined && er > a.errorRate) return `error rate of ${version} is ${(er * 100).toFixed(1)} % (${h.errors}/${h.machines}), over ${(a.errorRate * 100).toFixed(1)} %`;
  return undefined;
}

export interface DecideInput {
  policy: Policy;
  /** The version the channel offers. */
  channelVersion: string;
  /** The channel's own rollout share (used when the policy has no waves). */
  channelPercent: number;
  /** When the group's rollout of the target began (ms since the epoch); undefined = now. */
  rolloutStartedMs?: number | undefined;
  machineId: string;
  machineVersion: string;
  now: Date;
  /**
   * The channel's signed floors and holds (its channel file). Machines take an
   * older release than the channel's only when it is one of these, so a pin or
   * floor that is not gets noupdate with the command that signs it; the signed
   * floors apply to every group. Absent = not checked (policy tests).
   */
  signed?: SignedStops | undefined;
}

export type Decision =
  | { offer: true; version: string; why: string; counted: boolean }
  | { offer: false; why: string };

/**
 * The version a machine should go to under the pin and the floors (the
 * policy's and the channel's signed ones): the lowest floor above it, else
 * the pin or the channel's release (undefined = none is newer than what it runs).
 */
export function targetVersion(p: Policy, channelVersion: string, machineVersion: string, signedFloors: readonly string[] = []): string | undefined {
  let target = channelVersion;
  if (p.pinnedVersion && compareVersions(p.pinnedVersion, target) < 0) target = p.pinnedVersion;
  for (const f of [...signedFloors, ...(p.floorVersion ? [p.floorVersion] : [])]) {
    if (compareVersions(machineVersion, f) < 0 && compareVersions(f, target) < 0) target = f;
  }
  return compareVersions(target, machineVersion) > 0 ? target : undefined;
}

/** A channel's signed floors and holds, as its channel file lists them. */
export interface SignedStops {
  channel: string;
  floors: readonly string[];
  holds: readonly string[];
}

/**
 * Why a machine cannot be sent to `target`, an older release than the
 * channel's that the channel has not signed as a floor or hold (machines
 * refuse those), with the command that signs it; undefined = it can.
 */
export function unsignedTarget(p: Policy, target: string, channelVersion: string, signed: SignedStops): string | undefined {
  if (compareVersions(target, channelVersion) >= 0 || signed.floors.includes(target) || signed.holds.includes(target)) return undefined;
  return target === p.pinnedVersion
    ? `pinned version ${target} is not a signed hold of channel ${signed.channel}: run 'basalt release hold ${target} --channel ${signed.channel}'`
    : `floor version ${target} is not a signed floor of channel ${signed.channel}: run 'basalt release floor ${target} --channel ${signed.channel}'`;
}

/** The warning for an admin who sets a pin or floor the channel has not signed (machines below it would get noupdate); undefined = none. */
export function unsignedStop(p: Policy, channelVersion: string, signed: SignedStops): string | undefined {
  for (const v of [p.pinnedVersion, p.floorVersion]) {
    const why = v ? unsignedTarget(p, v, channelVersion, signed) : undefined;
    if (why) return why;
  }
  return undefined;
}

/**
 * The decision before the rate limit: whether the machine may be offered an
 * update now, and which version. A positive answer still needs a slot of the
 * period when the policy has maxUpdates (`counted`).
 */
export function decideUpdate(i: DecideInput): Decision {
  const p = i.policy;
  if (!isVersion(i.machineVersion)) return { offer: false, why: `client version '${i.machineVersion}' is not a version` };
  const floors = i.signed?.floors ?? [];
  const target = targetVersion(p, i.channelVersion, i.machineVersion, floors);
  const unsigned = target && i.signed ? unsignedTarget(p, target, i.channelVersion, i.signed) : undefined;
  if (unsigned) return { offer: false, why: unsigned };
  if (!target) return { offer: false, why: `client is at ${i.machineVersion}, group's target is ${p.pinnedVersion && compareVersions(p.pinnedVersion, i.channelVersion) < 0 ? `${p.pinnedVersion} (pinned)` : i.channelVersion}` };
  if (p.paused) return { offer: false, why: 'the rollout is paused' };
  if (p.officeHours && !inOfficeHours(p.officeHours, i.now)) return { offer: false, why: 'outside office hours' };
  // The floor and the pin are stops on the way: no wave holds a machine there, only the rate limit.
  const waved = target === i.channelVersion;
  if (waved) {
    // Another replica may have stamped the start a moment after this one's clock: never before 0.
    const elapsed = Math.max(0, i.now.getTime() - (i.rolloutStartedMs ?? i.now.getTime()));
    const percent = p.waves && p.waves.length > 0 ? wavePercent(p.waves, elapsed) : i.channelPercent;
    if (!inPercent(i.machineId, target, percent)) return { offer: false, why: `outside the ${percent}% rollout of ${target}` };
  }
  const counted = p.maxUpdates !== undefined;
  return { offer: true, version: target, why: target === i.channelVersion ? 'in the rollout' : target === p.floorVersion || floors.includes(target) ? `floor version ${target} first` : `pinned at ${target}`, counted };
}

/** Whether one more update fits the period, given the updates already offered in it. */
export function underRateLimit(p: Policy, offeredInPeriod: number): boolean {
  return p.maxUpdates === undefined || offeredInPeriod < p.maxUpdates;
}

/** The period the rate limit counts over (default one hour). */
export function policyPeriodMs(p: Policy): number {
  return p.periodMs ?? 3_600_000;
}

// ---------------------------------------------------------------------------
// Validation: policies come from admins (JSON); parse to unknown, then check.

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration: a number of ms or a text such as 90s, 15m, 1h, 6d. */
export function parsePolicyDuration(v: unknown, field: string): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const m = DURATION_RE.exec(v.trim());
    if (m) return Number(m[1]) * UNIT[m[2]!]!;
  }
  throw bad(field, `'${String(v)}' is not a duration (ms, or such as 90s, 15m, 1h, 6d)`);
}

function bad(field: string, msg: string): BasaltError {
  return new BasaltError(UE_ERRORS.E_FLEET_INVALID, `policy ${field}: ${msg}`);
}

function num(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw bad(field, `'${String(v)}' is not a number from ${min} to ${max}`);
  return v;
}

function version(v: unknown, field: string): string {
  if (typeof v !== 'string' || !isVersion(v)) throw bad(field, `'${String(v)}' is not a version`);
  return v;
}

function hhmm(v: unknown, field: string): number {
  const m = typeof v === 'string' ? /^(\d{1,2}):(\d{2})$/.exec(v) : null;
  if (!m || Number(m[1]) > 24 || Number(m[2]) > 59) throw bad(field, `'${String(v)}' is not HH:MM`);
  return Math.min(1440, Number(m[1]) * 60 + Number(m[2]));
}

const KNOWN = new Set(['paused', 'pinnedVersion', 'floorVersion', 'waves', 'maxUpdates', 'period', 'periodMs', 'officeHours', 'autoPause']);

/**
 * A policy from JSON as admins write it: waves as [{"after":"1h","percent":1}, ...]
 * (or "bottlerocket"), "period":"1h", officeHours {"days":[1,2,3,4,5],"start":"09:00","end":"17:00"},
 * autoPause {"rollbackRate":0.05,"errorRate":0.1,"minMachines":10}. null removes a field.
 */
export function parsePolicy(raw: unknown): Policy {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('', 'is not a JSON object');
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!KNOWN.has(k)) throw bad(k, 'unknown field');
  const p: Policy = {};
  if (r['paused'] !== undefined && r['paused'] !== null) {
    if (typeof r['paused'] !== 'boolean') throw bad('paused', 'is not true or false');
    p.paused = r['paused'];
  }
  if (r['pinnedVersion'] != null) p.pinnedVersion = version(r['pinnedVersion'], 'pinnedVersion');
  if (r['floorVersion'] != null) p.floorVersion = version(r['floorVersion'], 'floorVersion');
  if (r['waves'] != null) {
    const w = r['waves'] === 'bottlerocket' ? BOTTLEROCKET_WAVES : r['waves'];
    if (!Array.isArray(w) || w.length > 100) throw bad('waves', 'is not a list of {after, percent} (or "bottlerocket")');
    p.waves = w.map((x: unknown, n) => {
      if (typeof x !== 'object' || x === null) throw bad(`waves[${n}]`, 'is not {after, percent}');
      const o = x as Record<string, unknown>;
      return { afterMs: parsePolicyDuration(o['after'] ?? o['afterMs'], `waves[${n}].after`), percent: num(o['percent'], `waves[${n}].percent`, 0, 100) };
    });
  }
  if (r['maxUpdates'] != null) {
    const n = num(r['maxUpdates'], 'maxUpdates', 0, 1e9);
    if (!Number.isInteger(n)) throw bad('maxUpdates', 'is not a whole number');
    p.maxUpdates = n;
  }
  const period = r['period'] ?? r['periodMs'];
  if (period != null) {
    p.periodMs = parsePolicyDuration(period, 'period');
    if (p.periodMs <= 0) throw bad('period', 'must be longer than 0');
  }
  if (r['officeHours'] != null) {
    const o = r['officeHours'] as Record<string, unknown>;
    if (typeof o !== 'object') throw bad('officeHours', 'is not {days, start, end}');
    const days = o['days'];
    if (days !== undefined && (!Array.isArray(days) || days.some((d) => !Number.isInteger(d) || (d as number) < 0 || (d as number) > 6))) throw bad('officeHours.days', 'is not a list of days 0 (Sunday) to 6');
    p.officeHours = { ...(days ? { days: days as number[] } : {}), startMinute: hhmm(o['start'], 'officeHours.start'), endMinute: hhmm(o['end'], 'officeHours.end') };
  }
  if (r['autoPause'] != null) {
    const a = r['autoPause'] as Record<string, unknown>;
    if (typeof a !== 'object') throw bad('autoPause', 'is not {rollbackRate, errorRate, minMachines}');
    p.autoPause = {
      ...(a['rollbackRate'] != null ? { rollbackRate: num(a['rollbackRate'], 'autoPause.rollbackRate', 0, 1) } : {}),
      ...(a['errorRate'] != null ? { errorRate: num(a['errorRate'], 'autoPause.errorRate', 0, 1) } : {}),
      ...(a['minMachines'] != null ? { minMachines: num(a['minMachines'], 'autoPause.minMachines', 1, 1e9) } : {}),
    };
  }
  return p;
}

/** A policy as JSON, in the form parsePolicy reads. */
export function policyJson(p: Policy): Record<string, unknown> {
  const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return {
    ...(p.paused ? { paused: true } : {}),
    ...(p.pinnedVersion ? { pinnedVersion: p.pinnedVersion } : {}),
    ...(p.floorVersion ? { floorVersion: p.floorVersion } : {}),
    ...(p.waves ? { waves: p.waves.map((w) => ({ after: `${w.afterMs / 1000}s`, percent: w.percent })) } : {}),
    ...(p.maxUpdates !== undefined ? { maxUpdates: p.maxUpdates } : {}),
    ...(p.periodMs !== undefined ? { period: `${p.periodMs / 1000}s` } : {}),
    ...(p.officeHours ? { officeHours: { ...(p.officeHours.days ? { days: p.officeHours.days } : {}), start: hm(p.officeHours.startMinute), end: hm(p.officeHours.endMinute) } } : {}),
    ...(p.autoPause ? { autoPause: p.autoPause } : {}),
  };
}

/**
 * `basalt update status|check|apply|rollback|mark-good|reset|unblock` and
 * `basalt update-engine` (the daemon). With --disk the command works on an
 * image file in-process; otherwise it talks to the daemon's socket (status,
 * check, apply) or acts on the host (mark-good, rollback).
 */
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { UsageError, BasaltError, describeCode } from '../../../common/src/errors.js';
import { readGpt, slotAttrs, findPartition } from '../../../common/src/gpt/index.js';
import { loadConf } from '../host/config.js';
import { buildEnv, envFlagHelp, envFlagSpec, failpointFromEnv } from '../host/hostenv.js';
import type { Engine, EngineEnv, Status } from '../host/engine.js';
import { entriesOf } from '../host/esp.js';
import { DEFAULT_SOCKET, describeStatus, request, statusLines } from '../host/control.js';
import { trustedVersions } from '../trust/client.js';
import { healthGate, markGood, rollback, type GateOptions } from '../host/health.js';
import { parseDuration } from '../format/duration.js';
import { gptChoice, loaderChoice } from '../host/slots.js';
import { UE_ERRORS } from '../errors.js';
import { SLOT_PARTLABEL } from '../../../common/src/contracts.js';

export const help = `Usage: basalt update status|check|apply|health|rollback|mark-good|reset|unblock [--json] [options]

  status     state, versions, slots (GPT attributes and boot entries)
  check      ask the daemon to check now (like update_engine_client -check_for_update)
  apply      check, download, verify and install into the inactive slot; waits for the result
  health     the boot's health gate (basalt-health.service, before boot-complete.target):
             exit 1 unless every unit of HEALTH_UNITS that this machine is meant to run
             (enabled, socket-triggered or started this boot) is active, and every --unit U
  mark-good  health gate: when those units are active, mark the booted slot
             good (GPT successful=1, tries=0, prioritized) and bless its boot entry
  rollback   boot the other slot next time, when it booted successfully before
  reset      undo an installed but not yet booted update (from UPDATED_NEED_REBOOT)
  unblock    forget the versions that failed on this machine

Options:
  --socket PATH   daemon socket (default ${DEFAULT_SOCKET})
  --unit UNIT     extra unit for the health gate (repeatable)
  --no-units      skip unit checks (image files)
  --settle DUR    how long the gate waits for a unit that is still starting (default 120s)
${envFlagHelp}`;

const spec = { ...envFlagSpec, socket: { type: 'string' }, unit: { type: 'string', multiple: true }, 'no-units': { type: 'boolean' }, settle: { type: 'string' } } as const;

/** --settle DUR: how long the gate gives a unit that is still starting (default 120 s). */
function gateOptions(values: { settle?: string | undefined }): GateOptions {
  if (values.settle === undefined) return {};
  const ms = parseDuration(values.settle);
  if (ms === undefined) throw new UsageError(`--settle: '${values.settle}' is not a duration (e.g. 30s, 2m)`);
  return { settleMs: ms };
}

async function slotReport(disk: string, esp: Awaited<ReturnType<typeof buildEnv>>['env']['esp']) {
  const gpt = await readGpt(disk);
  const slots = (['A', 'B'] as const).map((s) => ({ slot: s, partition: findPartition(gpt, SLOT_PARTLABEL[s]).index, ...slotAttrs(findPartition(gpt, SLOT_PARTLABEL[s])) }));
  const entries = await entriesOf(esp);
  return { slots, entries, gptNext: gptChoice(gpt), loaderNext: loaderChoice(entries)?.slot };
}

const isRoot = () => process.getuid?.() === 0;

/** The engine (got, openpgp and the payload code) is loaded only by the subcommands that run it. */
async function newEngine(env: ConstructorParameters<typeof Engine>[0]): Promise<Engine> {
  const { Engine: E } = await import('../host/engine.js');
  return new E(env);
}
function parseUpdateArgs(args: string[], sub: string | undefined) {
  return parse(args, spec, `update ${sub ?? ''}`.trim());
}

type UpdateFlags = ReturnType<typeof parseUpdateArgs>['values'];

/** One `basalt update SUB` invocation: its flags, where it acts and how it prints. */
interface Invocation {
  ctx: CommandContext;
  values: UpdateFlags;
  /** The daemon's socket. */
  sock: string;
  /** --disk was given: act on an image file in-process instead of through the daemon. */
  local: boolean;
  /** Prints `obj` as JSON with --json, `text` otherwise. */
  print(obj: unknown, text: string): void;
}

function invocation(ctx: CommandContext, sub: string | undefined): Invocation {
  const { values, positionals } = parseUpdateArgs(ctx.args.slice(1), sub);
  if (positionals.length) throw new UsageError(`update ${sub}: unexpected argument '${positionals[0]}'`);
  return {
    ctx,
    values,
    sock: values.socket ?? DEFAULT_SOCKET,
    local: values.disk !== undefined,
    print: (obj, text) => ctx.out(ctx.json ? JSON.stringify(obj) + '\n' : text),
  };
}

/** A value of a daemon reply as text (strings as they are, other JSON values as JSON). */
function replyText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** Builds the environment from the flags and starts an engine on it (not as the daemon). */
async function startedEngine(inv: Invocation, failpoint: (n: string) => void = () => {}): Promise<{ env: EngineEnv; e: Engine }> {
  const { env } = await buildEnv(inv.values, inv.ctx.log, failpoint);
  const e = await newEngine(env);
  await e.start(false);
  return { env, e };
}

async function statusRemote(inv: Invocation): Promise<number> {
  const r = await request(inv.sock, 'status');
  const s = r['status'] as Status;
  inv.print(s, describeStatus(s, Date.now() / 1000));
  return 0;
}

async function statusLocal(inv: Invocation): Promise<number> {
  const { env, e } = await startedEngine(inv);
  const s = e.status();
  const rep = await slotReport(env.disk, env.esp);
  const prog = await e.progressInfo();
  const slotLines = rep.slots.map((x) => `${SLOT_PARTLABEL[x.slot]}: priority=${x.priority} tries=${x.tries} successful=${x.successful ? 1 : 0}`).join('\n');
  const trusted = await trustedVersions(env.stateDir);
  const trustLine = Object.entries(trusted)
    .map(([r, v]) => `${r} v${v.version} (expires ${v.expires})`)
    .join(', ');
  inv.print({ ...s, ...rep, progress: prog ?? null, trusted }, statusLines(s) + slotLines + `\nNEXT_BOOT=${rep.loaderNext ?? 'none'}\nTRUSTED=${trustLine || 'nothing yet (no check since the install)'}\n`);
  return 0;
}

async function checkRemote(inv: Invocation): Promise<number> {
  const r = await request(inv.sock, 'check');
  inv.print(r, r['accepted'] ? 'update check started\n' : `busy: ${(r['status'] as Status).status}\n`);
  return 0;
}

/** Follows the daemon's status until it has an update waiting for a reboot or is idle again after being busy. */
async function watchUntilDone(sock: string): Promise<Status | undefined> {
  let last: Status | undefined;
  let seenBusy = false;
  await request(sock, 'watch', (o) => {
    last = o['status'] as Status;
    if (last.status !== 'UPDATE_STATUS_IDLE') seenBusy = true;
    return !(last.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' || (seenBusy && last.status === 'UPDATE_STATUS_IDLE'));
  });
  return last;
}

async function applyRemote(inv: Invocation): Promise<number> {
  await request(inv.sock, 'check');
  const last = await watchUntilDone(inv.sock);
  if (last?.lastError) throw new BasaltError(last.lastError.code, last.lastError.message, { hint: describeCode(last.lastError.code)?.hint });
  inv.print(last, last?.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' ? `updated to ${last.newVersion}; reboot to use it\n` : `up to date: no update for ${last?.currentVersion ?? 'this version'} on ${last?.channel ?? 'its channel'}\n`);
  return 0;
}

/** How a one-shot apply ended, for its exit code and its one line. */
export interface OneShotEnd {
  status: Status['status'];
  newVersion: string;
  /** The slot that was (or would be) written. */
  target: string;
  lastCheck: Engine['lastCheck'];
  failure: BasaltError | undefined;
  running: string;
  channel: string;
}

/**
 * The result of a one-shot apply: installed, or up to date (no update offered:
 * not an error), or an error saying why nothing was installed. Never success
 * with nothing installed and no answer from the server. Pure.
 */
export function oneShotResult(x: OneShotEnd): { ok: true; line: string } | { ok: false; error: BasaltError } {
  if (x.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT') return { ok: true, line: `updated ${x.target} to ${x.newVersion}; reboot to use it` };
  if (x.failure) return { ok: false, error: x.failure };
  if (x.lastCheck === 'noupdate') return { ok: true, line: `up to date: no update for ${x.running} on ${x.channel}` };
  return {
    ok: false,
    error: new BasaltError(UE_ERRORS.E_CHECK, `nothing was installed: the update ended in ${x.status.replace('UPDATE_STATUS_', '')} without an answer saying there is no update`, {
      hint: 'run again with BASALT_LOG=debug to see the check and the transfers',
    }),
  };
}

/**
 * A one-shot run prints its failure once, as the command's error line: the
 * engine's own error-level log of it would say the same thing twice.
 */
function oneShotLogger(log: CommandContext['log']): CommandContext['log'] {
  return { ...log, error: (m: string) => log.debug(m) };
}

/** check and apply on an image file: both check, download and install in-process. */
async function applyLocal(inv: Invocation): Promise<number> {
  const { env, e } = await startedEngine({ ...inv, ctx: { ...inv.ctx, log: oneShotLogger(inv.ctx.log) } }, failpointFromEnv(process.env['BASALT_FAILPOINT']));
  if (e.state.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT') {
    inv.print(e.status(), `already updated to ${e.state.newVersion}; reboot to use it\n`);
    return 0;
  }
  e.lastFailure = undefined;
  e.check(true);
  await e.idle();
  const s = e.status();
  const r = oneShotResult({ status: s.status, newVersion: s.newVersion, target: SLOT_PARTLABEL[env.booted === 'A' ? 'B' : 'A'], lastCheck: e.lastCheck, failure: e.lastFailure, running: env.me.version, channel: env.me.channel });
  if (!r.ok) throw r.error;
  inv.print(s, r.line + '\n');
  return 0;
}

async function health(inv: Invocation): Promise<number> {
  const { values } = inv;
  // Each unit on its own: `systemctl is-active A B` succeeds when any one of them is active.
  const conf = await loadConf(values.root ?? '/');
  const gate = await healthGate(values.unit ?? [], conf.healthUnits, gateOptions(values));
  const units = [...new Set([...(values.unit ?? []), ...conf.healthUnits])].filter((u) => !gate.skipped.includes(u));
  if (!gate.healthy) {
    throw new BasaltError(UE_ERRORS.E_HEALTH_GATE, `unhealthy boot: ${gate.failed.map((u, i) => `${u} is ${gate.states[i]}`).join(', ')}`, {
      hint: 'this boot will not be blessed; a new slot on its trial boot falls back to the previous one',
    });
  }
  const skipped = gate.skipped.length ? ` (not meant to run here: ${gate.skipped.join(', ')})` : '';
  inv.print({ healthy: true, units, skipped: gate.skipped }, `healthy: ${units.length ? units.join(', ') + ' active' : 'no units to check'}${skipped}\n`);
  return 0;
}

async function markGoodRemote(inv: Invocation): Promise<number> {
  const r = await request(inv.sock, 'mark-good');
  inv.print(r, `marked good${r['blessed'] ? `; boot entry blessed as ${replyText(r['blessed'])}` : ''}\n`);
  return 0;
}

async function markGoodHere(inv: Invocation): Promise<number> {
  const { values, local } = inv;
  const { env, conf } = await buildEnv(values, inv.ctx.log, () => {});
  // On a host the gate is boot-complete.target (with its RequiredBy= checks) plus HEALTH_UNITS and --unit.
  const required = values['no-units'] ? [] : [...(local ? [] : ['boot-complete.target']), ...(values.unit ?? [])];
  const configured = values['no-units'] ? [] : conf.healthUnits;
  const gate = await healthGate(required, configured, gateOptions(values));
  const r = await markGood(env.disk, env.esp, env.booted, gate);
  const units = [...new Set([...required, ...configured])].filter((u) => !gate.skipped.includes(u));
  inv.print({ slot: env.booted, ...r, units, skipped: gate.skipped }, `${SLOT_PARTLABEL[env.booted]} marked good${r.blessed ? `; boot entry blessed as ${r.blessed}` : ''}\n`);
  return 0;
}

async function rollbackRemote(inv: Invocation): Promise<number> {
  const r = await request(inv.sock, 'rollback');
  const next = r['next'];
  inv.print(r, `next boot: ${next === 'A' || next === 'B' ? SLOT_PARTLABEL[next] : replyText(next)}\n`);
  return 0;
}

async function rollbackHere(inv: Invocation): Promise<number> {
  const { env } = await buildEnv(inv.values, inv.ctx.log, () => {});
  const to = await rollback(env.disk, env.esp, env.booted);
  inv.print({ next: to }, `next boot: ${SLOT_PARTLABEL[to]}\n`);
  return 0;
}

async function resetOrUnblockRemote(inv: Invocation, sub: 'reset' | 'unblock'): Promise<number> {
  const r = await request(inv.sock, sub);
  inv.print(r, `${sub}: ${r['accepted'] === false ? 'nothing to do' : 'done'}\n`);
  return 0;
}

async function resetOrUnblockLocal(inv: Invocation, sub: 'reset' | 'unblock'): Promise<number> {
  const { e } = await startedEngine(inv);
  if (sub === 'unblock') await e.unblock();
  else if (!e.send({ type: 'RESET' })) throw new BasaltError(UE_ERRORS.E_NOT_PENDING, 'no installed update is waiting for a reboot');
  await e.idle();
  inv.print({ ok: true }, `${sub}: done\n`);
  return 0;
}

export async function runUpdate(ctx: CommandContext): Promise<number> {
  const sub = ctx.args[0];
  const inv = invocation(ctx, sub);
  // Not root: the daemon marks good and rolls back (its action socket admits root and the update group).
  const viaDaemon = () => !inv.local && !isRoot();
  switch (sub) {
    case 'status':
      return inv.local ? statusLocal(inv) : statusRemote(inv);
    case 'check':
      return inv.local ? applyLocal(inv) : checkRemote(inv);
    case 'apply':
      return inv.local ? applyLocal(inv) : applyRemote(inv);
    case 'health':
      return health(inv);
    case 'mark-good':
      return viaDaemon() ? markGoodRemote(inv) : markGoodHere(inv);
    case 'rollback':
      return viaDaemon() ? rollbackRemote(inv) : rollbackHere(inv);
    case 'reset':
    case 'unblock':
      return inv.local ? resetOrUnblockLocal(inv, sub) : resetOrUnblockRemote(inv, sub);
    default:
      throw new UsageError(`update: unknown subcommand '${sub ?? ''}'`, 'use status, check, apply, health, rollback, mark-good, reset or unblock');
  }
}

export const run = runUpdate;

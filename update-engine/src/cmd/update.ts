/**
 * `basalt update status|check|apply|rollback|mark-good|reset|unblock` and
 * `basalt update-engine` (the daemon). With --disk the command works on an
 * image file in-process; otherwise it talks to the daemon's socket (status,
 * check, apply) or acts on the host (mark-good, rollback).
 */
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { UsageError, BasaltError } from '../../../common/src/errors.js';
import { readGpt, slotAttrs, findPartition } from '../../../common/src/gpt/index.js';
import { loadConf } from '../host/config.js';
import { buildEnv, envFlagHelp, envFlagSpec, failpointFromEnv, type EnvFlags } from '../host/hostenv.js';
import type { Engine, Status } from '../host/engine.js';
import { entriesOf } from '../host/esp.js';
import { DEFAULT_SOCKET, describeStatus, request, statusLines } from '../host/control.js';
import { healthGate, markGood, rollback } from '../host/health.js';
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
${envFlagHelp}`;

const spec = { ...envFlagSpec, socket: { type: 'string' }, unit: { type: 'string', multiple: true }, 'no-units': { type: 'boolean' } } as const;

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

export async function runUpdate(ctx: CommandContext): Promise<number> {
  const sub = ctx.args[0];
  const { values, positionals } = parse(ctx.args.slice(1), spec, `update ${sub ?? ''}`.trim());
  if (positionals.length) throw new UsageError(`update ${sub}: unexpected argument '${positionals[0]}'`);
  const sock = values.socket ?? DEFAULT_SOCKET;
  const local = values.disk !== undefined;
  const print = (obj: unknown, text: string) => ctx.out(ctx.json ? JSON.stringify(obj) + '\n' : text);
  switch (sub) {
    case 'status': {
      if (!local) {
        const r = await request(sock, 'status');
        const s = r['status'] as Status;
        print(s, describeStatus(s, Date.now() / 1000));
        return 0;
      }
      const { env } = await buildEnv(values as EnvFlags, ctx.log, () => {});
      const e = await newEngine(env);
      await e.start(false);
      const s = e.status();
      const rep = await slotReport(env.disk, env.esp);
      const prog = await e.progressInfo();
      print({ ...s, ...rep, progress: prog ?? null }, statusLines(s) + rep.slots.map((x) => `${SLOT_PARTLABEL[x.slot]}: priority=${x.priority} tries=${x.tries} successful=${x.successful ? 1 : 0}`).join('\n') + `\nNEXT_BOOT=${rep.loaderNext ?? 'none'}\n`);
      return 0;
    }
    case 'check':
    case 'apply': {
      if (!local) {
        const r = await request(sock, 'check');
        if (sub === 'check') {
          print(r, r['accepted'] ? 'update check started\n' : `busy: ${(r['status'] as Status).status}\n`);
          return 0;
        }
        let last: Status | undefined;
        let seenBusy = false;
        await request(sock, 'watch', (o) => {
          last = o['status'] as Status;
          if (last.status !== 'UPDATE_STATUS_IDLE') seenBusy = true;
          return !(last.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' || (seenBusy && last.status === 'UPDATE_STATUS_IDLE'));
        });
        if (last?.lastError) throw new BasaltError(last.lastError.code, last.lastError.message);
        print(last, last?.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' ? `updated to ${last.newVersion}; reboot to use it\n` : 'no update\n');
        return 0;
      }
      const { env } = await buildEnv(values as EnvFlags, ctx.log, failpointFromEnv(process.env['BASALT_FAILPOINT']));
      const e = await newEngine(env);
      await e.start(false);
      if (e.state.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT') {
        print(e.status(), `already updated to ${e.state.newVersion}; reboot to use it\n`);
        return 0;
      }
      e.check(true);
      await e.idle();
      const s = e.status();
      if (s.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT') {
        print(s, `updated ${SLOT_PARTLABEL[env.booted === 'A' ? 'B' : 'A']} to ${s.newVersion}; reboot to use it\n`);
        return 0;
      }
      if (e.lastFailure) throw e.lastFailure;
      print(s, `no update (running ${env.me.version} on ${env.me.channel})\n`);
      return 0;
    }
    case 'health': {
      // Each unit on its own: `systemctl is-active A B` succeeds when any one of them is active.
      const conf = await loadConf(values.root ?? '/');
      const gate = await healthGate(values.unit ?? [], conf.healthUnits);
      const units = [...new Set([...(values.unit ?? []), ...conf.healthUnits])].filter((u) => !gate.skipped.includes(u));
      if (!gate.healthy) {
        throw new BasaltError(UE_ERRORS.E_HEALTH_GATE, `unhealthy boot: ${gate.failed.map((u, i) => `${u} is ${gate.states[i]}`).join(', ')}`, {
          hint: 'this boot will not be blessed; a new slot on its trial boot falls back to the previous one',
        });
      }
      const skipped = gate.skipped.length ? ` (not meant to run here: ${gate.skipped.join(', ')})` : '';
      print({ healthy: true, units, skipped: gate.skipped }, `healthy: ${units.length ? units.join(', ') + ' active' : 'no units to check'}${skipped}\n`);
      return 0;
    }
    case 'mark-good': {
      // Not root: the daemon does it (its action socket admits root and the update group).
      if (!local && !isRoot()) {
        const r = await request(sock, 'mark-good');
        print(r, `marked good${r['blessed'] ? `; boot entry blessed as ${String(r['blessed'])}` : ''}\n`);
        return 0;
      }
      const { env, conf } = await buildEnv(values as EnvFlags, ctx.log, () => {});
      // On a host the gate is boot-complete.target (with its RequiredBy= checks) plus HEALTH_UNITS and --unit.
      const required = values['no-units'] ? [] : [...(local ? [] : ['boot-complete.target']), ...(values.unit ?? [])];
      const gate = await healthGate(required, values['no-units'] ? [] : conf.healthUnits);
      const r = await markGood(env.disk, env.esp, env.booted, gate);
      const units = [...new Set([...required, ...(values['no-units'] ? [] : conf.healthUnits)])].filter((u) => !gate.skipped.includes(u));
      print({ slot: env.booted, ...r, units, skipped: gate.skipped }, `${SLOT_PARTLABEL[env.booted]} marked good${r.blessed ? `; boot entry blessed as ${r.blessed}` : ''}\n`);
      return 0;
    }
    case 'rollback': {
      if (!local && !isRoot()) {
        const r = await request(sock, 'rollback');
        print(r, `next boot: ${SLOT_PARTLABEL[r['next'] as 'A' | 'B'] ?? String(r['next'])}\n`);
        return 0;
      }
      const { env } = await buildEnv(values as EnvFlags, ctx.log, () => {});
      const to = await rollback(env.disk, env.esp, env.booted);
      print({ next: to }, `next boot: ${SLOT_PARTLABEL[to]}\n`);
      return 0;
    }
    case 'reset':
    case 'unblock': {
      if (!local) {
        const r = await request(sock, sub);
        print(r, `${sub}: ${r['accepted'] === false ? 'nothing to do' : 'done'}\n`);
        return 0;
      }
      const { env } = await buildEnv(values as EnvFlags, ctx.log, () => {});
      const e = await newEngine(env);
      await e.start(false);
      if (sub === 'unblock') await e.unblock();
      else if (!e.send({ type: 'RESET' })) throw new BasaltError(UE_ERRORS.E_NOT_PENDING, 'no installed update is waiting for a reboot');
      await e.idle();
      print({ ok: true }, `${sub}: done\n`);
      return 0;
    }
    default:
      throw new UsageError(`update: unknown subcommand '${sub ?? ''}'`, 'use status, check, apply, health, rollback, mark-good, reset or unblock');
  }
}

export const run = runUpdate;

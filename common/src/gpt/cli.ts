/** `basalt disk`: create, inspect and edit GPT disks and A/B slot attributes. */
import { parse, intOpt, parseSize } from '../cli/args.js';
import type { CommandContext } from '../cli/types.js';
import { BasaltError, UsageError } from '../errors.js';
import { GPT_ERRORS } from './errors.js';
import { formatBytes } from '../size.js';
import { createDisk, growPartition, readGpt, repairGpt, writeGpt } from './io.js';
import { findPartition, isUsrSlot, prioritize, selectNext, setSlotAttrs, slotAttrs } from './slots.js';
import { TYPE, type Gpt, type Partition } from './types.js';

export const help = `Usage: basalt disk <subcommand> IMAGE [options]

Work on the GPT of a disk image file or block device, with no external tool.
Slot attributes use cgpt's bits: priority 48-51, tries 52-55, successful 56.

Subcommands:
  create IMAGE --size SIZE [--layout NAME|FILE] [--set LABEL=SIZE]... [--seed S] [--force]
                 make a sparse image with a layout (default: coreos)
  show IMAGE [--json]          partitions, GUIDs, sizes and decoded slot attributes
  set IMAGE -i N [--priority P] [--tries T] [--successful 0|1]
                               change slot attributes (cgpt add -P/-T/-S)
  prioritize IMAGE -i N [--max-priority P] [--friends]
                               give USR slot N the highest priority (cgpt prioritize)
  next IMAGE [--commit]        the slot a gptprio bootloader boots; --commit also
                               decrements its tries, as a boot attempt does
  repair IMAGE                 restore a damaged primary or backup GPT from the other
  grow IMAGE -i N              grow the last partition to the end of the disk and
                               move the backup GPT there

Exit codes: 0 ok, 1 failure or invalid input, 2 usage error.
`;

const typeNames = new Map<string, string>(Object.entries(TYPE).map(([k, v]) => [v, k]));

function toJson(path: string, gpt: Gpt) {
  return {
    path,
    sectorSize: gpt.sectorSize,
    totalSectors: Number(gpt.totalSectors),
    sizeBytes: Number(gpt.totalSectors) * gpt.sectorSize,
    diskGuid: gpt.diskGuid,
    firstUsableLba: Number(gpt.firstUsableLba),
    lastUsableLba: Number(gpt.lastUsableLba),
    backupHeaderLba: Number(gpt.backupHeaderLba),
    entryCount: gpt.entryCount,
    entrySize: gpt.entrySize,
    status: gpt.status ?? { primaryOk: true, backupOk: true, problems: [] },
    partitions: gpt.partitions.map((p) => partJson(gpt, p)),
  };
}

function partJson(gpt: Gpt, p: Partition) {
  const sectors = Number(p.lastLba - p.firstLba + 1n);
  return {
    index: p.index,
    label: p.label,
    type: p.type,
    typeName: typeNames.get(p.type) ?? null,
    guid: p.guid,
    firstLba: Number(p.firstLba),
    lastLba: Number(p.lastLba),
    sectors,
    sizeBytes: sectors * gpt.sectorSize,
    attributes: '0x' + p.attributes.toString(16).padStart(16, '0'),
    ...(isUsrSlot(p) ? { slot: slotAttrs(p) } : {}),
  };
}

function showText(path: string, gpt: Gpt): string {
  const lines: string[] = [];
  const st = gpt.status;
  lines.push(`Disk ${path}: ${formatBytes(gpt.totalSectors * BigInt(gpt.sectorSize))}, ${gpt.totalSectors} sectors of ${gpt.sectorSize} bytes`);
  lines.push(`Disk GUID ${gpt.diskGuid}; usable sectors ${gpt.firstUsableLba}-${gpt.lastUsableLba}; ${gpt.entryCount} entries`);
  lines.push(`GPT: primary ${st?.primaryOk === false ? 'DAMAGED' : 'ok'}, backup ${st?.backupOk === false ? 'DAMAGED' : 'ok'}`);
  for (const p of st?.problems ?? []) lines.push(`  warning: ${p}`);
  const rows = gpt.partitions.map((p) => {
    const a = isUsrSlot(p) ? slotAttrs(p) : null;
    return [
      String(p.index),
      String(p.firstLba),
      String(p.lastLba - p.firstLba + 1n),
      formatBytes((p.lastLba - p.firstLba + 1n) * BigInt(gpt.sectorSize)),
      p.label,
      typeNames.get(p.type) ?? p.type,
      p.guid,
      a ? `priority=${a.priority} tries=${a.tries} successful=${a.successful ? 1 : 0}` : p.attributes ? `attrs=0x${p.attributes.toString(16)}` : '',
    ];
  });
  const head = ['#', 'START', 'SECTORS', 'SIZE', 'LABEL', 'TYPE', 'UUID', 'ATTRIBUTES'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  lines.push(fmt(head), ...rows.map(fmt));
  return lines.join('\n') + '\n';
}

function image(positionals: string[], sub: string): string {
  const [img, ...extra] = positionals;
  if (!img) throw new UsageError(`disk ${sub}: missing IMAGE`, "see 'basalt disk --help'");
  if (extra.length) throw new UsageError(`disk ${sub}: unexpected argument '${extra[0]}'`);
  return img;
}

function partIndex(v: string | undefined, sub: string): number {
  if (v === undefined) throw new UsageError(`disk ${sub}: -i N (the partition number) is required`);
  return intOpt(v, 'i', 1, 128)!;
}

function bool01(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === '0' || v === '1') return v === '1';
  throw new UsageError(`--successful: '${v}' must be 0 or 1`);
}

export async function run(ctx: CommandContext): Promise<number> {
  try {
    return await dispatch(ctx);
  } catch (e) {
    // Name the disk in every message about its contents.
    const img = ctx.args.slice(1).find((a) => !a.startsWith('-'));
    if (e instanceof BasaltError && !(e instanceof UsageError) && img && !e.message.startsWith(img)) {
      throw new BasaltError(e.code, `${img}: ${e.message}`, { hint: e.hint, details: e.details, cause: e.cause }, e.exitCode);
    }
    throw e;
  }
}

type Emit = (data: unknown, text: string) => void;
/** One subcommand: its arguments after the subcommand name; prints through `emit` (JSON or text). */
type Subcommand = (args: string[], emit: Emit) => Promise<number>;

async function dispatch(ctx: CommandContext): Promise<number> {
  const [sub, ...rest] = ctx.args;
  const emit: Emit = (data, text) => ctx.out(ctx.json ? JSON.stringify(data, null, 2) + '\n' : text);
  if (rest.includes('--help') || rest.includes('-h')) {
    ctx.out(help);
    return 0;
  }
  if (sub === undefined) throw new UsageError('disk: missing subcommand', "see 'basalt disk --help'");
  const cmd = SUBCOMMANDS.get(sub);
  if (!cmd) throw new UsageError(`disk: unknown subcommand '${sub}'`, "see 'basalt disk --help'");
  return cmd(rest, emit);
}

/** --set LABEL=SIZE... as a size per label. */
function sizeOverrides(sets: string[]): Record<string, number> {
  const sizes: Record<string, number> = {};
  for (const s of sets) {
    const m = /^([^=]+)=(.+)$/.exec(s);
    if (!m) throw new UsageError(`--set: '${s}' must be LABEL=SIZE`);
    sizes[m[1]!] = parseSize(m[2]!, 'set');
  }
  return sizes;
}

const createCmd: Subcommand = async (args, emit) => {
  const { values, positionals } = parse(args, { size: { type: 'string', short: 's' }, layout: { type: 'string', short: 'l' }, set: { type: 'string', multiple: true }, seed: { type: 'string' }, force: { type: 'boolean', short: 'f' } }, 'disk create');
  const img = image(positionals, 'create');
  const sizes = sizeOverrides(values.set ?? []);
  const sizeBytes = values.size === undefined ? undefined : parseSize(values.size, 'size');
  if (sizeBytes === undefined) throw new UsageError('disk create: --size SIZE is required', 'e.g. --size 8G');
  const gpt = await createDisk(img, { layout: values.layout, sizeBytes, sizes, seed: values.seed, force: values.force });
  emit(toJson(img, gpt), showText(img, gpt));
  return 0;
};

const showCmd: Subcommand = async (args, emit) => {
  const { positionals } = parse(args, {}, 'disk show');
  const img = image(positionals, 'show');
  const gpt = await readGpt(img);
  emit(toJson(img, gpt), showText(img, gpt));
  return 0;
};

/** A slot's attributes in one line. */
function slotLine(p: Partition): string {
  const a = slotAttrs(p);
  return `partition ${p.index} (${p.label}): priority=${a.priority} tries=${a.tries} successful=${a.successful ? 1 : 0}`;
}

const setCmd: Subcommand = async (args, emit) => {
  const { values, positionals } = parse(args, { index: { type: 'string', short: 'i' }, priority: { type: 'string', short: 'P' }, tries: { type: 'string', short: 'T' }, successful: { type: 'string', short: 'S' } }, 'disk set');
  const img = image(positionals, 'set');
  const index = partIndex(values.index, 'set');
  const priority = intOpt(values.priority, 'priority', 0, 15);
  const tries = intOpt(values.tries, 'tries', 0, 15);
  const successful = bool01(values.successful);
  if (priority === undefined && tries === undefined && successful === undefined) {
    throw new UsageError('disk set: nothing to set', 'give --priority, --tries and/or --successful');
  }
  const gpt = await readGpt(img);
  const next = setSlotAttrs(gpt, index, { priority, tries, successful });
  await writeGpt(img, next);
  const p = findPartition(next, index);
  emit(partJson(next, p), slotLine(p) + '\n');
  return 0;
};

const prioritizeCmd: Subcommand = async (args, emit) => {
  const { values, positionals } = parse(args, { index: { type: 'string', short: 'i' }, 'max-priority': { type: 'string', short: 'P' }, friends: { type: 'boolean', short: 'f' } }, 'disk prioritize');
  const img = image(positionals, 'prioritize');
  const index = partIndex(values.index, 'prioritize');
  const maxPriority = intOpt(values['max-priority'], 'max-priority', 1, 15);
  const gpt = await readGpt(img);
  const next = prioritize(gpt, index, { maxPriority, friends: values.friends });
  await writeGpt(img, next);
  const slots = next.partitions.filter(isUsrSlot);
  emit(
    slots.map((p) => partJson(next, p)),
    slots.map(slotLine).join('\n') + '\n',
  );
  return 0;
};

const nextCmd: Subcommand = async (args, emit) => {
  const { values, positionals } = parse(args, { commit: { type: 'boolean' } }, 'disk next');
  const img = image(positionals, 'next');
  const gpt = await readGpt(img);
  const choice = selectNext(gpt);
  if (!choice) {
    throw new BasaltError(GPT_ERRORS.E_NO_BOOTABLE_SLOT, `${img}: no bootable USR slot (none has priority > 0 with tries left or successful)`);
  }
  const committed = Boolean(values.commit && choice.changed);
  if (committed) await writeGpt(img, choice.gpt);
  const p = findPartition(choice.gpt, choice.index);
  const a = slotAttrs(p);
  emit({ index: p.index, label: p.label, guid: p.guid, committed, slot: a }, `${p.index} ${p.label} ${p.guid}${committed ? ` (tries now ${a.tries})` : ''}\n`);
  return 0;
};

const repairCmd: Subcommand = async (args, emit) => {
  const { positionals } = parse(args, {}, 'disk repair');
  const img = image(positionals, 'repair');
  const r = await repairGpt(img);
  emit(r, r.repaired ? `${img}: repaired (${r.problems.join('; ')})\n` : `${img}: GPT is healthy, nothing to repair\n`);
  return 0;
};

const growCmd: Subcommand = async (args, emit) => {
  const { values, positionals } = parse(args, { index: { type: 'string', short: 'i' } }, 'disk grow');
  const img = image(positionals, 'grow');
  const index = partIndex(values.index, 'grow');
  const r = await growPartition(img, index);
  const grew = r.after.lastLba - r.before.lastLba;
  const sectors = (p: Partition) => p.lastLba - p.firstLba + 1n;
  emit(
    { index, label: r.after.label, sectorsBefore: Number(sectors(r.before)), sectorsAfter: Number(sectors(r.after)), grownSectors: Number(grew) },
    `partition ${index} (${r.after.label}): ${grew === 0n ? 'already fills the disk' : `grown by ${formatBytes(grew * BigInt(r.gpt.sectorSize))} to ${formatBytes(sectors(r.after) * BigInt(r.gpt.sectorSize))}`}\n`,
  );
  return 0;
};

const SUBCOMMANDS = new Map<string, Subcommand>([
  ['create', createCmd],
  ['show', showCmd],
  ['set', setCmd],
  ['prioritize', prioritizeCmd],
  ['next', nextCmd],
  ['repair', repairCmd],
  ['grow', growCmd],
]);

/**
 * Disk layouts as data (configs/layouts/*.json, versioned) and the pure
 * planner that turns a layout and a disk size into a partition table.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BasaltError, fsError } from '../errors.js';
import { GPT_ERRORS } from './errors.js';
import { configsDir } from '../paths.js';
import { parseBytes } from '../size.js';
import { derivedGuid, isGuid, normGuid, randomGuid } from './guid.js';
import { encodeSlotAttrs } from './slots.js';
import type { Gpt, Partition, SlotAttrs } from './types.js';
import { TYPE } from './types.js';

export const LAYOUT_FORMAT_VERSION = 1;

export interface LayoutPartition {
  number: number;
  label: string;
  /** Type GUID (lower case). */
  type: string;
  /** Bytes, or 'fill' for the partition that takes the rest of the disk. */
  size: number | 'fill';
  minSize: number;
  uuid?: string;
  fs?: string;
  slot?: SlotAttrs;
}

export interface Layout {
  formatVersion: number;
  name: string;
  description: string;
  diskGuid?: string;
  /** Alignment of every partition start and size, in bytes. */
  alignment: number;
  partitions: LayoutPartition[];
  /** Where it was loaded from (for messages). */
  source: string;
}

const SECTOR = 512;
const ENTRY_COUNT = 128;
const ENTRY_SIZE = 128;

function fail(source: string, field: string, msg: string, hint?: string): never {
  throw new BasaltError(GPT_ERRORS.E_LAYOUT_INVALID, `${source}: ${field}: ${msg}`, { hint });
}

/** Validates parsed JSON into a Layout; every error names the file and field. Pure. */
export function parseLayout(data: unknown, source: string): Layout {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) fail(source, '(top)', 'must be an object');
  const d = data as Record<string, unknown>;
  if (d['formatVersion'] !== LAYOUT_FORMAT_VERSION) {
    fail(source, 'formatVersion', `${JSON.stringify(d['formatVersion'])} is not supported`, `this Basalt reads layout formatVersion ${LAYOUT_FORMAT_VERSION}`);
  }
  const known = new Set(['formatVersion', 'name', 'description', 'diskGuid', 'alignment', 'partitions']);
  for (const k of Object.keys(d)) if (!known.has(k)) fail(source, k, 'unknown key', `known keys: ${[...known].join(', ')}`);
  const name = typeof d['name'] === 'string' ? d['name'] : fail(source, 'name', 'must be a string');
  const alignment = parseBytes((d['alignment'] as string | number | undefined) ?? '2MiB');
  if (alignment === null || alignment < SECTOR || alignment % SECTOR !== 0) fail(source, 'alignment', `'${String(d['alignment'])}' is not a multiple of ${SECTOR} bytes`);
  let diskGuid: string | undefined;
  if (d['diskGuid'] !== undefined) {
    if (typeof d['diskGuid'] !== 'string' || !isGuid(d['diskGuid'])) fail(source, 'diskGuid', 'must be a GUID');
    diskGuid = normGuid(d['diskGuid']);
  }
  if (!Array.isArray(d['partitions']) || d['partitions'].length === 0) fail(source, 'partitions', 'must be a non-empty list');
  const seen: SeenPartitions = { numbers: new Set(), labels: new Set() };
  const parts = (d['partitions'] as unknown[]).map((raw, i) => parseLayoutPartition(raw, i, source, alignment, seen));
  const fills = parts.filter((p) => p.size === 'fill').length;
  if (fills > 1) fail(source, 'partitions', "only one partition may have size 'fill'");
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- any JSON value is taken in its string form
  return { formatVersion: LAYOUT_FORMAT_VERSION, name, description: String(d['description'] ?? ''), diskGuid, alignment, partitions: parts, source };
}

/** The numbers and labels of the partitions read so far (each may be used once). */
interface SeenPartitions {
  numbers: Set<number>;
  labels: Set<string>;
}

const PARTITION_KEYS = new Set(['number', 'label', 'type', 'size', 'minSize', 'uuid', 'fs', 'slot']);

/** partitions[i] of a layout file. Pure. */
function parseLayoutPartition(raw: unknown, i: number, source: string, alignment: number, seen: SeenPartitions): LayoutPartition {
  const f = (k: string) => `partitions[${i}].${k}`;
  if (typeof raw !== 'object' || raw === null) fail(source, `partitions[${i}]`, 'must be an object');
  const p = raw as Record<string, unknown>;
  for (const k of Object.keys(p)) if (!PARTITION_KEYS.has(k)) fail(source, f(k), 'unknown key', `known keys: ${[...PARTITION_KEYS].join(', ')}`);
  const number = p['number'];
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || number > ENTRY_COUNT) fail(source, f('number'), `must be an integer from 1 to ${ENTRY_COUNT}`);
  if (seen.numbers.has(number)) fail(source, f('number'), `partition ${number} is defined twice`);
  seen.numbers.add(number);
  const label = p['label'];
  if (typeof label !== 'string' || label.length === 0 || label.length > 36) fail(source, f('label'), 'must be a string of 1 to 36 characters');
  if (seen.labels.has(label)) fail(source, f('label'), `label ${label} is used twice`);
  seen.labels.add(label);
  const typeRaw = p['type'];
  let type: string;
  if (typeof typeRaw === 'string' && typeRaw in TYPE) type = TYPE[typeRaw as keyof typeof TYPE];
  else if (typeof typeRaw === 'string' && isGuid(typeRaw)) type = normGuid(typeRaw);
  else fail(source, f('type'), `'${String(typeRaw)}' is neither a known type name nor a GUID`, `known names: ${Object.keys(TYPE).join(', ')}`);
  let size: number | 'fill' = 'fill';
  if (p['size'] !== 'fill') {
    const n = parseBytes(p['size'] as string | number);
    if (n === null || n <= 0) fail(source, f('size'), `'${String(p['size'])}' is not a size`, "use e.g. '256MiB', '2GiB' or 'fill'");
    size = n;
  }
  const minSize = p['minSize'] === undefined ? alignment : parseBytes(p['minSize'] as string | number);
  if (minSize === null) fail(source, f('minSize'), `'${String(p['minSize'])}' is not a size`);
  const lp: LayoutPartition = { number, label, type, size, minSize };
  if (p['uuid'] !== undefined) {
    if (typeof p['uuid'] !== 'string' || !isGuid(p['uuid'])) fail(source, f('uuid'), 'must be a GUID');
    lp.uuid = normGuid(p['uuid']);
  }
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- any JSON value is taken in its string form
  if (p['fs'] !== undefined) lp.fs = String(p['fs']);
  if (p['slot'] !== undefined) lp.slot = parseSlotAttrs(p['slot'] as Record<string, unknown>, (k) => f(`slot.${k}`), source);
  return lp;
}

/** A partition's initial slot attributes (priority and tries 0-15, successful). */
function parseSlotAttrs(s: Record<string, unknown>, field: (k: string) => string, source: string): SlotAttrs {
  const nib = (k: string) => {
    const v = s[k] ?? 0;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 15) fail(source, field(k), 'must be an integer from 0 to 15');
    return v;
  };
  return { priority: nib('priority'), tries: nib('tries'), successful: s['successful'] === true };
}

/** Loads a layout by name (configs/layouts/NAME.json) or by path. */
export function loadLayout(nameOrPath = 'coreos'): Layout {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  const file = isPath ? nameOrPath : join(configsDir(), 'layouts', `${nameOrPath}.json`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !isPath) {
      throw new BasaltError(GPT_ERRORS.E_LAYOUT_UNKNOWN, `unknown layout '${nameOrPath}'`, { hint: `layouts live in ${join(configsDir(), 'layouts')}; give a name from there or a path to a .json file` });
    }
    throw fsError(e, file, 'read layout');
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new BasaltError(GPT_ERRORS.E_LAYOUT_INVALID, `${file}: not valid JSON: ${(e as Error).message}`);
  }
  return parseLayout(data, isPath ? file : basename(file));
}

export interface PlanOptions {
  /** Disk size in bytes; when omitted, the smallest size that fits. */
  sizeBytes?: number;
  /** Size overrides by label, in bytes. */
  sizes?: Record<string, number>;
  /** Derive partition and disk GUIDs from this seed instead of random ones (reproducible images). */
  seed?: string;
  /** Disk GUID override. */
  diskGuid?: string;
}

const alignUp = (n: bigint, a: bigint) => ((n + a - 1n) / a) * a;

const S = BigInt(SECTOR);
const ENTRY_SECTORS = BigInt((ENTRY_COUNT * ENTRY_SIZE) / SECTOR);
/** The end of the disk: the backup entries and header, kept clear of the aligned area. */
const TAIL = ENTRY_SECTORS + 1n;

/** A layout partition and its length in sectors (null: it fills the rest). */
interface Sized {
  p: LayoutPartition;
  sectors: bigint | null;
}

/** Plans the partition table for `layout` on a disk of the given size. Pure (randomness aside, see seed). */
export function planLayout(layout: Layout, opts: PlanOptions = {}): Gpt {
  const align = BigInt(layout.alignment) / S;
  const sizes = opts.sizes ?? {};
  checkSizeOverrides(layout, sizes);
  const sectorsOf = (bytes: number) => alignUp(BigInt(bytes) / S + (BigInt(bytes) % S ? 1n : 0n), align);
  const sized: Sized[] = layout.partitions.map((p) => {
    const want = sizes[p.label] ?? p.size;
    return { p, sectors: want === 'fill' ? null : sectorsOf(want) };
  });
  const start0 = alignUp(2n + ENTRY_SECTORS, align);
  const fixedSum = sized.reduce((a, x) => a + (x.sectors ?? 0n), 0n);
  const fillPart = sized.find((x) => x.sectors === null);
  const minFill = fillPart ? sectorsOf(fillPart.p.minSize) : 0n;
  const total = diskSectors(layout, opts.sizeBytes, alignUp(start0 + fixedSum + minFill + TAIL, align));
  const lastUsable = total - TAIL - 1n;
  const guidFor = (what: string) => (opts.seed !== undefined ? derivedGuid(`${opts.seed}:${what}`) : randomGuid());
  const partitions = placePartitions(sized, start0, lastUsable, align, guidFor);
  return {
    sectorSize: SECTOR,
    totalSectors: total,
    diskGuid: opts.diskGuid ? normGuid(opts.diskGuid, 'disk GUID') : (layout.diskGuid ?? guidFor('disk')),
    firstUsableLba: 2n + ENTRY_SECTORS,
    lastUsableLba: lastUsable,
    primaryEntriesLba: 2n,
    backupHeaderLba: total - 1n,
    entryCount: ENTRY_COUNT,
    entrySize: ENTRY_SIZE,
    partitions,
  };
}

/** Every size override must name a partition of the layout. */
function checkSizeOverrides(layout: Layout, sizes: Record<string, number>): void {
  for (const label of Object.keys(sizes)) {
    if (!layout.partitions.some((p) => p.label === label)) {
      throw new BasaltError(GPT_ERRORS.E_LAYOUT_INVALID, `size override for ${label}: layout ${layout.name} has no such partition`, {
        hint: `partitions: ${layout.partitions.map((p) => p.label).join(', ')}`,
      });
    }
  }
}

/** The disk's sectors: the size asked for (whole sectors, at least `minTotal`), or `minTotal`. */
function diskSectors(layout: Layout, sizeBytes: number | undefined, minTotal: bigint): bigint {
  if (sizeBytes === undefined) return minTotal;
  if (sizeBytes % SECTOR !== 0) {
    throw new BasaltError(GPT_ERRORS.E_DISK_SIZE, `disk size ${sizeBytes} is not a multiple of ${SECTOR} bytes`);
  }
  const total = BigInt(sizeBytes) / S;
  if (total < minTotal) {
    throw new BasaltError(GPT_ERRORS.E_DISK_SIZE, `disk size ${sizeBytes} bytes is too small for layout ${layout.name}`, {
      hint: `it needs at least ${minTotal * S} bytes (${Number((minTotal * S) / 1048576n)} MiB)`,
    });
  }
  return total;
}

/** Lays the partitions out in number order from `start0`; the fill partition takes what the ones after it leave. */
function placePartitions(sized: Sized[], start0: bigint, lastUsable: bigint, align: bigint, guidFor: (what: string) => string): Partition[] {
  const parts: Partition[] = [];
  let next = start0;
  for (const { p, sectors } of [...sized].sort((a, b) => a.p.number - b.p.number)) {
    let len: bigint;
    if (sectors === null) {
      // Everything up to the last usable sector, minus what the partitions after it need.
      const after = sized.filter((x) => x.p.number > p.number).reduce((a, x) => a + x.sectors!, 0n);
      len = ((lastUsable + 1n - next - after) / align) * align;
    } else len = sectors;
    parts.push({
      index: p.number,
      type: p.type,
      guid: p.uuid ?? guidFor(p.label),
      firstLba: next,
      lastLba: next + len - 1n,
      attributes: p.slot ? encodeSlotAttrs(0n, p.slot) : 0n,
      label: p.label,
    });
    next += len;
  }
  return parts;
}

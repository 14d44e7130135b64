/**
 * The dynamic-linking facts of an ELF file (DT_NEEDED, DT_RUNPATH/DT_RPATH,
 * DT_SONAME), read from its headers; and the check that every library a
 * program of a tree needs is in that tree (after trim rules removed files).
 * Pure parsing of a buffer; the tree walk is the thin I/O part.
 */
import { open, readdir } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';
import { mapLimit } from '../../common/src/limit.js';

export interface ElfDynamic {
  needed: string[];
  /** RUNPATH or RPATH entries as written ($ORIGIN not expanded). */
  runpath: string[];
  soname?: string;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

/** Reads `length` bytes at `offset` of a file (fewer at its end). */
export type RangeReader = (offset: number, length: number) => Buffer;

/**
 * Pure: the dynamic section of a little-endian ELF64 file, read as four
 * ranges (header, program headers, dynamic segment, string table) through
 * `read`, so a 100 MB program costs a few KB. Undefined for anything else (not
 * ELF, 32-bit, big-endian, no dynamic section: a static program or a
 * relocatable object).
 */
export function parseElfDynamicFrom(read: RangeReader): ElfDynamic | undefined {
  const head = read(0, 64);
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return undefined;
  const phoff = Number(head.readBigUInt64LE(0x20));
  const phentsize = head.readUInt16LE(0x36);
  const phnum = head.readUInt16LE(0x38);
  if (phentsize < 56) return undefined;
  const ph = read(phoff, phnum * phentsize);
  if (ph.length < phnum * phentsize) return undefined;
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let dyn: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    const type = ph.readUInt32LE(at);
    const offset = Number(ph.readBigUInt64LE(at + 8));
    const vaddr = Number(ph.readBigUInt64LE(at + 16));
    const filesz = Number(ph.readBigUInt64LE(at + 32));
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    if (type === PT_DYNAMIC) dyn = { offset, size: filesz };
  }
  if (!dyn) return undefined;
  const d = read(dyn.offset, dyn.size);
  if (d.length < dyn.size) return undefined;
  const toOffset = (addr: number) => {
    const l = loads.find((s) => addr >= s.vaddr && addr < s.vaddr + s.filesz);
    return l ? addr - l.vaddr + l.offset : undefined;
  };
  const entries: [number, number][] = [];
  for (let at = 0; at + 16 <= d.length; at += 16) {
    const tag = Number(d.readBigInt64LE(at));
    if (tag === DT_NULL) break;
    entries.push([tag, Number(d.readBigUInt64LE(at + 8))]);
  }
  const strtab = toOffset(entries.find(([t]) => t === DT_STRTAB)?.[1] ?? -1);
  const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1] ?? 0;
  if (strtab === undefined) return undefined;
  const strs = read(strtab, strsz);
  const str = (off: number) => {
    const end = strs.indexOf(0, off);
    return off < strs.length && end > 0 ? strs.toString('utf8', off, end) : '';
  };
  const out: ElfDynamic = { needed: [], runpath: [] };
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) out.needed.push(str(val));
    else if (tag === DT_SONAME) out.soname = str(val);
    else if (tag === DT_RUNPATH || tag === DT_RPATH) out.runpath.push(...str(val).split(':').filter(Boolean));
  }
  return out;
}

/** Pure: parseElfDynamicFrom over a buffer that holds the whole file. */
export function parseElfDynamic(buf: Buffer): ElfDynamic | undefined {
  return parseElfDynamicFrom((offset, length) => buf.subarray(offset, offset + length));
}

export interface MissingLib {
  /** The program or library, relative to the tree. */
  file: string;
  lib: string;
}

/** The directories the dynamic linker searches on a Debian amd64 system (ld.so.conf.d included). */
export const DEFAULT_LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib', '/usr/lib64', '/lib/x86_64-linux-gnu', '/lib', '/lib64'];

/** Pure: where the dynamic linker looks for each library `file` needs (RUNPATH with $ORIGIN expanded, then the default directories). */
export function libCandidates(file: string, d: ElfDynamic): Map<string, string[]> {
  const origin = file.slice(0, file.lastIndexOf('/')) || '/';
  const dirs = [...d.runpath.map((r) => r.replace(/\$(\{ORIGIN\}|ORIGIN)/g, origin)), ...DEFAULT_LIB_DIRS];
  return new Map(d.needed.map((lib) => [lib, lib.includes('/') ? [lib] : dirs.map((dir) => posix.normalize(`${dir}/${lib}`))]));
}

/**
 * Pure: the libraries `files` need that no search directory of the tree holds.
 * `exists(path)` says whether an absolute path (in the tree) is a file or a link to one.
 */
export function missingLibs(files: Map<string, ElfDynamic>, exists: (abs: string) => boolean): MissingLib[] {
  // A library's own needs may be met by what the program that loads it found through its RUNPATH
  // (systemd's private libraries): for a library, any library of the tree with that SONAME will do.
  const sonames = new Set([...files.values()].map((d) => d.soname).filter((x) => x !== undefined));
  const missing: MissingLib[] = [];
  for (const [file, d] of files) {
    for (const [lib, paths] of libCandidates(file, d)) {
      if (!paths.some(exists) && !(d.soname !== undefined && sonames.has(lib))) missing.push({ file, lib });
    }
  }
  return missing;
}

/**
 * Reads the dynamic section of every ELF file under `root`/usr (kernel modules
 * aside: they are linked by the kernel), keyed by their path in the image.
 */
export async function scanTree(root: string): Promise<Map<string, ElfDynamic>> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!p.endsWith('/usr/lib/modules')) await walk(p);
      } else if (e.isFile()) files.push(p);
    }
  };
  await walk(join(root, 'usr'));
  // Several files at a time (the reads are short); the map keeps the walk's order.
  const found = await mapLimit(files, 16, readElfDynamic);
  const out = new Map<string, ElfDynamic>();
  files.forEach((p, i) => {
    const d = found[i];
    if (d) out.set('/' + relative(root, p), d);
  });
  return out;
}

/** The dynamic section of one file, reading it only when it starts as an ELF file does. */
async function readElfDynamic(path: string): Promise<ElfDynamic | undefined> {
  const fh = await open(path, 'r');
  try {
    // The pure parser asks for ranges; one it lacks is read and the parse runs again
    // (four short reads for a dynamic program, one for anything else).
    const have: { offset: number; buf: Buffer }[] = [];
    const size = (await fh.stat()).size;
    const fetch = async (offset: number, length: number) => {
      const len = Math.max(0, Math.min(length, size - offset));
      const buf = Buffer.alloc(len);
      if (len) await fh.read(buf, 0, len, offset);
      have.push({ offset, buf });
    };
    await fetch(0, 4096);
    if (have[0]!.buf.length < 4 || have[0]!.buf.readUInt32BE(0) !== 0x7f454c46) return undefined;
    for (let pass = 0; pass < 5; pass++) {
      let want: [number, number] | undefined;
      const r = parseElfDynamicFrom((offset, length) => {
        const c = have.find((h) => offset >= h.offset && Math.min(offset + length, size) <= h.offset + h.buf.length);
        if (c) return c.buf.subarray(offset - c.offset, offset - c.offset + length);
        if (offset < size) want ??= [offset, length];
        return Buffer.alloc(0);
      });
      if (!want) return r;
      await fetch(...want);
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

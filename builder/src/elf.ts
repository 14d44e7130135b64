/**
 * The dynamic-linking facts of an ELF file (DT_NEEDED, DT_RUNPATH/DT_RPATH,
 * DT_SONAME), read from its headers; and the check that every library a
 * program of a tree needs is in that tree (after trim rules removed files).
 * Pure parsing of a buffer; the tree walk is the thin I/O part.
 */
import { open, readdir } from 'node:fs/promises';
import { join, posix, relative } from 'node:path';

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

/**
 * Pure: the dynamic section of a little-endian ELF64 file (`buf` holds the
 * whole file). Undefined for anything else (not ELF, 32-bit, big-endian, no
 * dynamic section: a static program or a relocatable object).
 */
export function parseElfDynamic(buf: Buffer): ElfDynamic | undefined {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return undefined;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let dyn: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 56 > buf.length) return undefined;
    const type = buf.readUInt32LE(at);
    const offset = Number(buf.readBigUInt64LE(at + 8));
    const vaddr = Number(buf.readBigUInt64LE(at + 16));
    const filesz = Number(buf.readBigUInt64LE(at + 32));
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    if (type === PT_DYNAMIC) dyn = { offset, size: filesz };
  }
  if (!dyn || dyn.offset + dyn.size > buf.length) return undefined;
  const toOffset = (addr: number) => {
    const l = loads.find((s) => addr >= s.vaddr && addr < s.vaddr + s.filesz);
    return l ? addr - l.vaddr + l.offset : undefined;
  };
  const entries: [number, number][] = [];
  for (let at = dyn.offset; at + 16 <= dyn.offset + dyn.size; at += 16) {
    const tag = Number(buf.readBigInt64LE(at));
    if (tag === DT_NULL) break;
    entries.push([tag, Number(buf.readBigUInt64LE(at + 8))]);
  }
  const strtab = toOffset(entries.find(([t]) => t === DT_STRTAB)?.[1] ?? -1);
  const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1] ?? 0;
  if (strtab === undefined) return undefined;
  const str = (off: number) => {
    const start = strtab + off;
    const end = buf.indexOf(0, start);
    return start < strtab + strsz && end > 0 ? buf.toString('utf8', start, end) : '';
  };
  const out: ElfDynamic = { needed: [], runpath: [] };
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) out.needed.push(str(val));
    else if (tag === DT_SONAME) out.soname = str(val);
    else if (tag === DT_RUNPATH || tag === DT_RPATH) out.runpath.push(...str(val).split(':').filter(Boolean));
  }
  return out;
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
  const out = new Map<string, ElfDynamic>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!p.endsWith('/usr/lib/modules')) await walk(p);
      } else if (e.isFile()) {
        const d = await readElfDynamic(p);
        if (d) out.set('/' + relative(root, p), d);
      }
    }
  };
  await walk(join(root, 'usr'));
  return out;
}

/** The dynamic section of one file, reading it only when it starts as an ELF file does. */
async function readElfDynamic(path: string): Promise<ElfDynamic | undefined> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    if (bytesRead < 4 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return parseElfDynamic(await fh.readFile());
  } finally {
    await fh.close();
  }
}

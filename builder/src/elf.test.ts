import { describe, expect, it } from 'vitest';
import { libCandidates, missingLibs, parseElfDynamic, type ElfDynamic } from './elf.js';
import { isGlob } from './stages/trim.js';

/** A minimal little-endian ELF64 shared object: one PT_LOAD, one PT_DYNAMIC, a string table. */
function elf(entries: [number, string | number][], strs: string[]): Buffer {
  const strtab = Buffer.from('\0' + strs.map((x) => x + '\0').join(''));
  const off = (x: string) => strtab.indexOf(Buffer.from(x + '\0'), 1);
  const phoff = 64;
  const dynOff = phoff + 2 * 56;
  const dyn = Buffer.alloc((entries.length + 3) * 16);
  const strOff = dynOff + dyn.length;
  const all: [number, number][] = [...entries.map(([t, v]): [number, number] => [t, typeof v === 'string' ? off(v) : v]), [5, 0x1000 + strOff], [10, strtab.length], [0, 0]];
  all.forEach(([t, v], i) => {
    dyn.writeBigInt64LE(BigInt(t), i * 16);
    dyn.writeBigUInt64LE(BigInt(v), i * 16 + 8);
  });
  const head = Buffer.alloc(dynOff);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2;
  head[5] = 1;
  head.writeBigUInt64LE(BigInt(phoff), 0x20);
  head.writeUInt16LE(56, 0x36);
  head.writeUInt16LE(2, 0x38);
  const total = strOff + strtab.length;
  // PT_LOAD: file 0.. at vaddr 0x1000; PT_DYNAMIC at dynOff.
  for (const [i, type, o, v, size] of [[0, 1, 0, 0x1000, total], [1, 2, dynOff, 0x1000 + dynOff, dyn.length]] as const) {
    const at = phoff + i * 56;
    head.writeUInt32LE(type, at);
    head.writeBigUInt64LE(BigInt(o), at + 8);
    head.writeBigUInt64LE(BigInt(v), at + 16);
    head.writeBigUInt64LE(BigInt(size), at + 32);
  }
  return Buffer.concat([head, dyn, strtab]);
}

describe('parseElfDynamic', () => {
  it('reads NEEDED, SONAME and RUNPATH through the load segment that maps the string table', () => {
    const b = elf([[1, 'libc.so.6'], [1, 'libfoo.so.1'], [14, 'libbar.so.2'], [29, '$ORIGIN/../lib:/opt/x']], ['libc.so.6', 'libfoo.so.1', 'libbar.so.2', '$ORIGIN/../lib:/opt/x']);
    expect(parseElfDynamic(b)).toEqual({ needed: ['libc.so.6', 'libfoo.so.1'], soname: 'libbar.so.2', runpath: ['$ORIGIN/../lib', '/opt/x'] });
  });

  it('gives nothing for what is not a dynamic ELF64 file', () => {
    expect(parseElfDynamic(Buffer.from('#!/bin/sh\necho hi\n'))).toBeUndefined();
    const b = elf([[1, 'libc.so.6']], ['libc.so.6']);
    b[4] = 1; // ELFCLASS32
    expect(parseElfDynamic(b)).toBeUndefined();
    expect(parseElfDynamic(elf([[1, 'libc.so.6']], ['libc.so.6']).subarray(0, 80))).toBeUndefined();
  });
});

describe('missingLibs', () => {
  const tree = new Set(['/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so', '/usr/lib/app/lib/libplug.so']);
  const exists = (p: string) => tree.has(p);
  const files = new Map<string, ElfDynamic>([
    ['/usr/bin/ok', { needed: ['libc.so.6'], runpath: [] }],
    ['/usr/bin/systemctl', { needed: ['libc.so.6', 'libsystemd-shared-252.so'], runpath: ['/usr/lib/x86_64-linux-gnu/systemd'] }],
    ['/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so', { needed: ['libc.so.6'], runpath: [], soname: 'libsystemd-shared-252.so' }],
    ['/usr/lib/x86_64-linux-gnu/systemd/libsystemd-core-252.so', { needed: ['libsystemd-shared-252.so'], runpath: [], soname: 'libsystemd-core-252.so' }],
    ['/usr/lib/app/bin/tool', { needed: ['libplug.so'], runpath: ['$ORIGIN/../lib'] }],
    ['/usr/lib/systemd/systemd-pull', { needed: ['libc.so.6', 'libcurl.so.4'], runpath: [] }],
    ['/usr/bin/sneaky', { needed: ['libsystemd-shared-252.so'], runpath: [] }],
  ]);

  it('names every program whose library no search directory holds; a library may lean on an already loaded SONAME, a program may not', () => {
    expect(missingLibs(files, exists)).toEqual([
      { file: '/usr/lib/systemd/systemd-pull', lib: 'libcurl.so.4' },
      { file: '/usr/bin/sneaky', lib: 'libsystemd-shared-252.so' },
    ]);
  });

  it('expands $ORIGIN against the directory of the file', () => {
    expect(libCandidates('/usr/lib/app/bin/tool', files.get('/usr/lib/app/bin/tool')!).get('libplug.so')![0]).toBe('/usr/lib/app/lib/libplug.so');
  });
});

describe('isGlob', () => {
  it('tells a trim rule with wildcards, braces or an extglob from a plain path', () => {
    expect(['bin/ctr', 'lib/udev/hwdb.d', 'lib/x86_64-linux-gnu/libc.so.6'].map(isGlob)).toEqual([false, false, false]);
    expect(['lib/*.so', 'lib/{a,b}', 'gconv/!(UTF*)', 'lib/libfoo.so.?'].map(isGlob)).toEqual([true, true, true, true]);
  });
});

/**
 * Stage 5, boot: the EFI-SYSTEM filesystem as a file (mkfs.vfat + mtools, no
 * mount): systemd-boot at EFI/BOOT/BOOTX64.EFI, loader.conf, slot A's kernel
 * and initrd under /basalt/a/, and slot A's Boot Loader Spec entry with boot
 * counting (basalt-a+3.conf: a freshly built slot is untried until its first
 * good boot blesses it to basalt-a.conf).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LOADER_CONF, entryFileName, renderEntry, ESP_SLOT_DIR } from '../../../common/src/boot.js';
import { findPartition, loadLayout, partitionRange, planLayout } from '../../../common/src/gpt/index.js';
import { run } from '../../../common/src/exec.js';
import { sha256, stageDir, stageFacts, type BuildContext, type Stage } from '../context.js';
import { FactsReader } from '../facts.js';

/** Tries a freshly built slot gets (GPT tries and the entry's +N agree). */
export const FIRST_BOOT_TRIES = 3;

/** Pure: the bytes of EFI-SYSTEM in the profile's layout. */
export function espBytes(p: BuildContext['profile']): number {
  const gpt = planLayout(loadLayout(p.disk.layout), { sizeBytes: p.disk.size, seed: 'plan' });
  return partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM')).length;
}

/** Pure: the volume id of the ESP derived from the OS id and version (8 hex digits). */
export function espVolumeId(p: BuildContext['profile']): string {
  return sha256(`${p.os.id}:${p.os.version}:esp`).slice(0, 8);
}

export const bootStage: Stage<'boot'> = {
  name: 'boot',
  title: 'Boot (systemd-boot, entries, EFI-SYSTEM image)',
  version: 1,
  async inputs(ctx) {
    const p = ctx.profile;
    return { cmdline: p.kernel.cmdline, layout: p.disk.layout, size: p.disk.size, os: p.os, tries: FIRST_BOOT_TRIES };
  },
  async run(ctx: BuildContext, out: string) {
    const p = ctx.profile;
    const initrdDir = stageDir(ctx, 'initrd');
    const usr = stageFacts(ctx, 'usr-image');
    const esp = join(out, 'esp.img');
    const env = { MTOOLS_SKIP_CHECK: '1', SOURCE_DATE_EPOCH: String(p.sourceDateEpoch) };
    await run('mkfs.vfat', ['-F', '32', '-n', 'EFI-SYSTEM', '-i', espVolumeId(p), '--invariant', '-C', esp, String(Math.floor(espBytes(p) / 1024))], { signal: ctx.signal });
    const entry = renderEntry({ slot: 'a', version: p.os.version, rootHash: usr.rootHash || undefined, hashOffset: usr.rootHash ? usr.hashOffset : undefined, fsType: usr.fsType, extraCmdline: p.kernel.cmdline, osName: p.os.name });
    const entryName = entryFileName('a', FIRST_BOOT_TRIES);
    await writeFile(join(out, 'loader.conf'), LOADER_CONF);
    await writeFile(join(out, entryName), entry);
    const a = ESP_SLOT_DIR.a;
    await run('mmd', ['-i', esp, '::/EFI', '::/EFI/BOOT', '::/loader', '::/loader/entries', '::/basalt', `::${a}`], { env });
    const copies: [string, string][] = [
      [join(initrdDir, 'root/usr/lib/systemd/boot/efi/systemd-bootx64.efi'), '::/EFI/BOOT/BOOTX64.EFI'],
      [join(out, 'loader.conf'), '::/loader/loader.conf'],
      [join(out, entryName), `::/loader/entries/${entryName}`],
      [join(initrdDir, 'vmlinuz'), `::${a}/vmlinuz`],
      [join(initrdDir, 'initrd'), `::${a}/initrd`],
    ];
    for (const [from, to] of copies) await run('mcopy', ['-i', esp, from, to], { env, signal: ctx.signal });
    return { facts: { entry: entryName, cmdline: entry.split('\n').find((l) => l.startsWith('options '))!.slice(8) } };
  },
  readFacts(json, where) {
    const r = new FactsReader(json, where);
    return { entry: r.str('entry'), cmdline: r.str('cmdline') };
  },
};

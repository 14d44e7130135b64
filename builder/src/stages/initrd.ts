/**
 * Stage 4a, initrd: dracut's systemd initrd (explicit modules and drivers,
 * reproducible) with Basalt's 90basalt module (verity with --hash-offset,
 * empty-ROOT setup, reboot instead of an emergency shell). The kernel and the
 * initrd are stored inside /usr at /usr/lib/basalt/boot/{vmlinuz,initrd} so an
 * update of /usr carries them, and next to the tree (out/vmlinuz, out/initrd).
 */
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../../common/src/exec.js';
import { stageDir, type BuildContext, type Stage } from '../context.js';
import { FactsReader } from '../facts.js';
import { linkTree } from '../fsutil.js';
import { kernelVersion } from './trim.js';

export const DRACUT_MODULES = ['systemd', 'systemd-initrd', 'dracut-systemd', 'base', 'fs-lib', 'rootfs-block', 'udev-rules', 'kernel-modules', 'dm', 'shutdown', 'basalt'];

/** Pure: dracut argv (run inside the tree). */
export function dracutArgs(kver: string, drivers: readonly string[], output: string): string[] {
  return [
    '--force',
    '--no-hostonly',
    '--reproducible',
    '--no-early-microcode',
    '--tmpdir', '/tmp',
    '--gzip',
    '--kver', kver,
    '-m', DRACUT_MODULES.join(' '),
    '--drivers', drivers.join(' '),
    output,
  ];
}

export const initrdStage: Stage<'initrd'> = {
  name: 'initrd',
  title: 'Initrd (dracut systemd initrd + verity module)',
  version: 1,
  async inputs(ctx) {
    return { drivers: ctx.profile.initrd.drivers, modules: DRACUT_MODULES };
  },
  async run(ctx: BuildContext, out: string) {
    const root = join(out, 'root');
    // Hard links to trim's tree: this stage adds files (/etc for dracut's run, the
    // kernel and initrd) and removes them; dracut writes only in its own /tmp.
    await linkTree(join(stageDir(ctx, 'trim'), 'root'), root, ctx.signal);
    const kver = await kernelVersion(root);
    const bootDir = join(root, 'usr/lib/basalt/boot');
    await mkdir(bootDir, { recursive: true });
    // dracut reads /etc (passwd, os-release, modprobe.d): give it the factory defaults for the run.
    await run('cp', ['-a', '--remove-destination', join(root, 'usr/share/factory/etc/.'), join(root, 'etc/')]);
    await mkdir(join(root, 'tmp'), { recursive: true, mode: 0o1777 });
    await run('chroot', [root, 'dracut', ...dracutArgs(kver, ctx.profile.initrd.drivers, '/usr/lib/basalt/boot/initrd')], {
      signal: ctx.signal,
      env: { SOURCE_DATE_EPOCH: String(ctx.profile.sourceDateEpoch), LC_ALL: 'C.UTF-8' },
    });
    await run('find', [join(root, 'etc'), join(root, 'tmp'), '-mindepth', '1', '-delete']);
    await copyFile(join(root, 'boot', `vmlinuz-${kver}`), join(bootDir, 'vmlinuz'));
    for (const f of await readdir(join(root, 'boot'))) await rm(join(root, 'boot', f), { recursive: true, force: true });
    await copyFile(join(bootDir, 'vmlinuz'), join(out, 'vmlinuz'));
    await copyFile(join(bootDir, 'initrd'), join(out, 'initrd'));
    return { facts: { kernelVersion: kver, kernelBytes: (await stat(join(out, 'vmlinuz'))).size, initrdBytes: (await stat(join(out, 'initrd'))).size } };
  },
  readFacts(json, where) {
    const r = new FactsReader(json, where);
    return { kernelVersion: r.str('kernelVersion'), kernelBytes: r.num('kernelBytes'), initrdBytes: r.num('initrdBytes') };
  },
};

/**
 * The one table of `basalt` subcommands. Modules are imported lazily so that
 * `basalt disk show` never loads the builder or openpgp.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../common/src/errors.js';
import type { CommandEntry, ProgramModule } from '../common/src/cli/types.js';

export const commands: CommandEntry[] = [
  {
    name: 'build',
    summary: 'build a bootable A/B disk image, qcow2, PXE and USR update image from a profile',
    where: 'build-host',
    module: new URL('../builder/src/cli.js', import.meta.url),
    load: () => import('../builder/src/cli.js'),
  },
  { name: 'disk', summary: 'create, inspect and edit GPT disks and A/B slot attributes', load: () => import('../common/src/gpt/cli.js') },
  {
    name: 'qemu',
    summary: 'boot a built image in QEMU for a person to use',
    where: 'build-host',
    module: new URL('../qemu-test/src/cli.js', import.meta.url),
    load: () => import('../qemu-test/src/cli.js'),
  },
  { name: 'keys', summary: 'generate or export OpenPGP release keys', load: () => import('../update-engine/src/cmd/keys.js') },
  { name: 'release', summary: 'publish a USR image as a signed payload; promote between channels', load: () => import('../update-engine/src/cmd/release.js') },
  { name: 'serve', summary: 'Omaha v3 update server over a release repository', load: () => import('../update-engine/src/cmd/serve.js') },
  { name: 'fleet', summary: 'the fleet service: groups, rollout policies, machines, pause and resume (admin API of basalt serve)', load: () => import('../update-engine/src/cmd/fleet.js') },
  { name: 'update', summary: 'update status, check, apply, mark-good, rollback (talks to update-engine, or works on --disk IMAGE)', load: () => import('../update-engine/src/cmd/update.js') },
  { name: 'update-engine', summary: 'the update daemon: scheduled checks, A/B install, rollback reporting', load: () => import('../update-engine/src/cmd/update-engine.js') },
  { name: 'locksmith', summary: 'reboot after an update per REBOOT_STRATEGY (reboot, etcd-lock, off) and window', load: () => import('../update-engine/src/cmd/locksmith.js') },
  { name: 'install', summary: 'write a verified image to a disk or an image file, with a cloud-config and a platform id', load: () => import('../update-engine/src/cmd/install.js') },
  { name: 'cloudinit', summary: 'validate cloud-configs as coreos-cloudinit v1.14.0, plan and apply them', load: () => import('../cloudinit/src/cli/basalt-cloudinit.js') },
];

/** CoreOS-compatible programs, dispatched by the name they were invoked as. */
export const programs: Record<string, () => Promise<ProgramModule>> = {
  update_engine_client: () => import('../update-engine/src/cmd/update-engine-client.js'),
  locksmithctl: () => import('../update-engine/src/cmd/locksmithctl.js'),
  'coreos-cloudinit': () => import('../cloudinit/src/cli/coreos-cloudinit.js'),
};

/**
 * Whether a module file is there. From the sources (vitest) the compiled
 * `x.js` a table entry names is the `x.ts` beside it.
 */
export function moduleExists(path: string): boolean {
  return existsSync(path) || (path.endsWith('.js') && existsSync(path.slice(0, -3) + '.ts'));
}

/** Whether `c` can run here: 'build-host' commands need their module (the image ships without it). */
export function isAvailable(c: CommandEntry, exists: (path: string) => boolean = moduleExists): boolean {
  if ((c.where ?? 'anywhere') === 'anywhere' || !c.module) return true;
  return exists(fileURLToPath(c.module));
}

/** The commands `basalt --help` lists: those available here. */
export function availableCommands(list: readonly CommandEntry[] = commands, exists?: (path: string) => boolean): CommandEntry[] {
  return list.filter((c) => isAvailable(c, exists));
}

/** The usage error for a command this host does not have (exit 2). */
export function notAvailable(c: CommandEntry): UsageError {
  return new UsageError(
    `${c.name}: not available on this host (it runs on a build host, from a clone of the repository)`,
    `run it on a build host: a Debian 12 machine with a clone of the Basalt repository ('npm ci && npm run setup', then 'npx basalt ${c.name} --help')`,
  );
}

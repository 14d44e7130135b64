/**
 * Stage 4a, layer: the profile's own content on top of the base image: its
 * extra files, its overlay folders and the units it enables. It runs after the
 * initrd, so a change to any of them rebuilds only this stage, the USR image
 * and what follows; the packages, customize, trim and initrd stages stay cached.
 * Consequence: what a profile adds is not in the initrd (the initrd holds the
 * base image's early-boot files only).
 *
 * The stage's tree is `usr/` alone, all the USR image holds: /etc lives in it
 * as /usr/share/factory/etc since customize. It starts as hard links to the
 * initrd stage's /usr (no 500 MB copy), so every write here replaces a path
 * (unlink, then create) and never writes through a link into the cache below.
 */
import { chmod, mkdir, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { OVERLAY_TOP } from '../../../configs/src/profile.js';
import { profileRelative, stageDir, type BuildContext, type Stage } from '../context.js';
import { BUILD_ERRORS } from '../errors.js';
import { FactsReader } from '../facts.js';
import { exists, linkTree, treeDigest, writeNewFile } from '../fsutil.js';

/** Where /etc's defaults are in the image (systemd-tmpfiles copies them to /etc). */
export const FACTORY_ETC = 'usr/share/factory/etc';

/** Pure: where an image path (/usr/... or /etc/...) is in the stage's usr/ tree. */
export function layerPath(imagePath: string): string {
  const rel = imagePath.replace(/^\/+/, '');
  if (rel === 'etc' || rel.startsWith('etc/')) return join(FACTORY_ETC, rel.slice(3));
  return rel;
}

/** Where unit files are, in the order systemd prefers them: the image path and where the stage's tree holds it. */
const UNIT_DIRS: readonly { image: string; tree: string }[] = [
  { image: '/etc/systemd/system', tree: layerPath('/etc/systemd/system') },
  { image: '/usr/lib/systemd/system', tree: 'usr/lib/systemd/system' },
];

/** The target a unit is enabled in when its [Install] section names none, by its type. */
const DEFAULT_TARGET: Record<string, string> = { service: 'multi-user.target', socket: 'sockets.target', timer: 'timers.target', path: 'paths.target', mount: 'local-fs.target', target: 'multi-user.target' };

/**
 * Pure: the `X.wants` / `X.requires` folders a unit is linked from when enabled:
 * its [Install] WantedBy= and RequiredBy=, else the default target of its type.
 */
export function installDirs(unitText: string, name: string): string[] {
  const dirs: string[] = [];
  let inInstall = false;
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) inInstall = line === '[Install]';
    const m = inInstall ? /^(WantedBy|RequiredBy)\s*=\s*(.*)$/.exec(line) : null;
    if (m) for (const t of m[2]!.split(/\s+/).filter(Boolean)) dirs.push(`${t}.${m[1] === 'WantedBy' ? 'wants' : 'requires'}`);
  }
  if (dirs.length) return [...new Set(dirs)];
  return [`${DEFAULT_TARGET[name.slice(name.lastIndexOf('.') + 1)] ?? 'multi-user.target'}.wants`];
}

/**
 * Copies an overlay's usr/ and etc/ into the tree (etc/ as the factory copy;
 * modes and links kept, owned by root). --remove-destination: a file the
 * overlay replaces is unlinked first, never rewritten through its hard link.
 */
async function copyOverlay(dir: string, tree: string, signal: AbortSignal): Promise<void> {
  const entries = await readdir(dir);
  const other = entries.filter((e) => !OVERLAY_TOP.includes(e));
  if (other.length) throw new BasaltError(BUILD_ERRORS.E_OVERLAY, `overlay ${dir}: ${other.join(', ')}: only usr/ and etc/ go into the image`);
  for (const top of entries) {
    const dest = join(tree, layerPath(`/${top}`));
    await mkdir(dest, { recursive: true });
    await run('cp', ['-r', '--preserve=mode,links', '--no-dereference', '--remove-destination', '--no-target-directory', join(dir, top), dest], { signal });
  }
}

/** Enables the profile's units in /usr (links in /usr/lib/systemd/system/<target>.wants/). */
async function enableUnits(units: readonly string[], tree: string): Promise<void> {
  for (const name of units) {
    // An instance (getty@tty2.service) is enabled from its template (getty@.service).
    const file = name.replace(/@[^.]+\./, '@.');
    let found: (typeof UNIT_DIRS)[number] | undefined;
    for (const d of UNIT_DIRS) if (!found && (await exists(join(tree, d.tree, file)))) found = d;
    if (!found) throw new BasaltError(BUILD_ERRORS.E_PROFILE_UNIT, `units: ${name}: no unit file ${file} in the image (/etc/systemd/system, /usr/lib/systemd/system)`);
    const text = await readFile(join(tree, found.tree, file), 'utf8').catch(() => '');
    const target = found.image === '/usr/lib/systemd/system' ? `../${file}` : `${found.image}/${file}`;
    for (const dir of installDirs(text, name)) {
      const d = join(tree, 'usr/lib/systemd/system', dir);
      await mkdir(d, { recursive: true });
      await rm(join(d, name), { force: true });
      await symlink(target, join(d, name));
    }
  }
}

/** The profile's extra files (written last, so they can override anything above); each path is unlinked first. */
async function writeExtraFiles(files: BuildContext['profile']['files'], tree: string): Promise<void> {
  for (const f of files) {
    const dest = join(tree, layerPath(f.path));
    await mkdir(dirname(dest), { recursive: true });
    await writeNewFile(dest, f.content);
    await chmod(dest, parseInt(f.mode, 8));
  }
}

export const layerStage: Stage<'layer'> = {
  name: 'layer',
  title: "Layer (the profile's files, overlay and units)",
  version: 1,
  async inputs(ctx) {
    const p = ctx.profile;
    const overlay = await Promise.all(p.overlay.map((d) => treeDigest(profileRelative(ctx, d))));
    return { files: p.files, overlay, units: p.units };
  },
  async run(ctx: BuildContext, out: string) {
    const p = ctx.profile;
    const tree = out; // the stage's folder holds usr/ only
    // Hard links: the initrd stage's files are shared, not copied (see above).
    await linkTree(join(stageDir(ctx, 'initrd'), 'root/usr'), join(tree, 'usr'), ctx.signal);
    for (const d of p.overlay) await copyOverlay(profileRelative(ctx, d), tree, ctx.signal);
    await writeExtraFiles(p.files, tree);
    await enableUnits(p.units, tree);
    return { facts: { files: p.files.length, overlays: p.overlay.length, units: p.units.length } };
  },
  readFacts(json, where) {
    const r = new FactsReader(json, where);
    return { files: r.num('files'), overlays: r.num('overlays'), units: r.num('units') };
  },
};

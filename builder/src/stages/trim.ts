/**
 * Stage 3, trim: removes docs (keeping copyright files), man and info pages,
 * locales not in the keep list, kernel modules outside the keep list (with
 * their dependencies resolved by modprobe inside the tree), and the profile's
 * extra paths; runs depmod. Records what was removed (trim.json).
 */
import { glob, readdir, writeFile, rm, lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { mapLimit } from '../../../common/src/limit.js';
import { stageDir, type BuildContext, type Stage } from '../context.js';
import type { Removed } from './stage-facts.js';
import { BUILD_ERRORS } from '../errors.js';
import { FactsReader } from '../facts.js';
import { linkTree, removeIfExists } from '../fsutil.js';
import { libCandidates, missingLibs, scanTree } from '../elf.js';

/** Pure: the .ko paths (relative to /) from `modprobe --show-depends` output, and the built-ins. */
export function parseShowDepends(text: string): { files: string[]; builtin: string[] } {
  const files: string[] = [];
  const builtin: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^insmod (\S+\.ko(?:\.xz|\.zst|\.gz)?)/.exec(line.trim());
    if (m) files.push(m[1]!.replace(/^\//, ''));
    const b = /^builtin (\S+)/.exec(line.trim());
    if (b) builtin.push(b[1]!);
  }
  return { files, builtin };
}

async function walkFiles(dir: string, out: string[] = []): Promise<string[]> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walkFiles(p, out);
    else out.push(p);
  }
  return out;
}

export async function kernelVersion(root: string): Promise<string> {
  const kvers = (await readdir(join(root, 'usr/lib/modules'))).filter((k) => /^\d/.test(k));
  if (kvers.length !== 1) throw new BasaltError(BUILD_ERRORS.E_KERNEL, `expected one kernel in ${root}/usr/lib/modules, found ${kvers.length}: ${kvers.join(', ')}`);
  return kvers[0]!;
}

/** Adds removed bytes (and files) to `removed[what]`. */
function noteIn(removed: Removed): (what: string, bytes: number, files?: number) => void {
  return (what, bytes, files = 1) => {
    const r = (removed[what] ??= { files: 0, bytes: 0 });
    r.files += files;
    r.bytes += bytes;
  };
}

/** Docs (copyright files stay), man and info pages, locales not kept, the profile's extra paths. */
async function trimFiles(usr: string, t: BuildContext['profile']['trim'], note: ReturnType<typeof noteIn>): Promise<void> {
  // Docs and locales: disjoint paths, removed several at a time.
  const removeAll = async (what: string, paths: string[]) => {
    for (const n of await mapLimit(paths, 16, removeIfExists)) note(what, n);
  };
  if (t.docs) {
    const doc = join(usr, 'share/doc');
    const docs: string[] = [];
    for (const pkg of await readdir(doc).catch(() => [] as string[])) {
      const d = join(doc, pkg);
      if (!(await lstat(d)).isDirectory()) continue;
      for (const f of await readdir(d)) if (f !== 'copyright') docs.push(join(d, f));
    }
    for (const x of ['share/man', 'share/info', 'share/lintian', 'share/linda', 'share/doc-base', 'share/bug', 'share/bash-completion', 'share/zsh', 'share/fish', 'share/gtk-doc']) docs.push(join(usr, x));
    await removeAll('docs', docs);
  }
  const keepLocales = new Set(t.locales);
  const locales = (await readdir(join(usr, 'share/locale')).catch(() => [] as string[])).filter((l) => !keepLocales.has(l) && l !== 'locale.alias');
  await removeAll('locales', locales.map((l) => join(usr, 'share/locale', l)));
  for (const x of t.remove) {
    if (!isGlob(x)) {
      note('profile', await removeIfExists(join(usr, x)));
      continue;
    }
    const paths: string[] = [];
    for await (const path of glob(x, { cwd: usr })) paths.push(path);
    for (const path of paths) note('profile', await removeIfExists(join(usr, path)));
  }
}

/** Pure: whether a trim rule is a glob (expanded in the tree) rather than one path. */
export function isGlob(rule: string): boolean {
  return /[*?[{]|[!@+]\(/.test(rule);
}

/** Whether `abs` (a path in the image) is a file in the tree at `root`, following links inside the tree. */
async function existsInTree(root: string, abs: string): Promise<boolean> {
  let p = abs;
  for (let hops = 0; hops < 40; hops++) {
    const st = await lstat(join(root, p)).catch(() => undefined);
    if (!st) return false;
    if (!st.isSymbolicLink()) return st.isFile();
    const target = await readlink(join(root, p));
    p = target.startsWith('/') ? target : join(p, '..', target);
  }
  return false;
}

/**
 * After the trim rules: every shared library a program of the image needs is
 * still in it (a rule that removes a library some program links is an error,
 * not a machine that fails at run time).
 */
async function checkLinks(root: string): Promise<number> {
  const files = await scanTree(root);
  const found = new Map<string, boolean>();
  for (const [file, d] of files) {
    for (const paths of libCandidates(file, d).values()) for (const p of paths) if (!found.has(p)) found.set(p, await existsInTree(root, p));
  }
  const exists = (abs: string) => found.get(abs) ?? false;
  const missing = missingLibs(files, exists);
  if (missing.length) {
    const list = missing.slice(0, 12).map((m) => `${m.file} needs ${m.lib}`).join('; ');
    throw new BasaltError(BUILD_ERRORS.E_TRIM_LINKS, `after trim: ${missing.length} shared librar${missing.length === 1 ? 'y is' : 'ies are'} missing: ${list}${missing.length > 12 ? '; …' : ''}`);
  }
  return files.size;
}

/** The module files to keep (paths relative to the tree), with their dependencies, as modprobe inside the tree resolves them. */
interface KeptModules {
  keep: Set<string>;
  builtin: string[];
  /** Names that are neither a module nor built in. */
  missing: string[];
}

async function resolveModules(root: string, kver: string, names: readonly string[], signal: AbortSignal): Promise<KeptModules> {
  const keep = new Set<string>();
  const builtin: string[] = [];
  const missing: string[] = [];
  // One modprobe for all the names; only when one is missing, one per name to find which.
  const all = await run('chroot', [root, 'modprobe', '-S', kver, '--show-depends', '-a', ...names], { reject: false, signal });
  if (all.exitCode === 0) {
    const d = parseShowDepends(all.stdout);
    d.files.forEach((f) => keep.add(f.replace(/^lib\//, 'usr/lib/')));
    return { keep, builtin: [...new Set(d.builtin)], missing };
  }
  for (const m of names) {
    const r = await run('chroot', [root, 'modprobe', '-S', kver, '--show-depends', m], { reject: false, signal });
    if (r.exitCode !== 0) {
      missing.push(m);
      continue;
    }
    const d = parseShowDepends(r.stdout);
    d.files.forEach((f) => keep.add(f.replace(/^lib\//, 'usr/lib/')));
    builtin.push(...d.builtin);
  }
  return { keep, builtin: [...new Set(builtin)], missing };
}

/** Removes every module file not in `keep`, then the empty folders; returns how many were kept. */
async function removeOtherModules(root: string, modDir: string, keep: Set<string>, note: ReturnType<typeof noteIn>): Promise<number> {
  const files = await walkFiles(modDir);
  const drop = files.filter((f) => !keep.has(f.slice(root.length + 1)));
  // Several at a time: one by one, the 3,900 files of the default image took 1.5 s.
  const sizes = await mapLimit(drop, 16, async (f) => {
    const size = (await lstat(f)).size;
    await rm(f);
    return size;
  });
  for (const size of sizes) note('kernel modules', size);
  const kept = files.length - drop.length;
  await run('find', [modDir, '-type', 'd', '-empty', '-delete']);
  return kept;
}

export const trimStage: Stage<'trim'> = {
  name: 'trim',
  title: 'Trim (docs, locales, kernel modules)',
  version: 2,
  async inputs(ctx) {
    const p = ctx.profile;
    return { trim: p.trim, modules: p.kernel.modules, initrdDrivers: p.initrd.drivers };
  },
  async run(ctx: BuildContext, out: string) {
    const root = join(out, 'root');
    // Hard links to customize's tree: this stage only removes files, and depmod
    // writes its modules.* files anew (a temporary file renamed over the old).
    await linkTree(join(stageDir(ctx, 'customize'), 'root'), root, ctx.signal);
    const p = ctx.profile;
    const removed: Removed = {};
    const note = noteIn(removed);
    const usr = join(root, 'usr');
    await trimFiles(usr, p.trim, note);
    const elfFiles = await checkLinks(root);
    ctx.log.debug(`trim: the ${elfFiles} ELF files of /usr find every library they need`);

    // Kernel modules: keep the profile's list and the initrd drivers, with dependencies.
    const kver = await kernelVersion(root);
    const { keep, builtin, missing } = await resolveModules(root, kver, [...new Set([...p.kernel.modules, ...p.initrd.drivers])], ctx.signal);
    if (missing.length) ctx.log.warn(`trim: kernel modules not found (neither module nor built-in): ${missing.join(', ')}`);
    const kept = await removeOtherModules(root, join(usr, 'lib/modules', kver, 'kernel'), keep, note);
    await run('chroot', [root, 'depmod', kver], { signal: ctx.signal });
    await writeFile(join(out, 'trim.json'), JSON.stringify({ removed, modulesKept: kept, builtin, missing }, null, 1) + '\n');
    return { facts: { removed, modulesKept: kept, modulesMissing: missing } };
  },
  readFacts(json, where) {
    const r = new FactsReader(json, where);
    return { removed: r.record('removed', (x) => ({ files: x.num('files'), bytes: x.num('bytes') })), modulesKept: r.num('modulesKept'), modulesMissing: r.strList('modulesMissing') };
  },
};

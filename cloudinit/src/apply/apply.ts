/**
 * The thin applier: executes planned actions on the tree at `root` ("/" for
 * the running system). Files are written to a temporary file in the same
 * directory and renamed; unchanged files are left alone so a second apply
 * changes nothing. Unit state changes that need a running systemd
 * (daemon-reload, start/stop, networkd restart, runtime enable, scripts) are
 * only performed when root is "/"; under another root they are reported.
 * Side effects: writes under root, runs useradd/chpasswd/chown/hostnamectl/
 * systemctl/systemd-run through common/src/exec.ts.
 */
import { chown, lstat, mkdir, readFile, readdir, readlink, rm, stat, symlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import { describeAction, type Action, type SystemView } from './plan.js';

export interface ApplyOptions {
  root: string;
  log: (line: string) => void;
  dryRun?: boolean;
}

export interface ApplyResult {
  changed: string[];
  skipped: string[];
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function readPasswd(root: string): PasswdEntry[] {
  try {
    return readFileSync(join(root, 'etc/passwd'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'))
      .filter((p) => p.length >= 7)
      .map((p) => ({ name: p[0]!, uid: Number(p[2]), gid: Number(p[3]), home: p[5]! }));
  } catch {
    return [];
  }
}

function readGroup(root: string): Map<string, number> {
  const m = new Map<string, number>();
  try {
    for (const l of readFileSync(join(root, 'etc/group'), 'utf8').split('\n')) {
      const p = l.split(':');
      if (p.length >= 3) m.set(p[0]!, Number(p[2]));
    }
  } catch {
    /* none */
  }
  return m;
}

/** A read-only view of the target tree for the planner. */
export function systemView(root: string, env: Record<string, string | undefined> = process.env): SystemView {
  return {
    readFile(p) {
      try {
        return readFileSync(inRoot(root, p));
      } catch {
        return null;
      }
    },
    userExists: (name) => readPasswd(root).some((u) => u.name === name),
    hostname: () => osHostname(),
    env,
  };
}

/** Joins `p` under `root`, refusing paths that would escape it. */
export function inRoot(root: string, p: string): string {
  const full = resolve(root, '.' + resolve('/', p));
  const rel = relative(resolve(root), full);
  if (rel.startsWith('..')) throw new BasaltError(CLOUDINIT_ERRORS.E_PATH_ESCAPES_ROOT, `${p}: escapes the target root ${root}`);
  return full;
}

async function sameFile(path: string, content: Buffer, mode: number, uid?: number, gid?: number): Promise<boolean> {
  try {
    const st = await lstat(path);
    if (!st.isFile() || (st.mode & 0o7777) !== mode) return false;
    if (uid !== undefined && st.uid !== uid) return false;
    if (gid !== undefined && gid !== -1 && st.gid !== gid) return false;
    return (await readFile(path)).equals(content);
  } catch {
    return false;
  }
}

type Owner = { uid: number; gid: number } | string;

/** system.WriteFile's MkdirAll 0755: creates the folder of a file to write; refuses a non-directory in its place. */
async function ensureDir(dir: string): Promise<void> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new BasaltError(CLOUDINIT_ERRORS.E_NOT_DIR, `${dir} is not a directory`);
  } catch (e) {
    if (e instanceof BasaltError) throw e;
    await mkdir(dir, { recursive: true, mode: 0o755 });
  }
}

/** chown of the temporary file: a name through chown(1) (the live system resolves it), numbers directly. */
async function chownTo(path: string, owner: Owner): Promise<void> {
  if (typeof owner === 'string') await run('chown', [owner, path]);
  else await chown(path, owner.uid, owner.gid);
}

/** system.WriteFile: the folder made 0755, then the file replaced atomically with its mode and owner set before the rename. */
async function writeAtomic(path: string, content: Buffer, mode: number, owner?: Owner): Promise<void> {
  await ensureDir(dirname(path));
  await writeFileAtomic(path, content, { mode, mkdir: false, ...(owner === undefined ? {} : { prepare: (tmp: string) => chownTo(tmp, owner) }) });
}

/** Resolves "user[:group]" against the target's passwd/group files. */
function resolveOwner(root: string, owner: string): { uid: number; gid: number } {
  const [u, g] = owner.split(/[:.]/, 2) as [string, string | undefined];
  const pw = readPasswd(root);
  const ent = pw.find((x) => x.name === u);
  const uid = /^\d+$/.test(u) ? Number(u) : ent?.uid;
  if (uid === undefined) throw new BasaltError(CLOUDINIT_ERRORS.E_OWNER, `owner ${owner}: no user ${u} in ${join(root, 'etc/passwd')}`);
  let gid = -1;
  if (g !== undefined && g !== '') {
    const gg = /^\d+$/.test(g) ? Number(g) : readGroup(root).get(g);
    if (gg === undefined) throw new BasaltError(CLOUDINIT_ERRORS.E_OWNER, `owner ${owner}: no group ${g} in ${join(root, 'etc/group')}`);
    gid = gg;
  }
  return { uid, gid };
}

/** update-ssh-keys -u USER -a NAME: keys go to ~/.ssh/authorized_keys.d/NAME, then authorized_keys is regenerated. */
async function updateSshKeys(root: string, user: string, name: string, keys: string[]): Promise<boolean> {
  const ent = readPasswd(root).find((x) => x.name === user);
  if (!ent) throw new BasaltError(CLOUDINIT_ERRORS.E_NO_USER, `update-ssh-keys: user ${user} does not exist in ${join(root, 'etc/passwd')}`);
  const home = inRoot(root, ent.home);
  const sshDir = join(home, '.ssh');
  const dDir = join(sshDir, 'authorized_keys.d');
  let changed = false;
  for (const d of [sshDir, dDir]) {
    try {
      await stat(d);
    } catch {
      await mkdir(d, { recursive: true, mode: 0o700 });
      await chown(d, ent.uid, ent.gid);
      changed = true;
    }
  }
  const own = { uid: ent.uid, gid: ent.gid };
  const content = Buffer.from(keys.join('\n') + '\n');
  const file = join(dDir, name);
  if (!(await sameFile(file, content, 0o600, ent.uid, ent.gid))) {
    await writeAtomic(file, content, 0o600, own);
    changed = true;
  }
  const parts = ['# auto-generated by update-ssh-keys\n'];
  for (const f of (await readdir(dDir)).sort()) {
    // Hidden files (a temporary file left by a crash) are not keys, as update-ssh-keys' glob skips them.
    if (f.startsWith('.') || f.startsWith('cloudinit-temp')) continue;
    parts.push((await readFile(join(dDir, f))).toString('utf8'));
  }
  const all = Buffer.from(parts.join(''));
  const ak = join(sshDir, 'authorized_keys');
  if (!(await sameFile(ak, all, 0o600, ent.uid, ent.gid))) {
    await writeAtomic(ak, all, 0o600, own);
    changed = true;
  }
  return changed;
}

/** What the action steps share: the target, and whether unit files changed (for daemon-reload). */
interface ApplyContext {
  root: string;
  /** root is "/": the running system, where systemd and hostnamectl act. */
  live: boolean;
  log: (line: string) => void;
  unitFilesChanged: boolean;
}

type ActionOf<K extends Action['kind']> = Extract<Action, { kind: K }>;

/** Executes the plan. Throws on the first failure, as v1.14.0's Apply returns its first error. */
export async function applyPlan(actions: Action[], o: ApplyOptions): Promise<ApplyResult> {
  const ctx: ApplyContext = { root: o.root, live: resolve(o.root) === '/', log: o.log, unitFilesChanged: false };
  const res: ApplyResult = { changed: [], skipped: [] };
  for (const a of actions) {
    if (o.dryRun) {
      o.log(`would ${describeAction(a)}`);
      continue;
    }
    const changed = await applyAction(a, ctx);
    (changed ? res.changed : res.skipped).push(describeAction(a));
  }
  return res;
}

/** Performs one action; true when it changed the target. */
function applyAction(a: Action, ctx: ApplyContext): Promise<boolean> {
  switch (a.kind) {
    case 'hostname':
      return setHostname(a, ctx);
    case 'user-create':
      return createUser(a, ctx);
    case 'user-password':
      return setPassword(a, ctx);
    case 'ssh-keys':
      return authorizeKeys(a, ctx);
    case 'ssh-import':
      ctx.log(`Skipping SSH key import for '${a.user}' from ${a.from}: ${a.note}`);
      return Promise.resolve(false);
    case 'file':
      return writeFileAction(a, ctx);
    case 'unit-mask':
      return maskUnit(a, ctx);
    case 'unit-unmask':
      return unmaskUnit(a, ctx);
    case 'unit-enable':
      return enableUnit(a, ctx);
    case 'daemon-reload':
      return daemonReload(ctx);
    case 'networkd-restart':
      return restartNetworkd(ctx);
    case 'unit-command':
      return unitCommand(a, ctx);
    case 'script':
      return runScript(a, ctx);
  }
}

async function setHostname(a: ActionOf<'hostname'>, ctx: ApplyContext): Promise<boolean> {
  let changed = true;
  if (ctx.live) await run('hostnamectl', ['set-hostname', a.hostname]);
  else {
    const p = inRoot(ctx.root, '/etc/hostname');
    const c = Buffer.from(a.hostname + '\n');
    changed = !(await sameFile(p, c, 0o644));
    if (changed) await writeAtomic(p, c, 0o644);
  }
  ctx.log(`Set hostname to ${a.hostname}`);
  return changed;
}

async function createUser(a: ActionOf<'user-create'>, ctx: ApplyContext): Promise<boolean> {
  ctx.log(`Creating user '${a.name}'`);
  await run('useradd', ctx.live ? a.useraddArgs : ['--root', resolve(ctx.root), ...a.useraddArgs]);
  return true;
}

/** The password hash of `user` in the target's /etc/shadow, if it can be read. */
function shadowHash(root: string, user: string): string | undefined {
  try {
    return readFileSync(join(root, 'etc/shadow'), 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((p) => p[0] === user)?.[1];
  } catch {
    return undefined;
  }
}

async function setPassword(a: ActionOf<'user-password'>, ctx: ApplyContext): Promise<boolean> {
  ctx.log(`Setting '${a.name}' user's password`);
  if (shadowHash(ctx.root, a.name) === a.hash) return false;
  await run('chpasswd', ctx.live ? ['-e'] : ['-R', resolve(ctx.root), '-e'], { input: `${a.name}:${a.hash}` });
  return true;
}

async function authorizeKeys(a: ActionOf<'ssh-keys'>, ctx: ApplyContext): Promise<boolean> {
  const changed = await updateSshKeys(ctx.root, a.user, a.keyName, a.keys);
  ctx.log(a.user === 'core' ? 'Authorized SSH keys for core user' : `Authorized ${a.keys.length} SSH keys for user '${a.user}'`);
  return changed;
}

/** write_files owner: a name the live system's chown(1) resolves, or numbers from the target's passwd/group (gid -1: none given). */
function ownerOf(owner: string, ctx: ApplyContext): Owner {
  return ctx.live && !/^\d+(:\d*)?$/.test(owner) ? owner : resolveOwner(ctx.root, owner);
}

async function writeFileAction(a: ActionOf<'file'>, ctx: ApplyContext): Promise<boolean> {
  const p = inRoot(ctx.root, a.path);
  const owner = a.owner ? ownerOf(a.owner, ctx) : undefined;
  // A name only chown(1) resolves cannot be compared: such a file is always written.
  if (typeof owner !== 'string' && (await sameFile(p, a.content, a.mode, owner?.uid, owner?.gid))) return false;
  // A user without a group keeps the group of the file being replaced.
  const give = typeof owner === 'object' && owner.gid === -1 ? { uid: owner.uid, gid: (await statOr(p))?.gid ?? 0 } : owner;
  await writeAtomic(p, a.content, a.mode, give);
  if (a.why.startsWith('unit ') || a.why.startsWith('drop-in ')) ctx.unitFilesChanged = true;
  ctx.log(`Wrote file ${p} to filesystem`);
  return true;
}

async function maskUnit(a: ActionOf<'unit-mask'>, ctx: ApplyContext): Promise<boolean> {
  const p = inRoot(ctx.root, a.path);
  let already = false;
  try {
    already = (await lstat(p)).isSymbolicLink() && (await readlink(p)) === '/dev/null';
  } catch {
    already = false;
  }
  if (already) return false;
  ctx.log(`Masking unit file "${a.unit}"`);
  await mkdir(dirname(p), { recursive: true, mode: 0o755 });
  await rm(p, { force: true });
  await symlink('/dev/null', p);
  ctx.unitFilesChanged = true;
  return true;
}

async function unmaskUnit(a: ActionOf<'unit-unmask'>, ctx: ApplyContext): Promise<boolean> {
  const p = inRoot(ctx.root, a.path);
  const st = await statOr(p);
  if (!st || !((st.isFile() && st.size === 0) || st.isCharacterDevice())) return false;
  ctx.log(`Unmasking runtime unit file "${a.unit}"`);
  await rm(p);
  ctx.unitFilesChanged = true;
  return true;
}

async function enableUnit(a: ActionOf<'unit-enable'>, ctx: ApplyContext): Promise<boolean> {
  if (ctx.live) {
    await run('systemctl', ['enable', '--force', ...(a.runtime ? ['--runtime'] : []), a.unit]);
    return true;
  }
  if (a.runtime) {
    ctx.log(`Not enabling runtime unit ${a.unit} under --root ${ctx.root} (needs a running systemd)`);
    return false;
  }
  const r = await run('systemctl', ['--root', resolve(ctx.root), 'enable', '--force', a.unit], { reject: false });
  if (r.exitCode !== 0) throw new BasaltError(CLOUDINIT_ERRORS.E_UNIT_ENABLE, `systemctl --root ${ctx.root} enable ${a.unit} failed: ${r.stderr.trim()}`);
  return (r.stderr + r.stdout).includes('Created symlink');
}

async function daemonReload(ctx: ApplyContext): Promise<boolean> {
  if (!ctx.live || !ctx.unitFilesChanged) return false;
  await run('systemctl', ['daemon-reload']);
  return true;
}

async function restartNetworkd(ctx: ApplyContext): Promise<boolean> {
  if (!ctx.live) return false;
  ctx.log('Restarting systemd-networkd');
  await run('systemctl', ['restart', 'systemd-networkd.service']);
  return true;
}

async function unitCommand(a: ActionOf<'unit-command'>, ctx: ApplyContext): Promise<boolean> {
  if (!ctx.live) {
    ctx.log(`Planned (not run under --root ${ctx.root}): systemctl ${a.command} ${a.unit}`);
    return false;
  }
  ctx.log(`Calling unit command "${a.command}" on "${a.unit}"`);
  // Queued, not waited for, as v1.14.0 does (a D-Bus StartUnit with mode "replace" and no
  // result channel): on the first boot cloudinit runs before the units it starts, which
  // may be ordered after the boot's health gate (update-engine, locksmithd).
  await run('systemctl', ['--no-block', a.command, a.unit]);
  return true;
}

/** Writes `content` unless the file already holds it with `mode`; true when written. */
async function writeIfChanged(path: string, content: Buffer, mode: number): Promise<boolean> {
  if (await sameFile(path, content, mode)) return false;
  await writeAtomic(path, content, mode);
  return true;
}

async function runScript(a: ActionOf<'script'>, ctx: ApplyContext): Promise<boolean> {
  const p = inRoot(ctx.root, a.path);
  const wroteScript = await writeIfChanged(p, a.content, 0o744);
  const wroteName = await writeIfChanged(join(dirname(p), 'unit-name'), Buffer.from(a.unit), 0o644);
  if (!ctx.live) {
    ctx.log(`Planned (not run under --root ${ctx.root}): transient unit ${a.unit} running /bin/bash ${a.path}`);
    return wroteScript || wroteName;
  }
  ctx.log(`Creating transient systemd unit '${a.unit}'`);
  await run('systemd-run', ['--unit', a.unit, '--description', 'Unit generated and executed by coreos-cloudinit on behalf of user', '/bin/bash', a.path]);
  return true;
}

async function statOr(p: string) {
  try {
    return await stat(p);
  } catch {
    return null;
  }
}

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
import { chmod, chown, lstat, mkdir, readFile, readdir, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
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

let tmpCounter = 0;
/** system.WriteFile: MkdirAll 0755, temp file "cloudinit-temp*" in the same directory, chmod, chown, rename. */
async function writeAtomic(path: string, content: Buffer, mode: number, owner?: { uid: number; gid: number } | string): Promise<void> {
  const dir = dirname(path);
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new BasaltError(CLOUDINIT_ERRORS.E_NOT_DIR, `${dir} is not a directory`);
  } catch (e) {
    if (e instanceof BasaltError) throw e;
    await mkdir(dir, { recursive: true, mode: 0o755 });
  }
  const tmp = join(dir, `cloudinit-temp${process.pid}${++tmpCounter}${Date.now() % 100000}`);
  try {
    await writeFile(tmp, content, { mode: 0o600, flag: 'wx' });
    await chmod(tmp, mode);
    if (typeof owner === 'string') await run('chown', [owner, tmp]);
    else if (owner) await chown(tmp, owner.uid, owner.gid);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e instanceof BasaltError ? e : fsError(e, path, 'write');
  }
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
    if (f.startsWith('cloudinit-temp')) continue;
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

/** Executes the plan. Throws on the first failure, as v1.14.0's Apply returns its first error. */
export async function applyPlan(actions: Action[], o: ApplyOptions): Promise<ApplyResult> {
  const root = o.root;
  const live = resolve(root) === '/';
  const res: ApplyResult = { changed: [], skipped: [] };
  const did = (a: Action, changed: boolean) => (changed ? res.changed : res.skipped).push(describeAction(a));
  let unitFilesChanged = false;
  for (const a of actions) {
    if (o.dryRun) {
      o.log(`would ${describeAction(a)}`);
      continue;
    }
    switch (a.kind) {
      case 'hostname':
        if (live) {
          await run('hostnamectl', ['set-hostname', a.hostname]);
          did(a, true);
        } else {
          const p = inRoot(root, '/etc/hostname');
          const c = Buffer.from(a.hostname + '\n');
          const same = await sameFile(p, c, 0o644);
          if (!same) await writeAtomic(p, c, 0o644);
          did(a, !same);
        }
        o.log(`Set hostname to ${a.hostname}`);
        break;
      case 'user-create':
        o.log(`Creating user '${a.name}'`);
        await run('useradd', live ? a.useraddArgs : ['--root', resolve(root), ...a.useraddArgs]);
        did(a, true);
        break;
      case 'user-password': {
        o.log(`Setting '${a.name}' user's password`);
        let current: string | undefined;
        try {
          current = readFileSync(join(root, 'etc/shadow'), 'utf8')
            .split('\n')
            .map((l) => l.split(':'))
            .find((p) => p[0] === a.name)?.[1];
        } catch {
          current = undefined;
        }
        if (current === a.hash) {
          did(a, false);
          break;
        }
        await run('chpasswd', live ? ['-e'] : ['-R', resolve(root), '-e'], { input: `${a.name}:${a.hash}` });
        did(a, true);
        break;
      }
      case 'ssh-keys':
        did(a, await updateSshKeys(root, a.user, a.keyName, a.keys));
        o.log(a.user === 'core' ? 'Authorized SSH keys for core user' : `Authorized ${a.keys.length} SSH keys for user '${a.user}'`);
        break;
      case 'ssh-import':
        o.log(`Skipping SSH key import for '${a.user}' from ${a.from}: ${a.note}`);
        did(a, false);
        break;
      case 'file': {
        const p = inRoot(root, a.path);
        let owner: { uid: number; gid: number } | string | undefined;
        if (a.owner) owner = live && !/^\d+(:\d*)?$/.test(a.owner) ? a.owner : resolveOwner(root, a.owner);
        const numeric = owner && typeof owner !== 'string' ? owner : undefined;
        const same = typeof owner === 'string' ? false : await sameFile(p, a.content, a.mode, numeric?.uid, numeric?.gid);
        if (!same) {
          await writeAtomic(p, a.content, a.mode, numeric && numeric.gid === -1 ? { uid: numeric.uid, gid: (await statOr(p))?.gid ?? 0 } : owner);
          if (a.why.startsWith('unit ') || a.why.startsWith('drop-in ')) unitFilesChanged = true;
          o.log(`Wrote file ${p} to filesystem`);
        }
        did(a, !same);
        break;
      }
      case 'unit-mask': {
        const p = inRoot(root, a.path);
        let already = false;
        try {
          already = (await lstat(p)).isSymbolicLink() && (await readlink(p)) === '/dev/null';
        } catch {
          already = false;
        }
        if (!already) {
          o.log(`Masking unit file "${a.unit}"`);
          await mkdir(dirname(p), { recursive: true, mode: 0o755 });
          await rm(p, { force: true });
          await symlink('/dev/null', p);
          unitFilesChanged = true;
        }
        did(a, !already);
        break;
      }
      case 'unit-unmask': {
        const p = inRoot(root, a.path);
        const st = await statOr(p);
        if (st && ((st.isFile() && st.size === 0) || st.isCharacterDevice())) {
          o.log(`Unmasking runtime unit file "${a.unit}"`);
          await rm(p);
          unitFilesChanged = true;
          did(a, true);
        } else did(a, false);
        break;
      }
      case 'unit-enable':
        if (live) {
          await run('systemctl', ['enable', '--force', ...(a.runtime ? ['--runtime'] : []), a.unit]);
          did(a, true);
        } else if (!a.runtime) {
          const r = await run('systemctl', ['--root', resolve(root), 'enable', '--force', a.unit], { reject: false });
          if (r.exitCode !== 0) throw new BasaltError(CLOUDINIT_ERRORS.E_UNIT_ENABLE, `systemctl --root ${root} enable ${a.unit} failed: ${r.stderr.trim()}`);
          did(a, /Created symlink/.test(r.stderr + r.stdout));
        } else {
          o.log(`Not enabling runtime unit ${a.unit} under --root ${root} (needs a running systemd)`);
          did(a, false);
        }
        break;
      case 'daemon-reload':
        if (live && unitFilesChanged) {
          await run('systemctl', ['daemon-reload']);
          did(a, true);
        } else did(a, false);
        break;
      case 'networkd-restart':
        if (live) {
          o.log('Restarting systemd-networkd');
          await run('systemctl', ['restart', 'systemd-networkd.service']);
          did(a, true);
        } else did(a, false);
        break;
      case 'unit-command':
        if (live) {
          o.log(`Calling unit command "${a.command}" on "${a.unit}"`);
          // Queued, not waited for, as v1.14.0 does (a D-Bus StartUnit with mode "replace" and no
          // result channel): on the first boot cloudinit runs before the units it starts, which
          // may be ordered after the boot's health gate (update-engine, locksmithd).
          await run('systemctl', ['--no-block', a.command, a.unit]);
          did(a, true);
        } else {
          o.log(`Planned (not run under --root ${root}): systemctl ${a.command} ${a.unit}`);
          did(a, false);
        }
        break;
      case 'script': {
        const p = inRoot(root, a.path);
        const same = await sameFile(p, a.content, 0o744);
        if (!same) await writeAtomic(p, a.content, 0o744);
        const namePath = join(dirname(p), 'unit-name');
        const nameSame = await sameFile(namePath, Buffer.from(a.unit), 0o644);
        if (!nameSame) await writeAtomic(namePath, Buffer.from(a.unit), 0o644);
        if (live) {
          o.log(`Creating transient systemd unit '${a.unit}'`);
          await run('systemd-run', ['--unit', a.unit, '--description', 'Unit generated and executed by coreos-cloudinit on behalf of user', '/bin/bash', a.path]);
          did(a, true);
        } else {
          o.log(`Planned (not run under --root ${root}): transient unit ${a.unit} running /bin/bash ${a.path}`);
          did(a, !same || !nameSame);
        }
        break;
      }
    }
  }
  return res;
}

async function statOr(p: string) {
  try {
    return await stat(p);
  } catch {
    return null;
  }
}

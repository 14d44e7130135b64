/**
 * The pure planner: a decoded cloud-config (+ metadata) in, the ordered list
 * of actions v1.14.0's initialize.Apply would perform out (except for the
 * etcd sections, which go to the image's etcd 3.4: see etcd.ts), plus
 * warnings for what it does not honour. It reads the
 * existing system only through the `SystemView` passed in (update.conf,
 * /etc/environment, user lookup, hostname), so tests need no root and no disk.
 * Throws BasaltError for what aborts v1.14.0's Apply (bad manage_etc_hosts,
 * invalid update options, unparsable permissions, undecodable content).
 */
import { createHash } from 'node:crypto';
import { BasaltError } from '../../../common/src/errors.js';
import { CONF_FILES, IMAGE_UPDATE_CONF } from '../../../common/src/contracts.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import { flannelFields, fleetFields, locksmithFields, updateFields, type Field } from '../schema.js';
import { goFloat, goStringBytes, type GoString } from '../yaml/decode.js';
import { decodeContent } from '../validate/validate.js';
import { goClean, goGunzip, goQuote } from '../validate/gostd.js';
import type { Metadata } from '../datasource/index.js';
import { ETCD_UNIT, etcd34Fields, etcdWarnings } from './etcd.js';

export type Action =
  | { kind: 'hostname'; hostname: string }
  | { kind: 'user-create'; name: string; useraddArgs: string[] }
  | { kind: 'user-password'; name: string; hash: string }
  | { kind: 'ssh-keys'; user: string; keyName: string; keys: string[] }
  | { kind: 'ssh-import'; user: string; from: string; note: string }
  | { kind: 'file'; path: string; content: Buffer; mode: number; owner?: string; why: string }
  | { kind: 'unit-mask'; unit: string; path: string }
  | { kind: 'unit-unmask'; unit: string; path: string }
  | { kind: 'unit-enable'; unit: string; runtime: boolean }
  | { kind: 'daemon-reload' }
  | { kind: 'networkd-restart' }
  | { kind: 'unit-command'; unit: string; command: string }
  | { kind: 'script'; unit: string; path: string; content: Buffer };

/**
 * What apply will do, and what it will not do although the config asks for
 * it (one line each, starting with "warning: "; the I/O shell prints them).
 */
export interface Plan {
  actions: Action[];
  warnings: string[];
}

export interface SystemView {
  /** Reads a file of the target tree by absolute path (as seen inside the root); null if missing. */
  readFile(path: string): Buffer | null;
  userExists(name: string): boolean;
  /** os.Hostname() of the target (used by manage_etc_hosts). */
  hostname(): string;
  /** COREOS_PUBLIC_IPV4-style fallbacks. */
  env: Record<string, string | undefined>;
}

export interface PlanOptions {
  sshKeyName: string;
  workspace: string;
}

/** Where coreos.update writes update.conf: the first of CONF_FILES, the machine's own. */
const ETC_UPDATE_CONF = CONF_FILES[0]!;

type Obj = Record<string, unknown>;
const str = (o: Obj, k: string): string => (typeof o[k] === 'string' ? o[k] : '');
/** A content field: text or the raw bytes of a !!binary value (see GoString). */
const contentOf = (o: Obj, k: string): GoString => (typeof o[k] === 'string' || Buffer.isBuffer(o[k]) ? o[k] : '');
const bool = (o: Obj, k: string): boolean => o[k] === true;
const list = <T>(o: Obj, k: string): T[] => (Array.isArray(o[k]) ? (o[k] as T[]) : []);
const obj = (o: Obj, k: string): Obj => (o[k] && typeof o[k] === 'object' ? (o[k] as Obj) : {});

/** Environment.Apply: $public_ipv4-style substitution over the whole user-data text. */
export function substitute(text: string, subs: Record<string, string>): string {
  let data = text;
  for (const [key, val] of Object.entries(subs)) {
    const k = key.replace(/\$/g, '\\$');
    data = data.replace(new RegExp(`([^\\\\]|^)${k}`, 'g'), (_m, pre: string) => pre + val);
    data = data.replace(new RegExp(`\\\\${k}`, 'g'), () => key);
  }
  return data;
}

/** The substitution table from metadata, falling back to the COREOS_* environment. */
export function substitutions(md: Metadata, env: Record<string, string | undefined>): Record<string, string> {
  return {
    $public_ipv4: md.publicIPv4 ?? env['COREOS_PUBLIC_IPV4'] ?? '',
    $private_ipv4: md.privateIPv4 ?? env['COREOS_PRIVATE_IPV4'] ?? '',
    $public_ipv6: md.publicIPv6 ?? env['COREOS_PUBLIC_IPV6'] ?? '',
    $private_ipv6: md.privateIPv6 ?? env['COREOS_PRIVATE_IPV6'] ?? '',
  };
}

function isZero(v: unknown): boolean {
  return v === '' || v === 0n || v === 0 || v === false || v === null || v === undefined;
}

function fmtV(v: unknown): string {
  if (typeof v === 'number') return goFloat(v);
  return String(v);
}

/** getEnvVars: KEY=value for every non-zero field, in struct order. */
export function envVars(o: Obj, fields: Field[]): string[] {
  const out: string[] = [];
  for (const f of fields) {
    const v = o[f.name];
    if (!isZero(v)) out.push(`${f.env}=${fmtV(v)}`);
  }
  return out;
}

/** serviceContents: the 20-cloudinit.conf drop-in text ("" when nothing is set). */
export function serviceContents(o: Obj, fields: Field[]): string {
  const vars = envVars(o, fields);
  if (vars.length === 0) return '';
  return '[Service]\n' + vars.map((v) => `Environment="${v}"\n`).join('');
}

interface UnitSpec {
  name: string;
  /** The Go bytes of the unit's content, written as they are. */
  content: Buffer;
  enable: boolean;
  runtime: boolean;
  mask: boolean;
  command: string;
  dropIns: { name: string; content: Buffer }[];
}

export function unitGroup(name: string): 'network' | 'system' {
  const dot = name.lastIndexOf('.');
  const ext = dot >= 0 && !name.slice(dot).includes('/') ? name.slice(dot + 1) : '';
  return ext === 'network' || ext === 'netdev' || ext === 'link' ? 'network' : 'system';
}

export function unitDestination(u: { name: string; runtime: boolean }): string {
  return goClean(`/${u.runtime ? 'run' : 'etc'}/systemd/${unitGroup(u.name)}/${u.name}`);
}

/** system.File.Permissions: octal, default 0644; Go's Chmod keeps only the 0777 bits. */
export function parsePermissions(p: string, path: string): number {
  if (p === '') return 0o644;
  if (!/^[+-]?[0-7]+$/.test(p)) throw new BasaltError(CLOUDINIT_ERRORS.E_PERMISSIONS, `write_files ${path}: Unable to parse file permissions ${goQuote(p)} as integer`);
  const v = parseInt(p, 8);
  if (v > 0x7fffffff || v < -0x80000000) throw new BasaltError(CLOUDINIT_ERRORS.E_PERMISSIONS, `write_files ${path}: Unable to parse file permissions ${goQuote(p)} as integer`);
  return (v >>> 0) & 0o777;
}

/**
 * DecodeContent as Cloudconfig.Decode uses it, on the content's Go bytes (a
 * !!binary value is its decoded bytes): the gzip body is read as far as it
 * goes, its errors ignored as in Go (see goGunzip).
 */
export function decodeFileContent(content: GoString, encoding: string, path: string): Buffer {
  const d = decodeContent(content, encoding);
  const out = d !== null && /^(gz|gzip)/.test(encoding) ? goGunzip(d) : d;
  if (out === null) {
    throw new BasaltError(CLOUDINIT_ERRORS.E_CONTENT_ENCODING, `write_files ${path}: content cannot be decoded as ${goQuote(encoding)}`);
  }
  return out;
}

/** The first of `paths` the target has. */
function readFirst(sys: SystemView, paths: readonly string[]): Buffer | null {
  for (const p of paths) {
    const b = sys.readFile(p);
    if (b !== null) return b;
  }
  return null;
}

/** update.conf rewrite (system.Update.File), read from the first of CONF_FILES the target has. Returns null when no update option is set. */
export function updateConf(u: Obj, sys: SystemView): Buffer | null {
  if (updateFields.every((f) => isZero(u[f.name]))) return null;
  for (const f of updateFields) {
    const v = str(u, f.name);
    if (f.validRe && v !== '' && !f.validRe.test(v)) {
      throw new BasaltError(CLOUDINIT_ERRORS.E_UPDATE_OPTION, `invalid value ${goQuote(v)} for option "RebootStrategy" (valid options: ${goQuote(f.valid!)})`);
    }
  }
  const subs = new Map<string, string>();
  for (const f of updateFields) {
    const v = str(u, f.name);
    if (v !== '') subs.set(f.env!, `${f.env}=${v}`);
  }
  const conf = readFirst(sys, CONF_FILES);
  if (conf === null) throw new BasaltError(CLOUDINIT_ERRORS.E_UPDATE_CONF, `open ${IMAGE_UPDATE_CONF}: no such file or directory`);
  let out = '';
  const text = conf.toString('utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (let line of lines) {
    line = line.replace(/\r$/, '');
    for (const [env, value] of subs) {
      if (line.startsWith(env)) {
        line = value;
        subs.delete(env);
        break;
      }
    }
    out += line + '\n';
  }
  for (const key of [...subs.keys()].sort()) out += subs.get(key)! + '\n';
  return Buffer.from(out);
}

/** mergeEnvContents of system/env_file.go. */
export function mergeEnv(old: Buffer, pending: Map<string, string>): Buffer {
  let text = old.toString('utf8');
  if (text.length !== 0 && !text.endsWith('\n')) text += '\n';
  let out = '';
  const re = /^((?:([a-zA-Z0-9_]+)=)?.*?)\r?\n/gm;
  for (const m of text.matchAll(re)) {
    const key = m[2] ?? '';
    if (pending.has(key)) {
      out += `${key}=${pending.get(key)}\n`;
      pending.delete(key);
    } else out += `${m[1]}\n`;
  }
  for (const k of [...pending.keys()].sort()) out += `${k}=${pending.get(k)}\n`;
  return Buffer.from(out);
}

/** A stable transient unit name for a script (v1.14.0 used a random one). */
export function scriptUnitName(script: Buffer): string {
  return createHash('sha256').update(script).digest('hex').slice(0, 12);
}

/**
 * Plans the application of a cloud-config. `cfg` is the strong-decoded
 * config (see parseCloudConfigTyped) after variable substitution; `script`
 * is set instead for #! user-data. Warnings name settings apply does not
 * honour as written (the etcd sections, see etcd.ts). The steps run in
 * v1.14.0's order, so the first error it would report is the one thrown.
 */
export function plan(cfg: Obj | null, script: Buffer | null, md: Metadata, sys: SystemView, o: PlanOptions): Plan {
  const c: Obj = cfg ?? {};
  const coreos = obj(c, 'coreos');
  // mergeConfigs: the config's hostname wins over the metadata's.
  const hostname = str(c, 'hostname') || md.hostname || '';
  const actions: Action[] = [];
  if (hostname !== '') actions.push({ kind: 'hostname', hostname });
  actions.push(...userActions(c, md, sys, o.sshKeyName));
  actions.push(...fileActions(c, coreos, sys, hostname));
  if (!writesEnvironment(c)) {
    const env = environmentAction(md, sys);
    if (env) actions.push(env);
  }
  // Not v1.14.0's etcd.service (v0.4) and etcd2.service drop-ins: the image ships etcd 3.4 as
  // etcd.service (etcd2.service is an alias name, whose drop-in directory systemd does not
  // reliably read), so the etcd2 section goes to etcd.service in etcd 3.4's variables and the
  // v0.4 section is ignored (see etcd.ts).
  const warnings = etcdWarnings(obj(coreos, 'etcd'), obj(coreos, 'etcd2'));
  actions.push(...unitActions(unitSpecs(coreos)));
  if (script) actions.push(scriptAction(script, o.workspace));
  return { actions, warnings };
}

/** The useradd arguments for a user the target does not have. */
function useraddArgs(u: Obj, name: string): string[] {
  const a: string[] = ['--password', str(u, 'passwd') || '*'];
  if (str(u, 'gecos')) a.push('--comment', goQuote(str(u, 'gecos')));
  if (str(u, 'homedir')) a.push('--home-dir', str(u, 'homedir'));
  a.push(bool(u, 'no_create_home') ? '--no-create-home' : '--create-home');
  if (str(u, 'primary_group')) a.push('--gid', str(u, 'primary_group'));
  const groups = list<string>(u, 'groups');
  if (groups.length > 0) a.push('--groups', groups.join(','));
  if (bool(u, 'no_user_group')) a.push('--no-user-group');
  if (bool(u, 'system')) a.push('--system');
  if (bool(u, 'no_log_init')) a.push('--no-log-init');
  if (str(u, 'shell')) a.push('--shell', str(u, 'shell'));
  a.push(name);
  return a;
}

/** One entry of `users`: create it (or set its password), its SSH keys, the key imports it asks for. */
function oneUserActions(u: Obj, name: string, sys: SystemView, sshKeyName: string): Action[] {
  const out: Action[] = [];
  if (!sys.userExists(name)) out.push({ kind: 'user-create', name, useraddArgs: useraddArgs(u, name) });
  else if (str(u, 'passwd') !== '') out.push({ kind: 'user-password', name, hash: str(u, 'passwd') });
  const keys = list<string>(u, 'ssh_authorized_keys');
  if (keys.length > 0) out.push({ kind: 'ssh-keys', user: name, keyName: sshKeyName, keys: keys.map((k) => k.trim()) });
  const gh = str(u, 'coreos_ssh_import_github');
  const github = [...(gh ? [gh] : []), ...list<string>(u, 'coreos_ssh_import_github_users')];
  const from = github.map((g) => `https://api.github.com/users/${g}/keys`);
  const url = str(u, 'coreos_ssh_import_url');
  if (url) from.push(url);
  for (const f of from) out.push({ kind: 'ssh-import', user: name, from: f, note: 'deprecated remote key import' });
  return out;
}

/** `users`, then core's keys (ssh_authorized_keys and the metadata's). */
function userActions(c: Obj, md: Metadata, sys: SystemView, sshKeyName: string): Action[] {
  const out: Action[] = [];
  for (const u of list<Obj>(c, 'users')) {
    const name = str(u, 'name');
    if (name !== '') out.push(...oneUserActions(u, name, sys, sshKeyName));
  }
  const rootKeys = [...list<string>(c, 'ssh_authorized_keys'), ...(md.sshPublicKeys ?? []).map(([, k]) => k)];
  if (rootKeys.length > 0) out.push({ kind: 'ssh-keys', user: 'core', keyName: sshKeyName, keys: rootKeys.map((k) => k.trim()) });
  return out;
}

type FileAction = Extract<Action, { kind: 'file' }>;

function fileAction(path: string, content: Buffer, perm: string, why: string, owner?: string): FileAction {
  const a: FileAction = { kind: 'file', path: goClean('/' + path), content, mode: parsePermissions(perm, path), why };
  if (owner) a.owner = owner;
  return a;
}

/** The text of /etc/oem-release for coreos.oem. */
function oemRelease(oem: Obj): string {
  return `ID=${str(oem, 'id')}\nVERSION_ID=${str(oem, 'version_id')}\nNAME=${goQuote(str(oem, 'name'))}\nHOME_URL=${goQuote(str(oem, 'home_url'))}\nBUG_REPORT_URL=${goQuote(str(oem, 'bug_report_url'))}\n`;
}

/** The files the config writes: write_files, coreos.oem, coreos.update, manage_etc_hosts, coreos.flannel. */
function fileActions(c: Obj, coreos: Obj, sys: SystemView, hostname: string): FileAction[] {
  const out = list<Obj>(c, 'write_files').map((f) => {
    const p = str(f, 'path');
    return fileAction(p, decodeFileContent(contentOf(f, 'content'), str(f, 'encoding'), p), str(f, 'permissions'), 'write_files', str(f, 'owner') || undefined);
  });
  const oem = obj(coreos, 'oem');
  if (str(oem, 'id') !== '') out.push(fileAction('etc/oem-release', Buffer.from(oemRelease(oem)), '0644', 'coreos.oem'));
  const uc = updateConf(obj(coreos, 'update'), sys);
  if (uc) out.push(fileAction(ETC_UPDATE_CONF, uc, '0644', 'coreos.update'));
  const meh = str(c, 'manage_etc_hosts');
  if (meh !== '') {
    if (meh !== 'localhost') throw new BasaltError(CLOUDINIT_ERRORS.E_MANAGE_ETC_HOSTS, `manage_etc_hosts: Invalid option to manage_etc_hosts (${goQuote(meh)})`);
    out.push(fileAction('etc/hosts', Buffer.from(`127.0.0.1 ${hostname || sys.hostname()}\n`), '0644', 'manage_etc_hosts'));
  }
  const flannel = envVars(obj(coreos, 'flannel'), flannelFields).join('\n');
  if (flannel !== '') out.push(fileAction('run/flannel/options.env', Buffer.from(flannel), '0644', 'coreos.flannel'));
  return out;
}

/** Whether write_files writes /etc/environment itself (named by an absolute path, as v1.14.0 compares it). */
function writesEnvironment(c: Obj): boolean {
  return list<Obj>(c, 'write_files').some((f) => goClean(str(f, 'path')) === '/etc/environment');
}

/** The metadata's IP addresses merged into /etc/environment; null when there are none or nothing changes. */
function environmentAction(md: Metadata, sys: SystemView): FileAction | null {
  const s = substitutions(md, sys.env);
  const vars: [string, string][] = [];
  if (s['$public_ipv4']) vars.push(['COREOS_PUBLIC_IPV4', s['$public_ipv4']]);
  if (s['$private_ipv4']) vars.push(['COREOS_PRIVATE_IPV4', s['$private_ipv4']]);
  if (s['$public_ipv6']) vars.push(['COREOS_PUBLIC_IPV6', s['$public_ipv6']]);
  if (s['$private_ipv6']) vars.push(['COREOS_PRIVATE_IPV6', s['$private_ipv6']]);
  if (vars.length === 0) return null;
  const old = sys.readFile('/etc/environment') ?? Buffer.alloc(0);
  const merged = mergeEnv(old, new Map(vars));
  return merged.equals(old) ? null : { kind: 'file', path: '/etc/environment', content: merged, mode: 0o644, why: 'metadata IP addresses' };
}

/** A unit that only carries the 20-cloudinit.conf drop-in of a config section. */
function generatedUnit(name: string, section: Obj, fields: Field[]): UnitSpec {
  return { name, content: Buffer.alloc(0), enable: false, runtime: true, mask: false, command: '', dropIns: [{ name: '20-cloudinit.conf', content: Buffer.from(serviceContents(section, fields)) }] };
}

/** coreos.units, then the units the etcd2, fleet, locksmith and update sections configure. */
function unitSpecs(coreos: Obj): UnitSpec[] {
  const units: UnitSpec[] = list<Obj>(coreos, 'units').map((u) => ({
    name: str(u, 'name'),
    content: goStringBytes(contentOf(u, 'content')),
    enable: bool(u, 'enable'),
    runtime: bool(u, 'runtime'),
    mask: bool(u, 'mask'),
    command: str(u, 'command'),
    dropIns: list<Obj>(u, 'drop_ins').map((d) => ({ name: str(d, 'name'), content: goStringBytes(contentOf(d, 'content')) })),
  }));
  units.push(generatedUnit(ETCD_UNIT, obj(coreos, 'etcd2'), etcd34Fields));
  units.push(generatedUnit('fleet.service', obj(coreos, 'fleet'), fleetFields));
  units.push(generatedUnit('locksmithd.service', obj(coreos, 'locksmith'), locksmithFields));
  const update = obj(coreos, 'update');
  const rs = str(update, 'reboot_strategy');
  if (rs !== '') units.push({ name: 'locksmithd.service', content: Buffer.alloc(0), enable: false, runtime: true, mask: rs === 'off', command: rs === 'off' ? 'stop' : 'restart', dropIns: [] });
  if (str(update, 'group') !== '' || str(update, 'server') !== '') units.push({ name: 'update-engine.service', content: Buffer.alloc(0), enable: false, runtime: false, mask: false, command: 'restart', dropIns: [] });
  return units;
}

/** The files of one unit: its content and its non-empty drop-ins. */
function unitFileActions(u: UnitSpec, dest: string): FileAction[] {
  const out: FileAction[] = [];
  if (u.content.length > 0) out.push({ kind: 'file', path: dest, content: u.content, mode: 0o644, why: `unit ${u.name}` });
  for (const d of u.dropIns) {
    if (d.name !== '' && d.content.length > 0) out.push({ kind: 'file', path: goClean(`${dest}.d/${d.name}`), content: d.content, mode: 0o644, why: `drop-in ${d.name} of ${u.name}` });
  }
  return out;
}

/**
 * The units' files, masks and enables in order, then daemon-reload (when a
 * file was written), the networkd restart (when a network unit is named) and
 * the unit commands.
 */
function unitActions(units: UnitSpec[]): Action[] {
  const actions: Action[] = [];
  const commands: Action[] = [];
  let reload = false;
  let restartNetworkd = false;
  for (const u of units) {
    if (u.name === '') continue;
    const dest = unitDestination(u);
    const files = unitFileActions(u, dest);
    actions.push(...files);
    if (files.length > 0) reload = true;
    if (u.mask) actions.push({ kind: 'unit-mask', unit: u.name, path: dest });
    else if (u.runtime) actions.push({ kind: 'unit-unmask', unit: u.name, path: dest });
    const network = unitGroup(u.name) === 'network';
    if (u.enable && !network) actions.push({ kind: 'unit-enable', unit: u.name, runtime: u.runtime });
    if (network) restartNetworkd = true;
    else if (u.command !== '') commands.push({ kind: 'unit-command', unit: u.name, command: u.command });
  }
  if (reload) actions.push({ kind: 'daemon-reload' });
  if (restartNetworkd) actions.push({ kind: 'networkd-restart' });
  return [...actions, ...commands];
}

/** #! user-data: run as a transient unit from the workspace. */
function scriptAction(script: Buffer, workspace: string): Action {
  const id = scriptUnitName(script);
  return { kind: 'script', unit: `coreos-cloudinit-${id}.service`, path: goClean(`/${workspace}/scripts/${id}`), content: script };
}

/** One line per action, for --dry-run and logs. */
export function describeAction(a: Action): string {
  switch (a.kind) {
    case 'hostname':
      return `set hostname ${a.hostname}`;
    case 'user-create':
      return `useradd ${a.useraddArgs.join(' ')}`;
    case 'user-password':
      return `set password of ${a.name} (chpasswd -e)`;
    case 'ssh-keys':
      return `authorize ${a.keys.length} SSH key(s) for ${a.user} as ${a.keyName}`;
    case 'ssh-import':
      return `skip importing SSH keys for ${a.user} from ${a.from} (${a.note}; Basalt does not fetch keys at apply time)`;
    case 'file':
      return `write ${a.path} (${a.mode.toString(8).padStart(4, '0')}${a.owner ? `, owner ${a.owner}` : ''}, ${a.content.length} bytes) [${a.why}]`;
    case 'unit-mask':
      return `mask ${a.unit} (${a.path} -> /dev/null)`;
    case 'unit-unmask':
      return `unmask ${a.unit} if ${a.path} is empty or a device`;
    case 'unit-enable':
      return `enable ${a.unit}${a.runtime ? ' (runtime)' : ''}`;
    case 'daemon-reload':
      return 'systemctl daemon-reload';
    case 'networkd-restart':
      return 'restart systemd-networkd.service';
    case 'unit-command':
      return `systemctl ${a.command} ${a.unit}`;
    case 'script':
      return `run script ${a.path} as transient unit ${a.unit}`;
  }
}

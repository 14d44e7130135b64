/**
 * `coreos-cloudinit -validate`, reproduced: dispatch on the user-data kind,
 * weak + strong decoding, node coercion, line numbers found by the
 * original's own text scan, and the six rules in their fixed order. Where
 * v1.14.0 panicked ("Failed while validating user_data"), an error entry
 * names the offending key instead. Pure: bytes in, report out.
 */
import { gunzipSync, constants as zc } from 'node:zlib';
import { cloudConfigFields, rootField, type Field, type FieldType } from '../schema.js';
import { decodeStrong, decodeWeak, goBase64, goFloat, goStringBytes, type GoString, type W } from '../yaml/decode.js';
import { parseDocument, YamlDecodeError } from '../yaml/parser.js';
import { goDir, goGzipHeaderOk, goParseRequestURI, goQuote } from './gostd.js';

export type Kind = 'error' | 'warning' | 'info';

export interface Entry {
  line: number;
  kind: Kind;
  message: string;
  /** Basalt additions (not printed in coreos-cloudinit output). */
  code: string;
  path: string;
  column: number;
  hint?: string;
}

export interface Report {
  entries: Entry[];
  /** What the input was recognised as. */
  type: 'empty' | 'script' | 'ignition' | 'cloud-config' | 'unknown';
  /** Set when v1.14.0 would have crashed ("Failed while validating user_data"). */
  crashed?: string;
}

// ------------------------------------------------------------ dispatch

/** config.IsScript */
export function isScript(text: string): boolean {
  return text.split('\n', 1)[0]!.startsWith('#!');
}

/** config.IsCloudConfig: the first line, right-trimmed of Unicode space, is exactly #cloud-config. */
export function isCloudConfig(text: string): boolean {
  const header = text.split('\n', 1)[0]!.replace(/[\s\u0085\u00a0]+$/u, '');
  return header === '#cloud-config';
}

/** config.IsIgnitionConfig: JSON with an integer ignitionVersion or a string ignition.version. */
export function isIgnitionConfig(text: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return false;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  // Go's json.Unmarshal fails when a field has the wrong type
  const iv = o['ignitionVersion'];
  const ig = o['ignition'];
  if (iv !== undefined && iv !== null && !(typeof iv === 'number' && Number.isInteger(iv))) return false;
  if (ig !== undefined && ig !== null && (typeof ig !== 'object' || Array.isArray(ig))) return false;
  const igv = ig && typeof ig === 'object' ? (ig as Record<string, unknown>)['version'] : undefined;
  if (igv !== undefined && igv !== null && typeof igv !== 'string') return false;
  return (iv !== undefined && iv !== null) || (igv !== undefined && igv !== null);
}

/**
 * decompressIfGzip: user-data starting with 1f 8b is gunzipped. On a corrupt
 * stream the partial output (Go's ReadAll) is returned with the error text.
 */
export function decompressIfGzip(data: Uint8Array): { data: Uint8Array; error?: string } {
  if (!(data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b)) return { data };
  if (!goGzipHeaderOk(data)) return { data: new Uint8Array(0), error: data.length < 10 ? 'unexpected EOF' : 'gzip: invalid header' };
  try {
    return { data: gunzipSync(data) };
  } catch (e) {
    let partial: Uint8Array = new Uint8Array(0);
    try {
      partial = gunzipSync(data, { finishFlush: zc.Z_SYNC_FLUSH });
    } catch {
      /* nothing recoverable */
    }
    const msg = (e as Error).message;
    return { data: partial, error: msg.includes('unexpected end of file') ? 'unexpected EOF' : `flate: corrupt input (${msg})` };
  }
}

/** validate.Validate on user-data bytes (already gunzipped). */
export function validateUserData(data: Uint8Array): Report {
  if (data.length === 0) return { entries: [], type: 'empty' };
  const text = Buffer.from(data).toString('utf8');
  if (isScript(text)) return { entries: [], type: 'script' };
  if (isIgnitionConfig(text)) return { entries: [], type: 'ignition' };
  if (isCloudConfig(text)) return validateCloudConfig(data, text);
  return {
    type: 'unknown',
    entries: [
      {
        line: 1,
        kind: 'error',
        message: 'must be "#cloud-config" or begin with "#!"',
        code: 'E_HEADER',
        path: '',
        column: 1,
        hint: headerHint(text),
      },
    ],
  };
}

function headerHint(text: string): string {
  const first = text.split('\n', 1)[0]!;
  if (first.startsWith('\ufeff')) return 'remove the byte order mark (BOM) before #cloud-config';
  if (/^\s+#cloud-config/i.test(first)) return 'remove the whitespace before #cloud-config';
  if (/^#cloud-config-archive/i.test(first)) return 'cloud-config archives are not supported; use a single #cloud-config document';
  if (/^content-type:/i.test(first) || /^mime-version:/i.test(first)) return 'multipart MIME user-data is not supported by coreos-cloudinit';
  if (/^#\s*cloud-config\s*$/i.test(first)) return 'the first line must be exactly "#cloud-config" (lower case, no space after #)';
  return 'start the file with a "#cloud-config" line, or "#!" for a script';
}

// --------------------------------------------------------------- nodes

type NodeKind = 'string' | 'int' | 'float64' | 'bool' | 'map' | 'slice' | 'struct' | 'invalid';

interface Node {
  name: string;
  line: number;
  children: Node[];
  kind: NodeKind;
  /** Scalar payload: string (or a Buffer, see GoString), bigint, number or boolean. */
  value: unknown;
  field?: Field;
  /** Basalt: the path of the node, e.g. coreos.units[0].name */
  path: string;
}

const invalidNode = (): Node => ({ name: '', line: 0, children: [], kind: 'invalid', value: undefined, path: '' });

/** The text scan of node.go/context.go over the \r-stripped text. */
class Lines {
  readonly l: string[];
  constructor(text: string) {
    this.l = text.replace(/\r/g, '').split('\n');
  }
  cur(i: number): string {
    return i < this.l.length ? this.l[i]! : '';
  }
  exhausted(i: number): boolean {
    const n = this.l.length;
    if (this.cur(i) !== '') return false;
    return i >= n - 1 || (i === n - 2 && this.l[n - 1] === '');
  }
  inc(i: number): number {
    return this.exhausted(i) ? i : i + 1;
  }
  /** find(): scans from i inclusive; returns [index, found]. */
  findKey(key: string, i: number): [number, boolean] {
    while (!this.exhausted(i)) {
      const m = /^ *-? ?(.*?):/.exec(this.cur(i));
      if (m?.[1] === key) return [i, true];
      i = this.inc(i);
    }
    return [i, false];
  }
  findElem(i: number): [number, boolean] {
    while (!this.exhausted(i)) {
      if (/^ *-/.test(this.cur(i))) return [i, true];
      i = this.inc(i);
    }
    return [i, false];
  }
}

/** fmt.Sprintf("%s", key) for a weak map key. */
function keyName(k: W): string {
  if (k === null) return '%!s(<nil>)';
  switch (k.t) {
    case 'str':
      return k.v;
    case 'int':
      return `%!s(int=${k.v})`;
    case 'float':
      return `%!s(float64=${goFloat(k.v)})`;
    case 'bool':
      return `%!s(bool=${k.v})`;
    default:
      return '?';
  }
}

function weakKind(w: W): NodeKind {
  if (w === null) return 'invalid';
  switch (w.t) {
    case 'str':
      return 'string';
    case 'int':
      return 'int';
    case 'float':
      return 'float64';
    case 'bool':
      return 'bool';
    case 'map':
      return 'map';
    case 'seq':
      return 'slice';
  }
}

function joinPath(parent: string, name: string): string {
  return parent === '' ? name : `${parent}.${name}`;
}

/** toNode for the weak value: children in (stable) map order, lines from the scan. */
function weakNode(w: W, lines: Lines, ctx: number, n: Node): void {
  n.kind = weakKind(w);
  if (w === null) return;
  switch (w.t) {
    case 'map':
      for (const [k, v] of w.entries) {
        const name = keyName(k);
        const cn: Node = { name, line: 0, children: [], kind: 'invalid', value: undefined, path: joinPath(n.path, name) };
        const [c, ok] = lines.findKey(name, ctx);
        if (ok) cn.line = c + 1;
        weakNode(v, lines, c, cn);
        n.children.push(cn);
      }
      return;
    case 'seq': {
      let c = ctx;
      w.items.forEach((item, i) => {
        const cn: Node = { name: `${n.name}[${i}]`, line: 0, children: [], kind: 'invalid', value: undefined, path: `${n.path}[${i}]` };
        let ok: boolean;
        [c, ok] = lines.findElem(c);
        if (ok) cn.line = c + 1;
        weakNode(item, lines, c, cn);
        n.children.push(cn);
        c = lines.inc(c);
      });
      return;
    }
    default:
      n.value = w.v;
  }
}

function kindOfField(t: FieldType): NodeKind {
  switch (t) {
    case 'string':
      return 'string';
    case 'int':
      return 'int';
    case 'float64':
      return 'float64';
    case 'bool':
      return 'bool';
    case 'struct':
      return 'struct';
    default:
      return 'slice';
  }
}

/** toNode for the strong (typed) value. Lines are not needed. */
function strongNode(v: unknown, f: Field, name: string): Node {
  const n: Node = { name, line: 0, children: [], kind: kindOfField(f.type), value: undefined, field: f, path: '' };
  if (f.type === 'struct') {
    const o = v as Record<string, unknown>;
    for (const c of f.struct!) n.children.push(strongNode(o[c.name], c, c.name));
  } else if (f.type === '[]string' || f.type === '[]struct') {
    if (v === null || v === undefined) return n; // nil slice: valid, Kind Slice, no children
    const elem: Field = f.type === '[]string' ? { name: '', type: 'string' } : { name: '', type: 'struct', struct: f.struct! };
    (v as unknown[]).forEach((x, i) => {
      const cn = strongNode(x, elem, `${name}[${i}]`);
      cn.field = f; // Go keeps the slice's StructField on its items
      n.children.push(cn);
    });
  } else n.value = v;
  return n;
}

function normalizeNames(n: Node): void {
  if (n.name.includes('-')) n.name = n.name.replace(/-/g, '_');
  n.path = n.path.replace(/-/g, '_');
  for (const c of n.children) normalizeNames(c);
}

function child(n: Node, name: string): Node {
  for (const c of n.children) if (c.name === name) return c;
  return invalidNode();
}

function isCompatible(n: NodeKind, g: NodeKind): boolean {
  switch (g) {
    case 'string':
      return n === 'string' || n === 'int' || n === 'float64' || n === 'bool';
    case 'struct':
      return n === 'struct' || n === 'map';
    case 'float64':
      return n === 'float64' || n === 'int';
    case 'bool':
    case 'slice':
    case 'int':
      return n === g;
    default:
      return false;
  }
}

function coerce(w: Node, s: Node): Node {
  const n: Node = { ...w, children: [] };
  if (w.children.length === 0 && s.children.length === 0 && w.kind !== 'invalid' && s.kind !== 'invalid' && isCompatible(w.kind, s.kind)) {
    n.value = s.value;
    n.kind = s.kind;
  }
  if (w.children.length > 0) {
    // first child of each name, as node.Child() returns
    const byName = new Map<string, Node>();
    for (const c of s.children) if (!byName.has(c.name)) byName.set(c.name, c);
    for (const cw of w.children) n.children.push(coerce(cw, byName.get(cw.name) ?? invalidNode()));
  }
  return n;
}

// --------------------------------------------------------------- rules

class Collector {
  entries: Entry[] = [];
  crashed?: string;
  constructor(private lines: Lines) {}
  add(kind: Kind, line: number, message: string, code: string, n?: Node, hint?: string) {
    const e: Entry = { line, kind, message, code, path: n?.path ?? '', column: this.column(line, n?.name) };
    if (hint) e.hint = hint;
    this.entries.push(e);
  }
  private column(line: number, name?: string): number {
    if (line <= 0) return 0;
    const text = this.lines.cur(line - 1);
    if (name !== undefined && name !== '') {
      const bare = name.replace(/\[\d+\]$/, '');
      const at = text.indexOf(bare);
      if (at >= 0 && !/\[\d+\]$/.test(name)) return at + 1;
      if (/\[\d+\]$/.test(name)) {
        const d = text.indexOf('-');
        if (d >= 0) return d + 1;
      }
    }
    const m = /^\s*/.exec(text)!;
    return m[0].length + 1;
  }
}

/** A string node's text; bytes that are not UTF-8 (a !!binary content) one char per byte. */
function stringText(v: unknown): string {
  return typeof v === 'string' ? v : (v as Buffer).toString('latin1');
}

/** reflect.Value.String() */
function valueString(n: Node): string {
  switch (n.kind) {
    case 'string':
      return stringText(n.value);
    case 'invalid':
      return '<invalid Value>';
    case 'map':
      return '<map[interface {}]interface {} Value>';
    case 'slice':
      return n.field ? `<[]${n.field.type === '[]string' ? 'string' : 'config.X'} Value>` : '<[]interface {} Value>';
    case 'struct':
      return '<config Value>';
    default:
      return `<${n.kind} Value>`;
  }
}

/** fmt %v of a scalar node value. */
function valueV(n: Node): string {
  switch (n.kind) {
    case 'string':
      return stringText(n.value);
    case 'int':
      return String(n.value);
    case 'float64':
      return goFloat(n.value as number);
    case 'bool':
      return String(n.value);
    default:
      return '';
  }
}

/**
 * config.DecodeContent up to its error: null when the content cannot be
 * decoded. It works on the Go bytes of the content (a !!binary value's
 * decoded bytes). For the gzip encodings the result is the still compressed
 * data whose header gzip.NewReader accepted (see goGunzip for the rest).
 */
export function decodeContent(content: GoString, encoding: string): Buffer | null {
  const bytes = goStringBytes(content);
  const gz = (b: Buffer): Buffer | null => (goGzipHeaderOk(b) ? b : null);
  // base64.StdEncoding.DecodeString on the bytes: any byte outside the alphabet (all of 0x80-0xff) fails
  const b64 = (b: Buffer): Buffer | null => goBase64(b.toString('latin1'));
  switch (encoding) {
    case '':
      return bytes;
    case 'b64':
    case 'base64':
      return b64(bytes);
    case 'gz':
    case 'gzip':
      return gz(bytes);
    case 'gz+base64':
    case 'gzip+base64':
    case 'gz+b64':
    case 'gzip+b64': {
      const b = b64(bytes);
      return b ? gz(b) : null;
    }
    default:
      return null;
  }
}

function checkDiscoveryUrl(cfg: Node, r: Collector) {
  const c = child(child(child(cfg, 'coreos'), 'etcd'), 'discovery');
  if (c.kind === 'invalid') return;
  if (!goParseRequestURI(valueString(c))) r.add('warning', c.line, 'discovery URL is not valid', 'W_DISCOVERY_URL', c, 'use an absolute URL such as https://discovery.etcd.io/<token>');
}

function checkEncoding(cfg: Node, r: Collector) {
  for (const f of child(cfg, 'write_files').children) {
    const e = child(f, 'encoding');
    if (e.kind === 'invalid') continue;
    const c = child(f, 'content');
    const enc = valueString(e);
    // c.String(): a string node's own bytes (a !!binary content stays bytes), else reflect's <... Value> text
    if (decodeContent(c.kind === 'string' ? (c.value as GoString) : valueString(c), enc) === null) {
      r.add('error', c.line, `content cannot be decoded as ${goQuote(enc)}`, 'E_CONTENT_ENCODING', c.kind === 'invalid' ? { ...c, path: f.path + '.content' } : c, encodingHint(enc));
    }
  }
}

function encodingHint(enc: string): string {
  if (/^(b64|base64)$/.test(enc)) return 'base64 must be standard (not URL-safe) with = padding';
  if (/^(gz|gzip)$/.test(enc)) return 'gzip content must be gzip bytes: give them as a !!binary value (base64 text), or use gzip+base64';
  if (enc.includes('+')) return 'the content must be base64 of gzip data';
  return 'valid encodings: base64, b64, gz, gzip, gz+base64, gzip+base64, gz+b64, gzip+b64';
}

function humanType(f: Field): string {
  return f.type;
}

function checkStructure(cfg: Node, r: Collector) {
  structure(cfg, rootField, r);
}

function structure(n: Node, g: Field, r: Collector) {
  const gk = kindOfField(g.type);
  if (!isCompatible(n.kind, gk)) {
    r.add('warning', n.line, `incorrect type for ${goQuote(n.name)} (want ${humanType(g)})`, 'W_TYPE', n, typeHint(n, g));
    return;
  }
  if (g.type === 'struct') {
    for (const cn of n.children) {
      const cg = g.struct!.find((x) => x.name === cn.name);
      if (cg) {
        if (cg.deprecated) r.add('warning', cn.line, `deprecated key ${goQuote(cn.name)} (${cg.deprecated})`, 'W_DEPRECATED', cn);
        structure(cn, cg, r);
      } else {
        r.add('warning', cn.line, `unrecognized key ${goQuote(cn.name)}`, 'W_UNKNOWN_KEY', cn, unknownKeyHint(cn.name, g));
      }
    }
  } else if (g.type === '[]string' || g.type === '[]struct') {
    const elem: Field = g.type === '[]string' ? { name: '', type: 'string' } : { name: '', type: 'struct', struct: g.struct! };
    for (const cn of n.children) structure(cn, elem, r);
  }
}

const kindWords: Record<NodeKind, string> = { string: 'a string', int: 'an integer', float64: 'a number', bool: 'a boolean', map: 'a mapping', slice: 'a list', struct: 'a mapping', invalid: 'null' };

function typeHint(n: Node, g: Field): string {
  const got = kindWords[n.kind];
  switch (g.type) {
    case 'bool':
      return `got ${got}; use true or false`;
    case 'int':
      return `got ${got}; use an integer without quotes`;
    case 'float64':
      return `got ${got}; use a number`;
    case 'string':
      return n.kind === 'invalid' ? 'the value is empty (null); quote it or remove the key' : `got ${got}; use a single string (quote it)`;
    case '[]string':
      return `got ${got}; use a list of strings ("- item" lines)`;
    case '[]struct':
      return `got ${got}; use a list of mappings ("- key: value" items)`;
    case 'struct':
      return `got ${got}; use a mapping of keys`;
  }
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

function unknownKeyHint(name: string, g: Field): string | undefined {
  const known = g.struct!.map((x) => x.name);
  let best: string | undefined;
  let bd = Infinity;
  for (const k of known) {
    const dd = distance(name.toLowerCase(), k);
    if (dd < bd) {
      bd = dd;
      best = k;
    }
  }
  if (g === rootField && name === 'write_files') return undefined;
  if (['runcmd', 'bootcmd', 'packages', 'ca-certs', 'ca_certs', 'apt_sources', 'package_upgrade'].includes(name)) {
    return `${name} is an Ubuntu cloud-init key that coreos-cloudinit does not support; use coreos.units or write_files`;
  }
  if (best && bd <= Math.max(2, Math.floor(name.length / 3))) return `did you mean ${goQuote(best)}?`;
  if (g === rootField || g.struct === cloudConfigFields) return `known keys: ${known.join(', ')}`;
  return `known keys here: ${known.join(', ')}`;
}

function checkValidity(cfg: Node, r: Collector) {
  validity(cfg, rootField, r, true);
}

function validity(n: Node, g: Field | undefined, r: Collector, top = false) {
  const valid = top ? undefined : g?.valid;
  if (valid) {
    // config.AssertValid: isZero() first, which panics on null, lists and mappings
    if (n.kind === 'invalid' || n.kind === 'map' || n.kind === 'slice') {
      const what = n.kind === 'invalid' ? 'null' : n.kind === 'map' ? 'a mapping' : 'a list';
      const panic = n.kind === 'invalid' ? 'reflect: call of reflect.Value.Interface on zero Value' : `runtime error: comparing uncomparable type ${n.kind === 'map' ? 'map[interface {}]interface {}' : '[]interface {}'}`;
      r.crashed ??= panic;
      r.add('error', n.line, `invalid value for ${goQuote(n.name)}: ${what} where a string is expected`, 'E_VALUE_TYPE', n, allowedHint(g!));
    } else {
      const zero = (n.kind === 'string' && n.value === '') || (n.kind === 'int' && n.value === 0n) || (n.kind === 'float64' && n.value === 0) || (n.kind === 'bool' && n.value === false);
      if (!zero) {
        const vs = valueV(n);
        if (!g!.validRe!.test(vs)) r.add('error', n.line, `invalid value ${vs}`, 'E_INVALID_VALUE', n, allowedHint(g!));
      }
    }
  }
  if (!g) return;
  if (g.type === 'struct') {
    for (const cn of n.children) {
      const cg = g.struct!.find((x) => x.name === cn.name);
      if (cg) validity(cn, cg, r);
    }
  } else if (g.type === '[]string' || g.type === '[]struct') {
    const elem: Field = g.type === '[]string' ? { name: '', type: 'string' } : { name: '', type: 'struct', struct: g.struct! };
    for (const cn of n.children) validity(cn, elem, r);
  }
}

function allowedHint(g: Field): string | undefined {
  switch (g.name) {
    case 'command':
      return 'allowed: start, stop, restart, reload, try-restart, reload-or-restart, reload-or-try-restart';
    case 'reboot_strategy':
      return 'allowed: etcd-lock, reboot, off';
    case 'proxy':
      return 'allowed: on, off, readonly';
    case 'encoding':
      return 'allowed: base64, b64, gz, gzip, gz+base64, gzip+base64, gz+b64, gzip+b64';
    case 'permissions':
      return "an octal mode such as '0644' (3 or 4 octal digits, optional leading 0)";
    case 'window_start':
      return 'a time such as "Sun 1:00" or "22:30"';
    case 'window_length':
      return 'a Go duration such as "1h30m"';
    default:
      return undefined;
  }
}

function checkWriteFiles(cfg: Node, r: Collector) {
  for (const f of child(cfg, 'write_files').children) {
    const c = child(f, 'path');
    if (c.kind === 'invalid') continue;
    if (goDir(valueString(c)).startsWith('/usr')) r.add('error', c.line, 'file cannot be written to a read-only filesystem', 'E_READ_ONLY_PATH', c, '/usr is read-only on Container Linux; write under /etc, /opt or /var');
  }
}

function checkWriteFilesUnderCoreos(cfg: Node, r: Collector) {
  const c = child(child(cfg, 'coreos'), 'write_files');
  if (c.kind !== 'invalid') r.add('info', c.line, "write_files doesn't belong under coreos", 'I_WRITE_FILES_UNDER_COREOS', c, 'move write_files to the top level');
}

// --------------------------------------------------------------- driver

export interface ParsedCloudConfig {
  /** The coerced node tree the rules ran on. */
  root: Node;
  /** The typed config (strong decode), with '-' keys read as '_'. */
  config: Record<string, unknown>;
}

function validateCloudConfig(data: Uint8Array, text: string): Report {
  const lines = new Lines(text);
  const r = new Collector(lines);
  let root: Node;
  try {
    root = buildTree(data, lines);
  } catch (e) {
    if (!(e instanceof YamlDecodeError)) throw e;
    const msg = e.message;
    const m = /^line (\d+): (.*)$/.exec(msg);
    if (m) r.add('error', Number(m[1]), m[2]!, 'E_YAML', undefined, yamlHint(m[2]!, Number(m[1]), lines));
    else if (/^[^\n]*$/.test(msg)) r.add('error', 1, msg, 'E_YAML', undefined, yamlHint(msg, 1, lines));
    else {
      r.crashed = "couldn't parse yaml error";
      r.add('error', 1, msg.replace(/\n/g, '\\n'), 'E_YAML', undefined);
    }
    root = invalidNode();
  }
  if (root instanceof StrongFailure) {
    r.crashed = root.message;
    r.add('error', 1, root.message, 'E_YAML');
    root = root.weak;
  }
  checkDiscoveryUrl(root, r);
  checkEncoding(root, r);
  checkStructure(root, r);
  checkValidity(root, r);
  checkWriteFiles(root, r);
  checkWriteFilesUnderCoreos(root, r);
  const rep: Report = { entries: r.entries, type: 'cloud-config' };
  if (r.crashed) rep.crashed = r.crashed;
  return rep;
}

class StrongFailure {
  constructor(
    readonly message: string,
    readonly weak: Node,
  ) {}
}

function yamlHint(msg: string, line: number, lines: Lines): string {
  const physical = line + 1;
  const near = `(go-yaml counts lines from 0: look at line ${physical})`;
  if (msg.includes('cannot start any token') && (lines.cur(line) + lines.cur(line - 1)).includes('\t')) return `YAML does not allow tabs for indentation ${near}`;
  if (msg.includes('mapping values are not allowed')) return `a "key: value" appears where it cannot; check the indentation or quote values containing ": " ${near}`;
  if (msg.includes("could not find expected ':'")) return `a key is missing its ":" ${near}`;
  if (msg.includes('did not find expected key')) return `check the indentation of the mapping ${near}`;
  if (msg.includes('unexpected end of stream')) return 'a quoted string is not closed';
  if (msg.includes('Unknown anchor')) return 'define the anchor (&name) before using it (*name)';
  return near;
}

function buildTree(data: Uint8Array, lines: Lines): Node {
  const weakDoc = parseDocument(data);
  const weak = decodeWeak(weakDoc);
  const w: Node = { name: '', line: 0, children: [], kind: 'map', value: undefined, path: '' };
  // Unmarshal into map[interface{}]interface{}: anything but a mapping leaves an empty map
  weakNode(weak !== null && weak.t === 'map' ? weak : { t: 'map', entries: [] }, lines, 0, w);
  normalizeNames(w);
  let strong: Record<string, unknown>;
  try {
    strong = decodeStrong(parseDocument(data, (k) => k.replace(/-/g, '_')), rootField);
  } catch (e) {
    if (e instanceof YamlDecodeError) return new StrongFailure(e.message, w) as unknown as Node;
    throw e;
  }
  const s = strongNode(strong, rootField, '');
  return coerce(w, s);
}

/** The typed configuration (as NewCloudConfig decodes it), or the YAML error text. */
export function parseCloudConfigTyped(data: Uint8Array): { config: Record<string, unknown> } | { error: string } {
  try {
    return { config: decodeStrong(parseDocument(data, (k) => k.replace(/-/g, '_')), rootField) };
  } catch (e) {
    if (e instanceof YamlDecodeError) return { error: 'YAML error: ' + e.message };
    throw e;
  }
}

/** Formats an entry the way coreos-cloudinit prints it (without the log timestamp). */
export function formatEntry(e: Entry): string {
  return `line ${e.line}: ${e.kind}: ${e.message}`;
}

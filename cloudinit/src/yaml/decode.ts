/**
 * go-yaml v1 decoding semantics, as vendored by coreos-cloudinit v1.14.0:
 * YAML 1.1 implicit typing (`resolve`), "weak" decoding into generic values
 * (Go `map[interface{}]interface{}`) and "strong" decoding into the typed
 * CloudConfig structure, including their quirks (string fields keep the raw
 * scalar text, later duplicate keys win, sequences decoded twice into one
 * struct field accumulate, merge keys, forward aliases). Pure.
 *
 * Integers follow Go's strconv of the Go releases v1.14.0 shipped with
 * (before Go 1.13): `0644` octal, `0x1a` hex, no `0o` prefix, no hex floats.
 */
import type { Field } from '../schema.js';
import { YamlDecodeError, type YDocument, type YNode } from './parser.js';

export const TAG = {
  STR: 'tag:yaml.org,2002:str',
  BOOL: 'tag:yaml.org,2002:bool',
  INT: 'tag:yaml.org,2002:int',
  FLOAT: 'tag:yaml.org,2002:float',
  NULL: 'tag:yaml.org,2002:null',
  BINARY: 'tag:yaml.org,2002:binary',
  MERGE: 'tag:yaml.org,2002:merge',
} as const;

/** A Go value produced by weak decoding. null is Go's nil. */
export type W =
  | null
  | { t: 'str'; v: string }
  | { t: 'int'; v: bigint }
  | { t: 'float'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'map'; entries: [W, W][] }
  | { t: 'seq'; items: W[] };

type Resolved = W & ({ t: 'str' } | { t: 'int' } | { t: 'float' } | { t: 'bool' } | null);

const boolMap: Record<string, boolean> = {};
for (const x of ['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON']) boolMap[x] = true;
for (const x of ['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF']) boolMap[x] = false;
const nullSet = new Set(['', '~', 'null', 'Null', 'NULL']);
const floatMap: Record<string, number> = {
  '.nan': NaN,
  '.NaN': NaN,
  '.NAN': NaN,
  '.inf': Infinity,
  '.Inf': Infinity,
  '.INF': Infinity,
  '+.inf': Infinity,
  '+.Inf': Infinity,
  '+.INF': Infinity,
  '-.inf': -Infinity,
  '-.Inf': -Infinity,
  '-.INF': -Infinity,
};

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

/** strconv.ParseInt(s, 0, 64) (pre Go 1.13). Returns null on any error. */
export function goParseInt(s: string, base = 0): bigint | null {
  let neg = false;
  let t = s;
  if (t.startsWith('+') || t.startsWith('-')) {
    neg = t.startsWith('-');
    t = t.slice(1);
  }
  if (t === '') return null;
  let digits: string;
  let b = base;
  if (base === 0) {
    if (/^0[xX]/.test(t)) {
      b = 16;
      digits = t.slice(2);
    } else if (t.startsWith('0')) {
      b = 8;
      digits = t.slice(1);
      if (digits === '') return 0n;
    } else {
      b = 10;
      digits = t;
    }
  } else digits = t;
  if (digits === '') return null;
  const re = b === 16 ? /^[0-9a-fA-F]+$/ : b === 8 ? /^[0-7]+$/ : b === 2 ? /^[01]+$/ : /^[0-9]+$/;
  if (!re.test(digits)) return null;
  let v = 0n;
  const bb = BigInt(b);
  for (const c of digits) v = v * bb + BigInt(parseInt(c, b));
  if (neg) v = -v;
  if (v > INT64_MAX || v < INT64_MIN) return null;
  return v;
}

/** strconv.ParseFloat(s, 64) (pre Go 1.13). Returns null on error (including overflow). */
export function goParseFloat(s: string): number | null {
  const sp = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
  if (sp) {
    if (sp[2]!.toLowerCase() === 'nan') return sp[1] === '' ? NaN : null;
    return sp[1] === '-' ? -Infinity : Infinity;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return null;
  const v = Number(s);
  if (!Number.isFinite(v)) return null;
  return v;
}

/**
 * go-yaml resolve(): the tag and value of a scalar. Throws YamlDecodeError
 * ("cannot decode !!x `v` as a !!y") when an explicit tag does not fit.
 */
export function resolve(tag: string, input: string): { tag: string; value: Resolved } {
  const resolvable = tag === '' || tag === TAG.STR || tag === TAG.BOOL || tag === TAG.INT || tag === TAG.FLOAT || tag === TAG.NULL;
  if (!resolvable) return { tag, value: { t: 'str', v: input } };
  const r = resolveImplicit(tag, input);
  if (!(tag === '' || tag === r.tag || tag === TAG.STR)) {
    throw new YamlDecodeError(`cannot decode ${shortTag(r.tag)} \`${input}\` as a ${shortTag(tag)}`);
  }
  return r;
}

function shortTag(t: string): string {
  return t.startsWith('tag:yaml.org,2002:') ? '!!' + t.slice('tag:yaml.org,2002:'.length) : t;
}

function resolveImplicit(tag: string, input: string): { tag: string; value: Resolved } {
  const c = input === '' ? 'N' : input[0]!;
  let hint = '';
  if (input === '') hint = 'N';
  else if (c === '+' || c === '-') hint = 'S';
  else if (c >= '0' && c <= '9') hint = 'D';
  else if ('yYnNtTfFoO~'.includes(c)) hint = 'M';
  else if (c === '.') hint = '.';
  if (hint !== '' && tag !== TAG.STR && tag !== TAG.BINARY) {
    if (input in boolMap) return { tag: TAG.BOOL, value: { t: 'bool', v: boolMap[input]! } };
    if (nullSet.has(input)) return { tag: TAG.NULL, value: null };
    if (input in floatMap) return { tag: TAG.FLOAT, value: { t: 'float', v: floatMap[input]! } };
    if (hint === '.') {
      const fv = goParseFloat(input);
      if (fv !== null) return { tag: TAG.FLOAT, value: { t: 'float', v: fv } };
    } else if (hint === 'D' || hint === 'S') {
      const plain = input.replace(/_/g, '');
      const iv = goParseInt(plain);
      if (iv !== null) return { tag: TAG.INT, value: { t: 'int', v: iv } };
      const fv = goParseFloat(plain);
      if (fv !== null) return { tag: TAG.FLOAT, value: { t: 'float', v: fv } };
      if (plain.startsWith('0b')) {
        const bv = goParseInt(plain.slice(2), 2);
        if (bv !== null) return { tag: TAG.INT, value: { t: 'int', v: bv } };
      } else if (plain.startsWith('-0b')) {
        const bv = goParseInt(plain.slice(3), 2);
        if (bv !== null) return { tag: TAG.INT, value: { t: 'int', v: -bv } };
      }
    }
  }
  return { tag: TAG.STR, value: { t: 'str', v: input } };
}

/** Go's base64.StdEncoding.DecodeString: strict padding, \r and \n ignored. */
export function goBase64(s: string): Buffer | null {
  const t = s.replace(/[\r\n]/g, '');
  if (t.length % 4 !== 0) return null;
  if (!/^[A-Za-z0-9+/]*(={0,2})$/.test(t)) return null;
  const pad = /=*$/.exec(t)![0].length;
  if (pad > 0 && t.length === 0) return null;
  const buf = Buffer.from(t, 'base64');
  // reject non-canonical trailing bits? Go's StdEncoding (non-strict) accepts them.
  return buf;
}

function isMerge(n: YNode): boolean {
  return n.kind === 'scalar' && n.value === '<<' && (n.implicit || n.tag === TAG.MERGE);
}

/**
 * A Go string as decoded here. Text from the YAML stream is valid UTF-8 and is
 * held as a JS string (its Go bytes are its UTF-8 encoding). A `!!binary`
 * value is base64-decoded to bytes (Go: `resolved = string(data)`): it is held
 * as a JS string when those bytes are valid UTF-8 (exact round trip), and as
 * the raw bytes (a Buffer) when they are not and the field is a `bytes` one
 * (file and unit contents, which are written out byte for byte). Other fields
 * get such bytes as a latin1 string (one char per byte).
 */
export type GoString = string | Buffer;

/** The Go bytes of a decoded string value. */
export function goStringBytes(s: GoString): Buffer {
  return typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
}

/** The bytes as text when they are valid UTF-8 (decoding and re-encoding gives them back), else null. */
function utf8Text(b: Buffer): string | null {
  const t = b.toString('utf8');
  return Buffer.from(t, 'utf8').equals(b) ? t : null;
}

/** Scalar decoding shared by weak and strong: tag + resolved value; for !!binary also the decoded bytes. */
function scalarValue(n: YNode & { kind: 'scalar' }): { tag: string; value: Resolved; bytes?: Buffer } {
  if (n.tag === '' && !n.implicit) return { tag: TAG.STR, value: { t: 'str', v: n.value } };
  const r = resolve(n.tag, n.value);
  if (r.tag === TAG.BINARY) {
    // decoder.scalar: base64.StdEncoding.DecodeString of the scalar text (\r and \n skipped)
    const data = goBase64((r.value as { v: string }).v);
    if (!data) throw new YamlDecodeError('!!binary value contains invalid base64 data');
    return { tag: TAG.BINARY, value: { t: 'str', v: utf8Text(data) ?? data.toString('latin1') }, bytes: data };
  }
  return r;
}

/** Go %#v of a weak value (used in the "invalid map key" message). */
export function goSharpV(w: W, top = true): string {
  if (w === null) return top ? '<nil>' : 'interface {}(nil)';
  switch (w.t) {
    case 'str':
      return JSON.stringify(w.v);
    case 'int':
      return top ? w.v.toString() : w.v.toString();
    case 'float':
      return goFloat(w.v);
    case 'bool':
      return String(w.v);
    case 'seq':
      return `[]interface {}{${w.items.map((x) => goSharpV(x, false)).join(', ')}}`;
    case 'map':
      return `map[interface {}]interface {}{${w.entries.map(([k, v]) => `${goSharpV(k, false)}:${goSharpV(v, false)}`).join(', ')}}`;
  }
}

/** Go's %v of a float64 (strconv 'g' with the shortest representation). */
export function goFloat(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const exp = Math.floor(Math.log10(Math.abs(v)));
  const e = Number(v.toExponential().split('e')[1]);
  const x = Number.isFinite(e) ? e : exp;
  if (x < -4 || x >= 21) {
    const [m, ee] = v.toExponential().split('e');
    const n = Number(ee);
    return `${m}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return String(v);
}

function keyId(k: W): string {
  if (k === null) return 'nil';
  switch (k.t) {
    case 'str':
      return 's:' + k.v;
    case 'int':
      return 'i:' + String(k.v);
    case 'float':
      return Number.isNaN(k.v) ? 'nan:' + String(Math.random()) : 'f:' + String(k.v);
    case 'bool':
      return 'b:' + String(k.v);
    default:
      return 'x:' + String(Math.random());
  }
}

class Decoder {
  private active = new Set<string>();
  constructor(private doc: YDocument) {}

  private anchor(n: YNode & { kind: 'alias' }): YNode {
    const an = this.doc.anchors.get(n.value);
    if (!an) throw new YamlDecodeError(`Unknown anchor '${n.value}' referenced`);
    if (this.active.has(n.value)) throw new YamlDecodeError(`Anchor '${n.value}' value contains itself`);
    return an;
  }

  private withAlias<R>(n: YNode & { kind: 'alias' }, f: (an: YNode) => R): R {
    const an = this.anchor(n);
    this.active.add(n.value);
    try {
      return f(an);
    } finally {
      this.active.delete(n.value);
    }
  }

  // ---------------------------------------------------------------- weak
  weak(n: YNode): W {
    switch (n.kind) {
      case 'alias':
        return this.withAlias(n, (an) => this.weak(an));
      case 'scalar':
        return scalarValue(n).value;
      case 'sequence':
        return { t: 'seq', items: n.children.map((c) => this.weak(c)) };
      case 'mapping': {
        const m: { t: 'map'; entries: [W, W][] } = { t: 'map', entries: [] };
        this.weakMapInto(n, m, new Map());
        return m;
      }
    }
  }

  private weakMapInto(n: YNode & { kind: 'mapping' }, m: { t: 'map'; entries: [W, W][] }, index: Map<string, number>) {
    // rebuild index from existing entries (merge into an existing map)
    if (index.size === 0) m.entries.forEach(([k], i) => index.set(keyId(k), i));
    for (let i = 0; i < n.children.length; i += 2) {
      const kn = n.children[i]!;
      const vn = n.children[i + 1]!;
      if (isMerge(kn)) {
        this.weakMerge(vn, m, index);
        continue;
      }
      const k = this.weak(kn);
      if (k !== null && (k.t === 'map' || k.t === 'seq')) throw new YamlDecodeError(`invalid map key: ${goSharpV(k)}`);
      const v = this.weak(vn);
      const id = keyId(k);
      const at = index.get(id);
      if (at !== undefined) m.entries[at] = [k, v];
      else {
        index.set(id, m.entries.length);
        m.entries.push([k, v]);
      }
    }
  }

  private weakMerge(n: YNode, m: { t: 'map'; entries: [W, W][] }, index: Map<string, number>) {
    const wantMap = 'map merge requires map or sequence of maps as the value';
    const into = (x: YNode): void => {
      if (x.kind === 'alias') return this.withAlias(x, (an) => into(an));
      if (x.kind === 'mapping') return this.weakMapInto(x, m, index);
      // unmarshal of a non-mapping into a map: scalar null resets, others are ignored
      if (x.kind === 'scalar' && scalarValue(x).value === null) {
        m.entries.length = 0;
        index.clear();
      }
    };
    switch (n.kind) {
      case 'mapping':
        into(n);
        break;
      case 'alias': {
        const an = this.doc.anchors.get(n.value);
        if (an && an.kind !== 'mapping') throw new YamlDecodeError(wantMap);
        into(n);
        break;
      }
      case 'sequence':
        for (let i = n.children.length - 1; i >= 0; i--) {
          const c = n.children[i]!;
          if (c.kind === 'alias') {
            const an = this.doc.anchors.get(c.value);
            if (an && an.kind !== 'mapping') throw new YamlDecodeError(wantMap);
          } else if (c.kind !== 'mapping') throw new YamlDecodeError(wantMap);
          into(c);
        }
        break;
      default:
        throw new YamlDecodeError(wantMap);
    }
  }

  // -------------------------------------------------------------- strong
  /** Decodes into a field value of type `f`, starting from `cur`. Returns [ok, value]. */
  strong(n: YNode, f: Field, cur: unknown): [boolean, unknown] {
    if (n.kind === 'alias') return this.withAlias(n, (an) => this.strong(an, f, cur));
    if (n.kind === 'scalar') {
      const { tag, value, bytes } = scalarValue(n);
      if (value === null) return [true, zeroOf(f)];
      switch (f.type) {
        case 'string':
          // a string field takes the raw scalar text, or the decoded bytes of a !!binary value
          if (tag !== TAG.BINARY) return [true, n.value];
          if (f.bytes && bytes && utf8Text(bytes) === null) return [true, bytes];
          return [true, (value as { v: string }).v];
        case 'int':
          if (value.t === 'int') return [true, value.v];
          if (value.t === 'float' && value.v < 2 ** 63) {
            if (Number.isNaN(value.v)) return [true, -(1n << 63n)];
            if (value.v === -Infinity || value.v < -9223372036854775808) return [true, -(1n << 63n)];
            return [true, BigInt(Math.trunc(value.v))];
          }
          return [false, cur];
        case 'bool':
          if (value.t === 'bool') return [true, value.v];
          return [false, cur];
        case 'float64':
          if (value.t === 'int') return [true, Number(value.v)];
          if (value.t === 'float') return [true, value.v];
          return [false, cur];
        default:
          return [false, cur];
      }
    }
    if (n.kind === 'sequence') {
      if (f.type !== '[]string' && f.type !== '[]struct') return [false, cur];
      const out = Array.isArray(cur) ? [...(cur as unknown[])] : [];
      const elem: Field = f.type === '[]string' ? { name: '', type: 'string' } : { name: '', type: 'struct', struct: f.struct! };
      for (const c of n.children) {
        const [ok, v] = this.strong(c, elem, zeroOf(elem));
        if (ok) out.push(v);
      }
      return [true, out];
    }
    // mapping
    if (f.type !== 'struct') return [false, cur];
    const obj = { ...((cur ?? zeroOf(f)) as Record<string, unknown>) };
    this.strongStructInto(n, f, obj);
    return [true, obj];
  }

  private strongStructInto(n: YNode & { kind: 'mapping' }, f: Field, obj: Record<string, unknown>) {
    let name = '';
    for (let i = 0; i < n.children.length; i += 2) {
      const kn = n.children[i]!;
      const vn = n.children[i + 1]!;
      if (isMerge(kn)) {
        this.strongMerge(vn, f, obj);
        continue;
      }
      const k = this.keyString(kn, name);
      if (k === null) continue;
      name = k;
      const field = f.struct!.find((x) => x.name === name);
      if (field) {
        const [, v] = this.strong(vn, field, obj[field.name]);
        obj[field.name] = v;
      }
    }
  }

  private keyString(kn: YNode, prev: string): string | null {
    if (kn.kind === 'alias') return this.withAlias(kn, (an) => this.keyString(an, prev));
    if (kn.kind !== 'scalar') return null;
    const { tag, value } = scalarValue(kn);
    if (value === null) return '';
    return tag === TAG.BINARY ? (value as { v: string }).v : kn.value;
  }

  private strongMerge(n: YNode, f: Field, obj: Record<string, unknown>) {
    const wantMap = 'map merge requires map or sequence of maps as the value';
    const into = (x: YNode): void => {
      if (x.kind === 'alias') return this.withAlias(x, (an) => into(an));
      if (x.kind === 'mapping') return this.strongStructInto(x, f, obj);
      if (x.kind === 'scalar' && scalarValue(x).value === null) {
        const z = zeroOf(f) as Record<string, unknown>;
        for (const k of Object.keys(obj)) obj[k] = z[k];
      }
    };
    switch (n.kind) {
      case 'mapping':
        into(n);
        break;
      case 'alias': {
        const an = this.doc.anchors.get(n.value);
        if (an && an.kind !== 'mapping') throw new YamlDecodeError(wantMap);
        into(n);
        break;
      }
      case 'sequence':
        for (let i = n.children.length - 1; i >= 0; i--) {
          const c = n.children[i]!;
          if (c.kind === 'alias') {
            const an = this.doc.anchors.get(c.value);
            if (an && an.kind !== 'mapping') throw new YamlDecodeError(wantMap);
          } else if (c.kind !== 'mapping') throw new YamlDecodeError(wantMap);
          into(c);
        }
        break;
      default:
        throw new YamlDecodeError(wantMap);
    }
  }
}

/** The Go zero value of a field type. */
export function zeroOf(f: Field): unknown {
  switch (f.type) {
    case 'string':
      return '';
    case 'int':
      return 0n;
    case 'float64':
      return 0;
    case 'bool':
      return false;
    case '[]string':
    case '[]struct':
      return null;
    case 'struct': {
      const o: Record<string, unknown> = {};
      for (const c of f.struct!) o[c.name] = zeroOf(c);
      return o;
    }
  }
}

/** Weak decoding of the document into a generic Go value. Throws YamlDecodeError. */
export function decodeWeak(doc: YDocument | null): W {
  if (!doc) return null;
  return new Decoder(doc).weak(doc.root);
}

/**
 * Strong decoding into the typed structure described by `root` (a struct
 * field). The result has every field, zero when absent. Throws YamlDecodeError.
 */
export function decodeStrong(doc: YDocument | null, root: Field): Record<string, unknown> {
  const zero = zeroOf(root) as Record<string, unknown>;
  if (!doc) return zero;
  const [ok, v] = new Decoder(doc).strong(doc.root, root, zero);
  if (!ok) return zero;
  return v as Record<string, unknown>;
}

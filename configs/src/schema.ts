/**
 * A small declarative schema checked against the YAML syntax tree, so that
 * every problem carries the line and column of the offending node. Pure.
 */
import { isMap, isScalar, isSeq, LineCounter, type Node, type YAMLMap } from 'yaml';
import type { ErrorDef } from '../../common/src/errors.js';
import { PROFILE_ERRORS } from './errors.js';
import type { ReportEntry, Severity } from './report.js';

export type Spec =
  | { kind: 'string'; pattern?: RegExp; enum?: readonly string[]; what?: string }
  | { kind: 'bool' }
  | { kind: 'int'; min: number; max: number }
  /** A byte size: an integer or a string such as 8GiB, 512M. */
  | { kind: 'size'; min: number; max: number }
  /**
   * A list. `key` names the field that identifies an item of a list of
   * objects (for add/remove in an extending profile); `single` takes one
   * scalar as a list of one (`overlay: dir`).
   */
  | { kind: 'list'; of: Spec; min?: number; unique?: boolean; key?: string; single?: boolean }
  | { kind: 'object'; fields: Record<string, Field> };

type StringSpec = Extract<Spec, { kind: 'string' }>;
type RangeSpec = Extract<Spec, { kind: 'int' | 'size' }>;
type ListSpec = Extract<Spec, { kind: 'list' }>;
type ObjectSpec = Extract<Spec, { kind: 'object' }>;

export interface Field {
  spec: Spec;
  required?: boolean;
  default?: unknown;
  doc?: string;
}

const sizeUnits: Record<string, number> = {
  '': 1, B: 1, K: 1024, KIB: 1024, KB: 1000, M: 1024 ** 2, MIB: 1024 ** 2, MB: 1000 ** 2,
  G: 1024 ** 3, GIB: 1024 ** 3, GB: 1000 ** 3, T: 1024 ** 4, TIB: 1024 ** 4, TB: 1000 ** 4,
};

/** Parses `8GiB`, `512M`, `4096` into bytes; undefined when it is not a size. */
export function parseByteSize(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(v.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? '').toUpperCase();
  const mul = sizeUnits[unit];
  if (mul === undefined) return undefined;
  return Math.round(Number(m[1]) * mul);
}

/** The file a syntax-tree node was read from (a merged profile holds nodes of several files). */
export interface Origin {
  file: string;
  lines: LineCounter;
  text: string;
}

export class Checker {
  readonly report: ReportEntry[] = [];
  constructor(
    readonly file: string,
    private readonly lines: LineCounter,
    private readonly text = '',
    /** Where each node came from, for the nodes of other files than `file`. */
    private readonly origins?: { get(node: Node): Origin | undefined },
  ) {}

  private originOf(node: Node | null | undefined): Origin {
    return (node ? this.origins?.get(node) : undefined) ?? { file: this.file, lines: this.lines, text: this.text };
  }

  pos(node: Node | null | undefined): { line: number; column: number } {
    const off = node?.range?.[0];
    if (off === undefined) return { line: 0, column: 0 };
    const p = this.originOf(node).lines.linePos(off);
    return { line: p.line, column: p.col };
  }

  /** Adds a report entry; `code` is an entry of PROFILE_ERRORS. */
  add(severity: Severity, code: ErrorDef, path: string, node: Node | null | undefined, message: string): void {
    this.report.push({ severity, code: code.code, path, file: this.originOf(node).file, ...this.pos(node), message });
  }

  /** Checks `node` against `spec`; returns the plain value (defaults filled) or undefined on error. */
  check(spec: Spec, node: Node | null | undefined, path: string, parent?: Node | null): unknown {
    const at = node ?? parent;
    switch (spec.kind) {
      case 'string':
        return this.checkString(spec, node, path, at);
      case 'bool':
        return this.checkBool(node, path, at);
      case 'int':
        return this.checkInt(spec, node, path, at);
      case 'size':
        return this.checkSize(spec, node, path, at);
      case 'list':
        return this.checkList(spec, node, path, at);
      case 'object':
        return this.checkObject(spec, node, path, at);
    }
  }

  private checkString(spec: StringSpec, node: Node | null | undefined, path: string, at: Node | null | undefined): string | undefined {
    if (!isScalar(node) || node.value === null || typeof node.value === 'object') {
      this.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, path, at, `want a string${spec.enum ? ` (one of ${spec.enum.join(', ')})` : ''}`);
      return undefined;
    }
    // A plain scalar that YAML 1.1 resolves to a number or boolean (e1000, 1.10, no)
    // is taken as written: strings never change under implicit typing.
    let v: string;
    if (typeof node.value === 'string') v = node.value;
    else if (node.type === 'PLAIN' && node.range && this.originOf(node).text) v = this.originOf(node).text.slice(node.range[0], node.range[1]).trim();
    // Not null, not an object, not a string: a number or a boolean.
    else v = `${node.value as number | boolean}`;
    if (spec.enum && !spec.enum.includes(v)) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, path, node, `'${v}' is not one of ${spec.enum.join(', ')}`);
      return undefined;
    }
    if (spec.pattern && !spec.pattern.test(v)) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, path, node, `'${v}' is not ${spec.what ?? `a value matching ${spec.pattern}`}`);
      return undefined;
    }
    return v;
  }

  private checkBool(node: Node | null | undefined, path: string, at: Node | null | undefined): boolean | undefined {
    if (!isScalar(node) || typeof node.value !== 'boolean') {
      this.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, path, at, 'want true or false');
      return undefined;
    }
    return node.value;
  }

  private checkInt(spec: RangeSpec, node: Node | null | undefined, path: string, at: Node | null | undefined): number | undefined {
    if (!isScalar(node) || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, path, at, 'want an integer');
      return undefined;
    }
    if (node.value < spec.min || node.value > spec.max) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, path, node, `${node.value} is out of range (${spec.min}-${spec.max})`);
      return undefined;
    }
    return node.value;
  }

  private checkSize(spec: RangeSpec, node: Node | null | undefined, path: string, at: Node | null | undefined): number | undefined {
    const n = isScalar(node) ? parseByteSize(node.value) : undefined;
    if (n === undefined) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, path, at, 'want a size such as 8GiB, 512MiB or a number of bytes');
      return undefined;
    }
    if (n < spec.min || n > spec.max) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, path, node, `${n} bytes is out of range (${spec.min}-${spec.max})`);
      return undefined;
    }
    return n;
  }

  private checkList(spec: ListSpec, node: Node | null | undefined, path: string, at: Node | null | undefined): unknown[] | undefined {
    if (spec.single && isScalar(node)) {
      const v = this.check(spec.of, node, path, at);
      return v === undefined ? undefined : [v];
    }
    if (!isSeq(node)) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, path, at, isMap(node) ? 'want a list, or (to change an inherited list) a mapping with only add: and remove: lists' : 'want a list');
      return undefined;
    }
    const out: unknown[] = [];
    let ok = true;
    const seen = new Set<string>();
    for (const [i, item] of node.items.entries()) {
      const v = this.check(spec.of, item as Node, `${path}[${i}]`, node);
      if (v === undefined) ok = false;
      else {
        if (spec.unique && typeof v === 'string') {
          if (seen.has(v)) this.add('warning', PROFILE_ERRORS.E_PROFILE_DUPLICATE, `${path}[${i}]`, item as Node, `'${v}' is listed twice`);
          seen.add(v);
        }
        out.push(v);
      }
    }
    if (spec.min !== undefined && node.items.length < spec.min) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_VALUE, path, node, `want at least ${spec.min} item(s)`);
      return undefined;
    }
    return ok ? out : undefined;
  }

  private checkObject(spec: ObjectSpec, node: Node | null | undefined, path: string, at: Node | null | undefined): Record<string, unknown> | undefined {
    if (!isMap(node)) {
      this.add('error', PROFILE_ERRORS.E_PROFILE_TYPE, path, at, 'want a mapping of keys');
      return undefined;
    }
    const present = this.knownKeys(spec, node, path);
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const [name, field] of Object.entries(spec.fields)) {
      const kpath = path ? `${path}.${name}` : name;
      const p = present.get(name);
      if (!p) {
        if (field.required) {
          this.add('error', PROFILE_ERRORS.E_PROFILE_MISSING, kpath, node, 'required key is missing');
          ok = false;
        } else if (field.default !== undefined) {
          out[name] = structuredClone(field.default);
        }
        continue;
      }
      const v = this.check(field.spec, p.value, kpath, p.key);
      if (v === undefined) ok = false;
      else out[name] = v;
    }
    return ok ? out : undefined;
  }

  /** The keys of a mapping that `spec` knows, by name; a warning for each other key. */
  private knownKeys(spec: ObjectSpec, node: YAMLMap, path: string): Map<string, { key: Node; value: Node | null }> {
    const present = new Map<string, { key: Node; value: Node | null }>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?';
      const kpath = path ? `${path}.${key}` : key;
      if (!(key in spec.fields)) {
        this.add('warning', PROFILE_ERRORS.E_PROFILE_UNKNOWN_KEY, kpath, pair.key as Node, `unknown key (known: ${Object.keys(spec.fields).join(', ')})`);
        continue;
      }
      present.set(key, { key: pair.key as Node, value: (pair.value as Node | null) ?? null });
    }
    return present;
  }
}

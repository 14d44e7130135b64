/**
 * Merging the layers of a profile chain (`extends`), on the YAML syntax trees
 * so that every value keeps the file, line and column it was written at. Pure.
 *
 * Rules, driven by the schema:
 * - a mapping (an object field) merges key by key, recursively;
 * - a list is replaced when the extending profile gives a list, and edited
 *   when it gives `{add: [...], remove: [...]}`: removals first (by value; a
 *   package `x` also removes `x=1.2`; items of a list of objects by their key
 *   field, e.g. a file by its path), then additions (an item whose key is
 *   already there replaces it in place, others are appended);
 * - anything else (a string, a number, a boolean) overrides.
 */
import { isMap, isScalar, isSeq, Pair, Scalar, YAMLMap, YAMLSeq, type Node } from 'yaml';
import type { ErrorDef } from '../../common/src/errors.js';
import { PROFILE_ERRORS } from './errors.js';
import type { Severity } from './report.js';
import type { Origin, Spec } from './schema.js';

/** Keys of the edit form of a list. */
export const LIST_EDIT_KEYS = ['add', 'remove'] as const;

/** Reports a problem at a node (the Checker's add). */
export type Reporter = (severity: Severity, code: ErrorDef, path: string, node: Node | null | undefined, message: string) => void;

/** Whether `n` is the edit form of a list: a mapping whose keys are only add and remove. */
export function isListEdit(n: Node | null | undefined): n is YAMLMap {
  return isMap(n) && n.items.length > 0 && n.items.every((p) => isScalar(p.key) && (LIST_EDIT_KEYS as readonly unknown[]).includes(p.key.value));
}

/** The text of a scalar that is a string, number or boolean; undefined for anything else. */
function scalarText(n: unknown): string | undefined {
  if (!isScalar(n)) return undefined;
  const v = n.value;
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
}

function keyName(p: Pair): string | undefined {
  return scalarText(p.key);
}

function get(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => keyName(p) === key);
}

/** The identity of a list item: a scalar's text, or the value of an object's key field. */
function identity(item: unknown, spec: Extract<Spec, { kind: 'list' }>): string | undefined {
  const text = scalarText(item);
  if (text !== undefined) return text;
  if (spec.key && isMap(item)) {
    const k = get(item, spec.key)?.value;
    if (isScalar(k) && typeof k.value === 'string') return k.value;
  }
  return undefined;
}

/** A list field's default of scalars as a sequence (what `remove:` takes from when no layer gave the list). */
function defaultList(spec: Spec, dflt: unknown): YAMLSeq | undefined {
  if (spec.kind !== 'list' || !Array.isArray(dflt) || !dflt.every((x) => typeof x === 'string')) return undefined;
  const seq = new YAMLSeq();
  seq.items = dflt.map((x: string) => new Scalar(x));
  return seq;
}

/** Whether removal `r` takes away item `id` (`x` also takes `x=1.2`, a pinned package). */
function removes(r: string, id: string): boolean {
  return id === r || id.startsWith(`${r}=`);
}

/** Where nodes were read from: looked up for the nodes of the layers, set for the nodes the merge makes. */
export interface Origins {
  get(node: Node): Origin | undefined;
  set(node: Node, origin: Origin): void;
}

export class Merger {
  constructor(
    private readonly origins: Origins,
    private readonly report: Reporter,
  ) {}

  /** A new node that reports as written where `like` was. */
  private placed<T extends YAMLMap | YAMLSeq>(node: T, like: Node): T {
    if (like.range) node.range = [...like.range];
    const o = this.origins.get(like);
    if (o) this.origins.set(node, o);
    return node;
  }

  /** `over` (a later layer) merged onto `base` (what the earlier layers give, if anything). */
  merge(spec: Spec, base: Node | null | undefined, over: Node | null | undefined, path: string): Node | null | undefined {
    if (over === undefined) return base;
    if (spec.kind === 'object' && isMap(over)) return this.mergeObject(spec, isMap(base) ? base : undefined, over, path);
    if (spec.kind === 'list' && isListEdit(over)) return this.editList(spec, isSeq(base) ? base : undefined, over, path);
    return over;
  }

  private mergeObject(spec: Extract<Spec, { kind: 'object' }>, base: YAMLMap | undefined, over: YAMLMap, path: string): YAMLMap {
    const out = this.placed(new YAMLMap(), over);
    const names: string[] = [];
    for (const p of [...(base?.items ?? []), ...over.items]) {
      const k = keyName(p);
      if (k !== undefined && !names.includes(k)) names.push(k);
    }
    for (const name of names) {
      const b = base ? get(base, name) : undefined;
      const o = get(over, name);
      const field = spec.fields[name];
      const kpath = path ? `${path}.${name}` : name;
      if (!o) out.items.push(b!);
      else if (!field) out.items.push(o);
      else {
        const inherited = (b?.value as Node | null | undefined) ?? defaultList(field.spec, field.default);
        out.items.push(new Pair(o.key, this.merge(field.spec, inherited, o.value as Node | null, kpath) ?? null));
      }
    }
    return out;
  }

  private editList(spec: Extract<Spec, { kind: 'list' }>, base: YAMLSeq | undefined, edit: YAMLMap, path: string): YAMLSeq {
    let items = [...(base?.items ?? [])];
    const add = get(edit, 'add')?.value as Node | null | undefined;
    const remove = get(edit, 'remove')?.value as Node | null | undefined;
    if (remove !== undefined) {
      if (!isSeq(remove)) this.report('error', PROFILE_ERRORS.E_PROFILE_TYPE, `${path}.remove`, remove ?? edit, 'want a list of the items to remove');
      else {
        for (const [i, r] of remove.items.entries()) {
          const what = scalarText(r);
          if (what === undefined) {
            this.report('error', PROFILE_ERRORS.E_PROFILE_TYPE, `${path}.remove[${i}]`, r as Node, spec.key ? `want the ${spec.key} of an item to remove` : 'want an item to remove');
            continue;
          }
          const before = items.length;
          items = items.filter((x) => {
            const id = identity(x, spec);
            return id === undefined || !removes(what, id);
          });
          if (items.length === before) {
            this.report('warning', PROFILE_ERRORS.E_PROFILE_REMOVE_MISSING, `${path}.remove[${i}]`, r as Node, `'${what}' is not in the inherited ${path}; nothing removed`);
          }
        }
      }
    }
    if (add !== undefined) {
      if (!isSeq(add)) this.report('error', PROFILE_ERRORS.E_PROFILE_TYPE, `${path}.add`, add ?? edit, 'want a list of the items to add');
      else {
        for (const a of add.items) {
          const id = identity(a, spec);
          const at = id === undefined ? -1 : items.findIndex((x) => identity(x, spec) === id);
          if (at >= 0) items[at] = a;
          else items.push(a);
        }
      }
    }
    const out = this.placed(new YAMLSeq(), edit);
    out.items = items;
    return out;
  }
}

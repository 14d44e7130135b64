/**
 * `--strict`: checks coreos-cloudinit v1.14.0 does not make. They only add
 * entries; the default output never changes. Pure.
 */
import { parseDocument, type YNode } from '../yaml/parser.js';
import { parseCloudConfigTyped, type Entry } from './validate.js';
import { goParseRequestURI } from './gostd.js';
import type { GoString } from '../yaml/decode.js';

function physicalLine(n: YNode): number {
  return n.line + 1;
}

function duplicateKeys(n: YNode, path: string, out: Entry[]) {
  if (n.kind === 'mapping') {
    const seen = new Map<string, YNode>();
    for (let i = 0; i < n.children.length; i += 2) {
      const k = n.children[i]!;
      const v = n.children[i + 1]!;
      const name = k.kind === 'scalar' ? k.value.replace(/-/g, '_') : null;
      if (name !== null) {
        const prev = seen.get(name);
        const p = path === '' ? name : `${path}.${name}`;
        if (prev) {
          out.push({ line: physicalLine(k), column: k.column + 1, kind: 'warning', code: 'W_DUPLICATE_KEY', path: p, message: `duplicate key "${name}" (first at line ${physicalLine(prev)}); the last one wins`, hint: 'remove or merge one of them' });
        } else seen.set(name, k);
        duplicateKeys(v, p, out);
      } else duplicateKeys(v, path, out);
    }
  } else if (n.kind === 'sequence') {
    n.children.forEach((c, i) => duplicateKeys(c, `${path}[${i}]`, out));
  }
}

/** Checks systemd unit file syntax: sections, Key=Value lines, comments, continuations. */
export function unitSyntax(content: string): { line: number; message: string }[] {
  const problems: { line: number; message: string }[] = [];
  const lines = content.split('\n');
  let section = false;
  let cont = false;
  lines.forEach((raw, i) => {
    const l = raw.trim();
    if (cont) {
      cont = l.endsWith('\\');
      return;
    }
    if (l === '' || l.startsWith('#') || l.startsWith(';')) return;
    if (l.startsWith('[')) {
      if (!/^\[[^[\]]+\]$/.test(l)) problems.push({ line: i + 1, message: `malformed section header ${JSON.stringify(l)}` });
      section = true;
      return;
    }
    if (!section) {
      problems.push({ line: i + 1, message: `assignment outside of a section: ${JSON.stringify(l)}` });
      return;
    }
    if (!/^[A-Za-z0-9_-]+\s*=/.test(l)) problems.push({ line: i + 1, message: `not a Key=Value line: ${JSON.stringify(l)}` });
    cont = l.endsWith('\\');
  });
  return problems;
}

export function strictChecks(data: Uint8Array): Entry[] {
  const out: Entry[] = [];
  let doc;
  try {
    doc = parseDocument(data);
  } catch {
    return out; // syntax errors are already reported
  }
  if (doc) duplicateKeys(doc.root, '', out);
  const typed = parseCloudConfigTyped(data);
  if ('error' in typed) return out;
  const c = typed.config as { coreos?: { etcd2?: { discovery?: string }; units?: { name?: string; content?: GoString; drop_ins?: { name?: string; content?: GoString }[] }[] } };
  const disc = c.coreos?.etcd2?.discovery;
  if (disc && !goParseRequestURI(disc)) {
    out.push({ line: 0, column: 0, kind: 'warning', code: 'W_ETCD2_DISCOVERY', path: 'coreos.etcd2.discovery', message: 'etcd2 discovery URL is not valid', hint: 'use an absolute URL such as https://discovery.etcd.io/<token>' });
  }
  (c.coreos?.units ?? []).forEach((u, i) => {
    const check = (content: GoString | undefined, what: string, path: string) => {
      if (!content || content.length === 0) return;
      // systemd reads unit files as UTF-8; bytes that are not (a !!binary content) are checked as decoded
      for (const p of unitSyntax(typeof content === 'string' ? content : content.toString('utf8'))) out.push({ line: 0, column: 0, kind: 'warning', code: 'W_UNIT_SYNTAX', path, message: `${what}: line ${p.line} of the content: ${p.message}`, hint: 'systemd ignores lines it cannot parse' });
    };
    check(u.content, `unit ${u.name ?? ''}`, `coreos.units[${i}].content`);
    (u.drop_ins ?? []).forEach((d, j) => check(d.content, `drop-in ${d.name ?? ''} of ${u.name ?? ''}`, `coreos.units[${i}].drop_ins[${j}].content`));
  });
  return out;
}

/**
 * libyaml's event parser (state machine), as vendored by coreos-cloudinit
 * v1.14.0, on top of scanner.ts; and go-yaml v1's composer, which turns the
 * events of the first document into a node tree. Errors carry the same
 * problem/context marks as the original. Pure.
 */
import { Scanner, Style, T, YamlSyntaxError, type Mark, type Token } from './scanner.js';

export const enum E {
  NONE,
  STREAM_START,
  STREAM_END,
  DOCUMENT_START,
  DOCUMENT_END,
  ALIAS,
  SCALAR,
  SEQUENCE_START,
  SEQUENCE_END,
  MAPPING_START,
  MAPPING_END,
}

export interface YEvent {
  type: E;
  start: Mark;
  end: Mark;
  anchor?: string;
  tag?: string;
  value?: string;
  implicit?: boolean;
  quotedImplicit?: boolean;
  style?: Style;
}

const enum S {
  STREAM_START,
  IMPLICIT_DOCUMENT_START,
  DOCUMENT_START,
  DOCUMENT_CONTENT,
  DOCUMENT_END,
  BLOCK_NODE,
  BLOCK_NODE_OR_INDENTLESS_SEQUENCE,
  FLOW_NODE,
  BLOCK_SEQUENCE_FIRST_ENTRY,
  BLOCK_SEQUENCE_ENTRY,
  INDENTLESS_SEQUENCE_ENTRY,
  BLOCK_MAPPING_FIRST_KEY,
  BLOCK_MAPPING_KEY,
  BLOCK_MAPPING_VALUE,
  FLOW_SEQUENCE_FIRST_ENTRY,
  FLOW_SEQUENCE_ENTRY,
  FLOW_SEQUENCE_ENTRY_MAPPING_KEY,
  FLOW_SEQUENCE_ENTRY_MAPPING_VALUE,
  FLOW_SEQUENCE_ENTRY_MAPPING_END,
  FLOW_MAPPING_FIRST_KEY,
  FLOW_MAPPING_KEY,
  FLOW_MAPPING_VALUE,
  FLOW_MAPPING_EMPTY_VALUE,
  END,
}

const dec = new TextDecoder();
const utf8 = (b: number[] | undefined): string => {
  if (!b || b.length === 0) return '';
  if (b.length > 4096) return dec.decode(new Uint8Array(b));
  for (const x of b) if (x >= 0x80) return dec.decode(new Uint8Array(b));
  return String.fromCharCode.apply(null, b);
};
const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A node's anchor and tag tokens as read (go-yaml's parse_node locals), and the token after them. */
interface NodeProperties {
  next: Token;
  start: Mark;
  end: Mark;
  anchor?: number[] | undefined;
  tagToken: boolean;
  tagHandle: number[];
  tagSuffix: number[];
  tagMark: Mark;
}

class YParser {
  private state: S = S.STREAM_START;
  private states: S[] = [];
  private marks: Mark[] = [];
  private tagDirectives: { handle: number[]; prefix: number[] }[] = [];
  private failed = false;

  constructor(private sc: Scanner) {}

  private err(problem: string, problemMark: Mark, context = '', contextMark?: Mark): never {
    this.failed = true;
    throw new YamlSyntaxError({ kind: 'parser', problem, problemMark, context, contextMark: contextMark ?? { index: 0, line: 0, column: 0 } });
  }

  private peek(): Token {
    const t = this.sc.peek();
    if (!t) throw new YamlSyntaxError(this.sc.problem!);
    return t;
  }

  /** Next event; throws YamlSyntaxError. Returns NONE after the end. */
  next(): YEvent {
    if (this.sc.streamEndProduced || this.failed || this.state === S.END) return { type: E.NONE, start: zero(), end: zero() };
    switch (this.state) {
      case S.STREAM_START:
        return this.streamStart();
      case S.IMPLICIT_DOCUMENT_START:
        return this.documentStart(true);
      case S.DOCUMENT_START:
        return this.documentStart(false);
      case S.DOCUMENT_CONTENT:
        return this.documentContent();
      case S.DOCUMENT_END:
        return this.documentEnd();
      case S.BLOCK_NODE:
        return this.node(true, false);
      case S.BLOCK_NODE_OR_INDENTLESS_SEQUENCE:
        return this.node(true, true);
      case S.FLOW_NODE:
        return this.node(false, false);
      case S.BLOCK_SEQUENCE_FIRST_ENTRY:
        return this.blockSequenceEntry(true);
      case S.BLOCK_SEQUENCE_ENTRY:
        return this.blockSequenceEntry(false);
      case S.INDENTLESS_SEQUENCE_ENTRY:
        return this.indentlessSequenceEntry();
      case S.BLOCK_MAPPING_FIRST_KEY:
        return this.blockMappingKey(true);
      case S.BLOCK_MAPPING_KEY:
        return this.blockMappingKey(false);
      case S.BLOCK_MAPPING_VALUE:
        return this.blockMappingValue();
      case S.FLOW_SEQUENCE_FIRST_ENTRY:
        return this.flowSequenceEntry(true);
      case S.FLOW_SEQUENCE_ENTRY:
        return this.flowSequenceEntry(false);
      case S.FLOW_SEQUENCE_ENTRY_MAPPING_KEY:
        return this.flowSequenceEntryMappingKey();
      case S.FLOW_SEQUENCE_ENTRY_MAPPING_VALUE:
        return this.flowSequenceEntryMappingValue();
      case S.FLOW_SEQUENCE_ENTRY_MAPPING_END:
        return this.flowSequenceEntryMappingEnd();
      case S.FLOW_MAPPING_FIRST_KEY:
        return this.flowMappingKey(true);
      case S.FLOW_MAPPING_KEY:
        return this.flowMappingKey(false);
      case S.FLOW_MAPPING_VALUE:
        return this.flowMappingValue(false);
      case S.FLOW_MAPPING_EMPTY_VALUE:
        return this.flowMappingValue(true);
      default:
        throw new Error('invalid parser state');
    }
  }

  private pop(): S {
    return this.states.pop()!;
  }

  private streamStart(): YEvent {
    const t = this.peek();
    if (t.type !== T.STREAM_START) this.err('did not find expected <stream-start>', t.start);
    this.state = S.IMPLICIT_DOCUMENT_START;
    this.sc.skipToken();
    return { type: E.STREAM_START, start: t.start, end: t.end };
  }

  private documentStart(implicit: boolean): YEvent {
    let t = this.peek();
    if (!implicit) {
      while (t.type === T.DOCUMENT_END) {
        this.sc.skipToken();
        t = this.peek();
      }
    }
    if (implicit && t.type !== T.VERSION_DIRECTIVE && t.type !== T.TAG_DIRECTIVE && t.type !== T.DOCUMENT_START && t.type !== T.STREAM_END) {
      this.processDirectives();
      this.states.push(S.DOCUMENT_END);
      this.state = S.BLOCK_NODE;
      return { type: E.DOCUMENT_START, start: t.start, end: t.end };
    }
    if (t.type !== T.STREAM_END) {
      const start = t.start;
      this.processDirectives();
      t = this.peek();
      if (t.type !== T.DOCUMENT_START) this.err('did not find expected <document start>', t.start);
      this.states.push(S.DOCUMENT_END);
      this.state = S.DOCUMENT_CONTENT;
      const ev: YEvent = { type: E.DOCUMENT_START, start, end: t.end };
      this.sc.skipToken();
      return ev;
    }
    this.state = S.END;
    this.sc.skipToken();
    return { type: E.STREAM_END, start: t.start, end: t.end };
  }

  private documentContent(): YEvent {
    const t = this.peek();
    if (t.type === T.VERSION_DIRECTIVE || t.type === T.TAG_DIRECTIVE || t.type === T.DOCUMENT_START || t.type === T.DOCUMENT_END || t.type === T.STREAM_END) {
      this.state = this.pop();
      return empty(t.start);
    }
    return this.node(true, false);
  }

  private documentEnd(): YEvent {
    const t = this.peek();
    const start = t.start;
    let end = t.start;
    if (t.type === T.DOCUMENT_END) {
      end = t.end;
      this.sc.skipToken();
    }
    this.tagDirectives = [];
    this.state = S.DOCUMENT_START;
    return { type: E.DOCUMENT_END, start, end };
  }

  private node(block: boolean, indentless: boolean): YEvent {
    const t0 = this.peek();
    if (t0.type === T.ALIAS) {
      this.state = this.pop();
      this.sc.skipToken();
      return { type: E.ALIAS, start: t0.start, end: t0.end, anchor: utf8(t0.value) };
    }
    const p = this.nodeProperties(t0);
    const tag = this.resolveTag(p);
    const t = p.next;
    const implicit = tag.length === 0;
    const start = p.start;
    const anchorS = p.anchor && p.anchor.length > 0 ? utf8(p.anchor) : undefined;
    const tagS = utf8(tag);
    if (indentless && t.type === T.BLOCK_ENTRY) {
      this.state = S.INDENTLESS_SEQUENCE_ENTRY;
      return { type: E.SEQUENCE_START, start, end: t.end, anchor: anchorS, tag: tagS, implicit };
    }
    if (t.type === T.SCALAR) {
      const plainImplicit = (tag.length === 0 && t.style === Style.PLAIN) || (tag.length === 1 && tag[0] === 0x21);
      const quotedImplicit = !plainImplicit && tag.length === 0;
      this.state = this.pop();
      this.sc.skipToken();
      return { type: E.SCALAR, start, end: t.end, anchor: anchorS, tag: tagS, value: utf8(t.value), implicit: plainImplicit, quotedImplicit, style: t.style };
    }
    const collection = this.collectionStart(t, block);
    if (collection) {
      this.state = collection.state;
      return { type: collection.event, start, end: t.end, anchor: anchorS, tag: tagS, implicit };
    }
    if ((p.anchor && p.anchor.length > 0) || tag.length > 0) {
      this.state = this.pop();
      return { type: E.SCALAR, start, end: p.end, anchor: anchorS, tag: tagS, value: '', implicit, quotedImplicit: false, style: Style.PLAIN };
    }
    return this.err('did not find expected node content', t.start, block ? 'while parsing a block node' : 'while parsing a flow node', start);
  }

  /** The anchor and tag of a node, in either order, and the token after them. */
  private nodeProperties(first: Token): NodeProperties {
    const p: NodeProperties = { next: first, start: first.start, end: first.start, tagToken: false, tagHandle: [], tagSuffix: [], tagMark: first.start };
    const takeAnchor = (t: Token) => {
      p.anchor = t.value;
      p.end = t.end;
      this.sc.skipToken();
      p.next = this.peek();
    };
    const takeTag = (t: Token) => {
      p.tagToken = true;
      p.tagHandle = t.value ?? [];
      p.tagSuffix = t.suffix ?? [];
      p.tagMark = t.start;
      p.end = t.end;
      this.sc.skipToken();
      p.next = this.peek();
    };
    if (first.type === T.ANCHOR) {
      takeAnchor(first);
      if (p.next.type === T.TAG) takeTag(p.next);
    } else if (first.type === T.TAG) {
      takeTag(first);
      if (p.next.type === T.ANCHOR) takeAnchor(p.next);
    }
    return p;
  }

  /** The full tag of a node: its suffix, prefixed by the %TAG directive of its handle. */
  private resolveTag(p: NodeProperties): number[] {
    if (!p.tagToken) return [];
    if (p.tagHandle.length === 0) return p.tagSuffix;
    const d = this.tagDirectives.find((x) => same(x.handle, p.tagHandle));
    const tag = d ? [...d.prefix, ...p.tagSuffix] : [];
    if (tag.length === 0) this.err('found undefined tag handle', p.tagMark, 'while parsing a node', p.start);
    return tag;
  }

  /** The collection a token starts (flow ones anywhere, block ones only in a block context). */
  private collectionStart(t: Token, block: boolean): { event: E.SEQUENCE_START | E.MAPPING_START; state: S } | null {
    if (t.type === T.FLOW_SEQUENCE_START) return { event: E.SEQUENCE_START, state: S.FLOW_SEQUENCE_FIRST_ENTRY };
    if (t.type === T.FLOW_MAPPING_START) return { event: E.MAPPING_START, state: S.FLOW_MAPPING_FIRST_KEY };
    if (block && t.type === T.BLOCK_SEQUENCE_START) return { event: E.SEQUENCE_START, state: S.BLOCK_SEQUENCE_FIRST_ENTRY };
    if (block && t.type === T.BLOCK_MAPPING_START) return { event: E.MAPPING_START, state: S.BLOCK_MAPPING_FIRST_KEY };
    return null;
  }

  private blockSequenceEntry(first: boolean): YEvent {
    if (first) {
      const t0 = this.peek();
      this.marks.push(t0.start);
      this.sc.skipToken();
    }
    let t = this.peek();
    if (t.type === T.BLOCK_ENTRY) {
      const mark = t.end;
      this.sc.skipToken();
      t = this.peek();
      if (t.type !== T.BLOCK_ENTRY && t.type !== T.BLOCK_END) {
        this.states.push(S.BLOCK_SEQUENCE_ENTRY);
        return this.node(true, false);
      }
      this.state = S.BLOCK_SEQUENCE_ENTRY;
      return empty(mark);
    }
    if (t.type === T.BLOCK_END) {
      this.state = this.pop();
      this.marks.pop();
      this.sc.skipToken();
      return { type: E.SEQUENCE_END, start: t.start, end: t.end };
    }
    const cm = this.marks.pop()!;
    return this.err("did not find expected '-' indicator", t.start, 'while parsing a block collection', cm);
  }

  private indentlessSequenceEntry(): YEvent {
    let t = this.peek();
    if (t.type === T.BLOCK_ENTRY) {
      const mark = t.end;
      this.sc.skipToken();
      t = this.peek();
      if (t.type !== T.BLOCK_ENTRY && t.type !== T.KEY && t.type !== T.VALUE && t.type !== T.BLOCK_END) {
        this.states.push(S.INDENTLESS_SEQUENCE_ENTRY);
        return this.node(true, false);
      }
      this.state = S.INDENTLESS_SEQUENCE_ENTRY;
      return empty(mark);
    }
    this.state = this.pop();
    return { type: E.SEQUENCE_END, start: t.start, end: t.start };
  }

  private blockMappingKey(first: boolean): YEvent {
    if (first) {
      const t0 = this.peek();
      this.marks.push(t0.start);
      this.sc.skipToken();
    }
    let t = this.peek();
    if (t.type === T.KEY) {
      const mark = t.end;
      this.sc.skipToken();
      t = this.peek();
      if (t.type !== T.KEY && t.type !== T.VALUE && t.type !== T.BLOCK_END) {
        this.states.push(S.BLOCK_MAPPING_VALUE);
        return this.node(true, true);
      }
      this.state = S.BLOCK_MAPPING_VALUE;
      return empty(mark);
    }
    if (t.type === T.BLOCK_END) {
      this.state = this.pop();
      this.marks.pop();
      this.sc.skipToken();
      return { type: E.MAPPING_END, start: t.start, end: t.end };
    }
    const cm = this.marks.pop()!;
    return this.err('did not find expected key', t.start, 'while parsing a block mapping', cm);
  }

  private blockMappingValue(): YEvent {
    let t = this.peek();
    if (t.type === T.VALUE) {
      const mark = t.end;
      this.sc.skipToken();
      t = this.peek();
      if (t.type !== T.KEY && t.type !== T.VALUE && t.type !== T.BLOCK_END) {
        this.states.push(S.BLOCK_MAPPING_KEY);
        return this.node(true, true);
      }
      this.state = S.BLOCK_MAPPING_KEY;
      return empty(mark);
    }
    this.state = S.BLOCK_MAPPING_KEY;
    return empty(t.start);
  }

  private flowSequenceEntry(first: boolean): YEvent {
    if (first) {
      const t0 = this.peek();
      this.marks.push(t0.start);
      this.sc.skipToken();
    }
    let t = this.peek();
    if (t.type !== T.FLOW_SEQUENCE_END) {
      if (!first) {
        if (t.type === T.FLOW_ENTRY) {
          this.sc.skipToken();
          t = this.peek();
        } else {
          const cm = this.marks.pop()!;
          this.err("did not find expected ',' or ']'", t.start, 'while parsing a flow sequence', cm);
        }
      }
      if (t.type === T.KEY) {
        this.state = S.FLOW_SEQUENCE_ENTRY_MAPPING_KEY;
        this.sc.skipToken();
        return { type: E.MAPPING_START, start: t.start, end: t.end, implicit: true, tag: '' };
      } else if (t.type !== T.FLOW_SEQUENCE_END) {
        this.states.push(S.FLOW_SEQUENCE_ENTRY);
        return this.node(false, false);
      }
    }
    this.state = this.pop();
    this.marks.pop();
    this.sc.skipToken();
    return { type: E.SEQUENCE_END, start: t.start, end: t.end };
  }

  private flowSequenceEntryMappingKey(): YEvent {
    const t = this.peek();
    if (t.type !== T.VALUE && t.type !== T.FLOW_ENTRY && t.type !== T.FLOW_SEQUENCE_END) {
      this.states.push(S.FLOW_SEQUENCE_ENTRY_MAPPING_VALUE);
      return this.node(false, false);
    }
    const mark = t.end;
    this.sc.skipToken();
    this.state = S.FLOW_SEQUENCE_ENTRY_MAPPING_VALUE;
    return empty(mark);
  }

  private flowSequenceEntryMappingValue(): YEvent {
    const t = this.peek();
    if (t.type === T.VALUE) {
      this.sc.skipToken();
      const t2 = this.peek();
      if (t2.type !== T.FLOW_ENTRY && t2.type !== T.FLOW_SEQUENCE_END) {
        this.states.push(S.FLOW_SEQUENCE_ENTRY_MAPPING_END);
        return this.node(false, false);
      }
      // go-yaml uses the outer token's start mark here
    }
    this.state = S.FLOW_SEQUENCE_ENTRY_MAPPING_END;
    return empty(t.start);
  }

  private flowSequenceEntryMappingEnd(): YEvent {
    const t = this.peek();
    this.state = S.FLOW_SEQUENCE_ENTRY;
    return { type: E.MAPPING_END, start: t.start, end: t.start };
  }

  private flowMappingKey(first: boolean): YEvent {
    if (first) {
      const t0 = this.peek();
      this.marks.push(t0.start);
      this.sc.skipToken();
    }
    let t = this.peek();
    if (t.type !== T.FLOW_MAPPING_END) {
      if (!first) {
        if (t.type === T.FLOW_ENTRY) {
          this.sc.skipToken();
          t = this.peek();
        } else {
          const cm = this.marks.pop()!;
          this.err("did not find expected ',' or '}'", t.start, 'while parsing a flow mapping', cm);
        }
      }
      if (t.type === T.KEY) {
        this.sc.skipToken();
        t = this.peek();
        if (t.type !== T.VALUE && t.type !== T.FLOW_ENTRY && t.type !== T.FLOW_MAPPING_END) {
          this.states.push(S.FLOW_MAPPING_VALUE);
          return this.node(false, false);
        }
        this.state = S.FLOW_MAPPING_VALUE;
        return empty(t.start);
      } else if (t.type !== T.FLOW_MAPPING_END) {
        this.states.push(S.FLOW_MAPPING_EMPTY_VALUE);
        return this.node(false, false);
      }
    }
    this.state = this.pop();
    this.marks.pop();
    this.sc.skipToken();
    return { type: E.MAPPING_END, start: t.start, end: t.end };
  }

  private flowMappingValue(isEmpty: boolean): YEvent {
    let t = this.peek();
    if (isEmpty) {
      this.state = S.FLOW_MAPPING_KEY;
      return empty(t.start);
    }
    if (t.type === T.VALUE) {
      this.sc.skipToken();
      t = this.peek();
      if (t.type !== T.FLOW_ENTRY && t.type !== T.FLOW_MAPPING_END) {
        this.states.push(S.FLOW_MAPPING_KEY);
        return this.node(false, false);
      }
    }
    this.state = S.FLOW_MAPPING_KEY;
    return empty(t.start);
  }

  private processDirectives(): void {
    let version = false;
    let t = this.peek();
    while (t.type === T.VERSION_DIRECTIVE || t.type === T.TAG_DIRECTIVE) {
      if (t.type === T.VERSION_DIRECTIVE) {
        if (version) this.err('found duplicate %YAML directive', t.start);
        if (t.major !== 1 || t.minor !== 1) this.err('found incompatible YAML document', t.start);
        version = true;
      } else {
        this.appendTagDirective(t.value ?? [], t.prefix ?? [], false, t.start);
      }
      this.sc.skipToken();
      t = this.peek();
    }
    this.appendTagDirective([0x21], [0x21], true, t.start);
    this.appendTagDirective([0x21, 0x21], [...Buffer.from('tag:yaml.org,2002:')], true, t.start);
  }

  private appendTagDirective(handle: number[], prefix: number[], allowDup: boolean, mark: Mark) {
    for (const d of this.tagDirectives) {
      if (same(d.handle, handle)) {
        if (allowDup) return;
        this.err('found duplicate %TAG directive', mark);
      }
    }
    this.tagDirectives.push({ handle: [...handle], prefix: [...prefix] });
  }
}

function zero(): Mark {
  return { index: 0, line: 0, column: 0 };
}

function empty(mark: Mark): YEvent {
  return { type: E.SCALAR, start: mark, end: mark, value: '', implicit: true, quotedImplicit: false, style: Style.PLAIN, tag: '' };
}

// ------------------------------------------------------------- composer

export type YNode =
  | { kind: 'scalar'; line: number; column: number; tag: string; value: string; implicit: boolean; anchor?: string }
  | { kind: 'alias'; line: number; column: number; value: string }
  | { kind: 'mapping'; line: number; column: number; tag: string; children: YNode[]; anchor?: string }
  | { kind: 'sequence'; line: number; column: number; tag: string; children: YNode[]; anchor?: string };

export interface YDocument {
  root: YNode;
  anchors: Map<string, YNode>;
}

/** go-yaml's "fail": the text after "YAML error: ". */
export class YamlDecodeError extends Error {}

/** Formats a syntax problem the way go-yaml's parser.fail() does. */
export function problemText(p: { problem: string; problemMark: Mark; contextMark: Mark }): string {
  let line = 0;
  if (p.problemMark.line !== 0) line = p.problemMark.line;
  else if (p.contextMark.line !== 0) line = p.contextMark.line;
  const where = line !== 0 ? `line ${line}: ` : '';
  return where + (p.problem.length > 0 ? p.problem : 'Unknown problem parsing YAML content');
}

/**
 * Parses the first document of `input` like go-yaml v1's Unmarshal does
 * before decoding (including reading one event past the document end).
 * `transform` is applied to every mapping key's text. Returns null for an
 * empty stream. Throws YamlDecodeError with go-yaml's message on a syntax error.
 */
/** go-yaml's decode.go parser: the events of one document into a node tree, anchors recorded by name. */
class TreeBuilder {
  private ev: YEvent = { type: E.NONE, start: zero(), end: zero() };
  readonly anchors = new Map<string, YNode>();
  private readonly p: YParser;
  private readonly transform: (k: string) => string;

  constructor(p: YParser, transform: (k: string) => string) {
    this.p = p;
    this.transform = transform;
  }

  get type(): E {
    return this.ev.type;
  }

  skip(): void {
    if (this.ev.type === E.STREAM_END) throw new YamlDecodeError('Attempted to go past the end of stream. Corrupted value?');
    try {
      this.ev = this.p.next();
    } catch (e) {
      if (e instanceof YamlSyntaxError) throw new YamlDecodeError(problemText(e.detail));
      throw e;
    }
  }

  parse(): YNode | null {
    switch (this.ev.type) {
      case E.SCALAR:
        return this.scalar(this.ev);
      case E.ALIAS: {
        const n: YNode = { kind: 'alias', line: this.ev.start.line, column: this.ev.start.column, value: this.ev.anchor ?? '' };
        this.skip();
        return n;
      }
      case E.MAPPING_START:
        return this.mapping(this.ev);
      case E.SEQUENCE_START:
        return this.sequence(this.ev);
      case E.DOCUMENT_START:
        return this.document();
      case E.STREAM_END:
        return null;
      default:
        throw new Error('Attempted to parse unknown event: ' + String(this.ev.type));
    }
  }

  private setAnchor(n: YNode, a: string | undefined): void {
    if (a !== undefined) this.anchors.set(a, n);
  }

  private scalar(ev: YEvent): YNode {
    const n: YNode = { kind: 'scalar', line: ev.start.line, column: ev.start.column, tag: ev.tag ?? '', value: ev.value ?? '', implicit: !!ev.implicit, anchor: ev.anchor };
    this.setAnchor(n, ev.anchor);
    this.skip();
    return n;
  }

  /** A mapping: keys (transformed) and values alternate in `children`. */
  private mapping(ev: YEvent): YNode {
    const n: YNode = { kind: 'mapping', line: ev.start.line, column: ev.start.column, tag: ev.tag ?? '', children: [], anchor: ev.anchor };
    this.setAnchor(n, ev.anchor);
    this.skip();
    while (this.type !== E.MAPPING_END) {
      const k = this.parse()!;
      if (k.kind === 'scalar' || k.kind === 'alias') k.value = this.transform(k.value);
      const v = this.parse()!;
      n.children.push(k, v);
    }
    this.skip();
    return n;
  }

  private sequence(ev: YEvent): YNode {
    const n: YNode = { kind: 'sequence', line: ev.start.line, column: ev.start.column, tag: ev.tag ?? '', children: [], anchor: ev.anchor };
    this.setAnchor(n, ev.anchor);
    this.skip();
    while (this.type !== E.SEQUENCE_END) n.children.push(this.parse()!);
    this.skip();
    return n;
  }

  private document(): YNode | null {
    this.skip();
    const child = this.parse();
    if (this.type !== E.DOCUMENT_END) throw new Error('Expected end of document event');
    this.skip();
    return child;
  }
}

export function parseDocument(input: Uint8Array, transform: (k: string) => string = (k) => k): YDocument | null {
  const bytes = input.length === 0 ? new Uint8Array([0x0a]) : input;
  const b = new TreeBuilder(new YParser(new Scanner(bytes)), transform);
  b.skip(); // stream start
  b.skip();
  if (b.type === E.STREAM_END) return null;
  const root = b.parse();
  if (!root) return null;
  return { root, anchors: b.anchors };
}

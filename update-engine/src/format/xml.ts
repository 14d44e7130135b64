/**
 * A small, strict XML reader for Omaha request and response bodies, and an
 * escaper for writing them. It has no entity expansion beyond the five
 * predefined entities and numeric character references, rejects DOCTYPE and
 * ENTITY declarations (so no external entities and no "billion laughs"), and
 * bounds input size, nesting depth and element count. Pure.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

export interface XmlLimits {
  maxBytes: number;
  maxDepth: number;
  maxElements: number;
  maxAttrs: number;
}

export const defaultXmlLimits: XmlLimits = { maxBytes: 256 * 1024, maxDepth: 16, maxElements: 2000, maxAttrs: 64 };

function bad(msg: string, pos: number): BasaltError {
  return new BasaltError(UE_ERRORS.E_XML_INVALID, `XML body: ${msg} at offset ${pos}`);
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const PREDEF: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeText(s: string, pos: number): string {
  return s.replace(/&([^;&\s]{1,10});|&/g, (m, ent: string | undefined) => {
    if (ent === undefined) throw bad("bare '&'", pos);
    if (ent in PREDEF) return PREDEF[ent]!;
    const num = /^#(x[0-9A-Fa-f]{1,6}|[0-9]{1,7})$/.exec(ent);
    if (num) {
      const cp = num[1]!.startsWith('x') ? parseInt(num[1]!.slice(1), 16) : parseInt(num[1]!, 10);
      if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw bad(`invalid character reference '${m}'`, pos);
      return String.fromCodePoint(cp);
    }
    throw bad(`entity '${m}' is not allowed (no entity expansion)`, pos);
  });
}

/**
 * One pass over an XML document: a cursor (`i`) over the input, the open
 * elements, and one method per construct (text, processing instruction,
 * comment, CDATA, closing tag, start tag with its attributes). Every bound of
 * XmlLimits is checked where the construct that could exceed it is read.
 */
class XmlReader {
  private i = 0;
  private readonly n: number;
  /** The open elements, innermost last. */
  private readonly stack: XmlElement[] = [];
  private root: XmlElement | undefined;
  /** Elements seen so far (for maxElements). */
  private count = 0;

  constructor(
    private readonly input: string,
    private readonly limits: XmlLimits,
  ) {
    this.n = input.length;
    if (input.charCodeAt(0) === 0xfeff) this.i = 1;
  }

  /** Reads the whole input and returns the root element. */
  document(): XmlElement {
    while (this.i < this.n) this.next();
    const open = this.top();
    if (open) throw bad(`unclosed element <${open.name}>`, this.n);
    if (!this.root) throw bad('no root element', 0);
    return this.root;
  }

  /** Reads one construct at the cursor. */
  private next(): void {
    const { input, i } = this;
    const lt = input.indexOf('<', i);
    const textEnd = lt === -1 ? this.n : lt;
    if (textEnd > i) this.text(textEnd);
    // From here on input[i] === '<'.
    else if (input.startsWith('<?', i)) this.processingInstruction();
    else if (input.startsWith('<!--', i)) this.comment();
    else if (input.startsWith('<![CDATA[', i)) this.cdata();
    else if (input.startsWith('<!', i)) throw bad('DOCTYPE and ENTITY declarations are not allowed', i);
    else if (input.startsWith('</', i)) this.closingTag();
    else this.startTag();
  }

  private top(): XmlElement | undefined {
    return this.stack[this.stack.length - 1];
  }

  private skipWs(): void {
    while (this.i < this.n && /\s/.test(this.input[this.i]!)) this.i++;
  }

  /** The name at the cursor, moving past it; undefined (cursor unmoved) when there is none. */
  private name(): string | undefined {
    NAME.lastIndex = this.i;
    const m = NAME.exec(this.input);
    if (m) this.i += m[0].length;
    return m?.[0];
  }

  /** Character data up to `end` (the next '<' or the end of the input). */
  private text(end: number): void {
    const raw = this.input.slice(this.i, end);
    const top = this.top();
    if (top) top.text += decodeText(raw, this.i);
    else if (raw.trim() !== '') throw bad('text outside the root element', this.i);
    this.i = end;
  }

  /** `<?xml ...?>` before the root element; any other processing instruction is an error. */
  private processingInstruction(): void {
    const end = this.input.indexOf('?>', this.i);
    if (end === -1) throw bad('unterminated processing instruction', this.i);
    const target = this.input.slice(this.i + 2, end).split(/\s/)[0];
    if (target !== 'xml' || this.root || this.stack.length) throw bad(`processing instruction '${target}' is not allowed`, this.i);
    this.i = end + 2;
  }

  private comment(): void {
    const end = this.input.indexOf('-->', this.i + 4);
    if (end === -1) throw bad('unterminated comment', this.i);
    this.i = end + 3;
  }

  private cdata(): void {
    const end = this.input.indexOf(']]>', this.i);
    if (end === -1) throw bad('unterminated CDATA', this.i);
    const top = this.top();
    if (!top) throw bad('CDATA outside the root element', this.i);
    top.text += this.input.slice(this.i + 9, end);
    this.i = end + 3;
  }

  private closingTag(): void {
    this.i += 2;
    const name = this.name();
    if (name === undefined) throw bad('bad closing tag', this.i);
    this.skipWs();
    if (this.input[this.i] !== '>') throw bad(`expected '>' in closing tag </${name}>`, this.i);
    this.i++;
    const top = this.stack.pop();
    if (top?.name !== name) throw bad(`closing tag </${name}> does not match <${top?.name ?? '(none)'}>`, this.i);
  }

  private startTag(): void {
    const start = this.i;
    this.i++;
    const name = this.name();
    if (name === undefined) throw bad('bad element name', this.i);
    const el: XmlElement = { name, attrs: Object.create(null) as Record<string, string>, children: [], text: '' };
    if (++this.count > this.limits.maxElements) throw new BasaltError(UE_ERRORS.E_XML_TOO_LARGE, `XML body has more than ${this.limits.maxElements} elements`);
    const selfClose = this.attributes(el, start);
    const parent = this.top();
    if (parent) parent.children.push(el);
    else if (this.root) throw bad('more than one root element', start);
    else this.root = el;
    if (!selfClose) {
      this.stack.push(el);
      if (this.stack.length > this.limits.maxDepth) throw bad(`nesting deeper than ${this.limits.maxDepth}`, start);
    }
  }

  /** The attributes of `el` up to the end of its start tag (at `start`); true when the tag is self-closing. */
  private attributes(el: XmlElement, start: number): boolean {
    let nattrs = 0;
    for (;;) {
      const before = this.i;
      this.skipWs();
      if (this.input.startsWith('/>', this.i)) {
        this.i += 2;
        return true;
      }
      if (this.input[this.i] === '>') {
        this.i++;
        return false;
      }
      if (this.i >= this.n) throw bad(`unterminated tag <${el.name}>`, start);
      if (this.i === before) throw bad(`expected whitespace before an attribute in <${el.name}>`, this.i);
      this.attribute(el, ++nattrs);
    }
  }

  /** One `name="value"` of `el`, its `ordinal`-th attribute. */
  private attribute(el: XmlElement, ordinal: number): void {
    const name = this.name();
    if (name === undefined) throw bad(`bad attribute in <${el.name}>`, this.i);
    this.skipWs();
    if (this.input[this.i] !== '=') throw bad(`attribute ${name} has no value`, this.i);
    this.i++;
    this.skipWs();
    const q = this.input[this.i];
    if (q !== '"' && q !== "'") throw bad(`attribute ${name} value is not quoted`, this.i);
    const end = this.input.indexOf(q, this.i + 1);
    if (end === -1) throw bad(`unterminated value of attribute ${name}`, this.i);
    const raw = this.input.slice(this.i + 1, end);
    if (raw.includes('<')) throw bad(`'<' in the value of attribute ${name}`, this.i);
    if (name in el.attrs) throw bad(`duplicate attribute ${name}`, this.i);
    if (ordinal > this.limits.maxAttrs) throw bad(`too many attributes in <${el.name}>`, this.i);
    el.attrs[name] = decodeText(raw, this.i);
    this.i = end + 1;
  }
}

/** Parses one XML document into its root element. Throws E_XML_INVALID / E_XML_TOO_LARGE. */
export function parseXml(input: string, limits: XmlLimits = defaultXmlLimits): XmlElement {
  if (Buffer.byteLength(input, 'utf8') > limits.maxBytes) {
    throw new BasaltError(UE_ERRORS.E_XML_TOO_LARGE, `XML body is larger than ${limits.maxBytes} bytes`);
  }
  return new XmlReader(input, limits).document();
}

/** Escapes text for an attribute value or element content. */
export function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Renders `<name a="v" ...>children</name>` (self-closing without children). Attributes with undefined values are left out. */
export function el(name: string, attrs: Record<string, string | number | boolean | undefined>, children: string[] = []): string {
  const a = Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlEscape(String(v))}"`)
    .join('');
  return children.length ? `<${name}${a}>${children.join('')}</${name}>` : `<${name}${a}/>`;
}

/** The children of `e` named `name`. */
export function kids(e: XmlElement | undefined, name: string): XmlElement[] {
  return e ? e.children.filter((c) => c.name === name) : [];
}

/** The first child of `e` named `name`. */
export function kid(e: XmlElement | undefined, name: string): XmlElement | undefined {
  return e?.children.find((c) => c.name === name);
}

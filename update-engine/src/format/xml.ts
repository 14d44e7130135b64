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

/** Parses one XML document into its root element. Throws E_XML_INVALID / E_XML_TOO_LARGE. */
export function parseXml(input: string, limits: XmlLimits = defaultXmlLimits): XmlElement {
  if (Buffer.byteLength(input, 'utf8') > limits.maxBytes) {
    throw new BasaltError(UE_ERRORS.E_XML_TOO_LARGE, `XML body is larger than ${limits.maxBytes} bytes`);
  }
  let i = 0;
  const n = input.length;
  if (input.charCodeAt(0) === 0xfeff) i = 1;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let count = 0;
  const skipWs = () => {
    while (i < n && /\s/.test(input[i]!)) i++;
  };
  while (i < n) {
    const lt = input.indexOf('<', i);
    const textEnd = lt === -1 ? n : lt;
    if (textEnd > i) {
      const raw = input.slice(i, textEnd);
      const top = stack[stack.length - 1];
      if (top) top.text += decodeText(raw, i);
      else if (raw.trim() !== '') throw bad('text outside the root element', i);
      i = textEnd;
      continue;
    }
    // input[i] === '<'
    if (input.startsWith('<?', i)) {
      const end = input.indexOf('?>', i);
      if (end === -1) throw bad('unterminated processing instruction', i);
      const target = input.slice(i + 2, end).split(/\s/)[0];
      if (target !== 'xml' || root || stack.length) throw bad(`processing instruction '${target}' is not allowed`, i);
      i = end + 2;
      continue;
    }
    if (input.startsWith('<!--', i)) {
      const end = input.indexOf('-->', i + 4);
      if (end === -1) throw bad('unterminated comment', i);
      i = end + 3;
      continue;
    }
    if (input.startsWith('<![CDATA[', i)) {
      const end = input.indexOf(']]>', i);
      if (end === -1) throw bad('unterminated CDATA', i);
      const top = stack[stack.length - 1];
      if (!top) throw bad('CDATA outside the root element', i);
      top.text += input.slice(i + 9, end);
      i = end + 3;
      continue;
    }
    if (input.startsWith('<!', i)) throw bad('DOCTYPE and ENTITY declarations are not allowed', i);
    if (input.startsWith('</', i)) {
      i += 2;
      NAME.lastIndex = i;
      const m = NAME.exec(input);
      if (!m) throw bad('bad closing tag', i);
      i += m[0].length;
      skipWs();
      if (input[i] !== '>') throw bad(`expected '>' in closing tag </${m[0]}>`, i);
      i++;
      const top = stack.pop();
      if (!top || top.name !== m[0]) throw bad(`closing tag </${m[0]}> does not match <${top?.name ?? '(none)'}>`, i);
      continue;
    }
    // start tag
    const start = i;
    i++;
    NAME.lastIndex = i;
    const m = NAME.exec(input);
    if (!m) throw bad('bad element name', i);
    i += m[0].length;
    const el: XmlElement = { name: m[0], attrs: Object.create(null) as Record<string, string>, children: [], text: '' };
    if (++count > limits.maxElements) throw new BasaltError(UE_ERRORS.E_XML_TOO_LARGE, `XML body has more than ${limits.maxElements} elements`);
    let selfClose = false;
    let nattrs = 0;
    for (;;) {
      const before = i;
      skipWs();
      if (input.startsWith('/>', i)) {
        i += 2;
        selfClose = true;
        break;
      }
      if (input[i] === '>') {
        i++;
        break;
      }
      if (i >= n) throw bad(`unterminated tag <${el.name}>`, start);
      if (i === before) throw bad(`expected whitespace before an attribute in <${el.name}>`, i);
      NAME.lastIndex = i;
      const an = NAME.exec(input);
      if (!an) throw bad(`bad attribute in <${el.name}>`, i);
      i += an[0].length;
      skipWs();
      if (input[i] !== '=') throw bad(`attribute ${an[0]} has no value`, i);
      i++;
      skipWs();
      const q = input[i];
      if (q !== '"' && q !== "'") throw bad(`attribute ${an[0]} value is not quoted`, i);
      const end = input.indexOf(q, i + 1);
      if (end === -1) throw bad(`unterminated value of attribute ${an[0]}`, i);
      const raw = input.slice(i + 1, end);
      if (raw.includes('<')) throw bad(`'<' in the value of attribute ${an[0]}`, i);
      if (an[0] in el.attrs) throw bad(`duplicate attribute ${an[0]}`, i);
      if (++nattrs > limits.maxAttrs) throw bad(`too many attributes in <${el.name}>`, i);
      el.attrs[an[0]] = decodeText(raw, i);
      i = end + 1;
    }
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(el);
    else if (root) throw bad('more than one root element', start);
    else root = el;
    if (!selfClose) {
      stack.push(el);
      if (stack.length > limits.maxDepth) throw bad(`nesting deeper than ${limits.maxDepth}`, start);
    }
  }
  if (stack.length) throw bad(`unclosed element <${stack[stack.length - 1]!.name}>`, n);
  if (!root) throw bad('no root element', 0);
  return root;
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

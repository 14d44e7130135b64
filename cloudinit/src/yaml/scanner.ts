/**
 * A YAML 1.1 scanner that reproduces, token for token and error for error,
 * the libyaml-derived scanner vendored by coreos-cloudinit v1.14.0
 * (github.com/coreos/yaml, a go-yaml v1 fork). The algorithm follows libyaml
 * (MIT); the code is written for Basalt. Error positions matter: the
 * validator reports `problem_mark.line` (0-based) of the first error.
 *
 * Pure: no I/O.
 */

export interface Mark {
  index: number;
  line: number;
  column: number;
}

export const enum T {
  NONE,
  STREAM_START,
  STREAM_END,
  VERSION_DIRECTIVE,
  TAG_DIRECTIVE,
  DOCUMENT_START,
  DOCUMENT_END,
  BLOCK_SEQUENCE_START,
  BLOCK_MAPPING_START,
  BLOCK_END,
  FLOW_SEQUENCE_START,
  FLOW_SEQUENCE_END,
  FLOW_MAPPING_START,
  FLOW_MAPPING_END,
  BLOCK_ENTRY,
  FLOW_ENTRY,
  KEY,
  VALUE,
  ALIAS,
  ANCHOR,
  TAG,
  SCALAR,
}

export const enum Style {
  ANY,
  PLAIN,
  SINGLE_QUOTED,
  DOUBLE_QUOTED,
  LITERAL,
  FOLDED,
}

export interface Token {
  type: T;
  start: Mark;
  end: Mark;
  /** Scalar text, anchor/alias name, tag handle, or %TAG handle (bytes). */
  value?: number[];
  suffix?: number[];
  prefix?: number[];
  style?: Style;
  major?: number;
  minor?: number;
}

interface SimpleKey {
  possible: boolean;
  required: boolean;
  tokenNumber: number;
  mark: Mark;
}

/** The first error met, as go-yaml would see it. */
export interface YamlProblem {
  kind: 'reader' | 'scanner' | 'parser';
  problem: string;
  problemMark: Mark;
  context: string;
  contextMark: Mark;
}

export class YamlSyntaxError extends Error {
  constructor(readonly detail: YamlProblem) {
    super(detail.problem);
  }
}

const zeroMark = (): Mark => ({ index: 0, line: 0, column: 0 });
const copyMark = (m: Mark): Mark => ({ index: m.index, line: m.line, column: m.column });

const RAW_CHUNK = 512;

function byteWidth(b: number): number {
  if ((b & 0x80) === 0) return 1;
  if ((b & 0xe0) === 0xc0) return 2;
  if ((b & 0xf0) === 0xe0) return 3;
  if ((b & 0xf8) === 0xf0) return 4;
  return 0;
}

/**
 * Input reader: decodes the raw bytes in 512-byte chunks, exactly when the
 * scanner asks for more characters, so that invalid UTF-8 or control
 * characters are reported at the same moment as in go-yaml.
 */
/** The one-character escapes of a double-quoted scalar and their UTF-8 bytes. */
const SIMPLE_ESCAPES = new Map<string, number[]>([
  ['0', [0]],
  ['a', [7]],
  ['b', [8]],
  ['t', [9]],
  ['\t', [9]],
  ['n', [10]],
  ['v', [11]],
  ['f', [12]],
  ['r', [13]],
  ['e', [0x1b]],
  [' ', [0x20]],
  ['"', [0x22]],
  ["'", [0x27]],
  ['\\', [0x5c]],
  ['N', [0xc2, 0x85]],
  ['_', [0xc2, 0xa0]],
  ['L', [0xe2, 0x80, 0xa8]],
  ['P', [0xe2, 0x80, 0xa9]],
]);

/** What lies between two pieces of a quoted scalar (go-yaml's whitespaces, leading_break, trailing_breaks). */
interface FlowGap {
  leadingBreak: number[];
  trailingBreaks: number[];
  whitespaces: number[];
}

/** Folds a gap into the scalar: one line break becomes a space, more keep all but the first; blanks within a line stay. */
function foldFlowGap(s: number[], gap: FlowGap, leadingBlanks: boolean): void {
  if (!leadingBlanks) {
    s.push(...gap.whitespaces);
    gap.whitespaces = [];
    return;
  }
  if (gap.leadingBreak.length > 0 && gap.leadingBreak[0] === 0x0a) {
    if (gap.trailingBreaks.length === 0) s.push(0x20);
    else s.push(...gap.trailingBreaks);
  } else {
    s.push(...gap.leadingBreak, ...gap.trailingBreaks);
  }
  gap.trailingBreaks = [];
  gap.leadingBreak = [];
}

export class Scanner {
  /** Decoded text (UTF-8 bytes) followed by a NUL and padding. */
  private buf: Uint8Array;
  pos = 0;
  unread = 0;
  mark: Mark = zeroMark();
  problem: YamlProblem | null = null;

  // reader state
  private raw: Uint8Array;
  private rawStart = 0; // first raw byte not yet decoded
  private rawEnd = 0; // end of the raw bytes "read" so far
  private inputPos = 0; // how much of the input the read handler has delivered
  private eof = false;
  private encodingKnown = false;
  private decodedLen = 0; // bytes written to buf

  // scanner state
  streamStartProduced = false;
  streamEndProduced = false;
  private flowLevel = 0;
  private tokens: Token[] = [];
  private head = 0;
  tokensParsed = 0;
  private tokenAvailable = false;
  private indent = -1;
  private indents: number[] = [];
  private simpleKeyAllowed = false;
  private simpleKeys: SimpleKey[] = [];

  constructor(input: Uint8Array) {
    this.raw = input;
    this.buf = new Uint8Array(input.length + 16);
  }

  // ---------------------------------------------------------------- reader

  private fail(kind: YamlProblem['kind'], problem: string, context = '', contextMark: Mark = zeroMark(), problemMark?: Mark): false {
    this.problem = { kind, problem, problemMark: problemMark ?? (kind === 'reader' ? zeroMark() : copyMark(this.mark)), context, contextMark: copyMark(contextMark) };
    return false;
  }

  private readerError(problem: string): false {
    return this.fail('reader', problem);
  }

  /** go-yaml's update_raw_buffer with the string read handler (512-byte raw chunks). */
  private updateRaw(): void {
    const len = this.rawEnd - this.rawStart;
    if (this.rawStart === this.windowBase && len === RAW_CHUNK) return;
    if (this.eof) return;
    const avail = this.raw.length - this.inputPos;
    if (avail === 0) {
      this.eof = true;
      return;
    }
    const n = Math.min(RAW_CHUNK - len, avail);
    this.inputPos += n;
    this.rawEnd += n;
    this.windowBase = this.rawStart;
  }
  private windowBase = 0;

  update(length: number): boolean {
    if (this.eof && this.rawStart === this.rawEnd) return true;
    if (this.unread >= length) return true;
    if (!this.encodingKnown) {
      while (!this.eof && this.rawEnd - this.rawStart < 3) {
        this.updateRaw();
      }
      const r = this.raw;
      const p = this.rawStart;
      if (this.rawEnd - p >= 3 && r[p] === 0xef && r[p + 1] === 0xbb && r[p + 2] === 0xbf) this.rawStart += 3;
      this.encodingKnown = true;
    }
    let first = true;
    while (this.unread < length) {
      if (!first || this.rawStart === this.rawEnd) this.updateRaw();
      first = false;
      while (this.rawStart !== this.rawEnd) {
        const r = this.raw;
        const p = this.rawStart;
        const rawUnread = this.rawEnd - p;
        const octet = r[p]!;
        const width = byteWidth(octet);
        if (width === 0) return this.readerError('invalid leading UTF-8 octet');
        if (width > rawUnread) {
          if (this.eof) return this.readerError('incomplete UTF-8 octet sequence');
          break;
        }
        let value = width === 1 ? octet & 0x7f : width === 2 ? octet & 0x1f : width === 3 ? octet & 0x0f : octet & 0x07;
        for (let k = 1; k < width; k++) {
          const o = r[p + k]!;
          if ((o & 0xc0) !== 0x80) return this.readerError('invalid trailing UTF-8 octet');
          value = (value << 6) + (o & 0x3f);
        }
        if (!(width === 1 || (width === 2 && value >= 0x80) || (width === 3 && value >= 0x800) || (width === 4 && value >= 0x10000))) {
          return this.readerError('invalid length of a UTF-8 sequence');
        }
        if ((value >= 0xd800 && value <= 0xdfff) || value > 0x10ffff) return this.readerError('invalid Unicode character');
        if (
          !(
            value === 0x09 ||
            value === 0x0a ||
            value === 0x0d ||
            (value >= 0x20 && value <= 0x7e) ||
            value === 0x85 ||
            (value >= 0xa0 && value <= 0xd7ff) ||
            (value >= 0xe000 && value <= 0xfffd) ||
            (value >= 0x10000 && value <= 0x10ffff)
          )
        ) {
          return this.readerError('control characters are not allowed');
        }
        for (let k = 0; k < width; k++) this.buf[this.decodedLen++] = r[p + k]!;
        this.rawStart += width;
        this.unread++;
      }
      if (this.eof) {
        this.buf[this.decodedLen++] = 0;
        this.unread++;
        break;
      }
    }
    return true;
  }

  private cache(n: number): boolean {
    return this.unread >= n || this.update(n);
  }

  // ------------------------------------------------------------- char tests
  private b(i = 0): number {
    return this.buf[this.pos + i] ?? 0;
  }
  private isZ(i = 0) {
    return this.b(i) === 0;
  }
  private isBlank(i = 0) {
    const c = this.b(i);
    return c === 0x20 || c === 0x09;
  }
  private isSpace(i = 0) {
    return this.b(i) === 0x20;
  }
  private isTab(i = 0) {
    return this.b(i) === 0x09;
  }
  private isBreak(i = 0) {
    const c = this.b(i);
    return c === 0x0d || c === 0x0a || (c === 0xc2 && this.b(i + 1) === 0x85) || (c === 0xe2 && this.b(i + 1) === 0x80 && (this.b(i + 2) === 0xa8 || this.b(i + 2) === 0xa9));
  }
  private isBreakZ(i = 0) {
    return this.isBreak(i) || this.isZ(i);
  }
  private isBlankZ(i = 0) {
    return this.isBlank(i) || this.isBreakZ(i);
  }
  private isAlpha(i = 0) {
    const c = this.b(i);
    return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2d;
  }
  private isDigit(i = 0) {
    const c = this.b(i);
    return c >= 0x30 && c <= 0x39;
  }
  private isHex(i = 0) {
    const c = this.b(i);
    return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
  }
  private asHex(i = 0) {
    const c = this.b(i);
    if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
    if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
    return c - 0x30;
  }
  private ch(i = 0): string {
    return String.fromCharCode(this.b(i));
  }

  // ------------------------------------------------------------- movement
  private skip() {
    this.mark.index++;
    this.mark.column++;
    this.unread--;
    this.pos += byteWidth(this.b()) || 1;
  }
  private skipLine() {
    if (this.b() === 0x0d && this.b(1) === 0x0a) {
      this.mark.index += 2;
      this.mark.column = 0;
      this.mark.line++;
      this.unread -= 2;
      this.pos += 2;
    } else if (this.isBreak()) {
      this.mark.index++;
      this.mark.column = 0;
      this.mark.line++;
      this.unread--;
      this.pos += byteWidth(this.b()) || 1;
    }
  }
  private read(s: number[]) {
    const w = byteWidth(this.b()) || 1;
    for (let k = 0; k < w; k++) s.push(this.buf[this.pos + k]!);
    this.pos += w;
    this.mark.index++;
    this.mark.column++;
    this.unread--;
  }
  private readLine(s: number[]) {
    const c = this.b();
    if (c === 0x0d && this.b(1) === 0x0a) {
      s.push(0x0a);
      this.pos += 2;
      this.mark.index++;
      this.unread--;
    } else if (c === 0x0d || c === 0x0a) {
      s.push(0x0a);
      this.pos += 1;
    } else if (c === 0xc2 && this.b(1) === 0x85) {
      s.push(0x0a);
      this.pos += 2;
    } else if (c === 0xe2 && this.b(1) === 0x80 && (this.b(2) === 0xa8 || this.b(2) === 0xa9)) {
      s.push(this.b(), this.b(1), this.b(2));
      this.pos += 3;
    } else return;
    this.mark.index++;
    this.mark.column = 0;
    this.mark.line++;
    this.unread--;
  }

  // ---------------------------------------------------------------- tokens

  /** Returns the next token without consuming it, or null on error. */
  peek(): Token | null {
    if (this.tokenAvailable || this.fetchMoreTokens()) return this.tokens[this.head]!;
    return null;
  }

  skipToken() {
    this.tokenAvailable = false;
    this.tokensParsed++;
    this.streamEndProduced = this.tokens[this.head]!.type === T.STREAM_END;
    this.head++;
    if (this.head > 1024) {
      // drop consumed tokens (positions are relative to head)
      this.tokens.splice(0, this.head);
      this.head = 0;
    }
  }

  private insert(pos: number, tok: Token) {
    if (pos < 0) this.tokens.push(tok);
    else this.tokens.splice(this.head + pos, 0, tok);
  }

  private fetchMoreTokens(): boolean {
    for (;;) {
      let need = false;
      if (this.head === this.tokens.length) need = true;
      else {
        if (!this.staleSimpleKeys()) return false;
        for (const k of this.simpleKeys) {
          if (k.possible && k.tokenNumber === this.tokensParsed) {
            need = true;
            break;
          }
        }
      }
      if (!need) break;
      if (!this.fetchNextToken()) return false;
    }
    this.tokenAvailable = true;
    return true;
  }

  private fetchNextToken(): boolean {
    if (!this.cache(1)) return false;
    if (!this.streamStartProduced) return this.fetchStreamStart();
    if (!this.scanToNextToken()) return false;
    if (!this.staleSimpleKeys()) return false;
    this.unrollIndent(this.mark.column);
    if (!this.cache(4)) return false;
    if (this.isZ()) return this.fetchStreamEnd();
    const c = this.ch();
    if (this.mark.column === 0 && c === '%') return this.fetchDirective();
    if (this.mark.column === 0 && c === '-' && this.ch(1) === '-' && this.ch(2) === '-' && this.isBlankZ(3)) return this.fetchDocumentIndicator(T.DOCUMENT_START);
    if (this.mark.column === 0 && c === '.' && this.ch(1) === '.' && this.ch(2) === '.' && this.isBlankZ(3)) return this.fetchDocumentIndicator(T.DOCUMENT_END);
    if (c === '[') return this.fetchFlowCollectionStart(T.FLOW_SEQUENCE_START);
    if (c === '{') return this.fetchFlowCollectionStart(T.FLOW_MAPPING_START);
    if (c === ']') return this.fetchFlowCollectionEnd(T.FLOW_SEQUENCE_END);
    if (c === '}') return this.fetchFlowCollectionEnd(T.FLOW_MAPPING_END);
    if (c === ',') return this.fetchFlowEntry();
    if (c === '-' && this.isBlankZ(1)) return this.fetchBlockEntry();
    if (c === '?' && (this.flowLevel > 0 || this.isBlankZ(1))) return this.fetchKey();
    if (c === ':' && (this.flowLevel > 0 || this.isBlankZ(1))) return this.fetchValue();
    if (c === '*') return this.fetchAnchor(T.ALIAS);
    if (c === '&') return this.fetchAnchor(T.ANCHOR);
    if (c === '!') return this.fetchTag();
    if (c === '|' && this.flowLevel === 0) return this.fetchBlockScalar(true);
    if (c === '>' && this.flowLevel === 0) return this.fetchBlockScalar(false);
    if (c === "'") return this.fetchFlowScalar(true);
    if (c === '"') return this.fetchFlowScalar(false);
    if (
      !(this.isBlankZ() || '-?:,[]{}#&*!|>\'"%@`'.includes(c)) ||
      (c === '-' && !this.isBlank(1)) ||
      (this.flowLevel === 0 && (c === '?' || c === ':') && !this.isBlankZ(1))
    ) {
      return this.fetchPlainScalar();
    }
    return this.fail('scanner', 'found character that cannot start any token', 'while scanning for the next token', this.mark);
  }

  private staleSimpleKeys(): boolean {
    for (const k of this.simpleKeys) {
      if (k.possible && (k.mark.line < this.mark.line || k.mark.index + 1024 < this.mark.index)) {
        if (k.required) return this.fail('scanner', "could not find expected ':'", 'while scanning a simple key', k.mark);
        k.possible = false;
      }
    }
    return true;
  }

  private saveSimpleKey(): boolean {
    const required = this.flowLevel === 0 && this.indent === this.mark.column;
    if (this.simpleKeyAllowed) {
      const key: SimpleKey = { possible: true, required, tokenNumber: this.tokensParsed + (this.tokens.length - this.head), mark: copyMark(this.mark) };
      if (!this.removeSimpleKey()) return false;
      this.simpleKeys[this.simpleKeys.length - 1] = key;
    }
    return true;
  }

  private removeSimpleKey(): boolean {
    const k = this.simpleKeys[this.simpleKeys.length - 1]!;
    if (k.possible && k.required) return this.fail('scanner', "could not find expected ':'", 'while scanning a simple key', k.mark);
    k.possible = false;
    return true;
  }

  private increaseFlowLevel() {
    this.simpleKeys.push({ possible: false, required: false, tokenNumber: 0, mark: zeroMark() });
    this.flowLevel++;
  }
  private decreaseFlowLevel() {
    if (this.flowLevel > 0) {
      this.flowLevel--;
      this.simpleKeys.pop();
    }
  }

  private rollIndent(column: number, number: number, type: T, mark: Mark) {
    if (this.flowLevel > 0) return;
    if (this.indent < column) {
      this.indents.push(this.indent);
      this.indent = column;
      const tok: Token = { type, start: copyMark(mark), end: copyMark(mark) };
      if (number > -1) number -= this.tokensParsed;
      this.insert(number, tok);
    }
  }

  private unrollIndent(column: number) {
    if (this.flowLevel > 0) return;
    while (this.indent > column) {
      this.insert(-1, { type: T.BLOCK_END, start: copyMark(this.mark), end: copyMark(this.mark) });
      this.indent = this.indents.pop()!;
    }
  }

  private fetchStreamStart(): boolean {
    this.indent = -1;
    this.simpleKeys.push({ possible: false, required: false, tokenNumber: 0, mark: zeroMark() });
    this.simpleKeyAllowed = true;
    this.streamStartProduced = true;
    this.insert(-1, { type: T.STREAM_START, start: copyMark(this.mark), end: copyMark(this.mark) });
    return true;
  }

  private fetchStreamEnd(): boolean {
    if (this.mark.column !== 0) {
      this.mark.column = 0;
      this.mark.line++;
    }
    this.unrollIndent(-1);
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    this.insert(-1, { type: T.STREAM_END, start: copyMark(this.mark), end: copyMark(this.mark) });
    return true;
  }

  private fetchDirective(): boolean {
    this.unrollIndent(-1);
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    const tok = this.scanDirective();
    if (!tok) return false;
    this.insert(-1, tok);
    return true;
  }

  private fetchDocumentIndicator(type: T): boolean {
    this.unrollIndent(-1);
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    const start = copyMark(this.mark);
    this.skip();
    this.skip();
    this.skip();
    this.insert(-1, { type, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchFlowCollectionStart(type: T): boolean {
    if (!this.saveSimpleKey()) return false;
    this.increaseFlowLevel();
    this.simpleKeyAllowed = true;
    const start = copyMark(this.mark);
    this.skip();
    this.insert(-1, { type, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchFlowCollectionEnd(type: T): boolean {
    if (!this.removeSimpleKey()) return false;
    this.decreaseFlowLevel();
    this.simpleKeyAllowed = false;
    const start = copyMark(this.mark);
    this.skip();
    this.insert(-1, { type, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchFlowEntry(): boolean {
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = true;
    const start = copyMark(this.mark);
    this.skip();
    this.insert(-1, { type: T.FLOW_ENTRY, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchBlockEntry(): boolean {
    if (this.flowLevel === 0) {
      if (!this.simpleKeyAllowed) return this.fail('scanner', 'block sequence entries are not allowed in this context', '', this.mark);
      this.rollIndent(this.mark.column, -1, T.BLOCK_SEQUENCE_START, this.mark);
    }
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = true;
    const start = copyMark(this.mark);
    this.skip();
    this.insert(-1, { type: T.BLOCK_ENTRY, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchKey(): boolean {
    if (this.flowLevel === 0) {
      if (!this.simpleKeyAllowed) return this.fail('scanner', 'mapping keys are not allowed in this context', '', this.mark);
      this.rollIndent(this.mark.column, -1, T.BLOCK_MAPPING_START, this.mark);
    }
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = this.flowLevel === 0;
    const start = copyMark(this.mark);
    this.skip();
    this.insert(-1, { type: T.KEY, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchValue(): boolean {
    const k = this.simpleKeys[this.simpleKeys.length - 1]!;
    if (k.possible) {
      this.insert(k.tokenNumber - this.tokensParsed, { type: T.KEY, start: copyMark(k.mark), end: copyMark(k.mark) });
      this.rollIndent(k.mark.column, k.tokenNumber, T.BLOCK_MAPPING_START, k.mark);
      k.possible = false;
      this.simpleKeyAllowed = false;
    } else {
      if (this.flowLevel === 0) {
        if (!this.simpleKeyAllowed) return this.fail('scanner', 'mapping values are not allowed in this context', '', this.mark);
        this.rollIndent(this.mark.column, -1, T.BLOCK_MAPPING_START, this.mark);
      }
      this.simpleKeyAllowed = this.flowLevel === 0;
    }
    const start = copyMark(this.mark);
    this.skip();
    this.insert(-1, { type: T.VALUE, start, end: copyMark(this.mark) });
    return true;
  }

  private fetchAnchor(type: T): boolean {
    if (!this.saveSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    const tok = this.scanAnchor(type);
    if (!tok) return false;
    this.insert(-1, tok);
    return true;
  }

  private fetchTag(): boolean {
    if (!this.saveSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    const tok = this.scanTag();
    if (!tok) return false;
    this.insert(-1, tok);
    return true;
  }

  private fetchBlockScalar(literal: boolean): boolean {
    if (!this.removeSimpleKey()) return false;
    this.simpleKeyAllowed = true;
    const tok = this.scanBlockScalar(literal);
    if (!tok) return false;
    this.insert(-1, tok);
    return true;
  }

  private fetchFlowScalar(single: boolean): boolean {
    if (!this.saveSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    const tok = this.scanFlowScalar(single);
    if (!tok) return false;
    this.insert(-1, tok);
    return true;
  }

  private fetchPlainScalar(): boolean {
    if (!this.saveSimpleKey()) return false;
    this.simpleKeyAllowed = false;
    const tok = this.scanPlainScalar();
    if (!tok) return false;
    this.insert(-1, tok);
    return true;
  }

  private scanToNextToken(): boolean {
    for (;;) {
      if (!this.cache(1)) return false;
      if (this.mark.column === 0 && this.buf[0] === 0xef && this.buf[1] === 0xbb && this.buf[2] === 0xbf) this.skip();
      if (!this.cache(1)) return false;
      while (this.ch() === ' ' || ((this.flowLevel > 0 || !this.simpleKeyAllowed) && this.ch() === '\t')) {
        this.skip();
        if (!this.cache(1)) return false;
      }
      if (this.ch() === '#') {
        while (!this.isBreakZ()) {
          this.skip();
          if (!this.cache(1)) return false;
        }
      }
      if (this.isBreak()) {
        if (!this.cache(2)) return false;
        this.skipLine();
        if (this.flowLevel === 0) this.simpleKeyAllowed = true;
      } else break;
    }
    return true;
  }

  // ------------------------------------------------------------ directives
  private scanDirective(): Token | null {
    const start = copyMark(this.mark);
    this.skip();
    const name = this.scanDirectiveName(start);
    if (name === null) return null;
    let tok: Token;
    if (name === 'YAML') {
      const major = this.scanVersionValue(start);
      if (major === null) return null;
      tok = { type: T.VERSION_DIRECTIVE, start, end: copyMark(this.mark), major: major[0], minor: major[1] };
    } else if (name === 'TAG') {
      const hp = this.scanTagDirectiveValue(start);
      if (!hp) return null;
      tok = { type: T.TAG_DIRECTIVE, start, end: copyMark(this.mark), value: hp[0], prefix: hp[1] };
    } else {
      this.fail('scanner', 'found uknown directive name', 'while scanning a directive', start);
      return null;
    }
    if (!this.cache(1)) return null;
    while (this.isBlank()) {
      this.skip();
      if (!this.cache(1)) return null;
    }
    if (this.ch() === '#') {
      while (!this.isBreakZ()) {
        this.skip();
        if (!this.cache(1)) return null;
      }
    }
    if (!this.isBreakZ()) {
      this.fail('scanner', 'did not find expected comment or line break', 'while scanning a directive', start);
      return null;
    }
    if (this.isBreak()) {
      if (!this.cache(2)) return null;
      this.skipLine();
    }
    return tok;
  }

  private scanDirectiveName(start: Mark): string | null {
    if (!this.cache(1)) return null;
    const s: number[] = [];
    while (this.isAlpha()) {
      this.read(s);
      if (!this.cache(1)) return null;
    }
    if (s.length === 0) {
      this.fail('scanner', 'could not find expected directive name', 'while scanning a directive', start);
      return null;
    }
    if (!this.isBlankZ()) {
      this.fail('scanner', 'found unexpected non-alphabetical character', 'while scanning a directive', start);
      return null;
    }
    return Buffer.from(s).toString('utf8');
  }

  private scanVersionValue(start: Mark): [number, number] | null {
    if (!this.cache(1)) return null;
    while (this.isBlank()) {
      this.skip();
      if (!this.cache(1)) return null;
    }
    const major = this.scanVersionNumber(start);
    if (major === null) return null;
    if (this.ch() !== '.') {
      this.fail('scanner', "did not find expected digit or '.' character", 'while scanning a %YAML directive', start);
      return null;
    }
    this.skip();
    const minor = this.scanVersionNumber(start);
    if (minor === null) return null;
    return [major, minor];
  }

  private scanVersionNumber(start: Mark): number | null {
    if (!this.cache(1)) return null;
    let value = 0;
    let length = 0;
    while (this.isDigit()) {
      length++;
      if (length > 2) {
        this.fail('scanner', 'found extremely long version number', 'while scanning a %YAML directive', start);
        return null;
      }
      value = value * 10 + (this.b() - 0x30);
      this.skip();
      if (!this.cache(1)) return null;
    }
    if (length === 0) {
      this.fail('scanner', 'did not find expected version number', 'while scanning a %YAML directive', start);
      return null;
    }
    return value;
  }

  private scanTagDirectiveValue(start: Mark): [number[], number[]] | null {
    if (!this.cache(1)) return null;
    while (this.isBlank()) {
      this.skip();
      if (!this.cache(1)) return null;
    }
    const handle = this.scanTagHandle(true, start);
    if (!handle) return null;
    if (!this.cache(1)) return null;
    if (!this.isBlank()) {
      this.fail('scanner', 'did not find expected whitespace', 'while scanning a %TAG directive', start);
      return null;
    }
    while (this.isBlank()) {
      this.skip();
      if (!this.cache(1)) return null;
    }
    const prefix = this.scanTagUri(true, null, start);
    if (!prefix) return null;
    if (!this.cache(1)) return null;
    if (!this.isBlankZ()) {
      this.fail('scanner', 'did not find expected whitespace or line break', 'while scanning a %TAG directive', start);
      return null;
    }
    return [handle, prefix];
  }

  private scanAnchor(type: T): Token | null {
    const s: number[] = [];
    const start = copyMark(this.mark);
    this.skip();
    if (!this.cache(1)) return null;
    while (this.isAlpha()) {
      this.read(s);
      if (!this.cache(1)) return null;
    }
    const end = copyMark(this.mark);
    if (s.length === 0 || !(this.isBlankZ() || '?:,]}%@`'.includes(this.ch()))) {
      this.fail('scanner', 'did not find expected alphabetic or numeric character', type === T.ANCHOR ? 'while scanning an anchor' : 'while scanning an alias', start);
      return null;
    }
    return { type, start, end, value: s };
  }

  private scanTag(): Token | null {
    let handle: number[];
    let suffix: number[];
    const start = copyMark(this.mark);
    if (!this.cache(2)) return null;
    if (this.ch(1) === '<') {
      handle = [];
      this.skip();
      this.skip();
      const u = this.scanTagUri(false, null, start);
      if (!u) return null;
      suffix = u;
      if (this.ch() !== '>') {
        this.fail('scanner', "did not find the expected '>'", 'while scanning a tag', start);
        return null;
      }
      this.skip();
    } else {
      const h = this.scanTagHandle(false, start);
      if (!h) return null;
      if (h[0] === 0x21 && h.length > 1 && h[h.length - 1] === 0x21) {
        const u = this.scanTagUri(false, null, start);
        if (!u) return null;
        handle = h;
        suffix = u;
      } else {
        const u = this.scanTagUri(false, h, start);
        if (!u) return null;
        handle = [0x21];
        suffix = u;
        if (suffix.length === 0) {
          [handle, suffix] = [suffix, handle];
        }
      }
    }
    if (!this.cache(1)) return null;
    if (!this.isBlankZ()) {
      this.fail('scanner', 'did not find expected whitespace or line break', 'while scanning a tag', start);
      return null;
    }
    return { type: T.TAG, start, end: copyMark(this.mark), value: handle, suffix };
  }

  private tagError(directive: boolean, start: Mark): null {
    this.fail('scanner', 'did not find URI escaped octet', directive ? 'while parsing a %TAG directive' : 'while parsing a tag', start);
    return null;
  }

  private scanTagHandle(directive: boolean, start: Mark): number[] | null {
    if (!this.cache(1)) return null;
    if (this.ch() !== '!') return this.tagError(directive, start);
    const s: number[] = [];
    this.read(s);
    if (!this.cache(1)) return null;
    while (this.isAlpha()) {
      this.read(s);
      if (!this.cache(1)) return null;
    }
    if (this.ch() === '!') this.read(s);
    else if (directive && !(s[0] === 0x21 && s.length === 1)) return this.tagError(directive, start);
    return s;
  }

  private scanTagUri(directive: boolean, head: number[] | null, start: Mark): number[] | null {
    const s: number[] = head && head.length > 1 ? head.slice(1) : [];
    if (!this.cache(1)) return null;
    while (this.isAlpha() || ";/?:@&=+$,.!~*'()[]%".includes(this.ch())) {
      if (this.ch() === '%') {
        if (!this.scanUriEscapes(directive, start, s)) return null;
      } else this.read(s);
      if (!this.cache(1)) return null;
    }
    if (s.length === 0) return this.tagError(directive, start);
    return s;
  }

  private scanUriEscapes(directive: boolean, start: Mark, s: number[]): boolean {
    let w = 1024;
    while (w > 0) {
      if (!this.cache(3)) return false;
      if (!(this.ch() === '%' && this.isHex(1) && this.isHex(2))) {
        this.tagError(directive, start);
        return false;
      }
      const octet = (this.asHex(1) << 4) + this.asHex(2);
      if (w === 1024) {
        w = byteWidth(octet);
        if (w === 0) {
          this.tagError(directive, start);
          return false;
        }
      } else if ((octet & 0xc0) !== 0x80) {
        this.tagError(directive, start);
        return false;
      }
      s.push(octet);
      this.skip();
      this.skip();
      this.skip();
      w--;
    }
    return true;
  }

  // --------------------------------------------------------------- scalars
  /**
   * The header of a block scalar after | or >: the chomping (+1 keep, -1
   * strip) and indentation indicators in either order, then blanks, a comment
   * and the line break. Null on an error.
   */
  private scanBlockScalarHeader(start: Mark): { chomping: number; increment: number } | null {
    if (!this.cache(1)) return null;
    let chomping = 0;
    let increment = 0;
    if (this.ch() === '+' || this.ch() === '-') {
      chomping = this.ch() === '+' ? 1 : -1;
      this.skip();
      if (!this.cache(1)) return null;
      if (this.isDigit()) {
        if (this.ch() === '0') {
          this.fail('scanner', 'found an intendation indicator equal to 0', 'while scanning a block scalar', start);
          return null;
        }
        increment = this.b() - 0x30;
        this.skip();
      }
    } else if (this.isDigit()) {
      if (this.ch() === '0') {
        this.fail('scanner', 'found an intendation indicator equal to 0', 'while scanning a block scalar', start);
        return null;
      }
      increment = this.b() - 0x30;
      this.skip();
      if (!this.cache(1)) return null;
      if (this.ch() === '+' || this.ch() === '-') {
        chomping = this.ch() === '+' ? 1 : -1;
        this.skip();
      }
    }
    if (!this.cache(1)) return null;
    while (this.isBlank()) {
      this.skip();
      if (!this.cache(1)) return null;
    }
    if (this.ch() === '#') {
      while (!this.isBreakZ()) {
        this.skip();
        if (!this.cache(1)) return null;
      }
    }
    if (!this.isBreakZ()) {
      this.fail('scanner', 'did not find expected comment or line break', 'while scanning a block scalar', start);
      return null;
    }
    if (this.isBreak()) {
      if (!this.cache(2)) return null;
      this.skipLine();
    }
    return { chomping, increment };
  }

  private scanBlockScalar(literal: boolean): Token | null {
    const start = copyMark(this.mark);
    this.skip();
    const header = this.scanBlockScalarHeader(start);
    if (header === null) return null;
    const { chomping, increment } = header;
    const st = { end: copyMark(this.mark), indent: 0 };
    if (increment > 0) st.indent = this.indent >= 0 ? this.indent + increment : increment;
    const s: number[] = [];
    let leadingBreak: number[] = [];
    let trailingBreaks: number[] = [];
    if (!this.scanBlockScalarBreaks(st, trailingBreaks, start)) return null;
    if (!this.cache(1)) return null;
    let leadingBlank = false;
    let trailingBlank = false;
    while (this.mark.column === st.indent && !this.isZ()) {
      trailingBlank = this.isBlank();
      if (!literal && !leadingBlank && !trailingBlank && leadingBreak.length > 0 && leadingBreak[0] === 0x0a) {
        if (trailingBreaks.length === 0) s.push(0x20);
      } else s.push(...leadingBreak);
      leadingBreak = [];
      s.push(...trailingBreaks);
      trailingBreaks = [];
      leadingBlank = this.isBlank();
      while (!this.isBreakZ()) {
        this.read(s);
        if (!this.cache(1)) return null;
      }
      if (!this.cache(2)) return null;
      this.readLine(leadingBreak);
      if (!this.scanBlockScalarBreaks(st, trailingBreaks, start)) return null;
    }
    if (chomping !== -1) s.push(...leadingBreak);
    if (chomping === 1) s.push(...trailingBreaks);
    return { type: T.SCALAR, start, end: st.end, value: s, style: literal ? Style.LITERAL : Style.FOLDED };
  }

  private scanBlockScalarBreaks(st: { end: Mark; indent: number }, breaks: number[], start: Mark): boolean {
    st.end = copyMark(this.mark);
    let maxIndent = 0;
    for (;;) {
      if (!this.cache(1)) return false;
      while ((st.indent === 0 || this.mark.column < st.indent) && this.isSpace()) {
        this.skip();
        if (!this.cache(1)) return false;
      }
      if (this.mark.column > maxIndent) maxIndent = this.mark.column;
      if ((st.indent === 0 || this.mark.column < st.indent) && this.isTab()) {
        return this.fail('scanner', 'found a tab character where an intendation space is expected', 'while scanning a block scalar', start);
      }
      if (!this.isBreak()) break;
      if (!this.cache(2)) return false;
      this.readLine(breaks);
      st.end = copyMark(this.mark);
    }
    if (st.indent === 0) {
      st.indent = maxIndent;
      if (st.indent < this.indent + 1) st.indent = this.indent + 1;
      if (st.indent < 1) st.indent = 1;
    }
    return true;
  }

  private scanFlowScalar(single: boolean): Token | null {
    const start = copyMark(this.mark);
    this.skip();
    const s: number[] = [];
    const gap: FlowGap = { leadingBreak: [], trailingBreaks: [], whitespaces: [] };
    for (;;) {
      if (!this.cache(4)) return null;
      if (this.mark.column === 0 && ((this.ch() === '-' && this.ch(1) === '-' && this.ch(2) === '-') || (this.ch() === '.' && this.ch(1) === '.' && this.ch(2) === '.')) && this.isBlankZ(3)) {
        this.fail('scanner', 'found unexpected document indicator', 'while scanning a quoted scalar', start);
        return null;
      }
      if (this.isZ()) {
        this.fail('scanner', 'found unexpected end of stream', 'while scanning a quoted scalar', start);
        return null;
      }
      const escapedBreak = this.scanFlowText(single, s, start);
      if (escapedBreak === null) return null;
      if (single ? this.ch() === "'" : this.ch() === '"') break;
      if (!this.cache(1)) return null;
      const leadingBlanks = this.scanFlowGap(gap, escapedBreak);
      if (leadingBlanks === null) return null;
      foldFlowGap(s, gap, leadingBlanks);
    }
    this.skip();
    return { type: T.SCALAR, start, end: copyMark(this.mark), value: s, style: single ? Style.SINGLE_QUOTED : Style.DOUBLE_QUOTED };
  }

  /**
   * The characters of a quoted scalar up to a blank, a break or the closing
   * quote, into `s`. Returns whether it stopped at an escaped line break
   * (which starts the leading blanks), or null on an error.
   */
  private scanFlowText(single: boolean, s: number[], start: Mark): boolean | null {
    while (!this.isBlankZ()) {
      const c = this.ch();
      if (single && c === "'" && this.ch(1) === "'") {
        s.push(0x27);
        this.skip();
        this.skip();
      } else if (single && c === "'") break;
      else if (!single && c === '"') break;
      else if (!single && c === '\\' && this.isBreak(1)) {
        if (!this.cache(3)) return null;
        this.skip();
        this.skipLine();
        return true;
      } else if (!single && c === '\\') {
        if (!this.scanEscape(s, start)) return null;
      } else this.read(s);
      if (!this.cache(2)) return null;
    }
    return false;
  }

  /** One escape sequence of a double-quoted scalar (\n, \x41, \u00e9...), its bytes into `s`; false on an error. */
  private scanEscape(s: number[], start: Mark): boolean {
    let codeLength = 0;
    const e = this.ch(1);
    const simple = SIMPLE_ESCAPES.get(e);
    if (simple) s.push(...simple);
    else if (e === 'x') codeLength = 2;
    else if (e === 'u') codeLength = 4;
    else if (e === 'U') codeLength = 8;
    else {
      this.fail('scanner', 'found unknown escape character', 'while parsing a quoted scalar', start);
      return false;
    }
    this.skip();
    this.skip();
    if (codeLength === 0) return true;
    if (!this.cache(codeLength)) return false;
    let value = 0;
    for (let k = 0; k < codeLength; k++) {
      if (!this.isHex(k)) {
        this.fail('scanner', 'did not find expected hexdecimal number', 'while parsing a quoted scalar', start);
        return false;
      }
      value = value * 16 + this.asHex(k);
    }
    if ((value >= 0xd800 && value <= 0xdfff) || value > 0x10ffff) {
      this.fail('scanner', 'found invalid Unicode character escape code', 'while parsing a quoted scalar', start);
      return false;
    }
    s.push(...Buffer.from(String.fromCodePoint(value), 'utf8'));
    for (let k = 0; k < codeLength; k++) this.skip();
    return true;
  }

  /**
   * The blanks and line breaks after a piece of a quoted scalar, into `gap`.
   * Returns whether a line break was met (leading blanks), or null on an error.
   */
  private scanFlowGap(gap: FlowGap, leadingBlanks: boolean): boolean | null {
    while (this.isBlank() || this.isBreak()) {
      if (this.isBlank()) {
        if (!leadingBlanks) this.read(gap.whitespaces);
        else this.skip();
      } else {
        if (!this.cache(2)) return null;
        if (!leadingBlanks) {
          gap.whitespaces = [];
          this.readLine(gap.leadingBreak);
          leadingBlanks = true;
        } else this.readLine(gap.trailingBreaks);
      }
      if (!this.cache(1)) return null;
    }
    return leadingBlanks;
  }

  private scanPlainScalar(): Token | null {
    const s: number[] = [];
    let leadingBreak: number[] = [];
    let trailingBreaks: number[] = [];
    let whitespaces: number[] = [];
    let leadingBlanks = false;
    const indent = this.indent + 1;
    const start = copyMark(this.mark);
    let end = copyMark(this.mark);
    for (;;) {
      if (!this.cache(4)) return null;
      if (this.mark.column === 0 && ((this.ch() === '-' && this.ch(1) === '-' && this.ch(2) === '-') || (this.ch() === '.' && this.ch(1) === '.' && this.ch(2) === '.')) && this.isBlankZ(3)) break;
      if (this.ch() === '#') break;
      while (!this.isBlankZ()) {
        const c = this.ch();
        if (this.flowLevel > 0 && c === ':' && !this.isBlankZ(1)) {
          this.fail('scanner', "found unexpected ':'", 'while scanning a plain scalar', start);
          return null;
        }
        if ((c === ':' && this.isBlankZ(1)) || (this.flowLevel > 0 && ',:?[]{}'.includes(c))) break;
        if (leadingBlanks || whitespaces.length > 0) {
          if (leadingBlanks) {
            if (leadingBreak[0] === 0x0a) {
              if (trailingBreaks.length === 0) s.push(0x20);
              else s.push(...trailingBreaks);
            } else s.push(...leadingBreak, ...trailingBreaks);
            trailingBreaks = [];
            leadingBreak = [];
            leadingBlanks = false;
          } else {
            s.push(...whitespaces);
            whitespaces = [];
          }
        }
        this.read(s);
        end = copyMark(this.mark);
        if (!this.cache(2)) return null;
      }
      if (!(this.isBlank() || this.isBreak())) break;
      if (!this.cache(1)) return null;
      while (this.isBlank() || this.isBreak()) {
        if (this.isBlank()) {
          if (leadingBlanks && this.mark.column < indent && this.isTab()) {
            this.fail('scanner', 'found a tab character that violate intendation', 'while scanning a plain scalar', start);
            return null;
          }
          if (!leadingBlanks) this.read(whitespaces);
          else this.skip();
        } else {
          if (!this.cache(2)) return null;
          if (!leadingBlanks) {
            whitespaces = [];
            this.readLine(leadingBreak);
            leadingBlanks = true;
          } else this.readLine(trailingBreaks);
        }
        if (!this.cache(1)) return null;
      }
      if (this.flowLevel === 0 && this.mark.column < indent) break;
    }
    if (leadingBlanks) this.simpleKeyAllowed = true;
    return { type: T.SCALAR, start, end, value: s, style: Style.PLAIN };
  }
}

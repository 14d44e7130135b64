/**
 * Small pieces of Go's standard library whose exact behaviour the validator
 * depends on: strconv.Quote (%q), path.Dir/Clean, url.ParseRequestURI and the
 * gzip header check and reader. Pure.
 */
import { inflateRawSync, constants as zc } from 'node:zlib';

/** Go's strconv.Quote. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (c === 7) out += '\\a';
    else if (c === 8) out += '\\b';
    else if (c === 12) out += '\\f';
    else if (c === 10) out += '\\n';
    else if (c === 13) out += '\\r';
    else if (c === 9) out += '\\t';
    else if (c === 11) out += '\\v';
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else if (!(c === 0x20 || /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch))) out += c > 0xffff ? '\\U' + c.toString(16).padStart(8, '0') : '\\u' + c.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

/** Go's path.Clean. */
export function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!rooted) parts.push('..');
    } else parts.push(seg);
  }
  const out = (rooted ? '/' : '') + parts.join('/');
  return out === '' ? (rooted ? '/' : '.') : out;
}

/** Go's path.Dir. */
export function goDir(p: string): string {
  const i = p.lastIndexOf('/');
  return goClean(p.slice(0, i + 1));
}

function isHex(c: string) {
  return /^[0-9a-fA-F]$/.test(c);
}

function shouldEscapeHost(c: string): boolean {
  if (/^[A-Za-z0-9]$/.test(c)) return false;
  if ('!$&\'()*+,;=:[]<>"'.includes(c)) return false;
  if ('-_.~'.includes(c)) return false;
  return true;
}

function unescape(s: string, mode: 'host' | 'zone' | 'path' | 'userinfo'): boolean {
  for (let i = 0; i < s.length; ) {
    const c = s[i]!;
    if (c === '%') {
      if (i + 2 >= s.length || !isHex(s[i + 1]!) || !isHex(s[i + 2]!)) return false;
      if (mode === 'host') {
        const v = parseInt(s.slice(i + 1, i + 3), 16);
        if (v < 0x80 && s.slice(i, i + 3) !== '%25') return false;
      }
      i += 3;
      continue;
    }
    if ((mode === 'host' || mode === 'zone') && c.charCodeAt(0) < 0x80 && shouldEscapeHost(c)) return false;
    i++;
  }
  return true;
}

function validOptionalPort(port: string): boolean {
  if (port === '') return true;
  if (!port.startsWith(':')) return false;
  return /^[0-9]*$/.test(port.slice(1));
}

function parseHost(host: string): boolean {
  if (host.startsWith('[')) {
    const i = host.lastIndexOf(']');
    if (i < 0) return false;
    const colonPort = host.slice(i + 1);
    if (!validOptionalPort(colonPort)) return false;
    const zone = host.slice(0, i).indexOf('%25');
    if (zone >= 0) {
      if (!unescape(host.slice(0, zone), 'host')) return false;
      if (!unescape(host.slice(zone, i), 'zone')) return false;
      return unescape(host.slice(i), 'host');
    }
    return unescape(host, 'host');
  }
  const i = host.lastIndexOf(':');
  if (i !== -1) {
    if (!validOptionalPort(host.slice(i))) return false;
  }
  return unescape(host, 'host');
}

function validUserinfo(s: string): boolean {
  for (const c of s) {
    if (/^[A-Za-z0-9]$/.test(c)) continue;
    if ("-._:~!$&'()*+,;=%@".includes(c)) continue;
    return false;
  }
  return true;
}

/** True when Go's url.ParseRequestURI accepts `raw`. */
export function goParseRequestURI(raw: string): boolean {
  // eslint-disable-next-line no-control-regex -- Go's url.ParseRequestURI refuses ASCII control characters
  if (/[\x00-\x1f\x7f]/.test(raw)) return false;
  if (raw === '') return false;
  if (raw === '*') return true;
  let scheme = '';
  let rest = raw;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (/[A-Za-z]/.test(c)) continue;
    if (/[0-9+.-]/.test(c)) {
      if (i === 0) break;
      continue;
    }
    if (c === ':') {
      if (i === 0) return false; // missing protocol scheme
      scheme = raw.slice(0, i);
      rest = raw.slice(i + 1);
    }
    break;
  }
  if (rest.endsWith('?') && rest.split('?').length - 1 === 1) rest = rest.slice(0, -1);
  else {
    const q = rest.indexOf('?');
    if (q >= 0) rest = rest.slice(0, q);
  }
  if (!rest.startsWith('/')) {
    return scheme !== '';
  }
  if (scheme !== '' && rest.startsWith('//')) {
    const r2 = rest.slice(2);
    const slash = r2.indexOf('/');
    const authority = slash >= 0 ? r2.slice(0, slash) : r2;
    rest = slash >= 0 ? r2.slice(slash) : '';
    const at = authority.lastIndexOf('@');
    if (at < 0) {
      if (!parseHost(authority)) return false;
    } else {
      if (!parseHost(authority.slice(at + 1))) return false;
      if (!validUserinfo(authority.slice(0, at))) return false;
      if (!unescape(authority.slice(0, at), 'userinfo')) return false;
    }
  }
  return unescape(rest, 'path');
}

/** True when Go's gzip.NewReader accepts the header of `b`. */
export function goGzipHeaderOk(b: Uint8Array): boolean {
  return gzipHeaderEnd(b, 0) !== null;
}

/** The gzip member header at `off` as Go's gzip Reader reads it: the offset of the deflate data, or null (ErrHeader, EOF). */
function gzipHeaderEnd(b: Uint8Array, off: number): number | null {
  if (b.length - off < 10) return null;
  if (b[off] !== 0x1f || b[off + 1] !== 0x8b || b[off + 2] !== 8) return null;
  const flg = b[off + 3]!;
  let p = off + 10;
  if (flg & 4) {
    if (p + 2 > b.length) return null;
    const n = b[p]! | (b[p + 1]! << 8);
    p += 2;
    if (p + n > b.length) return null;
    p += n;
  }
  for (const bit of [8, 16]) {
    if (flg & bit) {
      const z = b.indexOf(0, p);
      if (z < 0) return null;
      p = z + 1;
    }
  }
  if (flg & 2) {
    if (p + 2 > b.length) return null;
    const crc = crc32(b.subarray(off, p)) & 0xffff;
    if ((b[p]! | (b[p + 1]! << 8)) !== crc) return null;
    p += 2;
  }
  return p;
}

/**
 * What config.DecodeGzipContent returns: gzip.NewReader, then
 * bytes.Buffer.ReadFrom with its error ignored. Go's reader is multistream
 * (members are concatenated) and hands out data before it reports an error,
 * so the result is every byte decompressed before the first problem: a bad
 * CRC-32 or size in a trailer keeps that member's data, a truncated or
 * corrupt deflate stream keeps what was decoded before the damage, a bad
 * header after a member ends the data there. Null when the first header is
 * bad (NewReader's error, the only one DecodeGzipContent reports).
 */
export function goGunzip(input: Uint8Array): Buffer | null {
  const b = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  let p = gzipHeaderEnd(b, 0);
  if (p === null) return null;
  const out: Buffer[] = [];
  for (;;) {
    const body = b.subarray(p);
    let data: Buffer;
    let used: number;
    try {
      // a complete deflate stream; the engine reports how much input it consumed
      const r = inflateRawSync(body, { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      data = r.buffer;
      used = r.engine.bytesWritten;
    } catch {
      out.push(partialInflate(body));
      break;
    }
    out.push(data);
    const t = p + used;
    if (t + 8 > b.length) break; // trailer cut short: io.ErrUnexpectedEOF
    if (b.readUInt32LE(t) !== crc32(data) || b.readUInt32LE(t + 4) !== data.length >>> 0) break; // gzip.ErrChecksum
    if (t + 8 === b.length) break; // io.EOF: done
    const next = gzipHeaderEnd(b, t + 8);
    if (next === null) break; // gzip.ErrHeader on the next member
    p = next;
  }
  return Buffer.concat(out);
}

/** The output of a truncated or corrupt raw deflate stream up to where it stops or breaks. */
function partialInflate(body: Buffer): Buffer {
  const attempt = (n: number): Buffer | null => {
    try {
      return inflateRawSync(body.subarray(0, n), { finishFlush: zc.Z_SYNC_FLUSH });
    } catch {
      return null;
    }
  };
  const whole = attempt(body.length);
  if (whole) return whole; // truncated: everything decoded so far
  // corrupt: the longest prefix that still inflates (prefixes of a good prefix are good)
  let lo = 0;
  let hi = body.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (attempt(mid)) lo = mid;
    else hi = mid - 1;
  }
  return attempt(lo) ?? Buffer.alloc(0);
}

let crcTable: Uint32Array | null = null;
export function crc32(b: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

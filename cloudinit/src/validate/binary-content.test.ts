/**
 * `!!binary` values in content fields, as go-yaml v1 (vendored by v1.14.0)
 * decodes them: base64 to bytes, newlines skipped, stored as the Go string's
 * raw bytes; DecodeContent then applies the encoding to those bytes. Plus
 * the plain (text) cases, which must report what they always did.
 */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { rootField } from '../schema.js';
import { decodeStrong } from '../yaml/decode.js';
import { parseDocument } from '../yaml/parser.js';
import { goGunzip } from './gostd.js';
import { strictChecks } from './strict.js';
import { formatEntry, validateUserData } from './validate.js';

const lines = (t: string) => validateUserData(Buffer.from('#cloud-config\n' + t)).entries.map(formatEntry).sort();

/** A YAML block scalar with the base64 of `b` split over several lines (go-yaml's decoder skips the newlines). */
function binary(b: Buffer, indent = '      '): string {
  const s = b.toString('base64');
  const parts = s.match(/.{1,16}/g) ?? [''];
  return `!!binary |\n${parts.map((p) => indent + p).join('\n')}\n`;
}
const file = (encoding: string | null, content: string) => `write_files:\n  - path: /etc/x\n${encoding === null ? '' : `    encoding: ${encoding}\n`}    content: ${content}`;

/** Not valid UTF-8 (0xff, a lone continuation byte, a NUL). */
const rawBytes = Buffer.from([0x00, 0xff, 0x80, 0xfe, 0x41, 0x0a]);
const gz = gzipSync(Buffer.concat([Buffer.from('motd '), rawBytes]));

describe('!!binary content: validate as v1.14.0', () => {
  it("CoreOS's documented example (encoding: gzip, content: !!binary |) is accepted", () => {
    const doc = 'write_files:\n  - path: /etc/motd\n    encoding: gzip\n    content: !!binary |\n      H4sIAAAAAAAA/8tIzcnJVyjPL8pJAQA6oR4NDAAAAA==\n';
    expect(lines(doc)).toEqual([]);
  });

  it('gzip and gz: gzip bytes pass, other bytes are "content cannot be decoded" at the content line', () => {
    for (const enc of ['gzip', 'gz']) {
      expect(lines(file(enc, binary(gz)))).toEqual([]);
      expect(lines(file(enc, '!!binary aGVsbG8=\n'))).toEqual([`line 5: error: content cannot be decoded as "${enc}"`]);
      expect(lines(file(enc, binary(rawBytes)))).toEqual([`line 5: error: content cannot be decoded as "${enc}"`]);
    }
  });

  it('no encoding and encoding "": the bytes are taken as they are', () => {
    expect(lines(file(null, binary(rawBytes)))).toEqual([]);
    expect(lines(file('""', binary(rawBytes)))).toEqual([]);
    expect(lines(file(null, binary(gz)))).toEqual([]);
  });

  it('base64 and b64: the decoded bytes are base64-decoded again', () => {
    for (const enc of ['base64', 'b64']) {
      expect(lines(file(enc, binary(Buffer.from(rawBytes.toString('base64')))))).toEqual([]);
      expect(lines(file(enc, '!!binary aGVsbG8=\n'))).toEqual([`line 5: error: content cannot be decoded as "${enc}"`]);
      expect(lines(file(enc, binary(gz)))).toEqual([`line 5: error: content cannot be decoded as "${enc}"`]);
    }
  });

  it('gzip+base64 and its spellings: base64 of the bytes, then a gzip header', () => {
    for (const enc of ['gzip+base64', 'gz+base64', 'gzip+b64', 'gz+b64']) {
      expect(lines(file(enc, binary(Buffer.from(gz.toString('base64')))))).toEqual([]);
      expect(lines(file(enc, binary(Buffer.from('aGVsbG8=')))), enc).toEqual([`line 5: error: content cannot be decoded as "${enc}"`]);
      expect(lines(file(enc, binary(gz)))).toEqual([`line 5: error: content cannot be decoded as "${enc}"`]);
    }
  });

  it('an encoding given as !!binary is its decoded text', () => {
    expect(lines(file('!!binary Z3ppcA==', binary(gz)))).toEqual([]);
    expect(lines(file('!!binary Z3ppcA==', '!!binary aGVsbG8=\n'))).toEqual(['line 5: error: content cannot be decoded as "gzip"']);
  });

  it('invalid base64 in a !!binary value: the YAML error at line 1 (go-yaml gives no line), plus the line-0 struct warning', () => {
    const want = ['line 0: warning: incorrect type for "" (want struct)', 'line 1: error: !!binary value contains invalid base64 data'];
    expect(lines(file('gzip', '!!binary |\n      H4sI*not base64*\n'))).toEqual(want);
    expect(lines(file(null, '!!binary aGVsbG8\n'))).toEqual(want); // no padding
    expect(lines(file(null, '!!binary aGVs bG8=\n'))).toEqual(want); // a space is not skipped, only \r and \n
    expect(lines('coreos:\n  units:\n    - name: a.service\n      content: !!binary -_-_\n')).toEqual(want); // URL-safe alphabet
  });

  it('units and drop-ins take !!binary content without entries (also under --strict)', () => {
    const doc = `coreos:\n  units:\n    - name: a.service\n      content: ${binary(rawBytes, '        ')}      drop_ins:\n        - name: 10-a.conf\n          content: ${binary(Buffer.from('[Service]\nUser=core\n'), '            ')}`;
    expect(lines(doc)).toEqual([]);
    const strict = strictChecks(Buffer.from('#cloud-config\n' + doc));
    expect(strict.every((e) => e.code === 'W_UNIT_SYNTAX')).toBe(true);
  });

  it('decoding: content fields hold bytes that are not UTF-8 as a Buffer, UTF-8 as text; other fields keep text', () => {
    const cfg = (t: string) => decodeStrong(parseDocument(Buffer.from('#cloud-config\n' + t)), rootField);
    const w = cfg(file(null, binary(rawBytes)))['write_files'] as { content: unknown }[];
    expect(Buffer.isBuffer(w[0]!.content)).toBe(true);
    expect((w[0]!.content as Buffer).equals(rawBytes)).toBe(true);
    const u = cfg(file(null, binary(Buffer.from('héllo\n'))))['write_files'] as { content: unknown }[];
    expect(u[0]!.content).toBe('héllo\n');
    expect(cfg('hostname: !!binary aMO0c3Q=\n')['hostname']).toBe('hôst');
  });
});

describe('plain (non-binary) content: unchanged', () => {
  it('text content with each encoding', () => {
    const text = gzipSync(Buffer.from('hello')).toString('base64');
    expect(lines(file(null, 'hello\n'))).toEqual([]);
    expect(lines(file('base64', 'aGVsbG8=\n'))).toEqual([]);
    expect(lines(file('b64', 'not base64!\n'))).toEqual(['line 5: error: content cannot be decoded as "b64"']);
    expect(lines(file('gzip', 'hello\n'))).toEqual(['line 5: error: content cannot be decoded as "gzip"']);
    expect(lines(file('gzip+base64', `${text}\n`))).toEqual([]);
    expect(lines(file('gz+b64', 'aGVsbG8=\n'))).toEqual(['line 5: error: content cannot be decoded as "gz+b64"']);
    expect(lines(file('bogus', 'hello\n'))).toEqual(['line 4: error: invalid value bogus', 'line 5: error: content cannot be decoded as "bogus"']);
  });
  it('a quoted !!binary-looking string is just text', () => {
    expect(lines(file('gzip', '"!!binary H4sI"\n'))).toEqual(['line 5: error: content cannot be decoded as "gzip"']);
  });
});

describe('goGunzip (DecodeGzipContent: gzip.NewReader + ReadFrom, errors after the header ignored)', () => {
  const a = gzipSync(Buffer.from('first '));
  const b = gzipSync(Buffer.from('second'));
  it('members are concatenated; a bad first header is the only failure', () => {
    expect(goGunzip(Buffer.concat([a, b]))!.toString()).toBe('first second');
    expect(goGunzip(Buffer.from('hello'))).toBeNull();
    expect(goGunzip(Buffer.alloc(0))).toBeNull();
  });
  it('a bad CRC or size keeps the data (the documented motd example has one)', () => {
    const bad = Buffer.from(a);
    bad.writeUInt32LE(0, bad.length - 8);
    expect(goGunzip(Buffer.concat([bad, b]))!.toString()).toBe('first ');
    expect(goGunzip(Buffer.from('H4sIAAAAAAAA/8tIzcnJVyjPL8pJAQA6oR4NDAAAAA==', 'base64'))!.toString()).toBe('hello world');
  });
  it('a truncated stream keeps what was decoded; garbage after a member ends the data', () => {
    const big = gzipSync(Buffer.from('x'.repeat(100000) + 'y'.repeat(100000)));
    const cut = goGunzip(big.subarray(0, big.length - 20))!;
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.length).toBeLessThanOrEqual(200000);
    expect(goGunzip(Buffer.concat([a, Buffer.from('garbage')]))!.toString()).toBe('first ');
    expect(goGunzip(Buffer.concat([a, Buffer.from([0x1f, 0x8b, 8])]))!.toString()).toBe('first ');
  });
  it('a corrupt deflate stream keeps what came before the damage', () => {
    const broken = Buffer.from(b);
    broken[10] = 0xff; // first deflate block header: BTYPE 11, reserved
    expect(goGunzip(Buffer.concat([a, broken]))!.toString()).toBe('first ');
    expect(goGunzip(broken)!.length).toBe(0);
  });
});

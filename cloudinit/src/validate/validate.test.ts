import { describe, expect, it } from 'vitest';
import { parseGoFlags, FlagError } from '../cli/goflag.js';
import { decodeWeak, goParseInt, resolve } from '../yaml/decode.js';
import { parseDocument } from '../yaml/parser.js';
import { goDir, goParseRequestURI, goQuote } from './gostd.js';
import { strictChecks, unitSyntax } from './strict.js';
import { formatEntry, validateUserData } from './validate.js';

const v = (t: string) => validateUserData(Buffer.from('#cloud-config\n' + t));
const lines = (t: string) => v(t).entries.map(formatEntry).sort();

describe('YAML 1.1 scalars as go-yaml resolves them', () => {
  it('0644 is octal, off/yes are booleans, 0888 is a float, 0o644 a string (pre-Go 1.13 strconv)', () => {
    expect(resolve('', '0644').value).toEqual({ t: 'int', v: 420n });
    expect(resolve('', '0x1a').value).toEqual({ t: 'int', v: 26n });
    expect(resolve('', '0b101').value).toEqual({ t: 'int', v: 5n });
    expect(resolve('', 'off').value).toEqual({ t: 'bool', v: false });
    expect(resolve('', 'Yes').value).toEqual({ t: 'bool', v: true });
    expect(resolve('', '0888').value).toEqual({ t: 'float', v: 888 });
    expect(resolve('', '0o644').value).toEqual({ t: 'str', v: '0o644' });
    expect(resolve('', '~').value).toBeNull();
    expect(goParseInt('9223372036854775808')).toBeNull();
  });
  it('string fields keep the raw text: permissions 0644 passes, 644 passes, 0755x fails', () => {
    expect(lines('write_files:\n  - path: /etc/a\n    permissions: 0644\n')).toEqual([]);
    expect(lines("write_files:\n  - path: /etc/a\n    permissions: '0644'\n")).toEqual([]);
    expect(lines('write_files:\n  - path: /etc/a\n    permissions: 644\n')).toEqual([]);
    expect(lines('write_files:\n  - path: /etc/a\n    permissions: 0755x\n')).toEqual(['line 4: error: invalid value 0755x']);
  });
  it('reboot_strategy: off is valid, false is not', () => {
    expect(lines('coreos:\n  update:\n    reboot_strategy: off\n')).toEqual([]);
    expect(lines('coreos:\n  update:\n    reboot_strategy: false\n')).toEqual(['line 4: error: invalid value false']);
  });
  it('duplicate keys: the last wins silently', () => {
    const d = decodeWeak(parseDocument(Buffer.from('a: 1\na: 2\n')));
    expect(d).toEqual({ t: 'map', entries: [[{ t: 'str', v: 'a' }, { t: 'int', v: 2n }]] });
  });
});

describe('line numbers (the original text scan)', () => {
  it('YAML errors are reported at the 0-based libyaml line, plus the line-0 struct warning', () => {
    expect(lines('coreos:\n  units:\n    - name: a\n   command: start\n')).toEqual(['line 0: warning: incorrect type for "" (want struct)', 'line 4: error: did not find expected key']);
  });
  it('quoted keys and flow style give line 0', () => {
    expect(lines('"coreos":\n  "update":\n    reboot_strategy: x\n')).toEqual(['line 0: error: invalid value x']);
  });
  it('a key-like line inside a block scalar is matched first', () => {
    expect(lines('coreos:\n  units:\n    - name: a.service\n      content: |\n        command: x\n      command: bogus\n')).toEqual(['line 6: error: invalid value bogus']);
  });
  it('handles a 1 MB block scalar', () => {
    const big = 'x'.repeat(1024 * 1024);
    expect(lines(`write_files:\n  - path: /etc/a\n    content: |\n      ${big}\n`)).toEqual([]);
  });
});

describe('dispatch', () => {
  it('empty, scripts and Ignition give no entries; other headers one error', () => {
    expect(validateUserData(new Uint8Array(0)).entries).toEqual([]);
    expect(validateUserData(Buffer.from('#!/bin/sh\n')).entries).toEqual([]);
    expect(validateUserData(Buffer.from('{"ignition":{"version":"2.0.0"}}')).entries).toEqual([]);
    const r = validateUserData(Buffer.from('\ufeff#cloud-config\n'));
    expect(r.entries.map(formatEntry)).toEqual(['line 1: error: must be "#cloud-config" or begin with "#!"']);
    expect(r.entries[0]!.hint).toMatch(/byte order mark/);
    expect(validateUserData(Buffer.from('#cloud-config\r\nhostname: x\r\n')).entries).toEqual([]);
  });
});

describe('Basalt additions', () => {
  it('hints: nearest known key, allowed values', () => {
    const e = v('coreos:\n  updates:\n    group: x\n  units:\n    - name: a\n      command: go\n').entries;
    expect(e.find((x) => x.code === 'W_UNKNOWN_KEY')!.hint).toBe('did you mean "update"?');
    expect(e.find((x) => x.code === 'E_INVALID_VALUE')!).toMatchObject({ path: 'coreos.units[0].command', hint: expect.stringContaining('reload-or-try-restart') as unknown });
  });
  it('crash cases become a clear entry naming the key', () => {
    const r = v('write_files:\n  - path: /etc/a\n    permissions: [0644]\n');
    expect(r.crashed).toMatch(/uncomparable/);
    expect(r.entries.map(formatEntry)).toContain('line 4: error: invalid value for "permissions": a list where a string is expected');
  });
  it('--strict: duplicate keys, etcd2 discovery URL, unit syntax', () => {
    const data = Buffer.from('#cloud-config\nhostname: a\nhostname: b\ncoreos:\n  etcd2:\n    discovery: not-a-url\n  units:\n    - name: a.service\n      content: |\n        ExecStart=/bin/true\n        [Service]\n        garbage line\n');
    const codes = strictChecks(data).map((e) => e.code);
    expect(codes).toEqual(['W_DUPLICATE_KEY', 'W_ETCD2_DISCOVERY', 'W_UNIT_SYNTAX', 'W_UNIT_SYNTAX']);
    expect(unitSyntax('[Unit]\nDescription=x \\\n  continued\n# c\n')).toEqual([]);
  });
});

describe('Go standard library pieces', () => {
  it('strconv.Quote, path.Dir, url.ParseRequestURI', () => {
    expect(goQuote('a"b\n')).toBe('"a\\"b\\n"');
    expect(goDir('/usr/../etc/x')).toBe('/etc');
    expect(goDir('/usr')).toBe('/');
    expect(goDir('x')).toBe('.');
    expect(goParseRequestURI('https://discovery.etcd.io/abc')).toBe(true);
    expect(goParseRequestURI('discovery.etcd.io/abc')).toBe(false);
    expect(goParseRequestURI('')).toBe(false);
    expect(goParseRequestURI('mailto:x')).toBe(true);
    expect(goParseRequestURI('http://host:abc/')).toBe(false);
  });
  it('Go flag syntax: -x, --x, -x=v, -x v; bools take no separate value', () => {
    const specs = [{ name: 'validate', bool: true, usage: '' }, { name: 'from-file', usage: '' }];
    expect([...parseGoFlags(['-validate', '--from-file', 'f'], specs).values]).toEqual([['validate', 'true'], ['from-file', 'f']]);
    expect([...parseGoFlags(['--from-file=f', '-validate=false'], specs).values]).toEqual([['from-file', 'f'], ['validate', 'false']]);
    expect(parseGoFlags(['-validate', 'rest', '-x'], specs).rest).toEqual(['rest', '-x']);
    expect(() => parseGoFlags(['-nope'], specs)).toThrow(FlagError);
    expect(() => parseGoFlags(['-from-file'], specs)).toThrow('flag needs an argument: -from-file');
  });
});

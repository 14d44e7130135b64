import { describe, it, expect } from 'vitest';
import { parseXml, el } from './xml.js';
import { compareVersions } from './version.js';
import { inRollout } from './metadata.js';
import { parseDuration } from './duration.js';

describe('parseXml', () => {
  it('reads elements, attributes in both quote styles, the five entities and char refs', () => {
    const r = parseXml(`<?xml version="1.0"?><!-- c --><a x="1" y='&lt;&amp;&#65;&#x42;'><b/><b>t</b></a>`);
    expect(r.name).toBe('a');
    expect(r.attrs).toEqual({ x: '1', y: '<&AB' });
    expect(r.children.map((c) => c.name)).toEqual(['b', 'b']);
    expect(r.children[1]!.text).toBe('t');
  });
  it.each([
    ['doctype / entity declarations', '<!DOCTYPE r [<!ENTITY x "xx">]><r>&x;</r>'],
    ['external entity', '<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>'],
    ['undeclared entity', '<r a="&x;"/>'],
    ['mismatched tags', '<a><b></a></b>'],
    ['two roots', '<a/><b/>'],
    ['unclosed', '<a><b>'],
    ['duplicate attribute', '<a x="1" x="2"/>'],
    ['unquoted attribute', '<a x=1/>'],
    ['processing instruction', '<a><?php x?></a>'],
  ])('rejects %s', (_n, xml) => {
    expect(() => parseXml(xml)).toThrow(/XML body/);
  });
  it('bounds size, depth and element count', () => {
    expect(() => parseXml('<a>' + 'x'.repeat(2000) + '</a>', { maxBytes: 1000, maxDepth: 16, maxElements: 10, maxAttrs: 4 })).toThrow(/larger than/);
    expect(() => parseXml('<a>'.repeat(20) + '</a>'.repeat(20))).toThrow(/nesting/);
    expect(() => parseXml('<a>' + '<b/>'.repeat(20) + '</a>', { maxBytes: 1e6, maxDepth: 16, maxElements: 10, maxAttrs: 4 })).toThrow(/elements/);
  });
  it('escapes what it writes', () => {
    expect(el('a', { x: '"<&>\'' })).toBe('<a x="&quot;&lt;&amp;&gt;&apos;"/>');
    expect(parseXml(el('a', { x: '"<&>\'' })).attrs['x']).toBe('"<&>\'');
  });
});

describe('versions, rollout, durations', () => {
  it('compares dotted versions numerically, pre-releases first', () => {
    expect(compareVersions('2079.3.2', '2079.3.10')).toBeLessThan(0);
    expect(compareVersions('1.0.0', '1.0')).toBe(0);
    expect(compareVersions('1.0.0-rc1', '1.0.0')).toBeLessThan(0);
    expect(compareVersions('2.0.0', '1.99.99')).toBeGreaterThan(0);
  });
  it('puts about the given share of machines in a rollout, stably', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => `machine-${i}`);
    const n = ids.filter((id) => inRollout(id, '2.0.0', 25)).length;
    expect(n).toBeGreaterThan(400);
    expect(n).toBeLessThan(600);
    expect(ids.filter((id) => inRollout(id, '2.0.0', 25)).every((id) => inRollout(id, '2.0.0', 50))).toBe(true);
    expect(inRollout('m', '1', 0)).toBe(false);
    expect(inRollout('m', '1', 100)).toBe(true);
  });
  it('parses durations', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('30d')).toBe(30 * 86_400_000);
    expect(parseDuration('x')).toBeUndefined();
    expect(parseDuration('5m junk')).toBeUndefined();
  });
});

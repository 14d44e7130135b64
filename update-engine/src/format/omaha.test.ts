import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { APP_ID } from '../../../common/src/contracts.js';
import { buildResponse, omahaErrorOf, omahaHttpStatus, parseResponse, sha256ToHex } from './omaha.js';

const payload = Buffer.from('a payload');
const hex = createHash('sha256').update(payload).digest('hex');
const b64 = createHash('sha256').update(payload).digest('base64');
const sha1 = createHash('sha1').update(payload).digest('base64');

/** An answer shaped as go-omaha and Nebraska write one (base64 hashes, codebase as configured). */
function goOmaha(o: { codebase: string; hashSha256?: string; actionSha256?: string; poll?: string }): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="nebraska">
 <daystart elapsed_seconds="0"></daystart>
 <app appid="${APP_ID}" status="ok">
  <updatecheck status="ok"${o.poll ? ` PollInterval="${o.poll}"` : ''}>
   <urls>
    <url codebase="${o.codebase}"></url>
   </urls>
   <manifest version="3510.2.1">
    <packages>
     <package name="flatcar_production_update.gz" hash="${sha1}" size="${payload.length}" required="true"${o.hashSha256 !== undefined ? ` hash_sha256="${o.hashSha256}"` : ''}></package>
    </packages>
    <actions>
     <action event="postinstall" sha256="${o.actionSha256 ?? b64}" DisablePayloadBackoff="true"></action>
    </actions>
   </manifest>
  </updatecheck>
 </app>
</response>`;
}

describe('Omaha answers as CoreOS-dialect servers write them', () => {
  it('reads base64 or hex hash_sha256, and a postinstall sha256 alone', () => {
    for (const h of [b64, hex, hex.toUpperCase(), undefined]) {
      const r = parseResponse(goOmaha({ codebase: 'https://update.example.com/amd64-usr/3510.2.1/', hashSha256: h }), APP_ID);
      expect(r.offer).toMatchObject({ version: '3510.2.1', sha256Hex: hex, sha256Base64: b64, sha1Base64: sha1, size: payload.length, packageName: 'flatcar_production_update.gz' });
    }
  });
  it('takes a codebase without its trailing / as the folder it names', () => {
    const r = parseResponse(goOmaha({ codebase: 'https://update.example.com/amd64-usr/3510.2.1', hashSha256: b64 }), APP_ID);
    expect(r.offer!.codebases).toEqual(['https://update.example.com/amd64-usr/3510.2.1/']);
    expect(new URL(r.offer!.packageName, r.offer!.codebases[0]).toString()).toBe('https://update.example.com/amd64-usr/3510.2.1/flatcar_production_update.gz');
  });
  it('refuses hashes that disagree or are neither form', () => {
    const other = createHash('sha256').update('other').digest('base64');
    expect(() => parseResponse(goOmaha({ codebase: 'http://h/', hashSha256: other }), APP_ID)).toThrow(/name different payloads/);
    expect(() => parseResponse(goOmaha({ codebase: 'http://h/', hashSha256: 'zz' }), APP_ID)).toThrow(/neither 64 hex digits nor base64/);
    expect(() => parseResponse(goOmaha({ codebase: 'http://h/', actionSha256: 'abc' }), APP_ID)).toThrow(/postinstall sha256/);
  });
  it('passes PollInterval on (the scheduler clamps it)', () => {
    expect(parseResponse(goOmaha({ codebase: 'http://h/', poll: '99999999' }), APP_ID).pollInterval).toBe(99999999);
  });
  it('sha256ToHex', () => {
    expect(sha256ToHex(b64)).toBe(hex);
    // Decided by length and alphabet: base64 without its '=' or URL-safe is base64 still.
    expect(sha256ToHex(b64.replace(/=$/, ''))).toBe(hex);
    expect(sha256ToHex(b64.replace(/\+/g, '-').replace(/\//g, '_'))).toBe(hex);
    expect(sha256ToHex('g'.repeat(64))).toBeUndefined();
    expect(sha256ToHex(` ${hex} `)).toBe(hex);
    expect(sha256ToHex(createHash('sha1').update('x').digest('base64'))).toBeUndefined();
  });
});

describe('delta_okay', () => {
  it('a request says delta_okay="true" when the client takes deltas, and the server reads it', async () => {
    const { buildRequest, parseRequest } = await import('./omaha.js');
    const app = { appId: APP_ID, version: '1.0.0', track: 'stable', board: 'amd64-usr', machineId: 'm', bootId: '{b}', oem: '', oemVersion: '', alephVersion: '1.0.0', ping: false, updateCheck: true, events: [] };
    const yes = buildRequest({ installSource: 'scheduler', app: { ...app, deltaOkay: true } });
    expect(yes).toContain('delta_okay="true"');
    expect(parseRequest(yes).apps[0]!.deltaOkay).toBe(true);
    const no = buildRequest({ installSource: 'scheduler', app });
    expect(no).toContain('delta_okay="false"');
    expect(parseRequest(no).apps[0]!.deltaOkay).toBe(false);
  });
});

describe('omahaErrorOf', () => {
  it("names the first status that is not ok in an error answer's body", () => {
    expect(omahaErrorOf(buildResponse([{ appId: '{abc}', status: 'error-unknownApplication', ping: false, events: 0 }], 0))).toBe('app {abc}: error-unknownApplication');
    expect(omahaErrorOf(buildResponse([{ appId: APP_ID, status: 'ok', ping: false, events: 0, updateCheck: { status: 'error-internal' } }], 0))).toBe('updatecheck: error-internal');
    expect(omahaErrorOf(buildResponse([{ appId: APP_ID, status: 'ok', ping: false, events: 0, updateCheck: { status: 'noupdate' } }], 0))).toBeUndefined();
    expect(omahaErrorOf('busy\n')).toBeUndefined();
    // What a server puts in it is cut and cleaned before it reaches a message.
    expect(omahaErrorOf(`<response protocol="3.0"><app appid="x" status="${'&lt;'.repeat(50)}evil line"/></response>`)).toBe('app x: evilline');
  });
});

describe('omahaHttpStatus (as go-omaha: omaha/handler.go)', () => {
  it('200 when any app is ok, else 400 (the first error), 400 for no app', () => {
    expect(omahaHttpStatus([{ status: 'error-unknownApplication' }, { status: 'ok' }])).toBe(200);
    expect(omahaHttpStatus([{ status: 'error-unknownApplication' }])).toBe(400);
    expect(omahaHttpStatus([])).toBe(400);
  });
});

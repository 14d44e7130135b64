import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import got from 'got';
import { silentLogger } from '../../../common/src/log.js';
import { tempDir, makeUsr, makeKeys } from '../../test/helpers.js';
import { release } from '../publish/repo.js';
import { loadKeyring } from '../format/signature.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { startServer } from './server.js';
import { parseResponse, buildRequest } from '../format/omaha.js';
import { APP_ID } from '../../../common/src/contracts.js';
import { parseXml, kid } from '../format/xml.js';

let t: Awaited<ReturnType<typeof tempDir>>;
let srv: Awaited<ReturnType<typeof startServer>> | undefined;
let repo: string;
let events: string;
let payloadSha: string;
let payloadSize: number;

/** A check as CoreOS update_engine 0.4.10 sends it (omaha_request_action.cc), verbatim shape. */
const coreosCheck = (version: string, track: string, machineid: string, board = 'amd64-usr') => `<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="${version}_x86_64"></os>
    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="${version}" track="${track}" bootid="{6a0b2a36-8a5e-4b9f-8a83-2b3c3f2e4a11}" oem="qemu" oemversion="0.0.1" alephversion="${version}" machineid="${machineid}" machinealias="" lang="en-US" board="${board}" hardware_class="" delta_okay="false" >
        <ping active="1"></ping>
        <updatecheck></updatecheck>
        <event eventtype="3" eventresult="2" previousversion=""></event>
    </app>
</request>
`;
const coreosEvent = (type: number, result: number, code?: number) => `<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="1.0.0_x86_64"></os>
    <app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" version="1.0.0" track="stable" bootid="{6a0b2a36-8a5e-4b9f-8a83-2b3c3f2e4a11}" oem="" oemversion="" alephversion="1.0.0" machineid="0123456789abcdef0123456789abcdef" machinealias="" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false" >
        <event eventtype="${type}" eventresult="${result}"${code !== undefined ? ` errorcode="${code}"` : ''}></event>
    </app>
</request>
`;
const post = (body: string) => got.post(`${srv!.url}v1/update/`, { body, headers: { 'content-type': 'text/xml' }, throwHttpErrors: false, retry: { limit: 0 } });

beforeAll(async () => {
  t = await tempDir();
  const keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  repo = join(t.dir, 'repo');
  const now = new Date();
  await release({ usr: await makeUsr(t.dir, '1.0.0', { randomKiB: 256 }), version: '1.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now, expiresMs: 86_400_000, xzLevel: 0 });
  const r2 = await release({ usr: await makeUsr(t.dir, '2.0.0', { randomKiB: 256 }), version: '2.0.0', channel: 'stable', key, tuf: keys.tuf.publish, repo, now, expiresMs: 86_400_000, xzLevel: 0 });
  await release({ usr: await makeUsr(t.dir, '3.0.0', { randomKiB: 64 }), version: '3.0.0', channel: 'beta', key, tuf: keys.tuf.publish, repo, now, expiresMs: 86_400_000, xzLevel: 0, rollout: 30 });
  await release({ usr: await makeUsr(t.dir, '4.0.0', { randomKiB: 64 }), version: '4.0.0', channel: 'old', key, tuf: keys.tuf.publish, repo, now: new Date(now.getTime() - 10 * 86_400_000), expiresMs: 86_400_000, xzLevel: 0 });
  payloadSha = r2.manifest.payload.sha256;
  payloadSize = r2.manifest.payload.size;
  events = join(t.dir, 'events.jsonl');
  srv = await startServer({ repo, eventsFile: events, appIds: [APP_ID], keyring: await loadKeyring(keys.pub), maxBodyBytes: 64 * 1024, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
});
afterAll(async () => {
  await srv?.close();
  await t.cleanup();
});

describe('basalt serve (Omaha v3)', () => {
  it('answers a CoreOS-shaped check from an older client with the update', async () => {
    const r = await post(coreosCheck('1.0.0', 'stable', '0123456789abcdef0123456789abcdef'));
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/xml/);
    const x = parseXml(r.body);
    const app = kid(x, 'app')!;
    expect(app.attrs['status']).toBe('ok');
    expect(kid(app, 'ping')!.attrs['status']).toBe('ok');
    expect(kid(app, 'event')!.attrs['status']).toBe('ok');
    const uc = kid(app, 'updatecheck')!;
    expect(uc.attrs['status']).toBe('ok');
    const man = kid(uc, 'manifest')!;
    expect(man.attrs['version']).toBe('2.0.0');
    const pkg = kid(kid(man, 'packages'), 'package')!;
    expect(pkg.attrs).toMatchObject({ name: 'usr.img.payload', size: String(payloadSize), hash_sha256: payloadSha, required: 'true' });
    // package@hash as update_engine fills it: base64 SHA-1 of the payload.
    expect(pkg.attrs['hash']).toBe(createHash('sha1').update(await readFile(join(repo, 'payloads/2.0.0/usr.img.payload'))).digest('base64'));
    const act = kid(kid(man, 'actions'), 'action')!;
    expect(act.attrs['event']).toBe('postinstall');
    expect(Buffer.from(act.attrs['sha256']!, 'base64').toString('hex')).toBe(payloadSha);
    const off = parseResponse(r.body, APP_ID).offer!;
    expect(off.codebases[0]).toBe(`${srv!.url}payloads/2.0.0/`);
    // The payload URL (codebase + name) serves exactly `size` bytes.
    const pay = await got(off.codebases[0]! + off.packageName).buffer();
    expect(pay.length).toBe(payloadSize);
  });
  it('answers noupdate to an up-to-date client, another board, an unknown track and expired metadata', async () => {
    for (const [v, track, board] of [
      ['2.0.0', 'stable', 'amd64-usr'],
      ['1.0.0', 'stable', 'arm64-usr'],
      ['1.0.0', 'nightly', 'amd64-usr'],
      ['1.0.0', 'old', 'amd64-usr'],
    ] as const) {
      const r = await post(coreosCheck(v, track, 'aa', board));
      expect(kid(kid(parseXml(r.body), 'app'), 'updatecheck')!.attrs['status'], `${v} ${track} ${board}`).toBe('noupdate');
    }
  });
  it('offers a 30% rollout to a stable 30% share of machine ids', async () => {
    let ok = 0;
    for (let i = 0; i < 60; i++) {
      const r = await post(coreosCheck('1.0.0', 'beta', `m${i}`));
      if (parseResponse(r.body, APP_ID).status === 'ok') ok++;
    }
    expect(ok).toBeGreaterThan(8);
    expect(ok).toBeLessThan(30);
  });
  it('acknowledges and records events 13, 14, 3/1 and 3/0 with error codes, and pings', async () => {
    for (const [ty, res, code] of [[13, 1], [14, 1], [3, 1], [3, 0, 44]] as [number, number, number?][]) {
      const r = await post(coreosEvent(ty, res, code));
      expect(r.statusCode).toBe(200);
      expect(kid(kid(parseXml(r.body), 'app'), 'event')!.attrs['status']).toBe('ok');
      expect(kid(kid(parseXml(r.body), 'app'), 'updatecheck')).toBeUndefined();
    }
    const lines = (await readFile(events, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const ev = lines.filter((l) => l['kind'] === 'event' && l['machineId'] === '0123456789abcdef0123456789abcdef');
    expect(ev.map((e) => [e['eventType'], e['eventResult'], e['errorCode']])).toEqual(expect.arrayContaining([[13, 1, null], [14, 1, null], [3, 1, null], [3, 0, 44]]));
    expect(lines.some((l) => l['kind'] === 'ping')).toBe(true);
  });
  it('answers our own client request builder the same way', async () => {
    const body = buildRequest({ installSource: 'ondemandupdate', app: { appId: APP_ID, version: '1.0.0', track: 'stable', board: 'amd64-usr', machineId: 'x', bootId: '{b}', oem: '', oemVersion: '', alephVersion: '1.0.0', ping: true, updateCheck: true, events: [] } });
    expect(parseResponse((await post(body)).body, APP_ID).offer?.version).toBe('2.0.0');
  });
  it('rejects entities, oversize bodies, other protocols and unknown apps', async () => {
    const evil = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><request protocol="3.0"><app appid="&b;"/></request>`;
    expect((await post(evil)).statusCode).toBe(400);
    const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><request protocol="3.0">&x;</request>`;
    expect((await post(xxe)).statusCode).toBe(400);
    expect((await post('<request protocol="2.0"/>')).statusCode).toBe(400);
    const big = await post('<request protocol="3.0">' + ' '.repeat(70 * 1024) + '</request>').then((r) => r.statusCode, (e: unknown) => e);
    expect(big instanceof Error || big === 413).toBe(true);
    const r = await post(coreosCheck('1.0.0', 'stable', 'x').replace(APP_ID, '{00000000-0000-0000-0000-000000000000}'));
    expect(r.statusCode).toBe(400);
    expect(kid(parseXml(r.body), 'app')!.attrs['status']).toBe('error-unknownApplication');
  });
  it('cuts off a client that sends its request too slowly', async () => {
    const slow = await startServer({ repo, eventsFile: join(t.dir, 'slow-events.jsonl'), appIds: [APP_ID], maxBodyBytes: 64 * 1024, requestTimeoutMs: 500, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
    try {
      const port = Number(new URL(slow.url).port);
      const t0 = Date.now();
      const closed = await new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.write('POST /v1/update/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<req'));
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString()));
        s.on('close', () => resolve(got));
        s.on('error', () => undefined);
      });
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(closed).toMatch(/^HTTP\/1\.1 408|^$/);
    } finally {
      await slow.close();
    }
  });
  it('serves payloads with HTTP Range and refuses paths outside the repository', async () => {
    const url = `${srv!.url}payloads/2.0.0/usr.img.payload`;
    const full = await got(url).buffer();
    const part = await got(url, { headers: { range: 'bytes=100-199' } });
    expect(part.statusCode).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 100-199/${full.length}`);
    expect(Buffer.compare(part.rawBody, full.subarray(100, 200))).toBe(0);
    const tail = await got(url, { headers: { range: 'bytes=-10' } });
    expect(Buffer.compare(tail.rawBody, full.subarray(full.length - 10))).toBe(0);
    const open = await got(url, { headers: { range: `bytes=${full.length - 5}-` } });
    expect(open.rawBody.length).toBe(5);
    expect((await got(url, { headers: { range: `bytes=${full.length}-` }, throwHttpErrors: false })).statusCode).toBe(416);
    expect((await got(`${srv!.url}..%2F..%2Fetc%2Fpasswd`, { throwHttpErrors: false })).statusCode).toBe(404);
    expect((await got(`${srv!.url}payloads/.tmp-x/`, { throwHttpErrors: false })).statusCode).toBe(404);
  });

  describe('a hostile client', () => {
    /** Sends raw bytes on a fresh connection; resolves with what came back when the server closes it (or after `waitMs`). */
    const raw = (port: number, parts: string[], waitMs = 5000) =>
      new Promise<{ reply: string; ms: number }>((resolve) => {
        const t0 = Date.now();
        let reply = '';
        const s = connect(port, '127.0.0.1', () => {
          for (const p of parts) s.write(p);
        });
        const done = () => {
          clearTimeout(guard);
          resolve({ reply, ms: Date.now() - t0 });
        };
        const guard = setTimeout(() => s.destroy(), waitMs);
        s.on('data', (d: Buffer) => (reply += d.toString()));
        s.on('close', done);
        s.on('error', () => undefined);
      });

    it('a body over the cap is refused with 413, announced or chunked, without reading it all', async () => {
      const port = Number(new URL(srv!.url).port);
      const announced = await raw(port, ['POST /v1/update/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n<request']);
      expect(announced.reply).toMatch(/^HTTP\/1\.1 413 /);
      expect(announced.reply).toMatch(/request body of 1000000000 bytes exceeds 65536/);
      const chunk = 'x'.repeat(8192);
      const chunks = Array.from({ length: 12 }, () => `${(8192).toString(16)}\r\n${chunk}\r\n`);
      const chunked = await raw(port, ['POST /v1/update/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', ...chunks]);
      expect(chunked.reply).toMatch(/^HTTP\/1\.1 413 /);
      expect(chunked.reply).toMatch(/request body exceeds 65536 bytes/);
    });

    it('headers sent too slowly are cut off at the request deadline', async () => {
      const slow = await startServer({ repo, eventsFile: join(t.dir, 'slow-headers.jsonl'), appIds: [APP_ID], maxBodyBytes: 64 * 1024, requestTimeoutMs: 500, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
      try {
        const r = await raw(Number(new URL(slow.url).port), ['POST /v1/update/ HTTP/1.1\r\nHost: x\r\n'], 10_000);
        expect(r.ms).toBeLessThan(5000);
        expect(r.reply).toMatch(/^HTTP\/1\.1 408|^$/);
      } finally {
        await slow.close();
      }
    });

    it('200 requests of 64 KB grow the event log by a bounded amount, with bounded strings and known fields only', async () => {
      const file = join(t.dir, 'flood-events.jsonl');
      const flood = await startServer({ repo, eventsFile: file, appIds: [APP_ID], maxBodyBytes: 64 * 1024, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
      try {
        const long = (c: string, n = 600) => c.repeat(n);
        let body = '<request protocol="3.0" installsource="scheduler">';
        for (let a = 0; body.length < 60_000; a++) {
          const evs = Array.from({ length: 8 }, () => `<event eventtype="3" eventresult="0" errorcode="44" previousversion="${long('p')}" junk="${long('j')}"/>`).join('');
          body += `<app appid="${APP_ID}" version="${long('v')}" track="${long('t', 100)}" board="${long('b')}" machineid="m${a}-${long('m')}" extra="${long('e')}"><ping/>${evs}</app>`;
        }
        body += '</request>';
        expect(body.length).toBeGreaterThan(60_000);
        expect(body.length).toBeLessThan(64 * 1024);
        const flooded = await postMany(flood.url, body, 200);
        expect(flooded.every((c) => c === 200)).toBe(true);
        const size = (await readFile(file)).length;
        // Before: 180 MB. Now: at most 16 records a request, each of bounded size.
        expect(size).toBeLessThan(200 * 16 * 2048);
        console.log(`[serve] 200 requests of ${body.length} bytes added ${(size / 2 ** 20).toFixed(2)} MiB to the event log`);
        for (const l of (await readFile(file, 'utf8')).trim().split('\n')) {
          const rec = JSON.parse(l) as Record<string, unknown>;
          expect(Object.keys(rec)).not.toContain('junk');
          expect(Object.keys(rec)).not.toContain('extra');
          for (const v of Object.values(rec)) if (typeof v === 'string') expect(v.length).toBeLessThanOrEqual(128);
        }
      } finally {
        await flood.close();
      }
    });
  });
});

/** Posts `body` `n` times, ten at a time; the statuses. */
async function postMany(url: string, body: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i += 10) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(10, n - i) }, () => got.post(`${url}v1/update/`, { body, headers: { 'content-type': 'text/xml' }, throwHttpErrors: false, retry: { limit: 0 } }).then((r) => r.statusCode)),
    );
    out.push(...batch);
  }
  return out;
}

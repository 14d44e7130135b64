/**
 * The acceptance of TUF's attack list, end to end: `basalt update apply --disk`
 * runs as its own process against a hostile server on 127.0.0.1 that serves a
 * real repository (published with release()) and then tampers with it, in
 * static mode (--server static+URL) and over Omaha (an answer written with
 * buildResponse). Every attack must end in a refusal: exit status 1, exactly
 * one line on stderr naming what was refused, the booted slot A still first
 * in the GPT and USR-A's bytes unchanged. The liveness attacks (endless data,
 * slow retrieval) are judged by their bound: elapsed time, bytes the server
 * sent, and the peak RSS (VmHWM) of the process.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, open, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join, normalize } from 'node:path';
import { Metadata, MetadataKind, MetaFile, Snapshot, Targets, TargetFile, Timestamp } from '@tufjs/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ID } from '../../../common/src/contracts.js';
import { findPartition, partitionRange, readGpt, slotAttrs } from '../../../common/src/gpt/index.js';
import { silentLogger } from '../../../common/src/log.js';
import { projectRoot } from '../../../common/src/paths.js';
import { ensureDist, makeDisk, makeKeys, makeTuf, makeUsr, runMeasured, tempDir, type MeasuredRun, type TestTuf } from '../../test/helpers.js';
import { buildResponse, type UpdateOffer } from '../format/omaha.js';
import { deltaDir, type PayloadManifest } from '../format/metadata.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { release } from '../publish/repo.js';
import { refreshTrust, trustDir } from './client.js';
import { generateTufKey, parseTufKey, signWith, type TufSigner } from './keys.js';
import { DEFAULT_EXPIRY, refreshTimestamp, SPEC_VERSION } from './publish.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
/** What the hostile server does: the folder it serves, per-path overrides (a body or a handler), the Omaha answer. */
interface Scene {
  dir: string;
  overrides: Map<string, Buffer | Handler>;
  omaha?: (() => string) | undefined;
}

let t: Awaited<ReturnType<typeof tempDir>>;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let srv: Server;
let base: string;
/** The repository now: stable at 2.0.0, beta at 3.0.0. */
let repo: string;
/** The repository as it was when stable was at 1.5.0 (its metadata still valid). */
let repo15: string;
/** An attacker's repository of its own 2.0.0 (its own TUF and release keys). */
let evil: string;
let usr1: string;
let m15: PayloadManifest;
let m2: PayloadManifest;
let m3: PayloadManifest;
let mEvil: PayloadManifest;
let scene: Scene;
/** Bytes the server wrote, and the paths asked for, in the current attack. */
let sent = 0;
let asked: string[] = [];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  await ensureDist();
  t = await tempDir('basalt-attacks-');
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  repo = join(t.dir, 'repo');
  const common = { key, tuf: keys.tuf.publish, repo, now: new Date(), expiresMs: 86_400_000, xzLevel: 0, chunkSize: 64 * 1024 };
  usr1 = await makeUsr(t.dir, '1.0.0', { randomKiB: 128 });
  await release({ ...common, usr: usr1, version: '1.0.0', channel: 'stable' });
  m15 = (await release({ ...common, usr: await makeUsr(t.dir, '1.5.0', { like: '1.0.0' }), version: '1.5.0', channel: 'stable' })).manifest;
  repo15 = join(t.dir, 'repo-1.5.0');
  await cp(repo, repo15, { recursive: true });
  m2 = (await release({ ...common, usr: await makeUsr(t.dir, '2.0.0', { like: '1.0.0' }), version: '2.0.0', channel: 'stable' })).manifest;
  m3 = (await release({ ...common, usr: await makeUsr(t.dir, '3.0.0', { like: '1.0.0' }), version: '3.0.0', channel: 'beta' })).manifest;
  // The attacker's own repository: a 2.0.0 signed by keys the machine does not trust.
  const ed = join(t.dir, 'attacker');
  await mkdir(ed, { recursive: true });
  const ek = await makeKeys(ed, true);
  evil = join(ed, 'repo');
  mEvil = (await release({ key: await readPrivateKeyFile(ek.priv), tuf: ek.tuf.publish, repo: evil, now: new Date(), expiresMs: 86_400_000, xzLevel: 0, usr: await makeUsr(ed, '2.0.0', { randomKiB: 64 }), version: '2.0.0', channel: 'stable' })).manifest;
  scene = { dir: repo, overrides: new Map() };
  srv = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    asked.push(path);
    const count = res.write.bind(res);
    res.write = ((chunk: Buffer | string, ...rest: never[]) => {
      sent += Buffer.byteLength(chunk);
      return count(chunk, ...rest);
    }) as typeof res.write;
    if (req.method === 'POST' && path === '/v1/update/' && scene.omaha) {
      const body = scene.omaha;
      req.resume();
      req.on('end', () => {
        const b = Buffer.from(body());
        sent += b.length;
        res.writeHead(200, { 'content-type': 'text/xml', 'content-length': b.length }).end(b);
      });
      return;
    }
    const o = scene.overrides.get(path);
    if (typeof o === 'function') return o(req, res);
    const send = (b: Buffer) => {
      sent += b.length;
      res.writeHead(200, { 'content-length': b.length }).end(b);
    };
    if (o) return send(o);
    readFile(normalize(join(scene.dir, path))).then(send, () => res.writeHead(404).end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(srv.address() as { port: number }).port}/`;
}, 120_000);

afterAll(async () => {
  srv.closeAllConnections();
  await new Promise((r) => srv.close(r));
  await t.cleanup();
});

/** Sets the scene of one attack (and resets the counters). */
function stage(s: Partial<Scene>): void {
  scene = { dir: repo, overrides: new Map(), ...s };
  sent = 0;
  asked = [];
}

/** An Omaha answer offering `o` (as basalt serve would write it). */
function omaha(o: { version: string; codebases: string[]; packageName: string; size: number; sha256Hex: string }): () => string {
  const offer: UpdateOffer = { ...o, sha1Base64: '', sha256Base64: Buffer.from(o.sha256Hex, 'hex').toString('base64'), manifestName: 'manifest.json' };
  return () => buildResponse([{ appId: APP_ID, status: 'ok', ping: true, events: 0, updateCheck: { status: 'ok', offer } }], 0);
}
/** The offer of a manifest's release from the hostile server's payloads/<version>/. */
const offerOf = (m: PayloadManifest, codebases = [`${base}payloads/${m.version}/`]) => omaha({ version: m.version, codebases, packageName: m.payload.file, size: m.payload.size, sha256Hex: m.payload.sha256 });

/** Writes spaces without end (with back-pressure) until the client hangs up; 1 GiB at most. */
const endless: Handler = (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  let n = 0;
  const pump = (): void => {
    while (!res.destroyed && n < 2 ** 30) {
      n += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
};
/** Sends `body` a byte a second (its length announced), until the client hangs up. */
const crawl =
  (body: Buffer): Handler =>
  (_req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    let i = 0;
    const tick = setInterval(() => {
      if (res.destroyed || i >= body.length) {
        clearInterval(tick);
        return;
      }
      res.write(body.subarray(i, i + 1));
      i++;
    }, 1000);
    res.on('close', () => clearInterval(tick));
  };

/** A machine booted from A at 1.0.0: its disk, and the hash of USR-A's range. */
async function machine() {
  const disk = await makeDisk(t.dir, usr1, '1.0.0');
  return { disk, stateDir: `${disk}.state`, usrA: await usrAHash(disk) };
}
async function usrAHash(disk: string): Promise<string> {
  const r = partitionRange(await readGpt(disk), findPartition(await readGpt(disk), 'USR-A'));
  const fh = await open(disk, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.alloc(4 * 1024 * 1024);
    for (let off = 0; off < r.length; off += buf.length) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, r.length - off), r.offset + off);
      h.update(buf.subarray(0, bytesRead));
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}

/** The machine saw the repository as it is now (the trusted versions kept in its state dir). */
async function seen(stateDir: string, root = keys.tuf.root, at = base): Promise<void> {
  stage({});
  await mkdir(stateDir, { recursive: true });
  await refreshTrust({ stateDir, initialRoot: root, metadataUrl: `${at}metadata/`, log: silentLogger });
}

/** `basalt update apply --disk` as its own process, with its time and peak RSS. */
function apply(disk: string, mode: 'static' | 'omaha', o: { root?: string; extra?: string[] } = {}): Promise<MeasuredRun> {
  const server = mode === 'static' ? `static+${base}` : `${base}v1/update/`;
  return runMeasured([join(projectRoot(), 'bin/basalt.js'), 'update', 'apply', '--disk', disk, '--booted-slot', 'A', '--state-dir', `${disk}.state`, '--tuf-root', o.root ?? keys.tuf.root, '--server', server, '--channel', 'stable', '--board', 'amd64-usr', '--root', join(t.dir, 'none'), '--retry-base', '100ms', '--retries', '1', '--stall-timeout', '1s', '--document-timeout', '2s', ...(o.extra ?? [])]);
}

/**
 * Refused: exit 1, nothing on stdout, one line on stderr matching `line`, A
 * still first and its bytes unchanged, B never made bootable. With `warns`
 * (a payload transfer that was given up), the one error line is the last and
 * the lines before it are the transfer's `warn:` lines (a mirror dropped, a
 * retry), as `apply` reports them while it works.
 */
async function refused(m: Awaited<ReturnType<typeof machine>>, r: MeasuredRun, line: RegExp, warns = false): Promise<void> {
  expect(r.exitCode, r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const all = r.stderr.trim().split('\n');
  const lines = warns ? all.filter((l) => !l.startsWith('warn: ')) : all;
  expect(lines, r.stderr).toHaveLength(1);
  expect(all.at(-1)).toBe(lines[0]);
  expect(lines[0]).toMatch(/^basalt: error: /);
  expect(lines[0]).toMatch(line);
  const gpt = await readGpt(m.disk);
  const a = slotAttrs(findPartition(gpt, 'USR-A'));
  const b = slotAttrs(findPartition(gpt, 'USR-B'));
  expect(a.priority).toBeGreaterThan(b.priority);
  expect(b.priority).toBe(0);
  expect(await usrAHash(m.disk)).toBe(m.usrA);
}

const json = (md: Metadata<Targets | Snapshot | Timestamp>) => Buffer.from(JSON.stringify(md.toJSON()));
const readJson = async (file: string) => JSON.parse(await readFile(file, 'utf8')) as never;
const readTimestamp = async (file: string) => Metadata.fromJSON(MetadataKind.Timestamp, await readJson(file));
const readSnapshot = async (file: string) => Metadata.fromJSON(MetadataKind.Snapshot, await readJson(file));
const readTargets = async (file: string) => Metadata.fromJSON(MetadataKind.Targets, await readJson(file));
const modes = ['static', 'omaha'] as const;
const label = (mode: (typeof modes)[number]) => (mode === 'static' ? 'static' : 'Omaha');
const log = (what: string, r: MeasuredRun) => console.log(`[attack] ${what}: exit ${r.exitCode} in ${r.ms} ms, ${(sent / 1024).toFixed(0)} KiB sent, peak RSS ${r.peakRssMiB.toFixed(0)} MiB: ${r.stderr.trim()}`);

describe("TUF's attack list against `basalt update apply` (loopback, a process per attack)", () => {
  it('the untampered repository installs in both modes (the baseline the attacks tamper with)', async () => {
    for (const mode of modes) {
      stage({ omaha: offerOf(m2) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^updated USR-B to 2\.0\.0; reboot to use it$/m);
    }
  });

  for (const mode of modes) {
    it(`arbitrary installation (${label(mode)}): the attacker's own 2.0.0 (manifest and payload under another key) is refused`, async () => {
      const eb = (f: string) => readFile(join(evil, 'payloads/2.0.0', f));
      const overrides = new Map<string, Buffer | Handler>([
        ['/payloads/2.0.0/manifest.json', await eb('manifest.json')],
        [`/payloads/2.0.0/${m2.payload.file}`, await eb(mEvil.payload.file)],
      ]);
      stage({ overrides, omaha: offerOf(mEvil) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`arbitrary installation (${mode})`, r);
      await refused(m, r, mode === 'static' ? /payloads\/2\.0\.0\/manifest\.json: not a signed manifest target of 2\.0\.0/ : /is not a signed payload target of 2\.0\.0/);
      expect(asked).not.toContain(`/payloads/2.0.0/${m2.payload.file}`);
    });

    it(`endless data (${label(mode)}): an endless ${mode === 'static' ? 'timestamp.json' : 'Omaha answer'}, manifest and payload are cut at their caps; bytes and RSS bounded`, async () => {
      const first: [string, Partial<Scene>] =
        mode === 'static'
          ? ['timestamp.json', { overrides: new Map([['/metadata/timestamp.json', endless]]) }]
          : ['answer', { omaha: undefined, overrides: new Map([['/v1/update/', endless]]) }];
      const second: [string, Partial<Scene>] = ['manifest', { overrides: new Map([['/payloads/2.0.0/manifest.json', endless]]), omaha: offerOf(m2) }];
      // The payload: cut at the size the signed manifest gives, then refused by its chunk hashes.
      const third: [string, Partial<Scene>] = ['payload', { overrides: new Map([[`/payloads/2.0.0/${m2.payload.file}`, endless]]), omaha: offerOf(m2) }];
      for (const [what, s] of [first, second, third]) {
        stage(s);
        const m = await machine();
        const r = await apply(m.disk, mode);
        log(`endless ${what} (${mode})`, r);
        if (what === 'payload') await refused(m, r, /usr\.img\.payload: .*(signed manifest|more bytes|larger than)/, true);
        else await refused(m, r, what === 'answer' ? /the reply is larger than 262144 bytes/ : /(more than \d+ bytes|larger than \d+ bytes)/);
        expect(r.ms).toBeLessThan(10_000);
        expect(sent).toBeLessThan(64 * 2 ** 20);
        expect(r.peakRssMiB).toBeGreaterThan(0);
        expect(r.peakRssMiB).toBeLessThan(256);
      }
    });

    it(`extraneous dependencies (${label(mode)}): a delta whose manifest names an unsigned full release is not taken; nothing unsigned is fetched`, async () => {
      // The attacker's delta manifest: its `full` is the attacker's release.
      const dd = `/payloads/2.0.0/${deltaDir('1.0.0')}/`;
      const delta = JSON.stringify({ formatVersion: 2, version: '2.0.0', delta: { from: '1.0.0', full: { manifest: '/evil/manifest.json', payload: '/evil/usr.img.payload', size: mEvil.payload.size, sha256: mEvil.payload.sha256 } } });
      const overrides = new Map<string, Buffer | Handler>([
        [`${dd}manifest.json`, Buffer.from(delta)],
        [`${dd}${mEvil.payload.file}`, await readFile(join(evil, 'payloads/2.0.0', mEvil.payload.file))],
        ['/evil/manifest.json', await readFile(join(evil, 'payloads/2.0.0/manifest.json'))],
        ['/evil/usr.img.payload', await readFile(join(evil, 'payloads/2.0.0', mEvil.payload.file))],
      ]);
      stage({ overrides, omaha: omaha({ version: '2.0.0', codebases: [`${base}${dd.slice(1)}`], packageName: mEvil.payload.file, size: mEvil.payload.size, sha256Hex: mEvil.payload.sha256 }) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`extraneous dependencies (${mode})`, r);
      expect(asked.filter((p) => p.startsWith('/evil/'))).toEqual([]);
      if (mode === 'omaha') {
        await refused(m, r, /is not a signed payload target of 2\.0\.0/);
        expect(asked).not.toContain(`${dd}${mEvil.payload.file}`);
      } else {
        // Static mode looks for a delta itself: the unsigned one is dropped and the signed full release installed, nothing else.
        expect(r.exitCode, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^updated USR-B to 2\.0\.0; reboot to use it$/m);
        expect(asked).toContain(`/payloads/2.0.0/${m2.payload.file}`);
        expect(asked).not.toContain(`${dd}${mEvil.payload.file}`);
        expect(await usrAHash(m.disk)).toBe(m.usrA);
      }
    });

    it(`fast-forward (${label(mode)}): a timestamp forged at version 9999 (not signed by the timestamp key) is refused and not kept`, async () => {
      const m = await machine();
      await seen(m.stateDir);
      const ts = await readTimestamp(join(repo, 'metadata/timestamp.json'));
      const forged = new Metadata(new Timestamp({ version: 9999, specVersion: SPEC_VERSION, expires: ts.signed.expires, snapshotMeta: ts.signed.snapshotMeta }));
      forged.sign(signWith(parseTufKey(JSON.stringify(generateTufKey()), 'attacker').signer!));
      stage({ overrides: new Map([['/metadata/timestamp.json', json(forged)]]), omaha: offerOf(m2) });
      const r = await apply(m.disk, mode);
      log(`fast-forward (${mode})`, r);
      await refused(m, r, /TUF metadata refused .*timestamp/i);
      const kept = JSON.parse(await readFile(join(trustDir(m.stateDir), 'timestamp.json'), 'utf8')) as { signed: { version: number } };
      expect(kept.signed.version).toBe(ts.signed.version);
    });

    it(`fast-forward (${label(mode)}): a release version forged far ahead (99.0.0) is refused`, async () => {
      const overrides = new Map<string, Buffer | Handler>();
      if (mode === 'static') {
        const ch = JSON.parse(await readFile(join(repo, 'channels/stable.json'), 'utf8')) as Record<string, unknown>;
        overrides.set('/channels/stable.json', Buffer.from(JSON.stringify({ ...ch, version: '99.0.0' }).replace(/"2\.0\.0"/g, '"99.0.0"')));
      }
      for (const f of ['manifest.json', m2.payload.file]) overrides.set(`/payloads/99.0.0/${f}`, await readFile(join(repo, 'payloads/2.0.0', f)));
      stage({ overrides, omaha: omaha({ version: '99.0.0', codebases: [`${base}payloads/99.0.0/`], packageName: m2.payload.file, size: m2.payload.size, sha256Hex: m2.payload.sha256 }) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`fast-forward 99.0.0 (${mode})`, r);
      await refused(m, r, mode === 'static' ? /channels\/stable\.json: the reply is larger than \d+ bytes/ : /the server offered 99\.0\.0, but channel stable's signed targets \(v\d+\) are at 2\.0\.0/);
    });

    it(`indefinite freeze (${label(mode)}): an expired timestamp is refused${mode === 'omaha' ? ', with the offer of 1.5.0 replayed from that frozen mirror' : ''}`, async () => {
      const frozen = join(t.dir, `frozen-${mode}`);
      await cp(mode === 'omaha' ? repo15 : repo, frozen, { recursive: true });
      await refreshTimestamp(frozen, keys.tuf.publish.signers, Date.now() - 3 * 86_400_000, DEFAULT_EXPIRY);
      stage({ dir: frozen, omaha: offerOf(m15) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`indefinite freeze (${mode})`, r);
      await refused(m, r, /ExpiredMetadataError: Final timestamp\.json is expired/);
    });

    it(`malicious mirrors (${label(mode)}): every mirror serves corrupt payload bytes: refused by the signed manifest, each mirror given up`, async () => {
      const payload = await readFile(join(repo, 'payloads/2.0.0', m2.payload.file));
      const bad = Buffer.from(payload);
      bad[10] = bad[10]! ^ 0xff;
      const overrides = new Map<string, Buffer | Handler>([
        [`/payloads/2.0.0/${m2.payload.file}`, bad],
        ['/mirror2/manifest.json', await readFile(join(repo, 'payloads/2.0.0/manifest.json'))],
        [`/mirror2/${m2.payload.file}`, bad],
      ]);
      stage({ overrides, omaha: offerOf(m2, [`${base}payloads/2.0.0/`, `${base}mirror2/`]) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`malicious mirrors (${mode})`, r);
      await refused(m, r, /does not match the signed manifest/, true);
      expect(r.ms).toBeLessThan(10_000);
      // A bad mirror is dropped, not asked again and again (--retries 1).
      for (const p of [`/payloads/2.0.0/${m2.payload.file}`, `/mirror2/${m2.payload.file}`]) expect(asked.filter((a) => a === p).length).toBeLessThanOrEqual(2);
      if (mode === 'omaha') expect(asked).toContain(`/mirror2/${m2.payload.file}`);
    });

    it(`mix-and-match (${label(mode)}): a snapshot for other targets (1.5.0's) under the version the timestamp names is refused`, async () => {
      const ts = await readTimestamp(join(repo, 'metadata/timestamp.json'));
      const n = ts.signed.snapshotMeta.version;
      const old = await readFile(join(repo15, `metadata/${(await readTimestamp(join(repo15, 'metadata/timestamp.json'))).signed.snapshotMeta.version}.snapshot.json`));
      stage({ overrides: new Map([[`/metadata/${n}.snapshot.json`, old]]), omaha: offerOf(m2) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`mix-and-match (${mode})`, r);
      await refused(m, r, /TUF metadata refused .*(length|hash|snapshot)/i);
    });

    it(`rollback (${label(mode)}): after seeing stable at 2.0.0, the mirror as it was at 1.5.0 (metadata still valid) is refused`, async () => {
      const m = await machine();
      await seen(m.stateDir);
      stage({ dir: repo15, omaha: offerOf(m15) });
      const r = await apply(m.disk, mode);
      log(`rollback (${mode})`, r);
      await refused(m, r, /BadVersionError: New timestamp version \d+ is less than current version \d+/);
      // What the machine trusts is still the newer metadata.
      const now = await readTimestamp(join(repo, 'metadata/timestamp.json'));
      expect((await readTimestamp(join(trustDir(m.stateDir), 'timestamp.json'))).signed.version).toBe(now.signed.version);
    });

    it(`slow retrieval (${label(mode)}): ${mode === 'static' ? 'timestamp.json' : 'the Omaha answer'} and the payload sent a byte a second are given up within their deadlines`, async () => {
      const payload = await readFile(join(repo, 'payloads/2.0.0', m2.payload.file));
      const first: [string, Partial<Scene>] =
        mode === 'static'
          ? ['timestamp.json', { overrides: new Map([['/metadata/timestamp.json', crawl(await readFile(join(repo, 'metadata/timestamp.json')))]]) }]
          : ['answer', { omaha: undefined, overrides: new Map([['/v1/update/', crawl(Buffer.from(offerOf(m2)()))]]) }];
      const second: [string, Partial<Scene>] = ['payload', { overrides: new Map([[`/payloads/2.0.0/${m2.payload.file}`, crawl(payload)]]), omaha: offerOf(m2) }];
      for (const [what, s] of [first, second]) {
        stage(s);
        const m = await machine();
        const r = await apply(m.disk, mode);
        log(`slow retrieval of the ${what} (${mode})`, r);
        if (what === 'payload') await refused(m, r, /usr\.img\.payload: slower than 1024 bytes\/s/, true);
        else await refused(m, r, /no complete answer within 2 s \(whole-request deadline\)|nothing received for 1 s \(stall timeout\)/);
        // --document-timeout 2s for documents and metadata; --stall-timeout 1s windows under --min-rate (1 KiB/s) for the payload, one retry.
        expect(r.ms).toBeLessThan(8_000);
        expect(sent).toBeLessThan(64 * 1024);
      }
    });

    it(`wrong software (${label(mode)}): beta's release (3.0.0) offered to a stable machine is refused`, async () => {
      const overrides = new Map<string, Buffer | Handler>();
      if (mode === 'static') overrides.set('/channels/stable.json', await readFile(join(repo, 'channels/beta.json')));
      stage({ overrides, omaha: offerOf(m3) });
      const m = await machine();
      const r = await apply(m.disk, mode);
      log(`wrong software (${mode})`, r);
      await refused(m, r, mode === 'static' ? /channels\/stable\.json: \d+ bytes, but the signed target channels\/stable\.json has \d+/ : /the server offered 3\.0\.0, but channel stable's signed targets \(v\d+\) are at 2\.0\.0/);
    });
  }

  describe('with a threshold of 2 targets keys', () => {
    let two: TestTuf;
    let k2: TufSigner;
    let r2: string;
    let m21: PayloadManifest;
    beforeAll(async () => {
      const k1 = generateTufKey();
      const kb = generateTufKey();
      const one = { keys: [k1.public], threshold: 1 };
      two = await makeTuf(join(t.dir, 'keys-two'), k1, { root: one, targets: { keys: [k1.public, kb.public], threshold: 2 }, snapshot: one, timestamp: one });
      k2 = parseTufKey(JSON.stringify(kb), 'kb').signer!;
      r2 = join(t.dir, 'repo-two');
      m21 = (await release({ key: await readPrivateKeyFile(keys.priv), tuf: { ...two.publish, signers: [...two.publish.signers, k2] }, repo: r2, now: new Date(), expiresMs: 86_400_000, xzLevel: 0, usr: await makeUsr(t.dir, '2.1.0', { like: '1.0.0' }), version: '2.1.0', channel: 'stable' })).manifest;
    }, 60_000);

    for (const mode of modes) {
      it(`key compromise below threshold (${label(mode)}): targets naming the attacker's payload, signed by one of the two keys, are refused`, async () => {
        const dir = join(r2, 'metadata');
        const ts = await readTimestamp(join(dir, 'timestamp.json'));
        const sn = await readSnapshot(join(dir, `${ts.signed.snapshotMeta.version}.snapshot.json`));
        const tg = await readTargets(join(dir, `${sn.signed.meta['targets.json']!.version}.targets.json`));
        // The attacker holds one targets key and the online snapshot/timestamp key: it swaps the payload target for its own.
        const evilPayload = await readFile(join(evil, 'payloads/2.0.0', mEvil.payload.file));
        const targets = { ...tg.signed.targets };
        const path = `payloads/2.1.0/${m21.payload.file}`;
        targets[path] = new TargetFile({ path, length: evilPayload.length, hashes: { sha256: sha(evilPayload) }, unrecognizedFields: targets[path]!.unrecognizedFields });
        const emd = new Metadata(new Targets({ version: tg.signed.version + 1, specVersion: SPEC_VERSION, expires: tg.signed.expires, targets }));
        emd.sign(signWith(k2));
        const online = two.publish.signers[0]!;
        const snap = new Metadata(new Snapshot({ version: sn.signed.version + 1, specVersion: SPEC_VERSION, expires: sn.signed.expires, meta: { 'targets.json': new MetaFile({ version: emd.signed.version }) } }));
        snap.sign(signWith(online));
        const sb = json(snap);
        const stamp = new Metadata(new Timestamp({ version: ts.signed.version + 1, specVersion: SPEC_VERSION, expires: ts.signed.expires, snapshotMeta: new MetaFile({ version: snap.signed.version, length: sb.length, hashes: { sha256: sha(sb) } }) }));
        stamp.sign(signWith(online));
        stage({
          dir: r2,
          overrides: new Map<string, Buffer | Handler>([
            [`/metadata/${emd.signed.version}.targets.json`, json(emd)],
            [`/metadata/${snap.signed.version}.snapshot.json`, sb],
            ['/metadata/timestamp.json', json(stamp)],
            [`/${path}`, evilPayload],
          ]),
          omaha: omaha({ version: '2.1.0', codebases: [`${base}payloads/2.1.0/`], packageName: m21.payload.file, size: evilPayload.length, sha256Hex: sha(evilPayload) }),
        });
        const m = await machine();
        const r = await apply(m.disk, mode, { root: two.root });
        log(`key compromise below threshold (${mode})`, r);
        await refused(m, r, /targets was signed by 1\/2 keys/);
        expect(asked).not.toContain(`/${path}`);
      });
    }
  });
});

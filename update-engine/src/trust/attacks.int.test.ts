/**
 * TUF's attack list against the machine's trust path, each on loopback: a
 * real static HTTP server serves a mirror of the repository that the test
 * tampers with; the client (refreshTrust: tuf-js over the state dir, then the
 * pure checks of decide.ts) must refuse with one clear line and keep what it
 * trusted before.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { cp, mkdir, readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { createHash } from 'node:crypto';
import { Metadata, MetadataKind, MetaFile, Snapshot, Targets, Timestamp, TargetFile } from '@tufjs/models';
import { makeKeys, makeTuf, makeUsr, tempDir, type TestTuf } from '../../test/helpers.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { promote, release } from '../publish/repo.js';
import { silentLogger } from '../../../common/src/log.js';
import { refreshTrust, trustDir } from './client.js';
import { channelRelease, checkBytes, checkOffer, type TrustedTargets } from './decide.js';
import { generateTufKey, parseTufKey, signWith, type TufSigner } from './keys.js';
import { DEFAULT_EXPIRY, refreshTimestamp, rotateRoot, SPEC_VERSION, tufDate } from './publish.js';
import { offerFromChannel } from '../format/offer.js';
import { peekEnvelope, type ChannelMeta } from '../format/metadata.js';

let t: Awaited<ReturnType<typeof tempDir>>;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let repo: string;
/** The repository as it was after the first release (for rollback and freeze). */
let repoV1: string;
/** What the server serves: a folder, and per-path overrides. */
let served: string;
const override = new Map<string, Buffer | ((res: import('node:http').ServerResponse) => void)>();
let bytesSent = 0;
let srv: Server;
let base: string;

beforeAll(async () => {
  t = await tempDir('basalt-tuf-');
  keys = await makeKeys(t.dir);
  const key = await readPrivateKeyFile(keys.priv);
  repo = join(t.dir, 'repo');
  const now = new Date();
  const common = { key, tuf: keys.tuf.publish, repo, now, expiresMs: 86_400_000, xzLevel: 0 };
  await release({ ...common, usr: await makeUsr(t.dir, '1.0.0', { randomKiB: 64 }), version: '1.0.0', channel: 'stable' });
  repoV1 = join(t.dir, 'repo-v1');
  await cp(repo, repoV1, { recursive: true });
  await release({ ...common, usr: await makeUsr(t.dir, '2.0.0', { randomKiB: 64 }), version: '2.0.0', channel: 'stable' });
  await release({ ...common, usr: await makeUsr(t.dir, '3.0.0', { randomKiB: 64 }), version: '3.0.0', channel: 'beta' });
  served = repo;
  srv = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const o = override.get(path);
    if (typeof o === 'function') return o(res);
    const send = (b: Buffer) => {
      bytesSent += b.length;
      res.writeHead(200, { 'content-length': b.length }).end(b);
    };
    if (o) return send(o);
    const file = normalize(join(served, path));
    readFile(file).then(send, () => res.writeHead(404).end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(srv.address() as { port: number }).port}/`;
});
afterAll(async () => {
  srv.closeAllConnections();
  await new Promise((r) => srv.close(r));
  await t.cleanup();
});

/** A machine: a fresh state dir trusting `root` (keys.tuf.root unless given). */
async function machine(root = keys.tuf.root) {
  const stateDir = join(t.dir, `state-${Math.random().toString(36).slice(2)}`);
  await mkdir(stateDir, { recursive: true });
  return {
    stateDir,
    refresh: (limits?: Parameters<typeof refreshTrust>[0]['limits']) => refreshTrust({ stateDir, initialRoot: root, metadataUrl: `${base}metadata/`, log: silentLogger, ...(limits ? { limits } : {}) }),
  };
}

async function channelOffer(tt: TrustedTargets, channel: string) {
  const rel = channelRelease(tt, channel);
  const text = await readFile(join(repo, rel.channelFile.path));
  checkBytes(text, rel.channelFile, rel.channelFile.path);
  return { rel, offer: offerFromChannel(peekEnvelope(text.toString('utf8'), 'ch') as ChannelMeta, base) };
}

function reset() {
  served = repo;
  override.clear();
}

const json = (md: Metadata<Targets | Snapshot | Timestamp>) => Buffer.from(JSON.stringify(md.toJSON()));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe("TUF's attacks against the update path (loopback)", () => {
  beforeEach(reset);
  it('a good repository verifies: stable is at 2.0.0, beta at 3.0.0, and the trusted versions are kept in the state dir', async () => {
    reset();
    const m = await machine();
    const tt = await m.refresh();
    expect(channelRelease(tt, 'stable').version).toBe('2.0.0');
    expect(channelRelease(tt, 'beta').version).toBe('3.0.0');
    const { rel, offer } = await channelOffer(tt, 'stable');
    expect(checkOffer(offer, rel, tt, '1.0.0').path).toBe('payloads/2.0.0/usr.img.payload');
    const ts = JSON.parse(await readFile(join(trustDir(m.stateDir), 'timestamp.json'), 'utf8')) as { signed: { version: number } };
    expect(ts.signed.version).toBe(3);
  });

  it('rollback: an older timestamp/snapshot/targets (the mirror as it was at 1.0.0) is refused after newer was seen, also after a restart', async () => {
    reset();
    const m = await machine();
    await m.refresh();
    served = repoV1;
    // A new refreshTrust reads only the state dir: this is what a restarted engine does.
    await expect(m.refresh()).rejects.toMatchObject({ code: 'E_TUF_REFRESH' });
    await expect(m.refresh()).rejects.toThrow(/BadVersionError: New timestamp version 1 is less than current version 3/);
    // A machine that never saw the newer metadata gets 1.0.0's (still valid) metadata: that is no rollback for it.
    expect(channelRelease(await (await machine()).refresh(), 'stable').version).toBe('1.0.0');
  });

  it('indefinite freeze: an expired timestamp is refused', async () => {
    reset();
    const frozen = join(t.dir, 'repo-frozen');
    await cp(repo, frozen, { recursive: true });
    await refreshTimestamp(frozen, keys.tuf.publish.signers, Date.now() - 3 * 86_400_000, DEFAULT_EXPIRY);
    served = frozen;
    const m = await machine();
    await expect(m.refresh()).rejects.toThrow(/ExpiredMetadataError: Final timestamp\.json is expired/);
  });

  it('mix-and-match: a snapshot that is not the one the timestamp names is refused', async () => {
    reset();
    const old = await readFile(join(repoV1, 'metadata/1.snapshot.json'));
    const ts = JSON.parse(await readFile(join(repo, 'metadata/timestamp.json'), 'utf8')) as { signed: { meta: { 'snapshot.json': { version: number } } } };
    override.set(`/metadata/${ts.signed.meta['snapshot.json'].version}.snapshot.json`, old);
    const m = await machine();
    await expect(m.refresh()).rejects.toThrow(/E_TUF_REFRESH|TUF metadata refused \(.*(length|hash)/i);
    reset();
  });

  it('arbitrary installation: a payload that is not a signed target, or a manifest with other bytes, is refused', async () => {
    reset();
    const tt = await (await machine()).refresh();
    const { rel, offer } = await channelOffer(tt, 'stable');
    expect(() => checkOffer({ ...offer, sha256Hex: 'ab'.repeat(32) }, rel, tt, '1.0.0')).toThrow(/is not a signed payload target of 2\.0\.0/);
    expect(() => checkOffer({ ...offer, packageName: 'evil.payload' }, rel, tt, '1.0.0')).toThrow(/E_TUF_NOT_TARGET|not a signed payload target/);
    const manifest = await readFile(join(repo, rel.manifest.path));
    const bad = Buffer.from(manifest);
    bad[bad.length - 3] = bad[bad.length - 3]! ^ 1;
    expect(() => checkBytes(bad, rel.manifest, 'manifest')).toThrow(/sha256 .* is not the signed target payloads\/2\.0\.0\/manifest\.json/);
  });

  it("wrong software: another channel's release (beta's 3.0.0) offered to a stable machine is refused; an older stable release (replay) too", async () => {
    reset();
    const tt = await (await machine()).refresh();
    const { rel } = await channelOffer(tt, 'stable');
    const beta = (await channelOffer(tt, 'beta')).offer;
    expect(() => checkOffer(beta, rel, tt, '1.0.0')).toThrow(/the server offered 3\.0\.0, but channel stable's signed targets \(v\d+\) are at 2\.0\.0/);
    const v1 = offerFromChannel(peekEnvelope(await readFile(join(repoV1, 'channels/stable.json'), 'utf8'), 'v1') as ChannelMeta, base);
    expect(() => checkOffer(v1, rel, tt, '1.0.0')).toThrow(/offered 1\.0\.0/);
  });

  it('promote keeps the channel-to-manifest binding: the manifest is untouched, both channels name its signed hash', async () => {
    const r2 = join(t.dir, 'repo-promote');
    await cp(repo, r2, { recursive: true });
    const before = await readFile(join(r2, 'payloads/3.0.0/manifest.json'));
    await promote(r2, '3.0.0', 'beta', 'stable', await readPrivateKeyFile(keys.priv), new Date(), 86_400_000, undefined, keys.tuf.publish);
    expect(await readFile(join(r2, 'payloads/3.0.0/manifest.json'))).toEqual(before);
    served = r2;
    const tt = await (await machine()).refresh();
    for (const c of ['stable', 'beta']) {
      const rel = channelRelease(tt, c);
      expect(rel.version).toBe('3.0.0');
      const ch = peekEnvelope(await readFile(join(r2, rel.channelFile.path), 'utf8'), c) as ChannelMeta;
      expect(ch.manifestSha256).toBe(sha(before));
    }
    reset();
  });

  describe('with a threshold of 2 targets keys', () => {
    let two: TestTuf;
    let k2: TufSigner;
    let r2: string;
    beforeAll(async () => {
      const k1 = generateTufKey();
      const kb = generateTufKey();
      const one = { keys: [k1.public], threshold: 1 };
      two = await makeTuf(join(t.dir, 'keys-two'), k1, { root: one, targets: { keys: [k1.public, kb.public], threshold: 2 }, snapshot: one, timestamp: one });
      k2 = parseTufKey(JSON.stringify(kb), 'kb').signer!;
      r2 = join(t.dir, 'repo-two');
      const key = await readPrivateKeyFile(keys.priv);
      // One key is not enough for the publisher either.
      await expect(release({ key, tuf: two.publish, repo: r2, now: new Date(), expiresMs: 86_400_000, xzLevel: 0, usr: await makeUsr(t.dir, '1.0.0'), version: '1.0.0', channel: 'stable' })).rejects.toThrow(/targets needs 2 signature\(s\) .* 1 of them are at hand/);
      // Refused before anything was written.
      await expect(readFile(join(r2, 'channels/stable.json'))).rejects.toThrow(/ENOENT/);
      await release({ key, tuf: { ...two.publish, signers: [...two.publish.signers, k2] }, repo: r2, now: new Date(), expiresMs: 86_400_000, xzLevel: 0, usr: await makeUsr(t.dir, '1.0.1', { like: '1.0.0' }), version: '1.0.1', channel: 'stable' });
    });

    it('key compromise below threshold: targets signed by one of the two keys are refused', async () => {
      served = r2;
      const m = await machine(two.root);
      expect(channelRelease(await m.refresh(), 'stable').version).toBe('1.0.1');
      // The attacker holds one targets key (and the online snapshot/timestamp key): it adds its own payload.
      const dir = join(r2, 'metadata');
      const ts = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(await readFile(join(dir, 'timestamp.json'), 'utf8')) as never);
      const sn = Metadata.fromJSON(MetadataKind.Snapshot, JSON.parse(await readFile(join(dir, `${ts.signed.snapshotMeta.version}.snapshot.json`), 'utf8')) as never);
      const tg = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(await readFile(join(dir, `${sn.signed.meta['targets.json']!.version}.targets.json`), 'utf8')) as never);
      const evil = new Targets({ version: tg.signed.version + 1, specVersion: SPEC_VERSION, expires: tg.signed.expires, targets: { ...tg.signed.targets } });
      evil.addTarget(new TargetFile({ path: 'payloads/9.9.9/usr.img.payload', length: 4, hashes: { sha256: 'ab'.repeat(32) } }));
      const emd = new Metadata(evil);
      emd.sign(signWith(k2));
      const online = two.publish.signers[0]!;
      const snap = new Metadata(new Snapshot({ version: sn.signed.version + 1, specVersion: SPEC_VERSION, expires: sn.signed.expires, meta: { 'targets.json': new MetaFile({ version: evil.version }) } }));
      snap.sign(signWith(online));
      const sb = json(snap);
      const stamp = new Metadata(new Timestamp({ version: ts.signed.version + 1, specVersion: SPEC_VERSION, expires: ts.signed.expires, snapshotMeta: new MetaFile({ version: snap.signed.version, length: sb.length, hashes: { sha256: sha(sb) } }) }));
      stamp.sign(signWith(online));
      override.set(`/metadata/${evil.version}.targets.json`, json(emd));
      override.set(`/metadata/${snap.signed.version}.snapshot.json`, sb);
      override.set('/metadata/timestamp.json', json(stamp));
      await expect(m.refresh()).rejects.toThrow(/targets was signed by 1\/2 keys/);
      reset();
    });
  });

  it('fast-forward: after a compromised timestamp key pushed version 9999, rotating that key lets the machine recover', async () => {
    const ff = join(t.dir, 'repo-ff');
    await cp(repo, ff, { recursive: true });
    served = ff;
    const m = await machine();
    await m.refresh();
    // The attacker, with the (shared) online key, serves a timestamp far ahead.
    const online = keys.tuf.publish.signers[0]!;
    const ts = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(await readFile(join(ff, 'metadata/timestamp.json'), 'utf8')) as never);
    const ahead = new Metadata(new Timestamp({ version: 9999, specVersion: SPEC_VERSION, expires: ts.signed.expires, snapshotMeta: ts.signed.snapshotMeta }));
    ahead.sign(signWith(online));
    override.set('/metadata/timestamp.json', json(ahead));
    await m.refresh();
    override.clear();
    // The real repository's next timestamp is refused as a rollback from 9999 …
    await refreshTimestamp(ff, keys.tuf.publish.signers, Date.now(), DEFAULT_EXPIRY);
    await expect(m.refresh()).rejects.toThrow(/less than current version 9999/);
    // … until the root rotates the timestamp and snapshot keys: the machine drops what the old key signed.
    const fresh = parseTufKey(JSON.stringify(generateTufKey()), 'fresh').signer!;
    const pub = keys.tuf.key.public;
    await rotateRoot(ff, { root: { keys: [pub], threshold: 1 }, targets: { keys: [pub], threshold: 1 }, snapshot: { keys: [fresh.publicHex], threshold: 1 }, timestamp: { keys: [fresh.publicHex], threshold: 1 } }, [...keys.tuf.publish.signers, fresh], Date.now(), DEFAULT_EXPIRY.root, DEFAULT_EXPIRY);
    const tt = await m.refresh();
    expect(channelRelease(tt, 'stable').version).toBe('2.0.0');
    const root = JSON.parse(await readFile(join(trustDir(m.stateDir), 'root.json'), 'utf8')) as { signed: { version: number } };
    expect(root.signed.version).toBe(2);
    reset();
  });

  it('endless data: a timestamp.json of 64 MB is cut at its 16 KiB cap, not buffered', async () => {
    reset();
    override.set('/metadata/timestamp.json', (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      let n = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const more = () => {
        while (n < 64 * 1024 * 1024 && !res.destroyed) {
          n += chunk.length;
          bytesSent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    bytesSent = 0;
    const m = await machine();
    await expect(m.refresh()).rejects.toThrow(/TUF metadata refused \(DownloadLengthMismatchError/);
    // Written by the server before the client hung up: the cap plus what the loopback socket buffers hold, far from 64 MB.
    console.log(`[tuf] endless timestamp.json: ${bytesSent} bytes written by the server before the client hung up`);
    expect(bytesSent).toBeLessThan(16 * 1024 * 1024);
    reset();
  });

  it('slow retrieval: a metadata file sent at a crawl is given up at the fetch deadline', async () => {
    reset();
    override.set('/metadata/timestamp.json', (res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100_000 });
      const tick = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(tick));
    });
    const m = await machine();
    const t0 = Date.now();
    await expect(m.refresh({ fetchTimeout: 400 })).rejects.toMatchObject({ code: 'E_TUF_REFRESH' });
    expect(Date.now() - t0).toBeLessThan(5000);
    reset();
  });

  it('extraneous dependencies / malicious mirror: a root.json from another key set is not a rotation', async () => {
    reset();
    const other = await makeTuf(join(t.dir, 'keys-other'));
    override.set('/metadata/2.root.json', (res) => void readFile(other.root).then((b) => res.writeHead(200).end(b)));
    const m = await machine();
    await expect(m.refresh()).rejects.toThrow(/TUF metadata refused \(.*(root|signed)/i);
    // The state dir still trusts root v1.
    const root = JSON.parse(await readFile(join(trustDir(m.stateDir), 'root.json'), 'utf8')) as { signed: { version: number } };
    expect(root.signed.version).toBe(1);
    reset();
  });

  it('the trusted root must exist: a missing --tuf-root is one clear error', async () => {
    const m = await machine(join(t.dir, 'no-such-root.json'));
    await expect(m.refresh()).rejects.toMatchObject({ code: 'E_TUF_ROOT' });
    await expect(m.refresh()).rejects.toThrow(/no-such-root\.json: cannot read the trusted TUF root/);
  });

  it('writes expiry dates as TUF does', () => {
    expect(tufDate(Date.UTC(2030, 0, 2, 3, 4, 5, 678))).toBe('2030-01-02T03:04:05Z');
  });
});

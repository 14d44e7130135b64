import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { acceptableVersions, channelRelease, checkBytes, checkChannelFile, checkManifestPayload, checkOffer, manifestTargetFor, nextStop, releaseManifest, releasePayload, repoUrlFromCodebase, type TrustedTarget, type TrustedTargets } from './decide.js';
import type { ChannelMeta, PayloadManifest } from '../format/metadata.js';
import type { UpdateOffer } from '../format/omaha.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const tg = (path: string, body: string, basalt: Record<string, unknown>): TrustedTarget => ({ path, length: Buffer.byteLength(body), sha256: sha(body), basalt });

const targets: TrustedTargets = {
  version: 7,
  targets: new Map(
    [
      tg('channels/stable.json', 'stable', { kind: 'channel', channel: 'stable', version: '2.0.0', manifest: 'payloads/2.0.0/manifest.json' }),
      tg('channels/beta.json', 'beta', { kind: 'channel', channel: 'beta', version: '3.0.0', manifest: 'payloads/3.0.0/manifest.json' }),
      tg('channels/broken.json', 'broken', { kind: 'channel', channel: 'broken', version: '9.0.0', manifest: 'payloads/9.0.0/manifest.json' }),
      tg('payloads/2.0.0/manifest.json', 'm2', { kind: 'manifest', version: '2.0.0' }),
      tg('payloads/2.0.0/usr.img.payload', 'p2', { kind: 'payload', version: '2.0.0' }),
      tg('payloads/2.0.0/delta-from-1.0.0/manifest.json', 'd2', { kind: 'manifest', version: '2.0.0', deltaFrom: '1.0.0' }),
      tg('payloads/3.0.0/manifest.json', 'm3', { kind: 'manifest', version: '3.0.0' }),
      tg('payloads/3.0.0/usr.img.payload', 'p3', { kind: 'payload', version: '3.0.0' }),
    ].map((t) => [t.path, t]),
  ),
};

const offer = (version: string, pkg: string, body: string): UpdateOffer => ({ version, codebases: [`http://h/repo/payloads/${version}/`], packageName: pkg, size: Buffer.byteLength(body), sha1Base64: '', sha256Hex: sha(body), sha256Base64: '', manifestName: 'manifest.json' });

describe('the decisions the verified TUF targets make', () => {
  it("takes a channel's release and its manifest target; refuses a channel without one", () => {
    const rel = channelRelease(targets, 'stable');
    expect(rel).toMatchObject({ channel: 'stable', version: '2.0.0', manifest: { path: 'payloads/2.0.0/manifest.json' } });
    expect(() => channelRelease(targets, 'alpha')).toThrow(/channel alpha: channels\/alpha\.json is not in the signed targets \(targets v7\)/);
    expect(() => channelRelease(targets, 'broken')).toThrow(/the manifest payloads\/9\.0\.0\/manifest\.json it names is not a signed target/);
  });

  it("accepts the channel's payload; refuses another version (replay, freeze), another channel's release (wrong software) and an unsigned payload (arbitrary installation)", () => {
    const rel = channelRelease(targets, 'stable');
    expect(checkOffer(offer('2.0.0', 'usr.img.payload', 'p2'), rel, targets, '1.0.0').path).toBe('payloads/2.0.0/usr.img.payload');
    expect(() => checkOffer(offer('1.5.0', 'usr.img.payload', 'p1'), rel, targets, '1.0.0')).toThrow(/the server offered 1\.5\.0, but channel stable's signed targets \(v7\) are at 2\.0\.0/);
    expect(() => checkOffer(offer('3.0.0', 'usr.img.payload', 'p3'), rel, targets, '1.0.0')).toThrow(/offered 3\.0\.0/);
    expect(() => checkOffer(offer('2.0.0', 'usr.img.payload', 'evil'), rel, targets, '1.0.0')).toThrow(/is not a signed payload target of 2\.0\.0/);
  });

  it('refuses a channel file whose manifestSha256 is another manifest (mix-and-match)', () => {
    const rel = channelRelease(targets, 'stable');
    const ch = { channel: 'stable', version: '2.0.0', manifest: 'payloads/2.0.0/manifest.json', manifestSha256: sha('m2') } as ChannelMeta;
    expect(() => checkChannelFile(ch, rel)).not.toThrow();
    expect(() => checkChannelFile({ ...ch, manifestSha256: sha('another signed manifest') }, rel)).toThrow(/manifestSha256 is not the signed manifest target's sha256/);
    expect(() => checkChannelFile({ ...ch, version: '1.0.0' }, rel)).toThrow(/says stable 1\.0\.0/);
  });

  it('maps a manifest on any mirror, under any path, to its signed target by its bytes, the delta one included', () => {
    const b = (x: string) => Buffer.from(x);
    expect(manifestTargetFor('http://mirror/x/payloads/2.0.0/manifest.json', b('m2'), '2.0.0', targets).path).toBe('payloads/2.0.0/manifest.json');
    expect(manifestTargetFor('http://cdn/amd64-usr/2.0.0/manifest.json', b('m2'), '2.0.0', targets).path).toBe('payloads/2.0.0/manifest.json');
    expect(manifestTargetFor('http://m/payloads/2.0.0/delta-from-1.0.0/manifest.json', b('d2'), '2.0.0', targets).path).toBe('payloads/2.0.0/delta-from-1.0.0/manifest.json');
    // The right path does not make other bytes a target; the bytes of another version's manifest are not this version's.
    expect(() => manifestTargetFor('http://m/payloads/2.0.0/manifest.json', b('evil'), '2.0.0', targets)).toThrow(/not a signed manifest target of 2\.0\.0/);
    expect(() => manifestTargetFor('http://m/payloads/2.0.0/manifest.json', b('m3'), '2.0.0', targets)).toThrow(/not a signed manifest target of 2\.0\.0/);
  });

  it('checks bytes by length, then sha256', () => {
    const t = targets.targets.get('payloads/2.0.0/manifest.json')!;
    expect(() => checkBytes(Buffer.from('m2'), t, 'x')).not.toThrow();
    expect(() => checkBytes(Buffer.from('m2!'), t, 'x')).toThrow(/3 bytes, but the signed target payloads\/2\.0\.0\/manifest\.json has 2/);
    expect(() => checkBytes(Buffer.from('mX'), t, 'x')).toThrow(/is not the signed target/);
  });

  it("checks the manifest's payload against its signed target", () => {
    const t = targets.targets.get('payloads/2.0.0/manifest.json')!;
    const m = { version: '2.0.0', payload: { file: 'usr.img.payload', size: 2, sha256: sha('p2') } } as PayloadManifest;
    expect(() => checkManifestPayload(m, t, targets)).not.toThrow();
    expect(() => checkManifestPayload({ ...m, payload: { ...m.payload, sha256: sha('p3') } } as PayloadManifest, t, targets)).toThrow(/is not the signed target payloads\/2\.0\.0\/usr\.img\.payload/);
  });

  it('derives the repository from an Omaha codebase, with or without its trailing slash', () => {
    expect(repoUrlFromCodebase('http://h:1/r/payloads/2.0.0/', '2.0.0')).toBe('http://h:1/r/');
    expect(repoUrlFromCodebase('http://h/payloads/2.0.0', '2.0.0')).toBe('http://h/');
    expect(repoUrlFromCodebase('http://h/payloads/2.0.0/delta-from-1.0.0/', '2.0.0')).toBe('http://h/');
    expect(repoUrlFromCodebase('http://h/bad/', '2.0.0')).toBeUndefined();
    expect(repoUrlFromCodebase('http://h/payloads/2x0x0/', '2.0.0')).toBeUndefined();
  });

  describe('signed floors and holds', () => {
    const t: TrustedTargets = {
      version: 9,
      targets: new Map(
        [
          tg('channels/stable.json', 'stable', { kind: 'channel', channel: 'stable', version: '4.0.0', manifest: 'payloads/4.0.0/manifest.json', floors: ['2.0.0'], holds: ['3.0.0', '4.0.0'] }),
          tg('channels/odd.json', 'odd', { kind: 'channel', channel: 'odd', version: '4.0.0', manifest: 'payloads/4.0.0/manifest.json', floors: ['2.5.0'] }),
          tg('channels/junk.json', 'junk', { kind: 'channel', channel: 'junk', version: '4.0.0', manifest: 'payloads/4.0.0/manifest.json', holds: 'x' }),
          ...['1.0.0', '2.0.0', '3.0.0', '4.0.0'].flatMap((v) => [tg(`payloads/${v}/manifest.json`, `m${v}`, { kind: 'manifest', version: v }), tg(`payloads/${v}/usr.img.payload`, `p${v}`, { kind: 'payload', version: v }), tg(`payloads/${v}/delta-from-0.9.0/usr.img.payload`, `d${v}`, { kind: 'payload', version: v })]),
        ].map((x) => [x.path, x]),
      ),
    };
    const rel = channelRelease(t, 'stable');

    it('reads them from the channel target (a hold at the head is no stop), and refuses ones without a signed manifest or not versions', () => {
      expect(rel.floors).toEqual(['2.0.0']);
      expect(rel.holds).toEqual(['3.0.0']);
      expect(() => channelRelease(t, 'odd')).toThrow(/its floor 2\.5\.0 has no signed manifest target/);
      expect(() => channelRelease(t, 'junk')).toThrow(/custom basalt\.holds .* is not a list of versions/);
    });

    it('a machine below a floor goes to the floor first, then to a hold or the head; never back', () => {
      expect(nextStop(rel, '1.0.0')).toBe('2.0.0');
      expect(acceptableVersions(rel, '1.0.0')).toEqual(['2.0.0']);
      expect(nextStop(rel, '2.0.0')).toBe('4.0.0');
      expect(acceptableVersions(rel, '2.0.0')).toEqual(['3.0.0', '4.0.0']);
      expect(acceptableVersions(rel, '3.0.0')).toEqual(['4.0.0']);
      expect(nextStop(rel, '4.0.0')).toBeUndefined();
      expect(acceptableVersions(rel, '4.1.0')).toEqual(['4.0.0']);
    });

    it('takes a floor or hold offer the signed targets allow; refuses a skipped floor, an old release and a hold below the machine', () => {
      const o = (v: string) => offer(v, 'usr.img.payload', `p${v}`);
      expect(checkOffer(o('2.0.0'), rel, t, '1.0.0').path).toBe('payloads/2.0.0/usr.img.payload');
      expect(checkOffer(o('3.0.0'), rel, t, '2.0.0').path).toBe('payloads/3.0.0/usr.img.payload');
      expect(() => checkOffer(o('4.0.0'), rel, t, '1.0.0')).toThrow(/offered 4\.0\.0, but channel stable's signed targets \(v9\) allow 2\.0\.0 for a machine at 1\.0\.0/);
      expect(() => checkOffer(o('3.0.0'), rel, t, '1.0.0')).toThrow(/allow 2\.0\.0 for a machine at 1\.0\.0/);
      expect(() => checkOffer(o('1.0.0'), rel, t, '0.9.0')).toThrow(/offered 1\.0\.0/);
      expect(() => checkOffer(o('3.0.0'), rel, t, '3.5.0')).toThrow(/offered 3\.0\.0, but channel stable's signed targets \(v9\) are at 4\.0\.0/);
    });

    it("finds a stop's manifest and full payload targets; refuses a version that is not a stop", () => {
      expect(releaseManifest(t, rel, '2.0.0').path).toBe('payloads/2.0.0/manifest.json');
      expect(releasePayload(t, '2.0.0').path).toBe('payloads/2.0.0/usr.img.payload');
      expect(() => releaseManifest(t, rel, '1.0.0')).toThrow(/1\.0\.0 is not its release, a signed floor or a signed hold/);
    });
  });
});

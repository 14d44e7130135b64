import { describe, expect, it } from 'vitest';
import type { ChannelMeta } from './metadata.js';
import { decideOffer, deltaOfferFromChannel, offerFromChannel } from './offer.js';

const ch: ChannelMeta = {
  formatVersion: 1,
  kind: 'basalt-channel',
  channel: 'stable',
  version: '2.0.0',
  board: 'amd64-usr',
  manifest: 'payloads/2.0.0/manifest.json',
  manifestSha256: 'a'.repeat(64),
  payload: { path: 'payloads/2.0.0/usr.img.xz', size: 10, sha256: 'ab'.repeat(32) },
  serial: 3,
  issued: '2026-01-01T00:00:00Z',
  expires: '2027-01-01T00:00:00Z',
  rollout: { percent: 100 },
};

describe('decideOffer (the one check of the server and of static mode)', () => {
  it('offers a newer release for the same board', () => {
    expect(decideOffer(ch, { machineId: 'm', version: '1.0.0', board: 'amd64-usr' })).toEqual({ offer: true });
    // A client that names no board gets it (older clients).
    expect(decideOffer(ch, { machineId: 'm', version: '1.0.0' }).offer).toBe(true);
  });
  it('refuses the same or an older version, another board, a bad version, and machines outside the rollout', () => {
    expect(decideOffer(ch, { machineId: 'm', version: '2.0.0' })).toEqual({ offer: false, why: 'client is at 2.0.0, channel at 2.0.0' });
    expect(decideOffer(ch, { machineId: 'm', version: '3.0.0' }).offer).toBe(false);
    expect(decideOffer(ch, { machineId: 'm', version: '1.0.0', board: 'arm64-usr' })).toEqual({ offer: false, why: 'board arm64-usr != amd64-usr' });
    expect(decideOffer(ch, { machineId: 'm', version: 'x' }).offer).toBe(false);
    expect(decideOffer({ ...ch, rollout: { percent: 0 } }, { machineId: 'm', version: '1.0.0' })).toEqual({ offer: false, why: 'outside the 0% rollout' });
  });
});

describe('offerFromChannel', () => {
  it('splits the payload path into a codebase under the base URL and a package name', () => {
    for (const base of ['http://h:1/repo', 'http://h:1/repo/']) {
      const o = offerFromChannel(ch, base);
      expect(o.codebases).toEqual(['http://h:1/repo/payloads/2.0.0/']);
      expect(o.packageName).toBe('usr.img.xz');
      expect(o.manifestName).toBe('manifest.json');
      expect(o.sha256Base64).toBe(Buffer.from('ab'.repeat(32), 'hex').toString('base64'));
    }
  });
});

describe('deltaOfferFromChannel', () => {
  it("offers the delta's payload from the release's delta-from-<version>/ folder, and its own manifest there", () => {
    const o = deltaOfferFromChannel(ch, 'http://h:1/repo/', '1.0.0', { file: 'usr.img.payload', size: 77, sha256: 'cd'.repeat(32), sha1: 'x' });
    expect(o).toMatchObject({ version: '2.0.0', codebases: ['http://h:1/repo/payloads/2.0.0/delta-from-1.0.0/'], packageName: 'usr.img.payload', size: 77, sha256Hex: 'cd'.repeat(32), sha1Base64: 'x', manifestName: 'manifest.json' });
    // The full release the delta's manifest names ('../manifest.json', '../usr.img.payload') resolves beside it.
    expect(new URL('../usr.img.payload', o.codebases[0]).toString()).toBe('http://h:1/repo/payloads/2.0.0/usr.img.payload');
  });
});

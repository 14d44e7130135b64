import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Metadata, MetadataKind } from '@tufjs/models';
import { generateTufKey, keyIdOf, parseTufKey, publicOnly } from './keys.js';
import { createRoot, makeRoot, specOf } from './publish.js';

describe('TUF keys and root metadata', () => {
  it("computes TUF's key id: sha256 of the canonical public key", () => {
    const pub = 'ab'.repeat(32);
    expect(keyIdOf(pub)).toBe(createHash('sha256').update(`{"keytype":"ed25519","keyval":{"public":"${pub}"},"scheme":"ed25519"}`).digest('hex'));
  });

  it('reads a generated key back; refuses a mismatched private half and a non-key file', () => {
    const k = generateTufKey();
    const { file, signer } = parseTufKey(JSON.stringify(k), 'k.key.json');
    expect(file.keyid).toBe(k.keyid);
    expect(signer?.publicHex).toBe(k.public);
    expect(parseTufKey(JSON.stringify(publicOnly(k)), 'k.pub.json').signer).toBeUndefined();
    const other = generateTufKey();
    expect(() => parseTufKey(JSON.stringify({ ...k, private: other.private }), 'mixed.key.json')).toThrow(/mixed\.key\.json: the private key does not match the public key/);
    expect(() => parseTufKey('{"a":1}', 'x.json')).toThrow(/x\.json: not a formatVersion 1 ed25519 TUF key file/);
  });

  it('makes a root with thresholds that verifies itself and round-trips its role spec; refuses an impossible threshold or too few signers', () => {
    const [a, b, c] = [generateTufKey(), generateTufKey(), generateTufKey()];
    const sa = parseTufKey(JSON.stringify(a), 'a').signer!;
    const sb = parseTufKey(JSON.stringify(b), 'b').signer!;
    const spec = { root: { keys: [a.public, b.public], threshold: 2 }, targets: { keys: [c.public], threshold: 1 }, snapshot: { keys: [c.public], threshold: 1 }, timestamp: { keys: [c.public], threshold: 1 } };
    const md = createRoot(spec, [sa, sb], Date.now());
    const back = Metadata.fromJSON(MetadataKind.Root, md.toJSON());
    expect(() => back.verifyDelegate(MetadataKind.Root, back)).not.toThrow();
    expect(specOf(back.signed)).toEqual(spec);
    expect(() => createRoot(spec, [sa], Date.now())).toThrow(/root needs 2 signature\(s\) of root v1's 2 root key\(s\); 1 of them are at hand/);
    expect(() => makeRoot({ ...spec, targets: { keys: [c.public], threshold: 2 } }, 1, Date.now())).toThrow(/role targets: threshold 2 with 1 key\(s\)/);
  });
});

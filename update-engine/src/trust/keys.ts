/**
 * TUF signing keys: ed25519 (node:crypto), stored one per file as
 * {formatVersion:1, kind:'basalt-tuf-key', keytype, scheme, keyid, public, private?}.
 * The public half is what root metadata lists; the key id is the SHA-256 of
 * the canonical JSON of that public key, as the TUF specification defines it.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Key, Signature } from '@tufjs/models';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';

export interface TufKeyFile {
  formatVersion: 1;
  kind: 'basalt-tuf-key';
  keytype: 'ed25519';
  scheme: 'ed25519';
  keyid: string;
  /** Raw public key, 64 hex digits (TUF's keyval.public for ed25519). */
  public: string;
  /** PKCS#8 PEM; absent in an exported public key. */
  private?: string;
}

/** A key that can sign: its id, its public half as root lists it, and the private key. */
export interface TufSigner {
  keyid: string;
  publicHex: string;
  privateKey: KeyObject;
  source: string;
}

/** TUF's key id: SHA-256 of the canonical JSON of {keytype, keyval:{public}, scheme} (keys sorted, no spaces). Pure. */
export function keyIdOf(publicHex: string): string {
  return createHash('sha256').update(`{"keytype":"ed25519","keyval":{"public":"${publicHex}"},"scheme":"ed25519"}`).digest('hex');
}

/** The public key as root metadata lists it. */
export function tufKey(publicHex: string): Key {
  return new Key({ keyID: keyIdOf(publicHex), keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: publicHex } });
}

/** Generates an ed25519 key. Pure (no files). */
export function generateTufKey(): TufKeyFile {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const publicHex = rawPublic(publicKey);
  return { formatVersion: 1, kind: 'basalt-tuf-key', keytype: 'ed25519', scheme: 'ed25519', keyid: keyIdOf(publicHex), public: publicHex, private: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

/** The raw 32-byte public key in hex (the SPKI DER ends with it). */
function rawPublic(k: KeyObject): string {
  const der = k.export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32).toString('hex');
}

/** Parses a key file's text; the private half must match the public one. Throws E_TUF_KEY_INVALID naming `source`. */
export function parseTufKey(text: string, source: string): { file: TufKeyFile; signer?: TufSigner } {
  const bad = (why: string) => new BasaltError(UE_ERRORS.E_TUF_KEY_INVALID, `${source}: ${why}`);
  let j: Partial<TufKeyFile>;
  try {
    j = JSON.parse(text) as Partial<TufKeyFile>;
  } catch {
    throw bad('not JSON');
  }
  if (j.formatVersion !== 1 || j.kind !== 'basalt-tuf-key' || j.keytype !== 'ed25519' || typeof j.public !== 'string' || !/^[0-9a-f]{64}$/.test(j.public)) {
    throw bad('not a formatVersion 1 ed25519 TUF key file');
  }
  const file = { ...j, keyid: keyIdOf(j.public) } as TufKeyFile;
  if (j.private === undefined) return { file };
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(j.private);
  } catch (e) {
    throw bad(`the private key does not parse (${(e as Error).message})`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519' || rawPublic(createPublicKey(privateKey)) !== j.public) throw bad('the private key does not match the public key');
  return { file, signer: { keyid: file.keyid, publicHex: j.public, privateKey, source } };
}

/** A TUF key file's name ends so (public exports: .pub.json); a directory given as keys is searched for them. */
export const TUF_KEY_SUFFIX = '.key.json';

/** Reads key files (or every *.key.json / *.pub.json in a directory); returns the public keys and the signers among them. */
export async function readTufKeys(paths: string[]): Promise<{ keys: TufKeyFile[]; signers: TufSigner[] }> {
  const files: string[] = [];
  for (const p of paths) {
    const st = await stat(p).catch((e: unknown) => {
      throw fsError(e, p, 'read the TUF key');
    });
    if (st.isDirectory()) files.push(...(await readdir(p)).filter((f) => f.endsWith(TUF_KEY_SUFFIX) || f.endsWith('.pub.json')).sort().map((f) => join(p, f)));
    else files.push(p);
  }
  const keys: TufKeyFile[] = [];
  const signers: TufSigner[] = [];
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch((e: unknown) => {
      throw fsError(e, f, 'read the TUF key');
    });
    const k = parseTufKey(text, f);
    keys.push(k.file);
    if (k.signer) signers.push(k.signer);
  }
  return { keys, signers };
}

/** The signer function @tufjs/models' Metadata.sign takes (its argument is the canonical JSON of `signed`). */
export function signWith(s: TufSigner): (data: Buffer) => Signature {
  return (data) => new Signature({ keyID: s.keyid, sig: sign(null, data, s.privateKey).toString('hex') });
}

/** The key file without its private half (what `basalt keys export --tuf` prints). */
export function publicOnly(k: TufKeyFile): TufKeyFile {
  const { private: _p, ...pub } = k;
  return pub;
}

/**
 * OpenPGP keys and detached signatures (openpgp v6). Release keys are v4
 * Ed25519 keys so that GnuPG 2.2 also verifies the signatures.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { BasaltError, fsError } from '../../common/src/errors.js';

export interface GeneratedKey {
  privateArmored: string;
  publicArmored: string;
  fingerprint: string;
}

/** Generates a signing key for `userId` ("Name <email>"). Pure (no files). */
export async function generateKey(name: string, email: string | undefined): Promise<GeneratedKey> {
  const userIDs = [email ? { name, email } : { name }];
  const { privateKey, publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs, format: 'armored' });
  const key = await openpgp.readPrivateKey({ armoredKey: privateKey });
  return { privateArmored: privateKey, publicArmored: publicKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** Reads an armored private key file. Throws E_KEY_INVALID naming the file. */
export async function readPrivateKeyFile(path: string): Promise<openpgp.PrivateKey> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw fsError(e, path, 'read the signing key');
  }
  try {
    const key = await openpgp.readPrivateKey({ armoredKey: text });
    if (!key.isDecrypted()) throw new Error('key is passphrase-protected');
    return key;
  } catch (e) {
    throw new BasaltError('E_KEY_INVALID', `${path}: not an unprotected OpenPGP private key (${(e as Error).message})`, {
      hint: "create one with 'basalt keys generate'",
    });
  }
}

/** The armored public key of a private key file. */
export async function exportPublic(path: string): Promise<{ armored: string; fingerprint: string }> {
  const key = await readPrivateKeyFile(path);
  return { armored: key.toPublic().armor(), fingerprint: key.getFingerprint().toUpperCase() };
}

/** Signs `data` and returns a detached signature (armored or binary). */
export async function signDetached(data: Uint8Array | string, key: openpgp.PrivateKey, armored: boolean): Promise<string | Uint8Array> {
  const message = typeof data === 'string' ? await openpgp.createMessage({ text: data }) : await openpgp.createMessage({ binary: data });
  if (armored) return (await openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' })) as string;
  return (await openpgp.sign({ message, signingKeys: key, detached: true, format: 'binary' })) as Uint8Array;
}

/** Signs a file as a stream (payloads can be large) and returns the binary detached signature. */
export async function signFileDetached(path: string, key: openpgp.PrivateKey): Promise<Uint8Array> {
  const { createReadStream } = await import('node:fs');
  const { Readable } = await import('node:stream');
  const web = Readable.toWeb(createReadStream(path)) as unknown as ReadableStream<Uint8Array>;
  const message = await openpgp.createMessage({ binary: web });
  const sig = (await openpgp.sign({ message, signingKeys: key, detached: true, format: 'binary' })) as unknown;
  if (sig instanceof Uint8Array) return sig;
  const chunks: Uint8Array[] = [];
  const reader = (sig as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    chunks.push(r.value);
  }
  return Buffer.concat(chunks);
}

export interface Keyring {
  keys: openpgp.PublicKey[];
  source: string;
}

/** Loads public keys from a file of armored keys or a directory of *.asc / *.pub files. Throws E_KEYRING_EMPTY. */
export async function loadKeyring(path: string): Promise<Keyring> {
  let files: string[];
  try {
    const st = await stat(path);
    files = st.isDirectory()
      ? (await readdir(path))
          .filter((f) => /\.(asc|pub|gpg)$/.test(f))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch (e) {
    throw fsError(e, path, 'read the keyring');
  }
  const keys: openpgp.PublicKey[] = [];
  for (const f of files) {
    const text = await readFile(f, 'utf8');
    try {
      keys.push(...(await openpgp.readKeys({ armoredKeys: text })).map((k) => (k.isPrivate() ? k.toPublic() : (k as openpgp.PublicKey))));
    } catch (e) {
      throw new BasaltError('E_KEYRING_INVALID', `${f}: not an armored OpenPGP public key (${(e as Error).message})`);
    }
  }
  if (keys.length === 0) throw new BasaltError('E_KEYRING_EMPTY', `${path}: no OpenPGP public keys found`, { hint: "install a key exported with 'basalt keys export'" });
  return { keys, source: path };
}

/**
 * Verifies a detached signature over `data` with the keyring. Returns the
 * signer's key fingerprint. Throws E_SIGNATURE_INVALID naming `what`.
 */
export async function verifyDetached(data: Uint8Array | string, signature: string | Uint8Array, ring: Keyring, what: string): Promise<string> {
  let sig: openpgp.Signature;
  try {
    sig = typeof signature === 'string' ? await openpgp.readSignature({ armoredSignature: signature }) : await openpgp.readSignature({ binarySignature: signature });
  } catch (e) {
    throw new BasaltError('E_SIGNATURE_INVALID', `${what}: signature is not a valid OpenPGP signature (${(e as Error).message})`);
  }
  const message = typeof data === 'string' ? await openpgp.createMessage({ text: data }) : await openpgp.createMessage({ binary: data });
  const res = await openpgp.verify({ message, signature: sig, verificationKeys: ring.keys, expectSigned: false });
  for (const s of res.signatures) {
    try {
      await s.verified;
      const key = ring.keys.find((k) => k.getKeys(s.keyID).length > 0);
      return (key?.getFingerprint() ?? s.keyID.toHex()).toUpperCase();
    } catch (e) {
      const msg = (e as Error).message;
      if (/Could not find signing key/i.test(msg)) {
        throw new BasaltError('E_SIGNATURE_UNKNOWN_KEY', `${what}: signed by key ${s.keyID.toHex().toUpperCase()}, which is not in the keyring ${ring.source}`, {
          hint: 'the release was signed with a key this machine does not trust',
        });
      }
      throw new BasaltError('E_SIGNATURE_INVALID', `${what}: bad signature (${msg})`);
    }
  }
  throw new BasaltError('E_SIGNATURE_INVALID', `${what}: no signature found`);
}

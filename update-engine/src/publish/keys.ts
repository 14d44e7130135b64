/**
 * Release keys and signing (openpgp v6). Release keys are v4 Ed25519 keys so
 * that GnuPG 2.2 also verifies the signatures. Only the publisher signs.
 */
import { readFile } from 'node:fs/promises';
import * as openpgp from 'openpgp';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';

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
    throw new BasaltError(UE_ERRORS.E_KEY_INVALID, `${path}: not an unprotected OpenPGP private key (${(e as Error).message})`, {
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


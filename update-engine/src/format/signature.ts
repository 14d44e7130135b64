/**
 * Verifying OpenPGP detached signatures (openpgp v6) with a keyring of trusted
 * release keys. Signing lives in publish/keys.ts; the host only verifies.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';

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
      // toPublic() strips a private key's secrets and returns a public key itself unchanged.
      keys.push(...(await openpgp.readKeys({ armoredKeys: text })).map((k) => k.toPublic()));
    } catch (e) {
      throw new BasaltError(UE_ERRORS.E_KEYRING_INVALID, `${f}: not an armored OpenPGP public key (${(e as Error).message})`);
    }
  }
  if (keys.length === 0) throw new BasaltError(UE_ERRORS.E_KEYRING_EMPTY, `${path}: no OpenPGP public keys found`, { hint: "install a key exported with 'basalt keys export'" });
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
    throw new BasaltError(UE_ERRORS.E_SIGNATURE_INVALID, `${what}: signature is not a valid OpenPGP signature (${(e as Error).message})`);
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
        throw new BasaltError(UE_ERRORS.E_SIGNATURE_UNKNOWN_KEY, `${what}: signed by key ${s.keyID.toHex().toUpperCase()}, which is not in the keyring ${ring.source}`, {
          hint: 'the release was signed with a key this machine does not trust',
        });
      }
      throw new BasaltError(UE_ERRORS.E_SIGNATURE_INVALID, `${what}: bad signature (${msg})`);
    }
  }
  throw new BasaltError(UE_ERRORS.E_SIGNATURE_INVALID, `${what}: no signature found`);
}

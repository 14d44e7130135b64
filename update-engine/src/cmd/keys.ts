/**
 * `basalt keys`: OpenPGP release keys (the payload's gpg signature) and the
 * TUF keys and root metadata the update-engine trusts (trust/).
 */
import { basename, dirname, join } from 'node:path';
import { readdir, stat } from 'node:fs/promises';
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse, intOpt } from '../../../common/src/cli/args.js';
import { UsageError, BasaltError, COMMON_ERRORS } from '../../../common/src/errors.js';
import { exportPublic, generateKey } from '../publish/keys.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { generateTufKey, publicOnly, readTufKeys, TUF_KEY_SUFFIX, type TufKeyFile, type TufSigner } from '../trust/keys.js';
import { createRoot, DEFAULT_EXPIRY, readRepoRoot, ROLES, rotateRoot, specOf, type RoleName, type RoleSpec } from '../trust/publish.js';
import { parseDuration } from '../format/duration.js';

export const help = `Usage: basalt keys generate --out DIR [--name NAME] [--email EMAIL] [--force]
       basalt keys generate --tuf --out DIR --name NAME [--force]
       basalt keys export --key PRIVATE.asc [--out PUBLIC.asc]
       basalt keys sign FILE... --key PRIVATE.asc
       basalt keys root --out ROOT.json --sign KEY... [ROLE KEYS] [--expires 365d]
       basalt keys rotate --repo DIR --sign KEY... [ROLE KEYS] [--expires 365d]

generate       writes DIR/release.key (OpenPGP, private, mode 0600; never put it in a repository
               or an image) and DIR/release.pub.asc (gpg --verify checks payloads with it), and,
               for a one-person setup, TUF keys DIR/root.key.json (keep it offline) and
               DIR/online.key.json (targets, snapshot, timestamp) with DIR/root.json (root v1
               naming them: ship it in the image as update.root)
generate --tuf writes one TUF ed25519 key DIR/NAME.key.json (private) and DIR/NAME.pub.json
export         prints (or writes) the armored public key of a private key
sign           writes FILE.sig, a detached OpenPGP signature of each FILE (gpg --verify reads it):
               sign a build's manifest.json so that 'basalt install -u' takes its image
root           makes TUF root metadata version 1 from the role keys, signed by the root keys given
               with --sign (at least the root threshold of them)
rotate         writes the repository's next root version (metadata/N.root.json): roles not named
               keep their keys and thresholds; a key left out of a role is revoked. It is signed
               by the threshold of the current root keys and of the new ones (--sign both), then
               targets, snapshot and timestamp are re-signed under it (their keys in --sign)

Role keys (files NAME.key.json or NAME.pub.json; repeatable):
  --root-key F  --targets-key F  --snapshot-key F  --timestamp-key F
  --root-threshold N  --targets-threshold N  --snapshot-threshold N  --timestamp-threshold N
`;

const roleFlags = Object.fromEntries(ROLES.flatMap((r) => [[`${r}-key`, { type: 'string', multiple: true }], [`${r}-threshold`, { type: 'string' }]])) as Record<string, { type: 'string'; multiple?: true }>;

/** The role spec the flags give, each role not named taken from `base` (root: none). */
async function specFromFlags(values: Record<string, unknown>, base: RoleSpec | undefined, what: string): Promise<RoleSpec> {
  const spec = {} as RoleSpec;
  for (const r of ROLES) {
    const files = values[`${r}-key`] as string[] | undefined;
    const th = intOpt(values[`${r}-threshold`] as string | undefined, `${r}-threshold`, 1, 255);
    if (files?.length) {
      const keys = (await readTufKeys(files)).keys.map((k) => k.public);
      spec[r] = { keys, threshold: th ?? 1 };
    } else if (base) spec[r] = { keys: base[r].keys, threshold: th ?? base[r].threshold };
    else throw new UsageError(`${what}: --${r}-key is required`);
  }
  return spec;
}

async function signersOf(values: Record<string, unknown>): Promise<TufSigner[]> {
  const files = (values['sign'] as string[] | undefined) ?? [];
  if (!files.length) throw new UsageError('--sign KEY is required (the private keys that sign)');
  return (await readTufKeys(files)).signers;
}

async function refuseOverwrite(path: string, force: boolean | undefined): Promise<void> {
  if (!force && (await stat(path).then(() => true, () => false))) {
    throw new BasaltError(COMMON_ERRORS.E_EXISTS, `${path} already exists`, { hint: 'use --force to replace it (the old key can then no longer sign)' });
  }
}

async function writeTufKey(dir: string, name: string, k: TufKeyFile, force: boolean | undefined): Promise<string> {
  const priv = join(dir, `${name}${TUF_KEY_SUFFIX}`);
  await refuseOverwrite(priv, force);
  await writeFileAtomic(priv, JSON.stringify(k, null, 1) + '\n', 0o600);
  await writeFileAtomic(join(dir, `${name}.pub.json`), JSON.stringify(publicOnly(k), null, 1) + '\n');
  return priv;
}

function expiresOpt(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const ms = parseDuration(v);
  if (ms === undefined) throw new UsageError(`--expires: '${v}' is not a duration (e.g. 365d)`);
  return ms;
}

export async function run(ctx: CommandContext): Promise<number> {
  const sub = ctx.args[0];
  const { values, positionals } = parse(
    ctx.args.slice(1),
    { out: { type: 'string' }, name: { type: 'string' }, email: { type: 'string' }, key: { type: 'string' }, force: { type: 'boolean' }, tuf: { type: 'boolean' }, sign: { type: 'string', multiple: true }, repo: { type: 'string' }, expires: { type: 'string' }, ...roleFlags },
    `keys ${sub ?? ''}`.trim(),
  );
  if (sub === 'sign') {
    if (!values.key) throw new UsageError('keys sign: --key PRIVATE.asc is required');
    if (positionals.length === 0) throw new UsageError('keys sign: give the files to sign');
    const { readPrivateKeyFile, signFileDetached } = await import('../publish/keys.js');
    const key = await readPrivateKeyFile(values.key);
    for (const f of positionals) {
      await writeFileAtomic(`${f}.sig`, await signFileDetached(f, key));
      ctx.out(ctx.json ? JSON.stringify({ file: f, signature: `${f}.sig`, key: key.getFingerprint().toUpperCase() }) + '\n' : `${f}.sig: signed with ${key.getFingerprint().toUpperCase()}\n`);
    }
    return 0;
  }
  if (sub === 'generate' && values.tuf) {
    if (!values.out || !values.name) throw new UsageError('keys generate --tuf: --out DIR and --name NAME are required');
    const k = generateTufKey();
    const priv = await writeTufKey(values.out, values.name, k, values.force);
    ctx.out(ctx.json ? JSON.stringify({ keyid: k.keyid, privateKey: priv }) + '\n' : `TUF key ${k.keyid}\nprivate: ${priv}\n`);
    return 0;
  }
  if (sub === 'generate') {
    if (!values.out) throw new UsageError('keys generate: --out DIR is required');
    const priv = join(values.out, 'release.key');
    const pub = join(values.out, 'release.pub.asc');
    await refuseOverwrite(priv, values.force);
    const k = await generateKey(values.name ?? 'Basalt release signing key', values.email);
    await writeFileAtomic(priv, k.privateArmored, 0o600);
    await writeFileAtomic(pub, k.publicArmored);
    // TUF: an offline root key and one online key for the other roles, and root v1.
    const rootKey = generateTufKey();
    const online = generateTufKey();
    await writeTufKey(values.out, 'root', rootKey, values.force);
    await writeTufKey(values.out, 'online', online, values.force);
    const one = (k: TufKeyFile) => ({ keys: [k.public], threshold: 1 });
    const signers = (await readTufKeys([join(values.out, `root${TUF_KEY_SUFFIX}`)])).signers;
    const root = createRoot({ root: one(rootKey), targets: one(online), snapshot: one(online), timestamp: one(online) }, signers, Date.now(), expiresOpt(values.expires, DEFAULT_EXPIRY.root));
    const rootFile = join(values.out, 'root.json');
    await writeFileAtomic(rootFile, JSON.stringify(root.toJSON(), null, 1) + '\n');
    if (ctx.json) ctx.out(JSON.stringify({ fingerprint: k.fingerprint, privateKey: priv, publicKey: pub, tufRoot: rootFile }) + '\n');
    else ctx.out(`key ${k.fingerprint}\nprivate: ${priv}\npublic:  ${pub}\nTUF root v1: ${rootFile} (root key ${rootKey.keyid.slice(0, 12)}, online key ${online.keyid.slice(0, 12)})\n`);
    return 0;
  }
  if (sub === 'export') {
    if (!values.key) throw new UsageError('keys export: --key PRIVATE is required');
    const { armored, fingerprint } = await exportPublic(values.key);
    if (values.out) {
      await writeFileAtomic(values.out, armored);
      ctx.out(ctx.json ? JSON.stringify({ fingerprint, publicKey: values.out }) + '\n' : `${values.out}\n`);
    } else ctx.out(armored);
    return 0;
  }
  if (sub === 'root') {
    if (!values.out) throw new UsageError('keys root: --out ROOT.json is required');
    const spec = await specFromFlags(values, undefined, 'keys root');
    const md = createRoot(spec, await signersOf(values), Date.now(), expiresOpt(values.expires, DEFAULT_EXPIRY.root));
    await writeFileAtomic(values.out, JSON.stringify(md.toJSON(), null, 1) + '\n');
    ctx.out(ctx.json ? JSON.stringify({ root: values.out, version: 1 }) + '\n' : `root v1: ${values.out}\n`);
    return 0;
  }
  if (sub === 'rotate') {
    if (!values.repo) throw new UsageError('keys rotate: --repo DIR is required');
    const cur = (await readRepoRoot(values.repo)).signed;
    const spec = await specFromFlags(values, specOf(cur), 'keys rotate');
    const r = await rotateRoot(values.repo, spec, await signersOf(values), Date.now(), expiresOpt(values.expires, DEFAULT_EXPIRY.root), DEFAULT_EXPIRY);
    ctx.out(ctx.json ? JSON.stringify(r) + '\n' : `root v${r.root} written to ${join(values.repo, 'metadata', `${r.root}.root.json`)}; targets v${r.targets}, snapshot v${r.snapshot}, timestamp v${r.timestamp} re-signed\n`);
    return 0;
  }
  throw new UsageError(`keys: unknown subcommand '${sub ?? ''}'`, 'use generate, export, root or rotate');
}

/** TUF keys for publishing: --tuf-key files or folders, else the *.key.json beside the OpenPGP key (as 'keys generate' lays them out). */
export async function publishingKeys(tufKeys: string[] | undefined, openpgpKey: string | undefined): Promise<TufSigner[]> {
  if (tufKeys?.length) return (await readTufKeys(tufKeys)).signers;
  if (!openpgpKey) return [];
  const dir = dirname(openpgpKey);
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = names.filter((f) => f.endsWith(TUF_KEY_SUFFIX) && basename(f) !== `root${TUF_KEY_SUFFIX}`).map((f) => join(dir, f));
  return files.length ? (await readTufKeys(files)).signers : [];
}

export type { RoleName };

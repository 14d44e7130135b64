/**
 * Writing the repository's TUF metadata (TUF specification 1.0, written with
 * @tufjs/models so that any TUF client reads it):
 *
 *   metadata/<N>.root.json        every root version (clients walk them to rotate keys)
 *   metadata/root.json            the newest root
 *   metadata/<N>.targets.json     targets: every file a client may fetch, with length and sha256
 *   metadata/<N>.snapshot.json    snapshot: the version of targets.json
 *   metadata/timestamp.json       timestamp: the version, length and hash of snapshot.json (short expiry)
 *   metadata/{targets,snapshot}.json   copies of the newest, for tools that do not use consistent snapshots
 *
 * Targets are the repository's own paths (payloads/<version>/…, channels/<name>.json),
 * each with custom {basalt:{kind, version, …}}; channels/<name>.json also
 * carries the manifest it points at, so the channel-to-manifest binding is
 * signed by the targets role. With consistent snapshots a target is also
 * reachable as <sha256>.<name> in its folder (hard links), as TUF clients fetch it.
 */
import { createHash } from 'node:crypto';
import { link, mkdir, readFile, readdir, stat, copyFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Metadata, MetaFile, MetadataKind, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { UE_ERRORS } from '../errors.js';
import { peekEnvelope } from '../format/metadata.js';
import { signWith, tufKey, type TufSigner } from './keys.js';

export const METADATA_DIR = 'metadata';
export const SPEC_VERSION = '1.0.31';
const DAY = 86_400_000;
/** Default lifetimes: root a year (offline keys), targets and snapshot a month, timestamp a day (online key). */
export const DEFAULT_EXPIRY = { root: 365 * DAY, targets: 30 * DAY, snapshot: 30 * DAY, timestamp: DAY } as const;
export type RoleName = 'root' | 'targets' | 'snapshot' | 'timestamp';
export const ROLES: readonly RoleName[] = ['root', 'targets', 'snapshot', 'timestamp'];

/** TUF's date form (no milliseconds). */
export function tufDate(t: number): string {
  return new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Which public keys (hex) and threshold each role has. */
export type RoleSpec = Record<RoleName, { keys: string[]; threshold: number }>;

/** Root metadata (unsigned) of `version` from a role spec. Pure. */
export function makeRoot(spec: RoleSpec, version: number, expires: number): Metadata<Root> {
  const keys: Record<string, JSONObject> = {};
  const roles: Record<string, JSONObject> = {};
  for (const r of ROLES) {
    const { threshold } = spec[r];
    const ks = [...new Set(spec[r].keys)];
    if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > ks.length) {
      throw new BasaltError(UE_ERRORS.E_TUF_THRESHOLD, `role ${r}: threshold ${threshold} with ${ks.length} key(s); a threshold is 1 to the number of keys`);
    }
    for (const k of ks) keys[tufKey(k).keyID] = tufKey(k).toJSON();
    roles[r] = { keyids: ks.map((k) => tufKey(k).keyID), threshold };
  }
  const root = Root.fromJSON({ _type: 'root', spec_version: SPEC_VERSION, version, expires: tufDate(expires), consistent_snapshot: true, keys, roles });
  return new Metadata(root);
}

/** @tufjs/models' JSON object type (not exported by name). */
type JSONObject = Parameters<typeof Root.fromJSON>[0];

/** The role spec a root states. Pure. */
export function specOf(root: Root): RoleSpec {
  const spec = {} as RoleSpec;
  for (const r of ROLES) {
    const role = root.roles[r];
    if (!role) throw new BasaltError(UE_ERRORS.E_TUF_ROOT, `root v${root.version} has no ${r} role`);
    spec[r] = { keys: role.keyIDs.map((id) => root.keys[id]!.keyVal['public']!), threshold: role.threshold };
  }
  return spec;
}

/**
 * Signs `md` for `role` with every signer among its keys; refuses below the
 * threshold (nothing is written then). Returns the key ids that signed.
 */
export function signRole(md: Metadata<Root | Targets | Snapshot | Timestamp>, root: Root, role: RoleName, signers: TufSigner[], append = false): string[] {
  const r = root.roles[role]!;
  const mine = signers.filter((s) => r.keyIDs.includes(s.keyid));
  const seen = new Set<string>();
  for (const s of mine) {
    if (seen.has(s.keyid)) continue;
    seen.add(s.keyid);
    md.sign(signWith(s), append || seen.size > 1);
  }
  if (seen.size < r.threshold) {
    throw new BasaltError(UE_ERRORS.E_TUF_THRESHOLD, `${role} needs ${r.threshold} signature(s) of root v${root.version}'s ${r.keyIDs.length} ${role} key(s); ${seen.size} of them are at hand`, {
      hint: `pass the ${role} keys with --tuf-key (key ids: ${r.keyIDs.map((k) => k.slice(0, 12)).join(', ')})`,
    });
  }
  return [...seen];
}

function text(md: Metadata<Root | Targets | Snapshot | Timestamp>): string {
  return JSON.stringify(md.toJSON(), null, 1) + '\n';
}

async function readJson(path: string): Promise<JSONObject> {
  const t = await readFile(path, 'utf8').catch((e: unknown) => {
    throw fsError(e, path, 'read');
  });
  try {
    return JSON.parse(t) as JSONObject;
  } catch {
    throw new BasaltError(UE_ERRORS.E_METADATA_INVALID, `${path}: not JSON`);
  }
}

/** The repository's newest root (metadata/root.json), parsed (the publisher's own file: not verified here). */
export async function readRepoRoot(repo: string): Promise<Metadata<Root>> {
  const p = join(repo, METADATA_DIR, 'root.json');
  try {
    await stat(p);
  } catch {
    throw new BasaltError(UE_ERRORS.E_TUF_NOT_INITIALISED, `${p}: the repository has no TUF root`, { hint: "run 'basalt release init --repo DIR --root 1.root.json' once" });
  }
  return Metadata.fromJSON(MetadataKind.Root, await readJson(p));
}

/** Writes root metadata as metadata/<N>.root.json and metadata/root.json. */
async function writeRoot(repo: string, md: Metadata<Root>): Promise<void> {
  const dir = join(repo, METADATA_DIR);
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, `${md.signed.version}.root.json`), text(md));
  await writeFileAtomic(join(dir, 'root.json'), text(md));
}

/** Makes and signs root version 1 (`basalt keys root`): signed by the root keys at hand, at least their threshold. */
export function createRoot(spec: RoleSpec, signers: TufSigner[], now: number, expiresMs: number = DEFAULT_EXPIRY.root): Metadata<Root> {
  const md = makeRoot(spec, 1, now + expiresMs);
  signRole(md, md.signed, 'root', signers);
  return md;
}

/** Installs a signed root into a repository that has none (`basalt release init`). */
export async function initRepository(repo: string, rootText: string, rootPath: string): Promise<Metadata<Root>> {
  let md: Metadata<Root>;
  try {
    md = Metadata.fromJSON(MetadataKind.Root, JSON.parse(rootText) as JSONObject);
  } catch (e) {
    throw new BasaltError(UE_ERRORS.E_TUF_ROOT, `${rootPath}: not TUF root metadata (${(e as Error).message})`);
  }
  md.verifyDelegate(MetadataKind.Root, md);
  try {
    const cur = await readRepoRoot(repo);
    if (cur.signed.version >= md.signed.version) throw new BasaltError(UE_ERRORS.E_RELEASE_EXISTS, `${repo}: already has root v${cur.signed.version}`, { hint: "use 'basalt keys rotate' to change the root" });
  } catch (e) {
    if (!(e instanceof BasaltError) || e.code !== 'E_TUF_NOT_INITIALISED') throw e;
  }
  await writeRoot(repo, md);
  return md;
}

/**
 * Checks, before anything is written, that `signers` meet the thresholds of
 * targets, snapshot and timestamp under the repository's root (or `rootText`
 * for a repository that has none yet).
 */
export async function checkSigners(repo: string, signers: TufSigner[], rootText?: string): Promise<void> {
  let root: Root;
  try {
    root = (await readRepoRoot(repo)).signed;
  } catch (e) {
    if (!(e instanceof BasaltError && e.code === 'E_TUF_NOT_INITIALISED' && rootText)) throw e;
    root = Metadata.fromJSON(MetadataKind.Root, JSON.parse(rootText) as JSONObject).signed;
  }
  for (const role of ['targets', 'snapshot', 'timestamp'] as const) {
    const r = root.roles[role]!;
    const have = new Set(signers.filter((s) => r.keyIDs.includes(s.keyid)).map((s) => s.keyid)).size;
    if (have < r.threshold) {
      throw new BasaltError(UE_ERRORS.E_TUF_THRESHOLD, `${role} needs ${r.threshold} signature(s) of root v${root.version}'s ${r.keyIDs.length} ${role} key(s); ${have} of them are at hand`, {
        hint: `pass the ${role} keys with --tuf-key (key ids: ${r.keyIDs.map((k) => k.slice(0, 12)).join(', ')})`,
      });
    }
  }
}

/** Lifetimes of the online roles when publishing. */
export interface Expiries {
  targets: number;
  snapshot: number;
  timestamp: number;
}

/** What publishTargets / refreshTimestamp wrote. */
export interface Published {
  targets: number;
  snapshot: number;
  timestamp: number;
  files: number;
}

async function current(repo: string): Promise<{ targets?: Metadata<Targets>; snapshot?: Metadata<Snapshot>; timestamp?: Metadata<Timestamp> }> {
  const dir = join(repo, METADATA_DIR);
  try {
    const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, await readJson(join(dir, 'timestamp.json')));
    const snapshot = Metadata.fromJSON(MetadataKind.Snapshot, await readJson(join(dir, `${timestamp.signed.snapshotMeta.version}.snapshot.json`)));
    const tv = snapshot.signed.meta['targets.json']?.version ?? 0;
    const targets = Metadata.fromJSON(MetadataKind.Targets, await readJson(join(dir, `${tv}.targets.json`)));
    return { targets, snapshot, timestamp };
  } catch (e) {
    if (e instanceof BasaltError && e.code === 'E_NOT_FOUND') return {};
    throw e;
  }
}

const HASHED = /^[0-9a-f]{64}\./;
/** payloads/<v>/image/: the release's whole disk image (zstd) and its build manifest, for `basalt install -C`. */
export const IMAGE_DIR = 'image';

/** The repository's files a client may fetch: payloads/<v>/*, payloads/<v>/delta-from-*\/*, payloads/<v>/image/*, channels/*.json. */
async function listTargetFiles(repo: string): Promise<string[]> {
  const out: string[] = [];
  const files = async (rel: string): Promise<{ name: string; dir: boolean }[]> => {
    try {
      return (await readdir(join(repo, rel), { withFileTypes: true })).filter((d) => !d.name.startsWith('.') && !HASHED.test(d.name)).map((d) => ({ name: d.name, dir: d.isDirectory() }));
    } catch {
      return [];
    }
  };
  for (const v of await files('payloads')) {
    if (!v.dir) continue;
    for (const f of await files(`payloads/${v.name}`)) {
      if (!f.dir) out.push(`payloads/${v.name}/${f.name}`);
      else if (f.name.startsWith('delta-from-') || f.name === IMAGE_DIR) for (const g of await files(`payloads/${v.name}/${f.name}`)) if (!g.dir) out.push(`payloads/${v.name}/${f.name}/${g.name}`);
    }
  }
  for (const c of await files('channels')) if (!c.dir && c.name.endsWith('.json')) out.push(`channels/${c.name}`);
  return out.sort();
}

/** The custom fields of a target: what it is, for which version and (a channel file) which manifest. */
function customFor(path: string, bytes: Buffer | undefined): Record<string, unknown> {
  const parts = path.split('/');
  if (parts[0] === 'channels' && bytes) {
    const ch = peekEnvelope(bytes.toString('utf8'), path) as Record<string, unknown>;
    return { kind: 'channel', channel: ch['channel'], version: ch['version'], board: ch['board'], manifest: ch['manifest'], ...(ch['floors'] ? { floors: ch['floors'] } : {}), ...(ch['holds'] ? { holds: ch['holds'] } : {}) };
  }
  const version = parts[1];
  const name = parts[parts.length - 1]!;
  if (parts.length === 4 && parts[2] === IMAGE_DIR) return { kind: name === 'manifest.json' ? 'image-manifest' : name.endsWith('.sig') ? 'signature' : 'image', version };
  const delta = parts.length === 4 ? parts[2]!.slice('delta-from-'.length) : undefined;
  const kind = name === 'manifest.json' ? 'manifest' : name.endsWith('.sig') ? 'signature' : 'payload';
  return { kind, version, ...(delta ? { deltaFrom: delta } : {}) };
}

/** Links <sha256>.<name> beside a target (consistent snapshots), unless it is there. */
async function linkHashed(repo: string, path: string, sha256: string): Promise<void> {
  const src = join(repo, path);
  const dst = join(dirname(src), `${sha256}.${basename(src)}`);
  try {
    await stat(dst);
    return;
  } catch {
    /* not there yet */
  }
  await link(src, dst).catch(() => copyFile(src, dst));
}

/**
 * Publishes new targets, snapshot and timestamp metadata describing the
 * repository's files as they are now (each version one above the last).
 * Payload files are immutable: their hashes are taken from the previous
 * targets when listed there. Written in the order targets, snapshot,
 * timestamp, so a client never sees a timestamp before what it names.
 */
export async function publishTargets(repo: string, signers: TufSigner[], now: number, exp: Expiries): Promise<Published> {
  const root = (await readRepoRoot(repo)).signed;
  const prev = await current(repo);
  const targets = new Targets({ version: (prev.targets?.signed.version ?? 0) + 1, specVersion: SPEC_VERSION, expires: tufDate(now + exp.targets) });
  const paths = await listTargetFiles(repo);
  for (const path of paths) {
    const old = prev.targets?.signed.targets[path];
    const size = (await stat(join(repo, path))).size;
    let t: TargetFile;
    if (old && path.startsWith('payloads/') && old.length === size) t = old;
    else {
      const bytes = await readFile(join(repo, path));
      t = new TargetFile({ path, length: bytes.length, hashes: { sha256: createHash('sha256').update(bytes).digest('hex') }, unrecognizedFields: { custom: { basalt: customFor(path, path.startsWith("channels/") ? bytes : undefined) as JSONObject } } });
    }
    targets.addTarget(t);
    await linkHashed(repo, path, t.hashes['sha256']!);
  }
  const tmd = new Metadata(targets);
  signRole(tmd, root, 'targets', signers);
  const dir = join(repo, METADATA_DIR);
  const ttext = text(tmd);
  await writeFileAtomic(join(dir, `${targets.version}.targets.json`), ttext);
  await writeFileAtomic(join(dir, 'targets.json'), ttext);
  const r = await publishSnapshotAndTimestamp(repo, root, signers, now, exp, prev, targets.version);
  return { ...r, files: paths.length };
}

async function publishSnapshotAndTimestamp(repo: string, root: Root, signers: TufSigner[], now: number, exp: Expiries, prev: Awaited<ReturnType<typeof current>>, targetsVersion: number): Promise<Omit<Published, 'files'>> {
  const dir = join(repo, METADATA_DIR);
  const snapshot = new Snapshot({ version: (prev.snapshot?.signed.version ?? 0) + 1, specVersion: SPEC_VERSION, expires: tufDate(now + exp.snapshot), meta: { 'targets.json': new MetaFile({ version: targetsVersion }) } });
  const smd = new Metadata(snapshot);
  signRole(smd, root, 'snapshot', signers);
  const stext = text(smd);
  await writeFileAtomic(join(dir, `${snapshot.version}.snapshot.json`), stext);
  await writeFileAtomic(join(dir, 'snapshot.json'), stext);
  const sbytes = Buffer.from(stext);
  const timestamp = new Timestamp({
    version: (prev.timestamp?.signed.version ?? 0) + 1,
    specVersion: SPEC_VERSION,
    expires: tufDate(now + exp.timestamp),
    snapshotMeta: new MetaFile({ version: snapshot.version, length: sbytes.length, hashes: { sha256: createHash('sha256').update(sbytes).digest('hex') } }),
  });
  const tsmd = new Metadata(timestamp);
  signRole(tsmd, root, 'timestamp', signers);
  await writeFileAtomic(join(dir, 'timestamp.json'), text(tsmd));
  return { targets: targetsVersion, snapshot: snapshot.version, timestamp: timestamp.version };
}

/**
 * `basalt release timestamp`: new snapshot and timestamp (fresh expiry) over
 * the same targets, with the online keys only. The targets role's keys may stay offline.
 */
export async function refreshTimestamp(repo: string, signers: TufSigner[], now: number, exp: Expiries): Promise<Omit<Published, 'files'>> {
  const root = (await readRepoRoot(repo)).signed;
  const prev = await current(repo);
  if (!prev.targets) throw new BasaltError(UE_ERRORS.E_TUF_NOT_INITIALISED, `${join(repo, METADATA_DIR)}: no targets published yet`, { hint: "publish a release first ('basalt release')" });
  return publishSnapshotAndTimestamp(repo, root, signers, now, exp, prev, prev.targets.signed.version);
}

/**
 * `basalt keys rotate`: root version N+1 with the new role spec, signed by
 * the threshold of root N's root keys and the threshold of its own, then
 * targets, snapshot and timestamp re-signed under it (their keys may have
 * changed; clients drop metadata signed by revoked keys).
 */
export async function rotateRoot(repo: string, spec: RoleSpec, signers: TufSigner[], now: number, rootExpiresMs: number, exp: Expiries): Promise<{ root: number } & Published> {
  const old = (await readRepoRoot(repo)).signed;
  const md = makeRoot(spec, old.version + 1, now + rootExpiresMs);
  signRole(md, old, 'root', signers);
  signRole(md, md.signed, 'root', signers, true);
  await writeRoot(repo, md);
  const p = await publishTargets(repo, signers, now, exp);
  return { root: md.signed.version, ...p };
}

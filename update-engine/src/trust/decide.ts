/**
 * What the verified TUF targets allow, decided without I/O: which release a
 * channel is at, whether an offer (Omaha's or the static channel's) is that
 * release, and whether fetched bytes are the target they claim to be. Every
 * refusal is E_TUF_NOT_TARGET naming the channel, path and targets version.
 */
import { createHash } from 'node:crypto';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import type { ChannelMeta, PayloadManifest } from '../format/metadata.js';
import type { UpdateOffer } from '../format/omaha.js';
import { ErrorCode } from '../format/omaha.js';
import { compareVersions, isVersion } from '../format/version.js';

/** One target as the verified targets metadata lists it. */
export interface TrustedTarget {
  path: string;
  length: number;
  sha256: string;
  /** custom.basalt: kind ('channel' | 'manifest' | 'payload' | 'signature'), version, channel, manifest, deltaFrom. */
  basalt: Record<string, unknown>;
}

/** The verified targets of one refresh. */
export interface TrustedTargets {
  /** targets.json's version (for messages). */
  version: number;
  targets: Map<string, TrustedTarget>;
}

/** A channel's release as the targets role signed it. */
export interface ChannelRelease {
  channel: string;
  version: string;
  channelFile: TrustedTarget;
  manifest: TrustedTarget;
  /** Signed floors: older releases every machine below must pass through (multi-hop), ascending. */
  floors: string[];
  /** Signed holds: older releases a server may keep a group at (a pin), ascending. */
  holds: string[];
}

const refuse = (message: string, hint?: string) => new BasaltError(UE_ERRORS.E_TUF_NOT_TARGET, message, { details: { errorCode: ErrorCode.DownloadPayloadPubKeyVerificationError }, hint });

/** The release channels/<channel>.json names in the targets, and its manifest's target. */
export function channelRelease(t: TrustedTargets, channel: string): ChannelRelease {
  const path = `channels/${channel}.json`;
  const channelFile = t.targets.get(path);
  if (!channelFile) throw refuse(`channel ${channel}: ${path} is not in the signed targets (targets v${t.version})`, 'the repository has no release on this channel');
  const version = channelFile.basalt['version'];
  const mpath = channelFile.basalt['manifest'];
  if (typeof version !== 'string' || typeof mpath !== 'string') throw refuse(`${path}: its target in targets v${t.version} has no custom basalt.version and basalt.manifest`);
  const manifest = t.targets.get(mpath);
  if (manifest?.basalt['version'] !== version) throw refuse(`channel ${channel}: the manifest ${mpath} it names is not a signed target of version ${version} (targets v${t.version})`);
  const stops = (field: 'floors' | 'holds'): string[] => {
    const raw = channelFile.basalt[field] ?? [];
    if (!Array.isArray(raw) || !raw.every((v): v is string => typeof v === 'string' && isVersion(v))) throw refuse(`${path}: custom basalt.${field} in targets v${t.version} is not a list of versions`);
    for (const v of raw) {
      if (!t.targets.has(`payloads/${v}/manifest.json`)) throw refuse(`channel ${channel}: its ${field.slice(0, -1)} ${v} has no signed manifest target payloads/${v}/manifest.json (targets v${t.version})`);
    }
    return [...new Set(raw)].filter((v) => compareVersions(v, version) < 0).sort(compareVersions);
  };
  return { channel, version, channelFile, manifest, floors: stops('floors'), holds: stops('holds') };
}

/**
 * The release a machine running `running` goes to next: the lowest signed
 * floor above it, else the channel's head; undefined when it runs the head or newer.
 */
export function nextStop(rel: ChannelRelease, running: string): string | undefined {
  const floor = rel.floors.find((f) => compareVersions(f, running) > 0);
  if (floor) return floor;
  return compareVersions(rel.version, running) > 0 ? rel.version : undefined;
}

/**
 * The versions an offer may name for a machine running `running`: its next
 * stop, and a signed hold between the two (a server keeping a group at it).
 * A machine at or past the head may still be offered the head (nothing older).
 */
export function acceptableVersions(rel: ChannelRelease, running: string): string[] {
  const next = nextStop(rel, running);
  if (!next) return [rel.version];
  return [...rel.holds.filter((h) => compareVersions(h, running) > 0 && compareVersions(h, next) < 0), next];
}

/** The manifest target of a signed release: the channel's head, or a floor or hold (payloads/<v>/manifest.json). */
export function releaseManifest(t: TrustedTargets, rel: ChannelRelease, version: string): TrustedTarget {
  if (version === rel.version) return rel.manifest;
  const m = t.targets.get(`payloads/${version}/manifest.json`);
  if (m?.basalt['version'] !== version || !(rel.floors.includes(version) || rel.holds.includes(version))) throw refuse(`channel ${rel.channel}: ${version} is not its release, a signed floor or a signed hold (targets v${t.version})`);
  return m;
}

/** Fetched bytes are the target: length, then SHA-256. */
export function checkBytes(bytes: Uint8Array, target: TrustedTarget, what: string): void {
  if (bytes.length !== target.length) throw refuse(`${what}: ${bytes.length} bytes, but the signed target ${target.path} has ${target.length}`);
  const h = createHash('sha256').update(bytes).digest('hex');
  if (h !== target.sha256) throw refuse(`${what}: sha256 ${h.slice(0, 16)}… is not the signed target ${target.path}'s ${target.sha256.slice(0, 16)}…`, 'a mirror or server sent other bytes than the publisher signed');
}

/**
 * The channel file (already checked against its target) agrees with the
 * targets: same channel and version, and its manifestSha256 is the manifest
 * target's hash (no mix-and-match of another signed manifest).
 */
export function checkChannelFile(ch: ChannelMeta, rel: ChannelRelease): void {
  if (ch.channel !== rel.channel || ch.version !== rel.version || ch.manifest !== rel.manifest.path) {
    throw refuse(`${rel.channelFile.path}: says ${ch.channel} ${ch.version} (${ch.manifest}), the signed targets say ${rel.channel} ${rel.version} (${rel.manifest.path})`);
  }
  if (ch.manifestSha256 !== rel.manifest.sha256) throw refuse(`${rel.channelFile.path}: manifestSha256 is not the signed manifest target's sha256 (${rel.manifest.path})`);
}

/** The full payload target of a signed release: the one payload directly in payloads/<v>/. */
export function releasePayload(t: TrustedTargets, version: string): TrustedTarget {
  const dir = `payloads/${version}/`;
  for (const tg of t.targets.values()) {
    if (tg.basalt['kind'] === 'payload' && tg.basalt['version'] === version && tg.path.startsWith(dir) && !tg.path.slice(dir.length).includes('/')) return tg;
  }
  throw refuse(`release ${version} has no signed payload target in ${dir} (targets v${t.version})`);
}

/**
 * An offer (from an untrusted Omaha server, or made from the channel file) is
 * what the signed targets allow a machine running `running`: the channel's
 * release, or the signed floor it must pass first, or a signed hold below
 * that (acceptableVersions); and its package is a signed payload target of
 * that version with the offered hash and size.
 */
export function checkOffer(offer: UpdateOffer, rel: ChannelRelease, t: TrustedTargets, running: string): TrustedTarget {
  const ok = acceptableVersions(rel, running);
  if (!ok.includes(offer.version)) {
    const what = ok.length === 1 && ok[0] === rel.version ? `are at ${rel.version}` : `allow ${ok.join(' or ')} for a machine at ${running}`;
    throw refuse(`the server offered ${offer.version}, but channel ${rel.channel}'s signed targets (v${t.version}) ${what}`, 'an older or other release offered by the server is a replay, freeze, skipped floor or wrong-software attempt; nothing is installed');
  }
  const want = offer.sha256Hex.toLowerCase();
  for (const tg of t.targets.values()) {
    if (tg.basalt['kind'] === 'payload' && tg.basalt['version'] === offer.version && tg.path.endsWith(`/${offer.packageName}`) && tg.sha256 === want && tg.length === offer.size) return tg;
  }
  throw refuse(`the offered package ${offer.packageName} (${offer.size} bytes, sha256 ${want.slice(0, 16)}…) is not a signed payload target of ${offer.version} (targets v${t.version})`);
}

/**
 * The signed manifest target of `version` that a fetched manifest is. A mirror
 * or an Omaha codebase may keep the file under any path, so the bytes decide
 * (the target with their length and SHA-256); the URL's path only breaks a
 * tie. Anything else is refused.
 */
export function manifestTargetFor(url: string, bytes: Uint8Array, version: string, t: TrustedTargets): TrustedTarget {
  const path = decodeURIComponent(new URL(url).pathname);
  const h = createHash('sha256').update(bytes).digest('hex');
  let best: TrustedTarget | undefined;
  for (const tg of t.targets.values()) {
    if (tg.basalt['kind'] !== 'manifest' || tg.basalt['version'] !== version || tg.sha256 !== h || tg.length !== bytes.length) continue;
    if (!best || (path.endsWith(`/${tg.path}`) && !path.endsWith(`/${best.path}`))) best = tg;
  }
  if (!best) throw refuse(`${url}: not a signed manifest target of ${version} (targets v${t.version}): no target has its ${bytes.length} bytes and sha256 ${h.slice(0, 16)}…`, 'a mirror or server sent other bytes than the publisher signed');
  return best;
}

/** The manifest's payload is the signed payload target beside it (same size and sha256). */
export function checkManifestPayload(m: PayloadManifest, manifest: TrustedTarget, t: TrustedTargets): void {
  const path = `${manifest.path.slice(0, manifest.path.lastIndexOf('/') + 1)}${m.payload.file}`;
  const p = t.targets.get(path);
  if (p?.sha256 !== m.payload.sha256 || p.length !== m.payload.size) throw refuse(`${manifest.path}: its payload ${m.payload.file} is not the signed target ${path} (targets v${t.version})`);
  if (m.version !== manifest.basalt['version']) throw refuse(`${manifest.path}: is for ${m.version}, its signed target for ${String(manifest.basalt['version'])}`);
}

/**
 * The repository's root URL from an Omaha codebase (…/payloads/<version>/ or
 * …/payloads/<version>/delta-from-<v>/), when no TUF URL is configured. The
 * derived URL needs no trust: what it serves is verified against the local root.
 */
export function repoUrlFromCodebase(codebase: string, version: string): string | undefined {
  const u = new URL(codebase.endsWith('/') ? codebase : codebase + '/');
  const m = new RegExp(`^(.*/)payloads/${version.replace(/[.+]/g, (c) => `\\${c}`)}/(delta-from-[^/]+/)?$`).exec(u.pathname);
  if (!m) return undefined;
  u.pathname = m[1]!;
  u.search = '';
  return u.toString();
}

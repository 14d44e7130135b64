/**
 * What may be offered to a machine, one definition for the Omaha server and
 * the host's static mode: a channel's release is offered when it is newer than
 * what the machine runs, for its board, and the machine is inside the
 * release's rollout. Pure.
 */
import { hexToBase64 } from './digest.js';
import { deltaDir, inRollout, type ChannelMeta } from './metadata.js';
import type { UpdateOffer } from './omaha.js';
import { compareVersions, isVersion } from './version.js';

/** The machine that asks, as it describes itself. */
export interface Asker {
  machineId: string;
  version: string;
  /** Empty or undefined: the machine did not say (older clients); any board is then offered. */
  board?: string | undefined;
}

export type OfferDecision = { offer: true } | { offer: false; why: string };

/** Decides whether the channel's release is offered to `a`; `why` says why not, for logs and events. */
export function decideOffer(ch: ChannelMeta, a: Asker): OfferDecision {
  if (!isVersion(a.version)) return { offer: false, why: `client version '${a.version}' is not a version` };
  if (compareVersions(ch.version, a.version) <= 0) return { offer: false, why: `client is at ${a.version}, channel at ${ch.version}` };
  if (a.board && ch.board && a.board !== ch.board) return { offer: false, why: `board ${a.board} != ${ch.board}` };
  if (!inRollout(a.machineId, ch.version, ch.rollout.percent)) return { offer: false, why: `outside the ${ch.rollout.percent}% rollout` };
  return { offer: true };
}

/** The Omaha offer of a channel's release, its payload served under `base` (the repository's root URL). */
export function offerFromChannel(ch: ChannelMeta, base: string): UpdateOffer {
  const root = base.endsWith('/') ? base : base + '/';
  const dir = ch.payload.path.slice(0, ch.payload.path.lastIndexOf('/') + 1);
  return {
    version: ch.version,
    codebases: [new URL(dir, root).toString()],
    packageName: ch.payload.path.slice(dir.length),
    size: ch.payload.size,
    sha1Base64: '',
    sha256Hex: ch.payload.sha256,
    sha256Base64: hexToBase64(ch.payload.sha256),
    manifestName: ch.manifest.slice(dir.length),
  };
}

/** The payload of a published delta, as its manifest describes it. */
export interface DeltaPayload {
  file: string;
  size: number;
  sha256: string;
  sha1: string;
}

/** The Omaha offer of the channel's release as a delta from `from` (payloads/<version>/delta-from-<from>/). */
export function deltaOfferFromChannel(ch: ChannelMeta, base: string, from: string, p: DeltaPayload): UpdateOffer {
  const full = offerFromChannel(ch, base);
  const dir = new URL(`${deltaDir(from)}/`, full.codebases[0]).toString();
  return { ...full, codebases: [dir], packageName: p.file, size: p.size, sha1Base64: p.sha1, sha256Hex: p.sha256, sha256Base64: hexToBase64(p.sha256), manifestName: 'manifest.json' };
}

/**
 * Planning a delta (pure): content-defined chunks over the new image and the
 * base image (a gear rolling hash, as FastCDC and casync cut), the new
 * image's chunks found in the base become 'seed' pieces (the client copies
 * them from its running slot, read-only), the rest 'data' pieces (sent in the
 * payload). Identical content cuts at the same places in both images however
 * far it moved, so a changed file costs about its own bytes, not the rest of
 * the filesystem behind it. The client does not chunk: the plan is in the
 * signed manifest.
 */
import { createHash } from 'node:crypto';

/** Smallest, typical (a cut where the hash's low 16 bits are 0) and largest content-defined chunk. */
export const CDC_MIN = 16 * 1024;
export const CDC_MASK = 0xffff;
export const CDC_MAX = 256 * 1024;
/** The largest piece of a plan (seed or data): the client holds one in memory to verify it. */
export const MAX_PIECE = 4 * 1024 * 1024;

/** 256 fixed pseudo-random words (xorshift32 from a constant): the gear table. Changing it only changes where future releases cut. */
const GEAR = (() => {
  const g = new Uint32Array(256);
  let x = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    g[i] = x >>> 0;
  }
  return g;
})();

/** End offsets of the content-defined chunks of `data` (the last is data.length). */
export function cdcCuts(data: Uint8Array): number[] {
  const cuts: number[] = [];
  let start = 0;
  while (start < data.length) {
    const end = Math.min(data.length, start + CDC_MAX);
    let cut = end;
    let h = 0;
    for (let i = start; i < end; i++) {
      h = ((h << 1) + GEAR[data[i]!]!) >>> 0;
      if (i - start + 1 >= CDC_MIN && (h & CDC_MASK) === 0) {
        cut = i + 1;
        break;
      }
    }
    cuts.push(cut);
    start = cut;
  }
  return cuts;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Where each content-defined chunk of the base image starts, by its SHA-256 (the first, when repeated). */
export function seedIndex(seed: Uint8Array): Map<string, number> {
  const index = new Map<string, number>();
  let start = 0;
  for (const end of cdcCuts(seed)) {
    const h = sha(seed.subarray(start, end));
    if (!index.has(h)) index.set(h, start);
    start = end;
  }
  return index;
}

export type DeltaPiece = { kind: 'seed'; at: number; length: number; seedOffset: number } | { kind: 'data'; at: number; length: number };

/**
 * The new image as seed and data pieces, in image order and contiguous:
 * chunks found in the seed's index are seed pieces (neighbours that are
 * neighbours in the seed too are merged), the others are merged into data
 * pieces; no piece is over `maxPiece` (a longer one is split).
 */
export function planDelta(image: Uint8Array, index: Map<string, number>, maxPiece = MAX_PIECE): DeltaPiece[] {
  const out: DeltaPiece[] = [];
  let start = 0;
  for (const end of cdcCuts(image)) {
    const length = end - start;
    const seedOffset = index.get(sha(image.subarray(start, end)));
    const last = out.at(-1);
    if (seedOffset !== undefined) {
      if (last?.kind === 'seed' && last.seedOffset + last.length === seedOffset) last.length += length;
      else out.push({ kind: 'seed', at: start, length, seedOffset });
    } else if (last?.kind === 'data') last.length += length;
    else out.push({ kind: 'data', at: start, length });
    start = end;
  }
  return out.flatMap((p) => split(p, maxPiece));
}

/** `p` in pieces of at most `max` bytes (a seed piece's parts keep their place in the seed). */
function split(p: DeltaPiece, max: number): DeltaPiece[] {
  const parts: DeltaPiece[] = [];
  for (let off = 0; off < p.length; off += max) {
    const length = Math.min(max, p.length - off);
    parts.push(p.kind === 'seed' ? { kind: 'seed', at: p.at + off, length, seedOffset: p.seedOffset + off } : { kind: 'data', at: p.at + off, length });
  }
  return parts;
}

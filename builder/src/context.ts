/**
 * The build context passed to every stage, and the stage interface.
 *
 * A stage is `{ name, title, inputs(ctx), run(ctx, out) }`. Its cache key is
 * the SHA-256 of its name, STAGE_VERSION, its inputs and the keys of the
 * stages before it, so a change upstream rebuilds everything downstream and a
 * change to one stage's own inputs (say the tools) rebuilds from that stage on.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../common/src/log.js';
import type { Profile } from '../../configs/src/profile.js';

export interface BuildContext {
  profile: Profile;
  profileFile: string;
  /** The Basalt checkout (for builder/files, dist/, package-lock.json). */
  repoRoot: string;
  /** Persistent cache: debs/, npm/, stages/. */
  cacheDir: string;
  log: Logger;
  signal: AbortSignal;
  /** Results of the stages run so far, by stage name. */
  results: Map<string, StageResult>;
  /** Output directories of the stages run so far, by stage name. */
  dirs: Map<string, string>;
}

/** What a stage reports; stored as result.json in its cache directory. */
export interface StageResult {
  /** Small JSON-able facts for the manifest (versions, sizes, hashes). */
  facts: Record<string, unknown>;
}

export interface Stage {
  name: string;
  title: string;
  /** Bump when the stage's code changes what it produces. */
  version: number;
  /** JSON-able inputs that decide the output (besides the previous stages). */
  inputs(ctx: BuildContext): Promise<unknown>;
  /** Produces the stage output in `out` (an empty directory). */
  run(ctx: BuildContext, out: string): Promise<StageResult>;
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Stable JSON (sorted keys) for hashing. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function stageKey(name: string, version: number, inputs: unknown, previous: string): string {
  return sha256(stableJson({ name, version, inputs, previous })).slice(0, 16);
}

/** The checkout root, from builder/src or dist/builder/src. */
export function repoRootDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url)).replace(/\/$/, '');
  return here.replace(/\/dist\/builder\/src$/, '').replace(/\/builder\/src$/, '');
}

/** Default cache: $BASALT_CACHE, /var/cache/basalt as root, else ~/.cache/basalt. */
export function defaultCacheDir(): string {
  const env = process.env['BASALT_CACHE'];
  if (env) return env;
  if (process.getuid?.() === 0) return '/var/cache/basalt';
  return `${process.env['HOME'] ?? '/tmp'}/.cache/basalt`;
}

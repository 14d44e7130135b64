/**
 * The build context passed to every stage, and the stage interface.
 *
 * A stage is `{ name, title, inputs(ctx), run(ctx, out), readFacts(json) }`;
 * what it reports is typed by its name (StageFactsByName). Its cache key is
 * the SHA-256 of its name, STAGE_VERSION, its inputs and the keys of the
 * stages before it, so a change upstream rebuilds everything downstream and a
 * change to one stage's own inputs (say the tools) rebuilds from that stage on.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, isAbsolute, join } from 'node:path';
import type { UsrImageInfo } from '../../common/src/contracts.js';
import { InternalError } from '../../common/src/errors.js';
import type { Logger } from '../../common/src/log.js';
import type { Profile } from '../../configs/src/profile.js';
import type { BootFacts, CustomizeFacts, InitrdFacts, LayerFacts, PackagesFacts, TrimFacts } from './stages/stage-facts.js';

export interface BuildContext {
  profile: Profile;
  profileFile: string;
  /** The Basalt checkout (for builder/files, dist/, package-lock.json). */
  repoRoot: string;
  /** Persistent cache: debs/, npm/, stages/. */
  cacheDir: string;
  log: Logger;
  signal: AbortSignal;
  /** What the stages run so far produced (read with stageFacts and stageDir). */
  done: DoneStages;
  /** A stage's sub-step for a person watching (one short line: what, how far, how much); may be rate-limited. */
  progress?: (text: string) => void;
  /** The later stages' prefetches started while an earlier stage was built (Stage.prefetch), by stage; settled before the build returns. */
  prefetches: Map<StageName, Promise<void>>;
}

/** The facts each stage reports, by stage name (the result.json of its cache folder). */
export interface StageFactsByName {
  packages: PackagesFacts;
  customize: CustomizeFacts;
  trim: TrimFacts;
  initrd: InitrdFacts;
  layer: LayerFacts;
  'usr-image': UsrImageInfo;
  boot: BootFacts;
}

export type StageName = keyof StageFactsByName;

/** What a stage reports; stored as result.json in its cache directory. */
export interface StageResult<F> {
  /** Small JSON-able facts for the manifest (versions, sizes, hashes). */
  facts: F;
}

/** A stage that has run (or was found in the cache): its output folder and its result. */
export interface DoneStage<N extends StageName> {
  dir: string;
  result: StageResult<StageFactsByName[N]>;
}

export type DoneStages = { [N in StageName]?: DoneStage<N> };

export interface Stage<N extends StageName> {
  name: N;
  title: string;
  /** Bump when the stage's code changes what it produces. */
  version: number;
  /** JSON-able inputs that decide the output (besides the previous stages). */
  inputs(ctx: BuildContext): Promise<unknown>;
  /** Produces the stage output in `out` (an empty directory). */
  run(ctx: BuildContext, out: string): Promise<StageResult<StageFactsByName[N]>>;
  /**
   * Optional: fills the build cache with downloads `run` needs that no earlier
   * stage decides (the Node runtime, npm modules). The pipeline starts it when
   * an earlier stage is built, so the download overlaps that stage. `run` must
   * not rely on it: both go through the same once-per-build fetch, and a
   * failed prefetch fails only in `run`.
   */
  prefetch?(ctx: BuildContext): Promise<void>;
  /**
   * Checks the facts of a result.json read back from the cache (`where` names
   * the file in messages); throws a BasaltError when they are not what `run` returns.
   */
  readFacts(json: unknown, where: string): StageFactsByName[N];
}

/** Any one of the stages (the pipeline's list). */
export type AnyStage = { [N in StageName]: Stage<N> }[StageName];

/** Records a stage that has run (or was found in the cache). */
export function recordDone<N extends StageName>(done: { [P in N]?: DoneStage<P> }, name: N, stage: DoneStage<N>): void {
  done[name] = stage;
}

function done<N extends StageName>(ctx: BuildContext, name: N): DoneStage<N> {
  const d = ctx.done[name];
  if (!d) throw new InternalError(`stage '${name}' is used before it has run`);
  return d;
}

/** The facts of a stage that has run. */
export function stageFacts<N extends StageName>(ctx: BuildContext, name: N): StageFactsByName[N] {
  return done(ctx, name).result.facts;
}

/** The output folder of a stage that has run. */
/** A path the profile gives, relative to the profile file's folder (absolute paths as they are). */
export function profileRelative(ctx: Pick<BuildContext, 'profileFile'>, path: string): string {
  return isAbsolute(path) ? path : join(dirname(ctx.profileFile), path);
}

export function stageDir(ctx: BuildContext, name: StageName): string {
  return done(ctx, name).dir;
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Stable JSON (sorted keys) for hashing. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  // undefined (and functions) have no JSON text: they hash as null.
  const text = JSON.stringify(v) as string | undefined;
  return text ?? 'null';
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

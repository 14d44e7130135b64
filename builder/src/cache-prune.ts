/**
 * Which entries of a cache folder (a stage's keys, or the outputs' keys) to
 * remove after a build stored one: all but the newest few by last use, so that
 * builds of a handful of profiles (a team's image beside the default, the test
 * variants) keep each other's stages, and a build running at the same time
 * never finds the entry it reads, or the one it is writing, taken away.
 *
 * A key's folder has its mtime set at each use (`touchEntry`): a hit counts as
 * a use. `<key>.tmp-<pid>` folders belong to a build in progress while that
 * process lives; they are removed only when it is gone.
 */
import { readdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { removeWorkDir } from './fsutil.js';

/** How many keys each cache folder keeps (besides the one just used). */
export const CACHE_KEEP = 4;

export interface CacheEntry {
  name: string;
  /** Last use (the folder's mtime). */
  usedMs: number;
}

/** Pure: the PID of a `<key>.tmp-<pid>` folder, else undefined. */
export function tmpOwner(name: string): number | undefined {
  const m = /\.tmp-(\d+)$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Pure: the entries to remove. `current` stays; of the other keys, the `keep`
 * most recently used stay; a temporary folder goes only when its process is gone.
 */
export function entriesToPrune(entries: readonly CacheEntry[], current: string, keep: number, alive: (pid: number) => boolean): string[] {
  const out: string[] = [];
  const keys: CacheEntry[] = [];
  for (const e of entries) {
    if (e.name === current) continue;
    const pid = tmpOwner(e.name);
    if (pid !== undefined) {
      if (!alive(pid)) out.push(e.name);
    } else keys.push(e);
  }
  keys.sort((a, b) => b.usedMs - a.usedMs || a.name.localeCompare(b.name));
  for (const e of keys.slice(keep)) out.push(e.name);
  return out;
}

/** Whether a process exists (signal 0 checks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Marks `dir` as used now, so pruning keeps it among the newest. */
export async function touchEntry(dir: string): Promise<void> {
  const now = new Date();
  await utimes(dir, now, now).catch(() => undefined);
}

/** Removes the entries of `base` that `entriesToPrune` names; `current` is marked used. */
export async function pruneCache(base: string, current: string, keep = CACHE_KEEP): Promise<void> {
  await touchEntry(join(base, current));
  const entries: CacheEntry[] = [];
  for (const name of await readdir(base).catch(() => [] as string[])) {
    const st = await stat(join(base, name)).catch(() => undefined);
    if (st) entries.push({ name, usedMs: st.mtimeMs });
  }
  // A killed build's folder may still have /proc or /dev mounted below it: unmounted first, never removed through.
  for (const name of entriesToPrune(entries, current, keep, processAlive)) await removeWorkDir(join(base, name));
}

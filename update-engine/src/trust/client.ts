/**
 * The machine's TUF client (tuf-js's Updater). What it trusts lives in
 * STATE_DIR/tuf/{root,timestamp,snapshot,targets}.json: started from the
 * image's root.json, replaced only by metadata tuf-js verified, each file
 * written atomically, so a restart or a crash never forgets the newest root,
 * timestamp, snapshot and targets versions seen (rollback protection).
 * tuf-js works on a copy in a scratch folder (it writes with writeFileSync);
 * the verified files are then copied back with writeFileAtomic, root first.
 */
import { mkdtemp, readFile, readdir, rm, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Updater, type Fetcher } from 'tuf-js';
// tuf-js tells "no newer root" from a failure by these classes (instanceof); its index does not export them.
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { tmpdir } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { httpClient, HTTP_ERRORS, requestBytes } from '../../../common/src/http.js';
import { Metadata, MetadataKind, Root } from '@tufjs/models';
import { BasaltError } from '../../../common/src/errors.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import type { Logger } from '../../../common/src/log.js';
import { UE_ERRORS } from '../errors.js';
import { ErrorCode } from '../format/omaha.js';
import type { TrustedTarget, TrustedTargets } from './decide.js';

/** Byte caps per metadata file (TUF's endless-data attack) and time per fetch (slow retrieval). */
export const TUF_LIMITS = {
  rootMaxLength: 512 * 1024,
  timestampMaxLength: 16 * 1024,
  snapshotMaxLength: 1024 * 1024,
  targetsMaxLength: 16 * 1024 * 1024,
  maxRootRotations: 32,
  fetchTimeout: 30_000,
};

const FILES = ['root', 'timestamp', 'snapshot', 'targets'] as const;
/** The prefix of tuf-js's scratch folder in the state dir. */
const SCRATCH = '.tuf-';

export interface TrustOptions {
  stateDir: string;
  /** The image's root.json (trust on first use of the state dir). */
  initialRoot: string;
  /** The repository's metadata/ URL. */
  metadataUrl: string;
  limits?: Partial<typeof TUF_LIMITS>;
  log: Logger;
}

/**
 * tuf-js fetches through Basalt's one HTTP client (common/src/http.ts):
 * no retries, connect/idle/total limits, the body capped at tuf-js's
 * maxLength before it is buffered. An HTTP error status becomes tuf-js's
 * DownloadHTTPError (a 404 for the next root ends the rotation walk).
 */
export function basaltFetcher(totalMs: number): Fetcher {
  const http = httpClient({ connectMs: Math.min(totalMs, 30_000), stallMs: Math.min(totalMs, 30_000), totalMs });
  const downloadBytes = async (url: string, maxLength: number): Promise<Buffer> => {
    let reply;
    try {
      reply = await requestBytes(http, url, { maxBytes: maxLength });
    } catch (e) {
      if (e instanceof BasaltError && e.code === HTTP_ERRORS.E_HTTP_TOO_LARGE.code) throw new DownloadLengthMismatchError(`${url}: more than ${maxLength} bytes`);
      throw e;
    }
    if (reply.status < 200 || reply.status > 299) throw new DownloadHTTPError(`${url}: HTTP ${reply.status}`, reply.status);
    return reply.body;
  };
  return {
    downloadBytes,
    async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
      const dir = await mkdtemp(join(tmpdir(), 'basalt-tuf-target-'));
      try {
        const file = join(dir, 'target');
        await writeFile(file, await downloadBytes(url, maxLength));
        return await handler(file);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Where the trusted metadata lives in the state dir. */
export function trustDir(stateDir: string): string {
  return join(stateDir, 'tuf');
}

async function readOr(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch {
    return undefined;
  }
}

/** Seeds STATE_DIR/tuf/root.json from the image's root once. */
async function seed(dir: string, initialRoot: string): Promise<void> {
  if (await readOr(join(dir, 'root.json'))) return;
  const root = await readOr(initialRoot);
  if (!root) throw new BasaltError(UE_ERRORS.E_TUF_ROOT, `${initialRoot}: cannot read the trusted TUF root`, { details: { errorCode: ErrorCode.DownloadPayloadPubKeyVerificationError } });
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, 'root.json'), root);
}

/**
 * Refreshes the TUF metadata from the repository (root rotations, timestamp,
 * snapshot, targets, each checked by tuf-js for signatures over threshold,
 * expiry, version rollback, snapshot consistency and size), persists what
 * verified, and returns the verified targets. Throws E_TUF_REFRESH naming the URL.
 */
export async function refreshTrust(o: TrustOptions): Promise<TrustedTargets> {
  const dir = trustDir(o.stateDir);
  await seed(dir, o.initialRoot);
  // Scratch folders of a run that was killed mid-refresh (their content was never trusted).
  for (const f of await readdir(o.stateDir)) if (f.startsWith(SCRATCH)) await rm(join(o.stateDir, f), { recursive: true, force: true });
  const work = await mkdtemp(join(o.stateDir, SCRATCH));
  try {
    for (const f of FILES) {
      if (await readOr(join(dir, `${f}.json`))) await copyFile(join(dir, `${f}.json`), join(work, `${f}.json`));
    }
    const metadataBaseUrl = o.metadataUrl.endsWith('/') ? o.metadataUrl : o.metadataUrl + '/';
    let failure: unknown;
    try {
      const config = { ...TUF_LIMITS, ...o.limits, fetchRetries: 0, prefixTargetsWithHash: false };
      const up = new Updater({ metadataDir: work, metadataBaseUrl, fetcher: basaltFetcher(config.fetchTimeout), config });
      await up.refresh();
    } catch (e) {
      failure = e;
    }
    // What tuf-js accepted (even before a later step failed) stays trusted.
    for (const f of FILES) {
      const got = await readOr(join(work, `${f}.json`));
      const had = await readOr(join(dir, `${f}.json`));
      if (got && (!had || !got.equals(had))) await writeFileAtomic(join(dir, `${f}.json`), got);
    }
    if (failure !== undefined) {
      const e = failure as Error;
      throw new BasaltError(UE_ERRORS.E_TUF_REFRESH, `${metadataBaseUrl}: TUF metadata refused (${e.constructor.name}: ${e.message})`, {
        cause: e,
        details: { errorCode: ErrorCode.DownloadPayloadPubKeyVerificationError },
        hint: 'a stale, frozen or hostile mirror, or a key below threshold; the machine keeps its trusted metadata and installs nothing',
      });
    }
    const tmd = Metadata.fromJSON(MetadataKind.Targets, JSON.parse((await readFile(join(work, 'targets.json'))).toString('utf8')) as Parameters<typeof Root.fromJSON>[0]);
    const targets = new Map<string, TrustedTarget>();
    for (const [path, t] of Object.entries(tmd.signed.targets)) {
      const basalt = (t.custom['basalt'] ?? {}) as Record<string, unknown>;
      targets.set(path, { path, length: t.length, sha256: t.hashes['sha256'] ?? '', basalt });
    }
    o.log.debug(`TUF: targets v${tmd.signed.version} from ${metadataBaseUrl} (${targets.size} targets)`);
    return { version: tmd.signed.version, targets };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** What a machine trusts now (STATE_DIR/tuf): each role's version and expiry, for `basalt update status`. */
export async function trustedVersions(stateDir: string): Promise<Partial<Record<(typeof FILES)[number], { version: number; expires: string }>>> {
  const out: Partial<Record<(typeof FILES)[number], { version: number; expires: string }>> = {};
  for (const f of FILES) {
    const b = await readOr(join(trustDir(stateDir), `${f}.json`));
    if (!b) continue;
    try {
      const j = JSON.parse(b.toString('utf8')) as { signed?: { version?: unknown; expires?: unknown } };
      if (typeof j.signed?.version === 'number' && typeof j.signed.expires === 'string') out[f] = { version: j.signed.version, expires: j.signed.expires };
    } catch {
      /* not JSON: the next refresh replaces it */
    }
  }
  return out;
}

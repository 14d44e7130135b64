/**
 * What the update benches share: disk images booted from A (with a USR image
 * in A for a delta's seed), `basalt serve` on a worker thread, one timed
 * update by the engine, medians. Imported by bench/update-apply.ts and
 * bench/delta.ts; as a worker's entry it runs the server.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { run } from '../common/src/exec.js';
import { createLogger, silentLogger } from '../common/src/log.js';
import { createDisk, findPartition, partitionRange } from '../common/src/gpt/index.js';
import { renderEntry, entryFileName, LOADER_CONF } from '../common/src/boot.js';
import { startServer } from '../update-engine/src/serve/server.js';
import { APP_ID, DEFAULT_BOARD, type UsrImageInfo } from '../common/src/contracts.js';
import { MtoolsEsp } from '../update-engine/src/host/esp.js';
import { buildEnv } from '../update-engine/src/host/hostenv.js';
import { Engine } from '../update-engine/src/host/engine.js';

/** A sparse 6 GiB disk in the CoreOS layout booted from A (version `version`), with `usrA`'s bytes in USR-A when given. */
export async function benchDisk(dir: string, n: number, version = '1.0.0', usrA?: string): Promise<string> {
  const path = join(dir, `disk-${n}.img`);
  const gpt = await createDisk(path, { layout: 'coreos', sizeBytes: 6 * 2 ** 30 });
  const esp = partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM'));
  await run('mkfs.vfat', ['-F', '16', '-n', 'EFI-SYSTEM', '--offset', String(esp.offset / 512), path, String(esp.length / 1024)]);
  const m = new MtoolsEsp(path, esp.offset);
  await m.write('/loader/loader.conf', LOADER_CONF);
  await m.write(`/loader/entries/${entryFileName('a')}`, renderEntry({ slot: 'a', version, fsType: 'squashfs' }));
  if (usrA) {
    const a = partitionRange(gpt, findPartition(gpt, 'USR-A'));
    const src = await open(usrA, 'r');
    const dst = await open(path, 'r+');
    try {
      const buf = Buffer.allocUnsafe(4 << 20);
      for (let pos = 0; ; ) {
        const { bytesRead } = await src.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        await dst.write(buf, 0, bytesRead, a.offset + pos);
        pos += bytesRead;
      }
    } finally {
      await src.close();
      await dst.close();
    }
  }
  return path;
}

/** One update of `d` (booted from A at `version`) from the server: seconds for the whole of it, and from its download's start to the verified slot. */
export async function applyOnce(d: string, serverUrl: string, ring: string, dir: string, version = '1.0.0'): Promise<{ whole: number; stream: number }> {
  const { env } = await buildEnv(
    { disk: d, 'booted-slot': 'A', 'state-dir': `${d}.state`, keyring: ring, server: `${serverUrl}v1/update/`, channel: 'stable', board: DEFAULT_BOARD, root: join(dir, 'none'), 'current-version': version },
    createLogger({ level: 'warn' }),
    () => {},
  );
  const e = new Engine(env);
  await e.start(false);
  let streamStart = 0n;
  let streamEnd = 0n;
  e.subscribe((s) => {
    if (s.status === 'UPDATE_STATUS_DOWNLOADING' && !streamStart) streamStart = process.hrtime.bigint();
    if (s.status === 'UPDATE_STATUS_VERIFYING' && !streamEnd) streamEnd = process.hrtime.bigint();
  });
  const a0 = process.hrtime.bigint();
  e.check(true);
  await e.idle();
  if (e.state.status !== 'UPDATE_STATUS_UPDATED_NEED_REBOOT') throw new Error(`apply failed: ${e.lastFailure?.message}`);
  return { whole: Number(process.hrtime.bigint() - a0) / 1e9, stream: Number(streamEnd - streamStart) / 1e9 };
}

export const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** `basalt serve` on a worker thread, so that serving does not share the engine's event loop. */
export function serveInWorker(repo: string, eventsFile: string): Promise<{ url: string; stop(): Promise<void> }> {
  const w = new Worker(new URL(import.meta.url), { workerData: { repo, eventsFile } });
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.once('message', (url: string) =>
      resolve({
        url,
        stop: async () => {
          await w.terminate();
        },
      }),
    );
  });
}

if (!isMainThread) {
  const { repo, eventsFile } = workerData as { repo: string; eventsFile: string };
  void startServer({ repo, eventsFile, appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0).then((srv) => parentPort!.postMessage(srv.url));
}

/** Appends dm-verity to the squashfs image `img` (as the builder lays out USR) and writes its usr.img.json for `version`. */
export async function sealUsr(img: string, version: string): Promise<string> {
  const fsBytes = (await stat(img)).size;
  const hashOffset = Math.ceil(fsBytes / 4096) * 4096;
  const fh = await open(img, 'r+');
  await fh.truncate(hashOffset);
  await fh.close();
  const v = await run('veritysetup', ['format', img, img, `--hash-offset=${hashOffset}`]);
  const rootHash = /Root hash:\s*([0-9a-f]{64})/.exec(v.stdout)?.[1];
  if (!rootHash) throw new Error(`veritysetup format ${img}: no root hash in its output`);
  const salt = /Salt:\s*([0-9a-f]+)/.exec(v.stdout)?.[1] ?? '';
  const info: UsrImageInfo = { formatVersion: 1, fsType: 'squashfs', fsBytes, hashOffset, rootHash, salt, version, board: DEFAULT_BOARD, kernel: '/lib/basalt/boot/vmlinuz', initrd: '/lib/basalt/boot/initrd', imageBytes: (await stat(img)).size, sha256: createHash('sha256').update(await readFile(img)).digest('hex') };
  await writeFile(`${img}.json`, JSON.stringify(info));
  return img;
}

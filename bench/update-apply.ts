/**
 * Update apply bench: Basalt's engine applying a release payload (HTTP on
 * loopback, per-chunk SHA-256 against the signed manifest, xz decompression,
 * write into the inactive slot of a disk image, read-back SHA-256 of the
 * slot, finalize onto the ESP and GPT) against `xz -dc payload > slot` on the
 * same payload file, alternated in the same run. Prints the ratio.
 *
 *   npm run build && node dist/bench/update-apply.js [--mib 48] [--reps 3] [--xz-level 6]
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { run } from '../common/src/exec.js';
import { createLogger, silentLogger } from '../common/src/log.js';
import { createDisk, findPartition, partitionRange } from '../common/src/gpt/index.js';
import { renderEntry, entryFileName, LOADER_CONF } from '../common/src/boot.js';
import { generateKey, readPrivateKeyFile } from '../update-engine/src/publish/keys.js';
import { release } from '../update-engine/src/publish/repo.js';
import { startServer } from '../update-engine/src/serve/server.js';
import { APP_ID, DEFAULT_BOARD, type UsrImageInfo } from '../common/src/contracts.js';
import { MtoolsEsp } from '../update-engine/src/host/esp.js';
import { buildEnv } from '../update-engine/src/host/hostenv.js';
import { Engine } from '../update-engine/src/host/engine.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '48' }, reps: { type: 'string', default: '3' }, 'xz-level': { type: 'string', default: '6' } } });
const MIB = Number(values.mib);
const REPS = Number(values.reps);

async function usrImage(dir: string, version: string): Promise<string> {
  const tree = join(dir, `tree-${version}`);
  await mkdir(join(tree, 'lib/basalt/boot'), { recursive: true });
  await writeFile(join(tree, 'lib/basalt/boot/vmlinuz'), randomBytes(4 << 20));
  await writeFile(join(tree, 'lib/basalt/boot/initrd'), randomBytes(2 << 20));
  // Like a /usr: some incompressible (already compressed) files, mostly compressible ones.
  await writeFile(join(tree, 'blob'), randomBytes(Math.floor((MIB << 20) * 0.3)));
  const words = Array.from({ length: 4096 }, (_, i) => `lib${i.toString(36)}.so.${i % 7} `).join('');
  await writeFile(join(tree, 'text'), words.repeat(Math.ceil(((MIB << 20) * 0.7) / words.length)));
  const img = join(dir, `usr-${version}.img`);
  await run('mksquashfs', [tree, img, '-comp', 'gzip', '-all-root', '-noappend', '-quiet', '-no-progress', '-processors', '1']);
  const fsBytes = (await stat(img)).size;
  const hashOffset = Math.ceil(fsBytes / 4096) * 4096;
  const fh = await open(img, 'r+');
  await fh.truncate(hashOffset);
  await fh.close();
  const v = await run('veritysetup', ['format', img, img, `--hash-offset=${hashOffset}`]);
  const rootHash = /Root hash:\s*([0-9a-f]{64})/.exec(v.stdout)![1]!;
  const salt = /Salt:\s*([0-9a-f]+)/.exec(v.stdout)?.[1] ?? '';
  const info: UsrImageInfo = { formatVersion: 1, fsType: 'squashfs', fsBytes, hashOffset, rootHash, salt, version, board: DEFAULT_BOARD, kernel: '/lib/basalt/boot/vmlinuz', initrd: '/lib/basalt/boot/initrd', imageBytes: (await stat(img)).size, sha256: createHash('sha256').update(await readFile(img)).digest('hex') };
  await writeFile(`${img}.json`, JSON.stringify(info));
  return img;
}

async function disk(dir: string, n: number): Promise<string> {
  const path = join(dir, `disk-${n}.img`);
  const gpt = await createDisk(path, { layout: 'coreos', sizeBytes: 6 * 2 ** 30 });
  const esp = partitionRange(gpt, findPartition(gpt, 'EFI-SYSTEM'));
  await run('mkfs.vfat', ['-F', '16', '-n', 'EFI-SYSTEM', '--offset', String(esp.offset / 512), path, String(esp.length / 1024)]);
  const m = new MtoolsEsp(path, esp.offset);
  await m.write('/loader/loader.conf', LOADER_CONF);
  await m.write(`/loader/entries/${entryFileName('a')}`, renderEntry({ slot: 'a', version: '1.0.0', fsType: 'squashfs' }));
  return path;
}

function xzToFile(payload: string, out: string): Promise<number> {
  return new Promise((resolve, reject) => {
    void open(out, 'w').then((fh) => {
      const t0 = process.hrtime.bigint();
      const c = spawn('xz', ['-dc', payload], { stdio: ['ignore', fh.fd, 'inherit'] });
      c.on('error', reject);
      c.on('close', (code) => {
        void fh.sync().then(() => fh.close()).then(() => (code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e9) : reject(new Error(`xz exited ${code}`))));
      });
    });
  });
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'basalt-bench-'));
  try {
    const k = await generateKey('bench', undefined);
    await writeFile(join(dir, 'release.key'), k.privateArmored);
    await mkdir(join(dir, 'ring'));
    await writeFile(join(dir, 'ring/k.asc'), k.publicArmored);
    const key = await readPrivateKeyFile(join(dir, 'release.key'));
    const img = await usrImage(dir, '2.0.0');
    const repo = join(dir, 'repo');
    const t0 = Date.now();
    const r = await release({ usr: img, version: '2.0.0', channel: 'stable', key, repo, now: new Date(), expiresMs: 86_400_000, xzLevel: Number(values['xz-level']) });
    const releaseS = (Date.now() - t0) / 1000;
    const m = r.manifest;
    const payload = join(repo, 'payloads/2.0.0/usr.img.xz');
    const srv = await startServer({ repo, eventsFile: join(dir, 'ev.jsonl'), appIds: [APP_ID], maxBodyBytes: 65536, now: () => new Date(), log: silentLogger }, '127.0.0.1', 0);
    try {
    const xzT: number[] = [];
    const applyT: number[] = [];
    const streamT: number[] = [];
    for (let i = 0; i < REPS; i++) {
      xzT.push(await xzToFile(payload, join(dir, 'slot.raw')));
      await rm(join(dir, 'slot.raw'));
      const d = await disk(dir, i);
      const { env } = await buildEnv(
        { disk: d, 'booted-slot': 'A', 'state-dir': `${d}.state`, keyring: join(dir, 'ring'), server: `${srv.url}v1/update/`, channel: 'stable', board: DEFAULT_BOARD, root: join(dir, 'none') },
        createLogger({ level: 'warn' }),
        () => {},
      );
      const e = new Engine(env);
      await e.start(false);
      let streamEnd = 0;
      e.subscribe((s) => {
        if (s.status === 'UPDATE_STATUS_VERIFYING' && !streamEnd) streamEnd = Date.now();
      });
      const a0 = Date.now();
      e.check(true);
      await e.idle();
      if (e.state.status !== 'UPDATE_STATUS_UPDATED_NEED_REBOOT') throw new Error(`apply failed: ${e.lastFailure?.message}`);
      applyT.push((Date.now() - a0) / 1000);
      streamT.push((streamEnd - a0) / 1000);
      await rm(d);
      await rm(`${d}.state`, { recursive: true });
    }
    const mb = m.image.size / 1e6;
    const res = {
      imageBytes: m.image.size,
      payloadBytes: m.payload.size,
      chunks: m.payload.chunks.length,
      releaseSeconds: releaseS,
      xzSeconds: xzT,
      applySeconds: applyT,
      streamSeconds: streamT,
      ratio: median(applyT) / median(xzT),
      streamRatio: median(streamT) / median(xzT),
    };
    process.stdout.write(
      [
        `payload: ${m.payload.size} B xz (level ${values['xz-level']}, ${m.payload.chunks.length} chunks) of a ${m.image.size} B USR image; release took ${releaseS.toFixed(1)} s`,
        `xz -dc payload > slot : median ${median(xzT).toFixed(2)} s (${(mb / median(xzT)).toFixed(0)} MB/s)  runs ${xzT.map((x) => x.toFixed(2)).join(' ')}`,
        `basalt apply (full)   : median ${median(applyT).toFixed(2)} s (${(mb / median(applyT)).toFixed(0)} MB/s)  runs ${applyT.map((x) => x.toFixed(2)).join(' ')}`,
        `  of which download+verify+write: median ${median(streamT).toFixed(2)} s`,
        `ratio apply / xz: ${res.ratio.toFixed(2)}   (download+write / xz: ${res.streamRatio.toFixed(2)})`,
        JSON.stringify(res),
        '',
      ].join('\n'),
    );
    } finally {
      await srv.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`update-apply bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

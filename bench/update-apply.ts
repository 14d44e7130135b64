/**
 * Update apply bench: Basalt's engine applying a release payload (HTTP on
 * loopback from `basalt serve` in a worker thread, per-chunk SHA-256 against
 * the signed manifest, decoding, write into the inactive slot of a disk image,
 * the image's SHA-256, fdatasync) against `cat payload > slot && sha256sum
 * slot` on the same payload file, alternated in the same run. Prints the
 * medians, the throughput of each and their ratio (the physical limit of a
 * verified write is the cat + sha256sum line). The disk images are made
 * before the runs, and a first round of both is a warm-up, not counted.
 *
 *   npm run bench:apply -- [--usr USR.img] [--mib 48] [--reps 5] [--payload-format 2]
 *
 * --usr takes a built USR image (out/usr.img, with its usr.img.json), the
 * default image's payload; without it a synthetic squashfs of --mib MiB is made.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { run } from '../common/src/exec.js';
import { generateKey, readPrivateKeyFile } from '../update-engine/src/publish/keys.js';
import { release } from '../update-engine/src/publish/repo.js';
import { parseUsrImageInfo } from '../common/src/contracts.js';
import { applyOnce, sealUsr, benchDisk, median, serveInWorker } from './harness.js';
import type { PayloadFormat } from '../update-engine/src/format/metadata.js';

/** A synthetic USR image: squashfs (gzip) of some incompressible and mostly compressible files, dm-verity appended. */
async function syntheticUsr(dir: string, version: string, mib: number): Promise<string> {
  const tree = join(dir, `tree-${version}`);
  await mkdir(join(tree, 'lib/basalt/boot'), { recursive: true });
  await writeFile(join(tree, 'lib/basalt/boot/vmlinuz'), randomBytes(4 << 20));
  await writeFile(join(tree, 'lib/basalt/boot/initrd'), randomBytes(2 << 20));
  await writeFile(join(tree, 'blob'), randomBytes(Math.floor((mib << 20) * 0.3)));
  const words = Array.from({ length: 4096 }, (_, i) => `lib${i.toString(36)}.so.${i % 7} `).join('');
  await writeFile(join(tree, 'text'), words.repeat(Math.ceil(((mib << 20) * 0.7) / words.length)));
  const img = join(dir, `usr-${version}.img`);
  await run('mksquashfs', [tree, img, '-comp', 'gzip', '-all-root', '-noappend', '-quiet', '-no-progress', '-processors', '1']);
  return sealUsr(img, version);
}

/** A copy of a built USR image (and its usr.img.json, version set to 2.0.0 so a 1.0.0 machine takes it). */
async function builtUsr(dir: string, usr: string): Promise<string> {
  const side = `${usr}.json`;
  const sideAlt = join(usr, '..', 'usr.img.json');
  const sidePath = existsSync(side) ? side : existsSync(sideAlt) ? sideAlt : undefined;
  if (!sidePath) throw new Error(`${usr}: no usr.img.json beside it (the builder writes one)`);
  const info = parseUsrImageInfo(JSON.parse(await readFile(sidePath, 'utf8')), sidePath);
  const img = join(dir, 'usr-2.0.0.img');
  await copyFile(usr, img);
  await writeFile(`${img}.json`, JSON.stringify({ ...info, version: '2.0.0' }));
  return img;
}

/** `cat payload > slot && sha256sum slot`, timed (seconds). */
async function catSha(payload: string, slot: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run('sh', ['-c', 'cat "$1" > "$2" && sha256sum "$2" > /dev/null', 'sh', payload, slot]);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  await rm(slot);
  return s;
}

async function main() {
  const { values } = parseArgs({ options: { usr: { type: 'string' }, mib: { type: 'string', default: '48' }, reps: { type: 'string', default: '5' }, 'payload-format': { type: 'string', default: '2' } } });
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps: '${values.reps}' is not a positive integer`);
  if (values['payload-format'] !== '1' && values['payload-format'] !== '2') throw new Error(`--payload-format: '${values['payload-format']}' is not 1 or 2`);
  const format = Number(values['payload-format']) as PayloadFormat;
  const dir = await mkdtemp(join(tmpdir(), 'basalt-bench-'));
  try {
    const k = await generateKey('bench', undefined);
    await writeFile(join(dir, 'release.key'), k.privateArmored);
    await mkdir(join(dir, 'ring'));
    await writeFile(join(dir, 'ring/k.asc'), k.publicArmored);
    const key = await readPrivateKeyFile(join(dir, 'release.key'));
    const img = values.usr ? await builtUsr(dir, values.usr) : await syntheticUsr(dir, '2.0.0', Number(values.mib));
    const repo = join(dir, 'repo');
    const t0 = process.hrtime.bigint();
    const r = await release({ usr: img, version: '2.0.0', channel: 'stable', key, repo, now: new Date(), expiresMs: 86_400_000, payloadFormat: format });
    const releaseS = Number(process.hrtime.bigint() - t0) / 1e9;
    const m = r.manifest;
    const payload = join(repo, 'payloads/2.0.0', m.payload.file);
    const srv = await serveInWorker(repo, join(dir, 'ev.jsonl'));
    try {
      const catT: number[] = [];
      const applyT: number[] = [];
      const streamT: number[] = [];
      // Every disk image is made first and the page cache written back, so no run waits on another's setup.
      const disks: string[] = [];
      for (let i = 0; i <= reps; i++) disks.push(await benchDisk(dir, i));
      await run('sync', []);
      // Round 0 warms up both (JIT, page cache of the payload) and is not counted.
      for (let i = 0; i <= reps; i++) {
        const c = await catSha(payload, join(dir, 'slot.raw'));
        const a = await applyOnce(disks[i]!, srv.url, join(dir, 'ring'), dir);
        await rm(disks[i]!);
        await rm(`${disks[i]!}.state`, { recursive: true });
        if (i === 0) continue;
        catT.push(c);
        applyT.push(a.whole);
        streamT.push(a.stream);
      }
      const mb = m.image.size / 1e6;
      const rate = (s: number) => `${(mb / s).toFixed(0)} MB/s`;
      const runs = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
      const kinds = m.formatVersion === 2 ? `${m.payload.chunks.filter((c) => c.compression === 'none').length} stored + ${m.payload.chunks.filter((c) => c.compression === 'zstd').length} zstd` : 'xz';
      const res = {
        usr: values.usr ?? `synthetic ${values.mib} MiB`,
        payloadFormat: m.formatVersion,
        imageBytes: m.image.size,
        payloadBytes: m.payload.size,
        chunks: m.payload.chunks.length,
        releaseSeconds: releaseS,
        catSha256sumSeconds: catT,
        applySeconds: applyT,
        streamSeconds: streamT,
        /** Throughput of the engine's download+verify+write over cat + sha256sum's (1 = the physical limit). */
        ratio: median(catT) / median(streamT),
        fullApplyRatio: median(catT) / median(applyT),
      };
      process.stdout.write(
        [
          `payload: format ${m.formatVersion}, ${m.payload.size} B (${m.payload.chunks.length} chunks: ${kinds}) of a ${m.image.size} B USR image (${res.usr}); release took ${releaseS.toFixed(1)} s`,
          `cat payload > slot && sha256sum slot : median ${median(catT).toFixed(2)} s (${rate(median(catT))})  runs ${runs(catT)}`,
          `basalt apply: download+verify+write : median ${median(streamT).toFixed(2)} s (${rate(median(streamT))})  runs ${runs(streamT)}`,
          `basalt apply: whole update          : median ${median(applyT).toFixed(2)} s (${rate(median(applyT))})  runs ${runs(applyT)}  (+ check, manifest, GPT, kernel/initrd to the ESP)`,
          `throughput ratio apply / (cat + sha256sum): ${res.ratio.toFixed(2)}   (whole update: ${res.fullApplyRatio.toFixed(2)})`,
          JSON.stringify(res),
          '',
        ].join('\n'),
      );
    } finally {
      await srv.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`update-apply bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

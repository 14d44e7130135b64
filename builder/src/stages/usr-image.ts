/**
 * Stage 4b, USR image: a deterministic squashfs (or erofs) image of /usr with
 * its dm-verity hash tree appended in the same file:
 *
 *   [ filesystem | zero padding to 4096 | verity superblock + hash tree ]
 *   0            fsBytes                 hashOffset
 *
 * Writes usr.img and usr.img.json (format 1). One image per slot is the update
 * payload. No loop device, no device-mapper: veritysetup works on the file.
 */
import { createHash } from 'node:crypto';
import { stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseUsrImageInfo, USR_INFO_FORMAT, type UsrImageInfo } from '../../../common/src/contracts.js';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { sha256, stageDir, type BuildContext, type Stage } from '../context.js';
import { BUILD_ERRORS } from '../errors.js';
import { hashFileInto } from '../fsutil.js';

/** Pure: mksquashfs argv. Owners are kept as they are in the tree (we build as root). */
export function mksquashfsArgs(src: string, dest: string, u: BuildContext['profile']['usr'], epoch: number): string[] {
  const comp = ['-comp', u.compression];
  if (u.compression === 'zstd' && u.level) comp.push('-Xcompression-level', String(u.level));
  if (u.compression === 'gzip' && u.level) comp.push('-Xcompression-level', String(Math.min(9, u.level)));
  if (u.compression === 'xz') comp.push('-Xbcj', 'x86');
  // -quiet keeps the progress bar alone on stdout (squashfsProgress reads it).
  return [src, dest, '-noappend', ...comp, '-b', String(u.blockSize), '-mkfs-time', String(epoch), '-all-time', String(epoch), '-quiet'];
}

/** Pure: the last state of mksquashfs's progress bar in `text` ("[===|  ] 1234/5678  21%"). */
export function squashfsProgress(text: string): { done: number; total: number; percent: number } | undefined {
  const all = [...text.matchAll(/\]\s+(\d+)\/(\d+)\s+(\d+)%/g)];
  const m = all.at(-1);
  return m ? { done: Number(m[1]), total: Number(m[2]), percent: Number(m[3]) } : undefined;
}

export function mkerofsArgs(src: string, dest: string, u: BuildContext['profile']['usr'], epoch: number, uuid: string): string[] {
  return [`-z${u.compression}`, `-T${epoch}`, `-U${uuid}`, dest, src];
}

/** Pure: the hash-tree offset for a filesystem of `fsBytes` (rounded up to 4096). */
export function hashOffsetFor(fsBytes: number): number {
  return Math.ceil(fsBytes / 4096) * 4096;
}

export function parseRootHash(veritysetupOut: string): string {
  const m = /Root hash:\s*([0-9a-f]{64})/.exec(veritysetupOut);
  if (!m) throw new BasaltError(BUILD_ERRORS.E_VERITY, 'veritysetup format printed no root hash', { details: { out: veritysetupOut } });
  return m[1]!;
}

/** A UUID derived from a hex digest (deterministic). */
export function uuidFrom(hex: string): string {
  const h = hex.slice(0, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Pure: the text of usr.img.json. */
export function usrInfoJson(info: UsrImageInfo): string {
  return JSON.stringify(info, null, 2) + '\n';
}

/**
 * Appends the dm-verity hash tree to `img` at `hashOffset` (the filesystem is
 * already padded to it); returns the root hash. The caller passes the
 * filesystem's SHA-256 as the salt, and the UUID comes from it: the same tree
 * gives the same image.
 */
async function appendVerity(img: string, hashOffset: number, salt: string, signal: AbortSignal): Promise<string> {
  const r = await run(
    'veritysetup',
    ['format', '--hash=sha256', '--data-block-size=4096', '--hash-block-size=4096', `--data-blocks=${hashOffset / 4096}`, `--hash-offset=${hashOffset}`, `--salt=${salt}`, `--uuid=${uuidFrom(salt)}`, img, img],
    { signal },
  );
  return parseRootHash(r.stdout);
}

export const usrImageStage: Stage<'usr-image'> = {
  name: 'usr-image',
  title: 'USR image (squashfs + dm-verity)',
  version: 1,
  async inputs(ctx) {
    return { usr: ctx.profile.usr, epoch: ctx.profile.sourceDateEpoch, version: ctx.profile.os.version, board: ctx.profile.board };
  },
  async run(ctx: BuildContext, out: string) {
    const p = ctx.profile;
    const src = join(stageDir(ctx, 'layer'), 'usr');
    const img = join(out, 'usr.img');
    if (p.usr.fs === 'squashfs') {
      let last = -1;
      await run('mksquashfs', mksquashfsArgs(src, img, p.usr, p.sourceDateEpoch), {
        signal: ctx.signal,
        onOutput: (text, stream) => {
          const at = stream === 'stdout' ? squashfsProgress(text) : undefined;
          if (at && at.percent !== last) {
            last = at.percent;
            ctx.progress?.(`squashfs ${p.usr.compression}${p.usr.level ? ` level ${p.usr.level}` : ''}: ${at.percent} % (${at.done}/${at.total} blocks)`);
          }
        },
      });
    } else {
      await run('mkfs.erofs', mkerofsArgs(src, img, p.usr, p.sourceDateEpoch, uuidFrom(sha256(`${p.os.id}:${p.os.version}:usr`))), { signal: ctx.signal });
    }
    const fsBytes = (await stat(img)).size;
    const hashOffset = hashOffsetFor(fsBytes);
    await truncate(img, hashOffset);
    ctx.progress?.(`${p.usr.verity ? 'dm-verity hash tree and ' : ''}SHA-256 of ${(hashOffset / 1e6).toFixed(1)} MB`);
    // One read of the image: the filesystem's SHA-256 is the verity salt, and the
    // same hash, fed the appended tree, the whole image's.
    const h = await hashFileInto(createHash('sha256'), img);
    const salt = p.usr.verity ? h.copy().digest('hex') : '';
    const rootHash = p.usr.verity ? await appendVerity(img, hashOffset, salt, ctx.signal) : '';
    const sha = (await hashFileInto(h, img, hashOffset)).digest('hex');
    const info: UsrImageInfo = {
      formatVersion: USR_INFO_FORMAT,
      fsType: p.usr.fs,
      fsBytes,
      hashOffset,
      rootHash,
      salt,
      version: p.os.version,
      board: p.board,
      kernel: '/lib/basalt/boot/vmlinuz',
      initrd: '/lib/basalt/boot/initrd',
      imageBytes: (await stat(img)).size,
      sha256: sha,
    };
    await writeFile(join(out, 'usr.img.json'), usrInfoJson(info));
    return { facts: info };
  },
  readFacts(json, where) {
    return parseUsrImageInfo(json, where);
  },
};

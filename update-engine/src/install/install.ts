/**
 * `basalt install`, as flatcar-install: check everything first (platform id,
 * cloud-config, target, the image against its manifest.json), then write.
 * Nothing is written before every check passed.
 *
 * - Image file target: the image is copied (sparse) to TARGET.tmp-PID beside
 *   it, edited there, fsynced and renamed over TARGET.
 * - Block device target: refused when it or a partition of it is mounted, or
 *   holds the running system; the image's data is written in place, 1 MiB
 *   block by block, skipping the blocks that are holes or zeros in the image
 *   (an 8 GiB disk with 200 MB in it writes 200 MB: what the image leaves
 *   zero is free space of its file systems or unpartitioned, never read
 *   as data), fsynced, then edited.
 * - A compressed image (IMAGE.zst, as the live ISO carries it) is first
 *   expanded into a sparse file in a temporary folder, no larger than its
 *   manifest's raw artifact says; its sparse digest and data blocks are taken
 *   as the blocks go by, so the expanded file (on a live system's tmpfs, where
 *   filefrag finds no extents) is not read again to be verified or copied.
 * - The cloud-config goes where the first boot finds it: the OEM-CONFIG
 *   partition becomes a vfat file system labelled config-2 holding
 *   openstack/latest/user_data, which udev starts
 *   basalt-cloudinit-configdrive.service for (the config-drive path every
 *   Basalt image has).
 * - The platform id goes on the boot entries' options line on EFI-SYSTEM
 *   (`basalt.oem.id=P`, edited with mtools); an update carries the booted
 *   entry's extra words over, so it stays.
 *
 * Side effects: reads the image, writes the target, runs cp/dd, mkfs.vfat,
 * mtools, lsblk; temporary files under os.tmpdir().
 */
import { constants } from 'node:fs';
import { mkdtemp, open, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { syncDir } from '../../../common/src/fsutil.js';
import { partitionRange, readGpt, type Gpt, type Partition } from '../../../common/src/gpt/index.js';
import { copyData, sparseSha256, SparseHasher, SPARSE_BLOCK } from '../../../common/src/sparse.js';
import { PLATFORM_IDS } from '../../../common/src/platform.js';
import { MtoolsEsp } from '../host/esp.js';
import { INSTALL_ERRORS } from './errors.js';
import { busyReason, entryWithPlatform, parseMounts, rawArtifact, type LsblkDevice } from './plan.js';

export interface InstallOptions {
  /** Block device or image file to write. */
  target: string;
  /** The raw disk image basalt build wrote (or it zstd-compressed, IMAGE.zst): a path, or an http(s) URL (-u). */
  image: string;
  /** Its manifest.json (default: beside the image). */
  manifest?: string | undefined;
  /**
   * OpenPGP public keys (a file or a folder of *.asc) the manifest's detached
   * signature (MANIFEST.sig) must verify with. Given, or with a URL image, the
   * signature is required (default keyring: the running image's release keys).
   */
  keyring?: string | undefined;
  /**
   * -C: install the release a channel of an update repository is at (its
   * disk image, published by `basalt release --image`), verified with TUF
   * from `tufRoot` (default the running image's root.json). `image` is then
   * the repository's URL.
   */
  channel?: string | undefined;
  tufRoot?: string | undefined;
  /** A cloud-config file for the first boot. */
  cloudConfig?: string | undefined;
  /** The platform id to put on the kernel command line. */
  platform?: string | undefined;
  /** /proc/self/mounts (tests pass another). */
  mountsFile?: string;
  progress?: (line: string) => void;
}

export interface InstallResult {
  target: string;
  /** The fingerprint of the key whose signature on the manifest verified, or null when none was checked. */
  signedBy: string | null;
  kind: 'file' | 'device';
  bytes: number;
  sha256: string;
  platform: string | null;
  cloudConfig: string | null;
}

/** Everything checked, nothing written: what `write` needs. */
interface Checked {
  kind: 'file' | 'device';
  bytes: number;
  sha256: string;
  userData: Buffer | null;
  /** The image to write: the one given, or a downloaded or compressed one, expanded, in a temporary folder. */
  image: string;
  signedBy: string | null;
  /** An expanded image's data blocks (SPARSE_BLOCK), recorded while expanding it. */
  blocks?: number[];
}

/** The release keys a Basalt image ships (update.keys), what -u verifies a manifest's signature with by default. */
export const DEFAULT_INSTALL_KEYRING = '/usr/share/basalt/keys';
/** Caps of the small files a download reads. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_SIGNATURE_BYTES = 64 * 1024;

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/**
 * The manifest's detached signature (MANIFEST.sig), verified with the keyring.
 * Required when a keyring is given or the image came from a URL; otherwise
 * checked when both the signature and the default keyring are there.
 */
async function checkSignature(manifestPath: string, shown: string, keyring: string | undefined, required: boolean): Promise<string | null> {
  const sigPath = `${manifestPath}.sig`;
  const sig = await readFile(sigPath).catch(() => null);
  const ringPath = keyring ?? DEFAULT_INSTALL_KEYRING;
  if (!sig) {
    if (required) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_SIGNATURE, `${shown}.sig: no signature of the manifest; nothing written`);
    return null;
  }
  if (!required && !(await stat(ringPath).then(() => true, () => false))) return null;
  const { loadKeyring, verifyDetached } = await import('../format/signature.js');
  const ring = await loadKeyring(ringPath);
  try {
    return await verifyDetached(new Uint8Array(await readFile(manifestPath)), new Uint8Array(sig), ring, shown);
  } catch (e) {
    throw new BasaltError(INSTALL_ERRORS.E_INSTALL_SIGNATURE, `${shown}: ${(e as Error).message}; nothing written`);
  }
}

/**
 * Downloads the disk image of the release a channel is at: the repository's
 * TUF metadata refreshed from the trusted root (in a scratch state folder),
 * the channel's release in the verified targets, then its image and build
 * manifest (payloads/<v>/image/), each capped at its signed length and
 * checked against its signed SHA-256.
 */
async function downloadFromChannel(o: InstallOptions, channel: string, dir: string): Promise<{ image: string; manifestPath: string; signedBy: string }> {
  const { refreshTrust } = await import('../trust/client.js');
  const { channelRelease, checkBytes } = await import('../trust/decide.js');
  const { downloadFile, httpClient, requestBytes } = await import('../../../common/src/http.js');
  const { silentLogger } = await import('../../../common/src/log.js');
  const { TUF_ROOT_PATH } = await import('../../../common/src/contracts.js');
  const repo = o.image.endsWith('/') ? o.image : `${o.image}/`;
  const fail = (e: unknown) => new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${(e as Error).message}; nothing written`);
  o.progress?.(`refreshing the TUF metadata of ${repo}`);
  let targets;
  try {
    targets = await refreshTrust({ stateDir: join(dir, 'tuf'), initialRoot: o.tufRoot ?? TUF_ROOT_PATH, metadataUrl: new URL('metadata/', repo).toString(), log: silentLogger });
  } catch (e) {
    throw new BasaltError(INSTALL_ERRORS.E_INSTALL_SIGNATURE, `${(e as Error).message}; nothing written`);
  }
  const rel = channelRelease(targets, channel);
  const ofKind = (kind: string) => [...targets.targets.values()].find((t) => t.basalt['kind'] === kind && t.basalt['version'] === rel.version);
  const img = ofKind('image');
  const man = ofKind('image-manifest');
  if (!img || !man) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `channel ${channel} is at ${rel.version}, which has no disk image in ${repo} (publish one with 'basalt release --image'); nothing written`);
  const client = httpClient({ connectMs: 30_000, stallMs: 90_000 });
  const manifestPath = join(dir, 'manifest.json');
  const mUrl = new URL(man.path, repo).toString();
  const m = await requestBytes(client, mUrl, { maxBytes: man.length }).catch((e: unknown) => {
    throw fail(e);
  });
  if (m.status !== 200) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${mUrl}: HTTP ${m.status}; nothing written`);
  checkBytes(m.body, man, mUrl);
  await writeFile(manifestPath, m.body);
  const image = join(dir, basename(img.path));
  const iUrl = new URL(img.path, repo).toString();
  o.progress?.(`downloading ${iUrl} (${channel} ${rel.version})`);
  await downloadFile(client, iUrl, image, { maxBytes: img.length }).catch((e: unknown) => {
    throw fail(e);
  });
  if ((await plainSha256(image)) !== img.sha256) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_SIGNATURE, `${iUrl}: not the signed target ${img.path} (sha256 differs); nothing written`);
  return { image, manifestPath, signedBy: `TUF, ${channel} ${rel.version}, targets v${targets.version}` };
}

/**
 * Downloads an image from a URL into `dir`: first manifest.json beside it
 * (or -m) and its signature, verified before the image is asked for; then the
 * image, capped at the size the manifest gives (a compressed image's too).
 */
async function downloadImage(o: InstallOptions, dir: string): Promise<{ image: string; manifestPath: string; signedBy: string | null }> {
  const { downloadFile, httpClient, requestBytes } = await import('../../../common/src/http.js');
  const client = httpClient({ connectMs: 30_000, stallMs: 90_000 });
  const url = new URL(o.image);
  const name = basename(decodeURIComponent(url.pathname));
  if (!name) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${o.image}: names no file`);
  const manifestUrl = o.manifest ?? new URL('manifest.json', url).toString();
  const manifestPath = join(dir, 'manifest.json');
  const get = async (u: string, max: number) => {
    try {
      return await requestBytes(client, u, { maxBytes: max });
    } catch (e) {
      throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${(e as Error).message}; nothing written`);
    }
  };
  o.progress?.(`downloading ${manifestUrl}`);
  const m = await get(manifestUrl, MAX_MANIFEST_BYTES);
  if (m.status !== 200) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${manifestUrl}: HTTP ${m.status}; nothing written`);
  await writeFile(manifestPath, m.body);
  const sg = await get(`${manifestUrl}.sig`, MAX_SIGNATURE_BYTES);
  if (sg.status === 200) await writeFile(`${manifestPath}.sig`, sg.body);
  else if (sg.status !== 404) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${manifestUrl}.sig: HTTP ${sg.status}; nothing written`);
  const signedBy = await checkSignature(manifestPath, manifestUrl, o.keyring, true);
  const art = rawArtifact(await readManifest(manifestPath), artifactName(name), manifestUrl);
  const image = join(dir, name);
  o.progress?.(`downloading ${o.image}`);
  try {
    // A compressed image is never much larger than the image (zstd's frames add bytes per 128 KiB block at most).
    await downloadFile(client, o.image, image, { maxBytes: name.endsWith('.zst') ? art.bytes + Math.ceil(art.bytes / 1024) + 1024 * 1024 : art.bytes });
  } catch (e) {
    throw new BasaltError(INSTALL_ERRORS.E_INSTALL_DOWNLOAD, `${(e as Error).message}; nothing written`);
  }
  return { image, manifestPath, signedBy };
}

async function checkPlatform(p: string | undefined): Promise<void> {
  if (p === undefined) return;
  if (!(PLATFORM_IDS as readonly string[]).includes(p)) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_PLATFORM, `-o ${p}: not a platform Basalt knows`);
}

async function checkCloudConfig(path: string | undefined): Promise<Buffer | null> {
  if (path === undefined) return null;
  const data = await readFile(path).catch((e: unknown) => {
    throw fsError(e, path, 'read the cloud-config');
  });
  const { validateUserData } = await import('../../../cloudinit/src/validate/validate.js');
  const report = validateUserData(new Uint8Array(data));
  const errors = report.entries.filter((e) => e.kind === 'error');
  if (errors.length > 0) {
    const e = errors[0]!;
    throw new BasaltError(INSTALL_ERRORS.E_INSTALL_CONFIG, `${path}: line ${e.line}: ${e.message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`);
  }
  return data;
}

async function checkTarget(target: string, image: string | undefined, mountsFile: string): Promise<'file' | 'device'> {
  const st = await stat(target).catch(() => null);
  if (st === null) {
    const dir = await stat(dirname(resolve(target))).catch(() => null);
    if (!dir?.isDirectory()) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_TARGET, `${target}: its folder ${dirname(resolve(target))} does not exist`);
    return 'file';
  }
  if (st.isFile()) {
    const same = image !== undefined && (await realpath(target)) === (await realpath(image).catch(() => ''));
    if (same) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_TARGET, `${target}: is the image itself`);
    return 'file';
  }
  if (!st.isBlockDevice()) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_TARGET, `${target}: neither a block device nor a regular file`);
  const real = await realpath(target);
  const mounts = parseMounts(await readFile(mountsFile, 'utf8'));
  let tree: LsblkDevice | undefined;
  const l = await run('lsblk', ['--json', '--paths', '--output', 'NAME,PATH,MOUNTPOINTS', real], { reject: false }).catch(() => null);
  if (l?.exitCode === 0) tree = (JSON.parse(l.stdout) as { blockdevices?: LsblkDevice[] }).blockdevices?.[0];
  const why = busyReason([target, real], mounts, tree);
  if (why) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_TARGET_BUSY, `${target}: ${why}; nothing written`);
  return 'device';
}

/** The image's name as its manifest lists it (a compressed image's without .zst). */
const artifactName = (image: string) => basename(image).replace(/\.zst$/, '');

async function readManifest(manifestPath: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (e) {
    throw new BasaltError(INSTALL_ERRORS.E_INSTALL_MANIFEST, `${manifestPath}: ${(e as Error).message}`);
  }
}

/**
 * Expands IMAGE.zst into a sparse file in `dir` (all-zero blocks left as
 * holes), refusing more than `maxBytes` (the raw artifact's size).
 */
async function expandImage(image: string, maxBytes: number, dir: string, shown = image): Promise<Expanded> {
  const { createReadStream } = await import('node:fs');
  const { createZstdDecompress } = await import('node:zlib');
  const out = join(dir, artifactName(image));
  const fh = await open(out, 'w');
  const zero = Buffer.alloc(SPARSE_BLOCK);
  const block = Buffer.alloc(SPARSE_BLOCK);
  // The blocks written and their sparse digest, as they go by: the expanded file (on the live
  // system's tmpfs, where filefrag finds no extents) is not read again to verify or copy it.
  const hasher = new SparseHasher(maxBytes);
  const blocks: number[] = [];
  let fill = 0;
  let at = 0;
  const flush = async () => {
    if (fill > 0 && !block.subarray(0, fill).equals(zero.subarray(0, fill))) {
      let done = 0;
      while (done < fill) done += (await fh.write(block, done, fill - done, at + done)).bytesWritten;
      hasher.block(at, block.subarray(0, fill));
      blocks.push(at / SPARSE_BLOCK);
    }
    at += fill;
    fill = 0;
  };
  try {
    // Chunks of a whole block: an 8 GiB image comes out in 8192 chunks instead of 524,288 of
    // 16 KiB (3.1 s against 9.6 s here; the gap is larger under emulation).
    for await (const c of createReadStream(image, { highWaterMark: SPARSE_BLOCK }).pipe(createZstdDecompress({ chunkSize: SPARSE_BLOCK }))) {
      const chunk = c as Buffer;
      if (at + fill + chunk.length > maxBytes) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_VERIFY, `${shown}: expands to more than the ${maxBytes} bytes its manifest says; nothing written`);
      let off = 0;
      while (off < chunk.length) {
        const n = chunk.copy(block, fill, off, Math.min(chunk.length, off + SPARSE_BLOCK - fill));
        fill += n;
        off += n;
        if (fill === SPARSE_BLOCK) await flush();
      }
    }
    await flush();
    await fh.truncate(at);
  } catch (e) {
    if (e instanceof BasaltError) throw e;
    throw new BasaltError(INSTALL_ERRORS.E_INSTALL_VERIFY, `${shown}: not a zstd-compressed image (${(e as Error).message}); nothing written`);
  } finally {
    await fh.close();
  }
  return { path: out, blocks, sparseSha256: hasher.digest() };
}

/** An expanded image: its path, the SPARSE_BLOCK blocks that hold data, and its sparse digest if it is as long as its manifest says. */
interface Expanded {
  path: string;
  blocks: number[];
  sparseSha256: string;
}

async function verifyImage(image: string, manifestPath: string, manifest: unknown, shown = image, expanded?: Expanded): Promise<{ bytes: number; sha256: string }> {
  const art = rawArtifact(manifest, artifactName(image), manifestPath);
  const size = (await stat(image).catch((e: unknown) => {
    throw fsError(e, shown, 'read the image');
  })).size;
  if (size !== art.bytes) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_VERIFY, `${shown}: ${size} bytes, ${manifestPath} says ${art.bytes}; nothing written`);
  if (art.digest !== undefined && art.digest !== 'sparse-sha256') throw new BasaltError(INSTALL_ERRORS.E_INSTALL_MANIFEST, `${manifestPath}: digest kind ${art.digest} is not one this installer checks`);
  // The size was checked above, so the digest made while expanding is the file's.
  const got = art.digest === 'sparse-sha256' ? (expanded?.sparseSha256 ?? (await sparseSha256(image))) : await plainSha256(image);
  if (got !== art.sha256) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_VERIFY, `${shown}: digest ${got} differs from ${art.sha256} in ${manifestPath}; nothing written`);
  return { bytes: size, sha256: got };
}

async function plainSha256(path: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  const { createReadStream } = await import('node:fs');
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** The checks, in order; throws the first failure. Reads only (a compressed image is expanded into `scratch`). */
async function check(o: InstallOptions, scratch: string): Promise<Checked> {
  await checkPlatform(o.platform);
  const userData = await checkCloudConfig(o.cloudConfig);
  const kind = await checkTarget(o.target, isUrl(o.image) ? undefined : o.image, o.mountsFile ?? '/proc/self/mounts');
  let image = o.image;
  let manifestPath = o.manifest ?? join(dirname(o.image), 'manifest.json');
  let signedBy: string | null;
  if (o.channel !== undefined) {
    const dl = await mkdtemp(join(scratch, 'download-'));
    ({ image, manifestPath, signedBy } = await downloadFromChannel(o, o.channel, dl));
  } else if (isUrl(o.image)) {
    const dl = await mkdtemp(join(scratch, 'download-'));
    ({ image, manifestPath, signedBy } = await downloadImage(o, dl));
  } else signedBy = await checkSignature(manifestPath, manifestPath, o.keyring, o.keyring !== undefined);
  const manifest = await readManifest(manifestPath);
  let expanded: Expanded | undefined;
  if (image.endsWith('.zst')) {
    o.progress?.(`expanding ${o.image}`);
    expanded = await expandImage(image, rawArtifact(manifest, artifactName(image), manifestPath).bytes, scratch, o.image);
    image = expanded.path;
  }
  o.progress?.(`verifying ${o.image} against its manifest`);
  const v = await verifyImage(image, manifestPath, manifest, o.image, expanded);
  await checkImageParts(image, o, o.image);
  if (kind === 'device') {
    const r = await run('blockdev', ['--getsize64', o.target]);
    if (Number(r.stdout.trim()) < v.bytes) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_TOO_SMALL, `${o.target}: ${r.stdout.trim()} bytes, the image needs ${v.bytes}`);
  }
  return { kind, ...v, userData, image, signedBy, ...(expanded ? { blocks: expanded.blocks } : {}) };
}

/** The partition labelled `label` of `disk`; E_INSTALL_IMAGE naming the disk when it has none. */
function partOf(gpt: Gpt, disk: string, label: string, what: string): Partition {
  const p = gpt.partitions.find((x) => x.label === label);
  if (!p) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_IMAGE, `${disk}: no ${label} partition for ${what}; nothing written`);
  return p;
}

/** The image has the partitions (and boot entries) the edits need. Reads only. */
async function checkImageParts(image: string, o: InstallOptions, shown: string): Promise<void> {
  const gpt = await readGpt(image);
  if (o.cloudConfig !== undefined) partOf(gpt, shown, 'OEM-CONFIG', 'the cloud-config');
  if (o.platform !== undefined) {
    const esp = new MtoolsEsp(image, partitionRange(gpt, partOf(gpt, shown, 'EFI-SYSTEM', 'the platform id')).offset);
    if ((await esp.list('/loader/entries')).filter((n) => n.endsWith('.conf')).length === 0) {
      throw new BasaltError(INSTALL_ERRORS.E_INSTALL_IMAGE, `${shown}: no boot entries in /loader/entries on EFI-SYSTEM for the platform id; nothing written`);
    }
  }
}

/** Writes `data` at byte `offset` of `path`, then fsyncs. */
async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, constants.O_WRONLY);
  try {
    let done = 0;
    while (done < data.length) done += (await fh.write(data, done, data.length - done, offset + done)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The OEM-CONFIG partition as a config drive (vfat, label config-2) holding the user data. */
async function writeConfigDrive(disk: string, userData: Buffer): Promise<void> {
  const gpt = await readGpt(disk);
  const { offset, length } = partitionRange(gpt, partOf(gpt, disk, 'OEM-CONFIG', 'the cloud-config'));
  const dir = await mkdtemp(join(tmpdir(), 'basalt-install-'));
  try {
    const img = join(dir, 'config-2.vfat');
    const ud = join(dir, 'user_data');
    await writeFile(ud, userData);
    await run('mkfs.vfat', ['-C', '-n', 'config-2', img, String(Math.floor(length / 1024))]);
    const env = { MTOOLS_SKIP_CHECK: '1' };
    await run('mmd', ['-i', img, '::/openstack', '::/openstack/latest'], { env });
    await run('mcopy', ['-i', img, ud, '::/openstack/latest/user_data'], { env });
    await writeAt(disk, offset, await readFile(img));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Puts basalt.oem.id=P on every boot entry of the disk's EFI-SYSTEM (entryWithPlatform, edited in place with mtools). */
async function writePlatform(disk: string, id: string): Promise<void> {
  const gpt = await readGpt(disk);
  const esp = new MtoolsEsp(disk, partitionRange(gpt, partOf(gpt, disk, 'EFI-SYSTEM', 'the platform id')).offset);
  const entries = (await esp.list('/loader/entries')).filter((n) => n.endsWith('.conf'));
  if (entries.length === 0) throw new BasaltError(INSTALL_ERRORS.E_INSTALL_IMAGE, `${disk}: no boot entries in /loader/entries on EFI-SYSTEM`);
  for (const name of entries) {
    const path = `/loader/entries/${name}`;
    const text = await esp.read(path);
    if (text !== undefined) await esp.write(path, entryWithPlatform(text, id));
  }
}

/** Checks, then writes the image, the cloud-config and the platform id to the target. */
export async function install(o: InstallOptions): Promise<InstallResult> {
  const scratch = await mkdtemp(join(tmpdir(), 'basalt-install-image-'));
  try {
    return await checkAndWrite(o, scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function checkAndWrite(o: InstallOptions, scratch: string): Promise<InstallResult> {
  const c = await check(o, scratch);
  const out: InstallResult = { target: o.target, kind: c.kind, bytes: c.bytes, sha256: c.sha256, signedBy: c.signedBy, platform: o.platform ?? null, cloudConfig: o.cloudConfig ?? null };
  const edit = async (disk: string) => {
    if (c.userData) await writeConfigDrive(disk, c.userData);
    if (o.platform) await writePlatform(disk, o.platform);
  };
  if (c.kind === 'device') {
    o.progress?.(`writing ${o.image} to ${o.target}`);
    await copyData(c.image, o.target, undefined, c.blocks);
    await edit(o.target);
    return out;
  }
  const tmp = `${resolve(o.target)}.tmp-${process.pid}`;
  try {
    o.progress?.(`copying ${o.image} to ${tmp}`);
    await run('cp', ['--sparse=always', '--no-preserve=all', c.image, tmp]);
    await edit(tmp);
    const fh = await open(tmp, 'r+');
    await fh.sync();
    await fh.close();
    await rename(tmp, o.target);
    await syncDir(dirname(resolve(o.target)));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return out;
}

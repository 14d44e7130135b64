/** `basalt build`: profile in, bootable A/B disk images and a manifest out. */
import { parse } from '../../common/src/cli/args.js';
import type { CommandContext } from '../../common/src/cli/types.js';
import { UsageError } from '../../common/src/errors.js';
import { defaultProfilePath, loadProfile, profileYaml } from '../../configs/src/profile.js';
import { formatReport } from '../../configs/src/report.js';
import { defaultCacheDir, repoRootDir } from './context.js';
import { build } from './pipeline.js';
import { parsePlatforms } from './platforms.js';

export const help = `Usage: basalt build [--profile FILE] [--platform P[,P…]] [--out DIR] [--cache DIR] [--no-cache] [--json]
       basalt build --print-profile [--profile FILE] [--json]

Builds a Basalt image from a profile (default: configs/profiles/default.yaml)
into DIR (default: out/): raw disk, qcow2, PXE kernel + initramfs, the USR
update image (usr.img + usr.img.json) and manifest.json. The folder is
replaced only when the whole build succeeded.

Stages: packages (mmdebstrap) → customize → trim → initrd → layer (the
profile's files, overlay and units) → usr-image → boot, each cached under the
cache folder by the hash of its inputs, then disk and outputs. Needs root for
the packages stage (mmdebstrap) and chroot steps.

A profile may extend another ('extends: default' names configs/profiles/
default.yaml; a path is relative to the profile file) and change its lists
with {add: [...], remove: [...]}; see README.md, "Your own image".

Platforms (--platform, else the profile's platforms:, default qemu), all
from the one USR image: each but qemu and pxe writes its disk with
basalt.oem.id=P on its boot entry, in files named
<os.id>_production_<platform>_image.<ext>:
  qemu          the profile's outputs: raw .bin, _qemu_image.qcow2, PXE
  pxe           the PXE kernel, initramfs and command line
  metal         raw .bin
  aws           raw .bin and stream-optimized .vmdk
  gce           .tar.gz holding disk.raw (GNU tar, sparse)
  azure         fixed .vhd, a whole number of MiB
  openstack     .qcow2
  digitalocean  .qcow2
  vmware        .ova (OVF, stream-optimized vmdk, SHA256 manifest)

Options:
  --profile FILE   build profile (YAML, formatVersion 1)
  --platform LIST  the platforms to write disks for, comma-separated
  --print-profile  print the merged, validated profile (YAML; JSON with --json)
                   and exit without building
  --out DIR        output folder (default: out)
  --cache DIR      cache folder (default: $BASALT_CACHE, /var/cache/basalt as root)
  --no-cache       rebuild every stage
  --json           print the build summary as JSON on stdout
`;

export async function run(ctx: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    ctx.args,
    { profile: { type: 'string' }, platform: { type: 'string' }, out: { type: 'string' }, cache: { type: 'string' }, 'no-cache': { type: 'boolean' }, 'print-profile': { type: 'boolean' } },
    'build',
  );
  if (positionals.length > 0) throw new UsageError(`build: unexpected argument '${positionals[0]}'`, "see 'basalt build --help'");
  // Checked before anything is read or written.
  const platforms = values.platform === undefined ? undefined : parsePlatforms(values.platform);
  if (values['print-profile']) {
    const { profile, warnings } = await loadProfile(values.profile ?? defaultProfilePath());
    for (const w of warnings) ctx.log.warn(formatReport([w]));
    ctx.out(ctx.json ? JSON.stringify(profile, null, 2) + '\n' : profileYaml(profile));
    return 0;
  }
  const ac = new AbortController();
  const onSignal = () => ac.abort();
  // `on`, not `once`: while a listener is registered, no other signal handler
  // (execa's cleanup) re-raises the signal and kills us before we clean up.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const summary = await build({
      profileFile: values.profile ?? defaultProfilePath(),
      outDir: values.out ?? 'out',
      cacheDir: values.cache ?? defaultCacheDir(),
      repoRoot: repoRootDir(),
      log: ctx.log,
      signal: ac.signal,
      noCache: !!values['no-cache'],
      platforms,
      renderer: ctx.json ? 'silent' : process.stdout.isTTY ? 'default' : 'simple',
    });
    if (ctx.json) ctx.out(JSON.stringify(summary, null, 2) + '\n');
    else {
      ctx.out(`built ${summary.version} in ${summary.seconds.toFixed(1)} s into ${summary.out}\n`);
      ctx.out(`USR image: ${(summary.usr.bytes / 1e6).toFixed(1)} MB, sha256 ${summary.usr.sha256}, verity root hash ${summary.usr.rootHash}\n`);
      for (const a of summary.artifacts) ctx.out(`  ${a.file.padEnd(40)} ${(a.bytes / 1e6).toFixed(1).padStart(8)} MB  ${a.sha256.slice(0, 16)}\n`);
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

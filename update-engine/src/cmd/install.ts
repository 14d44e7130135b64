/** `basalt install`: write a Basalt image to a disk or an image file, as flatcar-install. */
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { UsageError } from '../../../common/src/errors.js';

export const help = `Usage: basalt install -d DEVICE|FILE (-f IMAGE | -u URL | -C CHANNEL --repo URL) [-m MANIFEST] [--keyring KEYS]
                      [--tuf-root ROOT] [-c CLOUD-CONFIG] [-o PLATFORM]

Checks everything, then writes: the platform id, the cloud-config (as coreos-cloudinit
-validate does: errors refuse it), the target (a block device that is mounted or holds the
running system is refused) and the image against the manifest.json basalt build wrote beside
it (size and digest), and the manifest's OpenPGP signature (manifest.json.sig, made with
'basalt keys sign'): required with -u or --keyring, checked with -f when the signature and the
image's release keys (/usr/share/basalt/keys) are there. Nothing is written unless every check
passes.

  -d, --device DEVICE|FILE  block device, or an image file (written beside it, then renamed)
  -f, --image IMAGE         the raw disk image (basalt_production_image.bin), or it compressed
                            with zstd (IMAGE.zst, as the live ISO carries it under basalt/)
  -u, --url URL             download the image (or IMAGE.zst) over http(s): manifest.json and
                            manifest.json.sig beside it are fetched and verified first, then
                            the image, no larger than the manifest says
  -C, --channel CHANNEL     install the release CHANNEL is at in the update repository --repo
                            (its disk image, published with 'basalt release --image'), verified
                            with TUF from --tuf-root (default /usr/share/basalt/root.json)
      --repo URL            the update repository (its metadata/ and payloads/)
      --tuf-root FILE       the trusted TUF root for -C
  -m, --manifest FILE|URL   its manifest.json (default: the one beside IMAGE or URL)
      --keyring PATH        the publisher's OpenPGP public keys (a file, or a folder of *.asc;
                            default with -u: /usr/share/basalt/keys, the running image's)
  -c, --cloud-config FILE   user data for the first boot: written to the OEM-CONFIG partition
                            as a config drive (vfat, label config-2, openstack/latest/user_data)
  -o, --platform ID         basalt.oem.id=ID on the boot entries: qemu, metal, pxe, iso, aws,
                            gce, azure, openstack, vmware, digitalocean

`;

export async function run(ctx: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    ctx.args,
    {
      device: { type: 'string', short: 'd' },
      image: { type: 'string', short: 'f' },
      url: { type: 'string', short: 'u' },
      keyring: { type: 'string' },
      channel: { type: 'string', short: 'C' },
      repo: { type: 'string' },
      'tuf-root': { type: 'string' },
      manifest: { type: 'string', short: 'm' },
      'cloud-config': { type: 'string', short: 'c' },
      platform: { type: 'string', short: 'o' },
    },
    'install',
  );
  if (positionals.length > 0) throw new UsageError(`install: unexpected argument '${positionals[0]}'`, "see 'basalt install --help'");
  if (!values.device) throw new UsageError('install: -d DEVICE|FILE is required', "see 'basalt install --help'");
  if ([values.image, values.url, values.channel].filter((v) => v !== undefined).length !== 1) throw new UsageError('install: give one of -f IMAGE, -u URL and -C CHANNEL', "see 'basalt install --help'");
  for (const [flag, v] of [['-u', values.url], ['--repo', values.repo]] as const) {
    if (v !== undefined && !/^https?:\/\//i.test(v)) throw new UsageError(`install: ${flag} ${v}: not an http or https URL`);
  }
  if (values.channel !== undefined && values.repo === undefined) throw new UsageError('install: -C CHANNEL needs --repo URL (the update repository)', "see 'basalt install --help'");
  const image = (values.image ?? values.url ?? values.repo)!;
  const shown = values.channel !== undefined ? `${values.channel} from ${image}` : image;
  const { install } = await import('../install/install.js');
  const r = await install({
    target: values.device,
    image,
    manifest: values.manifest,
    keyring: values.keyring,
    channel: values.channel,
    tufRoot: values['tuf-root'],
    cloudConfig: values['cloud-config'],
    platform: values.platform,
    progress: (l) => ctx.log.info(l),
  });
  if (ctx.json) ctx.out(JSON.stringify(r) + '\n');
  else ctx.out(`installed ${shown} (sha256 ${r.sha256.slice(0, 12)}…${r.signedBy ? `, signed by ${r.signedBy}` : ''}) to ${r.target}${r.platform ? `, platform ${r.platform}` : ''}${r.cloudConfig ? `, cloud-config ${r.cloudConfig}` : ''}\n`);
  return 0;
}

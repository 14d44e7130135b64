/**
 * The platform id contract, shared by every part: the ids, the kernel
 * parameters that carry one (`basalt.oem.id=<platform>` on a boot entry's
 * options line; `flatcar.oem.id=` and `coreos.oem.id=` are read too), the
 * platforms `basalt build` writes disks for, and the one edit that puts an id
 * on a boot entry (`basalt install -o` on a disk, `basalt build --platform`
 * on each platform's disk). cloudinit reads the id (datasource/platform.ts).
 * Pure: no I/O here.
 */

/** The platforms Basalt knows; the first four have no metadata service. */
export const PLATFORM_IDS = ['qemu', 'metal', 'pxe', 'iso', 'aws', 'gce', 'azure', 'openstack', 'vmware', 'digitalocean'] as const;
export type PlatformId = (typeof PLATFORM_IDS)[number];

/**
 * The platforms `basalt build --platform` (and a profile's `platforms:`)
 * writes disks for: every id (iso is the live ISO).
 */
export const BUILD_PLATFORMS = ['qemu', 'metal', 'pxe', 'iso', 'aws', 'gce', 'azure', 'openstack', 'vmware', 'digitalocean'] as const satisfies readonly PlatformId[];
export type BuildPlatform = (typeof BUILD_PLATFORMS)[number];

/** The kernel parameters read, strongest first: a basalt.oem.id wins over flatcar.oem.id over coreos.oem.id. */
export const PLATFORM_PARAMS = ['basalt.oem.id', 'flatcar.oem.id', 'coreos.oem.id'] as const;

/**
 * A Boot Loader Spec entry with `basalt.oem.id=ID` last on its options line
 * (an earlier platform id, under any of PLATFORM_PARAMS, removed); undefined
 * when the entry has no options line.
 */
export function entryWithPlatform(entry: string, id: string): string | undefined {
  let done = false as boolean;
  const isId = (w: string) => PLATFORM_PARAMS.some((p) => w.startsWith(`${p}=`));
  const lines = entry.split('\n').map((l) => {
    if (!/^options\s/.test(l)) return l;
    done = true;
    const words = l.replace(/^options\s+/, '').split(/\s+/).filter((w) => w !== '' && !isId(w));
    return `options ${[...words, `${PLATFORM_PARAMS[0]}=${id}`].join(' ')}`;
  });
  return done ? lines.join('\n') : undefined;
}

/**
 * The platform id: `basalt.oem.id=<platform>` on the kernel command line (also
 * `flatcar.oem.id=` and `coreos.oem.id=`, for CoreOS habits) names the
 * platform the machine runs on, and so which datasource its first boot reads
 * (as `coreos-cloudinit --oem=ec2-compat` did). One USR image serves every
 * platform: only the kernel command line (in the OEM/boot entry) differs.
 * Pure: no I/O here.
 */

// The ids, the build's platforms and the kernel parameters are the shared contract of common/src/platform.ts.
import { PLATFORM_IDS, PLATFORM_PARAMS, type PlatformId } from '../../../common/src/platform.js';
export { BUILD_PLATFORMS, PLATFORM_IDS, PLATFORM_PARAMS, type BuildPlatform, type PlatformId } from '../../../common/src/platform.js';

/** Other spellings of a platform (Flatcar's `ec2`, CoreOS's `ec2-compat`, `packet`'s successor is not one of ours). */
export const PLATFORM_ALIASES: Record<string, PlatformId> = { ec2: 'aws', 'ec2-compat': 'aws', google: 'gce', azurestack: 'azure', vmware_raw: 'vmware', do: 'digitalocean' };

export type PlatformParse =
  | { kind: 'none' }
  | { kind: 'known'; id: PlatformId; param: string; value: string }
  | { kind: 'unknown'; param: string; value: string };

/**
 * The platform id of a kernel command line. Of each parameter the last
 * occurrence counts (as the kernel's own parameters); quoted values
 * (`basalt.oem.id="aws"`) are unquoted; the value is matched without case.
 */
export function parsePlatformId(cmdline: string): PlatformParse {
  const found = new Map<string, string>();
  for (const token of cmdline.trim().split(/\s+/)) {
    const eq = token.indexOf('=');
    if (eq <= 0) continue;
    const key = token.slice(0, eq);
    if ((PLATFORM_PARAMS as readonly string[]).includes(key)) found.set(key, token.slice(eq + 1).replace(/^"(.*)"$/, '$1'));
  }
  for (const param of PLATFORM_PARAMS) {
    const value = found.get(param);
    if (value === undefined) continue;
    const v = value.toLowerCase();
    const id = (PLATFORM_IDS as readonly string[]).includes(v) ? (v as PlatformId) : PLATFORM_ALIASES[v];
    return id ? { kind: 'known', id, param, value } : { kind: 'unknown', param, value };
  }
  return { kind: 'none' };
}

/** A datasource to read, as data: the CLI turns it into a Datasource. */
export type DatasourceSpec =
  | { kind: 'aws'; url: string }
  | { kind: 'gce'; url: string }
  | { kind: 'digitalocean'; url: string }
  | { kind: 'openstack'; url: string }
  | { kind: 'azure'; url: string; wireserver: string; provisioning?: { devices: string[]; dest: string } }
  | { kind: 'vmware' };

/** Azure's provisioning CD-ROM (ovf-env.xml, the custom data): the devices tried, and where its ovf-env.xml is kept. */
export const AZURE_PROVISIONING_DEVICES = ['/dev/sr0', '/dev/sr1'] as const;
export const AZURE_OVF_ENV = '/run/basalt/azure/ovf-env.xml';

export const DEFAULT_URLS = {
  aws: 'http://169.254.169.254/',
  gce: 'http://metadata.google.internal/',
  digitalocean: 'http://169.254.169.254/',
  openstack: 'http://169.254.169.254/',
  azure: 'http://169.254.169.254/',
  azureWireserver: 'http://168.63.129.16/',
} as const;

/**
 * The datasources of a platform. `env` overrides a service's root URL with
 * BASALT_METADATA_URL_<PLATFORM> (and BASALT_WIRESERVER_URL for Azure's), so a
 * test or an unusual network points the first boot elsewhere. openstack's
 * config drive has its own unit (udev, label config-2); this is its metadata
 * service. qemu, metal, pxe and iso have none: their config comes from a
 * config drive, cloud-config-url= or the installer.
 */
export function platformDatasources(id: PlatformId, env: Readonly<Record<string, string | undefined>> = {}): DatasourceSpec[] {
  const url = (p: keyof typeof DEFAULT_URLS, envName: string) => env[envName] || DEFAULT_URLS[p];
  switch (id) {
    case 'aws':
      return [{ kind: 'aws', url: url('aws', 'BASALT_METADATA_URL_AWS') }];
    case 'gce':
      return [{ kind: 'gce', url: url('gce', 'BASALT_METADATA_URL_GCE') }];
    case 'digitalocean':
      return [{ kind: 'digitalocean', url: url('digitalocean', 'BASALT_METADATA_URL_DIGITALOCEAN') }];
    case 'openstack':
      return [{ kind: 'openstack', url: url('openstack', 'BASALT_METADATA_URL_OPENSTACK') }];
    case 'azure':
      return [{ kind: 'azure', url: url('azure', 'BASALT_METADATA_URL_AZURE'), wireserver: url('azureWireserver', 'BASALT_WIRESERVER_URL'), provisioning: { devices: (env['BASALT_AZURE_PROVISIONING_DEVICES'] ?? AZURE_PROVISIONING_DEVICES.join(' ')).split(/\s+/).filter(Boolean), dest: env['BASALT_AZURE_OVF_ENV'] || AZURE_OVF_ENV } }];
    case 'vmware':
      return [{ kind: 'vmware' }];
    case 'qemu':
    case 'metal':
    case 'pxe':
    case 'iso':
      return [];
  }
}

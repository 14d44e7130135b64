/**
 * A DatasourceSpec (platform.ts) made into its Datasource; each platform's
 * module is loaded only here, when asked for. No I/O until the datasource is
 * used, but for azure's provisioning CD-ROM, read (mounted, copied, unmounted)
 * when its datasource is opened.
 */
import { openstackMetadata, type Datasource, type HttpOptions, type Log } from './index.js';
import type { DatasourceSpec } from './platform.js';

export async function openDatasource(d: DatasourceSpec, http: HttpOptions = {}, log: Log = () => {}): Promise<Datasource> {
  switch (d.kind) {
    case 'aws':
      return (await import('./aws.js')).awsImds(d.url, http, log);
    case 'gce':
      return (await import('./gce.js')).gceMetadata(d.url, http, log);
    case 'digitalocean':
      return (await import('./digitalocean.js')).digitalOceanMetadata(d.url, http);
    case 'openstack':
      return openstackMetadata(d.url, http);
    case 'azure': {
      // Custom data comes on the provisioning CD-ROM; user data (IMDS) wins when both are there.
      const ovfEnv = d.provisioning ? await (await import('./provisioning.js')).readProvisioningMedium(d.provisioning.devices, d.provisioning.dest, log) : undefined;
      return (await import('./azure.js')).azureImds(d.url, { wireserver: d.wireserver, ...(ovfEnv ? { ovfEnv } : {}) }, http, log);
    }
    case 'vmware':
      return (await import('./vmware.js')).vmwareGuestinfo({ http });
  }
}

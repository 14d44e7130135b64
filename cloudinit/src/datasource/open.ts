/**
 * A DatasourceSpec (platform.ts) made into its Datasource; each platform's
 * module is loaded only here, when asked for. No I/O until the datasource is used.
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
    case 'azure':
      return (await import('./azure.js')).azureImds(d.url, { wireserver: d.wireserver }, http, log);
    case 'vmware':
      return (await import('./vmware.js')).vmwareGuestinfo({ http });
  }
}

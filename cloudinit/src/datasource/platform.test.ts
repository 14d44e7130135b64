import { describe, expect, it } from 'vitest';
import { DEFAULT_URLS, PLATFORM_IDS, parsePlatformId, platformDatasources } from './platform.js';

describe('parsePlatformId', () => {
  it.each([
    ['', { kind: 'none' }],
    ['root=/dev/vda quiet', { kind: 'none' }],
    ['basalt.oem.id', { kind: 'none' }],
    ['basalt.oem.id=aws', { kind: 'known', id: 'aws', param: 'basalt.oem.id', value: 'aws' }],
    ['console=ttyS0 flatcar.oem.id=gce', { kind: 'known', id: 'gce', param: 'flatcar.oem.id', value: 'gce' }],
    ['coreos.oem.id=ec2', { kind: 'known', id: 'aws', param: 'coreos.oem.id', value: 'ec2' }],
    ['coreos.oem.id=AZURE', { kind: 'known', id: 'azure', param: 'coreos.oem.id', value: 'AZURE' }],
    ['basalt.oem.id="digitalocean"', { kind: 'known', id: 'digitalocean', param: 'basalt.oem.id', value: 'digitalocean' }],
    // The last occurrence of a parameter counts.
    ['basalt.oem.id=gce basalt.oem.id=vmware', { kind: 'known', id: 'vmware', param: 'basalt.oem.id', value: 'vmware' }],
    // basalt.oem.id wins over the others wherever it stands.
    ['basalt.oem.id=openstack flatcar.oem.id=aws coreos.oem.id=gce', { kind: 'known', id: 'openstack', param: 'basalt.oem.id', value: 'openstack' }],
    ['coreos.oem.id=gce flatcar.oem.id=qemu', { kind: 'known', id: 'qemu', param: 'flatcar.oem.id', value: 'qemu' }],
    ['basalt.oem.id=nimbus flatcar.oem.id=aws', { kind: 'unknown', param: 'basalt.oem.id', value: 'nimbus' }],
    ['basalt.oem.id=', { kind: 'unknown', param: 'basalt.oem.id', value: '' }],
    ['xbasalt.oem.id=aws', { kind: 'none' }],
  ])('%j', (cmdline, want) => {
    expect(parsePlatformId(cmdline)).toEqual(want);
  });

  it('knows every platform id by its own name', () => {
    for (const id of PLATFORM_IDS) expect(parsePlatformId(`basalt.oem.id=${id}`)).toMatchObject({ kind: 'known', id });
  });
});

describe('platformDatasources', () => {
  it('gives each cloud its service at the documented address, and none to qemu, metal, pxe, iso', () => {
    expect(platformDatasources('aws')).toEqual([{ kind: 'aws', url: 'http://169.254.169.254/' }]);
    expect(platformDatasources('gce')).toEqual([{ kind: 'gce', url: 'http://metadata.google.internal/' }]);
    expect(platformDatasources('azure')).toEqual([{ kind: 'azure', url: DEFAULT_URLS.azure, wireserver: 'http://168.63.129.16/', provisioning: { devices: ['/dev/sr0', '/dev/sr1'], dest: '/run/basalt/azure/ovf-env.xml' } }]);
    expect(platformDatasources('vmware')).toEqual([{ kind: 'vmware' }]);
    for (const id of ['qemu', 'metal', 'pxe', 'iso'] as const) expect(platformDatasources(id)).toEqual([]);
  });
  it('takes root URLs from the environment given', () => {
    const env = { BASALT_METADATA_URL_AWS: 'http://127.0.0.1:9/', BASALT_METADATA_URL_AZURE: 'http://127.0.0.1:8/', BASALT_WIRESERVER_URL: 'http://127.0.0.1:7/', BASALT_AZURE_PROVISIONING_DEVICES: '' };
    expect(platformDatasources('aws', env)).toEqual([{ kind: 'aws', url: 'http://127.0.0.1:9/' }]);
    expect(platformDatasources('azure', env)).toEqual([{ kind: 'azure', url: 'http://127.0.0.1:8/', wireserver: 'http://127.0.0.1:7/', provisioning: { devices: [], dest: '/run/basalt/azure/ovf-env.xml' } }]);
    expect(platformDatasources('gce', env)).toEqual([{ kind: 'gce', url: DEFAULT_URLS.gce }]);
  });
});

/** The platforms' document parsers (pure): GCE ssh-keys, DigitalOcean v1.json, Azure IMDS and wireserver XML, EC2 key listing, guestinfo encodings. */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { parseKeyListing } from './aws.js';
import { parseAzureInstance, parseGoalState, parseOvfCustomData, renderReadyReport } from './azure.js';
import { parseDigitalOcean } from './digitalocean.js';
import { parseGceSshKeys } from './gce.js';
import { decodeGuestinfo } from './vmware.js';

describe('parseGceSshKeys', () => {
  it('reads USER:KEY lines, google-ssh suffixes kept, junk skipped', () => {
    const text = ['core:ssh-ed25519 AAAA1 core@x', '', 'alice:ssh-rsa AAAA2 google-ssh {"userName":"a@b.c","expireOn":"2030-01-01T00:00:00+0000"}', 'no-colon-line', ':ssh-rsa AAAA3 nouser', 'bob:', '  carol:ssh-ed25519 AAAA4  '].join('\n');
    expect(parseGceSshKeys(text)).toEqual([
      ['core', 'ssh-ed25519 AAAA1 core@x'],
      ['alice', 'ssh-rsa AAAA2 google-ssh {"userName":"a@b.c","expireOn":"2030-01-01T00:00:00+0000"}'],
      ['carol', 'ssh-ed25519 AAAA4'],
    ]);
  });
});

describe('parseKeyListing (EC2 public-keys/)', () => {
  it('reads ID=NAME lines and refuses anything else', () => {
    expect(parseKeyListing('0=my-key\n1=other\n', 'u')).toEqual([
      ['0', 'my-key'],
      ['1', 'other'],
    ]);
    expect(() => parseKeyListing('garbage\n', 'http://x/latest/meta-data/public-keys/')).toThrow(/http:\/\/x\/latest\/meta-data\/public-keys\/: malformed public key entry "garbage"/);
  });
});

describe('parseDigitalOcean', () => {
  it('takes user_data, hostname, keys and the first public and private addresses', () => {
    const doc = {
      droplet_id: 2756294,
      hostname: 'sample-droplet',
      user_data: '#cloud-config\n',
      public_keys: ['ssh-rsa AAAA1 a', '', 'ssh-rsa AAAA2 b'],
      interfaces: {
        public: [{ ipv4: { ip_address: '203.0.113.5', netmask: '255.255.240.0', gateway: '203.0.113.1' }, ipv6: { ip_address: '2604:a880::1', cidr: 64 }, mac: '04:01:2a:0f:2a:01', type: 'public' }],
        private: [{ ipv4: { ip_address: '10.132.255.113' }, type: 'private' }],
      },
    };
    expect(parseDigitalOcean(JSON.stringify(doc), 'u')).toEqual({
      userdata: '#cloud-config\n',
      metadata: {
        instanceId: '2756294',
        hostname: 'sample-droplet',
        publicIPv4: '203.0.113.5',
        publicIPv6: '2604:a880::1',
        privateIPv4: '10.132.255.113',
        sshPublicKeys: [
          ['0', 'ssh-rsa AAAA1 a'],
          ['1', 'ssh-rsa AAAA2 b'],
        ],
      },
    });
  });
  it('a droplet without user data gives empty user data; a non-object is E_METADATA_FORMAT naming the URL', () => {
    expect(parseDigitalOcean('{"hostname":"h"}', 'u').userdata).toBe('');
    expect(() => parseDigitalOcean('[1]', 'http://169.254.169.254/metadata/v1.json')).toThrow(expect.objectContaining({ code: 'E_METADATA_FORMAT', message: 'http://169.254.169.254/metadata/v1.json: not a JSON object' }));
    expect(() => parseDigitalOcean('{', 'u')).toThrow(expect.objectContaining({ code: 'E_METADATA_FORMAT' }));
  });
});

describe('Azure', () => {
  it('reads the IMDS instance document', () => {
    const doc = {
      compute: { vmId: '02aab8a4-74ef-476e-8182-f6d2ba4166a6', name: 'vm-name', osProfile: { computerName: 'examplevmname', adminUsername: 'core' }, publicKeys: [{ keyData: 'ssh-rsa AAAA0 core', path: '/home/core/.ssh/authorized_keys' }] },
      network: { interface: [{ ipv4: { ipAddress: [{ privateIpAddress: '10.144.133.132', publicIpAddress: '' }] } }] },
    };
    expect(parseAzureInstance(JSON.stringify(doc), 'u')).toEqual({
      instanceId: '02aab8a4-74ef-476e-8182-f6d2ba4166a6',
      hostname: 'examplevmname',
      privateIPv4: '10.144.133.132',
      sshPublicKeys: [['/home/core/.ssh/authorized_keys', 'ssh-rsa AAAA0 core']],
    });
    expect(() => parseAzureInstance('{}', 'http://i/')).toThrow(expect.objectContaining({ code: 'E_METADATA_FORMAT', message: 'http://i/: no "compute" object' }));
  });
  it('reads custom data from ovf-env.xml', () => {
    const xml = `<?xml version="1.0"?><Environment><wa:ProvisioningSection><ns1:LinuxProvisioningConfigurationSet><ns1:CustomData>${Buffer.from('#cloud-config\n').toString('base64')}</ns1:CustomData></ns1:LinuxProvisioningConfigurationSet></wa:ProvisioningSection></Environment>`;
    expect(parseOvfCustomData(xml).toString()).toBe('#cloud-config\n');
    expect(parseOvfCustomData('<Environment/>').length).toBe(0);
  });
  it('reads the goal state and renders the ready report', () => {
    const gs = '<?xml version="1.0" encoding="utf-8"?><GoalState><Version>2012-11-30</Version><Incarnation>3</Incarnation><Machine><ExpectedState>Started</ExpectedState></Machine><Container><ContainerId>c-1</ContainerId><RoleInstanceList><RoleInstance><InstanceId>i&lt;1</InstanceId></RoleInstance></RoleInstanceList></Container></GoalState>';
    const g = parseGoalState(gs, 'u');
    expect(g).toEqual({ incarnation: '3', containerId: 'c-1', instanceId: 'i<1' });
    const report = renderReadyReport({ incarnation: '3', containerId: 'c-1', instanceId: 'i<1' });
    expect(report).toContain('<GoalStateIncarnation>3</GoalStateIncarnation>');
    expect(report).toContain('<ContainerId>c-1</ContainerId>');
    expect(report).toContain('<InstanceId>i&lt;1</InstanceId>');
    expect(report).toMatch(/<Health>\s*<State>Ready<\/State>\s*<\/Health>/);
    expect(() => parseGoalState('<GoalState/>', 'http://w/machine/?comp=goalstate')).toThrow(expect.objectContaining({ code: 'E_AZURE_READY' }));
  });
});

describe('decodeGuestinfo', () => {
  const cfg = '#cloud-config\nhostname: vm\n';
  it.each([
    ['', cfg],
    ['base64', Buffer.from(cfg).toString('base64')],
    ['b64', Buffer.from(cfg).toString('base64')],
    ['gzip+base64', gzipSync(cfg).toString('base64')],
    ['gz+b64', gzipSync(cfg).toString('base64')],
  ])('encoding %j', (enc, data) => {
    expect(decodeGuestinfo(data, enc).toString()).toBe(cfg);
  });
  it('refuses an unknown encoding, bad base64 and bad gzip with E_GUESTINFO', () => {
    expect(() => decodeGuestinfo('x', 'rot13')).toThrow(/encoding "rot13" is not one of/);
    expect(() => decodeGuestinfo('x', 'rot13')).toThrow(expect.objectContaining({ code: 'E_GUESTINFO' }));
    expect(() => decodeGuestinfo('%%%', 'base64')).toThrow(expect.objectContaining({ code: 'E_GUESTINFO' }));
    expect(() => decodeGuestinfo(Buffer.from('not gzip').toString('base64'), 'gz+b64')).toThrow(expect.objectContaining({ code: 'E_GUESTINFO' }));
  });
});

/**
 * Datasources against real endpoints: an HTTP server on 127.0.0.1 serving
 * the EC2 (2009-04-04) and OpenStack (openstack/latest) layouts, the
 * cloud-config-url of /proc/cmdline, and config drives as a directory, a
 * vfat image (mkfs.vfat -n config-2 + mtools) and an iso9660 image
 * (genisoimage -V config-2), read without mounting.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configDrive, ec2Metadata, findCloudConfigURL, openstackMetadata, procCmdline, selectDatasource, urlSource } from './index.js';

const exec = promisify(execFile);
const USERDATA = '#cloud-config\nhostname: from-ds\ncoreos:\n  etcd2:\n    advertise-client-urls: http://$private_ipv4:2379\n';
const META = JSON.stringify({ hostname: 'os-host', public_keys: { mykey: 'ssh-rsa AAAA mykey' }, uuid: 'x' });
const have = (t: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, t)));
const fast = { attempts: 3, backoffMs: 5 };

let server: Server;
let base = '';
const hits: string[] = [];

beforeAll(async () => {
  const routes: Record<string, string> = {
    '/2009-04-04/': 'user-data\nmeta-data\n',
    '/2009-04-04/user-data': USERDATA,
    '/2009-04-04/meta-data/public-keys': '0=my-key\n1=other\n',
    '/2009-04-04/meta-data/public-keys/0/openssh-key': 'ssh-rsa AAAA0 my-key\n',
    '/2009-04-04/meta-data/public-keys/1/openssh-key': 'ssh-rsa AAAA1 other\n',
    '/2009-04-04/meta-data/hostname': 'ip-10-0-0-5.ec2.internal extra\n',
    '/2009-04-04/meta-data/local-ipv4': '10.0.0.5',
    '/2009-04-04/meta-data/public-ipv4': '203.0.113.7',
    // An EC2-compatible service that offers only the `latest` API version.
    '/latestonly/latest/': 'user-data\nmeta-data\n',
    '/latestonly/latest/user-data': USERDATA,
    '/latestonly/latest/meta-data/public-keys': '0=my-key\n',
    '/latestonly/latest/meta-data/public-keys/0/openssh-key': 'ssh-rsa AAAA0 my-key\n',
    '/latestonly/latest/meta-data/local-ipv4': '10.0.0.6',
    '/openstack/latest/user_data': USERDATA,
    '/openstack/latest/meta_data.json': META,
    '/plain/config.yml': USERDATA,
  };
  let flaky = 0;
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/flaky' && flaky++ < 2) {
      res.writeHead(500).end('try again');
      return;
    }
    if (req.url === '/flaky') {
      res.writeHead(200).end(USERDATA);
      return;
    }
    const body = routes[req.url ?? ''];
    if (body === undefined) res.writeHead(404).end('not found');
    else res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('EC2 metadata service (2009-04-04 layout)', () => {
  it('is available and fetches user-data and metadata', async () => {
    const ds = ec2Metadata(base, fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    const md = await ds.fetchMetadata();
    expect(md.hostname).toBe('ip-10-0-0-5.ec2.internal');
    expect(md.privateIPv4).toBe('10.0.0.5');
    expect(md.publicIPv4).toBe('203.0.113.7');
    expect(md.sshPublicKeys).toEqual([
      ['my-key', 'ssh-rsa AAAA0 my-key'],
      ['other', 'ssh-rsa AAAA1 other'],
    ]);
  });
  it('reads a service that offers only /latest/', async () => {
    const ds = ec2Metadata(base + '/latestonly', fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    const md = await ds.fetchMetadata();
    expect(md.privateIPv4).toBe('10.0.0.6');
    expect(md.sshPublicKeys).toEqual([['my-key', 'ssh-rsa AAAA0 my-key']]);
    expect(hits).toContain('/latestonly/2009-04-04/');
  });
  it('a missing user-data (404) is empty, not an error', async () => {
    const ds = ec2Metadata(base + '/nothing-here', fast);
    expect(await ds.isAvailable()).toBe(false);
    expect((await ds.fetchUserdata()).length).toBe(0);
  });
});

describe('OpenStack metadata (openstack/latest layout)', () => {
  it('fetches user_data and meta_data.json', async () => {
    const ds = openstackMetadata(base + '/', fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    expect(await ds.fetchMetadata()).toEqual({ hostname: 'os-host', sshPublicKeys: [['mykey', 'ssh-rsa AAAA mykey']] });
  });
});

describe('url and proc-cmdline', () => {
  it('retries server errors, then succeeds', async () => {
    const ds = urlSource(base + '/flaky', fast);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
  });
  it('finds the last cloud-config-url (underscore accepted)', () => {
    expect(findCloudConfigURL('root=/dev/sda cloud-config-url=http://a/1 cloud_config_url=http://b/2 quiet')).toBe('http://b/2');
    expect(findCloudConfigURL('cloud-config-url quiet')).toBeNull();
  });
  it('downloads the cloud-config named on the kernel command line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'basalt-cmdline-'));
    try {
      writeFileSync(join(dir, 'cmdline'), `BOOT_IMAGE=/vmlinuz cloud-config-url=${base}/plain/config.yml console=ttyS0\n`);
      const ds = procCmdline(join(dir, 'cmdline'), fast);
      expect(await ds.isAvailable()).toBe(true);
      expect(ds.availabilityChanges).toBe(false);
      expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('config drive', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'basalt-cd-'));
    mkdirSync(join(dir, 'tree/openstack/latest'), { recursive: true });
    writeFileSync(join(dir, 'tree/openstack/latest/user_data'), USERDATA);
    writeFileSync(join(dir, 'tree/openstack/latest/meta_data.json'), META);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a directory; missing files are empty', async () => {
    const ds = configDrive(join(dir, 'tree'));
    expect(await ds.isAvailable()).toBe(true);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    expect((await ds.fetchMetadata()).hostname).toBe('os-host');
    const empty = configDrive(join(dir, 'tree', 'openstack'));
    expect((await empty.fetchUserdata()).length).toBe(0);
  });

  it.skipIf(!have('mkfs.vfat') || !have('mcopy') || !have('mlabel'))('reads a vfat image labelled config-2 with mtools (skipped without dosfstools/mtools)', async () => {
    const img = join(dir, 'cd.vfat');
    writeFileSync(img, Buffer.alloc(0));
    await exec('truncate', ['-s', '4M', img]);
    await exec('mkfs.vfat', ['-n', 'config-2', img]);
    await exec('mmd', ['-i', img, '::/openstack', '::/openstack/latest']);
    await exec('mcopy', ['-i', img, join(dir, 'tree/openstack/latest/user_data'), join(dir, 'tree/openstack/latest/meta_data.json'), '::/openstack/latest/']);
    const ds = configDrive(img);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    expect((await ds.fetchMetadata()).sshPublicKeys).toEqual([['mykey', 'ssh-rsa AAAA mykey']]);
  });

  it.skipIf(!have('mkfs.vfat') || !have('mlabel'))('rejects a vfat image with another label (skipped without dosfstools/mtools)', async () => {
    const img = join(dir, 'other.vfat');
    writeFileSync(img, Buffer.alloc(0));
    await exec('truncate', ['-s', '2M', img]);
    await exec('mkfs.vfat', ['-n', 'OTHER', img]);
    await expect(configDrive(img).fetchUserdata()).rejects.toThrow(/not config-2/);
  });

  it.skipIf(!have('genisoimage') || !have('isoinfo'))('reads an iso9660 image labelled config-2 with isoinfo (skipped without genisoimage)', async () => {
    const img = join(dir, 'cd.iso');
    await exec('genisoimage', ['-quiet', '-R', '-J', '-V', 'config-2', '-o', img, join(dir, 'tree')]);
    const ds = configDrive(img);
    expect(Buffer.from(await ds.fetchUserdata()).toString()).toBe(USERDATA);
    expect((await ds.fetchMetadata()).hostname).toBe('os-host');
    expect(readFileSync(img).subarray(32769, 32774).toString()).toBe('CD001');
  });
});

describe('selectDatasource', () => {
  it('returns the first available source and gives up on unavailable ones by the deadline', async () => {
    const lines: string[] = [];
    const ok = await selectDatasource([ec2Metadata(base + '/nope', fast), openstackMetadata(base, fast)], (l) => lines.push(l), 5_000);
    expect(ok?.type).toBe('openstack-metadata-service');
    const none = await selectDatasource([urlSource(base + '/missing', fast)], (l) => lines.push(l), 300);
    expect(none).toBeNull();
    expect(lines.filter((l) => l === 'Checking availability of "url"').length).toBeGreaterThanOrEqual(2);
  });
});

describe('coreos-cloudinit with datasources (program end to end, validate mode)', () => {
  const repo = join(import.meta.dirname, '..', '..', '..');
  const built = existsSync(join(repo, 'dist', 'cloudinit', 'src', 'cli', 'coreos-cloudinit.js'));
  it.skipIf(!built)('-from-ec2-metadata and -from-url validate what they fetch (skipped without a tsc build)', async () => {
    for (const args of [['-from-ec2-metadata', base], ['--from-url', `${base}/plain/config.yml`], ['-from-openstack-metadata=' + base]]) {
      const r = await exec(process.execPath, [join(repo, 'bin', 'coreos-cloudinit.js'), '-validate', ...args]).then(
        (x) => ({ code: 0, err: x.stderr }),
        (e: unknown) => ({ code: (e as { code: number }).code, err: (e as { stderr: string }).stderr }),
      );
      expect(r.err).toMatch(/Fetching user-data from datasource of type "(ec2-metadata-service|url|openstack-metadata-service)"/);
      expect(r.err).toContain('line 4: warning: deprecated key "etcd2"');
      expect(r.code).toBe(1);
    }
  });
});

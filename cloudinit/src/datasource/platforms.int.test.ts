/**
 * The platforms' datasources against loopback servers (127.0.0.1, listen(0))
 * that speak each service's endpoints, headers and token flow, refusals
 * included: EC2 IMDS with IMDSv2 tokens (400 without the TTL header, 401
 * without a valid token, expiry), the GCE metadata server (403 without
 * Metadata-Flavor, the header on every answer), DigitalOcean's v1.json, Azure
 * IMDS (400 without Metadata: true) and the wireserver (400 without
 * x-ms-version, goal state, health report), and VMware guestinfo through a
 * stub vmware-rpctool script. Then coreos-cloudinit picks the datasource from
 * the platform id of a kernel command line.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../cli/coreos-cloudinit.js';
import { imds, USERDATA, type Handler, type Req } from '../../test/imds.js';
import { awsImds } from './aws.js';
import { azureImds } from './azure.js';
import { digitalOceanMetadata } from './digitalocean.js';
import { gceMetadata } from './gce.js';
import { vmwareGuestinfo } from './vmware.js';

const fast = { attempts: 2, backoffMs: 5, timeoutMs: 5000 };

const servers: Server[] = [];
async function serve(h: Handler): Promise<{ base: string; reqs: Req[] }> {
  const reqs: Req[] = [];
  const s = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      reqs.push(r);
      h(r, res);
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return { base: `http://127.0.0.1:${(s.address() as AddressInfo).port}/`, reqs };
}
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
});
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

// ------------------------------------------------------------------- EC2

describe('aws: EC2 IMDS with IMDSv2 tokens', () => {
  it('takes one token and sends it with every read', async () => {
    const { base, reqs } = await serve(imds({ required: true }));
    const ds = awsImds(base, fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(await ds.fetchMetadata()).toEqual({
      instanceId: 'i-0123456789abcdef0',
      hostname: 'ip-10-0-0-5.ec2.internal',
      privateIPv4: '10.0.0.5',
      publicIPv4: '203.0.113.7',
      sshPublicKeys: [
        ['my-key', 'ssh-ed25519 AAAA0 my-key'],
        ['other', 'ssh-rsa AAAA1 other'],
      ],
    });
    const puts = reqs.filter((r) => r.method === 'PUT');
    expect(puts).toHaveLength(1);
    expect(puts[0]!.headers['x-aws-ec2-metadata-token-ttl-seconds']).toBe('21600');
    expect(reqs.filter((r) => r.method === 'GET').every((r) => r.headers['x-aws-ec2-metadata-token'] === 'tok-1')).toBe(true);
  });

  it('an expired token (401) gets a new token and the read is repeated', async () => {
    const { base, reqs } = await serve(imds({ required: true, expireAfter: 1 }));
    const ds = awsImds(base, fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(reqs.filter((r) => r.method === 'PUT')).toHaveLength(2);
    expect(reqs.at(-1)!.headers['x-aws-ec2-metadata-token']).toBe('tok-2');
  });

  it('a service without a token endpoint (405 to the PUT) is read with IMDSv1', async () => {
    const lines: string[] = [];
    const { base, reqs } = await serve(imds({ putStatus: 405 }));
    const ds = awsImds(base, fast, (l) => lines.push(l));
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(reqs.filter((r) => r.method === 'GET').some((r) => r.headers['x-aws-ec2-metadata-token'] !== undefined)).toBe(false);
    expect(lines.some((l) => /IMDSv2 token refused by .*latest\/api\/token \(HTTP 405\): using IMDSv1/.test(l))).toBe(true);
  });

  it('tokens required but none issued: E_IMDS_TOKEN naming the URL', async () => {
    const { base } = await serve(imds({ required: true, putStatus: 403 }));
    const ds = awsImds(base, fast);
    expect(await ds.isAvailable()).toBe(false);
    await expect(ds.fetchUserdata()).rejects.toMatchObject({ code: 'E_IMDS_TOKEN', message: `${base}latest/user-data: HTTP 401: the service requires IMDSv2 tokens but refused to issue one` });
  });

  it('every token refused: one new token, then E_IMDS_TOKEN', async () => {
    const { base, reqs } = await serve(imds({ required: true, refuseAll: true }));
    await expect(awsImds(base, fast).fetchUserdata()).rejects.toMatchObject({ code: 'E_IMDS_TOKEN', message: expect.stringContaining('a fresh IMDSv2 token was refused too') as unknown });
    expect(reqs.filter((r) => r.method === 'PUT')).toHaveLength(2);
  });

  it('a 5xx is retried when reading, probed once when polling for availability', async () => {
    let fails = 1;
    const service = imds({});
    const flaky = await serve((r, res) => (fails-- > 0 ? res.writeHead(503).end() : service(r, res)));
    expect(text(await awsImds(flaky.base, fast).fetchUserdata())).toBe(USERDATA);
    expect(flaky.reqs[0]!.method).toBe('PUT');
    expect(flaky.reqs[1]!.method).toBe('PUT');
    const down = await serve((_r, res) => res.writeHead(503).end());
    expect(await awsImds(down.base, fast).isAvailable()).toBe(false);
    expect(down.reqs).toHaveLength(1);
  });

  it('no user-data (404) is empty; a user-data over the byte bound is refused', async () => {
    const none = await serve((r, res) => (r.method === 'PUT' ? res.writeHead(200).end('t') : res.writeHead(404).end()));
    expect((await awsImds(none.base, fast).fetchUserdata()).length).toBe(0);
    const big = await serve(imds({ bigUserdata: 2 * 1024 * 1024 }));
    await expect(awsImds(big.base, fast).fetchUserdata()).rejects.toMatchObject({ code: 'E_HTTP_TOO_LARGE' });
  });
});

// ------------------------------------------------------------------- GCE

function gce(opts: { noFlavorReply?: boolean; blockProject?: boolean } = {}): Handler {
  const attrs: Record<string, string> = {
    '/computeMetadata/v1/instance/id': '4520031799277581759',
    '/computeMetadata/v1/instance/hostname': 'vm-1.c.project.internal',
    '/computeMetadata/v1/instance/network-interfaces/0/ip': '10.128.0.2',
    '/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip': '198.51.100.9',
    '/computeMetadata/v1/instance/attributes/user-data': USERDATA,
    '/computeMetadata/v1/instance/attributes/ssh-keys': 'core:ssh-ed25519 AAAAi core@laptop\n',
    '/computeMetadata/v1/project/attributes/ssh-keys': 'alice:ssh-rsa AAAAp alice\n',
    ...(opts.blockProject ? { '/computeMetadata/v1/instance/attributes/block-project-ssh-keys': 'TRUE' } : {}),
  };
  return (r, res) => {
    const flavor = opts.noFlavorReply ? {} : { 'metadata-flavor': 'Google' };
    if (r.headers['metadata-flavor'] !== 'Google') return void res.writeHead(403, { ...flavor, 'content-type': 'text/html' }).end('Missing Metadata-Flavor:Google header.');
    if (r.headers['x-forwarded-for'] !== undefined) return void res.writeHead(403, flavor).end();
    const body = attrs[r.url];
    if (body === undefined) res.writeHead(404, flavor).end();
    else res.writeHead(200, { ...flavor, 'content-type': 'application/text' }).end(body);
  };
}

describe('gce: the metadata server and its Metadata-Flavor header', () => {
  it('reads user-data, hostname, addresses, instance and project SSH keys', async () => {
    const { base, reqs } = await serve(gce());
    const ds = gceMetadata(base, fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(await ds.fetchMetadata()).toEqual({
      instanceId: '4520031799277581759',
      hostname: 'vm-1.c.project.internal',
      privateIPv4: '10.128.0.2',
      publicIPv4: '198.51.100.9',
      sshPublicKeys: [
        ['core', 'ssh-ed25519 AAAAi core@laptop'],
        ['alice', 'ssh-rsa AAAAp alice'],
      ],
    });
    expect(reqs.every((r) => r.headers['metadata-flavor'] === 'Google')).toBe(true);
  });
  it('block-project-ssh-keys leaves the project keys out', async () => {
    const { base } = await serve(gce({ blockProject: true }));
    expect((await gceMetadata(base, fast).fetchMetadata()).sshPublicKeys).toEqual([['core', 'ssh-ed25519 AAAAi core@laptop']]);
  });
  it('refuses an answer without Metadata-Flavor: Google (E_METADATA_FLAVOR), and is then not available', async () => {
    const { base } = await serve(gce({ noFlavorReply: true }));
    const ds = gceMetadata(base, fast);
    expect(await ds.isAvailable()).toBe(false);
    await expect(ds.fetchUserdata()).rejects.toMatchObject({ code: 'E_METADATA_FLAVOR', message: `${base}computeMetadata/v1/instance/attributes/user-data: HTTP 200 without the header Metadata-Flavor: Google` });
  });
  it("the server's own refusal of a request without the header is 403", async () => {
    const { base } = await serve(gce());
    const res = await fetch(`${base}computeMetadata/v1/instance/id`);
    expect(res.status).toBe(403);
  });
});

// ---------------------------------------------------------- DigitalOcean

describe('digitalocean: metadata/v1.json', () => {
  it('reads user_data, hostname, keys and interfaces from one document', async () => {
    const doc = { droplet_id: 42, hostname: 'droplet', user_data: USERDATA, public_keys: ['ssh-ed25519 AAAAd me'], interfaces: { public: [{ ipv4: { ip_address: '192.0.2.10' } }], private: [{ ipv4: { ip_address: '10.10.0.5' } }] } };
    const { base, reqs } = await serve((r, res) => (r.url === '/metadata/v1.json' ? res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc)) : res.writeHead(404).end()));
    const ds = digitalOceanMetadata(base, fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(await ds.fetchMetadata()).toEqual({ instanceId: '42', hostname: 'droplet', publicIPv4: '192.0.2.10', privateIPv4: '10.10.0.5', sshPublicKeys: [['0', 'ssh-ed25519 AAAAd me']] });
    expect(reqs).toHaveLength(1);
  });
  it('basalt cloudinit apply --platform digitalocean --dry-run plans from the droplet metadata', async () => {
    const doc = { droplet_id: 7, hostname: 'droplet-7', user_data: USERDATA, public_keys: ['ssh-ed25519 AAAAd me'] };
    const { base } = await serve((r, res) => (r.url === '/metadata/v1.json' ? res.writeHead(200).end(JSON.stringify(doc)) : res.writeHead(404).end()));
    const root = mkdtempSync(join(tmpdir(), 'basalt-do-root-'));
    vi.stubEnv('BASALT_METADATA_URL_DIGITALOCEAN', base);
    try {
      const { main: basalt } = await import('../../../cli/main.js');
      let err = '';
      // The plan is logged on the process's stderr (Go's log), as coreos-cloudinit logs.
      const logged: string[] = [];
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((t: string | Uint8Array) => logged.push(String(t)) > 0);
      let code: number;
      try {
        code = await basalt(['cloudinit', 'apply', '--dry-run', '--root', root, '--platform', 'digitalocean'], 'basalt', { out: () => {}, err: (t) => (err += t) });
      } finally {
        spy.mockRestore();
      }
      expect(err).toBe('');
      expect(code).toBe(0);
      expect(logged.join('')).toContain('would set hostname from-platform');
      const bad = await basalt(['cloudinit', 'apply', '--dry-run', '--root', root, '--platform', 'nimbus'], 'basalt', { out: () => {}, err: (t) => (err += t) });
      expect(bad).toBe(1);
      expect(err).toContain('--platform nimbus: not a platform Basalt knows');
    } finally {
      vi.unstubAllEnvs();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a server without the document is not available; a broken document is E_METADATA_FORMAT', async () => {
    const nothing = await serve((_r, res) => res.writeHead(404).end());
    expect(await digitalOceanMetadata(nothing.base, fast).isAvailable()).toBe(false);
    const broken = await serve((_r, res) => res.writeHead(200).end('{"hostname":'));
    await expect(digitalOceanMetadata(broken.base, fast).fetchUserdata()).rejects.toMatchObject({ code: 'E_METADATA_FORMAT' });
  });
});

// ------------------------------------------------------------------ Azure

const GOALSTATE = (inc: number) =>
  `<?xml version="1.0" encoding="utf-8"?>\n<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Version>2012-11-30</Version><Incarnation>${inc}</Incarnation><Machine><ExpectedState>Started</ExpectedState></Machine><Container><ContainerId>7f2e0c5a-1b2c-4d5e-8f90-a1b2c3d4e5f6</ContainerId><RoleInstanceList><RoleInstance><InstanceId>896c1b7e.vm-1</InstanceId><State>Started</State></RoleInstance></RoleInstanceList></Container></GoalState>\n`;

function azure(opts: { goneOnce?: boolean } = {}): { handler: Handler; reports: string[] } {
  const reports: string[] = [];
  let incarnation = 1;
  let gone = opts.goneOnce ?? false;
  const instance = { compute: { vmId: 'vm-id-1', name: 'vm-1', osProfile: { computerName: 'vm-1' }, publicKeys: [{ keyData: 'ssh-rsa AAAAz core', path: '/home/core/.ssh/authorized_keys' }] }, network: { interface: [{ ipv4: { ipAddress: [{ privateIpAddress: '10.0.0.4', publicIpAddress: '20.1.2.3' }] } }] } };
  const handler: Handler = (r, res) => {
    if (r.url.startsWith('/metadata/')) {
      if (r.headers['metadata'] !== 'true') return void res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"Bad request. Required metadata header not specified"}');
      if (r.url === '/metadata/instance?api-version=2021-02-01') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(instance));
      if (r.url === '/metadata/instance/compute/userData?api-version=2021-01-01&format=text') return void res.writeHead(200).end(Buffer.from(USERDATA).toString('base64'));
      return void res.writeHead(404).end();
    }
    if (r.url.startsWith('/machine/')) {
      if (r.headers['x-ms-version'] !== '2012-11-30') return void res.writeHead(400).end();
      if (r.method === 'GET' && r.url === '/machine/?comp=goalstate') return void res.writeHead(200, { 'content-type': 'text/xml; charset=utf-8' }).end(GOALSTATE(incarnation));
      if (r.method === 'POST' && r.url === '/machine/?comp=health') {
        if (gone) {
          gone = false;
          incarnation++;
          return void res.writeHead(410).end();
        }
        if (!String(r.headers['content-type']).startsWith('text/xml')) return void res.writeHead(415).end();
        reports.push(r.body);
        return void res.writeHead(200).end();
      }
    }
    res.writeHead(404).end();
  };
  return { handler, reports };
}

describe('azure: IMDS and the wireserver ready report', () => {
  it('reads user data and metadata with Metadata: true, and reports ready', async () => {
    const az = azure();
    const { base, reqs } = await serve(az.handler);
    const ds = azureImds(base, { wireserver: base }, fast);
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(await ds.fetchMetadata()).toEqual({ instanceId: 'vm-id-1', hostname: 'vm-1', privateIPv4: '10.0.0.4', publicIPv4: '20.1.2.3', sshPublicKeys: [['/home/core/.ssh/authorized_keys', 'ssh-rsa AAAAz core']] });
    expect(reqs.filter((r) => r.url.startsWith('/metadata/')).every((r) => r.headers['metadata'] === 'true')).toBe(true);
    await ds.reportReady();
    expect(az.reports).toHaveLength(1);
    expect(az.reports[0]).toContain('<GoalStateIncarnation>1</GoalStateIncarnation>');
    expect(az.reports[0]).toContain('<ContainerId>7f2e0c5a-1b2c-4d5e-8f90-a1b2c3d4e5f6</ContainerId>');
    expect(az.reports[0]).toContain('<InstanceId>896c1b7e.vm-1</InstanceId>');
    expect(az.reports[0]).toContain('<State>Ready</State>');
  });
  it('a goal state that moved on (410) is fetched again and reported with its new incarnation', async () => {
    const az = azure({ goneOnce: true });
    const { base, reqs } = await serve(az.handler);
    await azureImds(base, { wireserver: base }, fast).reportReady();
    expect(reqs.filter((r) => r.url === '/machine/?comp=goalstate')).toHaveLength(2);
    expect(az.reports[0]).toContain('<GoalStateIncarnation>2</GoalStateIncarnation>');
  });
  it('custom data from ovf-env.xml when IMDS has no user data; the wireserver refusing is E_AZURE_READY', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'basalt-azure-'));
    try {
      const ovf = join(dir, 'ovf-env.xml');
      writeFileSync(ovf, `<Environment><ns1:CustomData>${Buffer.from(USERDATA).toString('base64')}</ns1:CustomData></Environment>`);
      const { base } = await serve((r, res) => {
        if (r.headers['metadata'] !== 'true') return void res.writeHead(400).end();
        if (r.url.startsWith('/metadata/instance/compute/userData')) return void res.writeHead(200).end('');
        return void res.writeHead(400).end();
      });
      expect(text(await azureImds(base, { ovfEnv: ovf, wireserver: base }, fast).fetchUserdata())).toBe(USERDATA);
      await expect(azureImds(base, { wireserver: base }, fast).reportReady()).rejects.toMatchObject({ code: 'E_AZURE_READY', message: `${base}machine/?comp=goalstate: HTTP 400 for the goal state` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ----------------------------------------------------------------- VMware

describe('vmware: guestinfo through vmware-rpctool (a stub script: no VMware here)', () => {
  let dir: string;
  const stub = (values: Record<string, string>) => {
    const d = mkdtempSync(join(dir, 'gi-'));
    for (const [k, v] of Object.entries(values)) writeFileSync(join(d, k), v);
    const script = join(d, 'vmware-rpctool');
    // As open-vm-tools' tool: one argument "info-get guestinfo.KEY"; exit 1 and "No value found" when unset.
    writeFileSync(script, `#!/bin/sh\ncase "$1" in\n  "info-get guestinfo."*) k="\${1#info-get guestinfo.}";;\n  *) echo "Unknown command" >&2; exit 1;;\nesac\nif [ -f "${d}/$k" ]; then cat "${d}/$k"; echo; else echo "No value found"; exit 1; fi\n`);
    chmodSync(script, 0o755);
    return script;
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'basalt-vmware-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads gzip+base64 data, the hostname and the address', async () => {
    const rpctool = stub({ 'coreos.config.data': gzipSync(USERDATA).toString('base64'), 'coreos.config.data.encoding': 'gzip+base64', hostname: 'vm-7', 'interface.0.ip.0.address': '192.168.1.7/24' });
    const ds = vmwareGuestinfo({ rpctool });
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
    expect(await ds.fetchMetadata()).toEqual({ hostname: 'vm-7', publicIPv4: '192.168.1.7' });
  });
  it('fetches guestinfo.coreos.config.url when there is no data', async () => {
    const { base } = await serve((_r, res) => res.writeHead(200).end(USERDATA));
    const ds = vmwareGuestinfo({ rpctool: stub({ 'coreos.config.url': `${base}config` }), http: fast });
    expect(await ds.isAvailable()).toBe(true);
    expect(text(await ds.fetchUserdata())).toBe(USERDATA);
  });
  it('nothing set, or no vmware-rpctool at all: not available; an unknown encoding is E_GUESTINFO', async () => {
    expect(await vmwareGuestinfo({ rpctool: stub({}) }).isAvailable()).toBe(false);
    expect(await vmwareGuestinfo({ rpctool: join(dir, 'no-such-tool') }).isAvailable()).toBe(false);
    await expect(vmwareGuestinfo({ rpctool: stub({ 'coreos.config.data': 'x', 'coreos.config.data.encoding': 'rot13' }) }).fetchUserdata()).rejects.toMatchObject({ code: 'E_GUESTINFO' });
  });
});

// ------------------------------------------- coreos-cloudinit and the platform id

describe('coreos-cloudinit -oem-from-cmdline (in process, validate mode)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'basalt-oemid-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const runMain = async (cmdline: string, env: Record<string, string>) => {
    const path = join(dir, `cmdline-${Math.random().toString(36).slice(2)}`);
    writeFileSync(path, cmdline + '\n');
    let out = '';
    let err = '';
    const code = await main(['-validate', '--from-proc-cmdline', '--oem-from-cmdline'], { out: (t) => (out += t), err: (t) => (err += t) }, { BASALT_PROC_CMDLINE: path, BASALT_CLOUDINIT_DATASOURCE_TIMEOUT_MS: '5000', ...env });
    return { code, out, err };
  };

  it('basalt.oem.id=aws reads the IMDS at the overridden root with a token', async () => {
    const { base, reqs } = await serve(imds({ required: true }));
    const r = await runMain('console=ttyS0 basalt.oem.id=aws', { BASALT_METADATA_URL_AWS: base });
    expect(r.err).toContain('Platform "aws" (basalt.oem.id=aws): aws');
    expect(r.err).toContain('Fetching user-data from datasource of type "aws-imds"');
    expect(r.code).toBe(0);
    expect(reqs.some((q) => q.method === 'PUT')).toBe(true);
  });
  it('flatcar.oem.id=gce and coreos.oem.id=azure pick their services', async () => {
    const g = await serve(gce());
    const rg = await runMain('flatcar.oem.id=gce', { BASALT_METADATA_URL_GCE: g.base });
    expect(rg.err).toContain('Fetching user-data from datasource of type "gce-metadata"');
    expect(rg.code).toBe(0);
    const az = azure();
    const a = await serve(az.handler);
    const ra = await runMain('coreos.oem.id=azure', { BASALT_METADATA_URL_AZURE: a.base, BASALT_WIRESERVER_URL: a.base });
    expect(ra.err).toContain('Fetching user-data from datasource of type "azure-imds"');
    expect(ra.code).toBe(0);
    // validate mode applies nothing and reports nothing
    expect(az.reports).toHaveLength(0);
  });
  it('a platform without a service, or no platform id: nothing to do (exit 0); an unknown one: one line, exit 1', async () => {
    const q = await runMain('basalt.oem.id=qemu', {});
    expect(q.code).toBe(0);
    expect(q.err).toContain('Platform "qemu" has no datasource of its own: nothing to do');
    const u = await runMain('basalt.oem.id=nimbus', {});
    expect(u.code).toBe(1);
    expect(u.err.trim().split('\n')).toHaveLength(1);
    expect(u.err).toMatch(/E_PLATFORM_ID: basalt.oem.id=nimbus on the kernel command line is not a platform Basalt knows \(hint: use one of qemu, metal/);
  });
});

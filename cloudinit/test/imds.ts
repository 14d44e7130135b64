/**
 * An EC2 instance metadata service (IMDS) for tests: IMDSv2's token PUT with
 * its TTL header (400 without it), the token on every GET (401 without a
 * valid one when IMDSv2 is required, or once expired), IMDSv1 reads otherwise,
 * and the paths the aws datasource reads. Used on loopback by the datasource
 * tests and, on the host's port 80 behind QEMU's user network, by the VM test
 * of a cloud image.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const USERDATA = '#cloud-config\nhostname: from-platform\n';

export interface Req {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}
export type Handler = (r: Req, res: ServerResponse) => void;

export interface ImdsMode {
  /** IMDSv2 required: a GET without a valid token is 401. */
  required?: boolean;
  /** The status the token PUT answers instead of a token (an EC2-compatible service without IMDSv2). */
  putStatus?: number;
  /** Tokens stop being valid after this many GETs (expiry). */
  expireAfter?: number;
  /** Every token is refused. */
  refuseAll?: boolean;
  /** user-data of this many bytes. */
  bigUserdata?: number;
}

export function imds(mode: ImdsMode, over: Record<string, string> = {}): Handler {
  const live = new Map<string, number>();
  let n = 0;
  const routes: Record<string, string> = {
    '/latest/user-data': USERDATA,
    '/latest/meta-data/instance-id': 'i-0123456789abcdef0',
    '/latest/meta-data/local-hostname': 'ip-10-0-0-5.ec2.internal',
    '/latest/meta-data/local-ipv4': '10.0.0.5',
    '/latest/meta-data/public-ipv4': '203.0.113.7',
    '/latest/meta-data/public-keys/': '0=my-key\n1=other',
    '/latest/meta-data/public-keys/0/openssh-key': 'ssh-ed25519 AAAA0 my-key\n',
    '/latest/meta-data/public-keys/1/openssh-key': 'ssh-rsa AAAA1 other\n',
    ...over,
  };
  return (r, res) => {
    if (r.url === '/latest/api/token') {
      if (r.method !== 'PUT') return void res.writeHead(405).end();
      if (mode.putStatus) return void res.writeHead(mode.putStatus).end();
      const ttl = Number(r.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!(ttl >= 1 && ttl <= 21600)) return void res.writeHead(400).end('Missing or invalid X-aws-ec2-metadata-token-ttl-seconds');
      const t = `tok-${++n}`;
      live.set(t, 0);
      return void res.writeHead(200, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) }).end(t);
    }
    if (r.method !== 'GET') return void res.writeHead(405).end();
    const tok = r.headers['x-aws-ec2-metadata-token'];
    if (typeof tok === 'string') {
      const uses = live.get(tok);
      if (mode.refuseAll || uses === undefined || (mode.expireAfter !== undefined && uses >= mode.expireAfter)) return void res.writeHead(401).end();
      live.set(tok, uses + 1);
    } else if (mode.required) return void res.writeHead(401).end();
    if (r.url === '/latest/user-data' && mode.bigUserdata) return void res.writeHead(200).end(Buffer.alloc(mode.bigUserdata, 0x61));
    const body = routes[r.url];
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  };
}


/** Serves `h` on host:port (0 = any free port), recording every request. */
export async function serveHandler(h: Handler, port = 0, host = '127.0.0.1'): Promise<{ server: Server; base: string; reqs: Req[]; close(): Promise<void> }> {
  const reqs: Req[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 1 << 20) chunks.push(c);
    });
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      reqs.push(r);
      h(r, res);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const a = server.address() as AddressInfo;
  return { server, base: `http://${host}:${a.port}/`, reqs, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** The one HTTP client against real servers on loopback: bounds in bytes and time, status and transport errors. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchText, httpClient, httpStatusOf, isTransferFailure, requestText } from './http.js';

let srv: Server;
let base: string;
const sockets = new Set<import('node:net').Socket>();

beforeAll(async () => {
  srv = createServer((req, res) => {
    const path = req.url ?? '/';
    if (path === '/ok') return void res.end('hello');
    if (path === '/post') {
      let b = '';
      req.on('data', (c: Buffer) => (b += c.toString()));
      req.on('end', () => res.end(`${req.method} ${req.headers['user-agent']} ${b}`));
      return;
    }
    if (path === '/404') {
      res.statusCode = 404;
      return void res.end('{"error":"nope"}');
    }
    if (path === '/announced-big') {
      res.setHeader('content-length', String(10 * 1024 * 1024));
      return void res.write('x');
    }
    if (path === '/endless') {
      // Chunked, no length: the client must stop reading at its cap.
      const chunk = Buffer.alloc(64 * 1024, 'y');
      const pump = () => {
        while (res.write(chunk)) if (res.destroyed) return;
        res.once('drain', pump);
      };
      return pump();
    }
    if (path === '/hang') return; // never answers
    res.statusCode = 500;
    res.end();
  });
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => srv.close(r));
});

describe('httpClient + requestText/fetchText', () => {
  const client = httpClient({ connectMs: 2000, stallMs: 2000, totalMs: 3000 });

  it('reads a body and posts one with Basalt user agent', async () => {
    expect(await fetchText(client, `${base}/ok`, { maxBytes: 100 })).toBe('hello');
    expect(await fetchText(client, `${base}/post`, { method: 'POST', body: 'abc', maxBytes: 100 })).toBe('POST basalt-update-engine abc');
  });

  it('returns any status from requestText; fetchText turns a non-2xx status into E_HTTP_STATUS', async () => {
    expect(await requestText(client, `${base}/404`, { maxBytes: 100 })).toEqual({ status: 404, text: '{"error":"nope"}' });
    const e = await fetchText(client, `${base}/404`, { maxBytes: 100 }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'E_HTTP_STATUS', message: `${base}/404: HTTP 404` });
    expect(httpStatusOf(e)).toBe(404);
    expect(isTransferFailure(e)).toBe(true);
  });

  it('refuses a reply over its cap, announced or streamed, without reading it all', async () => {
    await expect(fetchText(client, `${base}/announced-big`, { maxBytes: 1024 })).rejects.toMatchObject({ code: 'E_HTTP_TOO_LARGE' });
    const t0 = Date.now();
    const e = await fetchText(client, `${base}/endless`, { maxBytes: 256 * 1024 }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'E_HTTP_TOO_LARGE', message: `${base}/endless: the reply is larger than 262144 bytes` });
    expect(isTransferFailure(e)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('gives up on a server that never answers, and names a refused connection', async () => {
    const quick = httpClient({ connectMs: 500, stallMs: 300, totalMs: 400 });
    const hang = await fetchText(quick, `${base}/hang`, { maxBytes: 100 }).catch((x: unknown) => x);
    expect(hang).toMatchObject({ code: 'E_HTTP_TRANSPORT' });
    expect((hang as Error).message).toMatch(/\/hang: (no complete answer within 0\.4 s \(whole-request deadline\)|nothing received for 0\.3 s \(stall timeout\))$/);
    const refused = await fetchText(quick, 'http://127.0.0.1:1/', { maxBytes: 100 }).catch((x: unknown) => x);
    expect(refused).toMatchObject({ code: 'E_HTTP_TRANSPORT' });
    expect((refused as Error).message).toMatch(/ECONNREFUSED/);
  });
});

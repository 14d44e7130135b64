/**
 * The local control socket of `basalt update-engine` (a unix socket; one JSON
 * object per line). Requests: {"cmd":"status"|"check"|"reset"|"watch"|
 * "mark-good"|"rollback"|"unblock"}. Replies: {"ok":true,...} or
 * {"ok":false,"error":{code,message}}; "watch" streams {"status":...} lines.
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { rm, mkdir, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BasaltError, isBasaltError } from '../../common/src/errors.js';
import type { Engine, Status } from './engine.js';

export const DEFAULT_SOCKET = '/run/basalt/update-engine.sock';

export type Handler = (cmd: string) => Promise<Record<string, unknown>>;

export interface ControlServer {
  server: Server;
  /** Stops listening and drops every client (watchers included), so the daemon can exit at once. */
  close(): Promise<void>;
}

export async function serveControl(path: string, engine: Engine, extra: Record<string, () => Promise<Record<string, unknown>>>): Promise<ControlServer> {
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true });
  const clients = new Set<Socket>();
  const server = createServer((sock) => {
    clients.add(sock);
    sock.on('close', () => clients.delete(sock));
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 64 * 1024) sock.destroy();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void (async () => {
          const reply = (o: unknown) => sock.writable && sock.write(JSON.stringify(o) + '\n');
          try {
            const req = JSON.parse(line) as { cmd?: string };
            switch (req.cmd) {
              case 'status':
                reply({ ok: true, status: engine.status() });
                return;
              case 'check':
                reply({ ok: true, accepted: engine.check(true), status: engine.status() });
                return;
              case 'reset':
                reply({ ok: true, accepted: engine.send({ type: 'RESET' }) });
                return;
              case 'watch': {
                reply({ ok: true, status: engine.status() });
                const off = engine.subscribe((s: Status) => reply({ status: s }));
                sock.on('close', off);
                return;
              }
              default: {
                const h = req.cmd ? extra[req.cmd] : undefined;
                if (!h) throw new BasaltError('E_USAGE', `unknown request '${String(req.cmd)}'`);
                reply({ ok: true, ...(await h()) });
              }
            }
          } catch (e) {
            const err = isBasaltError(e) ? e : new BasaltError('E_REQUEST', (e as Error).message);
            reply({ ok: false, error: { code: err.code, message: err.message, hint: err.hint } });
          }
        })();
      }
    });
  });
  await new Promise<void>((res, rej) => {
    server.once('error', (e) => rej(new BasaltError('E_LISTEN', `${path}: ${(e as Error).message}`)));
    server.listen(path, () => res());
  });
  await chmod(path, 0o660).catch(() => {});
  return {
    server,
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        for (const c of clients) c.destroy();
      }),
  };
}

/** Sends one request and returns the first reply (or streams with onLine for watch). */
export function request(path: string, cmd: string, onLine?: (o: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let first: Record<string, unknown> | undefined;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ cmd }) + '\n'));
    sock.on('error', (e: NodeJS.ErrnoException) =>
      reject(new BasaltError('E_NO_DAEMON', `cannot reach update-engine at ${path}: ${e.code ?? e.message}`, { hint: "is 'basalt update-engine' running? (systemctl status update-engine)" })),
    );
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const o = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (!first) {
          first = o;
          if (o['ok'] === false) {
            const er = o['error'] as { code: string; message: string; hint?: string };
            sock.destroy();
            reject(new BasaltError(er.code, er.message, { hint: er.hint }));
            return;
          }
          if (!onLine) {
            sock.destroy();
            resolve(o);
            return;
          }
        }
        if (onLine && !onLine(o)) {
          sock.destroy();
          resolve(first);
          return;
        }
      }
    });
    sock.on('close', () => resolve(first ?? {}));
  });
}

/** CoreOS update_engine_client -status text. */
export function statusLines(s: Status): string {
  return [
    `LAST_CHECKED_TIME=${s.lastCheckedTime}`,
    `PROGRESS=${s.progress}`,
    `CURRENT_OP=${s.status}`,
    `NEW_VERSION=${s.newVersion}`,
    `NEW_SIZE=${s.newSize}`,
    '',
  ].join('\n');
}

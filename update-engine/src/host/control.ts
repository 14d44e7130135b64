/**
 * The local sockets of `basalt update-engine` (unix sockets; one JSON object
 * per line). Two of them, so that the kernel's file permissions decide who may
 * do what:
 * - the action socket (PATH, mode 0660, group basalt-update): every request,
 *   {"cmd":"status"|"check"|"reset"|"watch"|"mark-good"|"rollback"|"unblock"};
 * - the status socket (statusSocketFor(PATH), mode 0666): "status" and "watch"
 *   only, for every local user (update_engine_client -status as core).
 * Replies: {"ok":true,...} or {"ok":false,"error":{code,message}}; "watch"
 * streams {"status":...} lines.
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { rm, mkdir, chmod, chown, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BasaltError, isBasaltError, COMMON_ERRORS } from '../../../common/src/errors.js';
import { UPDATE_GROUP, UPDATE_SOCKET } from '../../../common/src/contracts.js';
import type { Engine, Status } from './engine.js';
import { UE_ERRORS } from '../errors.js';

export const DEFAULT_SOCKET = UPDATE_SOCKET;

/** Requests any local user may send (over the status socket). */
export const READ_ONLY_REQUESTS = ['status', 'watch'] as const;

/** Pure: the read-only socket beside an action socket: /run/basalt/update-engine.sock -> /run/basalt/update-engine-status.sock. */
export function statusSocketFor(path: string): string {
  return path.endsWith('.sock') ? `${path.slice(0, -5)}-status.sock` : `${path}-status`;
}

/** Pure: the gid of `name` in an /etc/group text, if it is there. */
export function groupId(groupText: string, name: string): number | undefined {
  for (const line of groupText.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  return undefined;
}

/** The gid of the update group on this host (from /etc/group), if it exists. */
export async function updateGroupId(etcGroup = '/etc/group'): Promise<number | undefined> {
  return groupId(await readFile(etcGroup, 'utf8').catch(() => ''), UPDATE_GROUP);
}

export interface ControlServer {
  servers: Server[];
  /** Stops listening and drops every client (watchers included), so the daemon can exit at once. */
  close(): Promise<void>;
}

type Extra = Record<string, () => Promise<Record<string, unknown>>>;

function handleClient(sock: Socket, engine: Engine, extra: Extra, readOnly: boolean): void {
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
          if (readOnly && !(READ_ONLY_REQUESTS as readonly (string | undefined)[]).includes(req.cmd)) {
            throw new BasaltError(COMMON_ERRORS.E_PERMISSION, `'${String(req.cmd)}' is not a read-only request; send it on the action socket`, { hint: `run it as root or as a member of the ${UPDATE_GROUP} group` });
          }
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
              if (!h) throw new BasaltError(COMMON_ERRORS.E_USAGE, `unknown request '${String(req.cmd)}'`);
              reply({ ok: true, ...(await h()) });
            }
          }
        } catch (e) {
          const err = isBasaltError(e) ? e : new BasaltError(UE_ERRORS.E_REQUEST, (e as Error).message);
          reply({ ok: false, error: { code: err.code, message: err.message, hint: err.hint } });
        }
      })();
    }
  });
}

async function listen(path: string, onClient: (s: Socket) => void, fd?: number): Promise<Server> {
  if (fd === undefined) {
    await mkdir(dirname(path), { recursive: true });
    await rm(path, { force: true });
  }
  const server = createServer(onClient);
  await new Promise<void>((res, rej) => {
    server.once('error', (e) => rej(new BasaltError(UE_ERRORS.E_LISTEN, `${fd === undefined ? path : `socket fd ${fd} (${path})`}: ${e.message}`)));
    if (fd === undefined) server.listen(path, () => res());
    else server.listen({ fd }, () => res());
  });
  return server;
}

/**
 * Pure: the sockets systemd passed (socket activation: LISTEN_PID, LISTEN_FDS,
 * LISTEN_FDNAMES from update-engine.socket's FileDescriptorName=action and
 * update-engine-status.socket's =status; the first fd is 3).
 */
export function activatedSockets(env: NodeJS.ProcessEnv, pid: number): { action?: number; status?: number } {
  if (env['LISTEN_PID'] !== String(pid)) return {};
  const n = Number(env['LISTEN_FDS'] ?? '0');
  if (!Number.isInteger(n) || n <= 0) return {};
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  const out: { action?: number; status?: number } = {};
  for (let i = 0; i < n; i++) {
    if (names[i] === 'action') out.action = 3 + i;
    else if (names[i] === 'status') out.status = 3 + i;
  }
  return out;
}

/**
 * Serves the action socket at `path` (0660, group basalt-update when the group
 * exists, else root only) and the status socket beside it (0666). Sockets that
 * systemd passed (`opts.fds`) are used as they are: their units set the modes.
 */
export async function serveControl(path: string, engine: Engine, extra: Extra, opts: { gid?: number | undefined; fds?: { action?: number; status?: number } } = {}): Promise<ControlServer> {
  const clients = new Set<Socket>();
  const track = (readOnly: boolean) => (sock: Socket) => {
    clients.add(sock);
    sock.on('close', () => clients.delete(sock));
    handleClient(sock, engine, extra, readOnly);
  };
  const fds = opts.fds ?? {};
  const action = await listen(path, track(false), fds.action);
  if (fds.action === undefined) {
    if (opts.gid !== undefined && process.getuid?.() === 0) await chown(path, 0, opts.gid).catch(() => {});
    await chmod(path, opts.gid !== undefined ? 0o660 : 0o600).catch(() => {});
  }
  const statusPath = statusSocketFor(path);
  const status = await listen(statusPath, track(true), fds.status);
  if (fds.status === undefined) await chmod(statusPath, 0o666).catch(() => {});
  const servers = [action, status];
  return {
    servers,
    close: async () => {
      const closed = Promise.all(servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
      // close() waits for open connections: drop them (watchers never end by themselves).
      for (const c of clients) c.destroy();
      await closed;
    },
  };
}

/** How long a client waits for the daemon's first reply. */
const FIRST_REPLY_MS = 120_000;

/** The error for a socket that could not be reached. */
function unreachable(path: string, cmd: string, e: NodeJS.ErrnoException): BasaltError {
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    return new BasaltError(COMMON_ERRORS.E_PERMISSION, `'${cmd}' needs root or the ${UPDATE_GROUP} group (${path}: permission denied)`, { hint: `run it with sudo, or add the user to ${UPDATE_GROUP}; status needs neither` });
  }
  return new BasaltError(UE_ERRORS.E_NO_DAEMON, `cannot reach update-engine at ${path}: ${e.code ?? e.message}`, { hint: "is 'basalt update-engine' running? (systemctl status update-engine)" });
}

/**
 * Sends one request and returns the first reply (or streams with onLine for
 * watch). `path` is the action socket; read-only requests go to the status
 * socket beside it, so that they need no privilege.
 */
export function request(path: string, cmd: string, onLine?: (o: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  // The client and the daemon come from the same image, so the status socket is always there.
  return requestOn((READ_ONLY_REQUESTS as readonly string[]).includes(cmd) ? statusSocketFor(path) : path, cmd, onLine);
}

function requestOn(path: string, cmd: string, onLine?: (o: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let first: Record<string, unknown> | undefined;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ cmd }) + '\n'));
    sock.on('error', (e: NodeJS.ErrnoException) => reject(unreachable(path, cmd, e)));
    // The first answer is due within FIRST_REPLY_MS (systemd may be starting the daemon for us).
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new BasaltError(UE_ERRORS.E_NO_DAEMON, `update-engine did not answer '${cmd}' on ${path} within ${FIRST_REPLY_MS / 1000} s`, { hint: 'see systemctl status update-engine and journalctl -u update-engine' }));
    }, FIRST_REPLY_MS);
    sock.on('close', () => clearTimeout(timer));
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let o: Record<string, unknown>;
        try {
          o = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        } catch {
          sock.destroy();
          reject(new BasaltError(UE_ERRORS.E_REQUEST, `update-engine sent a line that is not JSON on ${path}`, { hint: 'is another program listening on that socket?' }));
          return;
        }
        buf = buf.slice(nl + 1);
        if (!first) {
          first = o;
          clearTimeout(timer);
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

const STATE_WORDS: Record<string, string> = {
  UPDATE_STATUS_IDLE: 'idle',
  UPDATE_STATUS_CHECKING_FOR_UPDATE: 'checking for an update',
  UPDATE_STATUS_UPDATE_AVAILABLE: 'an update is available',
  UPDATE_STATUS_DOWNLOADING: 'downloading',
  UPDATE_STATUS_VERIFYING: 'verifying',
  UPDATE_STATUS_FINALIZING: 'finalizing',
  UPDATE_STATUS_UPDATED_NEED_REBOOT: 'updated, waiting for a reboot',
  UPDATE_STATUS_REPORTING_ERROR_EVENT: 'reporting an error',
};

/** Pure: how long ago `then` (unix seconds) was, in words. */
function ago(then: number, now: number): string {
  const s = Math.max(0, Math.round(now - then));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** Pure: `basalt update status` for a person (`now` in unix seconds). */
export function describeStatus(s: Status, now: number): string {
  const rows: [string, string][] = [
    ['State', `${STATE_WORDS[s.status] ?? s.status} (${s.status})`],
    ['Running', `${s.currentVersion} on ${s.channel}, slot ${s.bootedSlot}`],
    ['Server', s.server],
    ['Last check', s.lastCheckedTime > 0 ? `${new Date(s.lastCheckedTime * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')} (${ago(s.lastCheckedTime, now)})` : 'never'],
  ];
  if (s.status !== 'UPDATE_STATUS_IDLE' || s.newSize > 0) {
    rows.push(['New version', `${s.newVersion} (${(s.newSize / 1e6).toFixed(1)} MB)${s.status === 'UPDATE_STATUS_DOWNLOADING' ? `, ${Math.floor(s.progress * 100)} % downloaded` : ''}`]);
  }
  if (s.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT') rows.push(['Next', 'the new slot boots at the next reboot (locksmithd reboots per REBOOT_STRATEGY)']);
  if (s.lastError) rows.push(['Last error', `${s.lastError.code}: ${s.lastError.message}`]);
  if (s.blocked.length) rows.push(['Refused', `${s.blocked.join(', ')} (rolled back on this machine; basalt update unblock forgets them)`]);
  const w = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows.map(([k, v]) => `${(k + ':').padEnd(w)} ${v}`).join('\n') + '\n';
}

/**
 * Throws E_PERMISSION unless this process runs as root or in the update group:
 * for actions that are not carried over the action socket (locksmithctl lock,
 * unlock, set-max), so that they keep the same rule.
 */
export async function requireActionRights(what: string, etcGroup = '/etc/group'): Promise<void> {
  if (process.getuid?.() === 0) return;
  const gid = await updateGroupId(etcGroup);
  if (gid !== undefined && (process.getgroups?.() ?? []).includes(gid)) return;
  throw new BasaltError(COMMON_ERRORS.E_PERMISSION, `${what} needs root or the ${UPDATE_GROUP} group`, { hint: `run it with sudo, or add the user to ${UPDATE_GROUP}; status needs neither` });
}

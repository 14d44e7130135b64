/**
 * A small QMP (QEMU Machine Protocol) client. Basalt listens on a unix socket
 * and QEMU connects to it (`-chardev socket,server=off`), so there is no race
 * and no polling for a socket file.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { BasaltError } from '../../common/src/errors.js';
import { QEMU_ERRORS } from './errors.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

export class Qmp extends EventEmitter {
  private sock: Socket | undefined;
  private server: Server | undefined;
  private buf = '';
  private nextId = 1;
  private pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private ready: Promise<void> | undefined;
  private sockClosed = false;

  /** QEMU arguments that make it connect to this client's socket. */
  static args(path: string): string[] {
    return ['-chardev', `socket,id=qmp0,path=${path},server=off`, '-mon', 'chardev=qmp0,mode=control'];
  }

  /** Starts listening on `path`; `ready()` resolves once QEMU connected and capabilities were negotiated. */
  async listen(path: string): Promise<void> {
    this.server = createServer();
    let onSock!: (s: Socket) => void;
    const gotSock = new Promise<Socket>((res) => (onSock = res));
    this.server.once('connection', onSock);
    await new Promise<void>((res, rej) => {
      this.server!.once('error', rej);
      this.server!.listen(path, () => res());
    });
    this.ready = gotSock.then((s) => this.attach(s));
    this.ready.catch(() => {});
  }

  private attach(s: Socket): Promise<void> {
    this.sock = s;
    s.on('error', () => {});
    let greeted!: () => void;
    const greeting = new Promise<void>((res) => (greeted = res));
    s.on('data', (d) => {
      this.buf += d.toString('utf8');
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('QMP' in msg) greeted();
        else if ('event' in msg) this.emit('event', msg);
        else if ('id' in msg) {
          const p = this.pending.get(String(msg['id']));
          if (!p) continue;
          this.pending.delete(String(msg['id']));
          if ('error' in msg) p.reject(new BasaltError(QEMU_ERRORS.E_QMP, `QMP error: ${JSON.stringify(msg['error'])}`));
          else p.resolve(msg['return']);
        }
      }
    });
    s.on('close', () => {
      this.sockClosed = true;
      for (const p of this.pending.values()) p.reject(new BasaltError(QEMU_ERRORS.E_QMP, 'QMP connection closed (QEMU exited)'));
      this.pending.clear();
      this.emit('close');
    });
    return greeting.then(() => this.send('qmp_capabilities')).then(() => undefined);
  }

  private send<T>(command: string, args?: Record<string, unknown>): Promise<T> {
    const sock = this.sock;
    if (!sock || sock.destroyed) return Promise.reject(new BasaltError(QEMU_ERRORS.E_QMP, 'QMP is not connected'));
    const id = String(this.nextId++);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /** Runs a QMP command once QEMU is connected. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (!this.ready) throw new BasaltError(QEMU_ERRORS.E_QMP, 'QMP is not listening');
    await this.ready;
    return this.send<T>(command, args);
  }

  /** Waits for QEMU to connect, or rejects at the deadline. */
  async whenReady(timeoutMs: number): Promise<void> {
    if (!this.ready) throw new BasaltError(QEMU_ERRORS.E_QMP, 'QMP is not listening');
    let t: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.ready, new Promise((_, rej) => (t = setTimeout(() => rej(new BasaltError(QEMU_ERRORS.E_QMP, `QEMU did not connect to QMP within ${timeoutMs} ms`)), timeoutMs)))]);
    } finally {
      clearTimeout(t);
    }
  }

  /**
   * Resolves once QEMU's end of the connection is closed (so every event it
   * sent has been read), or after `timeoutMs`, or at once when it never connected.
   */
  async drained(timeoutMs: number): Promise<void> {
    if (!this.sock || this.sockClosed) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => this.sock!.once('close', r)), new Promise((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
  }

  close(): void {
    this.sock?.destroy();
    this.server?.close();
  }
}

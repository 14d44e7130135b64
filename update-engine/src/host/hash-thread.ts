/**
 * SHA-256 on a worker thread, so that hashing the payload costs the event
 * loop that receives it nothing, and allocates nothing per chunk: bytes in a
 * SharedArrayBuffer are hashed where they are (the apply's chunk buffers are
 * shared), other bytes are copied into one first. Two uses: one-shot digests
 * of chunks, and a running hash over the image (format 1). The worker takes
 * requests in order and answers each.
 */
import { Worker } from 'node:worker_threads';

// CommonJS evaluated by the worker: no file of its own, so it works the same from dist/ and from the bundle.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let running = createHash('sha256');
parentPort.on('message', ({ id, op, buf, off, len }) => {
  try {
    if (op === 'digest') parentPort.postMessage({ id, hex: createHash('sha256').update(new Uint8Array(buf, off, len)).digest('hex') });
    else if (op === 'update') { running.update(new Uint8Array(buf, off, len)); parentPort.postMessage({ id }); }
    else { const hex = running.digest('hex'); running = createHash('sha256'); parentPort.postMessage({ id, hex }); }
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});
`;

interface Reply {
  id: number;
  hex?: string;
  error?: string;
}

/** A view of `b` in shared memory: `b` itself when it is, else a copy. */
export function shared(b: Uint8Array): { buf: SharedArrayBuffer; off: number; len: number } {
  if (b.buffer instanceof SharedArrayBuffer) return { buf: b.buffer, off: b.byteOffset, len: b.byteLength };
  const buf = new SharedArrayBuffer(b.byteLength);
  new Uint8Array(buf).set(b);
  return { buf, off: 0, len: b.byteLength };
}

/** A Buffer of `n` bytes in shared memory (hashed by HashThread without a copy). */
export function sharedBuffer(n: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(n));
}

export class HashThread {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(hex: string): void; reject(e: Error): void }>();
  private failed: Error | undefined;

  constructor() {
    this.worker.on('message', (m: Reply) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error !== undefined) w?.reject(new Error(`hashing thread: ${m.error}`));
      else w?.resolve(m.hex ?? '');
    });
    const fail = (e: Error) => {
      this.failed ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', () => fail(new Error('the hashing thread exited')));
  }

  private ask(op: 'digest' | 'update' | 'final', b?: Uint8Array): Promise<string> {
    if (this.failed) return Promise.reject(this.failed);
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, ...(b ? shared(b) : {}) });
    });
  }

  /** SHA-256 (hex) of `b`. A shared `b` must not change until this settles. */
  digest(b: Uint8Array): Promise<string> {
    return this.ask('digest', b);
  }

  /** Adds `b` to the running hash (after everything asked before). */
  async update(b: Uint8Array): Promise<void> {
    await this.ask('update', b);
  }

  /** The running hash's digest (hex); the running hash starts over. */
  final(): Promise<string> {
    return this.ask('final');
  }

  /** Ends the worker; what is still asked fails. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

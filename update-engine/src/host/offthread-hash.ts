/**
 * An incremental SHA-256 on a worker thread: the apply hashes the whole image
 * there while its event loop receives the payload, so on two cores the
 * image's hash costs the transfer nothing. Bytes are copied to the worker
 * (structured clone), so the caller may reuse its buffer at once; at most
 * MAX_QUEUED updates wait in the worker, so memory stays bounded.
 */
import { Worker } from 'node:worker_threads';

/** Updates sent to the worker and not yet hashed before update() waits. */
export const MAX_QUEUED = 4;

// CommonJS evaluated by the worker: no file of its own, so it works the same from dist/ and from the bundle.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const h = require('node:crypto').createHash('sha256');
parentPort.on('message', (m) => {
  if (m === 'digest') parentPort.postMessage({ digest: h.digest('hex') });
  else { h.update(m); parentPort.postMessage({ ack: 1 }); }
});
`;

export class OffThreadSha256 {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private queued = 0;
  private wake: (() => void) | undefined;
  private onDigest: ((hex: string) => void) | undefined;
  private failed: Error | undefined;

  constructor() {
    this.worker.on('message', (m: { ack?: number; digest?: string }) => {
      if (m.ack) {
        this.queued--;
        this.wake?.();
      } else if (m.digest !== undefined) this.onDigest?.(m.digest);
    });
    this.worker.on('error', (e: Error) => {
      this.failed = e;
      this.wake?.();
    });
    this.worker.on('exit', () => {
      this.failed ??= new Error('the hashing thread exited');
      this.wake?.();
    });
  }

  /** Hashes `b` next (a copy of it: the caller may reuse `b` when this returns). */
  async update(b: Uint8Array): Promise<void> {
    while (this.queued >= MAX_QUEUED && !this.failed) await new Promise<void>((r) => (this.wake = r));
    if (this.failed) throw this.failed;
    this.queued++;
    this.worker.postMessage(b);
  }

  /** The hex digest of everything updated, once hashed; ends the worker. */
  async digest(): Promise<string> {
    try {
      if (this.failed) throw this.failed;
      const hex = new Promise<string>((resolve, reject) => {
        this.onDigest = resolve;
        this.worker.once('error', reject);
      });
      this.worker.postMessage('digest');
      return await hex;
    } finally {
      await this.close();
    }
  }

  /** Ends the worker (idempotent). */
  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

/** Reading a request body within a byte cap (the Omaha endpoint, the admin API, FleetLock). */
import type { IncomingMessage } from 'node:http';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';

/** The body as text; E_BODY_TOO_LARGE as soon as it is announced or passed beyond `max` bytes. */
export async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const len = Number(req.headers['content-length'] ?? '0');
  if (len > max) throw new BasaltError(UE_ERRORS.E_BODY_TOO_LARGE, `request body of ${len} bytes exceeds ${max}`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of req) {
    total += (c as Buffer).length;
    if (total > max) throw new BasaltError(UE_ERRORS.E_BODY_TOO_LARGE, `request body exceeds ${max} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

import type { IncomingMessage } from 'node:http';
import { receivedRequestPool } from '../../core/buffer-pool.js';
import { TesseraError } from '../../core/errors.js';

/**
 * Read a request body into one Buffer, with the checks Fastify's own reader makes: a body over
 * `limit` bytes (by its Content-Length before reading, or as it arrives) is refused 413, one
 * that ends short of its Content-Length 400, a connection lost mid-body 400.
 *
 * The chunks are joined, once the body is complete, into memory lent from
 * {@link receivedRequestPool} when the pool serves its length, instead of a new buffer: a ResNet
 * image over the V2 binary extension is 600 KB, and V8 runs a full collection for every 64 MB
 * of new buffers that outlive a scavenge. Nothing is lent before the body has arrived, so a
 * client that declares a large Content-Length and sends little holds no more memory than it
 * sent. The route that reads the body gives it back (`receivedRequestPool.giveBack`) once nothing
 * reads it any more; a body nobody gives back is collected like any other.
 */
export function readBody(payload: IncomingMessage, limit: number, done: (error: Error | null, body?: Buffer) => void): void {
  const header = payload.headers['content-length'];
  // Node's HTTP parser has already refused a Content-Length that is not a number.
  const declared = header === undefined ? undefined : Number(header);
  if (declared !== undefined && declared > limit) {
    done(tooLarge(limit));
    return;
  }
  const chunks: Buffer[] = [];
  let received = 0;
  let settled = false;
  const finish = (error: Error | null, body?: Buffer): void => {
    if (settled) return;
    settled = true;
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
    done(error, body);
  };
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > limit) {
      finish(tooLarge(limit));
      return;
    }
    chunks.push(chunk);
  };
  const onEnd = (): void => {
    if (declared !== undefined && received !== declared) {
      finish(lengthMismatch());
      return;
    }
    finish(null, join(chunks, received, payload.headers['content-encoding'] === undefined));
  };
  const onError = (error: Error & { statusCode?: number }): void => {
    error.statusCode ??= 400;
    finish(error);
  };
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
}

/** The chunks in one buffer: lent from the pool when it serves that length and the bytes are the body as sent (not compressed). */
function join(chunks: readonly Buffer[], length: number, poolable: boolean): Buffer {
  if (!poolable || !receivedRequestPool.serves(length)) return Buffer.concat(chunks, length);
  const body = receivedRequestPool.lend(length);
  let offset = 0;
  for (const chunk of chunks) offset += chunk.copy(body, offset);
  return body;
}

function tooLarge(limit: number): TesseraError {
  return new TesseraError('PAYLOAD_TOO_LARGE', `the request body exceeds the limit of ${limit} bytes`);
}

function lengthMismatch(): TesseraError {
  return new TesseraError('INVALID_REQUEST', 'the request body size did not match its Content-Length');
}

import { isUtf8 } from 'node:buffer';
import { promisify } from 'node:util';
import { gunzip, inflate, inflateRaw, type InputType, type ZlibOptions } from 'node:zlib';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TesseraError } from '../../core/errors.js';
import { receivedRequestPool } from '../../core/buffer-pool.js';
import { readBody } from './body-reader.js';

/**
 * Request bodies: every body arrives as one Buffer whatever its content type (each protocol
 * parses its own, so parse errors carry protocol-specific messages). Bodies sent with
 * `Content-Encoding: gzip | deflate` (RFC 9110 §8.4; tritonclient's request compression) are
 * decompressed here, bounded: the body limit applies to the compressed bytes (Fastify's check)
 * and again to the decompressed bytes (zlib's maxOutputLength), so a zip bomb stops at the
 * limit and is answered 413 instead of filling memory.
 */

type Decompress = (buffer: InputType, options: ZlibOptions) => Promise<Buffer>;

const gunzipAsync = promisify(gunzip) as Decompress;
const inflateAsync = promisify(inflate) as Decompress;
const inflateRawAsync = promisify(inflateRaw) as Decompress;

/** Content-Encoding values accepted on requests. */
export const REQUEST_ENCODINGS = ['gzip', 'x-gzip', 'deflate', 'identity'] as const;

/** Register the one body parser: raw Buffers for every content type (body-reader.ts), decompressed when encoded. */
export function registerBodyParser(app: FastifyInstance, bodyLimitBytes: number): void {
  app.removeAllContentTypeParsers();
  // Callback style: a body without Content-Encoding is handed on without the promise and the
  // extra turn of the microtask queue an async parser costs every request.
  app.addContentTypeParser('*', (request: FastifyRequest, payload: IncomingMessage, done: (error: Error | null, body?: Buffer) => void) => {
    readBody(payload, bodyLimitBytes, (error, raw) => {
      const encoding = request.headers['content-encoding'];
      if (error !== null || raw === undefined || encoding === undefined) {
        done(error, raw);
        return;
      }
      decodeContentEncoding(raw, encoding, bodyLimitBytes).then(
        (decoded) => done(null, decoded),
        (failure: Error) => done(failure),
      );
    });
  });
}

/**
 * Undo a request's Content-Encoding. Several codings (`gzip, identity`) are applied in order,
 * so they are undone in reverse (RFC 9110 §8.4). Unknown codings answer 415.
 */
export async function decodeContentEncoding(body: Buffer, header: string | undefined, limit: number): Promise<Buffer> {
  if (header === undefined || header.trim() === '') return body;
  const codings = header
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '');
  let out = body;
  for (const coding of codings.reverse()) {
    if (coding === 'identity') continue;
    if (coding === 'gzip' || coding === 'x-gzip') out = await bounded(gunzipAsync, out, limit, 'gzip');
    else if (coding === 'deflate') out = await inflateEither(out, limit);
    else {
      throw new TesseraError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding '${coding}' is not supported; send gzip, deflate or identity`);
    }
  }
  return out;
}

/** HTTP's "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2), but some clients send raw deflate: accept both. */
async function inflateEither(body: Buffer, limit: number): Promise<Buffer> {
  try {
    return await bounded(inflateAsync, body, limit, 'deflate');
  } catch (error) {
    if (error instanceof TesseraError && error.code === 'PAYLOAD_TOO_LARGE') throw error;
    return bounded(inflateRawAsync, body, limit, 'deflate');
  }
}

async function bounded(decompress: Decompress, body: Buffer, limit: number, name: string): Promise<Buffer> {
  try {
    // Large output chunks (zlib's default is 16 KiB): a body inflated to megabytes is then a
    // few allocations the allocator hands back on free, not hundreds of small ones that stay
    // resident as fragmented heap (measured: 11 zip bombs left RSS 90 MB up, with 256 KiB chunks none).
    return await decompress(body, { maxOutputLength: limit, chunkSize: Math.max(16 * 1024, Math.min(256 * 1024, limit)) });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') {
      throw new TesseraError('PAYLOAD_TOO_LARGE', `the ${name}-decompressed request body exceeds the limit of ${limit} bytes`);
    }
    throw new TesseraError('INVALID_REQUEST', `the request body is not valid ${name} data: ${(error as Error).message}`);
  }
}

/** The request's media type, lower case, without parameters ('' when absent). */
export function mediaTypeOf(request: FastifyRequest): string {
  return mediaType(request.headers['content-type']);
}

/** `application/json; charset=utf-8` → `application/json`. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

/** application/json and any `+json` type (RFC 6839). */
export function isJsonMediaType(type: string): boolean {
  return type === 'application/json' || type.endsWith('+json');
}

/** The raw body Buffer of a request (empty when it had none). */
export function rawBody(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}

/** Parse a raw request body as JSON, answering INVALID_REQUEST with the parser's reason. */
export function parseJsonBody(body: unknown): unknown {
  if (!Buffer.isBuffer(body) || body.length === 0) throw new TesseraError('INVALID_REQUEST', 'the request body is empty; expected a JSON object');
  return parseJsonText(body, 'the request body');
}

/**
 * Parse a request's body as JSON and give its memory back to the pool it was read into
 * (body-reader.ts): the parsed value holds no view of the bytes. The route must not read
 * `request.body` afterwards.
 */
export function takeJsonBody(request: FastifyRequest): unknown {
  try {
    return parseJsonBody(request.body);
  } finally {
    if (Buffer.isBuffer(request.body)) receivedRequestPool.giveBack(request.body);
  }
}

/** Parse bytes as JSON; `what` names them in the error message. */
export function parseJsonText(bytes: Buffer, what: string): unknown {
  // JSON text is UTF-8 (RFC 8259 §8.1). Decoding invalid bytes would silently turn them into
  // U+FFFD, changing names and BYTES data; refuse them instead.
  if (!isUtf8(bytes)) {
    throw new TesseraError('INVALID_REQUEST', `${what} is not valid JSON: it is not UTF-8 text (send arbitrary bytes as BYTES through the binary tensor data extension)`);
  }
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new TesseraError('INVALID_REQUEST', `${what} is not valid JSON: ${(error as Error).message}`);
  }
}

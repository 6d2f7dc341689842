import { createRequire } from 'node:module';
import { BufferPool, receivedRequestPool } from '../../core/buffer-pool.js';
import type { Logger } from '../../core/logger.js';

/**
 * gRPC's length-prefixed messages (a 1-byte compressed flag, a 4-byte big-endian length, the
 * message) put back together from the HTTP/2 DATA chunks they arrive in, with the memory of
 * large messages lent from a pool.
 *
 * grpc-js assembles each received message with Buffer.concat, so every ResNet-sized request
 * costs a fresh 600 KB ArrayBuffer on top of the DATA chunks it arrived in. V8 starts a full
 * collection for every 64 MB of new ArrayBuffers (core/buffer-pool.ts), so over gRPC the server
 * ran one every ~0.6 s at ResNet concurrency 16 against ~1 s over the V2 binary extension, and
 * its event loop spent ~0.3 ms more per request. With message memory lent again (and HTTP
 * bodies too, http/body-reader.ts) none runs under that load (docs/grpc.md).
 *
 * {@link MessageFramer} does what grpc-js's StreamDecoder does (same messages, same error for
 * a message over the size limit), except that a message the pool serves is copied into lent
 * memory instead of a new buffer. {@link installPooledFraming} puts it under grpc-js's decoder.
 * The pool only takes memory back when told to (BufferPool.giveBack); received-messages.ts says
 * when that is for a request.
 */
export class MessageFramer {
  /** The 5-byte prefix of the message being read. */
  private readonly prefix = Buffer.alloc(5);
  private prefixBytes = 0;
  /** Length of the message being read; -1 while its prefix is. */
  private length = -1;
  private remaining = 0;
  /** Slices of the chunks the message being read arrived in. */
  private parts: Buffer[] = [];

  /** `maxMessageBytes`: largest message accepted, -1 for no limit (grpc-js's convention). */
  constructor(
    private readonly maxMessageBytes: number,
    private readonly pool: BufferPool,
  ) {}

  /** The messages `chunk` completes, each with its 5-byte prefix. Throws on a message over the size limit. */
  write(chunk: Buffer): Buffer[] {
    const messages: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (this.length === -1) {
        const n = Math.min(5 - this.prefixBytes, chunk.length - pos);
        chunk.copy(this.prefix, this.prefixBytes, pos, pos + n);
        this.prefixBytes += n;
        pos += n;
        if (this.prefixBytes < 5) break;
        this.prefixBytes = 0;
        const length = this.prefix.readUInt32BE(1);
        if (this.maxMessageBytes !== -1 && length > this.maxMessageBytes) {
          throw new Error(`Received message larger than max (${length} vs ${this.maxMessageBytes})`);
        }
        if (length === 0) {
          messages.push(Buffer.from(this.prefix));
          continue;
        }
        this.length = length;
        this.remaining = length;
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - pos);
      this.parts.push(chunk.subarray(pos, pos + n));
      this.remaining -= n;
      pos += n;
      if (this.remaining === 0) messages.push(this.assemble());
    }
    return messages;
  }

  private assemble(): Buffer {
    const total = this.length + 5;
    const message = this.pool.serves(total) ? this.pool.lend(total) : Buffer.allocUnsafe(total);
    let offset = this.prefix.copy(message, 0);
    for (const part of this.parts) offset += part.copy(message, offset);
    this.parts = [];
    this.length = -1;
    return message;
  }
}

/** grpc-js's decoder of received messages, as far as this module uses it. */
interface GrpcStreamDecoder {
  readonly maxReadMessageLength: number;
  write(data: Buffer): Buffer[];
}
type GrpcStreamDecoderClass = new (maxReadMessageLength: number) => GrpcStreamDecoder;

let installed: boolean | undefined;

/**
 * Make grpc-js assemble received messages with {@link MessageFramer} over
 * {@link receivedRequestPool}. grpc-js has no option for this: its StreamDecoder (an internal
 * module, the same since grpc-js 1.0) gets its `write` replaced, once per process, for servers
 * and clients alike (a client's messages are never given back, so they are collected as
 * before). Checked first: if the module or the field the size limit is read from is not what
 * is expected, nothing is replaced and messages are assembled by grpc-js as before (slower,
 * never wrong). Returns whether pooled framing is in place.
 */
export function installPooledFraming(logger?: Logger): boolean {
  if (installed !== undefined) return installed;
  installed = false;
  let decoderClass: GrpcStreamDecoderClass | undefined;
  try {
    const module: unknown = createRequire(import.meta.url)('@grpc/grpc-js/build/src/stream-decoder.js');
    decoderClass = (module as { StreamDecoder?: GrpcStreamDecoderClass }).StreamDecoder;
  } catch {
    decoderClass = undefined;
  }
  const probe = typeof decoderClass === 'function' ? new decoderClass(12345) : undefined;
  if (decoderClass === undefined || probe?.maxReadMessageLength !== 12345 || typeof decoderClass.prototype.write !== 'function') {
    logger?.warn({}, 'gRPC: grpc-js message decoder not as expected; received messages are assembled by grpc-js');
    return false;
  }
  const framers = new WeakMap<GrpcStreamDecoder, MessageFramer>();
  decoderClass.prototype.write = function write(this: GrpcStreamDecoder, data: Buffer): Buffer[] {
    let framer = framers.get(this);
    if (framer === undefined) {
      framer = new MessageFramer(this.maxReadMessageLength, receivedRequestPool);
      framers.set(this, framer);
    }
    return framer.write(data);
  };
  installed = true;
  return true;
}

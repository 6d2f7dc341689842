/**
 * Memory for large received messages, handed back and lent again instead of allocated anew.
 *
 * Why: V8 counts the memory behind ArrayBuffers and starts a full (mark-compact) collection
 * once 64 MB more of it is held than after the last one, however little JavaScript the process
 * allocates. Buffers that die young go in scavenges, but a request's body lives as long as the
 * request (queue and inference), outlives them, and only a mark-compact frees it: a server
 * receiving 600 KB images ran one every 60-100 requests, each marking the whole heap. Memory
 * lent again is allocated, and counted, once.
 *
 * The rule that makes reuse safe is the borrower's: a buffer is given back only once nothing
 * reads it any more (for a received request: the engine has settled it and its answer is
 * encoded; see Engine.infer). A buffer that is never given back is simply collected, like any
 * other: nothing is lost but the reuse.
 */

export interface BufferPoolLimits {
  /** Smallest length lent from the pool; shorter buffers are cheap to allocate. */
  readonly minBytes: number;
  /** Largest length lent from the pool. */
  readonly maxBytes: number;
  /** Most bytes kept while not lent; a buffer given back beyond this is left to the collector. */
  readonly maxIdleBytes: number;
}

export const DEFAULT_BUFFER_POOL_LIMITS: BufferPoolLimits = {
  minBytes: 64 * 1024,
  maxBytes: 64 * 1024 * 1024,
  maxIdleBytes: 64 * 1024 * 1024,
};

/** Capacities are multiples of this, so that a buffer serves the next message of about the same size. */
const GRANULE_BYTES = 64 * 1024;

export interface BufferPoolCounts {
  /** Buffers lent. */
  lent: number;
  /** Of those, lent from memory given back earlier. */
  reused: number;
  /** Buffers given back. */
  returned: number;
}

export class BufferPool {
  /** Memory given back and not lent since, most recent last. */
  private readonly idle: ArrayBuffer[] = [];
  private idleBytes = 0;
  /** Memory lent and not given back: only these are taken back. */
  private readonly out = new WeakSet<ArrayBuffer>();
  readonly counts: BufferPoolCounts = { lent: 0, reused: 0, returned: 0 };

  constructor(readonly limits: BufferPoolLimits = DEFAULT_BUFFER_POOL_LIMITS) {}

  /** Whether a buffer of `length` bytes is lent from the pool (else the caller allocates as usual). */
  serves(length: number): boolean {
    return length >= this.limits.minBytes && length <= this.limits.maxBytes;
  }

  /**
   * A buffer of `length` bytes (uninitialised), on memory given back earlier when some of about
   * that size is idle. The caller gives it back with {@link giveBack} once nothing reads it.
   */
  lend(length: number): Buffer {
    let memory = this.takeIdle(length);
    if (memory === undefined) {
      memory = Buffer.allocUnsafeSlow(Math.ceil(length / GRANULE_BYTES) * GRANULE_BYTES).buffer as ArrayBuffer;
    } else {
      this.counts.reused++;
    }
    this.out.add(memory);
    this.counts.lent++;
    return Buffer.from(memory, 0, length);
  }

  /**
   * Give back the memory under `view` (any view of a lent buffer). False, and nothing happens,
   * when that memory is not out on loan from this pool: not from it, or already given back.
   */
  giveBack(view: Uint8Array): boolean {
    const memory = view.buffer;
    if (!(memory instanceof ArrayBuffer) || !this.out.delete(memory)) return false;
    this.counts.returned++;
    // Memory transferred to another thread since (detached, length 0) cannot be lent again.
    if (memory.byteLength > 0 && this.idleBytes + memory.byteLength <= this.limits.maxIdleBytes) {
      this.idle.push(memory);
      this.idleBytes += memory.byteLength;
    }
    return true;
  }

  /** Bytes idle in the pool. */
  get idleByteCount(): number {
    return this.idleBytes;
  }

  /** The smallest idle buffer that holds `length` bytes and is less than twice that, most recent first on ties. */
  private takeIdle(length: number): ArrayBuffer | undefined {
    let best = -1;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const capacity = this.idle[i]!.byteLength;
      if (capacity < length || capacity > 2 * length + GRANULE_BYTES) continue;
      if (best === -1 || capacity < this.idle[best]!.byteLength) best = i;
    }
    if (best === -1) return undefined;
    const [memory] = this.idle.splice(best, 1);
    this.idleBytes -= memory!.byteLength;
    return memory;
  }
}

/**
 * The process's pool for received requests: gRPC messages (src/protocols/grpc/message-framing.ts)
 * and HTTP bodies (src/protocols/http/body-reader.ts), so that what is kept idle is bounded once
 * for both.
 */
export const receivedRequestPool = new BufferPool();

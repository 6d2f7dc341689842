/**
 * Snappy compression (raw format, as Parquet's SNAPPY codec uses it) into one preallocated
 * buffer: the reference algorithm (greedy matches found through a hash of 4-byte sequences,
 * lookups skipping faster through incompressible data), without the per-literal allocations of
 * a general-purpose writer, so that compressing output pages makes little garbage.
 *
 * The emitters are top-level functions that take the write position and return the next one:
 * closures created per call would be new call targets at every call, and the optimized code of
 * the compressor (which inlines them) would be thrown away and rebuilt call after call.
 */

const MAX_HASH_BITS = 14;
const MAX_OFFSET = 0xffff;
const INPUT_MARGIN = 15;

let table = new Int32Array(1 << MAX_HASH_BITS);

/** Calls made at load to settle the compressor's type feedback (see the end of this file). */
const PRIMING_CALLS = 14;

/** Largest compressed size of `n` bytes (the reference's bound). */
export function maxCompressedLength(n: number): number {
  return 32 + n + Math.floor(n / 6);
}

function load32(a: Uint8Array, i: number): number {
  return a[i]! | (a[i + 1]! << 8) | (a[i + 2]! << 16) | (a[i + 3]! << 24);
}

function hash(value: number, shift: number): number {
  return Math.imul(value, 0x1e35a7bd) >>> shift;
}

/** A literal of `length` bytes of `input` from `from`, at `op`; returns the position after it. */
function emitLiteral(out: Uint8Array, op: number, input: Uint8Array, from: number, length: number): number {
  const value = length - 1;
  if (value < 60) {
    out[op++] = value << 2;
  } else {
    // Tags 60..63: the length (less one) follows in 1 to 4 little-endian bytes.
    const bytes = value < 0x100 ? 1 : value < 0x10000 ? 2 : value < 0x1000000 ? 3 : 4;
    out[op++] = (59 + bytes) << 2;
    for (let k = 0; k < bytes; k++) out[op++] = (value >>> (8 * k)) & 0xff;
  }
  if (length < 32) {
    for (let k = 0; k < length; k++) out[op + k] = input[from + k]!;
  } else {
    out.set(input.subarray(from, from + length), op);
  }
  return op + length;
}

/** A copy of 4 to 64 bytes from `offset` back, at `op`; returns the position after it. */
function emitCopyUpTo64(out: Uint8Array, op: number, offset: number, length: number): number {
  if (length < 12 && offset < 2048) {
    out[op] = 1 | ((length - 4) << 2) | ((offset >>> 8) << 5);
    out[op + 1] = offset & 0xff;
    return op + 2;
  }
  out[op] = 2 | ((length - 1) << 2);
  out[op + 1] = offset & 0xff;
  out[op + 2] = offset >>> 8;
  return op + 3;
}

/** A copy of any length (at least 4) from `offset` back, at `op`; returns the position after it. */
function emitCopy(out: Uint8Array, op: number, offset: number, length: number): number {
  let left = length;
  while (left >= 68) {
    op = emitCopyUpTo64(out, op, offset, 64);
    left -= 64;
  }
  if (left > 64) {
    op = emitCopyUpTo64(out, op, offset, 60);
    left -= 60;
  }
  return emitCopyUpTo64(out, op, offset, left);
}

/** How many bytes from `a` and from `b` (< a) agree, `a` not going past `end`. */
function matchLength(input: Uint8Array, a: number, b: number, end: number): number {
  let k = 0;
  while (a + k + 4 <= end && load32(input, a + k) === load32(input, b + k)) k += 4;
  while (a + k < end && input[a + k] === input[b + k]) k++;
  return k;
}

/**
 * Snappy-compress `input`; returns a view of the compressed bytes, in `into` when given (at
 * least maxCompressedLength(input.length) bytes), else in a new buffer.
 */
export function snappyCompress(input: Uint8Array, into?: Uint8Array): Uint8Array {
  const n = input.length;
  const out = into !== undefined && into.length >= maxCompressedLength(n) ? into : new Uint8Array(maxCompressedLength(n));
  // Preamble: the uncompressed length as a varint.
  let op = 0;
  for (let v = n; ; ) {
    if (v < 0x80) {
      out[op++] = v;
      break;
    }
    out[op++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  if (n < INPUT_MARGIN) op = n === 0 ? op : emitLiteral(out, op, input, 0, n);
  else op = compressBody(input, out, op);
  return out.subarray(0, op);
}

/** The tags of `input` (at least INPUT_MARGIN bytes) at `op` on; returns the position after them. */
function compressBody(input: Uint8Array, out: Uint8Array, start: number): number {
  const n = input.length;
  let op = start;
  let bits = 1;
  while (1 << bits <= n && bits <= MAX_HASH_BITS) bits++;
  bits--;
  const shift = 32 - bits;
  if (table.length < 1 << bits) table = new Int32Array(1 << MAX_HASH_BITS);
  table.fill(0, 0, 1 << bits);
  const limit = n - INPUT_MARGIN;
  let nextEmit = 0;
  let ip = 1;
  let nextHash = hash(load32(input, ip), shift);
  outer: for (;;) {
    // Find a 4-byte match, looking further apart the longer nothing matches.
    let skip = 32;
    let nextIp = ip;
    let candidate = 0;
    do {
      ip = nextIp;
      const h = nextHash;
      const step = skip >>> 5;
      skip++;
      nextIp = ip + step;
      if (nextIp > limit) break outer;
      nextHash = hash(load32(input, nextIp), shift);
      candidate = table[h]!;
      table[h] = ip;
    } while (ip - candidate > MAX_OFFSET || load32(input, ip) !== load32(input, candidate));
    op = emitLiteral(out, op, input, nextEmit, ip - nextEmit);
    // Emit copies while the bytes right after a match match again.
    for (;;) {
      const base = ip;
      const matched = 4 + matchLength(input, ip + 4, candidate + 4, n);
      ip += matched;
      op = emitCopy(out, op, base - candidate, matched);
      nextEmit = ip;
      if (ip >= limit) break outer;
      table[hash(load32(input, ip - 1), shift)] = ip - 1;
      const current = hash(load32(input, ip), shift);
      candidate = table[current]!;
      table[current] = ip;
      if (ip - candidate > MAX_OFFSET || load32(input, ip) !== load32(input, candidate)) {
        ip++;
        nextHash = hash(load32(input, ip), shift);
        break;
      }
    }
  }
  return nextEmit < n ? emitLiteral(out, op, input, nextEmit, n - nextEmit) : op;
}

/**
 * Bytes that take every path of the compressor: incompressible runs (skipping lookups, long
 * literals), short and long copies, near and far offsets.
 */
function primer(): Uint8Array {
  const bytes = new Uint8Array(3072);
  let seed = 12345;
  const random = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  for (let i = 0; i < 700; i++) bytes[i] = random();
  for (let i = 700; i < 1000; i++) bytes[i] = i % 7;
  const ints = new DataView(bytes.buffer, 1000, 800);
  for (let i = 0; i < 100; i++) ints.setUint32(i * 8, 1_000_000 + i, true);
  for (let i = 1800; i < 2200; i++) bytes[i] = random() & 3;
  bytes.copyWithin(2200, 0, 800);
  return bytes;
}

// Optimizing compilers compile for the paths seen so far: compressing float noise first (the
// usual probes) would leave the copy paths unseen, and the optimized compressor would be
// thrown away and rebuilt (a costly compilation) when the first compressible page comes. Calls
// on a primer that takes every path, at load, settle it once. V8 records what a function sees
// only from its 9th call on, hence the count.
{
  const sample = primer();
  const into = new Uint8Array(maxCompressedLength(sample.length));
  // Cheap calls first (feedback is not recorded yet), then every path a few times; the short
  // input takes the path of tiny pages.
  for (let k = 0; k < PRIMING_CALLS; k++) snappyCompress(k < PRIMING_CALLS - 4 ? sample.subarray(0, k % 2 === 0 ? 9 : 20) : sample, into);
}

/**
 * Snappy compression (raw format, as Parquet's SNAPPY codec uses it) into one preallocated
 * buffer: the reference algorithm (greedy matches found through a hash of 4-byte sequences,
 * lookups skipping faster through incompressible data), without the per-literal allocations of
 * a general-purpose writer, so that compressing output pages makes little garbage.
 */

const MAX_HASH_BITS = 14;
const MAX_OFFSET = 0xffff;
const INPUT_MARGIN = 15;

let table = new Uint32Array(1 << MAX_HASH_BITS);

/** Largest compressed size of `n` bytes (the reference's bound). */
export function maxCompressedLength(n: number): number {
  return 32 + n + Math.floor(n / 6);
}

function load32(a: Uint8Array, i: number): number {
  return (a[i]! | (a[i + 1]! << 8) | (a[i + 2]! << 16) | (a[i + 3]! << 24)) >>> 0;
}

/**
 * Snappy-compress `input`; returns a view of the compressed bytes, in `into` when given (at
 * least maxCompressedLength(input.length) bytes), else in a new buffer.
 */
export function snappyCompress(input: Uint8Array, into?: Uint8Array): Uint8Array {
  const n = input.length;
  const out = into !== undefined && into.length >= maxCompressedLength(n) ? into : new Uint8Array(maxCompressedLength(n));
  let op = 0;
  // Preamble: the uncompressed length as a varint.
  for (let v = n; ; ) {
    if (v < 0x80) {
      out[op++] = v;
      break;
    }
    out[op++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }

  const emitLiteral = (from: number, length: number): void => {
    const value = length - 1;
    if (value < 60) {
      out[op++] = value << 2;
    } else if (value < 0x100) {
      out[op++] = 60 << 2;
      out[op++] = value;
    } else if (value < 0x10000) {
      out[op++] = 61 << 2;
      out[op++] = value & 0xff;
      out[op++] = value >>> 8;
    } else if (value < 0x1000000) {
      out[op++] = 62 << 2;
      out[op++] = value & 0xff;
      out[op++] = (value >>> 8) & 0xff;
      out[op++] = value >>> 16;
    } else {
      out[op++] = 63 << 2;
      out[op++] = value & 0xff;
      out[op++] = (value >>> 8) & 0xff;
      out[op++] = (value >>> 16) & 0xff;
      out[op++] = value >>> 24;
    }
    if (length < 32) {
      for (let k = 0; k < length; k++) out[op + k] = input[from + k]!;
    } else {
      out.set(input.subarray(from, from + length), op);
    }
    op += length;
  };

  const emitCopyUpTo64 = (offset: number, length: number): void => {
    if (length < 12 && offset < 2048) {
      out[op++] = 1 | ((length - 4) << 2) | ((offset >>> 8) << 5);
      out[op++] = offset & 0xff;
    } else {
      out[op++] = 2 | ((length - 1) << 2);
      out[op++] = offset & 0xff;
      out[op++] = offset >>> 8;
    }
  };

  const emitCopy = (offset: number, length: number): void => {
    let left = length;
    while (left >= 68) {
      emitCopyUpTo64(offset, 64);
      left -= 64;
    }
    if (left > 64) {
      emitCopyUpTo64(offset, 60);
      left -= 60;
    }
    emitCopyUpTo64(offset, left);
  };

  let nextEmit = 0;
  if (n >= INPUT_MARGIN) {
    let bits = 1;
    while (1 << bits <= n && bits <= MAX_HASH_BITS) bits++;
    bits--;
    const shift = 32 - bits;
    if (table.length < 1 << bits) table = new Uint32Array(1 << MAX_HASH_BITS);
    table.fill(0, 0, 1 << bits);
    const hash = (value: number): number => Math.imul(value, 0x1e35a7bd) >>> shift;
    const limit = n - INPUT_MARGIN;
    let ip = 1;
    let nextHash = hash(load32(input, ip));
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
        nextHash = hash(load32(input, nextIp));
        candidate = table[h]!;
        table[h] = ip;
      } while (ip - candidate > MAX_OFFSET || load32(input, ip) !== load32(input, candidate));
      emitLiteral(nextEmit, ip - nextEmit);
      // Emit copies while the bytes right after a match match again.
      for (;;) {
        const base = ip;
        let matched = 4;
        while (ip + matched < n && input[ip + matched] === input[candidate + matched]) matched++;
        ip += matched;
        emitCopy(base - candidate, matched);
        nextEmit = ip;
        if (ip >= limit) break outer;
        const previous = hash(load32(input, ip - 1));
        table[previous] = ip - 1;
        const current = hash(load32(input, ip));
        candidate = table[current]!;
        table[current] = ip;
        if (ip - candidate > MAX_OFFSET || load32(input, ip) !== load32(input, candidate)) {
          ip++;
          nextHash = hash(load32(input, ip));
          break;
        }
      }
    }
  }
  if (nextEmit < n) emitLiteral(nextEmit, n - nextEmit);
  return out.subarray(0, op);
}

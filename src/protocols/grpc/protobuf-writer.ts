/**
 * Protobuf wire-format writing into one preallocated Buffer, for the hand-written
 * ModelInferResponse encoder (infer-response-encoder.ts). Callers size the message first
 * (the *Size functions), allocate once, then write; nothing is built per field.
 */

/** Bytes of `value` (an unsigned 32-bit integer) as a varint. */
export function varint32Size(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  return 5;
}

/** An int64/uint64 field value as the 64-bit two's-complement pattern its varint carries. */
export function int64Bits(value: number | string | bigint): bigint {
  if (typeof value === 'bigint') return BigInt.asUintN(64, value);
  if (typeof value === 'number') {
    // protobufjs (Long.fromNumber) truncates fractions and reads NaN and infinities as 0.
    return Number.isFinite(value) ? BigInt.asUintN(64, BigInt(Math.trunc(value))) : 0n;
  }
  return BigInt.asUintN(64, BigInt(value));
}

/** Bytes of a non-negative safe integer, or of a 64-bit pattern, as a varint. */
export function varint64Size(value: number | bigint): number {
  if (typeof value === 'number' && value < 0x10000000) return varint32Size(value);
  let rest = BigInt(value);
  let size = 1;
  while (rest >= 0x80n) {
    rest >>= 7n;
    size++;
  }
  return size;
}

/** A 64-bit field value ready to write: a non-negative safe integer stays a number (fast path). */
export function int64Value(value: number | string): number | bigint {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : int64Bits(value);
}

export function stringSize(field: number, byteLength: number): number {
  return tagSize(field) + varint32Size(byteLength) + byteLength;
}

export function tagSize(field: number): number {
  return varint32Size(field << 3);
}

export class ProtobufWriter {
  readonly buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  tag(field: number, wireType: number): void {
    this.uint32((field << 3) | wireType);
  }

  uint32(value: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (value >= 0x80) {
      buf[pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    buf[pos++] = value;
    this.pos = pos;
  }

  /** A varint of a non-negative safe integer or of a 64-bit pattern (int64Value). */
  varint64(value: number | bigint): void {
    if (typeof value === 'number' && value < 0x80000000) {
      this.uint32(value);
      return;
    }
    let rest = BigInt(value);
    const buf = this.buf;
    while (rest >= 0x80n) {
      buf[this.pos++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    buf[this.pos++] = Number(rest);
  }

  double(value: number): void {
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  /** A length-delimited string field; `byteLength` is its UTF-8 size (Buffer.byteLength). */
  string(field: number, value: string, byteLength: number): void {
    this.tag(field, 2);
    this.uint32(byteLength);
    this.pos += this.buf.write(value, this.pos, byteLength, 'utf8');
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, 2);
    this.uint32(value.byteLength);
    this.buf.set(value, this.pos);
    this.pos += value.byteLength;
  }

  /** The written message; throws if the sizing pass and the writing pass disagree (a bug). */
  finish(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`protobuf writer: sized ${this.buf.length} bytes but wrote ${this.pos}`);
    return this.buf;
  }
}

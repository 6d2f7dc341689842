/**
 * A protobuf wire-format reader over one Buffer, for the hand-written ModelInferRequest
 * decoder (infer-request-decoder.ts). It reads values the way protobufjs does, so that
 * decoder's output equals what @grpc/proto-loader hands over (see messages.ts): 32-bit
 * varints keep their low 32 bits, 64-bit integers become decimal strings, bytes are views
 * of the buffer, strings are decoded as UTF-8 with replacement characters.
 *
 * Malformed input (a truncated varint, a length past the end, an unknown wire type) throws
 * a ProtobufError; grpc-js answers a message that fails to deserialize with INTERNAL, as it
 * does when protobufjs throws.
 */

/** Wire types (protobuf encoding spec). */
export const WIRE = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

export class ProtobufError extends Error {
  override readonly name = 'ProtobufError';
}

const TWO_32 = 4294967296;
/** |hi| below this keeps hi * 2^32 + lo a safe integer. */
const SAFE_HI = 0x200000;

export class ProtobufReader {
  /** The two 32-bit halves of the last varint64 read (unsigned). */
  private lo = 0;
  private hi = 0;

  constructor(
    readonly buf: Buffer,
    /** Next byte to read. */
    public pos: number,
    /** End of the message being read (exclusive). */
    public end: number,
  ) {}

  /** A tag or length: a varint of which protobuf keeps the low 32 bits, unsigned. */
  uint32(): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= this.end) throw truncated();
    let byte = buf[pos++]!;
    let value = byte & 127;
    if (byte < 128) {
      this.pos = pos;
      return value;
    }
    for (let shift = 7; shift < 70; shift += 7) {
      if (pos >= this.end) throw truncated();
      byte = buf[pos++]!;
      // Bits beyond the 32nd are dropped (JS shifts are mod 32, hence the guard).
      if (shift < 32) value = (value | ((byte & 127) << shift)) >>> 0;
      if (byte < 128) {
        this.pos = pos;
        return value;
      }
    }
    throw new ProtobufError('varint longer than 10 bytes');
  }

  /** Read a 64-bit varint into lo/hi. */
  private varint64(): void {
    const buf = this.buf;
    let pos = this.pos;
    let lo = 0;
    let hi = 0;
    let byte: number;
    for (let i = 0; i < 4; i++) {
      if (pos >= this.end) throw truncated();
      byte = buf[pos++]!;
      lo = (lo | ((byte & 127) << (i * 7))) >>> 0;
      if (byte < 128) return this.done(pos, lo, hi);
    }
    if (pos >= this.end) throw truncated();
    byte = buf[pos++]!;
    lo = (lo | ((byte & 127) << 28)) >>> 0;
    hi = (byte & 127) >> 4;
    if (byte < 128) return this.done(pos, lo, hi);
    for (let i = 0; i < 5; i++) {
      if (pos >= this.end) throw truncated();
      byte = buf[pos++]!;
      hi = (hi | ((byte & 127) << (i * 7 + 3))) >>> 0;
      if (byte < 128) return this.done(pos, lo, hi);
    }
    throw new ProtobufError('varint longer than 10 bytes');
  }

  private done(pos: number, lo: number, hi: number): void {
    this.pos = pos;
    this.lo = lo;
    this.hi = hi;
  }

  int32(): number {
    return this.uint32() | 0;
  }

  bool(): boolean {
    // protobufjs reads bool as uint32 !== 0: only the low 32 bits count.
    return this.uint32() !== 0;
  }

  /** int64 as a decimal string (proto-loader's `longs: String`). */
  int64String(): string {
    this.varint64();
    const hi = this.hi | 0;
    if (hi >= -SAFE_HI && hi < SAFE_HI) return String(hi * TWO_32 + this.lo);
    return BigInt.asIntN(64, (BigInt(this.hi) << 32n) | BigInt(this.lo)).toString();
  }

  /** uint64 as a decimal string. */
  uint64String(): string {
    this.varint64();
    if (this.hi < SAFE_HI) return String(this.hi * TWO_32 + this.lo);
    return ((BigInt(this.hi) << 32n) | BigInt(this.lo)).toString();
  }

  float(): number {
    if (this.pos + 4 > this.end) throw truncated();
    const value = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return value;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw truncated();
    const value = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return value;
  }

  /** The end of a length-delimited field whose length comes next; pos moves to its start. */
  delimitedEnd(): number {
    const length = this.uint32();
    const end = this.pos + length;
    if (end > this.end) throw new ProtobufError(`a field of ${length} bytes runs past the end of its message (${this.end - this.pos} bytes left)`);
    return end;
  }

  string(): string {
    const end = this.delimitedEnd();
    const value = this.buf.toString('utf8', this.pos, end);
    this.pos = end;
    return value;
  }

  /** Skip the value of a field of `wireType` (groups included, as protobufjs skips them). */
  skip(wireType: number): void {
    switch (wireType) {
      case WIRE.VARINT:
        this.varint64();
        return;
      case WIRE.I64:
        this.advance(8);
        return;
      case WIRE.LEN:
        this.pos = this.delimitedEnd();
        return;
      case WIRE.I32:
        this.advance(4);
        return;
      case WIRE.SGROUP:
        for (;;) {
          const tag = this.uint32();
          if ((tag & 7) === WIRE.EGROUP) return;
          this.skip(tag & 7);
        }
      default:
        throw new ProtobufError(`invalid wire type ${wireType} at byte ${this.pos}`);
    }
  }

  private advance(bytes: number): void {
    if (this.pos + bytes > this.end) throw truncated();
    this.pos += bytes;
  }
}

function truncated(): ProtobufError {
  return new ProtobufError('message truncated');
}

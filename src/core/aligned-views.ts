/**
 * Views of tensor bytes inside a buffer the caller owns (a request just received), moved onto
 * an aligned offset when there is room, so that a typed array can view them where they lie.
 *
 * Protocols put tensor bytes wherever their framing ends: after a JSON header of any length
 * (V2 binary extension), after a protobuf tag and length (gRPC raw contents). A Float32Array
 * cannot view bytes at an odd offset, and copying them instead costs an allocation per request
 * (600 KB per ResNet image; V8 runs a full collection for every few tens of MB of those). When
 * the bytes just before a tensor are free (framing already decoded, not part of an earlier
 * view), the tensor is moved down a few bytes within the buffer, onto an 8-byte boundary (else
 * 4, else 2): one memmove within memory just read, nothing allocated.
 */

/** Alignment tensor bytes are moved to: the largest element (INT64, UINT64, FP64). */
const TENSOR_ALIGNMENT = 8;

export class AlignedViews {
  /** Bytes of the buffer below this offset may be overwritten: none of them is in a view. */
  private floor = 0;

  /** `buffer` is the caller's to change: nothing else reads it once its framing is decoded. */
  constructor(private readonly buffer: Buffer) {}

  /** A view of bytes [start, end) of the buffer, moved down onto an aligned offset when the bytes before it are free. */
  take(start: number, end: number): Buffer {
    const address = this.buffer.byteOffset + start;
    for (let alignment = TENSOR_ALIGNMENT; alignment > 1 && end > start; alignment >>= 1) {
      const shift = address % alignment;
      if (shift === 0) break;
      if (shift <= start - this.floor) {
        this.buffer.copyWithin(start - shift, start, end);
        this.floor = end - shift;
        return this.buffer.subarray(start - shift, end - shift);
      }
    }
    this.keep(end);
    return this.buffer.subarray(start, end);
  }

  /** Bytes before `end` are in a view handed out elsewhere: later tensors must not move over them. */
  keep(end: number): void {
    this.floor = Math.max(this.floor, end);
  }
}

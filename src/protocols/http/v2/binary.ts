import { elementByteSize, bytesOf, viewBytes, type DataType, type NumericArray, type TensorData } from '../../../core/datatype.js';
import { AlignedViews } from '../../../core/aligned-views.js';
import { TesseraError } from '../../../core/errors.js';
import { elementCount, formatShape } from '../../../core/shape.js';
import type { Tensor } from '../../../core/tensor.js';
import { parseV2RequestJson } from './json-body.js';
import { checkBytesElementLength, type RequestLimits } from '../../../security/limits.js';

/**
 * Triton's binary tensor data extension (server docs/protocol/extension_binary_data.md): the
 * HTTP body is the JSON inference header followed by raw tensor bytes, and the
 * `Inference-Header-Content-Length` header gives the JSON's length. Tensor bytes are
 * little-endian, row-major, unpadded; BOOL is one byte per element; BYTES elements are a
 * 4-byte little-endian length followed by the bytes; FP16 is raw half-precision bits.
 */

/** The request and response header naming the JSON part's length. */
export const INFERENCE_HEADER = 'inference-header-content-length';

/** A request body split into its JSON header and the binary tail after it. */
export interface SplitBody {
  readonly json: unknown;
  /** The bytes after the JSON header, or undefined when the request is plain JSON. */
  readonly tail: BinaryTail | undefined;
}

/**
 * Split a request body by its `Inference-Header-Content-Length` (absent: the whole body is
 * JSON). Lying lengths (not a number, or beyond the body) answer 400.
 */
export function splitRequestBody(body: Buffer, headerValue: string | string[] | undefined): SplitBody {
  if (headerValue === undefined) return { json: parseJsonWhole(body), tail: undefined };
  const text = Array.isArray(headerValue) ? headerValue.join(',') : headerValue;
  if (!/^\s*\d+\s*$/.test(text)) {
    throw new TesseraError('INVALID_REQUEST', `the Inference-Header-Content-Length header must be a non-negative integer, got '${text.slice(0, 40)}'`);
  }
  const length = Number(text);
  if (length > body.length) {
    throw new TesseraError('INVALID_REQUEST', `Inference-Header-Content-Length is ${length} but the request body has only ${body.length} bytes`);
  }
  if (length === 0) throw new TesseraError('INVALID_REQUEST', 'Inference-Header-Content-Length is 0: the JSON inference header is empty');
  const json = parseV2RequestJson(body.subarray(0, length), `the JSON inference header (the first ${length} bytes, per Inference-Header-Content-Length)`);
  return { json, tail: new BinaryTail(body, length) };
}

function parseJsonWhole(body: Buffer): unknown {
  if (body.length === 0) throw new TesseraError('INVALID_REQUEST', 'the request body is empty; expected a JSON object');
  return parseV2RequestJson(body, 'the request body');
}

/**
 * The binary data after the JSON header, consumed input by input in the order the JSON lists
 * them. {@link finish} checks nothing is left over.
 *
 * The tensor bytes follow a JSON header of any length, so they rarely start on a boundary a
 * Float32Array can view: each input is moved down onto an aligned offset over bytes that are
 * free (the JSON header, parsed before any input is taken, or what an earlier move left
 * behind) and viewed where it lies (core AlignedViews). The body is the request's own;
 * nothing else reads it once it is split.
 */
export class BinaryTail {
  /** Offset in the body of the next input's bytes. */
  private offset: number;
  private readonly views: AlignedViews;

  constructor(
    private readonly body: Buffer,
    private readonly headerLength: number,
  ) {
    this.offset = headerLength;
    this.views = new AlignedViews(body);
  }

  /** The next `size` bytes (a view, not a copy; aligned when there was room), for the input named in `where`. */
  take(size: number, where: string): Buffer {
    const left = this.body.length - this.offset;
    if (size > left) {
      throw new TesseraError(
        'INVALID_REQUEST',
        `${where}: binary_data_size ${size} exceeds the ${left} bytes of binary data left ` +
          `(the body has ${this.body.length - this.headerLength} bytes after the ${this.headerLength}-byte JSON header)`,
      );
    }
    const start = this.offset;
    this.offset += size;
    return this.views.take(start, this.offset);
  }

  /** Every byte after the header must belong to an input. */
  finish(): void {
    if (this.offset !== this.body.length) {
      throw new TesseraError(
        'INVALID_REQUEST',
        `the body has ${this.body.length - this.headerLength} bytes after the JSON header, but the inputs' binary_data_size add up to ${this.offset - this.headerLength}`,
      );
    }
  }
}

/**
 * Tensor data from its binary form. Numeric data is a typed-array view of `bytes` (copied only
 * when misaligned for its element size); BYTES elements are views too.
 */
export function tensorDataFromBinary(datatype: DataType, shape: readonly number[], bytes: Buffer, where: string, limits?: RequestLimits): TensorData {
  const count = elementCount(shape);
  if (typeof count !== 'number') throw new TesseraError('INVALID_INPUT_SHAPE', `${where}: ${count.problem}`);
  if (datatype === 'BYTES') return bytesElements(bytes, count, where, limits);
  const expected = count * elementByteSize(datatype);
  if (bytes.length !== expected) {
    throw new TesseraError(
      'INVALID_INPUT_DATA',
      `${where}: binary_data_size is ${bytes.length} bytes but shape ${formatShape(shape)} of ${datatype} needs ${expected}`,
    );
  }
  if (datatype === 'BOOL') {
    const bad = bytes.findIndex((b) => b > 1);
    if (bad !== -1) throw new TesseraError('INVALID_INPUT_DATA', `${where}: BOOL element ${bad} is the byte ${bytes[bad]}; BOOL bytes are 0 or 1`);
  }
  return viewBytes(datatype, bytes);
}

/** BYTES elements: each a 4-byte little-endian length and that many bytes. */
function bytesElements(bytes: Buffer, count: number, where: string, limits?: RequestLimits): Buffer[] {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) {
      throw new TesseraError('INVALID_INPUT_DATA', `${where}: BYTES element ${out.length} has a truncated 4-byte length prefix at byte ${offset}`);
    }
    const length = bytes.readUInt32LE(offset);
    if (limits !== undefined) checkBytesElementLength(where, out.length, length, limits);
    offset += 4;
    if (offset + length > bytes.length) {
      throw new TesseraError(
        'INVALID_INPUT_DATA',
        `${where}: BYTES element ${out.length} claims ${length} bytes but only ${bytes.length - offset} remain in its binary data`,
      );
    }
    out.push(bytes.subarray(offset, offset + length));
    offset += length;
    if (out.length > count) break;
  }
  if (out.length !== count) {
    throw new TesseraError('INVALID_INPUT_DATA', `${where}: the binary data holds ${out.length > count ? 'more than ' + count : out.length} BYTES elements but the shape needs ${count}`);
  }
  return out;
}

/** A tensor's binary form, as views where possible (numeric data is not copied). */
export function tensorBinary(tensor: Tensor): Buffer {
  if (tensor.datatype !== 'BYTES') {
    const view = bytesOf(tensor.data as NumericArray);
    return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  }
  let total = 0;
  for (const element of tensor.data) total += 4 + element.length;
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const element of tensor.data) {
    out.writeUInt32LE(element.length, offset);
    offset += 4;
    offset += Buffer.from(element.buffer, element.byteOffset, element.byteLength).copy(out, offset);
  }
  return out;
}

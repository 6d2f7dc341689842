import { bytesOf, elementByteSize, isNumericDataType, viewBytes, type DataType, type NumericArray, type TensorData } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';

/**
 * Raw tensor contents (`raw_input_contents` / `raw_output_contents`). Per the Open Inference
 * Protocol's gRPC spec, a tensor's raw bytes are its elements flattened row-major with no
 * padding; like Triton, Tessera reads and writes them little-endian (the byte order of every
 * host Node supports in practice, and of the typed arrays the core keeps tensors in). BOOL is
 * one byte per element; FP16 is IEEE half bits. A BYTES element is a 4-byte little-endian
 * unsigned length followed by that many bytes (Triton's serialization of TYPE_STRING).
 */

/** Size of the length prefix of each BYTES element. */
const LENGTH_PREFIX_BYTES = 4;

/**
 * Tensor data from the raw bytes of input `where`. Numeric data is a typed-array view of
 * `raw` (no copy) when its offset is aligned for the datatype, a copy otherwise; BYTES
 * elements are Buffers viewing `raw`. BOOL bytes must be 0 or 1, as over HTTP's binary
 * extension (http/v2/binary.ts), with the same message.
 */
export function decodeRaw(datatype: DataType, raw: Buffer, where: string): TensorData {
  if (!isNumericDataType(datatype)) return splitBytesElements(raw, where);
  const size = elementByteSize(datatype);
  if (raw.byteLength % size !== 0) {
    throw new TesseraError(
      'INVALID_INPUT_DATA',
      `${where}: raw_input_contents has ${raw.byteLength} bytes, not a whole number of ${datatype} elements (${size} bytes each)`,
    );
  }
  if (datatype === 'BOOL') checkBoolBytes(raw, where);
  return viewBytes(datatype, raw);
}

/**
 * Refuse BOOL bytes other than 0 and 1: a backend reads such a byte as whatever its own bool
 * makes of it, and an identity model would echo a "true" that is neither 0 nor 1.
 */
function checkBoolBytes(raw: Buffer, where: string): void {
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i]!;
    if (byte > 1) throw new TesseraError('INVALID_INPUT_DATA', `${where}: BOOL element ${i} is the byte ${byte}; BOOL bytes are 0 or 1`);
  }
}

/** The raw bytes of tensor data: numeric data as a view of its typed array, BYTES length-prefixed. */
export function encodeRaw(datatype: DataType, data: TensorData): Buffer {
  if (!isNumericDataType(datatype)) return joinBytesElements(data as Buffer[]);
  const bytes = bytesOf(data as NumericArray);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Split length-prefixed BYTES elements; each element views `raw`. */
function splitBytesElements(raw: Buffer, where: string): Buffer[] {
  const elements: Buffer[] = [];
  let offset = 0;
  while (offset < raw.byteLength) {
    if (offset + LENGTH_PREFIX_BYTES > raw.byteLength) {
      throw new TesseraError(
        'INVALID_INPUT_DATA',
        `${where}: raw BYTES contents end inside the 4-byte length of element ${elements.length} (at byte ${offset} of ${raw.byteLength})`,
      );
    }
    const length = raw.readUInt32LE(offset);
    const start = offset + LENGTH_PREFIX_BYTES;
    if (start + length > raw.byteLength) {
      throw new TesseraError(
        'INVALID_INPUT_DATA',
        `${where}: raw BYTES element ${elements.length} claims ${length} bytes but only ${raw.byteLength - start} remain`,
      );
    }
    elements.push(raw.subarray(start, start + length));
    offset = start + length;
  }
  return elements;
}

function joinBytesElements(elements: readonly Buffer[]): Buffer {
  let total = 0;
  for (const element of elements) total += LENGTH_PREFIX_BYTES + element.byteLength;
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const element of elements) {
    out.writeUInt32LE(element.byteLength, offset);
    offset += LENGTH_PREFIX_BYTES;
    offset += element.copy(out, offset);
  }
  return out;
}

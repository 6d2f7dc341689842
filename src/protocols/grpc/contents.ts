import { allocate, type DataType, type TensorData } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import type { InferTensorContentsMessage } from './messages.js';

/**
 * Typed tensor contents (InferTensorContents) to tensor data. The Open Inference Protocol's
 * gRPC spec gives each family of datatypes one repeated field; FP16 has none and must travel
 * as raw contents.
 */

type ContentsField = keyof InferTensorContentsMessage;

/** The InferTensorContents field that carries each datatype (FP16 has none). */
export const CONTENTS_FIELD: Readonly<Record<Exclude<DataType, 'FP16'>, ContentsField>> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

const ALL_FIELDS = Object.keys({
  bool_contents: 0,
  int_contents: 0,
  int64_contents: 0,
  uint_contents: 0,
  uint64_contents: 0,
  fp32_contents: 0,
  fp64_contents: 0,
  bytes_contents: 0,
} satisfies Record<ContentsField, 0>) as ContentsField[];

/** Ranges of the datatypes narrower than the 32-bit field that carries them. */
const NARROW_RANGE: Partial<Record<DataType, readonly [number, number]>> = {
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
};

/** The fields of `contents` that hold values. */
export function populatedFields(contents: InferTensorContentsMessage | null): ContentsField[] {
  if (contents === null) return [];
  return ALL_FIELDS.filter((field) => (contents[field]?.length ?? 0) > 0);
}

/**
 * Tensor data of input `where` from its typed contents (null: none given, which is empty
 * data; the engine then reports the element count the shape needs).
 */
export function decodeContents(datatype: DataType, contents: InferTensorContentsMessage | null, where: string): TensorData {
  if (datatype === 'FP16') {
    throw new TesseraError('INVALID_INPUT_DATA', `${where}: FP16 data must be sent in raw_input_contents; InferTensorContents has no FP16 field`);
  }
  const field = CONTENTS_FIELD[datatype];
  const stray = populatedFields(contents).filter((other) => other !== field);
  if (stray.length > 0) {
    throw new TesseraError('INVALID_INPUT_DATA', `${where}: ${datatype} data goes in contents.${field}, but the request set contents.${stray.join(', contents.')}`);
  }
  switch (datatype) {
    case 'BYTES':
      return [...(contents?.bytes_contents ?? [])];
    case 'BOOL':
      return Uint8Array.from(contents?.bool_contents ?? [], (value) => (value ? 1 : 0));
    case 'INT64':
      return BigInt64Array.from(contents?.int64_contents ?? [], (value) => BigInt(value));
    case 'UINT64':
      return BigUint64Array.from(contents?.uint64_contents ?? [], (value) => BigInt(value));
    case 'FP32':
      return Float32Array.from(contents?.fp32_contents ?? []);
    case 'FP64':
      return Float64Array.from(contents?.fp64_contents ?? []);
    default: {
      const values = (contents?.[field] ?? []) as readonly number[];
      const out = allocate(datatype, values.length);
      const range = NARROW_RANGE[datatype];
      for (let i = 0; i < values.length; i++) {
        const value = values[i]!;
        if (range !== undefined && (value < range[0] || value > range[1])) {
          throw new TesseraError('INVALID_INPUT_DATA', `${where}: element ${i} is ${value}; expected an integer from ${range[0]} to ${range[1]} for ${datatype}`);
        }
        out[i] = value;
      }
      return out;
    }
  }
}

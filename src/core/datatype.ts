/**
 * KServe V2 / Open Inference Protocol tensor datatypes and the typed arrays behind them.
 * See the Open Inference Protocol REST spec, "Tensor Data Types".
 */

/** Every datatype the V2 protocol defines. */
export const DATA_TYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;

export type DataType = (typeof DATA_TYPES)[number];

/** Datatypes with fixed-size elements, stored in a typed array. */
export type NumericDataType = Exclude<DataType, 'BYTES'>;

/**
 * The typed array that holds each datatype. BOOL is one byte per element (0/1), as on the
 * V2 binary wire; FP16 keeps its raw IEEE half-precision bits in a Uint16Array.
 */
export interface TypedArrayOf {
  BOOL: Uint8Array;
  UINT8: Uint8Array;
  UINT16: Uint16Array;
  UINT32: Uint32Array;
  UINT64: BigUint64Array;
  INT8: Int8Array;
  INT16: Int16Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  FP16: Uint16Array;
  FP32: Float32Array;
  FP64: Float64Array;
}

/** BYTES elements: raw bytes, one Buffer per element. */
export type BytesArray = Buffer[];

export type NumericArray = TypedArrayOf[NumericDataType];
export type TensorData = NumericArray | BytesArray;

type TypedArrayConstructorOf<T> = {
  new (length: number): T;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

/** Typed-array constructor per numeric datatype. */
export const TYPED_ARRAY: { readonly [K in NumericDataType]: TypedArrayConstructorOf<TypedArrayOf[K]> } = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

/** Size in bytes of one element of a numeric datatype. */
export function elementByteSize(datatype: NumericDataType): number {
  return TYPED_ARRAY[datatype].BYTES_PER_ELEMENT;
}

export function isDataType(value: unknown): value is DataType {
  return typeof value === 'string' && (DATA_TYPES as readonly string[]).includes(value);
}

export function isNumericDataType(datatype: DataType): datatype is NumericDataType {
  return datatype !== 'BYTES';
}

/** Allocate a zeroed typed array of `length` elements. */
export function allocate<T extends NumericDataType>(datatype: T, length: number): TypedArrayOf[T] {
  return new TYPED_ARRAY[datatype](length);
}

/** View `bytes` as a typed array of `datatype` without copying; copies only when misaligned. */
export function viewBytes<T extends NumericDataType>(datatype: T, bytes: Uint8Array): TypedArrayOf[T] {
  const ctor = TYPED_ARRAY[datatype];
  const size = ctor.BYTES_PER_ELEMENT;
  const length = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return new ctor(bytes.buffer, bytes.byteOffset, length);
  const aligned = new Uint8Array(bytes.byteLength);
  aligned.set(bytes);
  return new ctor(aligned.buffer, 0, length);
}

/** Little-endian bytes of a typed array, as a view (no copy). */
export function bytesOf(data: NumericArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

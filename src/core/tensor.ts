import type { BytesArray, DataType, NumericDataType, TypedArrayOf } from './datatype.js';
import type { Shape } from './shape.js';

/** Values a V2 `parameters` object may hold. */
export type ParameterValue = string | number | boolean;
export type Parameters = Readonly<Record<string, ParameterValue>>;

type NumericTensorOf<K extends NumericDataType> = {
  readonly name: string;
  readonly datatype: K;
  readonly shape: Shape;
  readonly data: TypedArrayOf[K];
};

/** A tensor of fixed-size elements, its data in the typed array of its datatype. */
export type NumericTensor = { [K in NumericDataType]: NumericTensorOf<K> }[NumericDataType];

/** A BYTES tensor: one Buffer per element. */
export interface BytesTensor {
  readonly name: string;
  readonly datatype: 'BYTES';
  readonly shape: Shape;
  readonly data: BytesArray;
}

/** A named tensor: datatype, concrete shape and data, row-major. */
export type Tensor = NumericTensor | BytesTensor;

/** Declared tensor in model metadata; shape uses -1 for variable dims (batch dim included). */
export interface TensorSpec {
  readonly name: string;
  readonly datatype: DataType;
  readonly shape: readonly number[];
}

/** Number of data elements a tensor carries. */
export function dataLength(tensor: Tensor): number {
  return tensor.data.length;
}

import type { DataType } from '../../core/datatype.js';

/** onnxruntime's tensor type names for each V2 datatype. */
export const ORT_TYPE: Readonly<Record<DataType, string>> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

const FROM_ORT: ReadonlyMap<string, DataType> = new Map(
  Object.entries(ORT_TYPE).map(([v2, ort]) => [ort, v2 as DataType]),
);

/** The V2 datatype of an onnxruntime type name, or undefined for types V2 cannot carry. */
export function fromOrtType(ortType: string): DataType | undefined {
  return FROM_ORT.get(ortType);
}

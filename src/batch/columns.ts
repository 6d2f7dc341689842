/**
 * Column vectors: how a chunk of rows travels between the input readers, the scorer and the
 * output writers. Values stay columnar (one array per column) from the Parquet reader to the
 * Parquet writer; text formats turn them into rows only at the edges.
 */

/** The types an output column can have; every output format maps each to one of its own. */
export type ColumnKind = 'float32' | 'float64' | 'int32' | 'int64' | 'bool' | 'string';

export interface ColumnSpec {
  readonly name: string;
  readonly kind: ColumnKind;
}

/** Storage of one output column over a chunk's rows. */
export type ColumnValues =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | (string | null)[]
  | (number | bigint | boolean | string | null)[];

/** One output column of a chunk: values for every row, and which rows are null (1 = null). */
export interface ColumnVector {
  readonly spec: ColumnSpec;
  readonly values: ColumnValues;
  /** Undefined when no row is null. */
  readonly nulls: Uint8Array | undefined;
  /**
   * Smallest and largest of the non-null values (NaN skipped) of a float or int32 column, when
   * they were noted as the values were set; writers that keep statistics scan for them otherwise.
   */
  readonly range?: { readonly min: number; readonly max: number } | undefined;
}

/** A scored chunk of rows, ready to be written as one part. */
export interface ChunkResult {
  readonly index: number;
  /** Absolute index of the chunk's first input row. */
  readonly start: number;
  readonly rows: number;
  readonly errors: number;
  readonly columns: readonly ColumnVector[];
}

/** The value of row `r` of a column as a plain JS value (null for null rows). */
export function valueAt(column: ColumnVector, r: number): number | bigint | boolean | string | null {
  if (column.nulls !== undefined && column.nulls[r] === 1) return null;
  const value = column.values[r];
  if (value === undefined || value === null) return null;
  if (column.spec.kind === 'bool') return value === true || value === 1;
  return value;
}

/** A typed array (any element type). */
export function isTypedArray(value: unknown): value is ArrayLike<number | bigint> & ArrayBufferView {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

const f32 = new Float32Array(1);

/** The shortest decimal text that reads back as the same float32 (what numpy prints). */
export function formatFloat32(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  f32[0] = value;
  const target = f32[0];
  for (let digits = 6; digits < 9; digits++) {
    const text = value.toPrecision(digits);
    f32[0] = Number(text);
    if (f32[0] === target) return String(Number(text));
  }
  return String(Number(value.toPrecision(9)));
}

/** Short description of a value for error messages: `"abc"`, `true`, `an object`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return 'an object';
}

/**
 * Packing feature columns into row-major tensors, a chunk at a time: the columns of a
 * `--features` input (typed float arrays, as Parquet gives them) are transposed once into one
 * array of `rows x features` values in shared memory. Requests then take views of it (no copy
 * on the job's thread), and the views reach the model's worker thread without being copied
 * or transferred (shared memory); the chunk's rows stay readable for rows scored one by one.
 */

import { toHalfBits } from '../core/float16.js';

/** The largest finite FP32 value: larger doubles round to an infinity in an FP32 tensor. */
export const FP32_MAX = 3.4028234663852886e38;
/** The largest finite FP16 value. */
export const FP16_MAX = 65504;

/**
 * Why `value` cannot go into a tensor of `datatype`: it is not finite, or it is finite but beyond
 * the datatype's range (it would become an infinity); undefined when it fits.
 */
export function floatProblem(value: number, datatype: 'FP16' | 'FP32' | 'FP64'): string | undefined {
  if (!Number.isFinite(value)) return `${value} is not a finite number`;
  // FP16: whatever rounds to the half infinity (65520 and up: past 65504, ties round up).
  if (datatype === 'FP32' ? !Number.isFinite(Math.fround(value)) : datatype === 'FP16' && (toHalfBits(value) & 0x7fff) === 0x7c00) {
    return `${value} is out of range for ${datatype} (largest magnitude ${datatype === 'FP32' ? FP32_MAX : FP16_MAX})`;
  }
  return undefined;
}

/** A features input of a chunk, packed row-major; `problems` are the rows with a value the tensor cannot hold. */
export interface PackedFeatures {
  readonly data: Float32Array | Float64Array;
  readonly perRow: number;
  /** Chunk row -> why it cannot be scored (the first non-finite feature). */
  readonly problems: ReadonlyMap<number, string>;
}

/** What to pack: one model input fed by feature columns, as FP32 or FP64. */
export interface PackSpec {
  readonly input: string;
  readonly columns: readonly string[];
  readonly datatype: 'FP32' | 'FP64';
}

type FloatColumn = Float32Array | Float64Array;

/** Rows transposed per block: the block's slice of every column stays in cache. */
const BLOCK_ROWS = 1024;

/** The columns as typed float arrays of at least `rows` values, or undefined (they cannot be packed). */
export function floatColumns(columns: readonly ArrayLike<unknown>[], rows: number): FloatColumn[] | undefined {
  for (const column of columns) {
    if (!(column instanceof Float32Array || column instanceof Float64Array) || column.length < rows) return undefined;
  }
  return columns as FloatColumn[];
}

/** Bytes of shared memory that `rows` rows of `spec` take. */
export function packedBytes(spec: PackSpec, rows: number): number {
  return rows * spec.columns.length * (spec.datatype === 'FP64' ? 8 : 4);
}

/**
 * Transpose `columns` (rows [0, rows) of each) into `memory` (shared, at least packedBytes
 * long) as row-major values of `spec.datatype`. Rows holding a NaN or an infinity are listed
 * in `problems` with the first such feature, in the words the row-by-row encoder uses.
 */
export function packColumns(spec: PackSpec, columns: readonly FloatColumn[], rows: number, memory: SharedArrayBuffer): PackedFeatures {
  const data = packedView(spec, rows, memory);
  const problems = new Map<number, string>();
  packRows(spec, columns, rows, data, 0, problems);
  return { data, perRow: columns.length, problems };
}

/** The row-major array of `rows` rows of `spec` over `memory`. */
export function packedView(spec: PackSpec, rows: number, memory: SharedArrayBuffer): Float32Array | Float64Array {
  const length = rows * spec.columns.length;
  return spec.datatype === 'FP64' ? new Float64Array(memory, 0, length) : new Float32Array(memory, 0, length);
}

/**
 * Copy rows [r0, r1) of eight columns into columns j..j+7 of the row-major `data` (`per`
 * values a row). Returns 0 when every value is finite, NaN otherwise (x * 0 is 0 for every
 * finite x and NaN for the rest, and NaN sticks: one test per call finds them all). A small
 * function called block after block: it is optimized early and once, where one big loop nest
 * would run its first chunk unoptimized and be compiled again for each loop.
 */
function pack8(c0: FloatColumn, c1: FloatColumn, c2: FloatColumn, c3: FloatColumn, c4: FloatColumn, c5: FloatColumn, c6: FloatColumn, c7: FloatColumn, data: FloatColumn, r0: number, r1: number, per: number, j: number): number {
  let check = 0;
  for (let r = r0, at = r0 * per + j; r < r1; r++, at += per) {
    const a = c0[r]!;
    const b = c1[r]!;
    const c = c2[r]!;
    const d = c3[r]!;
    const e = c4[r]!;
    const f = c5[r]!;
    const g = c6[r]!;
    const h = c7[r]!;
    data[at] = a;
    data[at + 1] = b;
    data[at + 2] = c;
    data[at + 3] = d;
    data[at + 4] = e;
    data[at + 5] = f;
    data[at + 6] = g;
    data[at + 7] = h;
    check += (a + b + c + d + e + f + g + h) * 0;
  }
  return check;
}

/**
 * pack8 from FP64 columns into FP32 data: the check sums the values rounded to float32 (what
 * the tensor holds), so that a finite double beyond FP32's range, an infinity once stored, is
 * found too. FP32 columns into FP32 and anything into FP64 always fit: they keep pack8.
 */
function pack8Narrowing(c0: FloatColumn, c1: FloatColumn, c2: FloatColumn, c3: FloatColumn, c4: FloatColumn, c5: FloatColumn, c6: FloatColumn, c7: FloatColumn, data: Float32Array, r0: number, r1: number, per: number, j: number): number {
  let check = 0;
  for (let r = r0, at = r0 * per + j; r < r1; r++, at += per) {
    const a = Math.fround(c0[r]!);
    const b = Math.fround(c1[r]!);
    const c = Math.fround(c2[r]!);
    const d = Math.fround(c3[r]!);
    const e = Math.fround(c4[r]!);
    const f = Math.fround(c5[r]!);
    const g = Math.fround(c6[r]!);
    const h = Math.fround(c7[r]!);
    data[at] = a;
    data[at + 1] = b;
    data[at + 2] = c;
    data[at + 3] = d;
    data[at + 4] = e;
    data[at + 5] = f;
    data[at + 6] = g;
    data[at + 7] = h;
    check += (a + b + c + d + e + f + g + h) * 0;
  }
  return check;
}

/** pack8 for one column; the value is tested as stored (read back), so FP32's range is checked whatever the column's type. */
function pack1(column: FloatColumn, data: FloatColumn, r0: number, r1: number, per: number, j: number): number {
  let check = 0;
  for (let r = r0, at = r0 * per + j; r < r1; r++, at += per) {
    const value = column[r]!;
    data[at] = value;
    check += data[at]! * 0;
  }
  return check;
}

/**
 * Transpose rows [0, rows) of `columns` into `data` from row `offset` on; rows with a value
 * the tensor cannot hold (not finite, or beyond FP32's range) go into `problems` (by their row
 * in `data`).
 */
export function packRows(spec: PackSpec, columns: readonly FloatColumn[], rows: number, target: Float32Array | Float64Array, offset: number, problems: Map<number, string>): void {
  const per = columns.length;
  const data = target.subarray(offset * per, (offset + rows) * per);
  const narrowing = data instanceof Float32Array && columns.some((column) => column instanceof Float64Array);
  let check = 0;
  for (let r0 = 0; r0 < rows; r0 += BLOCK_ROWS) {
    const r1 = Math.min(rows, r0 + BLOCK_ROWS);
    let j = 0;
    // Eight columns at a time: fewer passes over the block's rows of the output.
    for (; j + 8 <= per; j += 8) {
      const c0 = columns[j]!, c1 = columns[j + 1]!, c2 = columns[j + 2]!, c3 = columns[j + 3]!;
      const c4 = columns[j + 4]!, c5 = columns[j + 5]!, c6 = columns[j + 6]!, c7 = columns[j + 7]!;
      check += narrowing
        ? pack8Narrowing(c0, c1, c2, c3, c4, c5, c6, c7, data as Float32Array, r0, r1, per, j)
        : pack8(c0, c1, c2, c3, c4, c5, c6, c7, data, r0, r1, per, j);
    }
    for (; j < per; j++) check += pack1(columns[j]!, data, r0, r1, per, j);
  }
  if (check !== 0) findProblems(spec, columns, rows, offset, problems);
}

/** The rows holding a value the tensor cannot hold, with the first such feature, into `problems`. */
function findProblems(spec: PackSpec, columns: readonly FloatColumn[], rows: number, offset: number, problems: Map<number, string>): void {
  const per = columns.length;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < per; k++) {
      const value = columns[k]![r]!;
      const stored = spec.datatype === 'FP32' ? Math.fround(value) : value;
      if (stored - stored !== 0) {
        problems.set(offset + r, `feature '${spec.columns[k]!}': ${floatProblem(value, spec.datatype) ?? `${value} is not a finite number`}`);
        break;
      }
    }
  }
}

/**
 * Shared buffers kept for reuse, so that packing a chunk does not allocate (and fault in)
 * fresh memory each time.
 */
export class SharedPool {
  private readonly free: SharedArrayBuffer[] = [];

  constructor(private readonly limit = 8) {}

  take(bytes: number): SharedArrayBuffer {
    const at = this.free.findIndex((buffer) => buffer.byteLength >= bytes);
    if (at !== -1) return this.free.splice(at, 1)[0]!;
    return new SharedArrayBuffer(Math.max(8, bytes));
  }

  give(buffer: SharedArrayBuffer): void {
    if (this.free.length < this.limit) this.free.push(buffer);
  }
}

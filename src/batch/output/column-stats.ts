/**
 * Smallest and largest values of typed columns, for the min/max statistics of Parquet column
 * chunks. Each scan is a function of one array type and one bound with nothing but `return`
 * after its loop: the loop is optimized while it runs (on stack), when code after it has never
 * run, and any such code (storing a result, building an object) would throw the optimized code
 * away at its first run, call after call. One function per type keeps each loop monomorphic.
 */

function minOf32(values: Float32Array): number {
  let lo = NaN;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // NaN is skipped: it is never below anything, and `lo !== lo` only until a number is seen.
    if (v < lo || lo !== lo) lo = v;
  }
  return lo;
}

function maxOf32(values: Float32Array): number {
  let hi = NaN;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v > hi || hi !== hi) hi = v;
  }
  return hi;
}

function minOf64(values: Float64Array): number {
  let lo = NaN;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo || lo !== lo) lo = v;
  }
  return lo;
}

function maxOf64(values: Float64Array): number {
  let hi = NaN;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v > hi || hi !== hi) hi = v;
  }
  return hi;
}

function minOfInt32(values: Int32Array): number {
  let lo = values[0]!;
  for (let i = 1; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo) lo = v;
  }
  return lo;
}

function maxOfInt32(values: Int32Array): number {
  let hi = values[0]!;
  for (let i = 1; i < values.length; i++) {
    const v = values[i]!;
    if (v > hi) hi = v;
  }
  return hi;
}

/**
 * Where the smallest of `count` int64 values is, compared as (signed high word, unsigned low
 * word) pairs of their little-endian Int32Array view: reading a BigInt64Array element allocates
 * a BigInt, a million per job.
 */
function indexOfMinInt64(words: Int32Array, count: number): number {
  let at = 0;
  let high = words[1]!;
  let low = words[0]! >>> 0;
  for (let i = 1; i < count; i++) {
    const h = words[2 * i + 1]!;
    const l = words[2 * i]! >>> 0;
    if (h < high || (h === high && l < low)) {
      at = i;
      high = h;
      low = l;
    }
  }
  return at;
}

function indexOfMaxInt64(words: Int32Array, count: number): number {
  let at = 0;
  let high = words[1]!;
  let low = words[0]! >>> 0;
  for (let i = 1; i < count; i++) {
    const h = words[2 * i + 1]!;
    const l = words[2 * i]! >>> 0;
    if (h > high || (h === high && l > low)) {
      at = i;
      high = h;
      low = l;
    }
  }
  return at;
}

export interface Range<T> {
  readonly min: T;
  readonly max: T;
}

/** Smallest and largest value, NaN skipped; undefined when there is none. */
export function floatRange(values: Float32Array | Float64Array): Range<number> | undefined {
  const min = values instanceof Float32Array ? minOf32(values) : minOf64(values);
  if (Number.isNaN(min)) return undefined;
  return { min, max: values instanceof Float32Array ? maxOf32(values) : maxOf64(values) };
}

export function int32Range(values: Int32Array): Range<number> | undefined {
  if (values.length === 0) return undefined;
  return { min: minOfInt32(values), max: maxOfInt32(values) };
}

/** Smallest and largest of int64 values; `littleEndian`: how the platform lays them out. */
export function int64Range(values: BigInt64Array, littleEndian: boolean): Range<bigint> | undefined {
  if (values.length === 0) return undefined;
  if (!littleEndian) {
    let min = values[0]!;
    let max = min;
    for (const v of values) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    return { min, max };
  }
  const words = new Int32Array(values.buffer, values.byteOffset, values.length * 2);
  return { min: values[indexOfMinInt64(words, values.length)]!, max: values[indexOfMaxInt64(words, values.length)]! };
}

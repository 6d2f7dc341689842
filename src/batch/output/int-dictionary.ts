/**
 * Dictionary encoding for int32 columns whose values span a small range, such as `prediction`
 * (a class index): the dictionary is every integer from the smallest value to the largest
 * (PLAIN), and each value is stored as its offset from the smallest, bit-packed. A class index
 * of 0..9 takes half a byte instead of four, and encoding it is one pass over the values, where
 * compressing its PLAIN bytes with snappy costs several times as much and saves less.
 * Dictionary pages are read by every Parquet reader (the v1 names, PLAIN_DICTIONARY, as
 * parquet-mr writes them).
 */

/** Most distinct values a dictionary may hold: offsets then fit in a byte. */
export const MAX_DICTIONARY_SPAN = 256;

export interface IntDictionary {
  /** The dictionary page's values: min, min + 1, ..., max as PLAIN int32 (little-endian). */
  readonly values: Uint8Array;
  readonly count: number;
  /** The data page's values: the bit width (one byte), then the RLE/bit-packed hybrid runs. */
  readonly indices: Uint8Array;
}

/** Bit-packs `values[i] - min` (little-endian bits, groups of 8, the last padded with zeros) into `out`; returns the bytes written. */
function packOffsets(values: Int32Array, min: number, bitWidth: number, out: Uint8Array, at: number): number {
  const padded = Math.ceil(values.length / 8) * 8;
  let o = at;
  let bits = 0;
  let pending = 0;
  for (let i = 0; i < padded; i++) {
    pending |= (i < values.length ? values[i]! - min : 0) << bits;
    bits += bitWidth;
    while (bits >= 8) {
      out[o++] = pending & 0xff;
      pending >>>= 8;
      bits -= 8;
    }
  }
  return o - at;
}

function varint(value: number, out: Uint8Array, at: number): number {
  let o = at;
  let v = value;
  while (v > 0x7f) {
    out[o++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[o++] = v;
  return o - at;
}

/**
 * The dictionary encoding of `values` (the column's non-null values, at least one, all within
 * [min, max]), or undefined when they span more than MAX_DICTIONARY_SPAN integers.
 */
export function intDictionary(values: Int32Array, min: number, max: number): IntDictionary | undefined {
  const count = max - min + 1;
  if (values.length === 0 || !(count >= 1 && count <= MAX_DICTIONARY_SPAN)) return undefined;
  const dictionary = new Int32Array(count);
  for (let k = 0; k < count; k++) dictionary[k] = min + k;
  const bitWidth = 32 - Math.clz32(count - 1);
  const groups = Math.ceil(values.length / 8);
  const indices = new Uint8Array(1 + 5 + groups * bitWidth);
  indices[0] = bitWidth;
  let at = 1;
  if (bitWidth === 0) {
    // One value: a single RLE run of it (a run's value takes no byte at bit width 0).
    at += varint(values.length * 2, indices, at);
  } else {
    at += varint(groups * 2 + 1, indices, at);
    at += packOffsets(values, min, bitWidth, indices, at);
  }
  return { values: new Uint8Array(dictionary.buffer), count, indices: indices.subarray(0, at) };
}

/**
 * A fast decoder for the Parquet columns batch scoring reads most: flat numeric columns
 * (FLOAT, DOUBLE, INT32, INT64 without a converted or logical type that changes their values),
 * REQUIRED or OPTIONAL without nulls, PLAIN or dictionary encoded, uncompressed or snappy.
 * A column chunk is decoded straight into one typed array of its rows: page values are copied
 * (memcpy) out of the decompressed page, and literal runs of snappy are copied as blocks rather
 * than byte by byte. Anything else (nulls, other encodings or codecs, nested columns) makes the
 * decoder return undefined, and the caller reads that column with hyparquet instead.
 */
import { endianness } from 'node:os';
import type { ColumnMetaData, PageHeader, SchemaElement } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { readRleBitPackedHybrid } from 'hyparquet/src/encoding.js';

export type FlatArray = Float32Array | Float64Array | Int32Array | BigInt64Array;

const LITTLE_ENDIAN = endianness() === 'LE';

const WIDTH: Readonly<Record<string, number>> = { FLOAT: 4, DOUBLE: 8, INT32: 4, INT64: 8 };

const CONSTRUCTOR: Readonly<Record<string, new (n: number) => FlatArray>> = { FLOAT: Float32Array, DOUBLE: Float64Array, INT32: Int32Array, INT64: BigInt64Array };

const FAST_ENCODINGS = new Set(['PLAIN', 'RLE', 'BIT_PACKED', 'RLE_DICTIONARY', 'PLAIN_DICTIONARY']);

/** Whether a column chunk may take the fast path (its pages can still turn it down). */
export function flatDecodable(element: SchemaElement, meta: ColumnMetaData | undefined): boolean {
  if (!LITTLE_ENDIAN || meta === undefined) return false;
  if (element.type === undefined || WIDTH[element.type] === undefined) return false;
  if (element.num_children !== undefined && element.num_children > 0) return false;
  if (element.repetition_type === 'REPEATED') return false;
  if (element.converted_type !== undefined && element.converted_type !== 'INT_32' && element.converted_type !== 'INT_64') return false;
  const logical = element.logical_type;
  if (logical !== undefined && !(logical.type === 'INTEGER' && logical.isSigned && (logical.bitWidth === 32 || logical.bitWidth === 64))) return false;
  if (meta.path_in_schema.length !== 1) return false;
  if (meta.codec !== 'UNCOMPRESSED' && meta.codec !== 'SNAPPY') return false;
  return meta.encodings.every((encoding) => FAST_ENCODINGS.has(encoding));
}

function allocateFor(type: string, rows: number): FlatArray {
  switch (type) {
    case 'FLOAT':
      return new Float32Array(rows);
    case 'DOUBLE':
      return new Float64Array(rows);
    case 'INT32':
      return new Int32Array(rows);
    default:
      return new BigInt64Array(rows);
  }
}

/** A reusable scratch buffer that grows as needed. */
class Scratch {
  private bytes = new Uint8Array(0);

  get(length: number): Uint8Array {
    if (this.bytes.length < length) this.bytes = new Uint8Array(Math.max(length, Math.ceil(this.bytes.length * 1.5)));
    return this.bytes.subarray(0, length);
  }
}

const pageScratch = new Scratch();
const indexScratch = new Scratch();

/**
 * Decode a whole column chunk (`bytes`: its pages, from the first one) of `rows` rows into one
 * typed array; undefined when some page is not one the fast path takes.
 */
export function decodeFlatColumn(
  bytes: Uint8Array,
  element: SchemaElement,
  meta: ColumnMetaData,
  rows: number,
  allocate?: <T extends FlatArray>(ctor: new (n: number) => T, rows: number) => T,
): FlatArray | undefined {
  const type = element.type!;
  const width = WIDTH[type]!;
  const out = allocate === undefined ? allocateFor(type, rows) : allocate(CONSTRUCTOR[type]!, rows);
  const outBytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  const optional = element.repetition_type === 'OPTIONAL';
  const snappy = meta.codec === 'SNAPPY';
  const reader = { view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), offset: 0 };
  let dictionary: FlatArray | undefined;
  let filled = 0;
  while (filled < rows) {
    if (reader.offset >= bytes.length) return undefined;
    let header: PageHeader;
    try {
      header = parquetHeader(reader);
    } catch {
      return undefined;
    }
    const start = reader.offset;
    const compressedSize = header.compressed_page_size;
    if (start + compressedSize > bytes.length) return undefined;
    const body = bytes.subarray(start, start + compressedSize);
    reader.offset = start + compressedSize;
    switch (header.type) {
      case 'INDEX_PAGE':
        continue;
      case 'DICTIONARY_PAGE': {
        const dph = header.dictionary_page_header;
        if (dph === undefined || (dph.encoding !== 'PLAIN' && dph.encoding !== 'PLAIN_DICTIONARY')) return undefined;
        const page = decompress(body, header.uncompressed_page_size, snappy, pageScratch);
        if (page === undefined || page.length < dph.num_values * width) return undefined;
        dictionary = allocateFor(type, dph.num_values);
        new Uint8Array(dictionary.buffer).set(page.subarray(0, dph.num_values * width));
        continue;
      }
      case 'DATA_PAGE': {
        const dph = header.data_page_header;
        if (dph === undefined) return undefined;
        const count = dph.num_values;
        if (filled + count > rows) return undefined;
        // A PLAIN page of a REQUIRED column is nothing but the values: decompress it in place.
        if (!optional && dph.encoding === 'PLAIN') {
          const target = outBytes.subarray(filled * width, (filled + count) * width);
          if (header.uncompressed_page_size !== target.length) return undefined;
          if (snappy) {
            if (!snappyDecompress(body, target)) return undefined;
          } else {
            target.set(body);
          }
          filled += count;
          continue;
        }
        const page = decompress(body, header.uncompressed_page_size, snappy, pageScratch);
        if (page === undefined) return undefined;
        let offset = 0;
        if (optional) {
          if (dph.definition_level_encoding !== 'RLE' || page.length < 4) return undefined;
          const length = page[0]! | (page[1]! << 8) | (page[2]! << 16) | (page[3]! << 24);
          if (length < 0 || 4 + length > page.length || !allOnes(page.subarray(4, 4 + length), count)) return undefined;
          offset = 4 + length;
        }
        if (!decodeValues(page.subarray(offset), dph.encoding, count, dictionary, out, outBytes, filled, width)) return undefined;
        filled += count;
        continue;
      }
      case 'DATA_PAGE_V2': {
        const dph = header.data_page_header_v2;
        if (dph === undefined || dph.num_nulls !== 0 || dph.repetition_levels_byte_length !== 0) return undefined;
        const count = dph.num_values;
        if (filled + count > rows) return undefined;
        const levels = dph.definition_levels_byte_length;
        const values = body.subarray(levels);
        const size = header.uncompressed_page_size - levels;
        if (dph.encoding === 'PLAIN') {
          const target = outBytes.subarray(filled * width, (filled + count) * width);
          if (size !== target.length) return undefined;
          if (snappy && dph.is_compressed !== false) {
            if (!snappyDecompress(values, target)) return undefined;
          } else {
            if (values.length !== target.length) return undefined;
            target.set(values);
          }
          filled += count;
          continue;
        }
        const page = snappy && dph.is_compressed !== false ? decompress(values, size, true, pageScratch) : values;
        if (page === undefined || !decodeValues(page, dph.encoding, count, dictionary, out, outBytes, filled, width)) return undefined;
        filled += count;
        continue;
      }
      default:
        return undefined;
    }
  }
  return filled === rows ? out : undefined;
}

function decompress(body: Uint8Array, size: number, snappy: boolean, scratch: Scratch): Uint8Array | undefined {
  if (!snappy) return body.length === size ? body : undefined;
  const page = scratch.get(size);
  return snappyDecompress(body, page) ? page : undefined;
}

/** Values of a page (after its levels) into `out` at row `at`. */
function decodeValues(
  page: Uint8Array,
  encoding: string,
  count: number,
  dictionary: FlatArray | undefined,
  out: FlatArray,
  outBytes: Uint8Array,
  at: number,
  width: number,
): boolean {
  if (encoding === 'PLAIN') {
    if (page.length < count * width) return false;
    outBytes.set(page.subarray(0, count * width), at * width);
    return true;
  }
  if ((encoding === 'RLE_DICTIONARY' || encoding === 'PLAIN_DICTIONARY') && dictionary !== undefined && page.length >= 1) {
    const bitWidth = page[0]!;
    if (bitWidth > 32) return false;
    const indices = new Int32Array(indexScratch.get(count * 4).buffer, 0, count);
    try {
      const reader = { view: new DataView(page.buffer, page.byteOffset + 1, page.length - 1), offset: 0 };
      readRleBitPackedHybrid(reader, bitWidth, indices, page.length - 1);
    } catch {
      return false;
    }
    const size = dictionary.length;
    const target = out as Float32Array;
    const source = dictionary as Float32Array;
    for (let i = 0; i < count; i++) {
      const index = indices[i]!;
      if (index >= size || index < 0) return false;
      target[at + i] = source[index]!;
    }
    return true;
  }
  return false;
}

/** Whether RLE/bit-packed definition levels of bit width 1 say that all `count` values are there. */
function allOnes(levels: Uint8Array, count: number): boolean {
  let pos = 0;
  let seen = 0;
  while (seen < count) {
    if (pos >= levels.length) return false;
    let header = 0;
    let shift = 0;
    for (;;) {
      const byte = levels[pos++];
      if (byte === undefined) return false;
      header |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
      shift += 7;
      if (shift > 28) return false;
    }
    if ((header & 1) === 0) {
      const run = header >>> 1;
      if (levels[pos++] !== 1) return false;
      seen += run;
    } else {
      const groups = header >>> 1;
      const values = Math.min(groups * 8, count - seen);
      const full = values >> 3;
      for (let i = 0; i < full; i++) if (levels[pos + i] !== 0xff) return false;
      const rest = values & 7;
      if (rest > 0 && ((levels[pos + full] ?? 0) & ((1 << rest) - 1)) !== (1 << rest) - 1) return false;
      pos += groups;
      seen += groups * 8;
    }
  }
  return true;
}

/**
 * Decompress raw snappy `input` into `output`, which must be exactly the uncompressed length.
 * False when the input is malformed. Long literals and non-overlapping copies are block copies.
 */
export function snappyDecompress(input: Uint8Array, output: Uint8Array): boolean {
  const inputLength = input.length;
  const outputLength = output.length;
  let pos = 0;
  let expected = 0;
  let shift = 0;
  for (;;) {
    if (pos >= inputLength) return false;
    const byte = input[pos++]!;
    expected += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) break;
    shift += 7;
    if (shift > 35) return false;
  }
  if (expected !== outputLength) return false;
  let outPos = 0;
  while (pos < inputLength) {
    const tag = input[pos++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let length = (tag >>> 2) + 1;
      if (length > 60) {
        const bytes = length - 60;
        if (pos + bytes > inputLength) return false;
        length = 0;
        for (let i = 0; i < bytes; i++) length += input[pos + i]! * 2 ** (8 * i);
        length += 1;
        pos += bytes;
      }
      if (pos + length > inputLength || outPos + length > outputLength) return false;
      if (length >= 32) {
        output.set(input.subarray(pos, pos + length), outPos);
      } else {
        for (let i = 0; i < length; i++) output[outPos + i] = input[pos + i]!;
      }
      pos += length;
      outPos += length;
      continue;
    }
    let length: number;
    let offset: number;
    if (kind === 1) {
      if (pos >= inputLength) return false;
      length = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | input[pos++]!;
    } else if (kind === 2) {
      if (pos + 2 > inputLength) return false;
      length = (tag >>> 2) + 1;
      offset = input[pos]! | (input[pos + 1]! << 8);
      pos += 2;
    } else {
      if (pos + 4 > inputLength) return false;
      length = (tag >>> 2) + 1;
      offset = (input[pos]! | (input[pos + 1]! << 8) | (input[pos + 2]! << 16)) + input[pos + 3]! * 0x1000000;
      pos += 4;
    }
    if (offset === 0 || offset > outPos || outPos + length > outputLength) return false;
    const from = outPos - offset;
    if (offset >= length && length >= 32) {
      output.copyWithin(outPos, from, from + length);
    } else {
      for (let i = 0; i < length; i++) output[outPos + i] = output[from + i]!;
    }
    outPos += length;
  }
  return outPos === outputLength;
}

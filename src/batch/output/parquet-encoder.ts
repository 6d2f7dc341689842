import { endianness } from 'node:os';
import { gzipSync } from 'node:zlib';
import type { ColumnChunk, CompressionCodec, ParquetType, RowGroup, SchemaElement, Statistics } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import type { ChunkResult, ColumnKind, ColumnSpec, ColumnVector } from '../columns.js';
import { floatRange, int32Range, int64Range } from './column-stats.js';
import { intDictionary, type IntDictionary } from './int-dictionary.js';
import { maxCompressedLength, snappyCompress } from './snappy.js';

/**
 * A Parquet encoder for what batch output is: flat, nullable columns of scalars, one row group
 * per chunk. Each column chunk is one PLAIN data page (v1) with RLE definition levels, except
 * int32 columns of a few distinct values (`prediction`), which are dictionary-encoded (see
 * int-dictionary.ts): a dictionary page, then a data page of bit-packed indices. A chunk
 * is encoded as the pieces of its row group, written one after the other: the page headers
 * and levels, then the values, which for numeric columns without nulls are the chunk's own
 * typed arrays (no copy at all), or their compressed bytes. Thrift headers and the footer come
 * from hyparquet-writer. Any Parquet reader reads the result (checked with hyparquet and
 * parquetjs).
 */

export type ParquetCodec = 'SNAPPY' | 'GZIP' | 'UNCOMPRESSED';

const LITTLE_ENDIAN = endianness() === 'LE';

const PHYSICAL: Readonly<Record<ColumnKind, ParquetType>> = {
  float32: 'FLOAT',
  float64: 'DOUBLE',
  int32: 'INT32',
  int64: 'INT64',
  bool: 'BOOLEAN',
  string: 'BYTE_ARRAY',
};

export function schemaElementOf(spec: ColumnSpec): SchemaElement {
  return {
    name: spec.name,
    type: PHYSICAL[spec.kind],
    repetition_type: 'OPTIONAL',
    ...(spec.kind === 'string' ? { converted_type: 'UTF8' as const } : {}),
  };
}

export function parquetSchemaOf(columns: readonly ColumnSpec[]): SchemaElement[] {
  return [{ name: 'schema', num_children: columns.length }, ...columns.map(schemaElementOf)];
}

export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Bytes of a page tried before compressing all of it. */
const PROBE_BYTES = 16_384;

/** A byte buffer that grows as needed and is reused from page to page. */
class Scratch {
  private bytes = new Uint8Array(0);

  get(length: number): Uint8Array {
    if (this.bytes.length < length) this.bytes = new Uint8Array(Math.max(length, Math.ceil(this.bytes.length * 1.25)));
    return this.bytes.subarray(0, length);
  }
}

/** Pages put together before compression, and what a probe compresses into: reused, never handed out. */
const bodyScratch = new Scratch();
const probeScratch = new Scratch();

function squeeze(codec: ParquetCodec, input: Uint8Array, into: Uint8Array): Uint8Array {
  return codec === 'SNAPPY' ? snappyCompress(input, into) : gzipSync(input, { level: 6 });
}

/** Bytes `codec` may turn `n` bytes into (what to set aside before compressing). */
function compressedBound(codec: ParquetCodec, n: number): number {
  return codec === 'SNAPPY' ? maxCompressedLength(n) : 0;
}

/**
 * Whether a page with these values is worth compressing with `codec`: not when a probe of its
 * first bytes would not shrink by a tenth (model outputs are mostly float noise); such column
 * chunks are written uncompressed, which Parquet allows per column chunk.
 */
function worthCompressing(codec: ParquetCodec, values: Uint8Array): boolean {
  if (codec === 'UNCOMPRESSED') return false;
  if (values.length <= 2 * PROBE_BYTES) return true;
  const probe = values.subarray(0, PROBE_BYTES);
  return squeeze(codec, probe, probeScratch.get(compressedBound(codec, PROBE_BYTES))).length <= PROBE_BYTES * 0.9;
}

/** Rows that are not null, and how many are null. */
function countNulls(column: ColumnVector, rows: number): number {
  const nulls = column.nulls;
  let count = 0;
  if (column.spec.kind === 'string') {
    // An empty values array stands for a column with no value at all (the usual `error`).
    const values = column.values as (string | null)[];
    if (values.length === 0) return rows;
    for (let r = 0; r < rows; r++) if (values[r] == null || nulls?.[r] === 1) count++;
    return count;
  }
  if (nulls !== undefined) for (let r = 0; r < rows; r++) count += nulls[r]!;
  return count;
}

function isNull(column: ColumnVector, r: number): boolean {
  return column.nulls?.[r] === 1 || (column.spec.kind === 'string' && (column.values as (string | null)[])[r] == null);
}

/** Appends a varint to `out`. */
function pushVarint(out: number[], value: number): void {
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** RLE/bit-packed hybrid definition levels (bit width 1) of a nullable column, as runs. */
function definitionLevels(column: ColumnVector, rows: number, nullCount: number): Uint8Array {
  const out: number[] = [];
  if (nullCount === 0 || nullCount === rows) {
    if (rows > 0) {
      pushVarint(out, rows * 2);
      out.push(nullCount === 0 ? 1 : 0);
    }
    return Uint8Array.from(out);
  }
  let run = 0;
  let current = isNull(column, 0) ? 0 : 1;
  for (let r = 0; r < rows; r++) {
    const level = isNull(column, r) ? 0 : 1;
    if (level === current) {
      run++;
      continue;
    }
    pushVarint(out, run * 2);
    out.push(current);
    current = level;
    run = 1;
  }
  pushVarint(out, run * 2);
  out.push(current);
  return Uint8Array.from(out);
}

type NumericValues = Float32Array | Float64Array | Int32Array | BigInt64Array;
type StatValue = number | bigint | boolean;

/** PLAIN bytes of a column's non-null values and their min / max (NaN skipped). */
interface PlainValues {
  readonly bytes: Uint8Array;
  readonly min?: StatValue;
  readonly max?: StatValue;
  /** The non-null values of an int32 column (for a dictionary). */
  readonly ints?: Int32Array;
}

function plainStrings(column: ColumnVector, rows: number): PlainValues {
  const strings = column.values as (string | null)[];
  let size = 0;
  for (let r = 0; r < rows; r++) {
    const value = strings[r];
    if (value !== null && value !== undefined && column.nulls?.[r] !== 1) size += 4 + Buffer.byteLength(value, 'utf8');
  }
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    const value = strings[r];
    if (value === null || value === undefined || column.nulls?.[r] === 1) continue;
    const written = bytes.write(value, at + 4, 'utf8');
    bytes.writeUInt32LE(written, at);
    at += 4 + written;
  }
  return { bytes };
}

function plainBooleans(column: ColumnVector, rows: number, present: number): PlainValues {
  const flags = column.values as Uint8Array;
  const bytes = new Uint8Array(Math.ceil(present / 8));
  let i = 0;
  let seenTrue = false;
  let seenFalse = false;
  for (let r = 0; r < rows; r++) {
    if (column.nulls?.[r] === 1) continue;
    if (flags[r] !== 0) {
      bytes[i >> 3]! |= 1 << (i & 7);
      seenTrue = true;
    } else {
      seenFalse = true;
    }
    i++;
  }
  return { bytes, ...(present > 0 ? { min: !seenFalse, max: seenTrue } : {}) };
}

/** The non-null values of a numeric column: a view of its own array when no row is null. */
function denseValues(column: ColumnVector, rows: number, nullCount: number): NumericValues {
  const numeric = column.values as NumericValues;
  if (nullCount === 0) return rows === numeric.length ? numeric : (numeric.subarray(0, rows) as NumericValues);
  const ctor = numeric.constructor as new (n: number) => NumericValues;
  const dense = new ctor(rows - nullCount);
  let i = 0;
  for (let r = 0; r < rows; r++) if (column.nulls?.[r] !== 1) (dense as Float64Array)[i++] = (numeric as Float64Array)[r]!;
  return dense;
}

function plainNumbers(column: ColumnVector, rows: number, nullCount: number): PlainValues {
  const dense = denseValues(column, rows, nullCount);
  const kind = column.spec.kind;
  // The range noted as the values were set, if it was (see ColumnVector.range), else a scan.
  const range =
    kind === 'int64'
      ? int64Range(dense as BigInt64Array, LITTLE_ENDIAN)
      : (column.range ?? (kind === 'int32' ? int32Range(dense as Int32Array) : floatRange(dense as Float32Array | Float64Array)));
  let bytes: Uint8Array;
  if (LITTLE_ENDIAN) {
    bytes = new Uint8Array(dense.buffer, dense.byteOffset, dense.byteLength);
  } else {
    bytes = new Uint8Array(dense.byteLength);
    const view = new DataView(bytes.buffer);
    const size = dense.BYTES_PER_ELEMENT;
    for (let i = 0; i < dense.length; i++) {
      if (kind === 'float32') view.setFloat32(i * size, (dense as Float32Array)[i]!, true);
      else if (kind === 'float64') view.setFloat64(i * size, (dense as Float64Array)[i]!, true);
      else if (kind === 'int32') view.setInt32(i * size, (dense as Int32Array)[i]!, true);
      else view.setBigInt64(i * size, (dense as BigInt64Array)[i]!, true);
    }
  }
  return { bytes, ...(range === undefined ? {} : { min: range.min, max: range.max }), ...(kind === 'int32' ? { ints: dense as Int32Array } : {}) };
}

function plainValues(column: ColumnVector, rows: number, nullCount: number): PlainValues {
  if (column.spec.kind === 'string') return plainStrings(column, rows);
  if (column.spec.kind === 'bool') return plainBooleans(column, rows, rows - nullCount);
  return plainNumbers(column, rows, nullCount);
}

/**
 * Memory that compressed pages are written into, one buffer per part, taken back once the part
 * is in the output: encoding a part then writes into memory already in use, not fresh pages.
 */
export class PageMemory {
  private readonly free: ArrayBuffer[] = [];

  constructor(private readonly limit = 6) {}

  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) if (this.free[i]!.byteLength >= bytes && (best === -1 || this.free[i]!.byteLength < this.free[best]!.byteLength)) best = i;
    if (best !== -1) return this.free.splice(best, 1)[0]!;
    return new ArrayBuffer(bytes);
  }

  give(buffer: ArrayBuffer): void {
    if (this.free.length < this.limit && !this.free.includes(buffer)) this.free.push(buffer);
  }
}

/** A chunk's row group, encoded. */
export interface EncodedRowGroup {
  /** Its column chunks' bytes, to be written one after the other (views: keep the chunk's columns until they are). */
  readonly pieces: readonly Uint8Array[];
  readonly byteLength: number;
  /** Its metadata, with offsets counted from the first byte of `pieces`. */
  readonly rowGroup: RowGroup;
  /** The page memory the pieces use, to give back once they are written. */
  readonly memory: ArrayBuffer | undefined;
}

/** A column chunk about to be written: levels, values, statistics and whether it is compressed or dictionary-encoded. */
interface ColumnPlan {
  readonly nullCount: number;
  readonly levels: Uint8Array;
  readonly values: PlainValues;
  readonly compress: boolean;
  readonly dictionary: IntDictionary | undefined;
}

/** The dictionary encoding of an int32 column of a few distinct values (little-endian platforms), else undefined. */
function dictionaryOf(values: PlainValues): IntDictionary | undefined {
  if (!LITTLE_ENDIAN || values.ints === undefined || typeof values.min !== 'number' || typeof values.max !== 'number') return undefined;
  return intDictionary(values.ints, values.min, values.max);
}

/**
 * One chunk as a row group. Encoding yields to the event loop between columns, so the model
 * instances keep being fed while a part is encoded. Compressed pages go into a buffer from
 * `memory` (given back through EncodedRowGroup.memory).
 */
export async function encodeRowGroup(chunk: ChunkResult, schema: readonly SchemaElement[], codec: ParquetCodec, memory: PageMemory): Promise<EncodedRowGroup> {
  const rows = chunk.rows;
  const plans: ColumnPlan[] = [];
  let bound = 0;
  for (const column of chunk.columns) {
    const nullCount = countNulls(column, rows);
    const levels = definitionLevels(column, rows, nullCount);
    const values = plainValues(column, rows, nullCount);
    const dictionary = dictionaryOf(values);
    const compress = dictionary === undefined && worthCompressing(codec, values.bytes);
    if (compress) bound += compressedBound(codec, 4 + levels.length + values.bytes.length);
    plans.push({ nullCount, levels, values, compress, dictionary });
  }
  const pages = bound > 0 ? memory.take(bound) : undefined;
  let pagesUsed = 0;
  // Page headers, levels and dictionary-encoded columns (all small) side by side in one buffer of the part's own.
  const heads = new ByteWriter(4096);
  const pieces: Uint8Array[] = [];
  const columns: ColumnChunk[] = [];
  let offset = 0;
  let uncompressedTotal = 0;
  for (let c = 0; c < plans.length; c++) {
    if (c > 0) await yieldToEventLoop();
    const { nullCount, levels, values, compress, dictionary } = plans[c]!;
    const element = schema[c + 1]!;
    const statistics: Statistics = {
      null_count: BigInt(nullCount),
      ...(values.min === undefined ? {} : { min_value: values.min, max_value: values.max }),
    } as Statistics;
    if (dictionary !== undefined) {
      const written = writeDictionaryColumn(heads, rows, levels, dictionary);
      columns.push({
        file_offset: BigInt(offset),
        meta_data: {
          type: element.type!,
          encodings: ['PLAIN_DICTIONARY', 'RLE'],
          path_in_schema: [element.name],
          codec: 'UNCOMPRESSED',
          num_values: BigInt(rows),
          total_uncompressed_size: BigInt(written.bytes.length),
          total_compressed_size: BigInt(written.bytes.length),
          dictionary_page_offset: BigInt(offset),
          data_page_offset: BigInt(offset + written.dataPageAt),
          statistics,
        },
      });
      pieces.push(written.bytes);
      offset += written.bytes.length;
      uncompressedTotal += written.bytes.length;
      continue;
    }
    const size = 4 + levels.length + values.bytes.length;
    // The page as written: [levels length][levels][values], or all of it compressed.
    let packed: Uint8Array | undefined;
    if (compress) {
      const body = bodyScratch.get(size);
      new DataView(body.buffer, body.byteOffset, 4).setUint32(0, levels.length, true);
      body.set(levels, 4);
      body.set(values.bytes, 4 + levels.length);
      const into = pages === undefined ? new Uint8Array(compressedBound(codec, size)) : new Uint8Array(pages, pagesUsed, compressedBound(codec, size));
      const squeezed = squeeze(codec, body, into);
      if (squeezed.length < size) {
        // gzip returns memory of its own; snappy wrote into `into`.
        packed = squeezed;
        if (squeezed.buffer === pages) pagesUsed += squeezed.length;
      }
    }
    const start = offset;
    const headStart = heads.index;
    writePageHeader(heads, {
      type: 'DATA_PAGE',
      uncompressed_page_size: size,
      compressed_page_size: packed?.length ?? size,
      data_page_header: { num_values: rows, encoding: 'PLAIN', definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
    });
    const headerSize = heads.index - headStart;
    if (packed === undefined) {
      heads.appendUint32(levels.length);
      heads.appendBytes(levels);
    }
    // The writer may have moved to a bigger buffer: the bytes just written are in the current one.
    const head = new Uint8Array(heads.buffer, headStart, heads.index - headStart);
    const data = packed ?? values.bytes;
    pieces.push(head, data);
    offset += head.length + data.length;
    const uncompressed = headerSize + size;
    uncompressedTotal += uncompressed;
    columns.push({
      file_offset: BigInt(start),
      meta_data: {
        type: element.type!,
        encodings: ['PLAIN', 'RLE'],
        path_in_schema: [element.name],
        codec: (packed === undefined ? 'UNCOMPRESSED' : codec) as CompressionCodec,
        num_values: BigInt(rows),
        total_uncompressed_size: BigInt(uncompressed),
        total_compressed_size: BigInt(offset - start),
        data_page_offset: BigInt(start),
        statistics,
      },
    });
  }
  return {
    pieces,
    byteLength: offset,
    rowGroup: { columns, total_byte_size: BigInt(uncompressedTotal), num_rows: BigInt(rows), file_offset: 0n, total_compressed_size: BigInt(offset) },
    memory: pages,
  };
}

/**
 * A dictionary-encoded column chunk, uncompressed, into `heads`: the dictionary page, then the
 * data page ([levels length][levels][indices]). Returns its bytes (a view of `heads`) and where
 * its data page starts in them.
 */
function writeDictionaryColumn(heads: ByteWriter, rows: number, levels: Uint8Array, dictionary: IntDictionary): { bytes: Uint8Array; dataPageAt: number } {
  const start = heads.index;
  writePageHeader(heads, {
    type: 'DICTIONARY_PAGE',
    uncompressed_page_size: dictionary.values.length,
    compressed_page_size: dictionary.values.length,
    dictionary_page_header: { num_values: dictionary.count, encoding: 'PLAIN_DICTIONARY' },
  });
  heads.appendBytes(dictionary.values);
  const dataPageAt = heads.index - start;
  const size = 4 + levels.length + dictionary.indices.length;
  writePageHeader(heads, {
    type: 'DATA_PAGE',
    uncompressed_page_size: size,
    compressed_page_size: size,
    data_page_header: { num_values: rows, encoding: 'PLAIN_DICTIONARY', definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
  });
  heads.appendUint32(levels.length);
  heads.appendBytes(levels);
  heads.appendBytes(dictionary.indices);
  // The writer may have moved to a bigger buffer: the bytes just written are in the current one.
  return { bytes: new Uint8Array(heads.buffer, start, heads.index - start), dataPageAt };
}

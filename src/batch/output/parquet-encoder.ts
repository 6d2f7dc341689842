import { endianness } from 'node:os';
import { gzipSync } from 'node:zlib';
import type { ColumnChunk, CompressionCodec, FileMetaData, ParquetType, SchemaElement, Statistics } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import type { ChunkResult, ColumnKind, ColumnSpec, ColumnVector } from '../columns.js';
import { maxCompressedLength, snappyCompress } from './snappy.js';

/**
 * A Parquet encoder for what batch output is: flat, nullable columns of scalars, one row group
 * per chunk. Each column chunk is one PLAIN data page (v1) with RLE definition levels, so
 * numeric values go from the chunk's typed arrays to the page by a memory copy; no dictionary
 * attempts, no per-value objects. Thrift headers and the footer come from hyparquet-writer.
 * Any Parquet reader reads the result (checked with hyparquet and parquetjs).
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

/** Pages put together before compression, and what snappy writes: reused, never handed out. */
const bodyScratch = new Scratch();
const snappyScratch = new Scratch();

function squeeze(codec: ParquetCodec, input: Uint8Array): Uint8Array {
  return codec === 'SNAPPY' ? snappyCompress(input, snappyScratch.get(maxCompressedLength(input.length))) : gzipSync(input, { level: 6 });
}

/**
 * Whether a page with these values is worth compressing with `codec`: not when a probe of its
 * first bytes would not shrink by a tenth (model outputs are mostly float noise); such column
 * chunks are written uncompressed, which Parquet allows per column chunk.
 */
function worthCompressing(codec: ParquetCodec, values: Uint8Array): boolean {
  if (codec === 'UNCOMPRESSED') return false;
  if (values.length <= 2 * PROBE_BYTES) return true;
  return squeeze(codec, values.subarray(0, PROBE_BYTES)).length <= PROBE_BYTES * 0.9;
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

/** Smallest and largest of the values, NaN skipped; undefined when there is none. */
function floatRange(values: Float32Array | Float64Array): { min: number; max: number } | undefined {
  const min = values instanceof Float32Array ? minOf32(values) : minOf64(values);
  if (Number.isNaN(min)) return undefined;
  return { min, max: values instanceof Float32Array ? maxOf32(values) : maxOf64(values) };
}

// One function per array type and bound, so that each loop stays monomorphic, and nothing
// but `return` after it: code after a hot loop has no type feedback when the loop is
// optimized on stack, and the function would be deoptimized there at every call.
function minOf32(values: Float32Array): number {
  let lo = NaN;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
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

function rangeOfInt32(values: Int32Array): { min: number; max: number } | undefined {
  if (values.length === 0) return undefined;
  let lo = values[0]!;
  let hi = lo;
  for (let i = 1; i < values.length; i++) {
    const v = values[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return { min: lo, max: hi };
}

/** RLE/bit-packed hybrid definition levels (bit width 1) of a nullable column, as runs. */
function definitionLevels(column: ColumnVector, rows: number, nullCount: number): Uint8Array {
  const out: number[] = [];
  const varint = (value: number): void => {
    let v = value;
    while (v > 0x7f) {
      out.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(v);
  };
  if (nullCount === 0 || nullCount === rows) {
    if (rows > 0) {
      varint(rows * 2);
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
    varint(run * 2);
    out.push(current);
    current = level;
    run = 1;
  }
  varint(run * 2);
  out.push(current);
  return Uint8Array.from(out);
}

type NumericValues = Float32Array | Float64Array | Int32Array | BigInt64Array;

/** PLAIN bytes of the non-null values, and their min / max (NaN skipped). */
function plainValues(column: ColumnVector, rows: number, nullCount: number): { bytes: Uint8Array; min?: number | bigint | boolean | string; max?: number | bigint | boolean | string } {
  const { spec, values } = column;
  const present = rows - nullCount;
  if (spec.kind === 'string') {
    const strings = values as (string | null)[];
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
  if (spec.kind === 'bool') {
    const flags = values as Uint8Array;
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
  const numeric = values as NumericValues;
  let dense: NumericValues;
  if (nullCount === 0) {
    dense = rows === numeric.length ? numeric : (numeric.subarray(0, rows) as NumericValues);
  } else {
    const ctor = numeric.constructor as new (n: number) => NumericValues;
    dense = new ctor(present);
    let i = 0;
    for (let r = 0; r < rows; r++) if (column.nulls?.[r] !== 1) (dense as Float64Array)[i++] = (numeric as Float64Array)[r]!;
  }
  let min: number | bigint | undefined;
  let max: number | bigint | undefined;
  if (spec.kind === 'int64' && !LITTLE_ENDIAN) {
    for (const v of dense as BigInt64Array) {
      if (min === undefined || v < min) min = v;
      if (max === undefined || v > max) max = v;
    }
  } else if (spec.kind === 'int64') {
    // Compare as (signed high word, unsigned low word) pairs: reading a BigInt64Array element
    // allocates a BigInt, a million of them per job.
    const ints = dense as BigInt64Array;
    const words = new Int32Array(ints.buffer, ints.byteOffset, ints.length * 2);
    let lo = -1;
    let hi = -1;
    for (let i = 0; i < ints.length; i++) {
      const high = words[2 * i + 1]!;
      const low = words[2 * i]! >>> 0;
      if (lo === -1 || high < words[2 * lo + 1]! || (high === words[2 * lo + 1]! && low < words[2 * lo]! >>> 0)) lo = i;
      if (hi === -1 || high > words[2 * hi + 1]! || (high === words[2 * hi + 1]! && low > words[2 * hi]! >>> 0)) hi = i;
    }
    if (lo !== -1) {
      min = ints[lo]!;
      max = ints[hi]!;
    }
  } else {
    const range = dense instanceof Int32Array ? rangeOfInt32(dense) : floatRange(dense as Float32Array | Float64Array);
    if (range !== undefined) {
      min = range.min;
      max = range.max;
    }
  }
  let bytes: Uint8Array;
  if (LITTLE_ENDIAN) {
    bytes = new Uint8Array(dense.buffer, dense.byteOffset, dense.byteLength);
  } else {
    bytes = new Uint8Array(dense.byteLength);
    const view = new DataView(bytes.buffer);
    const size = dense.BYTES_PER_ELEMENT;
    for (let i = 0; i < dense.length; i++) {
      if (spec.kind === 'float32') view.setFloat32(i * size, (dense as Float32Array)[i]!, true);
      else if (spec.kind === 'float64') view.setFloat64(i * size, (dense as Float64Array)[i]!, true);
      else if (spec.kind === 'int32') view.setInt32(i * size, (dense as Int32Array)[i]!, true);
      else view.setBigInt64(i * size, (dense as BigInt64Array)[i]!, true);
    }
  }
  return { bytes, ...(min === undefined ? {} : { min, max }) };
}

/**
 * Buffers that parts are encoded into, taken back once a part is in the output: encoding a
 * part then writes into memory already in use rather than fresh pages.
 */
export class PartBuffers {
  private readonly free: ArrayBuffer[] = [];

  constructor(private readonly limit = 6) {}

  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) if (this.free[i]!.byteLength >= bytes && (best === -1 || this.free[i]!.byteLength < this.free[best]!.byteLength)) best = i;
    if (best !== -1) return this.free.splice(best, 1)[0]!;
    return new ArrayBuffer(bytes);
  }

  give(buffer: ArrayBuffer): void {
    if (this.free.length < this.limit) this.free.push(buffer);
  }
}

/** Bytes a column's page takes at most (values, levels, page header). */
function pageBound(column: ColumnVector, rows: number): number {
  const width = { float32: 4, float64: 8, int32: 4, int64: 8, bool: 1, string: 0 }[column.spec.kind];
  if (column.spec.kind !== 'string') return rows * width + Math.ceil(rows / 8) + 256;
  const values = column.values as (string | null)[];
  let size = 256 + Math.ceil(rows / 8);
  for (let r = 0; r < values.length && r < rows; r++) {
    const value = values[r];
    if (value != null) size += 4 + 3 * value.length;
  }
  return size;
}

/**
 * One chunk as a complete Parquet file of one row group. Encoding yields to the event loop
 * between columns, so the model instances keep being fed while a part is written. The bytes
 * are written into a buffer from `buffers` when given (give it back once they are written).
 */
export async function encodeParquetPart(chunk: ChunkResult, schema: readonly SchemaElement[], codec: ParquetCodec, buffers?: PartBuffers): Promise<Uint8Array> {
  const rows = chunk.rows;
  let estimate = 4096 + schema.length * 512;
  for (const column of chunk.columns) estimate += pageBound(column, rows);
  const writer = new ByteWriter(16);
  writer.buffer = buffers?.take(estimate) ?? new ArrayBuffer(estimate);
  writer.view = new DataView(writer.buffer);
  writer.appendUint32(0x31524150);
  const columns: ColumnChunk[] = [];
  let uncompressedTotal = 0n;
  for (let c = 0; c < chunk.columns.length; c++) {
    if (c > 0) await yieldToEventLoop();
    const column = chunk.columns[c]!;
    const element = schema[c + 1]!;
    const nullCount = countNulls(column, rows);
    const levels = definitionLevels(column, rows, nullCount);
    const plain = plainValues(column, rows, nullCount);
    const size = 4 + levels.length + plain.bytes.length;
    // Pages that would not shrink are written from the column's own bytes (no page copy).
    let used: ParquetCodec = 'UNCOMPRESSED';
    let page: Uint8Array | undefined;
    if (worthCompressing(codec, plain.bytes)) {
      const body = bodyScratch.get(size);
      new DataView(body.buffer, body.byteOffset, 4).setUint32(0, levels.length, true);
      body.set(levels, 4);
      body.set(plain.bytes, 4 + levels.length);
      const packed = squeeze(codec, body);
      if (packed.length < size) {
        used = codec;
        page = packed;
      } else {
        page = body;
      }
    }
    const start = writer.offset;
    writePageHeader(writer, {
      type: 'DATA_PAGE',
      uncompressed_page_size: size,
      compressed_page_size: page?.length ?? size,
      data_page_header: { num_values: rows, encoding: 'PLAIN', definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
    });
    const headerSize = writer.offset - start;
    if (page !== undefined) {
      writer.appendBytes(page);
    } else {
      writer.appendUint32(levels.length);
      writer.appendBytes(levels);
      writer.appendBytes(plain.bytes);
    }
    const statistics: Statistics = {
      null_count: BigInt(nullCount),
      ...(plain.min === undefined ? {} : { min_value: plain.min, max_value: plain.max }),
    } as Statistics;
    const uncompressed = BigInt(headerSize + size);
    uncompressedTotal += uncompressed;
    columns.push({
      file_offset: BigInt(start),
      meta_data: {
        type: element.type!,
        encodings: ['PLAIN', 'RLE'],
        path_in_schema: [element.name],
        codec: used as CompressionCodec,
        num_values: BigInt(rows),
        total_uncompressed_size: uncompressed,
        total_compressed_size: BigInt(writer.offset - start),
        data_page_offset: BigInt(start),
        statistics,
      },
    });
  }
  const metadata: FileMetaData = {
    version: 1,
    schema: [...schema],
    num_rows: BigInt(rows),
    row_groups:
      rows === 0
        ? []
        : [{ columns, total_byte_size: uncompressedTotal, num_rows: BigInt(rows), file_offset: 4n, total_compressed_size: BigInt(writer.offset - 4) }],
    created_by: 'tessera batch',
    metadata_length: 0,
  };
  writeMetadata(writer, metadata);
  writer.appendUint32(0x31524150);
  return writer.getBytes();
}

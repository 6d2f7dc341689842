import { endianness } from 'node:os';
import { gzipSync } from 'node:zlib';
import type { ColumnChunk, CompressionCodec, FileMetaData, ParquetType, SchemaElement, Statistics } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import type { ChunkResult, ColumnKind, ColumnSpec, ColumnVector } from '../columns.js';
import { snappyCompress } from './snappy.js';

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

/**
 * Compress a page with `codec`, unless a probe of its first bytes shows it would not shrink by
 * a tenth (model outputs are mostly float noise): such column chunks are written uncompressed,
 * which Parquet allows per column chunk. Returns the codec actually used.
 */
function compress(codec: ParquetCodec, bytes: Uint8Array): { codec: ParquetCodec; bytes: Uint8Array } {
  if (codec === 'UNCOMPRESSED') return { codec, bytes };
  const squeeze = codec === 'SNAPPY' ? snappyCompress : (input: Uint8Array) => gzipSync(input, { level: 6 });
  if (bytes.length > 2 * PROBE_BYTES) {
    const probe = squeeze(bytes.subarray(0, PROBE_BYTES));
    if (probe.length > PROBE_BYTES * 0.9) return { codec: 'UNCOMPRESSED', bytes };
  }
  const packed = squeeze(bytes);
  return packed.length < bytes.length ? { codec, bytes: packed } : { codec: 'UNCOMPRESSED', bytes };
}

/** Rows that are not null, and how many are null. */
function countNulls(column: ColumnVector, rows: number): number {
  const nulls = column.nulls;
  let count = 0;
  if (nulls !== undefined) for (let r = 0; r < rows; r++) count += nulls[r]!;
  if (column.spec.kind === 'string') {
    const values = column.values as (string | null)[];
    for (let r = 0; r < rows; r++) if (values[r] === null && nulls?.[r] !== 1) count++;
  }
  return count;
}

function isNull(column: ColumnVector, r: number): boolean {
  return column.nulls?.[r] === 1 || (column.spec.kind === 'string' && (column.values as (string | null)[])[r] === null);
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
    const nums = dense as Float64Array;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < nums.length; i++) {
      const v = nums[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (lo <= hi) {
      min = lo;
      max = hi;
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
 * One chunk as a complete Parquet file of one row group. Encoding yields to the event loop
 * between columns, so the model instances keep being fed while a part is written.
 */
export async function encodeParquetPart(chunk: ChunkResult, schema: readonly SchemaElement[], codec: ParquetCodec): Promise<Uint8Array> {
  const rows = chunk.rows;
  const estimate = 1024 + chunk.columns.length * (rows * 9 + 64);
  const writer = new ByteWriter(estimate);
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
    const body = new Uint8Array(4 + levels.length + plain.bytes.length);
    new DataView(body.buffer).setUint32(0, levels.length, true);
    body.set(levels, 4);
    body.set(plain.bytes, 4 + levels.length);
    const { codec: used, bytes: page } = compress(codec, body);
    const start = writer.offset;
    writePageHeader(writer, {
      type: 'DATA_PAGE',
      uncompressed_page_size: body.length,
      compressed_page_size: page.length,
      data_page_header: { num_values: rows, encoding: 'PLAIN', definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
    });
    const headerSize = writer.offset - start;
    writer.appendBytes(page);
    const statistics: Statistics = {
      null_count: BigInt(nullCount),
      ...(plain.min === undefined ? {} : { min_value: plain.min, max_value: plain.max }),
    } as Statistics;
    const uncompressed = BigInt(headerSize + body.length);
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

/**
 * The fast decoder for flat numeric Parquet columns (src/batch/input/parquet-flat.ts), checked
 * against hyparquet (the library it stands in for) on real files from two independent writers,
 * hyparquet-writer and @dsnp/parquetjs, and on files from a small handmade writer (built from
 * hyparquet-writer's page and footer encoders) for the layouts neither of them writes: data page
 * v1 with dictionaries (what pyarrow and parquet-mr write), PLAIN_DICTIONARY, dictionary chunks
 * falling back to PLAIN pages, bit-packed definition levels, v2 pages stored uncompressed.
 *
 * For every column chunk, the decoder either turns it down (undefined: the caller reads it with
 * hyparquet) or returns exactly hyparquet's values, element for element (Object.is: NaN, -0,
 * infinities; bigint for INT64). The chunks it claims must actually take the fast path, and the
 * ones it must not claim (nulls, strings, converted types that change values, nested columns,
 * other encodings and codecs) must be turned down. ParquetSource, which mixes the fast path and
 * hyparquet, is checked against hyparquet on the same files.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';

import parquetjs from '@dsnp/parquetjs';
import {
  parquetMetadata,
  parquetRead,
  parquetReadObjects,
  parquetSchema,
  snappyUncompress,
  type ColumnData,
  type ColumnMetaData,
  type Compressors,
  type FileMetaData,
  type PageHeader,
  type SchemaElement,
} from 'hyparquet';
import { ByteWriter, parquetWriteBuffer, schemaFromColumnData } from 'hyparquet-writer';
import { parquetHeader } from 'hyparquet/src/column.js';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeRleBitPackedHybrid } from 'hyparquet-writer/src/encoding.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import { writePlain } from 'hyparquet-writer/src/plain.js';
import { snappyCompress } from 'hyparquet-writer/src/snappy.js';

import { decodeFlatColumn, flatDecodable, snappyDecompress, type FlatArray } from '../src/batch/input/parquet-flat.js';
import { ParquetSource } from '../src/batch/input/parquet.js';
import { TesseraError } from '../src/core/errors.js';
import { mulberry32 } from './support/fixtures.js';

type FlatType = 'FLOAT' | 'DOUBLE' | 'INT32' | 'INT64';
type Scalar = number | bigint | null;

const FLAT: readonly FlatType[] = ['FLOAT', 'DOUBLE', 'INT32', 'INT64'];
const NAME: Readonly<Record<FlatType, string>> = { FLOAT: 'f32', DOUBLE: 'f64', INT32: 'i32', INT64: 'i64' };
const ARRAY_OF: Readonly<Record<FlatType, new (n: number) => FlatArray>> = { FLOAT: Float32Array, DOUBLE: Float64Array, INT32: Int32Array, INT64: BigInt64Array };

/** Decompressors for the codecs hyparquet does not decode by itself (the reference reads). */
const DECOMPRESSORS: Compressors = {
  GZIP: (input) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
};

// ---------------------------------------------------------------------------
// Values: every special float (NaN, ±Infinity, -0, subnormals, extremes) and integer extreme,
// spread over the rows so that every page and row group holds some.
// ---------------------------------------------------------------------------

const SPECIAL_DOUBLES = [NaN, Infinity, -Infinity, -0, 0, 5e-324, -5e-324, 2.2250738585072014e-308, Number.MAX_VALUE, -Number.MAX_VALUE, 1, -1, 0.1, 2 ** 53 + 2];
const SPECIAL_FLOATS = [NaN, Infinity, -Infinity, -0, 0, 1.401298464324817e-45, -1.401298464324817e-45, 1.1754943508222875e-38, 3.4028234663852886e38, -3.4028234663852886e38, 1, -1, Math.fround(0.1), 16777217].map(Math.fround);
const SPECIAL_INT32 = [-(2 ** 31), 2 ** 31 - 1, 0, -1, 1, 255, -256, 65536];
const SPECIAL_INT64 = [-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 32n];

function special(type: FlatType, k: number): number | bigint {
  switch (type) {
    case 'FLOAT':
      return SPECIAL_FLOATS[k % SPECIAL_FLOATS.length]!;
    case 'DOUBLE':
      return SPECIAL_DOUBLES[k % SPECIAL_DOUBLES.length]!;
    case 'INT32':
      return SPECIAL_INT32[k % SPECIAL_INT32.length]!;
    default:
      return SPECIAL_INT64[k % SPECIAL_INT64.length]!;
  }
}

function randomValue(type: FlatType, rng: () => number): number | bigint {
  switch (type) {
    case 'FLOAT':
      return Math.fround((rng() * 2 - 1) * 1e4);
    case 'DOUBLE':
      return (rng() * 2 - 1) * 1e9;
    case 'INT32':
      return Math.floor(rng() * 2 ** 32) - 2 ** 31;
    default:
      return BigInt.asIntN(64, (BigInt(Math.floor(rng() * 2 ** 32)) << 32n) | BigInt(Math.floor(rng() * 2 ** 32)));
  }
}

/** Mostly distinct values, for PLAIN pages: every 7th row a special one. */
function plainValues(type: FlatType, rows: number, seed: number): (number | bigint)[] {
  const rng = mulberry32(seed);
  return Array.from({ length: rows }, (_, i) => (i % 7 === 0 ? special(type, i / 7) : randomValue(type, rng)));
}

/**
 * Few distinct values, for dictionary pages: long runs (RLE runs of indices) and random stretches
 * (bit-packed runs), over a palette that holds the special values (and 0 and -0 apart).
 */
function dictionaryValues(type: FlatType, rows: number, seed: number, distinct = 40): (number | bigint)[] {
  const rng = mulberry32(seed);
  const palette = Array.from({ length: distinct }, (_, k) => (k < 14 ? special(type, k) : randomValue(type, rng)));
  const out: (number | bigint)[] = [];
  while (out.length < rows) {
    const value = palette[Math.floor(rng() * palette.length)]!;
    const run = rng() < 0.3 ? 1 + Math.floor(rng() * 40) : 1;
    for (let i = 0; i < run && out.length < rows; i++) out.push(value);
  }
  return out;
}

function typedArray(type: FlatType, values: readonly (number | bigint)[]): FlatArray {
  const out = new ARRAY_OF[type](values.length);
  for (let i = 0; i < values.length; i++) (out as unknown as (number | bigint)[])[i] = values[i]!;
  return out;
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/** Whether the fast path took each column chunk, by column name, one entry per row group. */
type Handled = Map<string, boolean[]>;

/** The column chunk's bytes as parquet.ts reads them: from its dictionary page (if any) on. */
function chunkRange(meta: ColumnMetaData): { start: number; end: number } {
  const dictionary = meta.dictionary_page_offset;
  const first = dictionary !== undefined && dictionary > 0n && dictionary < meta.data_page_offset ? dictionary : meta.data_page_offset;
  return { start: Number(first), end: Number(first) + Number(meta.total_compressed_size) };
}

/** A typed array as a reused one would be: full of stale values the decoder must overwrite. */
function staleArray<T extends FlatArray>(ctor: new (n: number) => T, rows: number): T {
  const out = new ctor(rows);
  if (out instanceof BigInt64Array) out.fill(0x5a5a5a5a5a5a5a5an);
  else out.fill(-12345);
  return out;
}

/** hyparquet's values of `names` for rows [start, end). */
async function referenceValues(file: ArrayBuffer, metadata: FileMetaData, names: readonly string[], start: number, end: number): Promise<Map<string, unknown[]>> {
  const out = new Map<string, unknown[]>(names.map((name) => [name, new Array<unknown>(end - start)]));
  const seen = new Map<string, number>(names.map((name) => [name, 0]));
  await parquetRead({
    file,
    metadata,
    columns: [...names],
    rowStart: start,
    rowEnd: end,
    compressors: DECOMPRESSORS,
    onChunk: (chunk: ColumnData) => {
      const values = out.get(chunk.columnName);
      if (values === undefined) return;
      for (let row = Math.max(start, chunk.rowStart); row < Math.min(end, chunk.rowEnd); row++) values[row - start] = chunk.columnData[row - chunk.rowStart];
      seen.set(chunk.columnName, seen.get(chunk.columnName)! + Math.max(0, Math.min(end, chunk.rowEnd) - Math.max(start, chunk.rowStart)));
    },
  });
  for (const [name, count] of seen) assert.equal(count, end - start, `hyparquet read all rows of ${name}`);
  return out;
}

function show(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  return `${String(value)} (${typeof value})`;
}

/** `got` is `expected` element for element: Object.is for numbers (NaN, -0) and bigints, deep equality for lists and objects. */
function assertSameValues(got: ArrayLike<unknown>, expected: ArrayLike<unknown>, where: string): void {
  assert.equal(got.length, expected.length, `${where}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = got[i];
    const b = expected[i];
    if (Object.is(a, b)) continue;
    if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null) {
      assert.deepStrictEqual(a, b, `${where}: row ${i}`);
      continue;
    }
    assert.fail(`${where}: row ${i} is ${show(a)}, expected ${show(b)}`);
  }
}

/**
 * Every top-level leaf column chunk of `bytes` through the fast path: each one it takes must
 * equal hyparquet's reading of it. Chunks are handed over at an odd byte offset inside a larger
 * buffer (as parquet.ts does with its read buffer), to stale arrays (as reused ones are).
 */
async function checkFlat(bytes: Uint8Array): Promise<Handled> {
  const file = bytes.slice().buffer;
  const metadata = parquetMetadata(file);
  const leaves = new Map(parquetSchema(metadata).children.filter((child) => child.children.length === 0).map((child) => [child.element.name, child.element]));
  const handled: Handled = new Map([...leaves.keys()].map((name) => [name, []]));
  let groupStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rows = Number(group.num_rows);
    const decoded = new Map<string, FlatArray>();
    for (const chunk of group.columns) {
      const meta = chunk.meta_data!;
      // Nested leaves never take the fast path.
      if (meta.path_in_schema.length !== 1 || !leaves.has(meta.path_in_schema[0]!)) {
        assert.equal(flatDecodable({ name: meta.path_in_schema.join('.'), type: meta.type }, meta), false, `nested ${meta.path_in_schema.join('.')}`);
        continue;
      }
      const name = meta.path_in_schema[0]!;
      const element = leaves.get(name)!;
      let values: FlatArray | undefined;
      if (flatDecodable(element, meta)) {
        const { start, end } = chunkRange(meta);
        const padded = new Uint8Array(end - start + 8);
        padded.set(bytes.subarray(start, end), 3);
        values = decodeFlatColumn(padded.subarray(3, 3 + end - start), element, meta, rows, staleArray);
      }
      handled.get(name)!.push(values !== undefined);
      if (values !== undefined) decoded.set(name, values);
    }
    if (decoded.size > 0) {
      const reference = await referenceValues(file, metadata, [...decoded.keys()], groupStart, groupStart + rows);
      for (const [name, values] of decoded) {
        const type = leaves.get(name)!.type as FlatType;
        assert.equal(values.constructor, ARRAY_OF[type], `${name}: a ${ARRAY_OF[type].name} for ${type}`);
        assertSameValues(values, reference.get(name)!, `${name}, row group ${g}`);
      }
    }
    groupStart += rows;
  }
  return handled;
}

/** ParquetSource (fast path and hyparquet together) reads what hyparquet reads, whole and in odd chunks. */
async function checkSource(file: string, bytes: Uint8Array): Promise<void> {
  const rows = (await parquetReadObjects({ file: bytes.slice().buffer, compressors: DECOMPRESSORS })) as Record<string, unknown>[];
  const source = await ParquetSource.open(file);
  try {
    const names = source.columns.map((column) => column.name);
    const compare = (block: { start: number; rows: number; column(name: string): ArrayLike<unknown> }, where: string): void => {
      for (const name of names) {
        assertSameValues(block.column(name), rows.slice(block.start, block.start + block.rows).map((row) => row[name]), `${path.basename(file)} ${where}, column ${name}`);
      }
    };
    assert.equal(source.totalRows, rows.length);
    compare(await source.head(rows.length, names), 'whole file');
    for (const transient of [false, true]) {
      let seen = 0;
      for await (const block of source.chunks(1237, names, new Set(), { transient })) {
        assert.equal(block.skipped, false);
        if (block.skipped) continue;
        compare(block, `chunk ${block.index}${transient ? ' (transient)' : ''}`);
        seen += block.rows;
      }
      assert.equal(seen, rows.length);
    }
  } finally {
    await source.close();
  }
}

function assertHandled(handled: Handled, names: readonly string[], expected: boolean, what: string): void {
  for (const name of names) {
    const groups = handled.get(name);
    assert.ok(groups !== undefined && groups.length > 0, `${what}: column ${name} is in the file`);
    assert.deepEqual(groups, groups.map(() => expected), `${what}: column ${name} ${expected ? 'takes' : 'does not take'} the fast path in every row group`);
  }
}

/** Page types, value encodings and number of data pages of every chunk (to check the files are what they are meant to be). */
function pageLayout(bytes: Uint8Array): Map<string, { pageTypes: Set<string>; encodings: Set<string>; dataPages: number }[]> {
  const metadata = parquetMetadata(bytes.slice().buffer);
  const out = new Map<string, { pageTypes: Set<string>; encodings: Set<string>; dataPages: number }[]>();
  for (const group of metadata.row_groups) {
    for (const chunk of group.columns) {
      const meta = chunk.meta_data!;
      const { start, end } = chunkRange(meta);
      const reader = { view: new DataView(bytes.buffer, bytes.byteOffset + start, end - start), offset: 0 };
      const layout = { pageTypes: new Set<string>(), encodings: new Set<string>(), dataPages: 0 };
      while (reader.offset < end - start) {
        const header = parquetHeader(reader);
        layout.pageTypes.add(header.type);
        const encoding = header.data_page_header?.encoding ?? header.data_page_header_v2?.encoding;
        if (encoding !== undefined) {
          layout.encodings.add(encoding);
          layout.dataPages++;
        }
        reader.offset += header.compressed_page_size;
      }
      const name = meta.path_in_schema.join('.');
      out.set(name, [...(out.get(name) ?? []), layout]);
    }
  }
  return out;
}

function assertLayout(bytes: Uint8Array, names: readonly string[], want: { pageType: string; encodings?: readonly string[]; minPages?: number; dictionary?: boolean }): void {
  const layout = pageLayout(bytes);
  for (const name of names) {
    const chunks = layout.get(name);
    assert.ok(chunks !== undefined, `${name} is in the file`);
    for (const chunk of chunks) {
      assert.ok(chunk.pageTypes.has(want.pageType), `${name}: ${want.pageType} pages (has ${[...chunk.pageTypes].join(', ')})`);
      if (want.dictionary !== undefined) assert.equal(chunk.pageTypes.has('DICTIONARY_PAGE'), want.dictionary, `${name}: dictionary page`);
      if (want.encodings !== undefined) assert.deepEqual([...chunk.encodings].sort(), [...want.encodings].sort(), `${name}: page encodings`);
    }
    if (want.minPages !== undefined) assert.ok(chunks.some((chunk) => chunk.dataPages >= want.minPages!), `${name}: some chunk has ${want.minPages}+ data pages`);
  }
}

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------

let dir: string;
let fileCount = 0;

async function save(bytes: Uint8Array, label: string): Promise<string> {
  const file = path.join(dir, `${String(fileCount++).padStart(2, '0')}-${label.replace(/[^\w.-]+/g, '-')}.parquet`);
  await writeFile(file, bytes);
  return file;
}

/** Both checks on one file; the fast path's verdict per column is returned. */
async function check(bytes: Uint8Array, label: string): Promise<Handled> {
  const handled = await checkFlat(bytes);
  await checkSource(await save(bytes, label), bytes);
  return handled;
}

interface ParquetjsOptions {
  readonly v2: boolean;
  readonly compression: 'UNCOMPRESSED' | 'SNAPPY' | 'GZIP' | 'BROTLI';
  readonly optional: boolean;
}

/** A file written by @dsnp/parquetjs: rows of `fields` (rows per page and per row group kept small). */
async function parquetjsFile(label: string, fields: Record<string, Record<string, unknown>>, rows: readonly Record<string, unknown>[], v2: boolean): Promise<Uint8Array> {
  const file = path.join(dir, `parquetjs-${label.replace(/[^\w.-]+/g, '-')}.parquet`);
  const schema = new parquetjs.ParquetSchema(fields as ConstructorParameters<typeof parquetjs.ParquetSchema>[0]);
  const writer = await parquetjs.ParquetWriter.openFile(schema, file, { useDataPageV2: v2, pageSize: 700, rowGroupSize: 2500 });
  for (const row of rows) await writer.appendRow(row);
  await writer.close();
  return new Uint8Array(await readFile(file));
}

type WriterColumn = Parameters<typeof parquetWriteBuffer>[0]['columnData'][number];

/** hyparquet-writer options for columns some of which have their schema element given (`overrides`). */
function withSchema(columnData: readonly WriterColumn[], overrides: Record<string, SchemaElement>): { columnData: WriterColumn[]; schema: SchemaElement[] } {
  const schema = schemaFromColumnData({
    columnData: columnData.map((column) => (overrides[column.name] === undefined ? column : { name: column.name, data: column.data })),
    schemaOverrides: overrides,
  });
  // With a schema, hyparquet-writer takes no types (nor nullability) in the column data.
  return { columnData: columnData.map(({ type: _type, nullable: _nullable, ...column }) => column), schema };
}

function flatRows(count: number, seed: number): Record<string, unknown>[] {
  const columns = FLAT.map((type, k) => plainValues(type, count, seed + k));
  return Array.from({ length: count }, (_, i) => Object.fromEntries(FLAT.map((type, k) => [NAME[type], columns[k]![i]])));
}

// The handmade writer: page by page, with hyparquet-writer's encoders for the page headers, the
// PLAIN values, the RLE/bit-packed hybrid runs, snappy and the footer.

interface HandColumn {
  readonly name: string;
  readonly type: FlatType;
  readonly values: readonly Scalar[];
  readonly optional?: boolean;
  /** Value encoding of the data pages; the dictionary ones get a dictionary page first. */
  readonly encoding: 'PLAIN' | 'PLAIN_DICTIONARY' | 'RLE_DICTIONARY';
  /** Encoding named in the dictionary page header (Parquet 1.0 writers say PLAIN_DICTIONARY). */
  readonly dictionaryPageEncoding?: 'PLAIN' | 'PLAIN_DICTIONARY';
  /** Data pages from this one (of a chunk) on are PLAIN, as writers do when a dictionary grows too big. */
  readonly plainFromPage?: number;
  /** Definition levels as bit-packed runs (zero padded) rather than RLE runs. */
  readonly bitPackedLevels?: boolean;
  readonly pageVersion?: 1 | 2;
  /** v2 only: values stored uncompressed (is_compressed false) in a compressed chunk. */
  readonly uncompressedPages?: boolean;
  /** A converted or logical type for the schema element. */
  readonly annotation?: Pick<SchemaElement, 'converted_type' | 'logical_type'>;
}

interface HandOptions {
  readonly rowsPerGroup: number;
  readonly rowsPerPage: number;
  readonly codec: 'UNCOMPRESSED' | 'SNAPPY';
}

function valueKey(value: number | bigint): string {
  return typeof value === 'bigint' ? `${value}n` : Object.is(value, -0) ? '-0' : String(value);
}

/** Definition levels (bit width 1) as the RLE/bit-packed hybrid. */
function encodeLevels(levels: number[], bitPacked: boolean): Uint8Array {
  const writer = new ByteWriter();
  if (!bitPacked) {
    writeRleBitPackedHybrid(writer, levels, 1);
    return writer.getBytes();
  }
  const groups = Math.ceil(levels.length / 8);
  writer.appendVarInt((groups << 1) | 1);
  for (let g = 0; g < groups; g++) {
    let byte = 0;
    for (let bit = 0; bit < 8; bit++) byte |= (levels[g * 8 + bit] ?? 0) << bit;
    writer.appendUint8(byte);
  }
  return writer.getBytes();
}

function handmadeFile(columns: readonly HandColumn[], options: HandOptions): Uint8Array {
  const rows = columns[0]!.values.length;
  const compress = (bytes: Uint8Array): Uint8Array => (options.codec === 'SNAPPY' ? snappyCompress(bytes) : bytes);
  const writer = new ByteWriter();
  writer.appendUint32(0x31524150);
  const rowGroups: FileMetaData['row_groups'] = [];
  for (let groupStart = 0; groupStart < rows; groupStart += options.rowsPerGroup) {
    const groupEnd = Math.min(rows, groupStart + options.rowsPerGroup);
    const chunks: FileMetaData['row_groups'][number]['columns'] = [];
    let groupBytes = 0;
    for (const column of columns) {
      const chunkStart = writer.offset;
      const values = column.values.slice(groupStart, groupEnd);
      const page = (header: PageHeader, body: Uint8Array): void => {
        writePageHeader(writer, header);
        writer.appendBytes(body);
      };
      let uncompressed = 0;
      let dictionaryOffset: bigint | undefined;
      const index = new Map<string, number>();
      const dictionary: (number | bigint)[] = [];
      const encodings = new Set<string>(['RLE']);
      if (column.encoding !== 'PLAIN') {
        for (const value of values) {
          if (value === null || index.has(valueKey(value))) continue;
          index.set(valueKey(value), dictionary.length);
          dictionary.push(value);
        }
        const body = new ByteWriter();
        writePlain(body, dictionary, column.type, undefined);
        const bytes = body.getBytes();
        const compressed = compress(bytes);
        dictionaryOffset = BigInt(writer.offset);
        const encoding = column.dictionaryPageEncoding ?? 'PLAIN';
        encodings.add(encoding);
        page({ type: 'DICTIONARY_PAGE', uncompressed_page_size: bytes.length, compressed_page_size: compressed.length, dictionary_page_header: { num_values: dictionary.length, encoding } }, compressed);
        uncompressed += bytes.length;
      }
      const dataOffset = BigInt(writer.offset);
      for (let first = 0, p = 0; first < values.length; first += options.rowsPerPage, p++) {
        const pageValues = values.slice(first, first + options.rowsPerPage);
        const present = pageValues.filter((value): value is number | bigint => value !== null);
        const encoding = column.encoding !== 'PLAIN' && (column.plainFromPage === undefined || p < column.plainFromPage) ? column.encoding : 'PLAIN';
        encodings.add(encoding);
        const body = new ByteWriter();
        if (encoding === 'PLAIN') {
          writePlain(body, present, column.type, undefined);
        } else {
          const bitWidth = dictionary.length <= 1 ? 0 : 32 - Math.clz32(dictionary.length - 1);
          body.appendUint8(bitWidth);
          writeRleBitPackedHybrid(body, present.map((value) => index.get(valueKey(value))!), bitWidth);
        }
        const valueBytes = body.getBytes();
        const levels = column.optional === true ? encodeLevels(pageValues.map((value) => (value === null ? 0 : 1)), column.bitPackedLevels === true) : new Uint8Array(0);
        if (column.pageVersion === 2) {
          const stored = column.uncompressedPages === true ? valueBytes : compress(valueBytes);
          page(
            {
              type: 'DATA_PAGE_V2',
              uncompressed_page_size: levels.length + valueBytes.length,
              compressed_page_size: levels.length + stored.length,
              data_page_header_v2: {
                num_values: pageValues.length,
                num_nulls: pageValues.length - present.length,
                num_rows: pageValues.length,
                encoding,
                definition_levels_byte_length: levels.length,
                repetition_levels_byte_length: 0,
                is_compressed: column.uncompressedPages !== true,
              },
            },
            concat(levels, stored),
          );
          uncompressed += levels.length + valueBytes.length;
        } else {
          const prefix = new ByteWriter();
          if (column.optional === true) prefix.appendUint32(levels.length);
          const bytes = concat(prefix.getBytes(), levels, valueBytes);
          const compressed = compress(bytes);
          page(
            {
              type: 'DATA_PAGE',
              uncompressed_page_size: bytes.length,
              compressed_page_size: compressed.length,
              data_page_header: { num_values: pageValues.length, encoding, definition_level_encoding: 'RLE', repetition_level_encoding: 'RLE' },
            },
            compressed,
          );
          uncompressed += bytes.length;
        }
      }
      groupBytes += writer.offset - chunkStart;
      chunks.push({
        file_offset: BigInt(chunkStart),
        meta_data: {
          type: column.type,
          encodings: [...encodings] as ColumnMetaData['encodings'],
          path_in_schema: [column.name],
          codec: options.codec,
          num_values: BigInt(values.length),
          total_uncompressed_size: BigInt(uncompressed),
          total_compressed_size: BigInt(writer.offset - chunkStart),
          data_page_offset: dataOffset,
          ...(dictionaryOffset === undefined ? {} : { dictionary_page_offset: dictionaryOffset }),
        },
      });
    }
    rowGroups.push({ columns: chunks, total_byte_size: BigInt(groupBytes), num_rows: BigInt(groupEnd - groupStart) });
  }
  const schema: SchemaElement[] = [
    { name: 'root', num_children: columns.length },
    ...columns.map((column): SchemaElement => ({ name: column.name, type: column.type, repetition_type: column.optional === true ? 'OPTIONAL' : 'REQUIRED', ...column.annotation })),
  ];
  writeMetadata(writer, { version: 1, schema, num_rows: BigInt(rows), row_groups: rowGroups, created_by: 'tessera test (handmade)', metadata_length: 0 });
  writer.appendUint32(0x31524150);
  return new Uint8Array(writer.getBuffer());
}

function concat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tessera-parquet-flat-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const FLAT_NAMES = FLAT.map((type) => NAME[type]);

describe('hyparquet-writer files (data page v2)', () => {
  for (const codec of ['SNAPPY', 'UNCOMPRESSED'] as const) {
    for (const nullable of [false, true]) {
      for (const encoding of ['PLAIN', 'RLE_DICTIONARY'] as const) {
        const label = `${codec} ${nullable ? 'OPTIONAL (no nulls)' : 'REQUIRED'} ${encoding}`;
        test(label, async () => {
          const rows = 7000;
          const values = (type: FlatType, k: number) => (encoding === 'PLAIN' ? plainValues(type, rows, 100 + k) : dictionaryValues(type, rows, 200 + k));
          const bytes = new Uint8Array(
            parquetWriteBuffer({
              columnData: FLAT.map((type, k) => ({ name: NAME[type], data: typedArray(type, values(type, k)), type, nullable, encoding })),
              codec,
              rowGroupSize: 3000,
              pageSize: encoding === 'PLAIN' ? 2048 : 512,
            }),
          );
          assertLayout(bytes, FLAT_NAMES, { pageType: 'DATA_PAGE_V2', encodings: [encoding], dictionary: encoding !== 'PLAIN', minPages: 4 });
          assert.equal(parquetMetadata(bytes.slice().buffer).row_groups.length, 3);
          assertHandled(await check(bytes, label), FLAT_NAMES, true, label);
        });
      }
    }
  }

  test('a dictionary of one value (indices of bit width 0), INT_32/INT_64 and signed INTEGER annotations', async () => {
    const rows = 5000;
    const columnData = [
      { name: 'one_f64', data: new Float64Array(rows).fill(-0), type: 'DOUBLE' as const, nullable: false, encoding: 'RLE_DICTIONARY' as const },
      { name: 'one_i64', data: new BigInt64Array(rows).fill(-7n), type: 'INT64' as const, nullable: true, encoding: 'RLE_DICTIONARY' as const },
      { name: 'int_32', data: typedArray('INT32', plainValues('INT32', rows, 5)) },
      { name: 'int_64', data: typedArray('INT64', dictionaryValues('INT64', rows, 6)), encoding: 'RLE_DICTIONARY' as const },
      { name: 'integer_32', data: typedArray('INT32', plainValues('INT32', rows, 7)) },
      { name: 'integer_64', data: typedArray('INT64', plainValues('INT64', rows, 8)) },
    ];
    const written = withSchema(columnData, {
        int_32: { name: 'int_32', type: 'INT32', converted_type: 'INT_32', repetition_type: 'REQUIRED' },
        int_64: { name: 'int_64', type: 'INT64', converted_type: 'INT_64', repetition_type: 'OPTIONAL' },
        integer_32: { name: 'integer_32', type: 'INT32', logical_type: { type: 'INTEGER', bitWidth: 32, isSigned: true }, repetition_type: 'REQUIRED' },
        integer_64: { name: 'integer_64', type: 'INT64', logical_type: { type: 'INTEGER', bitWidth: 64, isSigned: true }, repetition_type: 'REQUIRED' },
    });
    const bytes = new Uint8Array(parquetWriteBuffer({ ...written, rowGroupSize: 2000, pageSize: 2048 }));
    assertLayout(bytes, ['one_f64', 'one_i64'], { pageType: 'DATA_PAGE_V2', encodings: ['RLE_DICTIONARY'], dictionary: true });
    assertHandled(await check(bytes, 'annotations'), columnData.map((column) => column.name), true, 'annotations');
  });

  test('turned down: nulls, strings, booleans, value-changing annotations, other encodings and codecs', async () => {
    const rows = 4000;
    const withNulls = (type: FlatType, seed: number, every: number) => plainValues(type, rows, seed).map((value, i) => (i % every === every - 1 ? null : value));
    // One null per row group, in its last row.
    const onlyLastNull = plainValues('DOUBLE', rows, 40).map((value, i) => (i % 1500 === 1499 || i === rows - 1 ? null : value));
    const columnData = [
      { name: 'f64_nulls', data: withNulls('DOUBLE', 30, 13), type: 'DOUBLE' as const, nullable: true },
      { name: 'f32_nulls_dict', data: dictionaryValues('FLOAT', rows, 31).map((value, i) => (i % 101 === 100 ? null : value)), type: 'FLOAT' as const, nullable: true, encoding: 'RLE_DICTIONARY' as const },
      { name: 'i32_nulls', data: withNulls('INT32', 32, 3), type: 'INT32' as const, nullable: true },
      { name: 'i64_nulls', data: withNulls('INT64', 33, 500), type: 'INT64' as const, nullable: true },
      { name: 'f64_last_null', data: onlyLastNull, type: 'DOUBLE' as const, nullable: true },
      { name: 'text', data: Array.from({ length: rows }, (_, i) => `row ${i}`), type: 'STRING' as const },
      { name: 'flag', data: Array.from({ length: rows }, (_, i) => i % 3 === 0), type: 'BOOLEAN' as const },
      { name: 'f32_split', data: typedArray('FLOAT', plainValues('FLOAT', rows, 34)), type: 'FLOAT' as const, encoding: 'BYTE_STREAM_SPLIT' as const },
      { name: 'f64_split', data: typedArray('DOUBLE', plainValues('DOUBLE', rows, 35)), type: 'DOUBLE' as const, encoding: 'BYTE_STREAM_SPLIT' as const },
      { name: 'i32_delta', data: typedArray('INT32', plainValues('INT32', rows, 36)), type: 'INT32' as const, encoding: 'DELTA_BINARY_PACKED' as const },
      { name: 'i64_delta', data: typedArray('INT64', plainValues('INT64', rows, 37)), type: 'INT64' as const, encoding: 'DELTA_BINARY_PACKED' as const },
      { name: 'f64_gzip', data: typedArray('DOUBLE', plainValues('DOUBLE', rows, 38)), type: 'DOUBLE' as const, codec: 'GZIP' as const },
      // (hyparquet-writer cannot write UINT_32 values of 2^31 and more: the handmade file has them.)
      { name: 'u32', data: Int32Array.from(plainValues('INT32', rows, 39) as number[], (value) => value & 0x7fffffff) },
      { name: 'uinteger_64', data: BigUint64Array.from(plainValues('INT64', rows, 41) as bigint[], (value) => BigInt.asUintN(64, value)) },
      { name: 'int_8', data: Int32Array.from({ length: rows }, (_, i) => (i % 256) - 128) },
      { name: 'decimal', data: Int32Array.from({ length: rows }, (_, i) => i * 37 - 50000) },
      { name: 'stamp', data: BigInt64Array.from({ length: rows }, (_, i) => BigInt(1_700_000_000_000 + i * 1000)) },
    ];
    const overrides: Record<string, SchemaElement> = {
        u32: { name: 'u32', type: 'INT32', converted_type: 'UINT_32', repetition_type: 'REQUIRED' },
        uinteger_64: { name: 'uinteger_64', type: 'INT64', logical_type: { type: 'INTEGER', bitWidth: 64, isSigned: false }, repetition_type: 'REQUIRED' },
        int_8: { name: 'int_8', type: 'INT32', converted_type: 'INT_8', repetition_type: 'REQUIRED' },
        decimal: { name: 'decimal', type: 'INT32', converted_type: 'DECIMAL', scale: 2, precision: 9, repetition_type: 'REQUIRED' },
        stamp: { name: 'stamp', type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'REQUIRED' },
    };
    const bytes = new Uint8Array(parquetWriteBuffer({ ...withSchema(columnData, overrides), rowGroupSize: 1500, pageSize: 4096, compressors: { GZIP: (input) => new Uint8Array(gzipSync(input)) } }));
    const handled = await checkFlat(bytes);
    assertHandled(handled, columnData.map((column) => column.name), false, 'turned down');
    // The batch input reader reads every one of them through hyparquet (gzip with node:zlib),
    // exactly as hyparquet does.
    await checkSource(await save(bytes, 'turned-down'), bytes);
  });

  test('fast and slow columns side by side, several row groups, read through ParquetSource', async () => {
    const rows = 9000;
    const columnData = [
      ...FLAT.map((type, k) => ({ name: NAME[type], data: typedArray(type, plainValues(type, rows, 50 + k)), type, nullable: false })),
      { name: 'label', data: Array.from({ length: rows }, (_, i) => (i % 5 === 0 ? null : `label ${i % 17}`)), type: 'STRING' as const },
      { name: 'score', data: plainValues('DOUBLE', rows, 60).map((value, i) => (i % 9 === 0 ? null : value)), type: 'DOUBLE' as const, nullable: true },
      { name: 'code', data: typedArray('INT32', dictionaryValues('INT32', rows, 61)), type: 'INT32' as const, encoding: 'RLE_DICTIONARY' as const },
    ];
    // Small row groups, then large ones: ParquetSource's windows cross row groups and pages.
    const bytes = new Uint8Array(parquetWriteBuffer({ columnData, rowGroupSize: [1000, 3000], pageSize: 3000 }));
    const handled = await check(bytes, 'mixed');
    assertHandled(handled, [...FLAT_NAMES, 'code'], true, 'mixed');
    assertHandled(handled, ['label', 'score'], false, 'mixed');
  });
});

describe('@dsnp/parquetjs files', () => {
  for (const v2 of [false, true]) {
    for (const compression of ['SNAPPY', 'UNCOMPRESSED'] as const) {
      for (const optional of [false, true]) {
        const label = `data page ${v2 ? 'v2' : 'v1'} ${compression} ${optional ? 'OPTIONAL (no nulls)' : 'REQUIRED'}`;
        test(label, async () => {
          const fields = Object.fromEntries(FLAT.map((type) => [NAME[type], { type, compression, optional }]));
          const bytes = await parquetjsFile(label.replace(/\W+/g, '-'), fields, flatRows(6000, v2 ? 300 : 400), v2);
          assertLayout(bytes, FLAT_NAMES, { pageType: v2 ? 'DATA_PAGE_V2' : 'DATA_PAGE', encodings: ['PLAIN'], dictionary: false, minPages: 3 });
          assert.equal(parquetMetadata(bytes.slice().buffer).row_groups.length, 3);
          assertHandled(await check(bytes, `parquetjs-${label.replace(/\W+/g, '-')}`), FLAT_NAMES, true, label);
        });
      }
    }
  }

  for (const v2 of [false, true]) {
    test(`turned down (data page ${v2 ? 'v2' : 'v1'}): nulls, other codecs, annotations, strings, repeated and nested columns`, async () => {
      const rows = 3000;
      const fields = {
        f64_nulls: { type: 'DOUBLE', optional: true, compression: 'SNAPPY' },
        i32_nulls: { type: 'INT32', optional: true },
        f64_gzip: { type: 'DOUBLE', compression: 'GZIP' },
        f32_brotli: { type: 'FLOAT', compression: 'BROTLI' },
        u32: { type: 'UINT_32' },
        i16: { type: 'INT_16' },
        day: { type: 'DATE' },
        millis: { type: 'TIMESTAMP_MILLIS' },
        text: { type: 'UTF8' },
        many: { type: 'DOUBLE', repeated: true },
        point: { fields: { x: { type: 'DOUBLE' }, y: { type: 'FLOAT' } } },
        int_32: { type: 'INT_32' },
        int_64: { type: 'INT_64', compression: 'SNAPPY' },
      };
      const doubles = plainValues('DOUBLE', rows, 70) as number[];
      const ints = plainValues('INT32', rows, 71) as number[];
      const records = Array.from({ length: rows }, (_, i) => ({
        // Nulls in runs of 8 (parquetjs's bit-packed level runs are only right in whole groups).
        f64_nulls: Math.floor(i / 8) % 5 === 4 ? null : doubles[i],
        i32_nulls: Math.floor(i / 16) % 3 === 1 ? null : ints[i],
        f64_gzip: doubles[(i * 7) % rows],
        f32_brotli: Math.fround(doubles[(i * 11) % rows]!),
        u32: (ints[i]! >>> 0) & 0x7fffffff,
        i16: (ints[i]! % 30000) | 0,
        day: new Date(Date.UTC(2020, 0, 1) + (i % 1000) * 86_400_000),
        millis: new Date(1_700_000_000_000 + i * 1001),
        text: `text ${i}`,
        many: i % 4 === 0 ? [] : [doubles[i], doubles[(i + 1) % rows]],
        point: { x: doubles[i], y: Math.fround(doubles[(i + 3) % rows]!) },
        int_32: ints[i],
        int_64: BigInt(ints[i]!) * 4_000_000_007n,
      }));
      const bytes = await parquetjsFile(`turned-down-${v2 ? 'v2' : 'v1'}`, fields, records, v2);
      const handled = await checkFlat(bytes);
      assertHandled(handled, ['f64_nulls', 'i32_nulls', 'f64_gzip', 'f32_brotli', 'u32', 'i16', 'day', 'millis', 'text', 'many'], false, 'turned down');
      assertHandled(handled, ['int_32', 'int_64'], true, 'INT_32 and INT_64');
      const file = await save(bytes, `parquetjs-turned-down-${v2 ? 'v2' : 'v1'}`);
      // gzip and brotli columns are read through hyparquet with node:zlib: ParquetSource reads
      // every column as hyparquet does.
      const source = await ParquetSource.open(file);
      try {
        const names = source.columns.map((column) => column.name);
        const reference = (await parquetReadObjects({ file: bytes.slice().buffer, columns: names, compressors: DECOMPRESSORS })) as Record<string, unknown>[];
        const block = await source.head(rows, names);
        for (const name of names) assertSameValues(block.column(name), reference.map((row) => row[name]), `parquetjs turned down, column ${name}`);
      } finally {
        await source.close();
      }
    });
  }
});

describe('handmade files (pages neither writer produces)', () => {
  const rows = 6500;
  // Pages of 603 rows: bit-packed level runs end in a partial group of 3.
  const options = { rowsPerGroup: 2500, rowsPerPage: 603 };

  for (const codec of ['SNAPPY', 'UNCOMPRESSED'] as const) {
    test(`data page v1 with dictionaries, ${codec}`, async () => {
      const columns: HandColumn[] = [];
      for (const [k, type] of FLAT.entries()) {
        const name = NAME[type];
        const dict = dictionaryValues(type, rows, 500 + k);
        columns.push(
          // pyarrow's default layout: OPTIONAL, RLE_DICTIONARY with a PLAIN dictionary page, v1 pages.
          { name: `${name}_rle_dict`, type, values: dict, optional: true, encoding: 'RLE_DICTIONARY' },
          // Parquet 1.0 layout: PLAIN_DICTIONARY data and dictionary pages, REQUIRED.
          { name: `${name}_plain_dict`, type, values: dict, encoding: 'PLAIN_DICTIONARY', dictionaryPageEncoding: 'PLAIN_DICTIONARY' },
          // A dictionary that gave up after two pages of each chunk: the rest PLAIN.
          { name: `${name}_dict_then_plain`, type, values: plainValues(type, rows, 600 + k), optional: k % 2 === 0, encoding: 'RLE_DICTIONARY', plainFromPage: 2 },
          // Levels as bit-packed runs whose last group is padded with zeros.
          { name: `${name}_bitpacked_levels`, type, values: plainValues(type, rows, 700 + k), optional: true, encoding: 'PLAIN', bitPackedLevels: true },
          { name: `${name}_plain_v1`, type, values: plainValues(type, rows, 800 + k), encoding: 'PLAIN' },
        );
      }
      columns.push({ name: 'zeros', type: 'DOUBLE', values: Array.from({ length: rows }, (_, i) => (i % 3 === 0 ? -0 : 0)), optional: true, encoding: 'RLE_DICTIONARY', bitPackedLevels: true });
      columns.push({ name: 'single', type: 'FLOAT', values: new Array<number>(rows).fill(NaN), encoding: 'PLAIN_DICTIONARY' });
      const bytes = handmadeFile(columns, { ...options, codec });
      assertLayout(bytes, columns.map((column) => column.name), { pageType: 'DATA_PAGE', minPages: 4 });
      assertLayout(bytes, [`f64_plain_dict`], { pageType: 'DATA_PAGE', encodings: ['PLAIN_DICTIONARY'], dictionary: true });
      assertLayout(bytes, [`i64_dict_then_plain`], { pageType: 'DATA_PAGE', encodings: ['PLAIN', 'RLE_DICTIONARY'], dictionary: true });
      assertHandled(await check(bytes, `handmade-v1-${codec}`), columns.map((column) => column.name), true, `handmade v1 ${codec}`);
    });
  }

  test('data page v2 stored uncompressed in a snappy chunk, PLAIN and dictionary', async () => {
    const columns: HandColumn[] = FLAT.flatMap((type, k): HandColumn[] => [
      { name: `${NAME[type]}_plain`, type, values: plainValues(type, rows, 900 + k), optional: k % 2 === 1, encoding: 'PLAIN', pageVersion: 2, uncompressedPages: true },
      { name: `${NAME[type]}_dict`, type, values: dictionaryValues(type, rows, 950 + k), optional: k % 2 === 0, encoding: 'RLE_DICTIONARY', pageVersion: 2, uncompressedPages: true },
    ]);
    const bytes = handmadeFile(columns, { ...options, codec: 'SNAPPY' });
    assertLayout(bytes, columns.map((column) => column.name), { pageType: 'DATA_PAGE_V2', minPages: 4 });
    assertHandled(await check(bytes, 'handmade-v2-stored'), columns.map((column) => column.name), true, 'handmade v2 stored');
  });

  test('turned down: nulls in v1 pages (RLE and bit-packed levels, dictionary and PLAIN), unsigned integers', async () => {
    const nulls = (values: readonly Scalar[], at: (i: number) => boolean) => values.map((value, i) => (at(i) ? null : value));
    const scattered = (plainValues('INT32', rows, 1008) as number[]).map((value) => value % 37);
    const columns: HandColumn[] = [
      { name: 'rle_levels', type: 'DOUBLE', values: nulls(plainValues('DOUBLE', rows, 1000), (i) => i % 97 === 0), optional: true, encoding: 'PLAIN' },
      { name: 'dict_nulls', type: 'INT64', values: nulls(dictionaryValues('INT64', rows, 1001), (i) => i % 1000 === 999), optional: true, encoding: 'RLE_DICTIONARY' },
      // One null per page, in the last (partial) bit-packed group: the one bit that must be seen.
      { name: 'bitpacked_last', type: 'FLOAT', values: nulls(plainValues('FLOAT', rows, 1002), (i) => (i % 2500) % 603 === 602 || i === rows - 1), optional: true, encoding: 'PLAIN', bitPackedLevels: true },
      { name: 'bitpacked_first', type: 'INT32', values: nulls(plainValues('INT32', rows, 1003), (i) => (i % 2500) % 603 === 0), optional: true, encoding: 'PLAIN_DICTIONARY', bitPackedLevels: true },
      // Dictionary indices in bit-packed runs: zero padding reads as index 0 if the decoder takes
      // the page as having no nulls (only the levels, or num_nulls in v2, tell).
      { name: 'bitpacked_last_dict', type: 'INT32', values: nulls(scattered, (i) => (i % 2500) % 603 === 602), optional: true, encoding: 'RLE_DICTIONARY', bitPackedLevels: true },
      { name: 'rle_last_dict', type: 'INT32', values: nulls(scattered, (i) => (i % 2500) % 603 === 602), optional: true, encoding: 'RLE_DICTIONARY' },
      { name: 'v2_last_dict', type: 'INT32', values: nulls(scattered, (i) => (i % 2500) % 603 === 602), optional: true, encoding: 'RLE_DICTIONARY', pageVersion: 2 },
      { name: 'v2_nulls', type: 'DOUBLE', values: nulls(plainValues('DOUBLE', rows, 1004), (i) => i % 300 === 7), optional: true, encoding: 'PLAIN', pageVersion: 2 },
      // Unsigned: the negative physical values are 2^31 and more (2^63 and more) to hyparquet.
      { name: 'u32', type: 'INT32', values: plainValues('INT32', rows, 1005), encoding: 'PLAIN', annotation: { converted_type: 'UINT_32' } },
      { name: 'u32_dict', type: 'INT32', values: dictionaryValues('INT32', rows, 1006), encoding: 'RLE_DICTIONARY', annotation: { logical_type: { type: 'INTEGER', bitWidth: 32, isSigned: false } } },
      { name: 'u64', type: 'INT64', values: plainValues('INT64', rows, 1007), optional: true, encoding: 'PLAIN', annotation: { converted_type: 'UINT_64' } },
    ];
    const bytes = handmadeFile(columns, { ...options, codec: 'SNAPPY' });
    assertHandled(await check(bytes, 'handmade-nulls'), columns.map((column) => column.name), false, 'handmade nulls');
  });
});

describe('decodeFlatColumn on damaged or mismatched input', () => {
  test('truncated chunks, wrong row counts and the wrong codec are turned down, never misread', async () => {
    const rows = 3000;
    for (const encoding of ['PLAIN', 'RLE_DICTIONARY'] as const) {
      for (const codec of ['SNAPPY', 'UNCOMPRESSED'] as const) {
        const values = encoding === 'PLAIN' ? plainValues('DOUBLE', rows, 1100) : dictionaryValues('DOUBLE', rows, 1101);
        const bytes = new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'x', data: typedArray('DOUBLE', values), type: 'DOUBLE', nullable: false, encoding }], codec, rowGroupSize: rows, pageSize: 4096 }));
        const metadata = parquetMetadata(bytes.slice().buffer);
        const element = parquetSchema(metadata).children[0]!.element;
        const meta = metadata.row_groups[0]!.columns[0]!.meta_data!;
        const { start, end } = chunkRange(meta);
        const chunk = bytes.slice(start, end);
        const where = `${encoding} ${codec}`;
        const whole = decodeFlatColumn(chunk, element, meta, rows);
        assert.ok(whole !== undefined, `${where}: the intact chunk decodes`);
        assertSameValues(whole, (await referenceValues(bytes.slice().buffer, metadata, ['x'], 0, rows)).get('x')!, where);
        for (const cut of [1, 7, 100, chunk.length - 9, chunk.length - 1]) {
          assert.equal(decodeFlatColumn(chunk.subarray(0, cut), element, meta, rows), undefined, `${where}: cut at ${cut}`);
        }
        assert.equal(decodeFlatColumn(chunk, element, meta, rows + 1), undefined, `${where}: one row more than the chunk holds`);
        assert.equal(decodeFlatColumn(chunk, element, meta, rows - 1), undefined, `${where}: one row fewer than the chunk holds`);
        assert.equal(decodeFlatColumn(chunk, element, { ...meta, codec: codec === 'SNAPPY' ? 'UNCOMPRESSED' : 'SNAPPY' }, rows), undefined, `${where}: the wrong codec`);
      }
    }
  });
});

describe('snappyDecompress', () => {
  /** A snappy stream from raw elements: literals and copies of every tag kind. */
  function stream(length: number, ...elements: readonly number[][]): Uint8Array {
    const out: number[] = [];
    let n = length;
    do {
      out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
      n = Math.floor(n / 128);
    } while (n > 0);
    for (const element of elements) out.push(...element);
    return Uint8Array.from(out);
  }
  const literal = (bytes: readonly number[]): number[] => {
    const n = bytes.length - 1;
    if (n < 60) return [n << 2, ...bytes];
    if (n < 256) return [60 << 2, n, ...bytes];
    if (n < 65536) return [61 << 2, n & 0xff, n >> 8, ...bytes];
    return [62 << 2, n & 0xff, (n >> 8) & 0xff, n >> 16, ...bytes];
  };
  const copy1 = (length: number, offset: number): number[] => [1 | ((length - 4) << 2) | ((offset >> 8) << 5), offset & 0xff];
  const copy2 = (length: number, offset: number): number[] => [2 | ((length - 1) << 2), offset & 0xff, offset >> 8];
  const copy4 = (length: number, offset: number): number[] => [3 | ((length - 1) << 2), offset & 0xff, (offset >> 8) & 0xff, (offset >> 16) & 0xff, offset >>> 24];

  function reference(input: Uint8Array, length: number): Uint8Array {
    const out = new Uint8Array(length);
    snappyUncompress(input, out);
    return out;
  }

  test('every tag kind, overlapping and block copies, long literals: as hyparquet decodes them', () => {
    const bytes = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 31 + seed * 17 + ((i * i) >> 3)) & 0xff);
    const cases: [string, Uint8Array, number][] = [
      ['short literal', stream(5, literal(bytes(5, 1))), 5],
      ['literal of 61..256 bytes (1-byte length)', stream(200, literal(bytes(200, 2))), 200],
      ['literal of 2-byte length', stream(3000, literal(bytes(3000, 3))), 3000],
      ['copy, 1-byte offset, overlapping (a run)', stream(12, literal([7]), copy1(11, 1)), 12],
      ['copy, 2-byte offset, overlapping, long', stream(66, literal([1, 2]), copy2(64, 2)), 66],
      ['copy, 2-byte offset, block copy (offset >= length >= 32)', stream(100 + 64, literal(bytes(100, 4)), copy2(64, 100)), 164],
      ['copy, 2-byte offset, just under the block size', stream(100 + 31, literal(bytes(100, 5)), copy2(31, 70)), 131],
      ['copy, 4-byte offset', stream(70_000 + 40, literal(bytes(70_000, 6)), copy4(40, 69_999)), 70_040],
      ['copy, 1-byte offset with high bits', stream(1100, literal(bytes(1000, 7)), copy1(11, 999), copy2(64, 1000), copy2(25, 3)), 1100],
    ];
    for (const [what, input, length] of cases) {
      const out = new Uint8Array(length);
      assert.equal(snappyDecompress(input, out), true, what);
      assertSameValues(out, reference(input, length), what);
    }
  });

  test('real compressors (hyparquet-writer, snappyjs in parquetjs) round trip', async () => {
    // snappyjs is what @dsnp/parquetjs compresses with.
    const snappyjs = createRequire(createRequire(import.meta.url).resolve('@dsnp/parquetjs'))('snappyjs') as { compress(input: Uint8Array): Uint8Array };
    const rng = mulberry32(1200);
    const inputs = [
      new Uint8Array(0),
      Uint8Array.from({ length: 1 }, () => 9),
      new Uint8Array(100_000),
      Uint8Array.from({ length: 200_000 }, () => Math.floor(rng() * 256)),
      Uint8Array.from({ length: 200_000 }, (_, i) => (i % 1000 < 600 ? i & 7 : Math.floor(rng() * 4))),
      new Uint8Array(typedArray('DOUBLE', dictionaryValues('DOUBLE', 30_000, 1201)).buffer),
    ];
    for (const [k, input] of inputs.entries()) {
      for (const [name, compress] of [
        ['hyparquet-writer', snappyCompress],
        ['snappyjs', (bytes: Uint8Array) => new Uint8Array(snappyjs.compress(bytes))],
      ] as const) {
        const out = new Uint8Array(input.length);
        assert.equal(snappyDecompress(compress(input), out), true, `${name} input ${k}`);
        assertSameValues(out, input, `${name} input ${k}`);
      }
    }
  });

  test('malformed streams are rejected', () => {
    const cases: [string, Uint8Array, number][] = [
      ['empty input', new Uint8Array(0), 0],
      ['length longer than the output', stream(10, literal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])), 9],
      ['length shorter than the output', stream(3, literal([1, 2, 3])), 4],
      ['stream ends early', stream(10, literal([1, 2, 3])), 10],
      ['literal runs past the input', stream(10, [9 << 2, 1, 2]), 10],
      ['literal runs past the output', stream(2, literal([1, 2, 3])), 2],
      ['copy with offset 0', stream(8, literal([1, 2, 3, 4]), copy1(4, 0)), 8],
      ['copy from before the start', stream(8, literal([1, 2, 3, 4]), copy2(4, 5)), 8],
      ['copy past the output', stream(8, literal([1, 2, 3, 4]), copy2(5, 4)), 8],
      ['truncated copy', stream(8, literal([1, 2, 3, 4]), [2 | (3 << 2), 4]), 8],
      ['endless length varint', Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]), 0],
    ];
    for (const [what, input, length] of cases) assert.equal(snappyDecompress(input, new Uint8Array(length)), false, what);
  });
});

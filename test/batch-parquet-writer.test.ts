/**
 * The Parquet output path of `tessera batch`, piece by piece, checked against independent
 * readers: row groups encoded straight from a chunk's columns (numeric values written from the
 * column arrays themselves, compressed pages, statistics noted as outputs arrive or scanned)
 * and appended with gathered writes, read back with hyparquet and @dsnp/parquetjs; the snappy
 * compressor against hyparquet's decompressor; gathered writes of many pieces.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';

import parquetjs from '@dsnp/parquetjs';
import { parquetMetadata, parquetReadObjects, snappyUncompress, type Compressors } from 'hyparquet';

import type { ChunkResult, ColumnSpec, ColumnValues, ColumnVector } from '../src/batch/columns.js';
import { ParquetSource } from '../src/batch/input/parquet.js';
import { ChunkAssembler, planOutputs } from '../src/batch/outputs.js';
import { writePiecesAt } from '../src/batch/output/files.js';
import { ParquetOutputWriter, type ParquetCompression } from '../src/batch/output/parquet.js';
import { maxCompressedLength, snappyCompress } from '../src/batch/output/snappy.js';
import { mulberry32 } from './support/fixtures.js';

type Cell = number | bigint | boolean | string | null;

/** hyparquet decodes snappy itself; gzip through node:zlib. */
const COMPRESSORS: Compressors = { GZIP: (input) => new Uint8Array(gunzipSync(input)) };

let work: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'tessera-parquet-writer-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

const SPECS: readonly ColumnSpec[] = [
  { name: 'id', kind: 'int64' },
  { name: 'f32', kind: 'float32' },
  { name: 'f64', kind: 'float64' },
  { name: 'i32', kind: 'int32' },
  { name: 'flag', kind: 'bool' },
  { name: 'text', kind: 'string' },
  { name: 'nothing', kind: 'float32' },
  // int32 columns of a few distinct values are dictionary-encoded: a class index (with nulls),
  // a constant (bit width 0), and 256 distinct values (the most a dictionary takes, bit width 8).
  { name: 'small', kind: 'int32' },
  { name: 'constant', kind: 'int32' },
  { name: 'byte', kind: 'int32' },
  { name: 'error', kind: 'string' },
];

/** A chunk of `rows` rows of every kind, with nulls here and there (every row of `nothing`). */
function makeChunk(index: number, start: number, rows: number, seed: number, withNulls: boolean): { chunk: ChunkResult; expected: Cell[][] } {
  const rng = mulberry32(seed);
  const nullAt = (r: number, k: number): boolean => withNulls && (r * 7 + k * 3 + index) % 11 === 0;
  const id = new BigInt64Array(rows);
  const f32 = new Float32Array(rows);
  const f64 = new Float64Array(rows);
  const i32 = new Int32Array(rows);
  const flag = new Uint8Array(rows);
  const text: (string | null)[] = [];
  const nothing = new Float32Array(rows).fill(1.5);
  const small = new Int32Array(rows);
  const constant = new Int32Array(rows).fill(42);
  const byte = new Int32Array(rows);
  const nulls = SPECS.map(() => new Uint8Array(rows));
  const expected: Cell[][] = [];
  for (let r = 0; r < rows; r++) {
    // Values around the int64 word boundary and negative ones: the statistics compare words.
    id[r] = BigInt(start + r) * (r % 3 === 0 ? -4_294_967_297n : 3n) + (r % 5 === 0 ? 2n ** 40n : 0n);
    f32[r] = Math.fround(rng() * 200 - 100);
    f64[r] = rng() * 1e12 - 5e11;
    i32[r] = Math.floor(rng() * 2_000_000) - 1_000_000;
    flag[r] = rng() < 0.5 ? 1 : 0;
    text.push(r % 4 === 0 ? null : `row ${start + r} · ${'é'.repeat(r % 3)}`);
    small[r] = Math.floor(rng() * 13) - 3;
    byte[r] = (r * 7 + seed) % 256;
    const row: Cell[] = [id[r]!, f32[r]!, f64[r]!, i32[r]!, flag[r] === 1, text[r]!, null, small[r]!, constant[r]!, byte[r]!, null];
    for (let k = 0; k < 5; k++) {
      if (nullAt(r, k)) {
        nulls[k]![r] = 1;
        row[k] = null;
      }
    }
    nulls[6]![r] = 1;
    if (nullAt(r, 7)) {
      nulls[7]![r] = 1;
      row[7] = null;
    }
    expected.push(row);
  }
  // A NaN in the float column (skipped by the statistics, read back as NaN).
  if (rows > 3 && !nullAt(2, 1)) {
    f32[2] = NaN;
    expected[2]![1] = NaN;
  }
  const values: ColumnValues[] = [id, f32, f64, i32, flag, text, nothing, small, constant, byte, []];
  const columns: ColumnVector[] = SPECS.map((spec, k) => ({
    spec,
    values: values[k]!,
    nulls: k === 6 || (withNulls && (k < 5 || k === 7)) ? nulls[k] : undefined,
  }));
  return { chunk: { index, start, rows, errors: 0, columns }, expected };
}

async function writeParquet(file: string, chunks: readonly ChunkResult[], compression: ParquetCompression): Promise<void> {
  const writer = new ParquetOutputWriter(SPECS, compression);
  const assembly = await writer.assemble(file);
  for (const chunk of chunks) {
    const part = await writer.encodePart(chunk);
    await assembly.append(part);
    writer.reclaim(part);
  }
  await assembly.finish();
}

function same(actual: unknown, wanted: Cell, where: string): void {
  if (typeof wanted === 'number' && Number.isNaN(wanted)) {
    assert.ok(typeof actual === 'number' && Number.isNaN(actual), `${where}: expected NaN, got ${String(actual)}`);
    return;
  }
  assert.deepEqual(actual, wanted, where);
}

/** Statistics an independent computation expects for column `k` of the chunks' rows. */
function expectedStats(rows: readonly Cell[][], k: number): { nulls: number; min: Cell | undefined; max: Cell | undefined } {
  let nulls = 0;
  let min: Cell | undefined;
  let max: Cell | undefined;
  for (const row of rows) {
    const value = row[k]!;
    if (value === null) {
      nulls++;
      continue;
    }
    if (typeof value === 'number' && Number.isNaN(value)) continue;
    if (typeof value === 'string') continue;
    if (min === undefined || value < min!) min = value;
    if (max === undefined || value > max!) max = value;
  }
  return { nulls, min, max };
}

async function readWithParquetjs(file: string): Promise<Record<string, unknown>[]> {
  const reader = await parquetjs.ParquetReader.openFile(file);
  try {
    const cursor = reader.getCursor();
    const rows: Record<string, unknown>[] = [];
    for (let record = await cursor.next(); record !== null && record !== undefined; record = await cursor.next()) rows.push(record as Record<string, unknown>);
    return rows;
  } finally {
    await reader.close();
  }
}

describe('Parquet output written from the chunk columns', () => {
  for (const compression of ['snappy', 'none', 'gzip'] as const) {
    test(`every kind, nulls, NaN, an all-null column, several row groups (${compression}): as hyparquet and parquetjs read it`, async () => {
      const made = [makeChunk(0, 0, 3000, 1, true), makeChunk(1, 3000, 1, 2, false), makeChunk(2, 3001, 5000, 3, false), makeChunk(3, 8001, 777, 4, true)];
      const file = path.join(work, `every-kind-${compression}.parquet`);
      await writeParquet(file, made.map((m) => m.chunk), compression);
      const expected = made.flatMap((m) => m.expected);
      const bytes = await readFile(file);
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);

      const rows = (await parquetReadObjects({ file: buffer, compressors: COMPRESSORS })) as Record<string, unknown>[];
      assert.equal(rows.length, expected.length);
      rows.forEach((row, r) => SPECS.forEach((spec, k) => same(row[spec.name] ?? null, expected[r]![k]!, `hyparquet row ${r} ${spec.name}`)));

      const viaParquetjs = await readWithParquetjs(file);
      assert.equal(viaParquetjs.length, expected.length);
      viaParquetjs.forEach((row, r) =>
        SPECS.forEach((spec, k) => {
          let value = row[spec.name] ?? null;
          // parquetjs gives INT64 as BigInt or number and BOOLEAN as booleans; compare as values.
          if (spec.kind === 'int64' && typeof value === 'number') value = BigInt(value);
          same(value, expected[r]![k]!, `parquetjs row ${r} ${spec.name}`);
        }),
      );

      // Statistics of each row group: null counts and min/max as computed independently.
      const metadata = parquetMetadata(buffer);
      assert.equal(metadata.row_groups.length, made.length);
      metadata.row_groups.forEach((group, g) => {
        group.columns.forEach((column, k) => {
          const stats = column.meta_data!.statistics!;
          const wanted = expectedStats(made[g]!.expected, k);
          assert.equal(Number(stats.null_count), wanted.nulls, `group ${g} ${SPECS[k]!.name} null_count`);
          if (SPECS[k]!.kind === 'string') return;
          assert.deepEqual(stats.min_value ?? undefined, wanted.min, `group ${g} ${SPECS[k]!.name} min`);
          assert.deepEqual(stats.max_value ?? undefined, wanted.max, `group ${g} ${SPECS[k]!.name} max`);
        });
      });
      // What was compressed: the int64 column, not (for snappy) the float noise; which columns
      // were dictionary-encoded: the int32 ones of at most 256 distinct values.
      const codecs = metadata.row_groups[2]!.columns.map((column) => column.meta_data!.codec);
      assert.equal(codecs[0], { snappy: 'SNAPPY', none: 'UNCOMPRESSED', gzip: 'GZIP' }[compression]);
      if (compression === 'snappy') assert.equal(codecs[1], 'UNCOMPRESSED');
      const dictionaries = metadata.row_groups[0]!.columns.map((column) => column.meta_data!.encodings.includes('PLAIN_DICTIONARY'));
      assert.deepEqual(
        SPECS.filter((_, k) => dictionaries[k]).map((spec) => spec.name),
        ['small', 'constant', 'byte'],
      );

      // Tessera's own reader takes the dictionary pages of columns without nulls on its fast path.
      const source = await ParquetSource.open(file);
      try {
        const head = await source.head(expected.length, ['constant', 'byte', 'small']);
        for (const [k, name] of [[8, 'constant'], [9, 'byte'], [7, 'small']] as const) {
          const read = Array.from(head.column(name), (value) => value ?? null);
          assert.deepEqual(read, expected.map((row) => row[k]!), `ParquetSource ${name}`);
        }
      } finally {
        await source.close();
      }
    });
  }

  test('a part appended, the output closed, then resumed from the saved states: one valid file', async () => {
    const made = [makeChunk(0, 0, 2000, 5, true), makeChunk(1, 2000, 2000, 6, false), makeChunk(2, 4000, 10, 7, true)];
    const file = path.join(work, 'resumed.parquet');
    const writer = new ParquetOutputWriter(SPECS, 'snappy');
    const first = await writer.assemble(file);
    const states: unknown[] = [];
    for (const { chunk } of made.slice(0, 2)) states.push(await first.append(await writer.encodePart(chunk)));
    const bytes = first.length;
    // A part appended but never recorded (a crash before the checkpoint counted it) is cut off.
    await first.append(await writer.encodePart(makeChunk(9, 0, 50, 9, false).chunk));
    await first.close();
    const again = await new ParquetOutputWriter(SPECS, 'snappy').assemble(file, { bytes, states });
    await again.append(await writer.encodePart(made[2]!.chunk));
    // A chunk of no rows adds no row group.
    await again.append(await writer.encodePart(makeChunk(3, 4010, 0, 8, false).chunk));
    await again.finish();
    const expected = made.flatMap((m) => m.expected);
    const read = await readFile(file);
    // Offsets of the resumed and later row groups are moved to where their bytes landed: each
    // column chunk's file_offset is where its first page (dictionary or data) starts.
    const metadata = parquetMetadata(read.buffer.slice(read.byteOffset, read.byteOffset + read.byteLength));
    assert.deepEqual(metadata.row_groups.map((group) => Number(group.num_rows)), [2000, 2000, 10]);
    for (const group of metadata.row_groups) {
      for (const column of group.columns) {
        const meta = column.meta_data!;
        assert.equal(Number(column.file_offset), Number(meta.dictionary_page_offset ?? meta.data_page_offset), meta.path_in_schema.join('.'));
      }
    }
    const rows = (await parquetReadObjects({ file: read.buffer.slice(read.byteOffset, read.byteOffset + read.byteLength) })) as Record<string, unknown>[];
    assert.equal(rows.length, expected.length);
    rows.forEach((row, r) => SPECS.forEach((spec, k) => same(row[spec.name] ?? null, expected[r]![k]!, `row ${r} ${spec.name}`)));
    assert.equal((await readWithParquetjs(file)).length, expected.length);
  });
});

describe('statistics noted as outputs arrive', () => {
  test('ranges of the model columns equal a scan of their non-null rows, whatever the order rows are set in', () => {
    const outputs = [{ name: 'probs', datatype: 'FP32' as const, shape: [-1, 3] }];
    const plan = planOutputs(outputs, true, [], 'parquet', undefined, { rawOutputs: undefined, classify: undefined, passthrough: [], labels: undefined }, 'model');
    const rows = 10;
    const block = { start: 0, rows, rowErrors: new Map<number, string>(), column: () => ({ length: 0 }) };
    const assembler = new ChunkAssembler(plan, 0, block);
    assembler.fail(4, 'bad row');
    const tensor = (values: number[], n: number): { name: string; datatype: 'FP32'; shape: number[]; data: Float32Array } => ({ name: 'probs', datatype: 'FP32', shape: [n, 3], data: Float32Array.from(values) });
    // Rows 9, 0, 7 first (not in order), then 1, 2, 3 and 5, 6, 8; one value is NaN.
    assembler.setOutputs(Int32Array.from([9, 0, 7]), 3, [tensor([0.5, 0.2, 0.3, -7, 0.1, 0.2, 0.9, NaN, 0.05], 3)]);
    assembler.setOutputs(Int32Array.from([1, 2, 3, 5, 6, 8]), 6, [tensor([1, 2, 3, 4, 5, 6, 0, 0, 9, 0.25, 0.5, 0.25, 3, 2, 1, 100, -100, 0], 6)]);
    const result = assembler.finish();
    for (const column of result.columns) {
      if (column.spec.kind === 'string') continue;
      assert.ok(column.range !== undefined, `${column.spec.name} has its range noted`);
      const values = column.values as Float32Array | Int32Array;
      let min = Infinity;
      let max = -Infinity;
      for (let r = 0; r < rows; r++) {
        if (column.nulls?.[r] === 1) continue;
        const v = values[r]!;
        if (Number.isNaN(v)) continue;
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      assert.deepEqual(column.range, { min, max }, column.spec.name);
    }
    assert.equal(result.columns.find((c) => c.spec.name === 'prediction')!.nulls?.[4], 1);
  });

  test('integer outputs: INT32 ranges noted, INT64 left to the writer; statistics as a scan finds them', async () => {
    const outputs = [
      { name: 'ints', datatype: 'INT32' as const, shape: [-1, 2] },
      { name: 'big', datatype: 'INT64' as const, shape: [-1, 1] },
    ];
    const plan = planOutputs(outputs, true, [], 'parquet', undefined, { rawOutputs: undefined, classify: null, passthrough: [], labels: undefined }, 'model');
    const block = { start: 0, rows: 3, rowErrors: new Map<number, string>(), column: () => ({ length: 0 }) };
    const assembler = new ChunkAssembler(plan, 0, block);
    assembler.setOutputs(Int32Array.from([2, 0, 1]), 3, [
      { name: 'ints', datatype: 'INT32', shape: [3, 2], data: Int32Array.from([5, -1, -7, 2, 0, 9]) },
      { name: 'big', datatype: 'INT64', shape: [3, 1], data: BigInt64Array.from([-(2n ** 40n), 3n, 2n ** 35n]) },
    ]);
    const result = assembler.finish();
    assert.deepEqual(
      result.columns.map((c) => c.range),
      [{ min: -7, max: 5 }, { min: -1, max: 9 }, undefined, undefined],
    );
    const file = path.join(work, 'ints.parquet');
    const writer = new ParquetOutputWriter(plan.columns, 'none');
    const assembly = await writer.assemble(file);
    await assembly.append(await writer.encodePart(result));
    await assembly.finish();
    const bytes = await readFile(file);
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const stats = parquetMetadata(buffer).row_groups[0]!.columns.slice(0, 3).map((c) => [c.meta_data!.statistics!.min_value, c.meta_data!.statistics!.max_value]);
    assert.deepEqual(stats, [
      [-7, 5],
      [-1, 9],
      [-(2n ** 40n), 2n ** 35n],
    ]);
    const rows = (await parquetReadObjects({ file: buffer })) as Record<string, unknown>[];
    assert.deepEqual(
      rows.map((row) => [row['ints_0'], row['ints_1'], row['big']]),
      [
        [-7, 2, 3n],
        [0, 9, 2n ** 35n],
        [5, -1, -(2n ** 40n)],
      ],
    );
  });

  test('columns set without noting (FP16 outputs) are scanned by the writer: same statistics', async () => {
    const outputs = [{ name: 'half', datatype: 'FP16' as const, shape: [-1, 2] }];
    const plan = planOutputs(outputs, true, [], 'parquet', undefined, { rawOutputs: undefined, classify: null, passthrough: [], labels: undefined }, 'model');
    const block = { start: 0, rows: 2, rowErrors: new Map<number, string>(), column: () => ({ length: 0 }) };
    const assembler = new ChunkAssembler(plan, 0, block);
    // 0x3c00 = 1, 0xc000 = -2, 0x3800 = 0.5, 0x4200 = 3
    assembler.setOutputs(Int32Array.from([0, 1]), 2, [{ name: 'half', datatype: 'FP16', shape: [2, 2], data: Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x4200]) }]);
    const result = assembler.finish();
    assert.equal(result.columns[0]!.range, undefined);
    const file = path.join(work, 'half.parquet');
    const writer = new ParquetOutputWriter(plan.columns, 'snappy');
    const assembly = await writer.assemble(file);
    await assembly.append(await writer.encodePart(result));
    await assembly.finish();
    const bytes = await readFile(file);
    const metadata = parquetMetadata(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const stats = metadata.row_groups[0]!.columns.map((c) => [c.meta_data!.statistics!.min_value, c.meta_data!.statistics!.max_value]);
    assert.deepEqual(stats.slice(0, 2), [
      [0.5, 1],
      [-2, 3],
    ]);
  });
});

describe('snappyCompress', () => {
  test('round trips through hyparquet\'s decompressor: empty, tiny, incompressible, repetitive, long literals and copies', () => {
    const rng = mulberry32(17);
    const inputs: Uint8Array[] = [new Uint8Array(0), Uint8Array.from([7]), new Uint8Array(14).fill(3), new Uint8Array(15).fill(3), new Uint8Array(16)];
    for (const size of [100, 4096, 65_535, 65_536, 65_537, 200_000]) {
      inputs.push(Uint8Array.from({ length: size }, () => Math.floor(rng() * 256)));
      inputs.push(Uint8Array.from({ length: size }, (_, i) => i % 251));
      inputs.push(Uint8Array.from({ length: size }, () => (rng() < 0.9 ? 0 : Math.floor(rng() * 4))));
      const ids = new BigInt64Array(Math.ceil(size / 8)).map((_, i) => BigInt(1_000_000 + i));
      inputs.push(new Uint8Array(ids.buffer, 0, size));
    }
    // Far repeats (offsets past 2 KiB and past the 64 KiB window), and a literal of more than 64 KiB.
    const far = Uint8Array.from({ length: 150_000 }, () => Math.floor(rng() * 256));
    far.copyWithin(70_000, 0, 5_000);
    far.copyWithin(10_000, 6_000, 7_000);
    inputs.push(far);
    for (const input of inputs) {
      const compressed = snappyCompress(input, new Uint8Array(maxCompressedLength(input.length)));
      assert.ok(compressed.length <= maxCompressedLength(input.length));
      const output = new Uint8Array(input.length);
      snappyUncompress(compressed, output);
      assert.deepEqual(Buffer.from(output), Buffer.from(input), `${input.length} bytes`);
    }
    // Without a buffer given, it allocates one; repetitive data shrinks.
    const repetitive = new Uint8Array(10_000).fill(42);
    assert.ok(snappyCompress(repetitive).length < 600);
  });
});

describe('writePiecesAt', () => {
  test('many pieces (more than one writev takes), empty ones among them, land one after the other', async () => {
    const file = path.join(work, 'pieces.bin');
    const handle = await open(file, 'w+');
    const pieces: Uint8Array[] = [];
    let expected = '';
    for (let i = 0; i < 2500; i++) {
      const text = i % 10 === 0 ? '' : `<${i}>`;
      pieces.push(Buffer.from(text));
      expected += text;
    }
    try {
      await handle.write(Buffer.from('HEAD'), 0, 4, 0);
      assert.equal(await writePiecesAt(handle, pieces, 4), Buffer.byteLength(expected));
    } finally {
      await handle.close();
    }
    assert.equal(await readFile(file, 'utf8'), `HEAD${expected}`);
  });
});

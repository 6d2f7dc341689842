/**
 * The batch job's CSV and JSON Lines writers, on the writers themselves over real files: tests
 * that a mutation audit showed missing. CSV tells an empty string ("") from a null (nothing),
 * quotes delimiters, quotes, CR, LF and surrounding spaces; NaN and infinities are null in both
 * formats; a resumed output is cut back to the bytes the checkpoint counts before appending.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import type { ChunkResult, ColumnSpec, ColumnVector } from '../src/batch/columns.js';
import { CsvWriter, JsonlWriter } from '../src/batch/output/text.js';

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tessera-text-writer-'));
});
after(() => rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));

const COLUMNS: ColumnSpec[] = [
  { name: 'text', kind: 'string' },
  { name: 'f32', kind: 'float32' },
  { name: 'f64', kind: 'float64' },
  { name: 'flag', kind: 'bool' },
];
const TEXTS: (string | null)[] = ['', null, 'a,b', 'say "hi"', 'cr\rhere', 'lf\nhere', ' padded', 'plain'];
const F32 = Float32Array.from([0.1, NaN, Infinity, -Infinity, 1.5, 0, -2, 3]);
const F64 = Float64Array.from([0.1, NaN, Infinity, -Infinity, 1.5, 0, -2, 3]);
const FLAGS = Uint8Array.from([1, 0, 1, 0, 1, 0, 1, 0]);

function chunk(start = 0): ChunkResult {
  const columns: ColumnVector[] = [
    { spec: COLUMNS[0]!, values: TEXTS, nulls: undefined },
    { spec: COLUMNS[1]!, values: F32, nulls: undefined },
    { spec: COLUMNS[2]!, values: F64, nulls: undefined },
    { spec: COLUMNS[3]!, values: FLAGS, nulls: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1]) },
  ];
  return { index: 0, start, rows: TEXTS.length, errors: 0, columns };
}

test('CSV: "" for an empty string, nothing for null; quoting; NaN and infinities empty; the header', async () => {
  const target = join(root, 'out.csv');
  const writer = new CsvWriter(COLUMNS);
  const assembly = await writer.assemble(target);
  await assembly.append(await writer.encodePart(chunk()));
  await assembly.finish();
  assert.equal(
    await readFile(target, 'utf8'),
    [
      'text,f32,f64,flag',
      '"",0.1,0.1,true',
      ',,,false',
      '"a,b",,,true',
      '"say ""hi""",,,false',
      '"cr\rhere",1.5,1.5,true',
      '"lf\nhere",0,0,false',
      '" padded",-2,-2,true',
      'plain,3,3,',
      '',
    ].join('\n'),
  );
});

test('CSV with another delimiter quotes that delimiter, not commas', async () => {
  const writer = new CsvWriter(COLUMNS, ';');
  const part = await writer.encodePart(chunk());
  const lines = Buffer.concat(part.pieces.map((piece) => Buffer.from(piece))).toString('utf8').split('\n');
  assert.equal(lines[2], 'a,b;;;true');
  assert.equal(part.byteLength, Buffer.concat(part.pieces.map((piece) => Buffer.from(piece))).length);
});

test('JSON Lines: strings as JSON strings (empty kept), nulls, NaN and infinities null, booleans', async () => {
  const writer = new JsonlWriter(COLUMNS);
  const part = await writer.encodePart(chunk());
  const text = Buffer.concat(part.pieces.map((piece) => Buffer.from(piece))).toString('utf8');
  const rows = text.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(rows, [
    { text: '', f32: 0.1, f64: 0.1, flag: true },
    { text: null, f32: null, f64: null, flag: false },
    { text: 'a,b', f32: null, f64: null, flag: true },
    { text: 'say "hi"', f32: null, f64: null, flag: false },
    { text: 'cr\rhere', f32: 1.5, f64: 1.5, flag: true },
    { text: 'lf\nhere', f32: 0, f64: 0, flag: false },
    { text: ' padded', f32: -2, f64: -2, flag: true },
    { text: 'plain', f32: 3, f64: 3, flag: null },
  ]);
});

test('a resumed CSV output is cut back to the counted bytes (a torn append dropped) before the next part', async () => {
  const target = join(root, 'resumed.csv');
  const writer = new CsvWriter(COLUMNS);
  const first = await writer.assemble(target);
  await first.append(await writer.encodePart(chunk()));
  const counted = first.length;
  await first.close();
  // Longer than the next part, so that writing over it would not hide it.
  await appendFile(target, 'torn half line '.repeat(500));
  const again = await writer.assemble(target, { bytes: counted });
  assert.equal(again.length, counted);
  await again.append(await writer.encodePart(chunk(8)));
  await again.finish();
  const part = Buffer.concat((await writer.encodePart(chunk())).pieces.map((piece) => Buffer.from(piece))).toString('utf8');
  assert.equal(await readFile(target, 'utf8'), `text,f32,f64,flag\n${part}${part}`, 'the header once, both parts, nothing torn');
});

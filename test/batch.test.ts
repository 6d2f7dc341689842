/**
 * `tessera batch`: every input format to every output format, column mapping, bad rows,
 * row-by-row isolation of a failing batch, dry runs, fatal errors, and the remote mode against
 * a real running Tessera (with 503 refusals retried). Predictions are checked against
 * onnxruntime run directly on the same rows; Parquet output is read back with hyparquet and,
 * independently, with @dsnp/parquetjs.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import parquetjs from '@dsnp/parquetjs';
import { parse as parseCsv } from 'csv-parse/sync';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import * as ort from 'onnxruntime-node';

import { runBatchJob, type BatchJobOptions, type BatchSummary } from '../src/batch/job.js';
import { batchJobOptions, QUIET } from './support/batch.js';
import { TesseraError } from '../src/core/errors.js';
import { addModel, makeTempRepository, mlpBenchModel, mulberry32, writeModel } from './support/fixtures.js';
import { startTestServer, writeFakeModel } from './support/server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
const FEATURES = 64;
const LABELS = Array.from({ length: 10 }, (_, i) => `class_${i}`);

type Row = Record<string, unknown>;

/** Seeded rows: id, name, f0..f63 (3 decimals, so every format carries them exactly). */
function makeRows(count: number, seed = 7): Row[] {
  const rng = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => {
    const row: Row = { id: i, name: `row-${i}` };
    for (let j = 0; j < FEATURES; j++) row[`f${j}`] = Math.round((rng() * 2 - 1) * 1000) / 1000;
    return row;
  });
}

function featureNames(): string[] {
  return Array.from({ length: FEATURES }, (_, j) => `f${j}`);
}

async function writeInput(dir: string, format: 'jsonl' | 'csv' | 'parquet', rows: readonly Row[]): Promise<string> {
  const file = path.join(dir, `input.${format}`);
  const columns = ['id', 'name', ...featureNames()];
  if (format === 'jsonl') {
    await writeFile(file, rows.map((row) => JSON.stringify(row)).join('\n') + '\n');
  } else if (format === 'csv') {
    await writeFile(file, [columns.join(','), ...rows.map((row) => columns.map((c) => String(row[c])).join(','))].join('\n') + '\n');
  } else {
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: Int32Array.from(rows, (row) => row['id'] as number), type: 'INT32' },
        { name: 'name', data: rows.map((row) => row['name'] as string), type: 'STRING' },
        ...featureNames().map((name) => ({ name, data: Float32Array.from(rows, (row) => row[name] as number), type: 'FLOAT' as const })),
      ],
      rowGroupSize: 250,
    });
    await writeFile(file, new Uint8Array(buffer));
  }
  return file;
}

/** Rows of an output file, as plain objects (numbers parsed for CSV). */
async function readOutput(file: string): Promise<Row[]> {
  if (file.endsWith('.parquet')) {
    const bytes = await readFile(file);
    const rows = await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    return rows as Row[];
  }
  const text = await readFile(file, 'utf8');
  if (file.endsWith('.jsonl')) return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Row);
  const records = parseCsv(text, { columns: true }) as Record<string, string>[];
  return records.map((record) => {
    const row: Row = {};
    for (const [key, value] of Object.entries(record)) {
      row[key] = value === '' ? null : key === 'name' || key === 'label' || key === 'error' ? value : Number(value);
    }
    return row;
  });
}

/** The same Parquet file read by @dsnp/parquetjs (an independent implementation). */
async function readWithParquetjs(file: string): Promise<Row[]> {
  const reader = await parquetjs.ParquetReader.openFile(file);
  try {
    const cursor = reader.getCursor();
    const rows: Row[] = [];
    for (let record = await cursor.next(); record !== null && record !== undefined; record = await cursor.next()) rows.push(record as Row);
    return rows;
  } finally {
    await reader.close();
  }
}

/** Probabilities onnxruntime computes for `rows` in one run, row-major [rows, 10]. */
async function referenceProbs(model: Uint8Array, rows: readonly Row[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model);
  try {
    const x = new Float32Array(rows.length * FEATURES);
    rows.forEach((row, r) => featureNames().forEach((name, j) => (x[r * FEATURES + j] = row[name] as number)));
    const result = await session.run({ x: new ort.Tensor('float32', x, [rows.length, FEATURES]) });
    return result['probs']!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function assertScored(row: Row, reference: Float32Array, index: number, where: string): void {
  assert.equal(row['error'], null, `${where}: row ${index} has no error`);
  let best = 0;
  for (let k = 0; k < 10; k++) {
    const expected = reference[index * 10 + k]!;
    const got = row[`probs_${k}`] as number;
    assert.ok(Math.abs(got - expected) <= 1e-6, `${where}: row ${index} probs_${k}: ${got} vs onnxruntime ${expected}`);
    if (expected > reference[index * 10 + best]!) best = k;
  }
  assert.equal(row['prediction'], best, `${where}: row ${index} prediction`);
  assert.equal(row['label'], LABELS[best], `${where}: row ${index} label`);
  assert.ok(Math.abs((row['confidence'] as number) - reference[index * 10 + best]!) <= 1e-6, `${where}: row ${index} confidence`);
}

const quiet = QUIET;

function options(overrides: Partial<BatchJobOptions> & Pick<BatchJobOptions, 'input' | 'output' | 'repository' | 'model'>): BatchJobOptions {
  return batchJobOptions({ retries: 3, ...overrides });
}

function run(job: BatchJobOptions, stdout: { write: (text: string) => unknown } = quiet): Promise<BatchSummary> {
  return runBatchJob(job, { stdout, stderr: quiet });
}

let work: string;
let repository: string;
const model = mlpBenchModel();

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'tessera-batch-'));
  repository = await makeTempRepository();
  await writeModel(repository, 'mlp', 1, model, { 'labels.txt': `${LABELS.join('\n')}\n` });
  await writeModel(repository, 'add', 1, addModel());
  await writeFakeModel(repository, 'fragile', 1, {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x', add: 1 }],
    fail_on_value: 666,
  });
});

after(async () => {
  await rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  await rm(repository, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

describe('formats', () => {
  const rows = makeRows(600);
  let reference: Float32Array;
  const inputs = new Map<string, string>();

  before(async () => {
    reference = await referenceProbs(model, rows);
    for (const format of ['jsonl', 'csv', 'parquet'] as const) inputs.set(format, await writeInput(work, format, rows));
  });

  for (const input of ['jsonl', 'csv', 'parquet'] as const) {
    test(`${input} input scores into every output format`, async () => {
      for (const output of ['parquet', 'jsonl', 'csv'] as const) {
        const target = path.join(work, `from-${input}.${output}`);
        const summary = await run(
          options({ model: 'mlp', repository, input: inputs.get(input)!, output: target, features: ['f0..f63'], passthrough: ['id', 'name'], batchSize: 64, chunkRows: 200 }),
        );
        const where = `${input} -> ${output}`;
        assert.equal(summary.status, 'done', where);
        assert.equal(summary.rows, rows.length, where);
        assert.equal(summary.errors, 0, where);
        const scored = await readOutput(target);
        assert.equal(scored.length, rows.length, where);
        assert.deepEqual(Object.keys(scored[0]!), ['id', 'name', ...Array.from({ length: 10 }, (_, k) => `probs_${k}`), 'prediction', 'label', 'confidence', 'error'], where);
        scored.forEach((row, i) => {
          assert.equal(Number(row['id']), i, `${where}: rows in input order`);
          assert.equal(row['name'], `row-${i}`, where);
          assertScored(row, reference, i, where);
        });
        if (output === 'parquet') {
          const independent = await readWithParquetjs(target);
          assert.equal(independent.length, rows.length, `${where}: parquetjs row count`);
          independent.forEach((row, i) => {
            assert.equal(Number(row['id']), i);
            assertScored({ ...row, error: row['error'] ?? null }, reference, i, `${where} (parquetjs)`);
          });
          const bytes = await readFile(target);
          const metadata = parquetMetadata(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
          assert.equal(metadata.row_groups.length, 3, `${where}: one row group per part of 200 rows`);
        }
        await assert.rejects(stat(`${target}.parts`), `${where}: the checkpoint is removed once the output is complete`);
      }
    });
  }
});

describe('reader thread', () => {
  test('inputs decoded in a reader thread or on the main thread score the same, in the same order', async () => {
    const rows = makeRows(700, 5);
    const reference = await referenceProbs(model, rows);
    const dir = await mkdtemp(path.join(work, 'threaded-'));
    for (const format of ['parquet', 'jsonl', 'csv'] as const) {
      const input = await writeInput(dir, format, rows);
      for (const readerThread of [true, false]) {
        const where = `${format}, reader thread ${readerThread ? 'on' : 'off'}`;
        const target = path.join(dir, `threaded-${format}-${readerThread}.parquet`);
        const summary = await run(
          options({ model: 'mlp', repository, input, output: target, features: ['f0..f63'], passthrough: ['id'], batchSize: 50, chunkRows: 100, readerThread }),
        );
        assert.equal(summary.rows, rows.length, where);
        assert.equal(summary.readerThread, readerThread, `${where}: the summary says where the input was decoded`);
        const scored = await readOutput(target);
        scored.forEach((row, i) => {
          assert.equal(Number(row['id']), i, `${where}: row order`);
          assertScored(row, reference, i, where);
        });
      }
    }
  });

  test('--reader-thread auto: a reader thread with 2 cores or more; dry runs read on the main thread', async () => {
    const rows = makeRows(200, 6);
    const dir = await mkdtemp(path.join(work, 'threaded-auto-'));
    const input = await writeInput(dir, 'parquet', rows);
    const job = { model: 'mlp', repository, input, features: ['f0..f63'], passthrough: ['id'], batchSize: 50, chunkRows: 100 };
    const auto = await run(options({ ...job, output: path.join(dir, 'auto.parquet') }));
    assert.equal(auto.rows, rows.length);
    assert.equal(auto.readerThread, availableParallelism() >= 2, `${availableParallelism()} cores`);
    const dry = await run(options({ ...job, output: path.join(dir, 'dry.parquet'), dryRun: true, readerThread: true }));
    assert.equal(dry.status, 'dry-run');
    assert.equal(dry.readerThread, false);
  });
});

describe('column mapping', () => {
  test('whole-column inputs, several inputs, passthrough types, raw outputs without classification', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, flag: i % 2 === 0, score: i / 4, a: [i, i + 1, i + 2, i + 3], b0: 1, b1: 2, b2: 3, b3: i }));
    const input = path.join(work, 'mapping.jsonl');
    await writeFile(input, rows.map((row) => JSON.stringify(row)).join('\n'));
    const target = path.join(work, 'mapping.parquet');
    const summary = await run(
      options({ model: 'add', repository, input, output: target, inputColumns: ['a=a'], features: ['b=b*'], passthrough: ['key', 'flag', 'score'], classify: null, batchSize: 16, chunkRows: 32 }),
    );
    assert.equal(summary.errors, 0);
    const scored = await readOutput(target);
    assert.deepEqual(Object.keys(scored[0]!), ['key', 'flag', 'score', 'sum_0', 'sum_1', 'sum_2', 'sum_3', 'diff_0', 'diff_1', 'diff_2', 'diff_3', 'error']);
    scored.forEach((row, i) => {
      assert.deepEqual([row['key'], row['flag'], row['score']], [`k${i}`, i % 2 === 0, i / 4]);
      assert.deepEqual([row['sum_0'], row['sum_1'], row['sum_2'], row['sum_3']], [i + 1, i + 3, i + 5, 2 * i + 3]);
      assert.deepEqual([row['diff_0'], row['diff_1'], row['diff_2'], row['diff_3']], [i - 1, i - 1, i - 1, 3]);
    });
  });

  test('--outputs none keeps prediction, label and confidence only; CSV whole-column input as JSON text', async () => {
    const rows = makeRows(20);
    const input = path.join(work, 'vector.csv');
    const lines = ['id,x', ...rows.map((row) => `${String(row['id'])},"${JSON.stringify(featureNames().map((n) => row[n]))}"`)];
    await writeFile(input, lines.join('\n'));
    const target = path.join(work, 'vector.jsonl');
    await run(options({ model: 'mlp', repository, input, output: target, passthrough: ['id'], outputs: [] }));
    const scored = await readOutput(target);
    assert.deepEqual(Object.keys(scored[0]!), ['id', 'prediction', 'label', 'confidence', 'error']);
    const reference = await referenceProbs(model, rows);
    scored.forEach((row, i) => {
      const probs = reference.subarray(i * 10, i * 10 + 10);
      assert.equal(row['prediction'], probs.indexOf(Math.max(...probs)));
    });
  });
});

describe('bad rows', () => {
  test('rows that are missing, mistyped or unparsable get their error; the rest are scored', async () => {
    const rows = makeRows(300, 11);
    const reference = await referenceProbs(model, rows);
    const lines = rows.map((row) => JSON.stringify(row));
    const broken = new Map<number, RegExp>([
      [3, /feature 'f5': expected a number, got "abc"/],
      [7, /feature 'f9' is missing/],
      [150, /line 151: invalid JSON/],
      [151, /line 152: expected a JSON object, got an array/],
      [299, /feature 'f0' is missing/],
    ]);
    lines[3] = JSON.stringify({ ...rows[3], f5: 'abc' });
    lines[7] = JSON.stringify({ ...rows[7], f9: undefined });
    lines[150] = '{"id": 150, "f0": ';
    lines[151] = '[1, 2, 3]';
    lines[299] = JSON.stringify({ ...rows[299], f0: null });
    const input = path.join(work, 'bad.jsonl');
    await writeFile(input, lines.join('\n') + '\n');
    const target = path.join(work, 'bad.parquet');
    const summary = await run(options({ model: 'mlp', repository, input, output: target, features: ['f*'], passthrough: ['id'], batchSize: 32, chunkRows: 64 }));
    assert.equal(summary.rows, 300);
    assert.equal(summary.errors, broken.size);
    const scored = await readOutput(target);
    assert.equal(scored.length, 300);
    scored.forEach((row, i) => {
      const expected = broken.get(i);
      if (expected === undefined) {
        assertScored(row, reference, i, 'bad rows');
      } else {
        assert.match(String(row['error']), expected, `row ${i}`);
        assert.equal(row['probs_0'], null);
        assert.equal(row['prediction'], null);
      }
    });

    const csv = path.join(work, 'bad.csv');
    const header = ['id', ...featureNames()];
    const csvLines = [header.join(','), ...rows.slice(0, 10).map((row) => header.map((c) => String(row[c])).join(','))];
    csvLines[3] = '2,1,2';
    csvLines[5] = csvLines[5]!.replace(/,[^,]*$/, ',NaN');
    await writeFile(csv, csvLines.join('\n'));
    const csvOut = path.join(work, 'bad-csv.jsonl');
    const csvSummary = await run(options({ model: 'mlp', repository, input: csv, output: csvOut, features: ['f0..f63'], passthrough: ['id'] }));
    assert.equal(csvSummary.errors, 2);
    const csvRows = await readOutput(csvOut);
    assert.match(String(csvRows[2]!['error']), /line 4: 3 fields, but the header has 65/);
    assert.match(String(csvRows[4]!['error']), /feature 'f63': NaN is not a finite number/);
    assertScored(csvRows[0]!, reference, 0, 'csv');
  });

  test('a batch the model fails on is retried row by row, and only the guilty row gets the error', async () => {
    const rows = Array.from({ length: 100 }, (_, i) => ({ id: i, u: i === 64 ? 666 : i, v: -i }));
    const input = path.join(work, 'poison.jsonl');
    await writeFile(input, rows.map((row) => JSON.stringify(row)).join('\n'));
    const target = path.join(work, 'poison.jsonl.out.jsonl');
    const summary = await run(options({ model: 'fragile', repository, input, output: target, features: ['u,v'], passthrough: ['id'], classify: null, batchSize: 32 }));
    assert.equal(summary.errors, 1);
    const scored = await readOutput(target);
    scored.forEach((row, i) => {
      if (i === 64) {
        assert.match(String(row['error']), /^INFERENCE_FAILED: the fake model fails on value 666/);
        assert.equal(row['y_0'], null);
      } else {
        assert.deepEqual([row['y_0'], row['y_1'], row['error']], [i + 1, 1 - i, null], `row ${i}`);
      }
    });
  });
});

describe('operator experience', () => {
  test('--dry-run prints the tensors it would send and writes nothing', async () => {
    const input = await writeInput(await mkdtemp(path.join(work, 'dry-')), 'parquet', makeRows(10));
    const target = path.join(work, 'dry.parquet');
    let printed = '';
    const summary = await run(
      options({ model: 'mlp', repository, input, output: target, features: ['f0..f63'], passthrough: ['id'], dryRun: true, dryRunRows: 4 }),
      { write: (text: string) => (printed += text) },
    );
    assert.equal(summary.status, 'dry-run');
    assert.match(printed, /x {2}FP32 \[4,64\] {2}from 64 feature columns f0, f1, f2, f3, \.\.\., f62, f63/);
    assert.match(printed, /row 0: \[-?\d/);
    assert.match(printed, /prediction = argmax of 'probs'/);
    await assert.rejects(stat(target));
    await assert.rejects(stat(`${target}.parts`));
  });

  test('the CLI prints a progress log and the summary last, and exits 0', async () => {
    const input = await writeInput(await mkdtemp(path.join(work, 'cli-')), 'csv', makeRows(200));
    const target = path.join(work, 'cli.jsonl');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', MAIN, 'batch', 'mlp', '-i', input, '-o', target, '--model-repository', repository, '--features', 'f0..f63', '--passthrough', 'id', '--progress', 'log', '--log-interval', '0.1'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, stderr);
    const lines = stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^tessera batch: done: 200 rows, 0 errors$/);
    assert.match(stdout, /throughput +[\d,]+ rows\/s/);
    assert.match(stdout, /wall time +[\d.]+s/);
    assert.match(lines[lines.length - 1]!, new RegExp(`output +${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(`));
    assert.equal((await readOutput(target)).length, 200);
  });
});

describe('fatal errors', () => {
  test('unknown columns, models, inputs and conflicting checkpoints stop the job with a clear message', async () => {
    const input = await writeInput(await mkdtemp(path.join(work, 'fatal-')), 'jsonl', makeRows(40));
    const base = { model: 'mlp', repository, input, features: ['f0..f63'] };
    const expectError = async (job: BatchJobOptions, code: string, message: RegExp): Promise<void> => {
      await assert.rejects(run(job), (error: unknown) => {
        assert.ok(error instanceof TesseraError, String(error));
        assert.equal(error.code, code, error.message);
        assert.match(error.message, message);
        return true;
      });
    };
    await expectError(options({ ...base, output: path.join(work, 'f1.jsonl'), features: ['f0..f64'] }), 'INVALID_BATCH_INPUT', /no column 'f64'; its columns are: id, name, f0/);
    await expectError(options({ ...base, output: path.join(work, 'f2.jsonl'), passthrough: ['nope'] }), 'INVALID_BATCH_INPUT', /--passthrough: the input has no column 'nope'/);
    await expectError(options({ ...base, output: path.join(work, 'f3.jsonl'), features: ['f0..f62'] }), 'INVALID_PARAMETER', /takes 64 values per row, but --features names 63 columns/);
    await expectError(options({ ...base, output: path.join(work, 'f4.jsonl'), model: 'nope' }), 'MODEL_NOT_FOUND', /model 'nope' is not in the repository .*add, fragile, mlp/);
    await expectError(options({ ...base, output: path.join(work, 'f5.jsonl'), input: path.join(work, 'missing.jsonl') }), 'INVALID_BATCH_INPUT', /cannot read input .*missing\.jsonl/);
    const broken = path.join(work, 'broken.parquet');
    await writeFile(broken, 'PAR1 this is not parquet');
    await expectError(options({ ...base, output: path.join(work, 'f6.jsonl'), input: broken }), 'INVALID_BATCH_INPUT', /not a readable Parquet file/);
    await expectError(options({ ...base, output: path.join(work, 'f7.jsonl'), features: [] }), 'INVALID_PARAMETER', /input 'x' is not mapped: pass --features/);

    const existing = path.join(work, 'exists.jsonl');
    await writeFile(existing, 'old');
    await expectError(options({ ...base, output: existing }), 'INVALID_PARAMETER', /already exists; pass --overwrite/);
    await run(options({ ...base, output: existing, overwrite: true }));
    assert.equal((await readOutput(existing)).length, 40);

    // A checkpoint of another job (other arguments) is never reused silently.
    const target = path.join(work, 'conflict.jsonl');
    const interrupt = new AbortController();
    interrupt.abort();
    const first = await runBatchJob(options({ ...base, output: target, batchSize: 8, chunkRows: 8 }), { stdout: quiet, stderr: quiet, interrupt: interrupt.signal });
    assert.equal(first.status, 'interrupted');
    assert.ok((await readdir(`${target}.parts`)).includes('manifest.json'));
    await expectError(options({ ...base, output: target, batchSize: 16, chunkRows: 16 }), 'BATCH_CHECKPOINT_CONFLICT', /holds the checkpoint of a different job/);
    const restarted = await run(options({ ...base, output: target, batchSize: 16, chunkRows: 16, restart: true }));
    assert.equal(restarted.rows, 40);
  });

  test('the CLI reports a fatal error on stderr with its code and exits 1', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'batch', 'mlp', '-i', path.join(work, 'none.csv'), '-o', path.join(work, 'none.parquet'), '--model-repository', repository], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 1);
    assert.match(stderr, /^tessera batch: INVALID_BATCH_INPUT: cannot read input .*none\.csv/m);
  });
});

describe('remote mode', () => {
  test('scores against a running Tessera over V2 REST, retrying 503 refusals', async (t) => {
    const remoteRepo = await makeTempRepository();
    t.after(() => rm(remoteRepo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(remoteRepo, 'mlp', 1, model);
    await writeFakeModel(
      remoteRepo,
      'slow',
      1,
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x', add: 0.5 }], delay_ms: 15 },
      'max_batch_size: 8\ndynamic_batching:\n  default_queue_policy:\n    max_queue_size: 1\n',
    );
    const server = await startTestServer(t, remoteRepo, { retryAfterSeconds: 0 });

    const rows = makeRows(500, 21);
    const reference = await referenceProbs(model, rows);
    const input = await writeInput(await mkdtemp(path.join(work, 'remote-')), 'parquet', rows);
    const target = path.join(work, 'remote.parquet');
    const labelsFile = path.join(work, 'labels.txt');
    await writeFile(labelsFile, LABELS.join('\n'));
    const summary = await run(
      options({ model: 'mlp', repository: '/nonexistent', url: server.httpUrl, input, output: target, features: ['f0..f63'], passthrough: ['id'], labelsFile, batchSize: 100, concurrency: 3 }),
    );
    assert.match(summary.executor, /^remote: http:\/\/127\.0\.0\.1:\d+\/v2\/models\/mlp/);
    assert.equal(summary.rows, 500);
    const scored = await readOutput(target);
    scored.forEach((row, i) => assertScored(row, reference, i, 'remote'));

    // One instance, a queue of one and 8 requests in flight: most are refused with 503 at first.
    const small = Array.from({ length: 400 }, (_, i) => ({ id: i, a: i, b: -i }));
    const smallInput = path.join(work, 'remote-small.jsonl');
    await writeFile(smallInput, small.map((row) => JSON.stringify(row)).join('\n'));
    const smallTarget = path.join(work, 'remote-small.csv');
    const busy = await run(
      options({ model: 'slow', repository: '/nonexistent', url: server.httpUrl, input: smallInput, output: smallTarget, features: ['a,b'], passthrough: ['id'], classify: null, batchSize: 8, concurrency: 8, retries: 50, backoffMs: 5 }),
    );
    assert.ok(busy.retries > 0, 'some requests were refused and retried');
    assert.equal(busy.errors, 0);
    const answered = await readOutput(smallTarget);
    assert.equal(answered.length, 400);
    answered.forEach((row, i) => assert.deepEqual([row['id'], row['y_0'], row['y_1']], [i, i + 0.5, 0.5 - i]));
  });

  test('an endpoint that stays down stops the job with UPSTREAM_UNAVAILABLE', async () => {
    const input = await writeInput(await mkdtemp(path.join(work, 'down-')), 'jsonl', makeRows(5));
    await assert.rejects(
      run(options({ model: 'mlp', repository: '/nonexistent', url: 'http://127.0.0.1:9', input, output: path.join(work, 'down.jsonl'), features: ['f0..f63'], retries: 2, backoffMs: 1 })),
      (error: unknown) => error instanceof TesseraError && error.code === 'UPSTREAM_UNAVAILABLE' && /connection failed/.test(error.message) && /2 retries/.test(error.message),
    );
  });
});

/**
 * `tessera batch` checkpoints: the CLI is killed with SIGKILL in the middle of a 200k-row job,
 * or interrupted with SIGINT (exit 130), and rerun with the same arguments; the output then has
 * every input row exactly once, in input order, with the predictions of an uninterrupted run.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { parquetReadObjects } from 'hyparquet';
import { ParquetWriter, ByteWriter } from 'hyparquet-writer';

import { runBatchJob } from '../src/batch/job.js';
import { batchJobOptions, QUIET } from './support/batch.js';
import { makeTempRepository, mlpBenchModel, mulberry32, writeModel } from './support/fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
const ROWS = 200_000;
const FEATURES = 64;

let work: string;
let repository: string;
let input: string;
/** Predictions and first probabilities of an uninterrupted run, by row. */
let clean: { prediction: Int32Array; probs0: Float32Array };

/** A 200k-row Parquet input (id + f0..f63), written in row groups as it is generated. */
async function writeBigInput(file: string): Promise<void> {
  const rng = mulberry32(99);
  const writer = new ByteWriter();
  const schema = [
    { name: 'root', num_children: FEATURES + 1 },
    { name: 'id', type: 'INT32' as const, repetition_type: 'REQUIRED' as const },
    ...Array.from({ length: FEATURES }, (_, j) => ({ name: `f${j}`, type: 'FLOAT' as const, repetition_type: 'REQUIRED' as const })),
  ];
  const parquet = new ParquetWriter({ writer, schema, codec: 'UNCOMPRESSED', statistics: false });
  const group = 50_000;
  for (let start = 0; start < ROWS; start += group) {
    const columnData = [
      { name: 'id', data: Int32Array.from({ length: group }, (_, i) => start + i) },
      ...Array.from({ length: FEATURES }, (_, j) => ({ name: `f${j}`, data: Float32Array.from({ length: group }, () => rng() * 2 - 1), encoding: 'PLAIN' as const })),
    ];
    parquet.write({ columnData, rowGroupSize: group });
  }
  parquet.finish();
  await writeFile(file, writer.getBytes());
}

async function readRows(file: string): Promise<Record<string, unknown>[]> {
  const bytes = await readFile(file);
  return (await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), columns: ['id', 'probs_0', 'prediction', 'error'] })) as Record<string, unknown>[];
}

function args(output: string): string[] {
  return ['batch', 'mlp', '-i', input, '-o', output, '--model-repository', repository, '--features', 'f0..f63', '--passthrough', 'id', '--batch-size', '128', '--concurrency', '1', '--chunk-rows', '4096', '--progress', 'none'];
}

function startCli(cliArgs: readonly string[]): { child: ChildProcess; output: () => { stdout: string; stderr: string }; exit: Promise<[number | null, NodeJS.Signals | null]> } {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...cliArgs], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, output: () => ({ stdout, stderr }), exit };
}

/** Chunks the checkpoint lists as done (0 while there is no manifest yet). */
async function doneChunks(output: string): Promise<number> {
  try {
    const manifest = JSON.parse(await readFile(path.join(`${output}.parts`, 'manifest.json'), 'utf8')) as { chunks: unknown[] };
    return manifest.chunks.length;
  } catch {
    return 0;
  }
}

async function waitForChunks(output: string, count: number, exited: () => boolean): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const done = await doneChunks(output);
    if (done >= count || exited() || Date.now() > deadline) return done;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function assertComplete(rows: readonly Record<string, unknown>[], where: string): void {
  assert.equal(rows.length, ROWS, `${where}: every row once`);
  for (let i = 0; i < ROWS; i++) {
    const row = rows[i]!;
    if (row['id'] !== i) assert.fail(`${where}: row ${i} has id ${String(row['id'])}: rows are not in input order`);
    if (row['error'] !== null) assert.fail(`${where}: row ${i} has an error: ${String(row['error'])}`);
    if (row['prediction'] !== clean.prediction[i]) assert.fail(`${where}: row ${i} prediction ${String(row['prediction'])}, clean run ${clean.prediction[i]}`);
    if (Math.abs((row['probs_0'] as number) - clean.probs0[i]!) > 1e-6) assert.fail(`${where}: row ${i} probs_0 differs from the clean run`);
  }
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'tessera-batch-resume-'));
  repository = await makeTempRepository();
  await writeModel(repository, 'mlp', 1, mlpBenchModel());
  input = path.join(work, 'rows.parquet');
  await writeBigInput(input);
  const reference = path.join(work, 'clean.parquet');
  await runBatchJob(
    batchJobOptions({ model: 'mlp', input, output: reference, repository, features: ['f0..f63'], passthrough: ['id'], batchSize: 128, chunkRows: 4096, timeoutMs: 60_000 }),
    { stdout: QUIET, stderr: QUIET },
  );
  const rows = await readRows(reference);
  clean = { prediction: Int32Array.from(rows, (row) => row['prediction'] as number), probs0: Float32Array.from(rows, (row) => row['probs_0'] as number) };
  assert.equal(rows.length, ROWS);
});

after(async () => {
  await rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  await rm(repository, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

test('kill -9 in the middle of a job, rerun with the same arguments: every row exactly once, in order, same predictions', async () => {
  const output = path.join(work, 'killed.parquet');
  const first = startCli(args(output));
  let exited = false;
  void first.exit.then(() => (exited = true));
  const done = await waitForChunks(output, 3, () => exited);
  first.child.kill('SIGKILL');
  const [, signal] = await first.exit;
  assert.equal(signal, 'SIGKILL', `the job was killed mid-way (it had ${done} chunks done): ${first.output().stderr}`);
  assert.ok(done >= 3 && done < Math.ceil(ROWS / 4096), `killed with ${done} of ${Math.ceil(ROWS / 4096)} chunks done`);
  await assert.rejects(stat(output), 'no output until the job completes');

  // What a crash between writes leaves: a stray temporary file, the state of a chunk the
  // manifest does not count, bytes appended to the partial output past the ones it counts, and
  // a part file of the older checkpoint layout.
  const parts = `${output}.parts`;
  await writeFile(path.join(parts, 'manifest.json.tmp'), '{');
  await writeFile(path.join(parts, 'chunk-000048.json'), 'not counted by the manifest');
  await appendFile(path.join(parts, 'output.parquet.partial'), 'a torn append');
  await writeFile(path.join(parts, 'part-000048.parquet'), 'not listed in the manifest');

  const second = startCli(args(output));
  const [code] = await second.exit;
  const { stdout, stderr } = second.output();
  assert.equal(code, 0, stderr);
  assert.match(stdout, /tessera batch: done: 200,000 rows, 0 errors/);
  assert.match(stdout, /[\d,]+ resumed from the checkpoint/);
  assertComplete(await readRows(output), 'after kill -9');
  await assert.rejects(readdir(parts), 'the checkpoint is gone once the output is complete');
});

test('SIGINT stops reading, checkpoints the chunks in flight and exits 130; the rerun finishes the job', async () => {
  const output = path.join(work, 'interrupted.parquet');
  const first = startCli(args(output));
  let exited = false;
  void first.exit.then(() => (exited = true));
  await waitForChunks(output, 2, () => exited);
  first.child.kill('SIGINT');
  const [code] = await first.exit;
  const { stdout, stderr } = first.output();
  assert.equal(code, 130, `exit code after SIGINT: ${stderr}`);
  assert.match(stderr, /interrupted; finishing the chunks in flight and saving the checkpoint/);
  assert.match(stdout, /tessera batch: interrupted: [\d,]+ rows done and checkpointed .* rerun the same command to resume/);
  const checkpointed = await doneChunks(output);
  assert.ok(checkpointed >= 2, `${checkpointed} chunks checkpointed`);
  await assert.rejects(stat(output));

  const second = startCli(args(output));
  const [again] = await second.exit;
  assert.equal(again, 0, second.output().stderr);
  assert.match(second.output().stdout, /tessera batch: done: 200,000 rows/);
  assertComplete(await readRows(output), 'after SIGINT');
});

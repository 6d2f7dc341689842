/**
 * Checkpoint/resume tests that a mutation audit showed missing, on Checkpoint itself over a real
 * directory: a rerun of the same job carries on from the manifest; a partial output shorter
 * than the manifest counts, a missing chunk state or a manifest listing chunks out of order
 * starts the job over; --restart discards the checkpoint; a different job is refused, naming
 * what changed; the job is complete only when every chunk up to the last is done.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { Checkpoint } from '../src/batch/checkpoint.js';
import { TesseraError } from '../src/core/errors.js';

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'tessera-checkpoint-checks-'));
});
after(() => rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));

const JOB = { input: 'in.csv', batchSize: 100 };

function open(output: string, options: { restart?: boolean; keepsState?: boolean; job?: Record<string, unknown> } = {}): Promise<Checkpoint> {
  return Checkpoint.open(output, options.job ?? JOB, 16, [], 'csv', { restart: options.restart ?? false, keepsState: options.keepsState ?? false });
}

/** A checkpoint with two chunks done (10 rows each, 1 error in the first) over a 100-byte partial output. */
async function twoChunksDone(keepsState = false): Promise<string> {
  const output = join(await mkdtemp(join(root, 'out-')), 'scores.csv');
  const checkpoint = await open(output, { keepsState });
  await writeFile(checkpoint.partialPath, Buffer.alloc(100, 0x61));
  if (keepsState) {
    await checkpoint.saveState(0, { part: 0, big: 12345678901234567890n });
    await checkpoint.saveState(1, { part: 1 });
  }
  await checkpoint.markDone(0, 10, 1, 60);
  await checkpoint.markDone(1, 10, 0, 100);
  await checkpoint.release();
  return output;
}

test('a rerun of the same job resumes: chunks, rows, errors and output bytes from the manifest', async () => {
  const output = await twoChunksDone(true);
  const checkpoint = await open(output, { keepsState: true });
  try {
    assert.equal(checkpoint.resumed, true);
    assert.deepEqual([checkpoint.doneChunks, checkpoint.doneRows, checkpoint.doneErrors, checkpoint.outputBytes], [2, 20, 1, 100]);
    assert.deepEqual([...checkpoint.doneIndices()].sort(), [0, 1]);
    assert.deepEqual(await checkpoint.readStates(), [{ part: 0, big: 12345678901234567890n }, { part: 1 }]);
  } finally {
    await checkpoint.release();
  }
});

test('a partial output shorter than the manifest counts starts the job over', async () => {
  const output = await twoChunksDone();
  await truncate(join(Checkpoint.dirFor(output), 'output.csv.partial'), 50);
  const checkpoint = await open(output);
  try {
    assert.deepEqual([checkpoint.doneChunks, checkpoint.doneRows, checkpoint.outputBytes], [0, 0, 0]);
    await assert.rejects(stat(checkpoint.partialPath), 'the partial output is deleted');
  } finally {
    await checkpoint.release();
  }
});

test('a missing chunk state starts the job over when the format needs the states', async () => {
  const output = await twoChunksDone(true);
  await unlink(join(Checkpoint.dirFor(output), 'chunk-000001.json'));
  const checkpoint = await open(output, { keepsState: true });
  try {
    assert.deepEqual([checkpoint.doneChunks, checkpoint.outputBytes], [0, 0]);
    await assert.rejects(stat(checkpoint.statePath(0)), 'states of chunks not done are deleted');
  } finally {
    await checkpoint.release();
  }
});

test('a manifest listing chunks out of order starts the job over', async () => {
  const output = await twoChunksDone();
  const manifestPath = join(Checkpoint.dirFor(output), 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { chunks: [number, number, number][] };
  manifest.chunks = manifest.chunks.filter(([index]) => index !== 0);
  await writeFile(manifestPath, JSON.stringify(manifest));
  const checkpoint = await open(output);
  try {
    assert.deepEqual([checkpoint.doneChunks, checkpoint.outputBytes], [0, 0]);
  } finally {
    await checkpoint.release();
  }
});

test('--restart discards the checkpoint of the same job and of a different one', async () => {
  const output = await twoChunksDone();
  const same = await open(output, { restart: true });
  try {
    assert.deepEqual([same.doneChunks, same.outputBytes], [0, 0]);
  } finally {
    await same.release();
  }
  const other = await twoChunksDone();
  const changed = await open(other, { restart: true, job: { ...JOB, batchSize: 200 } });
  try {
    assert.equal(changed.doneChunks, 0);
  } finally {
    await changed.release();
  }
});

test('a different job is refused, naming what changed, and the checkpoint is kept', async () => {
  const output = await twoChunksDone();
  await assert.rejects(open(output, { job: { ...JOB, batchSize: 200 } }), (error: unknown) => {
    assert.ok(error instanceof TesseraError);
    assert.equal(error.code, 'BATCH_CHECKPOINT_CONFLICT');
    assert.match(error.message, /changed since it was written: the batch size \(was 100, now 200\)/);
    return true;
  });
  const again = await open(output);
  try {
    assert.equal(again.doneChunks, 2, 'the refused run left the checkpoint as it was');
  } finally {
    await again.release();
  }
});

test('complete only once the last chunk is known and every chunk up to it is done; chunks finish in order', async () => {
  const output = join(await mkdtemp(join(root, 'out-')), 'scores.csv');
  const checkpoint = await open(output);
  try {
    assert.equal(checkpoint.complete, false);
    await checkpoint.markDone(0, 16, 0, 10);
    assert.equal(checkpoint.complete, false, 'the last chunk is not known yet');
    await checkpoint.markEnd(1);
    assert.equal(checkpoint.complete, false, 'chunk 1 is not done');
    assert.throws(() => void checkpoint.markDone(2, 16, 0, 20), /chunk 2 was finished out of order/);
    await checkpoint.markDone(1, 4, 0, 20);
    assert.equal(checkpoint.complete, true);
  } finally {
    await checkpoint.release();
  }
});

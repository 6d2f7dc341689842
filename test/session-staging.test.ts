/**
 * Batch inputs of large models are assembled in one shared buffer per input that the session
 * instance lends and takes back (BackendInstance.inputStaging), instead of a new array per batch.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { SessionInstance } from '../src/backends/onnx/session-instance.js';
import { sessionSettings } from '../src/backends/onnx/settings.js';
import type { Tensor } from '../src/core/tensor.js';
import { identityModel } from './support/fixtures.js';

/** 20,000 FP32 per row: 80 KB, above the size below which batches use new arrays. */
const ROW = 20_000;
let dir: string;
let instance: SessionInstance;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tessera-staging-'));
  const file = path.join(dir, 'model.onnx');
  await writeFile(file, identityModel('FP32', [-1, ROW]));
  ({ instance } = await SessionInstance.start(0, file, sessionSettings({}, 1)));
});

after(async () => {
  await instance.close();
  await rm(dir, { recursive: true, force: true });
});

function rows(count: number, seed: number): Float32Array {
  return Float32Array.from({ length: count * ROW }, (_, i) => ((i * 7 + seed) % 1000) / 7);
}

function tensor(data: Float32Array, count: number): Tensor {
  return { name: 'x', datatype: 'FP32', shape: [count, ROW], data };
}

test('a batch assembled in staging runs, and the same buffer is lent again once the run settles', async () => {
  const first = instance.inputStaging('x', 'FP32', 3 * ROW) as Float32Array;
  assert.ok(first.buffer instanceof SharedArrayBuffer, 'staging is shared memory');
  assert.equal(instance.inputStaging('x', 'FP32', 3 * ROW), undefined, 'lent to one batch at a time');
  const expected = rows(3, 1);
  first.set(expected);
  const result = await instance.execute([tensor(first, 3)], ['y']);
  assert.deepEqual(result.outputs[0]!.data, expected);

  const second = instance.inputStaging('x', 'FP32', 2 * ROW) as Float32Array;
  assert.equal(second.buffer, first.buffer, 'a smaller batch reuses the buffer');
  second.set(rows(2, 2));
  assert.deepEqual((await instance.execute([tensor(second, 2)], ['y'])).outputs[0]!.data, rows(2, 2));

  const larger = instance.inputStaging('x', 'FP32', 5 * ROW) as Float32Array;
  assert.notEqual(larger.buffer, first.buffer, 'a larger batch grows it');
  larger.set(rows(5, 3));
  assert.deepEqual((await instance.execute([tensor(larger, 5)], ['y'])).outputs[0]!.data, rows(5, 3));
});

test('small inputs are left to new arrays', () => {
  assert.equal(instance.inputStaging('x', 'FP32', 100), undefined);
});

test('a view into a larger buffer (a slice of a request body) is copied into staging; the caller keeps its buffer', async () => {
  const body = new ArrayBuffer(16 + 2 * ROW * 4);
  const view = new Float32Array(body, 16, 2 * ROW);
  view.set(rows(2, 4));
  const result = await instance.execute([tensor(view, 2)], ['y']);
  assert.deepEqual(result.outputs[0]!.data, rows(2, 4));
  assert.equal(body.byteLength, 16 + 2 * ROW * 4, 'the body was not transferred (detached)');
  assert.deepEqual(view, rows(2, 4));
});

test('a failed run gives its staging back', async () => {
  const staged = instance.inputStaging('x', 'FP32', ROW) as Float32Array;
  // The model takes rows of ROW elements: this shape fails in onnxruntime.
  await assert.rejects(instance.execute([{ name: 'x', datatype: 'FP32', shape: [2, ROW / 2], data: staged }], ['y']));
  assert.ok(instance.inputStaging('x', 'FP32', ROW) !== undefined, 'free again after the failure');
});

test('staging lent to a batch that never reached execute is taken back by the next run', async () => {
  await instance.execute([tensor(rows(1, 6), 1)], ['y']); // takes back what the test before left lent
  const abandoned = instance.inputStaging('x', 'FP32', ROW);
  assert.ok(abandoned !== undefined);
  // The next batch arrives in an array of its own (its assembly did not get the lent buffer).
  const own = rows(1, 5);
  assert.deepEqual((await instance.execute([tensor(own, 1)], ['y'])).outputs[0]!.data, rows(1, 5));
  assert.ok(instance.inputStaging('x', 'FP32', ROW) !== undefined);
});

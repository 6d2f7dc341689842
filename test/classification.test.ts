/**
 * Triton's classification extension, the selection itself (src/protocols/classification.ts):
 * the top k classes per row, against a plain sort of every class, over rows with ties, NaN and
 * infinities, for counts picked in one pass and counts that sort. The protocols' use of it is
 * tested end to end in http-binary.test.ts and grpc.test.ts; a batched output without a class
 * dimension is refused end to end here.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';

import { TesseraError } from '../src/core/errors.js';
import type { Tensor } from '../src/core/tensor.js';
import { classify } from '../src/protocols/classification.js';
import { makeTempRepository } from './support/fixtures.js';
import { postJson, startTestServer, writeFakeModel } from './support/server.js';

/** The reference: every class of the row sorted (ties by index, NaN as -Infinity), the first k. */
function expectedTop(values: Float32Array, base: number, classes: number, k: number): number[] {
  const rank = (v: number): number => (Number.isNaN(v) ? -Infinity : v);
  const order = Array.from({ length: classes }, (_, i) => i);
  order.sort((a, b) => rank(values[base + b]!) - rank(values[base + a]!) || a - b);
  return order.slice(0, Math.min(k, classes));
}

function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

test('classification picks the same classes, in the same order, as sorting every class', () => {
  const random = seededRandom(5);
  const special = [Number.NaN, Infinity, -Infinity, 0, -0];
  for (const classes of [1, 2, 7, 40, 1000]) {
    const rows = 6;
    const values = new Float32Array(rows * classes);
    for (let i = 0; i < values.length; i++) {
      const pick = random();
      // Few distinct values make many ties; some NaN and infinities.
      values[i] = pick < 0.1 ? special[Math.floor(random() * special.length)]! : Math.floor(random() * 8) / 4;
    }
    const tensor: Tensor = { name: 'y', datatype: 'FP32', shape: [rows, classes], data: values };
    for (const k of [1, 3, 5, 32, 33, 64, 2000]) {
      const answer = classify(tensor, k, undefined, true);
      const count = Math.min(k, classes);
      assert.deepEqual(answer.shape, [rows, count]);
      const indices = (answer.data as Buffer[]).map((entry) => Number(entry.toString('utf8').split(':')[1]));
      for (let r = 0; r < rows; r++) {
        assert.deepEqual(indices.slice(r * count, (r + 1) * count), expectedTop(values, r * classes, classes, k), `classes ${classes}, k ${k}, row ${r}`);
      }
    }
  }
});

test('classification of integer and FP16 outputs, and labels by index', () => {
  const ints: Tensor = { name: 'y', datatype: 'INT32', shape: [2, 4], data: new Int32Array([3, 9, 9, -1, 0, 0, 0, 5]) };
  const answer = classify(ints, 2, ['a', 'b', '', 'd'], true);
  assert.deepEqual((answer.data as Buffer[]).map(String), ['9:1:b', '9:2', '5:3:d', '0:0:a']);
  const halves: Tensor = { name: 'y', datatype: 'FP16', shape: [3], data: new Uint16Array([0x3c00, 0x4000, 0x3800]) };
  assert.deepEqual((classify(halves, 3, undefined, false).data as Buffer[]).map(String), ['2:1', '1:0', '0.5:2']);
});

test('a batched output of shape [-1] has no classes after the batch dimension: 400 saying so, not one class per row', async (t) => {
  const rows: Tensor = { name: 'y', datatype: 'FP32', shape: [3], data: new Float32Array([0.2, 0.9, 0.1]) };
  assert.throws(
    () => classify(rows, 2, undefined, true),
    (error: unknown) => error instanceof TesseraError && error.code === 'INVALID_PARAMETER' && /output 'y' has shape \[3\]: classification needs classes after the batch dimension/.test(error.message),
  );
  // Unbatched, the same values are one entry of 3 classes.
  assert.deepEqual((classify(rows, 2, undefined, false).data as Buffer[]).map(String), ['0.9:1', '0.2:0']);

  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeFakeModel(repo, 'score', 1, { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1], copy_of: 'x' }] }, 'max_batch_size: 8\n');
  const server = await startTestServer(t, repo);
  const inputs = [{ name: 'x', datatype: 'FP32', shape: [3], data: [0.2, 0.9, 0.1] }];
  const plain = await postJson(`${server.httpUrl}/v2/models/score/infer`, { inputs });
  assert.equal(plain.status, 200, JSON.stringify(plain.body));
  const refused = await postJson(`${server.httpUrl}/v2/models/score/infer`, { inputs, outputs: [{ name: 'y', parameters: { classification: 2 } }] });
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  assert.match((refused.body as { error: string }).error, /output 'y' has shape \[3\]: classification needs classes after the batch dimension/);
});

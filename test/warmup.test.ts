/**
 * Warm-up: which batches a version runs before it serves. Before it is READY, every instance
 * runs zero-filled batches of each planned size (`warmup.batch_sizes`, else every size the
 * batcher can form), `iterations` times, with `warmup.dims` for the variable dims.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BackendInstance, BackendModel, ExecutionResult } from '../src/backends/backend.js';
import type { Tensor } from '../src/core/tensor.js';
import { warmUp, warmupBatchSizes } from '../src/engine/warmup.js';
import type { ModelSignature } from '../src/repository/signature.js';

interface Run {
  readonly instance: number;
  readonly shapes: Record<string, readonly number[]>;
  readonly allZero: boolean;
  readonly outputs: readonly string[];
}

/** A backend model whose instances record what they are asked to run. */
function recordingModel(instanceCount: number, runs: Run[]): BackendModel {
  const instance = (index: number): BackendInstance => ({
    index,
    execute: async (inputs: readonly Tensor[], outputNames: readonly string[]): Promise<ExecutionResult> => {
      await new Promise((resolve) => setImmediate(resolve));
      runs.push({
        instance: index,
        shapes: Object.fromEntries(inputs.map((input) => [input.name, [...input.shape]])),
        allZero: inputs.every((input) => Array.from(input.data as ArrayLike<number | Buffer>).every((value) => (Buffer.isBuffer(value) ? value.toString() === '0' : value === 0))),
        outputs: [...outputNames],
      });
      return { outputs: [], timings: { inputNs: 0, inferNs: 0, outputNs: 0 } };
    },
  });
  return { inputs: [], outputs: [], instances: Array.from({ length: instanceCount }, (_, i) => instance(i)), close: async () => undefined };
}

const imageSignature: ModelSignature = {
  maxBatchSize: 4,
  inputs: [
    { name: 'image', datatype: 'FP32', shape: [-1, 3, -1, -1] },
    { name: 'scale', datatype: 'FP32', shape: [-1, 1] },
  ],
  outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
};

describe('warm-up', () => {
  test('every planned batch size runs on every instance, zero-filled, iterations times, in ascending order', async () => {
    const runs: Run[] = [];
    await warmUp(recordingModel(2, runs), imageSignature, { batchSizes: warmupBatchSizes(imageSignature, [4, 1, 9, 1]), iterations: 2, dims: { image: [3, 32, 32] } });
    for (const instance of [0, 1]) {
      const own = runs.filter((run) => run.instance === instance);
      assert.deepEqual(
        own.map((run) => run.shapes),
        [1, 1, 4, 4].map((size) => ({ image: [size, 3, 32, 32], scale: [size, 1] })),
        'sizes beyond max_batch_size and repeats are dropped; warmup.dims sets the variable dims',
      );
      assert.ok(own.every((run) => run.allZero && run.outputs.join() === 'logits'));
    }
  });

  test('without batch_sizes, every size the batcher can form; without dims, 1 for each variable dim; a model that does not batch runs its own shape once', async () => {
    assert.deepEqual(warmupBatchSizes(imageSignature, undefined), [1, 2, 3, 4]);
    const runs: Run[] = [];
    await warmUp(recordingModel(1, runs), imageSignature, { batchSizes: warmupBatchSizes(imageSignature, undefined), iterations: 1 });
    assert.deepEqual(
      runs.map((run) => run.shapes.image),
      [1, 2, 3, 4].map((size) => [size, 3, 1, 1]),
    );
    const unbatched: ModelSignature = { maxBatchSize: 0, inputs: [{ name: 'text', datatype: 'BYTES', shape: [2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [2] }] };
    const single: Run[] = [];
    await warmUp(recordingModel(1, single), unbatched, { batchSizes: warmupBatchSizes(unbatched, [8]), iterations: 1 });
    assert.deepEqual(single.map((run) => [run.shapes.text, run.allZero]), [[[2], true]]);
  });
});

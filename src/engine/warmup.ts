import { allocate } from '../core/datatype.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';
import type { BackendModel } from '../backends/backend.js';
import type { ModelSignature } from '../repository/signature.js';

export interface WarmupPlan {
  readonly batchSizes: readonly number[];
  readonly iterations: number;
  /** Per input, the dims (without the batch dim) to run with; variable dims are 1 otherwise. */
  readonly dims?: Readonly<Record<string, readonly number[]>>;
}

/**
 * Batch sizes to warm up: the configured list, or every size the batcher can form
 * (1..max_batch_size), so the first real request of any size meets warm caches and arenas.
 */
export function warmupBatchSizes(signature: ModelSignature, configured: readonly number[] | undefined): number[] {
  if (signature.maxBatchSize === 0) return [1];
  const sizes = configured ?? Array.from({ length: signature.maxBatchSize }, (_, i) => i + 1);
  return [...new Set(sizes.filter((size) => size >= 1 && size <= signature.maxBatchSize))].sort((a, b) => a - b);
}

/** Run zero-filled batches of each planned size on every instance, all instances at once. */
export async function warmUp(model: BackendModel, signature: ModelSignature, plan: WarmupPlan): Promise<void> {
  const outputNames = signature.outputs.map((spec) => spec.name);
  await Promise.all(
    model.instances.map(async (instance) => {
      for (const size of plan.batchSizes) {
        for (let i = 0; i < plan.iterations; i++) {
          const inputs = signature.inputs.map((spec) => zeroTensor(spec, signature.maxBatchSize > 0 ? size : undefined, plan.dims?.[spec.name]));
          await instance.execute(inputs, outputNames);
        }
      }
    }),
  );
}

/**
 * Zeros of `spec`'s shape: the batch dim `batchSize` (when the model batches), other dims as
 * `dims` gives them (without the batch dim), else the model's, 1 where it leaves one variable.
 */
function zeroTensor(spec: TensorSpec, batchSize: number | undefined, dims: readonly number[] | undefined): Tensor {
  const offset = batchSize === undefined ? 0 : 1;
  const shape = spec.shape.map((dim, i) => {
    if (i === 0 && batchSize !== undefined) return batchSize;
    const wanted = dims?.[i - offset];
    return wanted !== undefined && (dim === -1 || dim === wanted) ? wanted : dim === -1 ? 1 : dim;
  });
  const count = shape.reduce((a, b) => a * b, 1);
  if (spec.datatype === 'BYTES') return { name: spec.name, datatype: 'BYTES', shape, data: Array.from({ length: count }, () => Buffer.from('0')) };
  return { name: spec.name, datatype: spec.datatype, shape, data: allocate(spec.datatype, count) } as Tensor;
}

import type { ModelConfigFile, TensorConfig } from '../config/model-config.js';
import { TesseraError } from '../core/errors.js';
import { formatShape } from '../core/shape.js';
import type { TensorSpec } from '../core/tensor.js';

/** The inputs and outputs a model version serves, with its batching dimension settled. */
export interface ModelSignature {
  /** 0: requests carry full shapes, no batching. > 0: dim 0 is the batch, up to this size. */
  readonly maxBatchSize: number;
  /** Full shapes, batch dim included as -1 when maxBatchSize > 0 (as V2 metadata reports them). */
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

/**
 * Combine what the model file declares with what its config states. Without a config, a model
 * whose inputs and outputs all have a variable first dimension batches up to
 * `defaultMaxBatchSize`; the config's `input`/`output` entries may pin variable dims (Triton's
 * `dims`, batch dim excluded) and must agree with the model's datatypes and fixed dims.
 */
export function resolveSignature(
  declared: { readonly inputs: readonly TensorSpec[]; readonly outputs: readonly TensorSpec[] },
  config: ModelConfigFile,
  defaultMaxBatchSize: number,
): ModelSignature {
  const all = [...declared.inputs, ...declared.outputs];
  const batchable = all.length > 0 && all.every((spec) => spec.shape.length > 0 && spec.shape[0] === -1);
  const maxBatchSize = config.max_batch_size ?? (batchable ? defaultMaxBatchSize : 0);
  if (maxBatchSize > 0 && !batchable) {
    const fixed = all.find((spec) => spec.shape.length === 0 || spec.shape[0] !== -1)!;
    throw new TesseraError(
      'INVALID_MODEL_CONFIG',
      `max_batch_size is ${maxBatchSize} but '${fixed.name}' has shape ${formatShape(fixed.shape)}: every input and output needs a variable first dimension to batch`,
    );
  }
  return {
    maxBatchSize,
    inputs: applyOverrides('input', declared.inputs, config.input, maxBatchSize),
    outputs: applyOverrides('output', declared.outputs, config.output, maxBatchSize),
  };
}

function applyOverrides(
  kind: 'input' | 'output',
  declared: readonly TensorSpec[],
  overrides: readonly TensorConfig[],
  maxBatchSize: number,
): TensorSpec[] {
  for (const override of overrides) {
    if (!declared.some((spec) => spec.name === override.name)) {
      const names = declared.map((spec) => spec.name).join(', ');
      throw new TesseraError('INVALID_MODEL_CONFIG', `config ${kind} '${override.name}' is not in the model; its ${kind}s are: ${names}`);
    }
  }
  return declared.map((spec) => {
    const override = overrides.find((o) => o.name === spec.name);
    if (override === undefined) return spec;
    if (override.data_type !== undefined && override.data_type !== spec.datatype) {
      throw new TesseraError(
        'INVALID_MODEL_CONFIG',
        `config ${kind} '${spec.name}': data_type ${override.data_type} differs from the model's ${spec.datatype}`,
      );
    }
    if (override.dims === undefined) return spec;
    const shape = maxBatchSize > 0 ? [-1, ...override.dims] : override.dims;
    const compatible =
      shape.length === spec.shape.length && shape.every((dim, i) => spec.shape[i] === -1 || spec.shape[i] === dim);
    if (!compatible) {
      throw new TesseraError(
        'INVALID_MODEL_CONFIG',
        `config ${kind} '${spec.name}': dims ${formatShape(override.dims)} do not fit the model's shape ${formatShape(spec.shape)}` +
          (maxBatchSize > 0 ? ' (dims exclude the batch dimension)' : ''),
      );
    }
    return { ...spec, shape };
  });
}

import type { ModelConfigFile } from '../config/model-config.js';
import type { DataType } from '../core/datatype.js';
import type { TensorSpec } from '../core/tensor.js';
import type { ModelSignature } from '../repository/signature.js';

/** A model's effective configuration in the JSON shape of Triton's ModelConfig message. */
export interface ModelConfigView {
  readonly name: string;
  readonly platform: string;
  readonly backend: string;
  readonly max_batch_size: number;
  readonly input: readonly { name: string; data_type: string; dims: readonly number[] }[];
  readonly output: readonly { name: string; data_type: string; dims: readonly number[] }[];
  readonly version_policy: object;
  readonly instance_group: readonly { name: string; kind: string; count: number }[];
  readonly dynamic_batching?: object;
  readonly parameters: Readonly<Record<string, { string_value: string }>>;
  readonly default_model_filename: string;
}

const TYPE_NAME = (datatype: DataType): string => (datatype === 'BYTES' ? 'TYPE_STRING' : `TYPE_${datatype}`);

function tensorView(spec: TensorSpec, maxBatchSize: number): { name: string; data_type: string; dims: readonly number[] } {
  return { name: spec.name, data_type: TYPE_NAME(spec.datatype), dims: maxBatchSize > 0 ? spec.shape.slice(1) : spec.shape };
}

export function configView(
  name: string,
  config: ModelConfigFile,
  signature: ModelSignature,
  backend: string,
  defaultModelFilename: string,
  instanceCount: number,
  dynamicBatching: object | undefined,
): ModelConfigView {
  return {
    name,
    platform: backend === 'onnxruntime' ? 'onnxruntime_onnx' : backend,
    backend,
    max_batch_size: signature.maxBatchSize,
    input: signature.inputs.map((spec) => tensorView(spec, signature.maxBatchSize)),
    output: signature.outputs.map((spec) => tensorView(spec, signature.maxBatchSize)),
    version_policy: config.version_policy ?? { latest: { num_versions: 1 } },
    instance_group: [{ name, kind: 'KIND_CPU', count: instanceCount }],
    ...(dynamicBatching === undefined ? {} : { dynamic_batching: dynamicBatching }),
    parameters: Object.fromEntries(Object.entries(config.parameters).map(([key, value]) => [key, { string_value: String(value) }])),
    default_model_filename: config.default_model_filename ?? defaultModelFilename,
  };
}

import type { DynamicBatchingConfig, VersionPolicy } from '../../config/model-config.js';
import type { ModelConfigView } from '../../engine/config-view.js';
import type { ModelConfigOut } from './messages.js';

/**
 * The engine's config view as Triton's ModelConfig message (proto/model_config.proto). The
 * view already uses Triton's field names and enum names (TYPE_FP32, KIND_CPU), so this only
 * narrows it to the fields the message declares.
 */
export function encodeModelConfig(view: ModelConfigView): ModelConfigOut {
  // The view types these two as `object`; the engine fills them from the validated config.
  const versionPolicy = view.version_policy as VersionPolicy;
  const batching = view.dynamic_batching as DynamicBatchingConfig | undefined;
  return {
    name: view.name,
    platform: view.platform,
    backend: view.backend,
    version_policy: encodeVersionPolicy(versionPolicy),
    max_batch_size: view.max_batch_size,
    input: view.input.map((t) => ({ name: t.name, data_type: t.data_type, dims: [...t.dims] })),
    output: view.output.map((t) => ({ name: t.name, data_type: t.data_type, dims: [...t.dims] })),
    instance_group: view.instance_group.map((g) => ({ name: g.name, kind: g.kind, count: g.count })),
    default_model_filename: view.default_model_filename,
    ...(batching === undefined ? {} : { dynamic_batching: encodeDynamicBatching(batching) }),
    parameters: { ...view.parameters },
  };
}

function encodeVersionPolicy(policy: VersionPolicy): ModelConfigOut['version_policy'] {
  if ('latest' in policy) return { latest: { num_versions: policy.latest.num_versions } };
  if ('specific' in policy) return { specific: { versions: [...policy.specific.versions] } };
  return { all: {} };
}

function encodeDynamicBatching(batching: DynamicBatchingConfig): NonNullable<ModelConfigOut['dynamic_batching']> {
  const queue = batching.default_queue_policy;
  return {
    preferred_batch_size: [...batching.preferred_batch_size],
    max_queue_delay_microseconds: batching.max_queue_delay_microseconds,
    preserve_ordering: batching.preserve_ordering ?? false,
    priority_levels: batching.priority_levels,
    default_priority_level: batching.default_priority_level,
    ...(queue === undefined
      ? {}
      : {
          default_queue_policy: {
            default_timeout_microseconds: queue.default_timeout_microseconds ?? 0,
            allow_timeout_override: queue.allow_timeout_override,
            max_queue_size: queue.max_queue_size ?? 0,
          },
        }),
  };
}

import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { DATA_TYPES, type DataType } from '../core/datatype.js';
import { auditModelConfigSchema } from './audit-config.js';
import { monitoringConfigSchema } from './monitoring-config.js';
import { routingConfigSchema } from '../routing/config.js';

/**
 * The schema of a model's `config.yaml` / `config.json`. Keys use Triton's model-configuration
 * names where Triton has one, so a Triton user recognises them.
 */

const TRITON_TYPE_NAMES: Readonly<Record<string, DataType>> = {
  TYPE_BOOL: 'BOOL',
  TYPE_UINT8: 'UINT8',
  TYPE_UINT16: 'UINT16',
  TYPE_UINT32: 'UINT32',
  TYPE_UINT64: 'UINT64',
  TYPE_INT8: 'INT8',
  TYPE_INT16: 'INT16',
  TYPE_INT32: 'INT32',
  TYPE_INT64: 'INT64',
  TYPE_FP16: 'FP16',
  TYPE_FP32: 'FP32',
  TYPE_FP64: 'FP64',
  TYPE_STRING: 'BYTES',
};

/** Accepts V2 names (`FP32`) and Triton config names (`TYPE_FP32`). */
const dataTypeName = z.string().transform((value, ctx): DataType => {
  const upper = value.toUpperCase();
  const mapped = TRITON_TYPE_NAMES[upper] ?? ((DATA_TYPES as readonly string[]).includes(upper) ? (upper as DataType) : undefined);
  if (mapped === undefined) {
    ctx.addIssue({ code: 'custom', message: `unknown data type '${value}'` });
    return z.NEVER;
  }
  return mapped;
});

const nonNegativeInt = z.number().int().min(0);
const dim = z.number().int().min(-1);

const tensorConfig = z.strictObject({
  name: z.string().min(1),
  data_type: dataTypeName.optional(),
  /** Shape without the batch dimension (Triton's `dims`); -1 for variable. */
  dims: z.array(dim).optional(),
});

const versionPolicy = z.union([
  z.strictObject({ latest: z.strictObject({ num_versions: z.number().int().min(1) }) }),
  z.strictObject({ all: z.strictObject({}).optional().default({}) }),
  z.strictObject({ specific: z.strictObject({ versions: z.array(nonNegativeInt).min(1) }) }),
]);

const instanceGroup = z.strictObject({
  /**
   * At most 64, as the management API's scale: each instance is a worker thread with its own
   * session. Absent: the default instance count (defaultInstanceCount), as Triton's CPU groups.
   */
  count: z.number().int().min(1).max(64).optional(),
  kind: z.enum(['KIND_CPU', 'KIND_AUTO']).default('KIND_CPU'),
  name: z.string().optional(),
});

const queuePolicy = z.strictObject({
  /** Requests waiting beyond this are refused at once (QUEUE_FULL). 0 = the server default. */
  max_queue_size: nonNegativeInt.optional(),
  /** Timeout applied to requests that set none; 0 = none. */
  default_timeout_microseconds: nonNegativeInt.optional(),
  /** Whether requests may override the default timeout. */
  allow_timeout_override: z.boolean().default(true),
});

const dynamicBatching = z.strictObject({
  max_queue_delay_microseconds: nonNegativeInt.default(0),
  preferred_batch_size: z.array(z.number().int().min(1)).default([]),
  preserve_ordering: z.boolean().optional(),
  priority_levels: nonNegativeInt.default(0),
  default_priority_level: nonNegativeInt.default(0),
  default_queue_policy: queuePolicy.optional(),
});

const parameterValue = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  // Triton writes parameters as { string_value: "..." }.
  z.strictObject({ string_value: z.string() }).transform((v) => v.string_value),
]);

const warmup = z.strictObject({
  enabled: z.boolean().default(true),
  /** Batch sizes to run at load; default: every size from 1 to max_batch_size. */
  batch_sizes: z.array(z.number().int().min(1)).optional(),
  /** Runs per batch size. */
  iterations: z.number().int().min(1).max(100).default(1),
  /**
   * Per input, the dims (without the batch dim) to warm up with, for dims the model leaves
   * variable; unset: 1 for each variable dim.
   */
  dims: z.record(z.string().min(1), z.array(z.number().int().min(1)).max(16)).optional(),
});

export const modelConfigSchema = z.strictObject({
  name: z.string().min(1).optional(),
  backend: z.enum(['onnxruntime', 'fake']).optional(),
  platform: z.enum(['onnxruntime_onnx', 'fake']).optional(),
  max_batch_size: nonNegativeInt.optional(),
  input: z.array(tensorConfig).default([]),
  output: z.array(tensorConfig).default([]),
  version_policy: versionPolicy.optional(),
  instance_group: z
    .union([instanceGroup, z.array(instanceGroup).min(1)])
    .optional()
    .transform((v) => (v === undefined ? undefined : Array.isArray(v) ? v : [v])),
  /**
   * Absent: batching models batch dynamically with no added delay (requests that queue while
   * instances are busy run together). `false`: every request runs alone, as in Triton without
   * dynamic_batching.
   */
  dynamic_batching: z.union([z.literal(false), dynamicBatching]).optional(),
  /** Queue policy for models without dynamic batching. */
  queue_policy: queuePolicy.optional(),
  parameters: z.record(z.string(), parameterValue).default({}),
  warmup: warmup.optional(),
  /**
   * Pre/post-processing for raw requests (TorchServe-style /predictions): `image`, `tabular`,
   * `custom` (the directory's handler.js/.ts), `default`. Absent: custom when the directory has
   * a handler module, else none.
   */
  handler: z.enum(['image', 'tabular', 'custom', 'default']).optional(),
  handler_options: z.record(z.string(), z.unknown()).default({}),
  /** Model-quality monitoring: prediction summaries and input drift (docs/monitoring.md). */
  monitoring: monitoringConfigSchema.optional(),
  /** Prediction audit log sampling and redaction for this model (docs/audit-log.md). */
  audit: auditModelConfigSchema.optional(),
  /** Version routing and safe rollouts: split, sticky keys, aliases, shadow, canary, circuit breaker (docs/rollouts.md). */
  routing: routingConfigSchema.optional(),
  default_model_filename: z.string().min(1).optional(),
  label_filename: z.string().min(1).optional(),
});

/** A model configuration as written in the repository, after validation and defaults. */
export type ModelConfigFile = z.output<typeof modelConfigSchema>;

/**
 * Instances of a model whose config has no `instance_group`: two, as Triton gives CPU models,
 * or one on a single core. Each gets half the cores as intra-op threads (onnx/settings.ts).
 * An instance's parallel operators wait at each barrier for their slowest thread, so a core
 * taken for a moment by the event loop idles the other core too; two instances lose only the
 * time actually taken. Under load they serve as much as one instance on every core, and more
 * when the event loop is busy (ResNet over V2 JSON: 4-8%); a request alone runs on half the
 * cores (docs/architecture.md has the measurements).
 */
export function defaultInstanceCount(cores = availableParallelism()): number {
  return Math.max(1, Math.min(2, cores));
}

/** The instances `config` asks for, all groups counted (a group without `count` has the default), else the default. */
export function instanceCountOf(config: Pick<ModelConfigFile, 'instance_group'>, cores = availableParallelism()): number {
  const groups: readonly { readonly count?: number | undefined }[] = config.instance_group ?? [{}];
  return groups.reduce((sum, group) => sum + (group.count ?? defaultInstanceCount(cores)), 0);
}

export type VersionPolicy = z.output<typeof versionPolicy>;
export type DynamicBatchingConfig = z.output<typeof dynamicBatching>;

/** Dynamic batching for batching models whose config says nothing of it: no added delay. */
export const DEFAULT_DYNAMIC_BATCHING: DynamicBatchingConfig = dynamicBatching.parse({});
export type QueuePolicy = z.output<typeof queuePolicy>;
export type TensorConfig = z.output<typeof tensorConfig>;

/** Human-readable list of a zod error's issues, with paths: "max_batch_size: expected number". */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}

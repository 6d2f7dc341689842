import { describeIssues, modelConfigSchema, type ModelConfigFile } from '../config/model-config.js';
import { TesseraError } from '../core/errors.js';
import { parsePbtxt, PbtxtSyntaxError, type PbField, type PbMessage, type PbPosition, type PbValue } from './pbtxt.js';

/**
 * Triton `config.pbtxt` (a ModelConfig message in protobuf text format, see Triton's
 * common/protobuf/model_config.proto) to the object Tessera's config schema takes.
 * Fields Tessera honours are converted; fields it does not are listed in `ignored` so they can
 * be logged once; fields that are not in Triton's ModelConfig at all are errors, as in Triton.
 */

export interface TritonConversion {
  /** Input for `modelConfigSchema` (the shape of a Tessera config.yaml). */
  readonly config: Record<string, unknown>;
  /** One line per Triton setting Tessera does not honour: `"<field path>: <why>"`. */
  readonly ignored: string[];
}

export interface TritonConvertOptions {
  /** Prefixed to error messages, e.g. `resnet/config.pbtxt`. */
  readonly source?: string;
  /**
   * Mirror Triton's auto-complete of ONNX models (on unless tritonserver runs with
   * --disable-auto-complete-config): a config without a scheduler leaves `dynamic_batching`
   * unset, so a model that can batch batches dynamically with no delay, and `max_batch_size: 0`
   * lets Tessera decide from the model. Default false: without `dynamic_batching`, requests run
   * one at a time (`dynamic_batching: false`), as Triton's default scheduler does.
   */
  readonly autoComplete?: boolean;
}

/** Parameters the onnxruntime backend reads (src/backends/onnx/settings.ts). */
const TESSERA_ONNX_PARAMETERS = new Set([
  'intra_op_thread_count',
  'inter_op_thread_count',
  'graph_optimization_level',
  'execution_providers',
  'execution_mode',
  'enable_mem_arena',
  'allow_spinning',
  'compute_thread_nice',
]);

const DATA_TYPES = new Set([
  'TYPE_BOOL',
  'TYPE_UINT8',
  'TYPE_UINT16',
  'TYPE_UINT32',
  'TYPE_UINT64',
  'TYPE_INT8',
  'TYPE_INT16',
  'TYPE_INT32',
  'TYPE_INT64',
  'TYPE_FP16',
  'TYPE_FP32',
  'TYPE_FP64',
  'TYPE_STRING',
]);

/** Triton's onnxruntime backend: optimization.graph.level -> ORT level (onnxruntime.cc). */
function graphLevelName(level: number): string {
  if (level === -1) return 'basic';
  if (level === 1) return 'extended';
  if (level === 2) return 'disabled';
  return 'all';
}

/** Parse `config.pbtxt` text and convert it. Syntax and conversion errors are INVALID_MODEL_CONFIG. */
export function tritonConfigFromText(text: string, options: TritonConvertOptions = {}): TritonConversion {
  let message: PbMessage;
  try {
    message = parsePbtxt(text, options.source === undefined ? {} : { source: options.source });
  } catch (error) {
    if (error instanceof PbtxtSyntaxError) throw new TesseraError('INVALID_MODEL_CONFIG', error.message, { cause: error });
    throw error;
  }
  return convertTritonConfig(message, options);
}

/**
 * Parse, convert and validate a `config.pbtxt` against Tessera's schema. Returns the validated
 * config and the ignored settings; throws INVALID_MODEL_CONFIG with line:column on errors.
 */
export function readTritonConfig(text: string, options: TritonConvertOptions = {}): { config: ModelConfigFile; ignored: string[] } {
  const { config, ignored } = tritonConfigFromText(text, options);
  const parsed = modelConfigSchema.safeParse(config);
  if (!parsed.success) {
    const where = options.source === undefined ? 'config.pbtxt' : options.source;
    throw new TesseraError('INVALID_MODEL_CONFIG', `${where}: ${describeIssues(parsed.error)}`);
  }
  return { config: parsed.data, ignored };
}

/** Convert a parsed Triton ModelConfig message. Throws INVALID_MODEL_CONFIG with line:column. */
export function convertTritonConfig(message: PbMessage, options: TritonConvertOptions = {}): TritonConversion {
  return new Converter(options).modelConfig(message);
}

// ---------------------------------------------------------------------------

/** The fields of one message, consumed by name; what is left over is unknown. */
class Fields {
  private readonly byName = new Map<string, PbField[]>();

  constructor(
    private readonly converter: Converter,
    source: PbMessage,
    public path: string,
    readonly type: string,
    known: readonly string[],
  ) {
    const knownSet = new Set(known);
    for (const field of source.fields) {
      if (!knownSet.has(field.name)) {
        throw converter.error(field.pos, `${this.at(field.name)}: no field '${field.name}' in Triton's ${type}`);
      }
      const list = this.byName.get(field.name);
      if (list === undefined) this.byName.set(field.name, [field]);
      else list.push(field);
    }
  }

  at(name: string): string {
    return this.path === '' ? name : `${this.path}.${name}`;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  all(name: string): PbField[] {
    return this.byName.get(name) ?? [];
  }

  /** A singular field's value; an error when given twice. */
  one(name: string): PbValue | undefined {
    const list = this.byName.get(name);
    if (list === undefined) return undefined;
    const [first, second] = list;
    if (second !== undefined) {
      throw this.converter.error(second.pos, `${this.at(name)}: non-repeated field given more than once (first at ${first!.pos.line}:${first!.pos.column})`);
    }
    return first!.value;
  }

  string(name: string): string | undefined {
    const value = this.one(name);
    if (value === undefined) return undefined;
    if (value.kind !== 'string') throw this.converter.error(value.pos, `${this.at(name)}: expected a string, got ${kindOf(value)}`);
    return value.value;
  }

  /** An integer in [min, max]; also accepts `-1`. */
  integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const value = this.one(name);
    return value === undefined ? undefined : this.converter.integer(value, this.at(name), min, max);
  }

  integers(name: string, min: number): number[] {
    return this.all(name).map((field) => this.converter.integer(field.value, this.at(name), min, Number.MAX_SAFE_INTEGER));
  }

  boolean(name: string): boolean | undefined {
    const value = this.one(name);
    if (value === undefined) return undefined;
    if (value.kind === 'identifier') {
      if (['true', 'True', 't'].includes(value.value)) return true;
      if (['false', 'False', 'f'].includes(value.value)) return false;
    }
    if (value.kind === 'number' && value.integer && (value.value === 0 || value.value === 1)) return value.value === 1;
    throw this.converter.error(value.pos, `${this.at(name)}: expected true or false, got ${kindOf(value)}`);
  }

  enumValue(name: string, allowed: readonly string[]): string | undefined {
    const value = this.one(name);
    if (value === undefined) return undefined;
    if (value.kind === 'identifier' && allowed.includes(value.value)) return value.value;
    if (value.kind === 'number' && value.integer && value.value >= 0 && value.value < allowed.length) return allowed[value.value];
    throw this.converter.error(value.pos, `${this.at(name)}: expected one of ${allowed.join(', ')}, got ${kindOf(value)}`);
  }

  message(name: string): PbMessage | undefined {
    const value = this.one(name);
    if (value === undefined) return undefined;
    if (value.kind !== 'message') throw this.converter.error(value.pos, `${this.at(name)}: expected a message { ... }, got ${kindOf(value)}`);
    return value;
  }

  messages(name: string): PbMessage[] {
    return this.all(name).map((field) => {
      if (field.value.kind !== 'message') throw this.converter.error(field.value.pos, `${this.at(name)}: expected a message { ... }, got ${kindOf(field.value)}`);
      return field.value;
    });
  }
}

function kindOf(value: PbValue): string {
  switch (value.kind) {
    case 'string':
      return `string ${JSON.stringify(value.value)}`;
    case 'number':
      return `number ${value.text}`;
    case 'identifier':
      return `'${value.value}'`;
    case 'message':
      return 'a message';
  }
}

const MODEL_CONFIG_FIELDS = [
  'name',
  'platform',
  'backend',
  'runtime',
  'version_policy',
  'max_batch_size',
  'input',
  'output',
  'batch_input',
  'batch_output',
  'optimization',
  'dynamic_batching',
  'sequence_batching',
  'ensemble_scheduling',
  'instance_group',
  'default_model_filename',
  'cc_model_filenames',
  'metric_tags',
  'parameters',
  'model_warmup',
  'model_operations',
  'model_transaction_policy',
  'model_repository_agents',
  'response_cache',
  'model_metrics',
] as const;

/** ModelConfig fields Tessera does not implement at all, with why. */
const UNSUPPORTED_TOP_LEVEL: Readonly<Record<string, string>> = {
  runtime: 'Tessera has no backend libraries to choose',
  batch_input: 'ragged batching is not supported',
  batch_output: 'ragged batching is not supported',
  sequence_batching: 'sequence batching is not supported; requests run one at a time',
  ensemble_scheduling: 'ensembles are not supported',
  cc_model_filenames: 'CUDA compute capabilities do not apply on the CPU',
  metric_tags: 'not supported',
  model_operations: 'custom operator libraries are not loaded',
  model_repository_agents: 'repository agents are not supported',
  model_metrics: 'metric overrides are not supported',
};

class Converter {
  readonly ignored: string[] = [];

  constructor(private readonly options: TritonConvertOptions) {}

  error(pos: PbPosition, reason: string): TesseraError {
    const prefix = this.options.source === undefined ? '' : `${this.options.source}:`;
    return new TesseraError('INVALID_MODEL_CONFIG', `${prefix}${pos.line}:${pos.column}: ${reason}`);
  }

  ignore(path: string, why: string): void {
    this.ignored.push(`${path}: ${why}`);
  }

  integer(value: PbValue, path: string, min: number, max: number): number {
    if (value.kind !== 'number' || !value.integer) throw this.error(value.pos, `${path}: expected an integer, got ${kindOf(value)}`);
    if (!Number.isSafeInteger(value.value) || value.value < min || value.value > max) {
      throw this.error(value.pos, `${path}: ${value.text} is out of range (${min} to ${max === Number.MAX_SAFE_INTEGER ? '2^53' : max})`);
    }
    return value.value;
  }

  modelConfig(message: PbMessage): TritonConversion {
    const f = new Fields(this, message, '', 'ModelConfig', MODEL_CONFIG_FIELDS);
    const config: Record<string, unknown> = {};

    const name = f.string('name');
    if (name !== undefined && name !== '') config['name'] = name;
    this.platformAndBackend(f, config);

    const maxBatchSize = f.integer('max_batch_size', 0, 2 ** 31 - 1);
    // Triton's onnxruntime backend completes a config only when it lists no inputs or no
    // outputs: one that lists both is taken as written (max_batch_size 0 means no batching).
    const autoComplete = this.options.autoComplete === true && !(f.messages('input').length > 0 && f.messages('output').length > 0);
    if (maxBatchSize !== undefined && !(autoComplete && maxBatchSize === 0)) config['max_batch_size'] = maxBatchSize;

    const labelFiles: { file: string; path: string }[] = [];
    config['input'] = f.messages('input').map((m, i) => this.tensor(m, `input[${i}]`, 'ModelInput', labelFiles));
    config['output'] = f.messages('output').map((m, i) => this.tensor(m, `output[${i}]`, 'ModelOutput', labelFiles));
    const [label, ...otherLabels] = labelFiles;
    if (label !== undefined) config['label_filename'] = label.file;
    for (const other of otherLabels) {
      if (other.file !== label!.file) this.ignore(`${other.path}.label_filename`, `Tessera has one label file per model; using '${label!.file}'`);
    }

    const versionPolicy = f.message('version_policy');
    if (versionPolicy !== undefined) config['version_policy'] = this.versionPolicy(versionPolicy);

    const groups = f.messages('instance_group').map((m, i) => this.instanceGroup(m, `instance_group[${i}]`));
    if (groups.length > 0) config['instance_group'] = groups;

    const dynamicBatching = f.message('dynamic_batching');
    if (dynamicBatching !== undefined) {
      config['dynamic_batching'] = this.dynamicBatching(dynamicBatching);
    } else if (f.has('sequence_batching') || f.has('ensemble_scheduling') || !autoComplete) {
      // Triton's default scheduler runs each request on its own.
      config['dynamic_batching'] = false;
    }

    const parameters = this.parameters(f);
    const optimization = f.message('optimization');
    if (optimization !== undefined) this.optimization(optimization, parameters);
    if (Object.keys(parameters).length > 0) config['parameters'] = parameters;

    const defaultModelFilename = f.string('default_model_filename');
    if (defaultModelFilename !== undefined && defaultModelFilename !== '') config['default_model_filename'] = defaultModelFilename;

    const warmups = f.messages('model_warmup');
    if (warmups.length > 0) config['warmup'] = this.warmup(warmups);

    const transaction = f.message('model_transaction_policy');
    if (transaction !== undefined) {
      const t = new Fields(this, transaction, 'model_transaction_policy', 'ModelTransactionPolicy', ['decoupled']);
      if (t.boolean('decoupled') === true) this.ignore('model_transaction_policy.decoupled', 'decoupled models are not supported; one response per request');
    }
    const cache = f.message('response_cache');
    if (cache !== undefined) {
      const c = new Fields(this, cache, 'response_cache', 'ModelResponseCache', ['enable']);
      if (c.boolean('enable') === true) this.ignore('response_cache.enable', 'Tessera has no response cache');
    }
    for (const [field, why] of Object.entries(UNSUPPORTED_TOP_LEVEL)) {
      if (f.has(field)) this.ignore(field, why);
    }
    return { config, ignored: this.ignored };
  }

  private platformAndBackend(f: Fields, config: Record<string, unknown>): void {
    const platform = f.string('platform');
    const backend = f.string('backend');
    if (platform !== undefined && platform !== '') {
      if (platform === 'onnxruntime_onnx' || platform === 'fake') config['platform'] = platform;
      else this.ignore('platform', `'${platform}' is not supported; Tessera serves ONNX models with onnxruntime`);
    }
    if (backend !== undefined && backend !== '') {
      if (backend === 'onnxruntime' || backend === 'fake') config['backend'] = backend;
      else this.ignore('backend', `'${backend}' is not supported; Tessera serves ONNX models with onnxruntime`);
    }
  }

  private tensor(message: PbMessage, path: string, type: 'ModelInput' | 'ModelOutput', labelFiles: { file: string; path: string }[]): Record<string, unknown> {
    const known =
      type === 'ModelInput'
        ? ['name', 'data_type', 'format', 'dims', 'reshape', 'is_shape_tensor', 'allow_ragged_batch', 'optional', 'is_non_linear_format_io']
        : ['name', 'data_type', 'dims', 'reshape', 'label_filename', 'is_shape_tensor', 'is_non_linear_format_io'];
    const f = new Fields(this, message, path, type, known);
    const out: Record<string, unknown> = {};
    const name = f.string('name');
    if (name === undefined || name === '') throw this.error(message.pos, `${path}: 'name' is required`);
    out['name'] = name;
    const where = `${path} '${name}'`;
    f.path = where;
    const dataType = f.one('data_type');
    if (dataType !== undefined) {
      if (dataType.kind !== 'identifier' || !DATA_TYPES.has(dataType.value)) {
        const supported = dataType.kind === 'identifier' && (dataType.value === 'TYPE_BF16' || dataType.value === 'TYPE_INVALID');
        throw this.error(
          dataType.pos,
          supported
            ? `${where}.data_type: ${dataType.value} is not supported by Tessera`
            : `${where}.data_type: expected a TYPE_* data type, got ${kindOf(dataType)}`,
        );
      }
      out['data_type'] = dataType.value;
    }
    const dims = f.has('dims') ? f.integers('dims', -1) : undefined;
    if (f.has('reshape')) {
      // Tessera cannot reshape, and dims written next to a reshape never fit the model itself:
      // serve the model's own shape instead.
      const shown = dims === undefined ? '' : ` [${dims.join(',')}]`;
      this.ignore(`${where}.reshape`, `reshape is not applied; dims${shown} dropped, the model's own shape is served`);
    } else if (dims !== undefined) {
      out['dims'] = dims;
    }
    if (type === 'ModelInput') {
      const format = f.enumValue('format', ['FORMAT_NONE', 'FORMAT_NHWC', 'FORMAT_NCHW']);
      if (format !== undefined && format !== 'FORMAT_NONE') this.ignore(`${where}.format`, `${format} is informational only (the image handler has its own 'layout' option)`);
      if (f.boolean('allow_ragged_batch') === true) this.ignore(`${where}.allow_ragged_batch`, 'ragged batching is not supported');
      if (f.boolean('optional') === true) this.ignore(`${where}.optional`, 'optional inputs are not supported; every input is required');
    } else {
      const labels = f.string('label_filename');
      if (labels !== undefined && labels !== '') labelFiles.push({ file: labels, path: where });
    }
    if (f.boolean('is_shape_tensor') === true) this.ignore(`${where}.is_shape_tensor`, 'shape tensors are a TensorRT feature');
    if (f.boolean('is_non_linear_format_io') === true) this.ignore(`${where}.is_non_linear_format_io`, 'a TensorRT feature');
    return out;
  }

  private versionPolicy(message: PbMessage): Record<string, unknown> {
    const f = new Fields(this, message, 'version_policy', 'ModelVersionPolicy', ['latest', 'all', 'specific']);
    const chosen = ['latest', 'all', 'specific'].filter((name) => f.has(name));
    if (chosen.length > 1) throw this.error(message.pos, `version_policy: choose one of latest, all, specific (got ${chosen.join(' and ')})`);
    const latest = f.message('latest');
    if (latest !== undefined) {
      const l = new Fields(this, latest, 'version_policy.latest', 'ModelVersionPolicy.Latest', ['num_versions']);
      const n = l.integer('num_versions', 0, 2 ** 32 - 1) ?? 0;
      return { latest: { num_versions: n === 0 ? 1 : n } }; // proto3 default 0 means Triton's default of 1
    }
    const all = f.message('all');
    if (all !== undefined) {
      new Fields(this, all, 'version_policy.all', 'ModelVersionPolicy.All', []);
      return { all: {} };
    }
    const specific = f.message('specific');
    if (specific !== undefined) {
      const s = new Fields(this, specific, 'version_policy.specific', 'ModelVersionPolicy.Specific', ['versions']);
      const versions = s.integers('versions', 0);
      if (versions.length === 0) throw this.error(specific.pos, 'version_policy.specific: list at least one version');
      return { specific: { versions } };
    }
    return { latest: { num_versions: 1 } }; // an empty policy is Triton's default
  }

  private instanceGroup(message: PbMessage, path: string): Record<string, unknown> {
    const f = new Fields(this, message, path, 'ModelInstanceGroup', [
      'name',
      'kind',
      'count',
      'rate_limiter',
      'gpus',
      'secondary_devices',
      'profile',
      'passive',
      'host_policy',
    ]);
    const out: Record<string, unknown> = {};
    const name = f.string('name');
    if (name !== undefined && name !== '') out['name'] = name;
    const count = f.integer('count', 0, 2 ** 31 - 1);
    if (count !== undefined && count > 0) out['count'] = count;
    const kind = f.enumValue('kind', ['KIND_AUTO', 'KIND_GPU', 'KIND_CPU', 'KIND_MODEL']);
    if (kind === 'KIND_GPU' || kind === 'KIND_MODEL') {
      this.ignore(`${path}.kind`, `${kind} runs on the CPU in Tessera${kind === 'KIND_GPU' ? ` (count ${count ?? 1} per GPU becomes ${count ?? 1} CPU instance(s))` : ''}`);
      out['kind'] = 'KIND_CPU';
    } else if (kind !== undefined) {
      out['kind'] = kind;
    }
    if (f.has('gpus')) this.ignore(`${path}.gpus`, 'no GPUs are used');
    if (f.has('rate_limiter')) this.ignore(`${path}.rate_limiter`, 'the rate limiter is not supported');
    if (f.has('secondary_devices')) this.ignore(`${path}.secondary_devices`, 'not supported');
    if (f.has('profile')) this.ignore(`${path}.profile`, 'a TensorRT feature');
    if (f.boolean('passive') === true) this.ignore(`${path}.passive`, 'passive instances are not supported; the group serves requests');
    if (f.has('host_policy')) this.ignore(`${path}.host_policy`, 'host policies are not supported');
    return out;
  }

  private dynamicBatching(message: PbMessage): Record<string, unknown> {
    const f = new Fields(this, message, 'dynamic_batching', 'ModelDynamicBatching', [
      'preferred_batch_size',
      'max_queue_delay_microseconds',
      'preserve_ordering',
      'priority_levels',
      'default_priority_level',
      'default_queue_policy',
      'priority_queue_policy',
    ]);
    const out: Record<string, unknown> = {};
    const preferred = f.integers('preferred_batch_size', 1);
    if (preferred.length > 0) out['preferred_batch_size'] = preferred;
    const delay = f.integer('max_queue_delay_microseconds', 0);
    if (delay !== undefined) out['max_queue_delay_microseconds'] = delay;
    const ordering = f.boolean('preserve_ordering');
    if (ordering !== undefined) out['preserve_ordering'] = ordering;
    const levels = f.integer('priority_levels', 0);
    if (levels !== undefined) out['priority_levels'] = levels;
    const defaultLevel = f.integer('default_priority_level', 0);
    if (defaultLevel !== undefined) out['default_priority_level'] = defaultLevel;
    const policy = f.message('default_queue_policy');
    if (policy !== undefined) out['default_queue_policy'] = this.queuePolicy(policy, 'dynamic_batching.default_queue_policy');
    if (f.has('priority_queue_policy')) {
      this.ignore('dynamic_batching.priority_queue_policy', 'per-level queue policies are not supported; default_queue_policy applies to every level');
    }
    return out;
  }

  private queuePolicy(message: PbMessage, path: string): Record<string, unknown> {
    const f = new Fields(this, message, path, 'ModelQueuePolicy', [
      'timeout_action',
      'default_timeout_microseconds',
      'allow_timeout_override',
      'max_queue_size',
    ]);
    const out: Record<string, unknown> = {};
    const action = f.enumValue('timeout_action', ['REJECT', 'DELAY']);
    if (action === 'DELAY') this.ignore(`${path}.timeout_action`, 'DELAY is not supported; timed-out requests are rejected');
    const timeout = f.integer('default_timeout_microseconds', 0);
    if (timeout !== undefined) out['default_timeout_microseconds'] = timeout;
    // Triton's default is false (proto3); Tessera's schema defaults to true, so always write it.
    out['allow_timeout_override'] = f.boolean('allow_timeout_override') ?? false;
    const size = f.integer('max_queue_size', 0, 2 ** 32 - 1);
    if (size !== undefined) out['max_queue_size'] = size;
    return out;
  }

  /** `parameters { key: "k" value { string_value: "v" } }` (a protobuf map) -> `{ k: "v" }`. */
  private parameters(f: Fields): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [i, entry] of f.messages('parameters').entries()) {
      const path = `parameters[${i}]`;
      const e = new Fields(this, entry, path, 'parameters entry', ['key', 'value']);
      const key = e.string('key');
      if (key === undefined || key === '') throw this.error(entry.pos, `${path}: 'key' is required`);
      const value = e.message('value');
      let stringValue = '';
      if (value !== undefined) {
        const v = new Fields(this, value, `parameters.${key}`, 'ModelParameter', ['string_value']);
        stringValue = v.string('string_value') ?? '';
      }
      out[key] = stringValue; // map semantics: the last entry for a key wins
    }
    // Triton's onnxruntime backend writes execution_mode as 0 / 1.
    if (out['execution_mode'] === '0') out['execution_mode'] = 'sequential';
    else if (out['execution_mode'] === '1') out['execution_mode'] = 'parallel';
    for (const key of Object.keys(out)) {
      if (!TESSERA_ONNX_PARAMETERS.has(key)) this.ignore(`parameters.${key}`, "not a setting of Tessera's onnxruntime backend (kept in parameters)");
    }
    return out;
  }

  private optimization(message: PbMessage, parameters: Record<string, string>): void {
    const f = new Fields(this, message, 'optimization', 'ModelOptimizationPolicy', [
      'graph',
      'priority',
      'cuda',
      'execution_accelerators',
      'input_pinned_memory',
      'output_pinned_memory',
      'gather_kernel_buffer_threshold',
      'eager_batching',
    ]);
    const graph = f.message('graph');
    if (graph !== undefined) {
      const g = new Fields(this, graph, 'optimization.graph', 'ModelOptimizationPolicy.Graph', ['level']);
      const level = g.integer('level', -(2 ** 31), 2 ** 31 - 1) ?? 0;
      if (parameters['graph_optimization_level'] === undefined) parameters['graph_optimization_level'] = graphLevelName(level);
      else this.ignore('optimization.graph.level', 'parameters.graph_optimization_level takes precedence');
    }
    for (const field of ['priority', 'cuda', 'execution_accelerators', 'input_pinned_memory', 'output_pinned_memory', 'gather_kernel_buffer_threshold', 'eager_batching']) {
      if (f.has(field)) this.ignore(`optimization.${field}`, 'GPU and accelerator settings do not apply on the CPU');
    }
  }

  private warmup(samples: PbMessage[]): Record<string, unknown> {
    const batchSizes = new Set<number>();
    const dims: Record<string, number[]> = {};
    let iterations = 1;
    samples.forEach((sample, i) => {
      const path = `model_warmup[${i}]`;
      const f = new Fields(this, sample, path, 'ModelWarmup', ['name', 'batch_size', 'inputs', 'count']);
      f.string('name');
      batchSizes.add(Math.max(1, f.integer('batch_size', 0, 2 ** 32 - 1) ?? 1));
      iterations = Math.max(iterations, f.integer('count', 0, 2 ** 32 - 1) ?? 1);
      for (const input of f.messages('inputs')) {
        const entry = new Fields(this, input, `${path}.inputs`, 'inputs entry', ['key', 'value']);
        const key = entry.string('key') ?? '';
        const value = entry.message('value');
        if (value === undefined) continue;
        const v = new Fields(this, value, `${path}.inputs.${key}`, 'ModelWarmup.Input', ['data_type', 'dims', 'zero_data', 'random_data', 'input_data_file']);
        if (v.has('random_data') || v.has('input_data_file')) {
          this.ignore(`${path}.inputs.${key}`, 'warm-up always runs zero-filled inputs');
        }
        // The shape to warm up with (for dims the model leaves variable); the first sample's wins.
        const shape = v.integers('dims', 1);
        if (key !== '' && shape.length > 0 && dims[key] === undefined) dims[key] = shape;
      }
    });
    if (iterations > 100) {
      this.ignore('model_warmup.count', `${iterations} exceeds Tessera's limit; using 100 iterations`);
      iterations = 100;
    }
    return { enabled: true, batch_sizes: [...batchSizes].sort((a, b) => a - b), iterations, ...(Object.keys(dims).length > 0 ? { dims } : {}) };
  }
}

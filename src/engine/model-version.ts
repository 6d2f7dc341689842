import { join } from 'node:path';
import { DEFAULT_DYNAMIC_BATCHING, instanceCountOf, type DynamicBatchingConfig, type ModelConfigFile } from '../config/model-config.js';
import { TesseraError, toTesseraError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ServedVersion } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { VersionState } from '../core/metadata.js';
import type { Backend, BackendModel } from '../backends/backend.js';
import { resolveSignature, type ModelSignature } from '../repository/signature.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { VersionStatistics } from '../scheduler/stats.js';
import { warmUp, warmupBatchSizes } from './warmup.js';
import {
  createHandler,
  planImage,
  planTabular,
  resolveHandlerKind,
  validateHandlerOptions,
  type HandlerKind,
  type HandlerModelInfo,
  type ModelHandler,
} from '../backends/handlers/index.js';
import { channels, publish } from '../core/events.js';

/** Server-wide settings every version's scheduler starts from. */
export interface SchedulingDefaults {
  readonly defaultMaxBatchSize: number;
  readonly maxQueueSize: number;
  readonly retryAfterSeconds: number;
  readonly holdUntilQueued: number;
  /** Batches handed to an instance at once (Scheduler's batchesPerInstance); default 1. */
  readonly batchesPerInstance?: number;
}

/**
 * One version of one model, through its lifecycle: LOADING -> READY (or UNAVAILABLE with a
 * reason) -> UNLOADING -> gone. Owns its backend model and scheduler.
 */
export class ModelVersion {
  state: VersionState = 'LOADING';
  reason = '';
  /** Why the last attempt to reload this version failed while it kept serving, if it did. */
  reloadFailure = '';
  signature: ModelSignature | undefined;
  private servedFacts: ServedVersion | undefined;
  readonly stats = new VersionStatistics();
  /** The version's handler and what it knows of the model, when it has one. */
  handler: { readonly kind: HandlerKind; readonly handler: ModelHandler; readonly info: HandlerModelInfo } | undefined;
  private backendModel: BackendModel | undefined;
  private scheduler: Scheduler | undefined;
  private unloading: Promise<void> | undefined;

  constructor(
    readonly model: string,
    readonly version: string,
    readonly dir: string,
    readonly config: ModelConfigFile,
    readonly backend: Backend,
    /** Class labels (labels.txt). */
    readonly labels: readonly string[] | undefined,
    /** What the version was loaded from (see repository/fingerprint.ts). */
    readonly fingerprint = '',
  ) {}

  get label(): string {
    return `model '${this.model}' version ${this.version}`;
  }

  /** What answers of this version carry about it (set once it has loaded; one object for all of them). */
  get served(): ServedVersion {
    return (this.servedFacts ??= { batched: (this.signature?.maxBatchSize ?? 0) > 0, labels: this.labels });
  }

  get instanceCount(): number {
    return instanceCountOf(this.config);
  }

  /** Load, check the signature against the config, warm up, then start serving. Never throws. */
  async load(defaults: SchedulingDefaults, logger: Logger): Promise<void> {
    const started = performance.now();
    const modelPath = join(this.dir, this.version, this.config.default_model_filename ?? this.backend.defaultModelFilename);
    try {
      this.backendModel = await this.backend.load({
        name: this.model,
        version: this.version,
        modelPath,
        instanceCount: this.instanceCount,
        parameters: this.config.parameters,
      });
      const signature = resolveSignature(this.backendModel, this.config, defaults.defaultMaxBatchSize);
      const warmup = this.config.warmup;
      if (warmup?.enabled !== false) {
        const batchSizes = warmupBatchSizes(signature, warmup?.batch_sizes);
        await warmUp(this.backendModel, signature, { batchSizes, iterations: warmup?.iterations ?? 1, ...(warmup?.dims === undefined ? {} : { dims: warmup.dims }) }).catch(
          (error: unknown) => {
            const reason = toTesseraError(error).message;
            // A warm-up the config asked for must work. The default one guesses 1 for every dim
            // the model leaves variable, which some models cannot take (a 3x3 convolution over
            // 1x1 images): the model still serves, as it would without warm-up.
            if (warmup !== undefined) throw new TesseraError('MODEL_LOAD_FAILED', `warm-up failed: ${reason}`, { cause: error });
            logger.warn({ model: this.model, version: this.version, reason }, 'the default warm-up failed, so the version serves without it; give warmup.dims for the variable dims');
          },
        );
      }
      this.handler = await this.createHandler(signature);
      this.signature = signature;
      this.scheduler = this.createScheduler(signature, defaults);
      if (this.unloading !== undefined) return;
      this.state = 'READY';
      this.reason = '';
      logger.info({ model: this.model, version: this.version, ms: Math.round(performance.now() - started) }, 'model version ready');
      publish(channels.modelLoaded, () => ({ model: this.model, version: this.version, ok: true, durationSeconds: (performance.now() - started) / 1000, reason: '' }));
    } catch (error) {
      const failure = toTesseraError(error, 'MODEL_LOAD_FAILED');
      this.state = 'UNAVAILABLE';
      this.reason = failure.message;
      await this.backendModel?.close();
      this.backendModel = undefined;
      logger.error({ model: this.model, version: this.version, reason: failure.message }, 'model version failed to load');
      publish(channels.modelLoaded, () => ({
        model: this.model,
        version: this.version,
        ok: false,
        durationSeconds: (performance.now() - started) / 1000,
        reason: failure.message,
      }));
    }
  }

  /**
   * The configured handler (or the directory's handler module), checked against the model now
   * so a bad handler config fails the load rather than the first request.
   */
  private async createHandler(signature: ModelSignature): Promise<ModelVersion['handler']> {
    const kind = await resolveHandlerKind(this.config.handler, this.dir);
    if (kind === 'default' && this.config.handler === undefined) return undefined;
    validateHandlerOptions(kind, this.config.handler_options);
    const info: HandlerModelInfo = {
      name: this.model,
      version: this.version,
      inputs: signature.inputs,
      outputs: signature.outputs,
      maxBatchSize: signature.maxBatchSize,
      labels: this.labels,
      options: this.config.handler_options,
    };
    if (kind === 'image') planImage(info);
    if (kind === 'tabular') planTabular(info);
    return { kind, handler: await createHandler(kind, this.dir), info };
  }

  /** QUEUE_FULL when this version is READY and its queue is full; undefined otherwise. */
  queueFullRefusal(): TesseraError | undefined {
    return this.state === 'READY' ? this.scheduler?.fullQueueRefusal() : undefined;
  }

  /** Refuse inputs of one request that the backend cannot run (see BackendModel.checkInputs). */
  checkInputs(inputs: readonly Tensor[]): void {
    this.backendModel?.checkInputs?.(inputs);
  }

  /** The scheduler of a READY version; otherwise MODEL_UNAVAILABLE with the state and reason. */
  readyScheduler(): Scheduler {
    if (this.state !== 'READY' || this.scheduler === undefined) {
      const why = this.reason === '' ? '' : `: ${this.reason}`;
      throw new TesseraError('MODEL_UNAVAILABLE', `${this.label} is ${this.state}${why}`);
    }
    return this.scheduler;
  }

  /** The dynamic batching in effect: the config's, the default, or undefined when off. */
  get dynamicBatching(): DynamicBatchingConfig | undefined {
    const configured = this.config.dynamic_batching;
    if (configured === false || (this.signature !== undefined && this.signature.maxBatchSize === 0)) return undefined;
    return configured ?? DEFAULT_DYNAMIC_BATCHING;
  }

  get queueDepth(): number {
    return this.scheduler?.queueDepth ?? 0;
  }

  get inFlight(): number {
    return this.scheduler?.inFlight ?? 0;
  }

  /**
   * Stop serving: queued and running requests finish (up to `graceMs`; then the queued ones are
   * refused and the backend model is released under the running ones, which fail), then the
   * backend model is released. Bounded by the grace (and the backend's own close), not by the
   * slowest batch: a hung inference cannot hold an unload, a reload or shutdown. Idempotent.
   */
  unload(graceMs: number, replaced = false): Promise<void> {
    this.unloading ??= (async () => {
      if (this.state === 'READY') this.state = 'UNLOADING';
      const scheduler = this.scheduler;
      if (scheduler !== undefined) {
        let timer: NodeJS.Timeout | undefined;
        const drained = scheduler.close().then(() => true);
        const late = new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), graceMs);
        });
        const inTime = await Promise.race([drained, late]);
        clearTimeout(timer);
        if (!inTime) {
          const refused = scheduler.destroy();
          // Batches still running fail as their instances close.
          await this.backendModel?.close();
          await refused;
        }
      }
      await this.backendModel?.close();
      this.backendModel = undefined;
      this.state = 'UNAVAILABLE';
      this.reason = 'unloaded';
      publish(channels.modelUnloaded, () => ({ model: this.model, version: this.version, replaced }));
    })();
    return this.unloading;
  }

  private createScheduler(signature: ModelSignature, defaults: SchedulingDefaults): Scheduler {
    const batching = this.dynamicBatching;
    const queuePolicy = batching?.default_queue_policy ?? this.config.queue_policy;
    const levels = Math.max(1, batching?.priority_levels ?? 0);
    return new Scheduler({
      label: this.label,
      modelName: this.model,
      version: this.version,
      instances: this.backendModel!.instances,
      inputNames: signature.inputs.map((spec) => spec.name),
      policy: {
        // With dynamic batching off, a batching model runs each request alone, as Triton does.
        maxBatchSize: batching === undefined ? 0 : signature.maxBatchSize,
        preferredBatchSizes: batching?.preferred_batch_size ?? [],
        maxQueueDelayMs: (batching?.max_queue_delay_microseconds ?? 0) / 1000,
      },
      maxQueueSize: queuePolicy?.max_queue_size || defaults.maxQueueSize,
      priorityLevels: levels,
      defaultPriority: batching?.default_priority_level || levels,
      defaultTimeoutMs: (queuePolicy?.default_timeout_microseconds ?? 0) / 1000,
      allowTimeoutOverride: queuePolicy?.allow_timeout_override ?? true,
      retryAfterSeconds: defaults.retryAfterSeconds,
      holdUntilQueued: defaults.holdUntilQueued,
      ...(defaults.batchesPerInstance === undefined ? {} : { batchesPerInstance: defaults.batchesPerInstance }),
      preserveOrdering: batching?.preserve_ordering === true,
      stats: this.stats,
    });
  }
}

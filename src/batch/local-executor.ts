import { join } from 'node:path';
import { FakeBackend } from '../backends/fake/backend.js';
import { OnnxBackend } from '../backends/onnx/backend.js';
import { SERVER_DEFAULTS } from '../config/server-config.js';
import { TesseraError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { Engine } from '../engine/engine.js';
import { discoverModel } from '../repository/discovery.js';
import type { Executor, ModelInfo } from './executor.js';

/** Batches an instance holds at once: the one it runs and the next. */
export const BATCHES_PER_INSTANCE = 2;

export interface LocalExecutorOptions {
  readonly repository: string;
  readonly model: string;
  readonly version: string | undefined;
  /** Rows per request: the batch limit the model is loaded with. */
  readonly batchSize: number;
  /** Model instances (worker threads); undefined: the model config's, else the engine's default (2, at most the cores). */
  readonly instances: number | undefined;
  /** onnxruntime intra-op threads per instance; undefined: the model config's (default: cores / instances). */
  readonly intraOpThreads: number | undefined;
  /** Load without warm-up (dry runs run nothing). */
  readonly warmup: boolean;
}

/**
 * In-process scoring: the same Engine, scheduler and ONNX backend as the server, with the model
 * loaded for batch work: its batch limit raised to the job's batch size (so a request of
 * `batchSize` rows is one backend run) and warmed up at that size only.
 */
export class LocalExecutor implements Executor {
  retried = 0;

  private constructor(
    private readonly engine: Engine,
    readonly model: ModelInfo,
    readonly description: string,
    /** Model instances running: two requests in flight per instance keep each busy. */
    readonly instances: number,
  ) {}

  static async start(options: LocalExecutorOptions): Promise<LocalExecutor> {
    const engine = await Engine.start({
      repository: options.repository,
      backends: [new OnnxBackend(), new FakeBackend()],
      scheduling: {
        defaultMaxBatchSize: options.batchSize,
        maxQueueSize: SERVER_DEFAULTS.maxQueueSize,
        retryAfterSeconds: 1,
        holdUntilQueued: 0,
        // Each instance gets its next batch while it runs one, so it never waits for the job's
        // thread to hand it over.
        batchesPerInstance: BATCHES_PER_INSTANCE,
      },
      strictReadiness: false,
      drainGraceMs: SERVER_DEFAULTS.shutdownGraceMs,
      controlMode: 'explicit',
      initialModels: [],
    });
    try {
      const known = engine.repositoryIndex().map((entry) => entry.name);
      if (!known.includes(options.model)) {
        throw new TesseraError(
          'MODEL_NOT_FOUND',
          `model '${options.model}' is not in the repository ${options.repository}; its models are: ${[...new Set(known)].join(', ') || 'none'}`,
        );
      }
      const discovered = await discoverModel(options.model, join(options.repository, options.model));
      if (discovered.config === undefined) {
        throw new TesseraError('INVALID_MODEL_CONFIG', `model '${options.model}': ${discovered.problem ?? 'its config cannot be read'}`);
      }
      const config = discovered.config;
      const threads = options.intraOpThreads;
      // Without --instances, the config's instance_group or the engine's default of two: while
      // the job's thread is busy reading or writing, each has a batch of its own to work
      // through, on half the cores (threads: cores / instances).
      const instances = options.instances;
      const override: Record<string, unknown> = {
        ...config,
        ...(threads === undefined ? {} : { parameters: { ...config.parameters, intra_op_thread_count: threads } }),
        warmup: options.warmup ? { enabled: true, batch_sizes: [options.batchSize], iterations: 1 } : { enabled: false },
        ...(config.max_batch_size !== undefined && config.max_batch_size > 0 ? { max_batch_size: options.batchSize } : {}),
        ...(instances === undefined ? {} : { instance_group: [{ count: instances, kind: 'KIND_CPU' }] }),
      };
      await engine.loadModel(options.model, { config: override });
      const metadata = engine.modelMetadata(options.model, options.version);
      const view = engine.modelConfig(options.model, options.version);
      const version = options.version ?? metadata.versions[metadata.versions.length - 1];
      const model: ModelInfo = {
        label: `model '${options.model}'${version === undefined ? '' : ` version ${version}`}`,
        name: options.model,
        version: options.version,
        inputs: metadata.inputs,
        outputs: metadata.outputs,
        maxBatchSize: view.max_batch_size,
        labels: engine.modelLabels(options.model),
      };
      const running = view.instance_group.reduce((sum, group) => sum + group.count, 0);
      const threadCount = view.parameters['intra_op_thread_count']?.string_value;
      const description =
        `in-process: ${join(options.repository, options.model)}${version === undefined ? '' : ` version ${version}`} ` +
        `(${view.backend}, ${running} instance${running === 1 ? '' : 's'}${threadCount === undefined ? '' : ` x ${threadCount} thread${threadCount === '1' ? '' : 's'}`})`;
      return new LocalExecutor(engine, model, description, running);
    } catch (error) {
      await engine.close();
      throw error;
    }
  }

  async infer(inputs: readonly Tensor[], outputs: readonly string[]): Promise<Tensor[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.engine.infer({
          model: this.model.name,
          ...(this.model.version === undefined ? {} : { version: this.model.version }),
          inputs,
          outputs: outputs.map((name) => ({ name })),
          protocol: 'batch',
        });
        return [...response.outputs];
      } catch (error) {
        // The job bounds its requests in flight, so a full queue only happens when the model's
        // config sets a tiny max_queue_size: wait and retry.
        if (error instanceof TesseraError && error.code === 'QUEUE_FULL' && attempt < 100) {
          this.retried++;
          await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 10 * 2 ** Math.min(attempt, 7))));
          continue;
        }
        throw error;
      }
    }
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}

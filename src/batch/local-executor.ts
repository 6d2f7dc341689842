import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FakeBackend } from '../backends/fake/backend.js';
import { findHandlerFile } from '../backends/handlers/custom.js';
import { OnnxBackend } from '../backends/onnx/backend.js';
import { SERVER_DEFAULTS } from '../config/server-config.js';
import { TesseraError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { Engine } from '../engine/engine.js';
import { discoverModel } from '../repository/discovery.js';
import { versionFingerprint } from '../repository/fingerprint.js';
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
      // Every request names the version served now, which the checkpoint records: a job never
      // drifts to another version mid-way, whatever the engine loads.
      const version = options.version ?? engine.servingVersions(options.model)?.defaultVersion;
      const metadata = engine.modelMetadata(options.model, version);
      const view = engine.modelConfig(options.model, version);
      const labels = engine.modelLabels(options.model);
      const directory = engine.describeModels(options.model)[0]?.directory ?? discovered.dir;
      const files =
        version === undefined ? null : await modelFilesFingerprint(directory, version, view.default_model_filename, [config, labels ?? null]);
      const model: ModelInfo = {
        label: `model '${options.model}'${version === undefined ? '' : ` version ${version}`}`,
        name: options.model,
        version,
        inputs: metadata.inputs,
        outputs: metadata.outputs,
        maxBatchSize: view.max_batch_size,
        labels,
        identity: { version: version ?? null, versions: null, files },
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

/**
 * A fingerprint of model version `version` in `directory`: the engine's own (the model file's
 * size, modification time and inode, which a replaced file changes), with a key that hashes
 * `settings` (the config file's content and the labels), the handler module and the version
 * directory's other files (external weights), so that a resumed job sees any of them change.
 */
async function modelFilesFingerprint(directory: string, version: string, filename: string, settings: unknown): Promise<string> {
  const handler = await findHandlerFile(directory);
  const stamps: string[] = [handler === undefined ? 'no handler' : `handler ${await statStamp(handler)}`];
  const versionDir = join(directory, version);
  const names = await readdir(versionDir, { recursive: true }).catch(() => [] as string[]);
  for (const name of names.sort()) {
    if (name === filename) continue;
    const stamp = await statStamp(join(versionDir, name), true);
    if (stamp !== undefined) stamps.push(`${name} ${stamp}`);
  }
  const key = createHash('sha256').update(JSON.stringify([settings, stamps])).digest('hex').slice(0, 16);
  return versionFingerprint(directory, version, filename, key);
}

/** Size, modification time and inode of a file (undefined for a directory when `filesOnly`). */
async function statStamp(file: string, filesOnly = false): Promise<string | undefined> {
  const info = await stat(file).catch(() => undefined);
  if (info === undefined) return 'missing';
  if (filesOnly && !info.isFile()) return undefined;
  return `${info.size}:${info.mtimeMs}:${info.ino}`;
}

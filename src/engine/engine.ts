import { TesseraError } from '../core/errors.js';
import type { InferenceRequest, InferenceResponse } from '../core/inference.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { ModelMetadata, RepositoryIndexEntry } from '../core/metadata.js';
import type { Backend } from '../backends/backend.js';
import { discoverRepository, type DiscoveredModel } from '../repository/discovery.js';
import { selectVersions } from '../repository/version-policy.js';
import type { VersionStatisticsSnapshot } from '../scheduler/stats.js';
import { configView, type ModelConfigView } from './config-view.js';
import { ModelVersion, type SchedulingDefaults } from './model-version.js';
import { validateRequest } from './validate.js';

export interface EngineOptions {
  /** Path of the model repository. */
  readonly repository: string;
  /** Backends by the name configs select them with; the first is the default. */
  readonly backends: readonly Backend[];
  readonly scheduling: SchedulingDefaults;
  /** Ready only when every model version is ready (Triton's --strict-readiness). */
  readonly strictReadiness: boolean;
  /** How long close() lets queued and running requests finish. */
  readonly drainGraceMs: number;
  readonly logger?: Logger;
}

/** One model of the repository, its versions keyed by version string. */
interface ModelRecord {
  readonly discovered: DiscoveredModel;
  readonly versions: Map<string, ModelVersion>;
}

export interface ModelStatisticsEntry extends VersionStatisticsSnapshot {
  readonly name: string;
  readonly version: string;
}

/** How many models load at once: loads are CPU-heavy (parsing, warm-up). */
const LOAD_CONCURRENCY = 2;

/**
 * The engine: the one facade every protocol calls. It knows nothing of wire formats; it
 * resolves model versions, validates requests against the model and hands them to the
 * version's scheduler.
 */
export class Engine {
  private readonly models = new Map<string, ModelRecord>();
  private readonly logger: Logger;
  private started = false;
  private closing: Promise<void> | undefined;

  private constructor(private readonly options: EngineOptions) {
    this.logger = options.logger ?? silentLogger;
  }

  /** Discover the repository and load every model version its policies select. */
  static async start(options: EngineOptions): Promise<Engine> {
    const engine = new Engine(options);
    await engine.loadRepository();
    engine.started = true;
    return engine;
  }

  /** The process is up and answering. */
  isLive(): boolean {
    return true;
  }

  /** Ready for inference: started, not shutting down, and (when strict) every model version ready. */
  isReady(): boolean {
    if (!this.started || this.closing !== undefined) return false;
    if (!this.options.strictReadiness) return true;
    for (const record of this.models.values()) {
      if (record.discovered.problem !== undefined) return false;
      for (const version of record.versions.values()) if (version.state !== 'READY') return false;
    }
    return true;
  }

  modelReady(name: string, version?: string): boolean {
    const record = this.record(name);
    if (version !== undefined) return this.versionOf(record, version).state === 'READY';
    return [...record.versions.values()].some((v) => v.state === 'READY');
  }

  modelMetadata(name: string, version?: string): ModelMetadata {
    const record = this.record(name);
    const served = this.resolve(record, version);
    const signature = served.signature!;
    return {
      name,
      versions: [...record.versions.values()].filter((v) => v.state === 'READY').map((v) => v.version),
      platform: served.backend.name === 'onnxruntime' ? 'onnxruntime_onnx' : served.backend.name,
      inputs: signature.inputs,
      outputs: signature.outputs,
    };
  }

  modelConfig(name: string, version?: string): ModelConfigView {
    const served = this.resolve(this.record(name), version);
    return configView(
      name,
      served.config,
      served.signature!,
      served.backend.name,
      served.backend.defaultModelFilename,
      served.instanceCount,
      served.dynamicBatching,
    );
  }

  /** Class labels of a model (labels.txt), if it has them. */
  modelLabels(name: string): readonly string[] | undefined {
    return this.record(name).discovered.labels;
  }

  /** Every model and version the repository holds, with state and reason. */
  repositoryIndex(): RepositoryIndexEntry[] {
    const entries: RepositoryIndexEntry[] = [];
    for (const [name, record] of this.models) {
      if (record.discovered.problem !== undefined) {
        entries.push({ name, state: 'UNAVAILABLE', reason: record.discovered.problem });
        continue;
      }
      for (const version of record.versions.values()) {
        entries.push({ name, version: version.version, state: version.state, reason: version.reason });
      }
    }
    return entries;
  }

  /** Statistics of every version of `name` (or of all models), in the V2 statistics shape. */
  statistics(name?: string, version?: string): ModelStatisticsEntry[] {
    const records = name === undefined ? [...this.models.entries()] : [[name, this.record(name)] as const];
    const entries: ModelStatisticsEntry[] = [];
    for (const [modelName, record] of records) {
      const versions = version === undefined ? [...record.versions.values()] : [this.versionOf(record, version)];
      for (const v of versions) entries.push({ name: modelName, version: v.version, ...v.stats.snapshot() });
    }
    return entries;
  }

  /** Run one inference request. Throws TesseraError with a code for every failure. */
  async infer(request: InferenceRequest): Promise<InferenceResponse> {
    if (this.closing !== undefined) throw new TesseraError('SHUTTING_DOWN', 'the server is shutting down and takes no new requests');
    const served = this.resolve(this.record(request.model), request.version);
    const scheduler = served.readyScheduler();
    const started = process.hrtime.bigint();
    let validated;
    try {
      validated = validateRequest(request, served.signature!, served.label);
    } catch (error) {
      served.stats.recordFailure(Number(process.hrtime.bigint() - started));
      throw error;
    }
    const outputs = await scheduler.schedule({
      inputs: validated.inputs,
      batchSize: validated.batchSize,
      shapeKey: validated.shapeKey,
      outputNames: validated.outputNames,
      ...(request.priority === undefined ? {} : { priority: request.priority }),
      ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    });
    return {
      ...(request.id === undefined ? {} : { id: request.id }),
      model: request.model,
      version: served.version,
      outputs,
    };
  }

  /** Stop taking requests, let queued and running ones finish, release every model. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const versions = [...this.models.values()].flatMap((record) => [...record.versions.values()]);
      await Promise.all(versions.map((version) => version.unload(this.options.drainGraceMs)));
    })();
    return this.closing;
  }

  private async loadRepository(): Promise<void> {
    const discovered = await discoverRepository(this.options.repository);
    for (const model of discovered) {
      const record: ModelRecord = { discovered: model, versions: new Map() };
      this.models.set(model.name, record);
      if (model.problem !== undefined) {
        this.logger.error({ model: model.name, reason: model.problem }, 'model unavailable');
        continue;
      }
      const config = model.config!;
      const backend = this.backendFor(config.backend ?? (config.platform === 'fake' ? 'fake' : undefined));
      for (const number of selectVersions(config.version_policy, model.versions)) {
        const version = String(number);
        record.versions.set(version, new ModelVersion(model.name, version, model.dir, config, backend));
      }
    }
    const pending = [...this.models.values()].flatMap((record) => [...record.versions.values()]);
    const workers = Array.from({ length: LOAD_CONCURRENCY }, async () => {
      for (let next = pending.shift(); next !== undefined; next = pending.shift()) {
        await next.load(this.options.scheduling, this.logger);
      }
    });
    await Promise.all(workers);
  }

  private backendFor(name: string | undefined): Backend {
    const backend = name === undefined ? this.options.backends[0] : this.options.backends.find((b) => b.name === name);
    if (backend === undefined) throw new TesseraError('INVALID_MODEL_CONFIG', `no backend named '${name}'`);
    return backend;
  }

  private record(name: string): ModelRecord {
    const record = this.models.get(name);
    if (record === undefined) throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not in the repository`);
    return record;
  }

  private versionOf(record: ModelRecord, version: string): ModelVersion {
    const found = record.versions.get(version);
    if (found === undefined) {
      const known = [...record.versions.keys()].join(', ') || 'none';
      throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${record.discovered.name}' has no version '${version}'; its versions are: ${known}`);
    }
    return found;
  }

  /** The version a request for (name, version?) is served by: the given one, or the highest ready. */
  private resolve(record: ModelRecord, version: string | undefined): ModelVersion {
    if (version !== undefined && version !== '') {
      const found = this.versionOf(record, version);
      found.readyScheduler();
      return found;
    }
    let best: ModelVersion | undefined;
    for (const candidate of record.versions.values()) {
      if (candidate.state === 'READY' && (best === undefined || Number(candidate.version) > Number(best.version))) best = candidate;
    }
    if (best !== undefined) return best;
    const name = record.discovered.name;
    if (record.discovered.problem !== undefined) throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' is unavailable: ${record.discovered.problem}`);
    const reasons = [...record.versions.values()].map((v) => `version ${v.version} is ${v.state}${v.reason === '' ? '' : ` (${v.reason})`}`);
    throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' has no ready version: ${reasons.join('; ') || 'no versions selected'}`);
  }
}

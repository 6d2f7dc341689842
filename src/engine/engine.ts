import { TesseraError, toTesseraError, type ErrorCode } from '../core/errors.js';
import { channels, publish } from '../core/events.js';
import type { InferenceRequest, InferenceResponse } from '../core/inference.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { ModelMetadata, RepositoryIndexEntry } from '../core/metadata.js';
import { compareStrings } from '../core/order.js';
import type { Backend } from '../backends/backend.js';
import type { ModelConfigFile } from '../config/model-config.js';
import type { HandlerRequest } from '../backends/handlers/handler.js';
import type { VersionStatisticsSnapshot } from '../scheduler/stats.js';
import { rm, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { extractArchive, inspectArchive } from '../repository/archive.js';
import { writeOverrideFiles } from '../repository/override-files.js';
import { isModelName } from '../repository/discovery.js';
import { configView, type ModelConfigView } from './config-view.js';
import { checkModelConfig, ModelRegistry, type LoadOptions, type ModelControlMode, type ModelRecord } from './model-registry.js';
import type { ModelVersion, SchedulingDefaults } from './model-version.js';
import { validateRequest } from './validate.js';

export interface EngineOptions {
  /** Path of the model repository. */
  readonly repository: string;
  /** Backends by the name configs select them with; the first is the default. */
  readonly backends: readonly Backend[];
  readonly scheduling: SchedulingDefaults;
  /** Ready only when every model version is ready (Triton's --strict-readiness). */
  readonly strictReadiness: boolean;
  /** How long unloading lets queued and running requests finish. */
  readonly drainGraceMs: number;
  /** Triton's model control mode; default `none` (load everything at start). */
  readonly controlMode?: ModelControlMode;
  /** Explicit mode: models to load at start. */
  readonly initialModels?: readonly string[];
  /** Poll mode: seconds between repository scans. */
  readonly pollIntervalSeconds?: number;
  readonly logger?: Logger;
}

/**
 * What a protocol passes on about the caller of a handler request: as for {@link InferenceRequest},
 * including what routing reads (sticky keys and version overrides from the caller's headers).
 */
export type PredictCaller = Pick<InferenceRequest, 'signal' | 'protocol' | 'traceparent' | 'callerHeader' | 'routingKey' | 'versionOverride' | 'priority' | 'timeoutMs'>;

/**
 * A handler request on its way through the engine's request path: the raw request, and once
 * the version chosen to serve it has preprocessed it, what that version's postprocess needs.
 */
interface HandlerJob {
  readonly raw: HandlerRequest;
  prepared?: { readonly handled: NonNullable<ModelVersion['handler']>; readonly context: unknown };
}

const CALLER_FIELDS = ['signal', 'protocol', 'traceparent', 'callerHeader', 'routingKey', 'versionOverride', 'priority', 'timeoutMs'] as const satisfies readonly (keyof PredictCaller)[];

/** The caller's fields a request carries (a protocol's caller object may hold more, e.g. request limits). */
function callerFields(caller: PredictCaller): PredictCaller {
  const picked: Record<string, unknown> = {};
  for (const field of CALLER_FIELDS) if (caller[field] !== undefined) picked[field] = caller[field];
  return picked as PredictCaller;
}

/** Where a dispatch sends a request: a model and a version (undefined: the model's default). */
export interface InferTarget {
  readonly model: string;
  readonly version?: string | undefined;
}

/**
 * One step of the engine's request path. `target` may differ from the request's own model and
 * version (routing, fallbacks) while the request object stays the same, so observers that
 * correlate events by request still match. `chose` reports the model and version that serve it.
 */
export type InferDispatch = (request: InferenceRequest, target: InferTarget, chose: (model: string, version: string) => void) => Promise<InferenceResponse>;

/** Wraps a dispatch, after undici's interceptors: `(next) => dispatch`. */
export type InferInterceptor = (next: InferDispatch) => InferDispatch;

/** What a routing layer (src/routing) plugs into the engine. */
export interface EngineRouting {
  /** Wraps every request's dispatch (not the inner calls the routing makes itself). */
  readonly interceptor: InferInterceptor;
  /** The version an alias of the model names, for every endpoint that takes a version. */
  resolveAlias(model: string, name: string): string | undefined;
  /** Routing state shown with the model in describeModels (management API). */
  describeModel?(model: string): unknown;
  /** Routing state of one version (e.g. its circuit breaker) shown in describeModels. */
  describeVersion?(model: string, version: string): unknown;
  /** The default version was set through the engine (management API set-default). */
  defaultVersionChanged?(model: string, version: string | undefined): void;
  /** True when the model's requests may be served by another model (a fallback): its own queues do not decide a refusal. */
  fallsBackToOtherModel?(model: string): boolean;
}

export interface ModelStatisticsEntry extends VersionStatisticsSnapshot {
  readonly name: string;
  readonly version: string;
}

/** One version of a model as the management API describes it. */
export interface ModelVersionDescription {
  readonly version: string;
  readonly state: string;
  readonly reason: string;
  readonly isDefault: boolean;
  readonly instances: number;
  readonly queueDepth: number;
  readonly inFlight: number;
  /** Routing state of the version (circuit breaker), when routing keeps one. */
  readonly routing?: unknown;
}

export interface ModelDescription {
  readonly name: string;
  readonly directory: string;
  readonly loaded: boolean;
  readonly defaultVersion: string | undefined;
  readonly versions: readonly ModelVersionDescription[];
  /** Routing of the model (aliases, split, canary, shadow), when a routing layer is installed. */
  readonly routing?: unknown;
}

/**
 * The engine: the one facade every protocol calls. It knows nothing of wire formats; it
 * resolves model versions, validates requests against the model and hands them to the
 * version's scheduler. Lifecycle (what is loaded) is the registry's job.
 */
export class Engine {
  private readonly registry: ModelRegistry;
  private started = false;
  private closing: Promise<void> | undefined;
  private routing: EngineRouting | undefined;
  private dispatch: InferDispatch = (request, target, chose) => this.inferResolved(request, target, chose);
  /**
   * Requests of {@link predict} (and their replays): their inputs are made by the handler of the
   * version the request path chose, so routing decides before any preprocessing.
   */
  private readonly handlerJobs = new WeakMap<InferenceRequest, HandlerJob>();
  /** Checks every request's tensors pass before they are validated and queued (see checkEveryRequest). */
  private readonly requestChecks: ((tensors: InferenceRequest) => void)[] = [];
  /** The last registration of each model name under way (see registerModel). */
  private readonly registrations = new Map<string, Promise<void>>();

  private constructor(private readonly options: EngineOptions) {
    this.registry = new ModelRegistry({
      repository: options.repository,
      backends: options.backends,
      scheduling: options.scheduling,
      drainGraceMs: options.drainGraceMs,
      controlMode: options.controlMode ?? 'none',
      initialModels: options.initialModels ?? [],
      logger: options.logger ?? silentLogger,
    });
  }

  /** Discover the repository and load what the control mode says to. */
  static async start(options: EngineOptions): Promise<Engine> {
    const engine = new Engine(options);
    await engine.registry.initialize();
    if (options.controlMode === 'poll') engine.registry.startPolling(Math.max(0.1, options.pollIntervalSeconds ?? 15) * 1000);
    engine.started = true;
    return engine;
  }

  get controlMode(): ModelControlMode {
    return this.registry.controlMode;
  }

  /** The process is up and answering. */
  isLive(): boolean {
    return true;
  }

  /** Ready for inference: started, not shutting down, and (when strict) every wanted model version ready. */
  isReady(): boolean {
    if (!this.started || this.closing !== undefined) return false;
    if (!this.options.strictReadiness) return true;
    for (const record of this.registry.all()) {
      if (!record.wanted) continue;
      if (record.problem !== undefined && ![...record.versions.values()].some((v) => v.state === 'READY')) return false;
      if (record.versions.size === 0) return false;
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
      versions: readyVersions(record),
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

  /** The model's configuration as loaded (config file or override), if it has been discovered. Never throws. */
  modelConfigFile(name: string): ModelConfigFile | undefined {
    const record = this.registry.get(name);
    return record?.configOverride ?? record?.discovered?.config;
  }

  /** Class labels of a model (labels.txt), if it has them. */
  modelLabels(name: string): readonly string[] | undefined {
    return this.record(name).discovered?.labels;
  }

  /** Every model and version the registry knows, with state and reason. */
  repositoryIndex(): RepositoryIndexEntry[] {
    return this.registry.index();
  }

  /** Every model with its versions, states, instance counts and queue depths (management API). */
  describeModels(name?: string): ModelDescription[] {
    const records = name === undefined ? [...this.registry.all()] : [this.record(name)];
    return records
      .sort((a, b) => compareStrings(a.name, b.name))
      .map((record) => {
        const served = this.defaultOf(record);
        const routing = this.routing?.describeModel?.(record.name);
        return {
          name: record.name,
          directory: record.dir,
          loaded: record.wanted,
          defaultVersion: served?.version,
          versions: [...record.versions.values()].map((v) => {
            const versionRouting = this.routing?.describeVersion?.(record.name, v.version);
            return {
              version: v.version,
              state: v.state,
              reason: v.reloadFailure !== '' ? `serving; the last reload failed: ${v.reloadFailure}` : v.reason,
              isDefault: v === served,
              instances: v.state === 'READY' ? v.instanceCount : 0,
              queueDepth: v.queueDepth,
              inFlight: v.inFlight,
              ...(versionRouting === undefined ? {} : { routing: versionRouting }),
            };
          }),
          ...(routing === undefined ? {} : { routing }),
        };
      });
  }

  /** Statistics of every version of `name` (or of all models), in the V2 statistics shape. */
  statistics(name?: string, version?: string): ModelStatisticsEntry[] {
    const records = name === undefined ? [...this.registry.all()] : [this.record(name)];
    const entries: ModelStatisticsEntry[] = [];
    for (const record of records) {
      const versions = version === undefined ? [...record.versions.values()] : [this.versionOf(record, version)];
      for (const v of versions) entries.push({ name: record.name, version: v.version, ...v.stats.snapshot() });
    }
    return entries;
  }

  /**
   * Load or reload a model (repository API / management API). `files` (relative path ->
   * bytes) replace the model's directory, as Triton's load with files does: they are written to
   * a new directory, which the registry removes once no version loaded from it serves (at once
   * when the load fails). Refused in poll mode, where the repository directory decides what is
   * loaded.
   */
  async loadModel(name: string, options: LoadOptions & { readonly files?: ReadonlyMap<string, Buffer> } = {}): Promise<void> {
    this.assertOpen();
    this.assertApiControl('load');
    // The name is part of the directory the files are written to, and a config the load would
    // refuse refuses it: both are checked before any file is written.
    if (options.files !== undefined) {
      registrableName(name);
      if (options.config !== undefined) checkModelConfig(name, options.config);
    }
    const dir = options.files === undefined ? options.dir : await writeOverrideFiles(name, options.files);
    return this.registry.load(name, {
      ...(options.config === undefined ? {} : { config: options.config }),
      ...(dir === undefined ? {} : { dir }),
      ...(options.files === undefined ? {} : { temporaryDir: true }),
      // Neither a config nor files: the model's own, as in Triton (an earlier override does not stick).
      ...(options.config === undefined && dir === undefined ? { fromRepository: true } : {}),
    });
  }

  /** Unload a model; its queued and running requests finish first. */
  unloadModel(name: string): Promise<void> {
    this.assertOpen();
    this.assertApiControl('unload');
    return this.registry.unload(name);
  }

  /**
   * Add a model from a model archive (`tessera pack`; unpacked into the repository after its
   * checksums are verified) or from a model directory elsewhere on disk, then load it with
   * `instances` instances (default: its config's). All or nothing: when the load fails the model
   * is not registered and the directory unpacked for it is removed. Registrations of one name run
   * one after the other, so a second one finds the first's model (MODEL_ALREADY_EXISTS).
   */
  async registerModel(source: string, options: { readonly name?: string; readonly instances?: number } = {}): Promise<string> {
    this.assertOpen();
    this.assertApiControl('register');
    if (options.instances !== undefined) checkInstanceCount(options.instances);
    if (/\.(tar\.gz|tgz)$/.test(source)) {
      const manifest = await inspectArchive(source);
      const name = registrableName(options.name ?? manifest.name);
      return this.oneRegistrationAtATime(name, async () => {
        this.assertNotLoaded(name);
        const dest = join(resolve(this.options.repository), name);
        if (await stat(dest).then(() => true, () => false)) {
          throw new TesseraError('MODEL_ALREADY_EXISTS', `${dest} already exists; remove it or register the archive under another name`);
        }
        await extractArchive(source, dest).catch((error: unknown) => {
          // Another process made the directory meanwhile (the rename cannot replace it).
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new TesseraError('MODEL_ALREADY_EXISTS', `${dest} already exists; remove it or register the archive under another name`, { cause: error });
          throw error;
        });
        try {
          await this.registry.register(name, { dir: dest, inRepository: true, ...instancesOf(options) });
        } catch (error) {
          if (toTesseraError(error).code !== 'MODEL_ALREADY_EXISTS') await rm(dest, { recursive: true, force: true });
          throw error;
        }
        return name;
      });
    }
    const info = await stat(source).catch(() => undefined);
    if (info?.isDirectory() !== true) throw new TesseraError('INVALID_PARAMETER', `'${source}' is neither a model archive (.tar.gz) nor a model directory`);
    const name = registrableName(options.name ?? basename(resolve(source)));
    return this.oneRegistrationAtATime(name, async () => {
      this.assertNotLoaded(name);
      await this.registry.register(name, { dir: resolve(source), inRepository: false, ...instancesOf(options) });
      return name;
    });
  }

  /** Run `task` after every earlier registration of `name` has finished. */
  private oneRegistrationAtATime<T>(name: string, task: () => Promise<T>): Promise<T> {
    const run = (this.registrations.get(name) ?? Promise.resolve()).then(task);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.registrations.set(name, settled);
    void settled.then(() => {
      if (this.registrations.get(name) === settled) this.registrations.delete(name);
    });
    return run;
  }

  private assertNotLoaded(name: string): void {
    if (this.registry.get(name)?.wanted === true) throw new TesseraError('MODEL_ALREADY_EXISTS', `model '${name}' is already loaded; unregister it first`);
  }

  /** Reload a model with `count` instances (management API's scale). */
  scaleModel(name: string, count: number): Promise<void> {
    this.assertOpen();
    checkInstanceCount(count);
    return this.registry.scale(name, count);
  }

  private assertApiControl(verb: string): void {
    if (this.registry.controlMode === 'poll') {
      throw new TesseraError('MODEL_CONTROL_DISABLED', `cannot ${verb} models through the API in poll mode: the repository directory decides what is loaded (start with --model-control-mode explicit or none)`);
    }
  }

  /** Pin the version requests without a version go to (undefined: the highest READY). */
  setDefaultVersion(name: string, version: string | undefined): void {
    this.registry.setDefaultVersion(name, version);
    this.routing?.defaultVersionChanged?.(name, version);
  }

  /** Install a routing layer: its interceptor wraps every request, its aliases name versions. Once. */
  useRouting(routing: EngineRouting): void {
    if (this.routing !== undefined) throw new Error('a routing layer is already installed');
    this.routing = routing;
    this.dispatch = routing.interceptor(this.dispatch);
  }

  /** READY versions of a model (ascending) and the version serving requests that name none; undefined for an unknown model. */
  servingVersions(name: string): { readonly ready: readonly string[]; readonly defaultVersion: string | undefined } | undefined {
    const record = this.registry.get(name);
    if (record === undefined) return undefined;
    return { ready: readyVersions(record), defaultVersion: this.defaultOf(record)?.version };
  }

  /** Every version a model has, in any state (ascending); none for an unknown model. */
  versionsOf(name: string): readonly string[] {
    return [...(this.registry.get(name)?.versions.keys() ?? [])];
  }

  /**
   * The version an alias (a version label: routing's aliases) of `model` names, or undefined when
   * it has no such alias or no routing layer is installed. MODEL_NOT_FOUND for an unknown model.
   */
  versionOfAlias(model: string, alias: string): string | undefined {
    this.record(model);
    return this.routing?.resolveAlias(model, alias);
  }

  /**
   * Run `check` on the tensors of every request before it is queued, whichever front door
   * decoded it and whether a handler made them (request limits); it throws to refuse one.
   */
  checkEveryRequest(check: (tensors: InferenceRequest) => void): void {
    this.requestChecks.push(check);
  }

  /** Rescan the repository now (what poll mode does on its timer). */
  syncRepository(): Promise<void> {
    return this.registry.sync();
  }

  /**
   * The QUEUE_FULL refusal for a request to `model` (`version`, if it names one) known before
   * the request is read: when the named version, or every READY version of the model, has a
   * full queue, whatever version routing would choose refuses it. Front doors ask before reading
   * a body, so an excess request costs no parsing. The refusal is counted as a refused request
   * (requestEnd). Undefined when any candidate has room, or the model is unknown or not ready
   * (the normal path answers those).
   */
  admissionRefusal(model: string, version: string | undefined, protocol: string): TesseraError | undefined {
    if (this.closing !== undefined) return undefined;
    const record = this.registry.get(model);
    if (record === undefined || this.routing?.fallsBackToOtherModel?.(model) === true) return undefined;
    let candidates: ModelVersion[];
    try {
      candidates = version === undefined ? [...record.versions.values()].filter((v) => v.state === 'READY') : [this.resolve(record, version)];
    } catch {
      return undefined;
    }
    let refusal: TesseraError | undefined;
    for (const candidate of candidates) {
      refusal = candidate.queueFullRefusal();
      if (refusal === undefined) return undefined;
    }
    if (refusal === undefined) return undefined;
    const request: InferenceRequest = { model, ...(version === undefined ? {} : { version }), inputs: [], protocol };
    publishEnd(request, model, candidates.length === 1 ? candidates[0]!.version : undefined, refusal.code, process.hrtime.bigint(), Date.now(), undefined);
    return refusal;
  }

  /**
   * Run one inference request. Throws TesseraError with a code for every failure.
   *
   * The request's input tensors are read only until the returned promise settles (work that
   * outlives it, shadow and canary replays and audit records, copies what it needs when the
   * request starts), so the caller may then reuse their memory: the gRPC front door lends
   * received messages from a pool on that basis.
   */
  infer(request: InferenceRequest): Promise<InferenceResponse> {
    return this.run(request);
  }

  /**
   * Before routing dispatches `request` and later runs it again on another version (shadow,
   * canary mirror): a handler request's replays are handler requests too, each preprocessed by
   * the handler of the version it runs on, from a copy of the raw request taken now (a handler
   * may hand the caller's buffers to a worker, which detaches them). Undefined for tensor
   * requests: copies of their input tensors are all a replay needs.
   */
  prepareReplay(request: InferenceRequest): ((replay: InferenceRequest) => void) | undefined {
    const job = this.handlerJobs.get(request);
    if (job === undefined) return undefined;
    const snapshot = copyHandlerRequest(job.raw);
    // Each replay gets its own copy: two replays (shadow and canary mirror) may run at once.
    return (replay) => {
      this.handlerJobs.set(replay, { raw: copyHandlerRequest(snapshot) });
    };
  }

  /** The request path shared by infer and predict: dispatch (routing first, when installed), then the requestEnd event. */
  private async run(request: InferenceRequest): Promise<InferenceResponse> {
    const started = process.hrtime.bigint();
    const startedAtMs = Date.now();
    let model = request.model;
    let version: string | undefined;
    try {
      const response = await this.dispatch(request, request, (chosenModel, chosen) => {
        model = chosenModel;
        version = chosen;
      });
      publishEnd(request, response.model, response.version, 'success', started, startedAtMs, response);
      return response;
    } catch (error) {
      publishEnd(request, model, version, toTesseraError(error).code, started, startedAtMs, undefined);
      throw error;
    }
  }

  private async inferResolved(request: InferenceRequest, target: InferTarget, chose: (model: string, version: string) => void): Promise<InferenceResponse> {
    if (this.closing !== undefined) throw new TesseraError('SHUTTING_DOWN', 'the server is shutting down and takes no new requests');
    const served = this.resolve(this.record(target.model), target.version);
    chose(target.model, served.version);
    const job = this.handlerJobs.get(request);
    const outputs = await (job === undefined ? this.enqueue(request, request, target, served) : this.preprocessAndEnqueue(request, job, target, served));
    return {
      ...(request.id === undefined ? {} : { id: request.id }),
      model: target.model,
      version: served.version,
      outputs,
      served: served.served,
    };
  }

  /**
   * A handler request: the chosen version's handler makes its tensors, then they are queued on
   * that same version. The request is admitted to the version meanwhile, so an unload or a reload
   * that retires the version waits for it (up to the drain grace) instead of losing it.
   */
  private async preprocessAndEnqueue(request: InferenceRequest, job: HandlerJob, target: InferTarget, served: ModelVersion): Promise<InferenceResponse['outputs']> {
    const handled = served.handler;
    if (handled === undefined) throw new TesseraError('INVALID_REQUEST', `model '${target.model}' has no handler; send tensors to its inference endpoint`);
    const release = this.registry.admit(served);
    try {
      const prepared = await handled.handler.preprocess(job.raw, handled.info);
      job.prepared = { handled, context: prepared.context };
      const tensors: InferenceRequest = {
        ...request,
        inputs: prepared.inputs,
        ...(prepared.outputNames === undefined ? {} : { outputs: prepared.outputNames.map((output) => ({ name: output })) }),
      };
      if (this.closing !== undefined) throw new TesseraError('SHUTTING_DOWN', 'the server is shutting down and takes no new requests');
      // Returned unawaited: `finally` releases the admission as soon as the request is queued.
      return this.enqueue(request, tensors, target, served);
    } finally {
      release(); // queued (or failed): the scheduler's drain covers it from here
    }
  }

  /**
   * Validate `tensors` against `served` and queue them on its scheduler. Synchronous up to the
   * queueing: no version swap can interleave, so a request never lands on a scheduler that is
   * already draining (MODEL_UNAVAILABLE when the version stopped serving).
   */
  private enqueue(request: InferenceRequest, tensors: InferenceRequest, target: InferTarget, served: ModelVersion): Promise<InferenceResponse['outputs']> {
    const scheduler = served.readyScheduler();
    const started = process.hrtime.bigint();
    let validated;
    try {
      for (const check of this.requestChecks) check(tensors);
      validated = validateRequest(tensors, served.signature!, served.label);
      served.checkInputs(validated.inputs);
    } catch (error) {
      served.stats.recordFailure(Number(process.hrtime.bigint() - started));
      throw error;
    }
    publish(channels.requestStart, () => ({
      model: target.model,
      version: served.version,
      protocol: request.protocol ?? 'internal',
      request,
      inputs: validated.inputs,
    }));
    return scheduler.schedule({
      inputs: validated.inputs,
      batchSize: validated.batchSize,
      shapeKey: validated.shapeKey,
      outputNames: validated.outputNames,
      ...(request.priority === undefined ? {} : { priority: request.priority }),
      ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
      origin: request,
    });
  }

  /** The handler kind serving raw requests for a model version, or undefined when it has none. */
  modelHandlerKind(name: string, version?: string): string | undefined {
    return this.resolve(this.record(name), version).handler?.kind;
  }

  /**
   * Serve a raw request through the model's handler: preprocess into tensors, infer, then
   * postprocess into a JSON-ready answer (TorchServe's handler flow). The request takes the same
   * path as {@link infer}: without a version, routing (src/routing) chooses it (split, sticky
   * key, override, alias, canary), and the handler of the chosen version does the pre- and
   * postprocessing. `version` is the version that served it.
   */
  async predict(name: string, version: string | undefined, raw: HandlerRequest, caller: PredictCaller = {}): Promise<{ readonly version: string; readonly answer: unknown }> {
    const request: InferenceRequest = {
      model: name,
      ...(version === undefined || version === '' ? {} : { version }),
      inputs: [],
      ...callerFields(caller),
    };
    const job: HandlerJob = { raw };
    this.handlerJobs.set(request, job);
    const response = await this.run(request);
    const prepared = job.prepared;
    if (prepared === undefined) throw new TesseraError('INTERNAL', `model '${name}': the request was answered without being preprocessed`);
    const answer = await prepared.handled.handler.postprocess(response.outputs, prepared.handled.info, prepared.context);
    return { version: response.version, answer };
  }

  /** Stop taking requests, let queued and running ones finish, release every model. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.registry.close();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing !== undefined) throw new TesseraError('SHUTTING_DOWN', 'the server is shutting down');
  }

  private record(name: string): ModelRecord {
    const record = this.registry.get(name);
    if (record === undefined) throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not in the repository`);
    return record;
  }

  private versionOf(record: ModelRecord, version: string): ModelVersion {
    const aliased = record.versions.has(version) ? undefined : this.routing?.resolveAlias(record.name, version);
    const found = record.versions.get(aliased ?? version);
    if (found === undefined) {
      const known = [...record.versions.keys()].join(', ') || 'none';
      throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${record.name}' has no version '${version}'; its versions are: ${known}`);
    }
    return found;
  }

  /** The version serving requests that name none: the pinned default, else the highest READY. */
  private defaultOf(record: ModelRecord): ModelVersion | undefined {
    if (record.defaultVersion !== undefined) {
      const pinned = record.versions.get(record.defaultVersion);
      if (pinned?.state === 'READY') return pinned;
    }
    let best: ModelVersion | undefined;
    for (const candidate of record.versions.values()) {
      if (candidate.state === 'READY' && (best === undefined || Number(candidate.version) > Number(best.version))) best = candidate;
    }
    return best;
  }

  /** The version a request for (name, version?) is served by; throws when it cannot serve. */
  private resolve(record: ModelRecord, version: string | undefined): ModelVersion {
    if (version !== undefined && version !== '') {
      const found = this.versionOf(record, version);
      found.readyScheduler();
      return found;
    }
    const served = this.defaultOf(record);
    if (served !== undefined) return served;
    const name = record.name;
    if (record.problem !== undefined) throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' is unavailable: ${record.problem}`);
    if (!record.wanted) throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' is not loaded`);
    const reasons = [...record.versions.values()].map((v) => `version ${v.version} is ${v.state}${v.reason === '' ? '' : ` (${v.reason})`}`);
    throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' has no ready version: ${reasons.join('; ') || 'no versions selected'}`);
  }
}

function publishEnd(
  request: InferenceRequest,
  model: string,
  version: string | undefined,
  outcome: 'success' | ErrorCode,
  started: bigint,
  startedAtMs: number,
  response: InferenceResponse | undefined,
): void {
  publish(channels.requestEnd, () => ({
    startedAtMs,
    model,
    version,
    protocol: request.protocol ?? 'internal',
    outcome,
    durationSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    request,
    response,
  }));
}

function checkInstanceCount(count: number): void {
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new TesseraError('INVALID_PARAMETER', `instances must be an integer from 1 to 64, got ${count}`);
}

function instancesOf(options: { readonly instances?: number }): { readonly instances?: number } {
  return options.instances === undefined ? {} : { instances: options.instances };
}

function registrableName(name: string): string {
  if (!isModelName(name)) throw new TesseraError('INVALID_PARAMETER', `'${name}' is not a valid model name (letters, digits, '_', '.', '-')`);
  return name;
}

function copyHandlerRequest(raw: HandlerRequest): HandlerRequest {
  return { ...raw, files: raw.files.map((file) => ({ ...file, data: Buffer.from(file.data) })), fields: { ...raw.fields } };
}

function readyVersions(record: ModelRecord): string[] {
  return [...record.versions.values()]
    .filter((v) => v.state === 'READY')
    .map((v) => v.version)
    .sort((a, b) => Number(a) - Number(b));
}

import { rm, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { findHandlerFile } from '../backends/handlers/custom.js';
import { describeIssues, modelConfigSchema, type ModelConfigFile } from '../config/model-config.js';
import { TesseraError } from '../core/errors.js';
import { MAX_TIMER_MS } from '../core/timers.js';
import type { Logger } from '../core/logger.js';
import type { RepositoryIndexEntry } from '../core/metadata.js';
import { compareStrings } from '../core/order.js';
import type { Backend } from '../backends/backend.js';
import { discoverModel, isModelName, listModelNames, type DiscoveredModel } from '../repository/discovery.js';
import { versionFingerprint } from '../repository/fingerprint.js';
import { ARCHIVE_CACHE_DIR, archiveCopyDir, listRepositoryArchives, removeStaleArchiveCopies, unpackRepositoryArchive, type RepositoryArchive } from '../repository/repository-archives.js';
import { selectVersions } from '../repository/version-policy.js';
import { ModelVersion, type SchedulingDefaults } from './model-version.js';

/** Triton's model control modes. */
export type ModelControlMode = 'none' | 'poll' | 'explicit';

export interface RegistryOptions {
  readonly repository: string;
  readonly backends: readonly Backend[];
  readonly scheduling: SchedulingDefaults;
  readonly drainGraceMs: number;
  readonly controlMode: ModelControlMode;
  /** Models to load at start in explicit mode (`--load-model`); `*` loads all. */
  readonly initialModels: readonly string[];
  readonly logger: Logger;
}

/** What a caller may change when (re)loading a model. */
export interface LoadOptions {
  /** A config that replaces the model directory's config file (validated here). */
  readonly config?: unknown;
  /** Serve the model from this directory instead of `<repository>/<name>`. */
  readonly dir?: string;
  /**
   * `dir` was made for this load (files sent with it): the registry removes it once no version
   * loaded from it serves or drains, or at once when nothing loads from it.
   */
  readonly temporaryDir?: boolean;
  /**
   * A load by the repository poll: a version that failed with the same files is not tried
   * again, and a failure already logged is not logged again. Operator loads always retry.
   */
  readonly polled?: boolean;
  /**
   * The repository API's load without a config or files: as in Triton, the model loads from
   * its own directory and config again, whatever an earlier load with a config or files set.
   */
  readonly fromRepository?: boolean;
}

/** What a registration (the management API's `POST /models`) adds. */
export interface RegisterOptions {
  /** The model directory: elsewhere on disk, or where an archive was unpacked in the repository. */
  readonly dir: string;
  /** True when `dir` is `<repository>/<name>` (an unpacked archive). */
  readonly inRepository: boolean;
  /** Instances to run (TorchServe's initial_workers); default the config's instance_group. */
  readonly instances?: number;
}

/** A record's state before a registration changed it, to put back when the registration fails. */
type RecordState = Pick<ModelRecord, 'dir' | 'wanted' | 'discovered' | 'configOverride' | 'problem' | 'defaultVersion'>;

/** One model: where it lives, whether it should be served, and its versions. */
export interface ModelRecord {
  readonly name: string;
  dir: string;
  /** Whether the operator wants it served (false: never loaded, or unloaded). */
  wanted: boolean;
  /** True for models that live in the repository directory (poll mode follows them). */
  readonly inRepository: boolean;
  discovered: DiscoveredModel | undefined;
  configOverride: ModelConfigFile | undefined;
  /** Why the model as a whole cannot be served (invalid config, no versions...). */
  problem: string | undefined;
  readonly versions: Map<string, ModelVersion>;
  /** Version that serves requests naming none; undefined = highest READY. */
  defaultVersion: string | undefined;
  /** Fingerprints whose load failed, so polling does not retry an unchanged broken file. */
  readonly failedFingerprints: Map<string, string>;
  /**
   * Directories made for the model (files sent with a load, unpacked archives), removed once no
   * version serves or drains from them (see removeUnusedDirs).
   */
  readonly madeDirs: Set<string>;
  lock: Promise<void>;
}

/** How many models load at once at start-up: loads are CPU-heavy (parsing, warm-up). */
const LOAD_CONCURRENCY = 2;

/** A config sent with a load, checked against the schema: INVALID_MODEL_CONFIG when it is not a valid one. */
export function checkModelConfig(model: string, config: unknown): ModelConfigFile {
  const parsed = modelConfigSchema.safeParse(config);
  if (!parsed.success) throw new TesseraError('INVALID_MODEL_CONFIG', `invalid config for model '${model}': ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * Decides and does model lifecycle: which versions should serve, loading new ones before the
 * ones they replace stop, draining what it retires. A failed load never takes down a version
 * that serves: it is recorded and reported instead.
 */
export class ModelRegistry {
  private readonly records = new Map<string, ModelRecord>();
  /** Archives in the repository directory, by model name (from the last scan). */
  private readonly archives = new Map<string, RepositoryArchive>();
  /** Archives a model directory of the same name shadows (name -> archive file), warned about once. */
  private readonly shadowedArchives = new Map<string, string>();
  /**
   * Handler requests admitted to a version and not yet queued on its scheduler (the handler is
   * preprocessing them): retiring the version waits for them as its scheduler waits for queued ones.
   */
  private readonly admitted = new Map<ModelVersion, { count: number; readonly settled: (() => void)[] }>();
  private pollTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: RegistryOptions) {}

  get controlMode(): ModelControlMode {
    return this.options.controlMode;
  }

  get(name: string): ModelRecord | undefined {
    return this.records.get(name);
  }

  all(): IterableIterator<ModelRecord> {
    return this.records.values();
  }

  /** Discover the repository and load what the control mode says to. */
  async initialize(): Promise<void> {
    const names = await this.repositoryNames();
    // Copies unpacked by an earlier run for archives since rewritten or removed: nothing serves from them.
    const stale = await removeStaleArchiveCopies(this.options.repository, this.archives.values(), (dir, reason) =>
      this.options.logger.warn({ dir, reason }, 'cannot remove a stale unpacked model archive'),
    );
    if (stale.length > 0) this.options.logger.info({ removed: stale }, 'stale unpacked model archives removed');
    const loadAll = this.options.controlMode !== 'explicit' || this.options.initialModels.includes('*');
    for (const name of names) this.records.set(name, this.newRecord(name, join(resolve(this.options.repository), name), true));
    const toLoad = names.filter((name) => loadAll || this.options.initialModels.includes(name));
    const unknown = this.options.initialModels.filter((name) => name !== '*' && !names.includes(name));
    for (const name of unknown) this.options.logger.error({ model: name }, 'model named by --load-model is not in the repository');
    const queue = [...toLoad];
    await Promise.all(
      Array.from({ length: LOAD_CONCURRENCY }, async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) await this.load(name).catch(() => undefined);
      }),
    );
  }

  /**
   * Poll the repository every `intervalMs` (poll mode), at most every 2^31 - 1 ms (about 24.8
   * days): Node.js fires a longer interval every 1 ms.
   */
  startPolling(intervalMs: number): void {
    this.pollTimer = setInterval(() => void this.sync(), Math.min(intervalMs, MAX_TIMER_MS));
    this.pollTimer.unref();
  }

  /**
   * Bring served models in line with the repository directory: new models load, changed
   * versions reload, removed versions and models unload. Failures are logged and recorded.
   */
  sync(): Promise<void> {
    this.syncing ??= (async () => {
      try {
        const names = await this.repositoryNames();
        for (const record of [...this.records.values()]) {
          if (record.inRepository && !names.includes(record.name)) {
            await this.unload(record.name);
            this.records.delete(record.name);
          }
        }
        for (const name of names) {
          const record = this.records.get(name);
          if (record === undefined || record.wanted) await this.load(name, { polled: true }).catch(() => undefined);
        }
      } catch (error) {
        this.options.logger.error({ err: error }, 'repository poll failed');
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  /**
   * Load (or reload) a model: versions whose files or config changed load beside the serving
   * ones and replace them once READY; versions no longer selected drain and unload. Rejects
   * with MODEL_LOAD_FAILED when any selected version failed; serving versions stay untouched.
   */
  async load(name: string, options: LoadOptions = {}): Promise<void> {
    if (!isModelName(name)) throw new TesseraError('INVALID_REQUEST', `'${name}' is not a valid model name`);
    let record = this.records.get(name);
    if (record === undefined) {
      const dir = options.dir ?? join(resolve(this.options.repository), name);
      // A name that is nowhere on disk is not found: it leaves no record behind (a record would
      // hold strict readiness back, and any caller could add them).
      const exists = this.archives.has(name) || (await stat(dir).then((info) => info.isDirectory(), () => false));
      if (!exists) throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not in the repository (${dir} does not exist)`);
      record = this.records.get(name) ?? this.newRecord(name, dir, options.dir === undefined);
      this.records.set(name, record);
    }
    const target = record;
    // A failed registration may have dropped the record while this load waited for it: start over.
    return this.locked(target, () => (this.records.get(name) === target ? this.loadLocked(target, options) : this.load(name, options)));
  }

  /**
   * Add a model from `options.dir` and load it, all or nothing: when the load fails, the model
   * is forgotten (or put back as it was, when it was known but not loaded) and its versions are
   * unloaded. A registration that failed on a typo would otherwise stay in the index, hold strict
   * readiness (/ping, /v2/health/ready) down and answer 409 to the corrected retry.
   * MODEL_ALREADY_EXISTS when the model is loaded already.
   */
  register(name: string, options: RegisterOptions): Promise<void> {
    if (!isModelName(name)) throw new TesseraError('INVALID_PARAMETER', `'${name}' is not a valid model name (letters, digits, '_', '.', '-')`);
    const existing = this.records.get(name);
    const target = existing ?? this.newRecord(name, options.dir, options.inRepository);
    if (existing === undefined) this.records.set(name, target);
    return this.locked(target, async () => {
      if (this.records.get(name) !== target) return this.register(name, options);
      if (target.wanted) throw new TesseraError('MODEL_ALREADY_EXISTS', `model '${name}' is already loaded; unregister it first`);
      // A model known but not loaded (unregistered, or not loaded in explicit mode) goes back to that state.
      const before: RecordState | undefined =
        existing === undefined
          ? undefined
          : { dir: target.dir, wanted: target.wanted, discovered: target.discovered, configOverride: target.configOverride, problem: target.problem, defaultVersion: target.defaultVersion };
      try {
        await this.loadLocked(target, { dir: options.dir, ...(options.instances === undefined ? {} : { instances: options.instances }) });
      } catch (error) {
        await this.rollBack(target, before);
        throw error;
      }
    });
  }

  /** Stop serving a model: its versions drain and unload. It stays in the index as unloaded. */
  unload(name: string): Promise<void> {
    const record = this.records.get(name);
    if (record === undefined) throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not in the repository`);
    return this.locked(record, async () => {
      record.wanted = false;
      record.problem = undefined;
      const versions = [...record.versions.values()];
      record.versions.clear();
      await Promise.all(versions.map((version) => this.retire(version)));
      this.options.logger.info({ model: name }, 'model unloaded');
    });
  }

  /**
   * Run a model on `count` instances: it reloads with that instance_group, beside the serving
   * versions. MODEL_NOT_FOUND for a model that is not loaded (never loaded, or unregistered), as
   * TorchServe answers: scaling never brings back a model the operator took down.
   */
  scale(name: string, count: number): Promise<void> {
    const record = this.records.get(name);
    if (record === undefined) throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not in the repository`);
    // Checked under the lock: an unregister queued before this scale wins.
    return this.locked(record, () => {
      if (!record.wanted || this.records.get(name) !== record) {
        throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not loaded (never loaded, or unregistered); register or load it before scaling it`);
      }
      const current = record.configOverride ?? record.discovered?.config;
      if (current === undefined) throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' has not loaded yet${record.problem === undefined ? '' : ` (${record.problem})`}; fix it before scaling it`);
      return this.loadLocked(record, { config: { ...current, instance_group: [{ count, kind: 'KIND_CPU' }] } });
    });
  }

  /**
   * Admit a handler request to `version` while its handler preprocesses it: until the returned
   * release is called (once the request is queued on the version's scheduler, or has failed),
   * retiring the version waits for it, up to the drain grace. So a request admitted before an
   * unload or a reload is served by the version that admitted it, as a queued one is.
   */
  admit(version: ModelVersion): () => void {
    let entry = this.admitted.get(version);
    if (entry === undefined) {
      entry = { count: 0, settled: [] };
      this.admitted.set(version, entry);
    }
    const admission = entry;
    admission.count++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--admission.count > 0) return;
      this.admitted.delete(version);
      for (const wake of admission.settled) wake();
    };
  }

  /** Pin the version that serves requests naming none (undefined: back to the highest READY). */
  setDefaultVersion(name: string, version: string | undefined): void {
    const record = this.records.get(name);
    if (record === undefined) throw new TesseraError('MODEL_NOT_FOUND', `model '${name}' is not in the repository`);
    if (version !== undefined && !record.versions.has(version)) {
      throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${name}' has no version '${version}'; its versions are: ${[...record.versions.keys()].join(', ') || 'none'}`);
    }
    if (version !== undefined && record.versions.get(version)?.state !== 'READY') {
      const ready = [...record.versions.values()].filter((v) => v.state === 'READY').map((v) => v.version);
      throw new TesseraError('MODEL_UNAVAILABLE', `model '${name}' version ${version} is not ready; ready versions: ${ready.join(', ') || 'none'}`);
    }
    record.defaultVersion = version;
    this.options.logger.info({ model: name, version: version ?? 'latest' }, 'default version set');
  }

  index(): RepositoryIndexEntry[] {
    const entries: RepositoryIndexEntry[] = [];
    for (const record of [...this.records.values()].sort((a, b) => compareStrings(a.name, b.name))) {
      if (record.versions.size === 0) {
        const reason = record.problem ?? (record.wanted ? 'loading' : record.discovered === undefined ? 'not loaded' : 'unloaded');
        entries.push({ name: record.name, state: record.problem === undefined && record.wanted ? 'LOADING' : 'UNAVAILABLE', reason });
        continue;
      }
      for (const version of [...record.versions.values()].sort((a, b) => Number(a.version) - Number(b.version))) {
        const reason = version.reloadFailure !== '' ? `serving; the last reload failed: ${version.reloadFailure}` : version.reason;
        entries.push({ name: record.name, version: version.version, state: version.state, reason });
      }
      if (record.problem !== undefined) entries.push({ name: record.name, state: 'UNAVAILABLE', reason: record.problem });
    }
    return entries;
  }

  /** Unload everything (draining); stops polling. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
    await this.syncing;
    // Loads and unloads under way finish first (new ones refuse, closed is set), so a version
    // that becomes READY while closing is unloaded below instead of keeping its workers alive.
    await Promise.all([...this.records.values()].map((record) => record.lock));
    const versions = [...this.records.values()].flatMap((record) => [...record.versions.values()]);
    await Promise.all(versions.map((version) => version.unload(this.options.drainGraceMs)));
    await Promise.all([...this.records.values()].map((record) => this.removeUnusedDirs(record)));
  }

  private async loadLocked(record: ModelRecord, options: LoadOptions & { readonly instances?: number }): Promise<void> {
    // Before anything can refuse the load: a directory made for it is removed when nothing loads from it.
    if (options.dir !== undefined && options.temporaryDir === true) record.madeDirs.add(options.dir);
    if (this.closed) throw new TesseraError('SHUTTING_DOWN', 'the server is shutting down');
    // The record's config (override and discovered) changes only once this load's versions serve
    // (see the end): until then, and for good when the load fails while older versions keep
    // serving, routing, monitoring, audit and scale go on reading the config those versions run.
    let configOverride = record.configOverride;
    if (options.config !== undefined) configOverride = checkModelConfig(record.name, options.config);
    if (options.fromRepository === true && options.config === undefined && options.dir === undefined) {
      configOverride = undefined;
      if (record.inRepository) record.dir = join(resolve(this.options.repository), record.name);
    }
    if (options.dir !== undefined) record.dir = options.dir;
    const archive = options.dir === undefined && record.inRepository ? this.archives.get(record.name) : undefined;
    if (archive === undefined && options.dir === undefined && record.inRepository && this.isArchiveCopy(record.dir)) {
      // It served from an archive that a model directory of its name now shadows: the directory wins.
      record.dir = join(resolve(this.options.repository), record.name);
    }
    record.wanted = true;
    const fail = (problem: string): never => {
      if (options.polled !== true || record.problem !== problem) this.options.logger.error({ model: record.name, reason: problem }, 'model load failed');
      record.problem = problem;
      throw new TesseraError('MODEL_LOAD_FAILED', `model '${record.name}' failed to load: ${problem}`);
    };
    if (archive !== undefined) {
      try {
        record.dir = await unpackRepositoryArchive(this.options.repository, archive);
        record.madeDirs.add(record.dir);
      } catch (error) {
        return fail(`archive ${archive.file} refused: ${(error as Error).message}`);
      }
    }
    let discovered: DiscoveredModel;
    try {
      discovered = await discoverModel(record.name, record.dir, configOverride);
    } catch (error) {
      return fail(`cannot read ${record.dir}: ${(error as Error).message}`);
    }
    if (discovered.problem !== undefined) return fail(discovered.problem);
    let config = discovered.config!;
    if (options.instances !== undefined) {
      // A registration's initial_workers: the model loads once, with that count, kept as scale keeps it.
      config = { ...config, instance_group: [{ count: options.instances, kind: 'KIND_CPU' }] };
      configOverride = config;
    }
    const backend = this.backendFor(config);
    if (backend === undefined) return fail(`no backend named '${config.backend}'`);
    if (discovered.ignoredConfigFields.length > 0 && JSON.stringify(record.discovered?.ignoredConfigFields) !== JSON.stringify(discovered.ignoredConfigFields)) {
      this.options.logger.warn({ model: record.name, ignored: discovered.ignoredConfigFields }, 'config.pbtxt fields Tessera does not honour were ignored');
    }
    record.problem = undefined;

    // A changed handler module reloads the model like a changed config does.
    const handlerFile = await findHandlerFile(record.dir);
    const handlerStamp = handlerFile === undefined ? null : await stat(handlerFile).then((info) => `${info.size}:${info.mtimeMs}`, () => null);
    const configKey = JSON.stringify([config, discovered.labels ?? null, handlerStamp]);
    const filename = config.default_model_filename ?? backend.defaultModelFilename;
    const selected = selectVersions(config.version_policy, discovered.versions).map(String);
    // As in Triton: a policy that selects none of the version directories is a failed load,
    // not a model left LOADING for good.
    if (selected.length === 0) {
      const found = discovered.versions.length === 0 ? 'no version directories' : `versions ${discovered.versions.join(', ')}`;
      return fail(`at least one version must be available under the version policy (${JSON.stringify(config.version_policy ?? { latest: { num_versions: 1 } })}; found ${found})`);
    }
    const failures: string[] = [];
    const retiring: ModelVersion[] = [];
    /** Of those, the copies a new copy of the same version replaced. */
    const replaced = new Set<ModelVersion>();
    /** Versions this load put in place (READY or not), rather than leaving an older READY one serving. */
    let placed = 0;
    await Promise.all(
      selected.map(async (version) => {
        const fingerprint = await versionFingerprint(record.dir, version, filename, configKey);
        const existing = record.versions.get(version);
        if (existing !== undefined && existing.fingerprint === fingerprint && existing.state === 'READY') return;
        // Unchanged files that failed: kept as they are (serving, or unavailable with the reason)
        // until they change, unless the operator asks again.
        if (record.failedFingerprints.get(version) === fingerprint && (existing?.state === 'READY' || (options.polled === true && existing !== undefined))) return;
        const candidate = new ModelVersion(record.name, version, record.dir, config, backend, discovered.labels, fingerprint);
        await candidate.load(this.options.scheduling, this.options.logger);
        if (candidate.state === 'READY') {
          record.failedFingerprints.delete(version);
          record.versions.set(version, candidate);
          placed++;
          if (existing !== undefined) {
            retiring.push(existing);
            replaced.add(existing);
          }
          return;
        }
        record.failedFingerprints.set(version, fingerprint);
        failures.push(`version ${version}: ${candidate.reason}`);
        if (existing?.state === 'READY') {
          existing.reloadFailure = candidate.reason;
        } else {
          record.versions.set(version, candidate);
          placed++;
          if (existing !== undefined) {
            retiring.push(existing);
            replaced.add(existing);
          }
        }
      }),
    );
    if (placed > 0 || failures.length === 0) {
      record.configOverride = configOverride;
      record.discovered = discovered;
    }
    // Versions the policy no longer selects retire, except while a selected one is not READY:
    // a broken new version (a half-copied upload) never takes down the one serving, as long as
    // its files are still there.
    const selectedFailing = selected.some((version) => record.versions.get(version)?.state !== 'READY');
    const present = new Set(discovered.versions.map(String));
    for (const [version, served] of record.versions) {
      if (selected.includes(version)) continue;
      if (selectedFailing && served.state === 'READY' && present.has(version)) continue;
      record.versions.delete(version);
      retiring.push(served);
    }
    // Versions finish loading in any order: keep them ascending, so metadata, statistics and
    // messages list them the same way every time.
    const ascending = [...record.versions.entries()].sort(([a], [b]) => Number(a) - Number(b));
    record.versions.clear();
    for (const [version, served] of ascending) record.versions.set(version, served);
    await Promise.all(retiring.map((version) => this.retire(version, replaced.has(version))));
    if (failures.length > 0) throw new TesseraError('MODEL_LOAD_FAILED', `model '${record.name}' failed to load: ${failures.join('; ')}`);
  }

  /**
   * Unload a version taken out of service: requests admitted to it first (see {@link admit}), then
   * its queued and running requests, all within the drain grace. `replaced`: a new copy of the
   * same version serves in its place.
   */
  private async retire(version: ModelVersion, replaced = false): Promise<void> {
    const grace = this.options.drainGraceMs;
    const started = performance.now();
    const admission = this.admitted.get(version);
    if (admission !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => admission.settled.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, grace);
        }),
      ]);
      clearTimeout(timer);
    }
    await version.unload(Math.max(0, grace - (performance.now() - started)), replaced);
  }

  /** Undo a failed registration: unload what it loaded, then forget the record or put back its state `before`. */
  private async rollBack(record: ModelRecord, before: RecordState | undefined): Promise<void> {
    const versions = [...record.versions.values()];
    record.versions.clear();
    record.failedFingerprints.clear();
    if (before === undefined) {
      if (this.records.get(record.name) === record) this.records.delete(record.name);
    } else {
      Object.assign(record, before);
    }
    await Promise.all(versions.map((version) => this.retire(version)));
    this.options.logger.info({ model: record.name }, before === undefined ? 'failed registration forgotten' : 'failed registration rolled back');
  }

  /**
   * Remove the directories made for `record` (see {@link ModelRecord.madeDirs}) that none of its
   * versions serves from: run when an operation on the model ends, by which time the versions it
   * replaced or unloaded have drained (see retire), so nothing reads them any more. The copy of
   * the archive the repository holds now stays, to load again without unpacking. When the
   * model's directory goes, it becomes the serving versions' again (files that loaded nothing), or
   * `<repository>/<name>`.
   */
  private async removeUnusedDirs(record: ModelRecord): Promise<void> {
    if (record.madeDirs.size === 0) return;
    const used = new Set([...record.versions.values()].filter((version) => version.state !== 'UNAVAILABLE').map((version) => version.dir));
    const archive = record.inRepository ? this.archives.get(record.name) : undefined;
    if (archive !== undefined) used.add(archiveCopyDir(this.options.repository, archive));
    for (const dir of [...record.madeDirs]) {
      if (used.has(dir)) continue;
      record.madeDirs.delete(dir);
      if (record.dir === dir) record.dir = [...used][0] ?? join(resolve(this.options.repository), record.name);
      await rm(dir, { recursive: true, force: true }).catch((error: unknown) =>
        this.options.logger.warn({ model: record.name, dir, err: error }, 'cannot remove a model directory no version serves from any more'),
      );
    }
  }

  /** Whether `dir` is a copy unpacked from a repository archive (see archiveCopyDir). */
  private isArchiveCopy(dir: string): boolean {
    return dir.startsWith(join(resolve(this.options.repository), ARCHIVE_CACHE_DIR) + sep);
  }

  private backendFor(config: ModelConfigFile): Backend | undefined {
    const name = config.backend ?? (config.platform === 'fake' ? 'fake' : undefined);
    return name === undefined ? this.options.backends[0] : this.options.backends.find((backend) => backend.name === name);
  }

  /**
   * Names of the models the repository directory holds: model directories, and model archives
   * (unpacked and verified before they load). A directory wins over an archive of the same name.
   */
  private async repositoryNames(): Promise<string[]> {
    try {
      const names = await listModelNames(this.options.repository);
      const archives = await listRepositoryArchives(this.options.repository, (file, reason) =>
        this.options.logger.error({ archive: file, reason }, 'model archive refused'),
      );
      for (const archive of archives) {
        if (names.includes(archive.name)) {
          if (this.shadowedArchives.get(archive.name) !== archive.file) {
            this.options.logger.warn({ model: archive.name, archive: archive.file }, 'a model directory of the same name takes precedence over the archive');
            this.shadowedArchives.set(archive.name, archive.file);
          }
          this.archives.delete(archive.name);
          continue;
        }
        this.shadowedArchives.delete(archive.name);
        this.archives.set(archive.name, archive);
        names.push(archive.name);
      }
      for (const name of [...this.archives.keys()]) if (!archives.some((a) => a.name === name)) this.archives.delete(name);
      for (const name of [...this.shadowedArchives.keys()]) if (!archives.some((a) => a.name === name)) this.shadowedArchives.delete(name);
      return names.sort();
    } catch (error) {
      throw new TesseraError('REPOSITORY_UNAVAILABLE', `cannot read model repository ${resolve(this.options.repository)}: ${(error as Error).message}`, { cause: error });
    }
  }

  private newRecord(name: string, dir: string, inRepository: boolean): ModelRecord {
    return {
      name,
      dir,
      wanted: false,
      inRepository,
      discovered: undefined,
      configOverride: undefined,
      problem: undefined,
      versions: new Map(),
      defaultVersion: undefined,
      failedFingerprints: new Map(),
      madeDirs: new Set(),
      lock: Promise.resolve(),
    };
  }

  /**
   * Run `task` after every earlier operation on the same model has finished. It ends by removing
   * the directories it left unused (versions it retired have drained by then).
   */
  private locked(record: ModelRecord, task: () => Promise<void>): Promise<void> {
    const run = record.lock.then(task, task).finally(() => this.removeUnusedDirs(record));
    record.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

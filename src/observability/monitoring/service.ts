import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { channels } from '../../core/events.js';
import type { ModelLoadedEvent, ModelUnloadedEvent, RequestEndEvent, RequestStartEvent } from '../../core/events.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { compareStrings } from '../../core/order.js';
import type { Tensor } from '../../core/tensor.js';
import { BaselineBuilder, readBaseline, type Baseline } from './baseline.js';
import type { MonitoringConfig } from '../../config/monitoring-config.js';
import { forEachRow, planFeatures, type FeatureLayout } from './features.js';
import { ClassifierTracker, RegressorTracker, looksLikeProbabilities, type OutputSnapshot, type OutputTracker } from './outputs.js';
import { DriftWindow, type WindowSpec } from './window.js';

/** What the service needs to know of models; {@link monitoringSourceFromEngine} builds it from the engine. */
export interface MonitoringSource {
  /** The model's parsed `monitoring:` section; undefined (or enabled: false) = not monitored. */
  monitoringConfig(model: string): MonitoringConfig | undefined;
  /** The model's directory, where its baseline file lives. */
  modelDirectory?(model: string): string | undefined;
  /** Class labels (labels.txt), index = class id. */
  modelLabels?(model: string): readonly string[] | undefined;
}

export interface MonitoringServiceOptions {
  readonly source: MonitoringSource;
  /** Drift alerts are logged here (pino's Logger fits). */
  readonly logger?: Logger;
  /** Clock (epoch ms); tests pass their own. */
  readonly now?: () => number;
}

/** At most this many outputs of one version are summarised. */
const MAX_OUTPUTS = 32;

export type DriftStatus = 'loading_baseline' | 'collecting_baseline' | 'monitoring' | 'no_features';

export interface FeatureDriftSnapshot {
  readonly name: string;
  /** PSI over the window; null until the feature has min_rows values in it. */
  readonly psi: number | null;
  readonly drifted: boolean;
  readonly window: { readonly count: number; readonly non_finite: number; readonly mean: number | null; readonly std: number | null };
  readonly baseline: { readonly count: number; readonly mean: number; readonly std: number; readonly min: number; readonly max: number };
  /** Proportions per bin: baseline (expected) and window (actual); bin i is [edges[i-1], edges[i]). */
  readonly bins: { readonly edges: readonly number[]; readonly expected: readonly number[]; readonly actual: readonly number[] };
}

export interface VersionMonitoringSnapshot {
  readonly model: string;
  readonly version: string;
  /** Requests and rows seen by this version's monitor. */
  readonly requests: number;
  readonly rows: number;
  readonly drift: {
    readonly status: DriftStatus;
    readonly baseline:
      | {
          readonly source: 'file' | 'traffic';
          readonly file: string | null;
          readonly created: string;
          readonly rows: number;
          readonly features: number;
        }
      | null;
    /** While collecting from traffic: requests needed and seen so far. */
    readonly collecting: { readonly requests_needed: number; readonly requests_seen: number } | null;
    readonly window: { readonly kind: 'rows' | 'time'; readonly size: number; readonly buckets: number; readonly rows: number };
    readonly psi_threshold: number;
    readonly psi_clear_threshold: number;
    readonly min_rows: number;
    readonly alert: boolean;
    readonly alert_since: string | null;
    /** Times the alert was raised (threshold crossings). */
    readonly alerts: number;
    readonly max_psi: number | null;
    readonly features: readonly FeatureDriftSnapshot[];
  };
  readonly outputs: readonly OutputSnapshot[];
  readonly notes: readonly string[];
}

export interface ModelMonitoringSnapshot {
  readonly model: string;
  /** Whether the model's config turns monitoring on. */
  readonly enabled: boolean;
  readonly versions: readonly VersionMonitoringSnapshot[];
}

/** What the Prometheus collectors read (see ./metrics.ts). */
export interface MonitoringSeries {
  readonly model: string;
  readonly version: string;
  readonly alert: boolean | undefined;
  readonly psi: readonly { readonly feature: string; readonly value: number }[];
  readonly classifier: ClassifierTracker | undefined;
  readonly label: (index: number) => string;
}

/**
 * Model-quality monitoring: per model version, the distribution of predictions (class counts and
 * confidence for classifiers, value summaries for regressors) and input drift against a baseline
 * (PSI per feature over a sliding window). Listens to requestStart (inputs, read synchronously)
 * and requestEnd (outputs). Work per row is O(features); a model without `monitoring:` costs one
 * map lookup per request. Nothing here throws into the request path.
 */
export class MonitoringService {
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly monitors = new Map<string, VersionMonitor>();
  private readonly configs = new Map<string, MonitoringConfig | null>();
  private readonly baselines = new Map<string, Promise<LoadedBaseline | undefined>>();
  private readonly pending = new Set<Promise<void>>();
  private readonly subscriptions: [string, (message: unknown) => void][] = [];
  private closed = false;

  constructor(private readonly options: MonitoringServiceOptions) {
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.on<RequestStartEvent>(channels.requestStart.name, (event) => {
      const monitor = this.monitorFor(event.model, event.version);
      monitor?.observeInputs(event.inputs, this.now());
    });
    this.on<RequestEndEvent>(channels.requestEnd.name, (event) => {
      if (event.outcome !== 'success' || event.response === undefined || event.version === undefined) return;
      const monitor = this.monitorFor(event.model, event.version);
      monitor?.observeOutputs(event.response.outputs);
    });
    this.on<ModelLoadedEvent>(channels.modelLoaded.name, (event) => {
      if (event.ok) this.forget(event.model, event.version);
    });
    // A copy a reload replaced: the load event above already started the new copy afresh, and
    // what it has seen since (while the old copy drained) is the new copy's.
    this.on<ModelUnloadedEvent>(channels.modelUnloaded.name, (event) => {
      if (!event.replaced) this.forget(event.model, event.version);
    });
  }

  /**
   * The JSON of `GET /v2/models/{model}[/versions/{version}]/monitoring`: every monitored version
   * of the model (or just `version`). Versions appear once they have served a request.
   */
  snapshot(model: string, version?: string): ModelMonitoringSnapshot {
    // Not cached: the name may come straight from a URL.
    const config = this.configOf(model, false);
    const versions: VersionMonitoringSnapshot[] = [];
    for (const monitor of this.monitors.values()) {
      if (monitor.model !== model || (version !== undefined && monitor.version !== version)) continue;
      monitor.refresh(this.now());
      versions.push(monitor.snapshot());
    }
    versions.sort((a, b) => Number(a.version) - Number(b.version) || compareStrings(a.version, b.version));
    return { model, enabled: config !== undefined, versions };
  }

  /** Models with at least one monitored version. */
  models(): string[] {
    return [...new Set([...this.monitors.values()].map((m) => m.model))].sort();
  }

  /** Slide time windows and re-evaluate every monitor (the metrics collectors call this at scrape). */
  refresh(): void {
    const now = this.now();
    for (const monitor of this.monitors.values()) monitor.refresh(now);
  }

  /** Current values for the Prometheus collectors. */
  series(): MonitoringSeries[] {
    return [...this.monitors.values()].map((m) => m.series());
  }

  /** Resolves when every baseline file read so far has been applied (tests; start-up checks). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** Forget a model's cached config, baseline and monitors (e.g. after `tessera baseline` rewrote its file). */
  reset(model: string): void {
    this.configs.delete(model);
    this.baselines.delete(model);
    for (const [key, monitor] of this.monitors) if (monitor.model === model) this.monitors.delete(key);
  }

  /** Stop listening; idempotent. */
  close(): void {
    this.closed = true;
    for (const [name, handler] of this.subscriptions.splice(0)) unsubscribe(name, handler);
  }

  private monitorFor(model: string, version: string): VersionMonitor | undefined {
    // A model known to be unmonitored: one map lookup, nothing allocated.
    if (this.configs.get(model) === null) return undefined;
    const key = `${model}\u0000${version}`;
    const existing = this.monitors.get(key);
    if (existing !== undefined) return existing;
    const config = this.configOf(model);
    if (config === undefined) return undefined;
    let labels: readonly string[] | undefined;
    try {
      labels = this.options.source.modelLabels?.(model);
    } catch {
      labels = undefined;
    }
    const monitor = new VersionMonitor(model, version, config, labels, this.logger, this.now());
    this.monitors.set(key, monitor);
    const loading = this.baselineOf(model, config).then(
      (loaded) => {
        if (this.monitors.get(key) === monitor) monitor.baselineLoaded(loaded, this.now());
      },
      () => undefined,
    );
    this.pending.add(loading);
    void loading.finally(() => this.pending.delete(loading));
    return monitor;
  }

  private configOf(model: string, cache = true): MonitoringConfig | undefined {
    const cached = this.configs.get(model);
    if (cached !== undefined) return cached ?? undefined;
    let config: MonitoringConfig | undefined;
    try {
      config = this.options.source.monitoringConfig(model);
    } catch {
      config = undefined;
    }
    const effective = config !== undefined && config.enabled ? config : undefined;
    if (cache) this.configs.set(model, effective ?? null);
    return effective;
  }

  private baselineOf(model: string, config: MonitoringConfig): Promise<LoadedBaseline | undefined> {
    let promise = this.baselines.get(model);
    if (promise === undefined) {
      promise = this.readBaselineFile(model, config);
      this.baselines.set(model, promise);
    }
    return promise;
  }

  private async readBaselineFile(model: string, config: MonitoringConfig): Promise<LoadedBaseline | undefined> {
    let dir: string | undefined;
    try {
      dir = this.options.source.modelDirectory?.(model);
    } catch {
      dir = undefined;
    }
    if (dir === undefined) return undefined;
    const path = join(dir, config.baseline_file);
    try {
      return { baseline: await readBaseline(path), path };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.logger.warn({ model, file: path, err: error }, `drift baseline ${path} is unusable; the baseline will come from the first ${config.baseline_requests} requests`);
      }
      return undefined;
    }
  }

  private forget(model: string, version: string): void {
    this.configs.delete(model);
    this.baselines.delete(model);
    this.monitors.delete(`${model}\u0000${version}`);
  }

  private on<E>(name: string | symbol, handler: (event: E) => void): void {
    const listener = (message: unknown): void => {
      if (this.closed) return;
      try {
        handler(message as E);
      } catch (error) {
        // Monitoring must never fail a request.
        this.logger.error({ err: error }, 'model monitoring failed on an event');
      }
    };
    subscribe(name, listener);
    this.subscriptions.push([String(name), listener]);
  }
}

interface LoadedBaseline {
  readonly baseline: Baseline;
  readonly path: string;
}

/** One model version's monitor. */
class VersionMonitor {
  private requests = 0;
  private rows = 0;
  private phase: DriftStatus = 'loading_baseline';
  private layout: FeatureLayout | undefined;
  private readonly notes = new Set<string>();
  private skippedInputs = 0;
  // Baseline collection from traffic.
  private builder: BaselineBuilder | undefined;
  private collectedRequests = 0;
  private scratch = new Float64Array(0);
  // Drift.
  private baseline: { readonly source: 'file' | 'traffic'; readonly file: string | null; readonly data: Baseline } | undefined;
  private window: DriftWindow | undefined;
  /** Runtime feature index → window feature index, -1 when the baseline lacks it. */
  private featureMap = new Int32Array(0);
  private windowFeatures: { readonly name: string; readonly baseline: Baseline['features'][number] }[] = [];
  private psi = new Float64Array(0);
  private alert = false;
  private alertSince: number | undefined;
  private alerts = 0;
  private readonly outputs = new Map<string, OutputTracker>();
  private readonly spec: WindowSpec;
  private readonly minRows: number;
  private readonly clearThreshold: number;
  // Bound once: no closure allocation per request.
  private readonly collectValue = (f: number, v: number): void => {
    this.scratch[f] = v;
  };
  private readonly collectRow = (): void => {
    this.builder?.add(this.scratch);
    this.scratch.fill(Number.NaN);
    this.rows++;
  };
  private readonly windowValue = (f: number, v: number): void => {
    const w = this.featureMap[f] as number;
    if (w >= 0) this.window!.add(w, v);
  };
  private readonly windowRow = (): void => {
    this.rows++;
    const window = this.window!;
    if (window.endRow()) {
      this.evaluate(this.clock);
      window.rotate();
    }
  };
  private clock = 0;

  constructor(
    readonly model: string,
    readonly version: string,
    private readonly config: MonitoringConfig,
    private readonly labels: readonly string[] | undefined,
    private readonly logger: Logger,
    now: number,
  ) {
    this.clock = now;
    this.spec =
      config.window_seconds !== undefined
        ? { kind: 'time', seconds: config.window_seconds, buckets: config.window_buckets }
        : { kind: 'rows', rows: config.window_rows, buckets: config.window_buckets };
    this.minRows = config.min_rows ?? (this.spec.kind === 'rows' ? Math.max(1, Math.floor(config.window_rows / 2)) : 100);
    this.clearThreshold = config.psi_clear_threshold ?? Number((0.8 * config.psi_threshold).toPrecision(12));
  }

  readonly label = (index: number): string => this.labels?.[index] ?? String(index);

  observeInputs(inputs: readonly Tensor[], now: number): void {
    this.clock = now;
    this.requests++;
    if (this.layout === undefined) {
      this.layout = planFeatures(inputs, this.config.max_features, this.config.features);
      for (const note of this.layout.notes) this.notes.add(note);
      if (this.layout.names.length === 0) {
        this.phase = 'no_features';
        this.notes.add('no input can be monitored for drift');
      } else {
        this.scratch = new Float64Array(this.layout.names.length).fill(Number.NaN);
        this.builder = new BaselineBuilder({
          bins: this.config.bins,
          featureNames: this.layout.names,
          maxSampleRows: this.config.baseline_max_rows,
          source: 'traffic',
        });
      }
    }
    const layout = this.layout;
    switch (this.phase) {
      case 'no_features':
        return;
      case 'loading_baseline':
      case 'collecting_baseline': {
        // The builder keeps a bounded reservoir sample (baseline_max_rows rows).
        const result = forEachRow(layout, inputs, this.collectValue, this.collectRow);
        this.skippedInputs += result.skippedInputs;
        this.collectedRequests++;
        if (this.phase === 'collecting_baseline' && this.collectedRequests >= this.config.baseline_requests) this.finishCollecting(now);
        return;
      }
      case 'monitoring': {
        const window = this.window!;
        if (window.spec.kind === 'time' && window.due(now)) {
          this.evaluate(now);
          window.advance(now);
        }
        const result = forEachRow(layout, inputs, this.windowValue, this.windowRow);
        this.skippedInputs += result.skippedInputs;
        return;
      }
    }
  }

  observeOutputs(outputs: readonly Tensor[]): void {
    for (const tensor of outputs) {
      if (tensor.datatype === 'BYTES') continue;
      let tracker = this.outputs.get(tensor.name);
      if (tracker === undefined) {
        if (this.config.outputs !== undefined && !this.config.outputs.includes(tensor.name)) continue;
        if (this.outputs.size >= MAX_OUTPUTS) continue;
        const task = this.config.task === 'auto' ? (looksLikeProbabilities(tensor) ? 'classifier' : 'regressor') : this.config.task;
        tracker = task === 'classifier' ? new ClassifierTracker(tensor.name, this.config.max_classes) : new RegressorTracker(tensor.name);
        this.outputs.set(tensor.name, tracker);
      }
      tracker.observe(tensor);
    }
  }

  /** The baseline file read finished (undefined: none or unusable → collect from traffic). */
  baselineLoaded(loaded: LoadedBaseline | undefined, now: number): void {
    if (this.phase !== 'loading_baseline') return;
    if (loaded !== undefined) {
      this.activate({ source: 'file', file: loaded.path, data: loaded.baseline }, now);
      this.builder = undefined;
      return;
    }
    this.phase = 'collecting_baseline';
    if (this.layout !== undefined && this.collectedRequests >= this.config.baseline_requests) this.finishCollecting(now);
  }

  refresh(now: number): void {
    this.clock = now;
    const window = this.window;
    if (this.phase !== 'monitoring' || window === undefined) return;
    if (window.spec.kind === 'time' && window.due(now)) {
      this.evaluate(now);
      window.advance(now);
    }
    this.evaluate(now);
  }

  series(): MonitoringSeries {
    let classifier: ClassifierTracker | undefined;
    for (const tracker of this.outputs.values()) {
      if (tracker instanceof ClassifierTracker) {
        classifier = tracker;
        break;
      }
    }
    const psi: { feature: string; value: number }[] = [];
    for (let w = 0; w < this.windowFeatures.length; w++) {
      const value = this.psi[w] as number;
      if (Number.isFinite(value)) psi.push({ feature: this.windowFeatures[w]!.name, value });
    }
    return {
      model: this.model,
      version: this.version,
      alert: this.phase === 'monitoring' ? this.alert : undefined,
      psi,
      classifier,
      label: this.label,
    };
  }

  snapshot(): VersionMonitoringSnapshot {
    const window = this.window;
    const features: FeatureDriftSnapshot[] = this.windowFeatures.map((feature, w) => {
      const psi = this.psi[w] as number;
      const count = window?.count(w) ?? 0;
      const base = feature.baseline;
      return {
        name: feature.name,
        psi: Number.isFinite(psi) ? psi : null,
        drifted: Number.isFinite(psi) && psi >= this.config.psi_threshold,
        window: {
          count,
          non_finite: window?.nonFiniteCount(w) ?? 0,
          mean: count > 0 && window !== undefined ? window.mean(w) : null,
          std: count > 1 && window !== undefined ? window.std(w) : null,
        },
        baseline: { count: base.count, mean: base.mean, std: base.std, min: base.min, max: base.max },
        bins: { edges: base.edges, expected: base.proportions, actual: window?.proportions(w) ?? [] },
      };
    });
    let maxPsi: number | null = null;
    for (const f of features) if (f.psi !== null && (maxPsi === null || f.psi > maxPsi)) maxPsi = f.psi;
    const notes = [...this.notes];
    if (this.skippedInputs > 0) notes.push(`${this.skippedInputs} input tensors were skipped because their shape differed from the first request's`);
    if (this.labels === undefined && [...this.outputs.values()].some((t) => t.task === 'classifier')) {
      notes.push('the model has no labels file: classes are reported by index');
    }
    if (this.outputs.size >= MAX_OUTPUTS) notes.push(`only the first ${MAX_OUTPUTS} outputs are summarised`);
    return {
      model: this.model,
      version: this.version,
      requests: this.requests,
      rows: this.rows,
      drift: {
        status: this.phase,
        baseline:
          this.baseline === undefined
            ? null
            : {
                source: this.baseline.source,
                file: this.baseline.file,
                created: this.baseline.data.created,
                rows: this.baseline.data.rows,
                features: this.baseline.data.features.length,
              },
        collecting:
          this.phase === 'collecting_baseline' || this.phase === 'loading_baseline'
            ? { requests_needed: this.config.baseline_requests, requests_seen: this.collectedRequests }
            : null,
        window: {
          kind: this.spec.kind,
          size: this.spec.kind === 'rows' ? this.spec.rows : this.spec.seconds,
          buckets: this.spec.buckets,
          rows: window?.rowCount ?? 0,
        },
        psi_threshold: this.config.psi_threshold,
        psi_clear_threshold: this.clearThreshold,
        min_rows: this.minRows,
        alert: this.alert,
        alert_since: this.alertSince === undefined ? null : new Date(this.alertSince).toISOString(),
        alerts: this.alerts,
        max_psi: maxPsi,
        features,
      },
      outputs: [...this.outputs.values()].map((tracker) => tracker.snapshot(this.label)),
      notes,
    };
  }

  private finishCollecting(now: number): void {
    const builder = this.builder;
    this.builder = undefined;
    if (builder === undefined || builder.rowCount === 0) {
      this.phase = 'no_features';
      this.notes.add('no rows were collected for the baseline');
      return;
    }
    const data = builder.finish();
    this.activate({ source: 'traffic', file: null, data }, now);
    this.scratch = new Float64Array(0);
  }

  private activate(baseline: NonNullable<VersionMonitor['baseline']>, now: number): void {
    const names = this.layout?.names ?? [];
    const byName = new Map(baseline.data.features.map((f) => [f.name, f]));
    const anyByName = names.some((name) => byName.has(name));
    const positional = !anyByName && baseline.data.features.length === names.length;
    if (positional && names.length > 0 && baseline.source === 'file') {
      this.notes.add('baseline feature names differ from the model\'s feature names: features matched by position (set monitoring.features to the baseline\'s names)');
    }
    this.featureMap = new Int32Array(names.length).fill(-1);
    this.windowFeatures = [];
    const missing: string[] = [];
    names.forEach((name, i) => {
      const feature = positional ? baseline.data.features[i] : byName.get(name);
      if (feature === undefined) {
        missing.push(name);
        return;
      }
      this.featureMap[i] = this.windowFeatures.length;
      this.windowFeatures.push({ name, baseline: feature });
    });
    if (missing.length > 0) {
      const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? `, ... (${missing.length} in all)` : '');
      this.notes.add(`no baseline for features ${shown}: not monitored for drift`);
    }
    this.baseline = baseline;
    if (this.windowFeatures.length === 0) {
      this.phase = 'no_features';
      this.notes.add('the baseline has none of the model\'s features');
      return;
    }
    this.window = new DriftWindow(
      this.windowFeatures.map((f) => ({ edges: f.baseline.edges, expected: f.baseline.proportions })),
      this.spec,
      now,
    );
    this.psi = new Float64Array(this.windowFeatures.length).fill(Number.NaN);
    this.phase = 'monitoring';
  }

  /** Recompute PSI per feature and raise or clear the alert: one log line per crossing. */
  private evaluate(now: number): void {
    const window = this.window;
    if (window === undefined) return;
    let evaluated = 0;
    let above = 0;
    let worst = -1;
    for (let w = 0; w < this.windowFeatures.length; w++) {
      const value = window.count(w) >= this.minRows ? window.psi(w) : Number.NaN;
      this.psi[w] = value;
      if (!Number.isFinite(value)) continue;
      evaluated++;
      if (value >= this.config.psi_threshold) above++;
      if (worst < 0 || value > (this.psi[worst] as number)) worst = w;
    }
    if (evaluated === 0) {
      // A time window that traffic no longer fills holds no evidence either way: the alert
      // clears rather than stand for data that has slid out (a row window only changes with
      // traffic, so it never gets here once filled).
      if (this.alert && window.spec.kind === 'time') {
        this.alert = false;
        this.alertSince = undefined;
        this.logger.info(
          { model: this.model, version: this.version, window_rows: window.rowCount, min_rows: this.minRows },
          `input drift cleared: model '${this.model}' version ${this.version}: too little traffic in the last ${window.spec.seconds} s to judge`,
        );
      }
      return;
    }
    if (!this.alert && above > 0) {
      this.alert = true;
      this.alertSince = now;
      this.alerts++;
      const drifted = this.windowFeatures.filter((_, w) => (this.psi[w] as number) >= this.config.psi_threshold).map((f) => f.name);
      this.logger.warn(
        {
          model: this.model,
          version: this.version,
          feature: this.windowFeatures[worst]!.name,
          psi: this.psi[worst],
          threshold: this.config.psi_threshold,
          features: drifted.slice(0, 20),
          window_rows: window.rowCount,
        },
        `input drift: model '${this.model}' version ${this.version}: PSI of '${this.windowFeatures[worst]!.name}' is ${(this.psi[worst] as number).toFixed(3)} (threshold ${this.config.psi_threshold}); ${drifted.length} feature(s) drifted`,
      );
    } else if (this.alert) {
      let clear = true;
      for (let w = 0; w < this.windowFeatures.length; w++) {
        const value = this.psi[w] as number;
        if (Number.isFinite(value) && value >= this.clearThreshold) clear = false;
      }
      if (clear) {
        this.alert = false;
        this.alertSince = undefined;
        this.logger.info(
          { model: this.model, version: this.version, max_psi: this.psi[worst], clear_threshold: this.clearThreshold },
          `input drift cleared: model '${this.model}' version ${this.version}`,
        );
      }
    }
  }
}

/**
 * A {@link MonitoringSource} over the engine: directory and labels from the engine, the
 * `monitoring:` section from `configOf` (the lead's accessor of the model's parsed config).
 */
export function monitoringSourceFromEngine(
  engine: {
    describeModels(name?: string): readonly { readonly name: string; readonly directory: string }[];
    modelLabels(name: string): readonly string[] | undefined;
  },
  configOf: (model: string) => MonitoringConfig | undefined,
): MonitoringSource {
  return {
    monitoringConfig: configOf,
    modelDirectory: (model) => engine.describeModels(model)[0]?.directory,
    modelLabels: (model) => engine.modelLabels(model),
  };
}



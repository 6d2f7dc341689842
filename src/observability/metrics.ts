import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type {
  BatchExecutedEvent,
  ModelLoadedEvent,
  ModelUnloadedEvent,
  RequestEndEvent,
  RequestScheduledEvent,
} from '../core/events.js';
import { channels } from '../core/events.js';
import { SeriesHistogram, type HistogramSeries } from './series-histogram.js';

/** Per-version gauges read at scrape time. The engine's describeModels() satisfies this. */
export interface ModelGaugeSource {
  describeModels(): readonly {
    readonly name: string;
    readonly versions: readonly { readonly version: string; readonly state: string; readonly queueDepth: number; readonly inFlight: number }[];
  }[];
}

export interface MetricsOptions {
  /** Buckets (seconds) of the request, queue and compute histograms. */
  readonly latencyBuckets?: readonly number[];
  /** Include process metrics (CPU, RSS, heap, event-loop lag). */
  readonly processMetrics?: boolean;
}

/** Millisecond-level serving: 0.5 ms to 10 s. */
export const DEFAULT_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/**
 * Counts of one histogram series, kept by the exporter and read by prom-client at scrape time
 * ({@link SeriesHistogram}): an observation is a few array writes, no label hashing.
 */
class HistogramCounts implements HistogramSeries {
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.buckets = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    // prom-client refuses non-finite values by throwing; a subscriber must never throw.
    if (!Number.isFinite(value)) return;
    this.sum += value;
    this.count++;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        this.buckets[i] = (this.buckets[i] as number) + 1;
        return;
      }
    }
    // Above the last bound: counted in +Inf (= count) only, as prom-client does.
  }
}

/** Per (model, version, protocol): answered requests by outcome and their durations. */
interface RequestSeries {
  readonly labels: { readonly model: string; readonly version: string; readonly protocol: string };
  readonly duration: HistogramCounts;
  readonly outcomes: Map<string, number>;
}

/** Per (model, version): scheduler and batch figures. Counters are undefined until first counted. */
interface VersionSeries {
  readonly labels: { readonly model: string; readonly version: string };
  readonly queue: HistogramCounts;
  readonly compute: HistogramCounts;
  readonly batchSize: HistogramCounts;
  inferences: number | undefined;
  executions: number | undefined;
}

/**
 * The Prometheus exporter: the only place that knows prom-client. It listens to the named
 * channels the engine and scheduler publish on and reads queue gauges at scrape time. Labels
 * are bounded: model and version come from the repository (a request for an unknown model is
 * counted under model "_unknown"), outcome from the error catalog, protocol from the adapters.
 *
 * The per-request series (requests, their durations, queue and compute time, batch sizes,
 * inferences, executions) are counted in plain maps and arrays of the exporter and handed to
 * prom-client only when /metrics is scraped: prom-client's `inc`/`observe` validate and hash the
 * label set on every call, which on a small model cost several percent of the server's
 * throughput (bench/observability.ts).
 */
export class MetricsExporter {
  readonly registry = new Registry();
  private readonly loads: Counter<'model' | 'version' | 'outcome'>;
  private readonly unloads: Counter<'model' | 'version'>;
  private readonly loadDuration: Histogram<'model'>;
  private readonly subscriptions: [string, (message: unknown) => void][] = [];
  private readonly buckets: readonly number[];
  /** model → version → protocol → series. */
  private readonly requestSeries = new Map<string, Map<string, Map<string, RequestSeries>>>();
  /** model → version → series. */
  private readonly versionSeries = new Map<string, Map<string, VersionSeries>>();

  constructor(source: ModelGaugeSource, options: MetricsOptions = {}) {
    const buckets = [...(options.latencyBuckets ?? DEFAULT_LATENCY_BUCKETS)];
    this.buckets = buckets;
    const registers = [this.registry];
    const requests = (): RequestSeries[] => [...this.requestSeries.values()].flatMap((versions) => [...versions.values()].flatMap((protocols) => [...protocols.values()]));
    const versions = (): VersionSeries[] => [...this.versionSeries.values()].flatMap((byVersion) => [...byVersion.values()]);
    new Counter({
      name: 'tessera_requests_total',
      help: 'Inference requests answered, by model, version, protocol and outcome (success or error code).',
      labelNames: ['model', 'version', 'protocol', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const series of requests()) {
          for (const [outcome, count] of series.outcomes) this.inc({ ...series.labels, outcome }, count);
        }
      },
    });
    new SeriesHistogram(
      {
        name: 'tessera_request_duration_seconds',
        help: 'Time from the engine receiving a request to its answer.',
        labelNames: ['model', 'version', 'protocol'],
        buckets,
        registers,
      },
      () => requests().map((series) => series.duration),
    );
    new SeriesHistogram(
      {
        name: 'tessera_queue_duration_seconds',
        help: 'Time requests waited in the scheduler queue.',
        labelNames: ['model', 'version'],
        buckets,
        registers,
      },
      () => versions().flatMap((series) => (series.queue.count > 0 ? [series.queue] : [])),
    );
    new SeriesHistogram(
      {
        name: 'tessera_compute_duration_seconds',
        help: 'Time of the batch each request ran in: assembly, inference and splitting.',
        labelNames: ['model', 'version'],
        buckets,
        registers,
      },
      () => versions().flatMap((series) => (series.compute.count > 0 ? [series.compute] : [])),
    );
    new SeriesHistogram(
      {
        name: 'tessera_batch_size',
        help: 'Items (rows) per executed batch.',
        labelNames: ['model', 'version'],
        buckets: BATCH_SIZE_BUCKETS,
        registers,
      },
      () => versions().flatMap((series) => (series.batchSize.count > 0 ? [series.batchSize] : [])),
    );
    new Counter({
      name: 'tessera_inferences_total',
      help: 'Items (rows) inferred. Divide by tessera_executions_total for the mean batch size.',
      labelNames: ['model', 'version'],
      registers,
      collect() {
        this.reset();
        for (const series of versions()) if (series.inferences !== undefined) this.inc(series.labels, series.inferences);
      },
    });
    new Counter({
      name: 'tessera_executions_total',
      help: 'Batches executed by model instances.',
      labelNames: ['model', 'version'],
      registers,
      collect() {
        this.reset();
        for (const series of versions()) if (series.executions !== undefined) this.inc(series.labels, series.executions);
      },
    });
    this.loads = new Counter({
      name: 'tessera_model_loads_total',
      help: 'Model version loads, by outcome (success or failure).',
      labelNames: ['model', 'version', 'outcome'],
      registers,
    });
    this.unloads = new Counter({
      name: 'tessera_model_unloads_total',
      help: 'Model version unloads.',
      labelNames: ['model', 'version'],
      registers,
    });
    this.loadDuration = new Histogram({
      name: 'tessera_model_load_duration_seconds',
      help: 'Time to load and warm up a model version.',
      labelNames: ['model'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    const gauges = (name: string, help: string, pick: (v: { state: string; queueDepth: number; inFlight: number }) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['model', 'version'],
        registers,
        collect() {
          this.reset();
          for (const model of source.describeModels()) {
            for (const version of model.versions) this.set({ model: model.name, version: version.version }, pick(version));
          }
        },
      });
    };
    gauges('tessera_queue_depth', 'Requests waiting in the version queue.', (v) => v.queueDepth);
    gauges('tessera_inflight_requests', 'Requests whose batch is executing.', (v) => v.inFlight);
    gauges('tessera_model_ready', '1 when the model version is READY, else 0.', (v) => (v.state === 'READY' ? 1 : 0));
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'tessera_' });

    this.on<RequestEndEvent>(channels.requestEnd.name, (event) => {
      const model = event.outcome !== 'MODEL_NOT_FOUND' ? event.model : '_unknown';
      const series = this.requestSeriesOf(model, event.version ?? '', event.protocol);
      series.outcomes.set(event.outcome, (series.outcomes.get(event.outcome) ?? 0) + 1);
      series.duration.observe(event.durationSeconds);
    });
    this.on<RequestScheduledEvent>(channels.requestScheduled.name, (event) => {
      const series = this.versionSeriesOf(event.model, event.version);
      series.queue.observe(event.queueSeconds);
      series.compute.observe(event.computeSeconds);
    });
    this.on<BatchExecutedEvent>(channels.batchExecuted.name, (event) => {
      const series = this.versionSeriesOf(event.model, event.version);
      series.executions = (series.executions ?? 0) + 1;
      if (!event.ok) return;
      series.inferences = (series.inferences ?? 0) + event.rows;
      series.batchSize.observe(event.rows);
    });
    this.on<ModelLoadedEvent>(channels.modelLoaded.name, (event) => {
      this.loads.inc({ model: event.model, version: event.version, outcome: event.ok ? 'success' : 'failure' });
      this.loadDuration.observe({ model: event.model }, event.durationSeconds);
    });
    this.on<ModelUnloadedEvent>(channels.modelUnloaded.name, (event) => {
      this.unloads.inc({ model: event.model, version: event.version });
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for a scrape. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stop listening; idempotent. */
  close(): void {
    for (const [name, handler] of this.subscriptions.splice(0)) unsubscribe(name, handler);
  }

  private requestSeriesOf(model: string, version: string, protocol: string): RequestSeries {
    let byVersion = this.requestSeries.get(model);
    if (byVersion === undefined) this.requestSeries.set(model, (byVersion = new Map()));
    let byProtocol = byVersion.get(version);
    if (byProtocol === undefined) byVersion.set(version, (byProtocol = new Map()));
    let series = byProtocol.get(protocol);
    if (series === undefined) {
      const labels = { model, version, protocol };
      series = { labels, duration: new HistogramCounts(labels, this.buckets), outcomes: new Map() };
      byProtocol.set(protocol, series);
    }
    return series;
  }

  private versionSeriesOf(model: string, version: string): VersionSeries {
    let byVersion = this.versionSeries.get(model);
    if (byVersion === undefined) this.versionSeries.set(model, (byVersion = new Map()));
    let series = byVersion.get(version);
    if (series === undefined) {
      const labels = { model, version };
      series = {
        labels,
        queue: new HistogramCounts(labels, this.buckets),
        compute: new HistogramCounts(labels, this.buckets),
        batchSize: new HistogramCounts(labels, BATCH_SIZE_BUCKETS),
        inferences: undefined,
        executions: undefined,
      };
      byVersion.set(version, series);
    }
    return series;
  }

  private on<E>(name: string | symbol, handler: (event: E) => void): void {
    const listener = (message: unknown): void => handler(message as E);
    subscribe(name, listener);
    this.subscriptions.push([String(name), listener]);
  }
}

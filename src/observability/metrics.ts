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
 * The Prometheus exporter: the only place that knows prom-client. It listens to the named
 * channels the engine and scheduler publish on and reads queue gauges at scrape time. Labels
 * are bounded: model and version come from the repository (a request for an unknown model is
 * counted under model "_unknown"), outcome from the error catalog, protocol from the adapters.
 */
export class MetricsExporter {
  readonly registry = new Registry();
  private readonly requests: Counter<'model' | 'version' | 'protocol' | 'outcome'>;
  private readonly requestDuration: Histogram<'model' | 'version' | 'protocol'>;
  private readonly queueDuration: Histogram<'model' | 'version'>;
  private readonly computeDuration: Histogram<'model' | 'version'>;
  private readonly batchSize: Histogram<'model' | 'version'>;
  private readonly inferences: Counter<'model' | 'version'>;
  private readonly executions: Counter<'model' | 'version'>;
  private readonly loads: Counter<'model' | 'version' | 'outcome'>;
  private readonly unloads: Counter<'model' | 'version'>;
  private readonly loadDuration: Histogram<'model'>;
  private readonly subscriptions: [string, (message: unknown) => void][] = [];

  constructor(source: ModelGaugeSource, options: MetricsOptions = {}) {
    const buckets = [...(options.latencyBuckets ?? DEFAULT_LATENCY_BUCKETS)];
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'tessera_requests_total',
      help: 'Inference requests answered, by model, version, protocol and outcome (success or error code).',
      labelNames: ['model', 'version', 'protocol', 'outcome'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'tessera_request_duration_seconds',
      help: 'Time from the engine receiving a request to its answer.',
      labelNames: ['model', 'version', 'protocol'],
      buckets,
      registers,
    });
    this.queueDuration = new Histogram({
      name: 'tessera_queue_duration_seconds',
      help: 'Time requests waited in the scheduler queue.',
      labelNames: ['model', 'version'],
      buckets,
      registers,
    });
    this.computeDuration = new Histogram({
      name: 'tessera_compute_duration_seconds',
      help: "Time of the batch each request ran in: assembly, inference and splitting.",
      labelNames: ['model', 'version'],
      buckets,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'tessera_batch_size',
      help: 'Items (rows) per executed batch.',
      labelNames: ['model', 'version'],
      buckets: BATCH_SIZE_BUCKETS,
      registers,
    });
    this.inferences = new Counter({
      name: 'tessera_inferences_total',
      help: 'Items (rows) inferred. Divide by tessera_executions_total for the mean batch size.',
      labelNames: ['model', 'version'],
      registers,
    });
    this.executions = new Counter({
      name: 'tessera_executions_total',
      help: 'Batches executed by model instances.',
      labelNames: ['model', 'version'],
      registers,
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
      const known = event.outcome !== 'MODEL_NOT_FOUND';
      const labels = { model: known ? event.model : '_unknown', version: event.version ?? '', protocol: event.protocol };
      this.requests.inc({ ...labels, outcome: event.outcome });
      this.requestDuration.observe(labels, event.durationSeconds);
    });
    this.on<RequestScheduledEvent>(channels.requestScheduled.name, (event) => {
      const labels = { model: event.model, version: event.version };
      this.queueDuration.observe(labels, event.queueSeconds);
      this.computeDuration.observe(labels, event.computeSeconds);
    });
    this.on<BatchExecutedEvent>(channels.batchExecuted.name, (event) => {
      const labels = { model: event.model, version: event.version };
      this.executions.inc(labels);
      if (!event.ok) return;
      this.inferences.inc(labels, event.rows);
      this.batchSize.observe(labels, event.rows);
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

  private on<E>(name: string | symbol, handler: (event: E) => void): void {
    const listener = (message: unknown): void => handler(message as E);
    subscribe(name, listener);
    this.subscriptions.push([String(name), listener]);
  }
}

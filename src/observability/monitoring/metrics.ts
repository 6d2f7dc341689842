import { Counter, Gauge, Histogram, type HistogramConfiguration, type Registry } from 'prom-client';
import { CONFIDENCE_BUCKETS, OTHER_CLASS } from './outputs.js';
import type { MonitoringService } from './service.js';

/** One labelled series of a histogram whose counts live elsewhere. */
export interface HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  /** Non-cumulative counts per bucket of the histogram's `buckets`. */
  readonly buckets: ArrayLike<number>;
  readonly sum: number;
  readonly count: number;
}

type HistogramData = Awaited<ReturnType<Histogram<string>['get']>>;

/**
 * A Prometheus histogram whose bucket counts are kept by its owner (read at scrape time), so
 * the request path never calls prom-client. The exposition shape is prom-client's own: a twin
 * histogram that is never observed supplies name, help and type.
 */
export class SeriesHistogram extends Histogram<string> {
  private readonly twin: Histogram<string>;
  private readonly bounds: readonly number[];
  private readonly metricName: string;

  constructor(
    config: Omit<HistogramConfiguration<string>, 'buckets'> & { readonly buckets: readonly number[] },
    private readonly read: () => readonly HistogramSeries[],
  ) {
    super({ ...config, buckets: [...config.buckets] });
    this.twin = new Histogram({ ...config, buckets: [...config.buckets], registers: [] });
    this.bounds = config.buckets;
    this.metricName = config.name;
  }

  override async get(): Promise<HistogramData> {
    const base = await this.twin.get();
    const values: HistogramData['values'] = [];
    for (const series of this.read()) {
      let cumulative = 0;
      this.bounds.forEach((le, b) => {
        cumulative += series.buckets[b] ?? 0;
        values.push({ metricName: `${this.metricName}_bucket`, labels: { ...series.labels, le }, value: cumulative });
      });
      values.push({ metricName: `${this.metricName}_bucket`, labels: { ...series.labels, le: '+Inf' }, value: series.count });
      values.push({ metricName: `${this.metricName}_sum`, labels: { ...series.labels }, value: series.sum });
      values.push({ metricName: `${this.metricName}_count`, labels: { ...series.labels }, value: series.count });
    }
    return { ...base, values };
  }

  /** What the registry renders text from (prom-client calls it when present). */
  getForPromString(): Promise<HistogramData> {
    return this.get();
  }
}

/**
 * Add the monitoring metrics to the exporter's registry (`exporter.registry`). Values are read
 * from the service at scrape time:
 *  - tessera_drift_psi{model,version,feature}            gauge
 *  - tessera_drift_alert{model,version}                   gauge, 1 while drifted
 *  - tessera_prediction_class_total{model,version,class}  counter (first classifier output)
 *  - tessera_prediction_confidence{model,version}         histogram (max probability)
 */
export function registerMonitoringMetrics(registry: Registry, service: MonitoringService): void {
  const registers = [registry];
  new Gauge({
    name: 'tessera_drift_psi',
    help: 'Population Stability Index of an input feature over the drift window, against the baseline.',
    labelNames: ['model', 'version', 'feature'],
    registers,
    collect() {
      service.refresh();
      this.reset();
      for (const series of service.series()) {
        for (const { feature, value } of series.psi) this.set({ model: series.model, version: series.version, feature }, value);
      }
    },
  });
  new Gauge({
    name: 'tessera_drift_alert',
    help: '1 while a feature of the model version has drifted past its PSI threshold, else 0.',
    labelNames: ['model', 'version'],
    registers,
    collect() {
      this.reset();
      for (const series of service.series()) {
        if (series.alert !== undefined) this.set({ model: series.model, version: series.version }, series.alert ? 1 : 0);
      }
    },
  });
  new Counter({
    name: 'tessera_prediction_class_total',
    help: 'Predicted (argmax) classes of the first classification output, by class label (index when the model has no labels).',
    labelNames: ['model', 'version', 'class'],
    registers,
    collect() {
      this.reset();
      for (const series of service.series()) {
        const classifier = series.classifier;
        if (classifier === undefined) continue;
        const counts = classifier.classCounts();
        const other = counts.length - 1;
        for (let i = 0; i < counts.length; i++) {
          const count = counts[i] as number;
          if (count > 0) this.inc({ model: series.model, version: series.version, class: i === other ? OTHER_CLASS : series.label(i) }, count);
        }
      }
    },
  });
  new SeriesHistogram(
    {
      name: 'tessera_prediction_confidence',
      help: 'Confidence (highest class probability) of classification predictions.',
      labelNames: ['model', 'version'],
      buckets: CONFIDENCE_BUCKETS,
      registers,
    },
    () =>
      service.series().flatMap((series) => {
        if (series.classifier === undefined) return [];
        const { buckets, sum, count } = series.classifier.confidence();
        return [{ labels: { model: series.model, version: series.version }, buckets, sum, count }];
      }),
  );
}

import { Histogram, type HistogramConfiguration } from 'prom-client';

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

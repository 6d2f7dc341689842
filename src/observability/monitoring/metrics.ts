import { Counter, Gauge, type Registry } from 'prom-client';
import { SeriesHistogram } from '../series-histogram.js';
import { CONFIDENCE_BUCKETS, OTHER_CLASS } from './outputs.js';
import type { MonitoringService } from './service.js';

// Shared with the exporter and the routing metrics; re-exported where it was first defined.
export { SeriesHistogram, type HistogramSeries } from '../series-histogram.js';

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

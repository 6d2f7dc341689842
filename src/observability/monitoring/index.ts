/** Model-quality monitoring: prediction distributions and input drift (docs/monitoring.md). */
export { monitoringConfigSchema, parseMonitoringConfig, type MonitoringConfig, type MonitoringConfigInput } from '../../config/monitoring-config.js';
export {
  BASELINE_FORMAT,
  BaselineBuilder,
  DEFAULT_BASELINE_FILE,
  baselinePath,
  baselineSchema,
  computeBaseline,
  computeBaselineAsync,
  createBaselineFromFile,
  quantileEdges,
  readBaseline,
  readRowFile,
  saveBaseline,
  writeBaseline,
  type Baseline,
  type BaselineFeature,
  type BaselineOptions,
  type RowFile,
} from './baseline.js';
export { binIndex, psi } from './psi.js';
export { DriftWindow, type WindowFeature, type WindowSpec } from './window.js';
export { QuantileSketch, ValueSummarizer, SUMMARY_QUANTILES, type ValueSummary } from './sketch.js';
export { CONFIDENCE_BUCKETS, OTHER_CLASS, looksLikeProbabilities, type ClassifierSnapshot, type OutputSnapshot, type RegressorSnapshot } from './outputs.js';
export {
  MonitoringService,
  monitoringSourceFromEngine,
  type DriftStatus,
  type FeatureDriftSnapshot,
  type ModelMonitoringSnapshot,
  type MonitoringServiceOptions,
  type MonitoringSource,
  type VersionMonitoringSnapshot,
} from './service.js';
export { registerMonitoringMetrics, SeriesHistogram, type HistogramSeries } from './metrics.js';

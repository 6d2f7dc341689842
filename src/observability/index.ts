/**
 * Observability: the Prometheus exporter (./metrics.ts), model-quality monitoring, the
 * prediction audit log and OpenTelemetry tracing. Each listens to the named diagnostics
 * channels of src/core/events.ts; none is called from the request path. docs/metrics.md,
 * docs/monitoring.md, docs/audit-log.md and docs/tracing.md describe them.
 */
export { DEFAULT_LATENCY_BUCKETS, MetricsExporter, type MetricsOptions, type ModelGaugeSource } from './metrics.js';
export * from './monitoring/index.js';
export * from './audit/index.js';
export * from './tracing/index.js';

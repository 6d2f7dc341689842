/** OpenTelemetry tracing of inference requests (docs/tracing.md). */
export { tracingConfigSchema, type TracingConfig, type TracingConfigInput } from '../../config/tracing-config.js';
export { formatTraceparent, parseTraceparent } from './traceparent.js';
export { ATTR, SPAN_COMPUTE, SPAN_INFER, SPAN_QUEUE, TracingService, createTracing, type TracingOptions } from './service.js';

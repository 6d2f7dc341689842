import { z } from 'zod';

/** Server-level tracing settings (camelCase like the rest of the server config). Off by default. */
export const tracingConfigSchema = z.strictObject({
  /** Off: no span is created and no event is listened to. */
  enabled: z.boolean().default(false),
  /**
   * OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`. Unset: the exporter's
   * own default (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else
   * http://localhost:4318/v1/traces).
   */
  endpoint: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL, e.g. http://otel-collector:4318/v1/traces' }).optional(),
  /** Extra HTTP headers of export requests (e.g. an API key). */
  headers: z.record(z.string(), z.string()).default({}),
  /** The `service.name` resource attribute. */
  serviceName: z.string().min(1).default('tessera'),
  /** Share of traces started here that are sampled; a caller's sampled flag is always followed. */
  sampleRatio: z.number().min(0).max(1).default(1),
  /** Spans buffered for export; beyond it spans are dropped. */
  maxQueueSize: z.number().int().min(1).default(2048),
  /** Delay between batch exports. */
  scheduledDelayMs: z.number().int().min(0).default(1000),
});

export type TracingConfigInput = z.input<typeof tracingConfigSchema>;
export type TracingConfig = z.output<typeof tracingConfigSchema>;

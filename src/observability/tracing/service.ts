import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type SpanContext, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { channels } from '../../core/events.js';
import type { RequestEndEvent, RequestScheduledEvent } from '../../core/events.js';
import type { InferenceRequest } from '../../core/inference.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { tracingConfigSchema, type TracingConfig, type TracingConfigInput } from '../../config/tracing-config.js';
import { formatTraceparent, parseTraceparent } from './traceparent.js';

export const SPAN_INFER = 'tessera.infer';
export const SPAN_QUEUE = 'tessera.queue';
export const SPAN_COMPUTE = 'tessera.compute';

/** Span attribute names. */
export const ATTR = {
  model: 'tessera.model',
  version: 'tessera.model_version',
  protocol: 'tessera.protocol',
  outcome: 'tessera.outcome',
  requestId: 'tessera.request_id',
  batchSize: 'tessera.batch_size',
} as const;

export interface TracingOptions extends TracingConfigInput {
  /** Export here instead of OTLP/HTTP (tests: an InMemorySpanExporter). */
  readonly exporter?: SpanExporter;
  /** `simple` exports each span as it ends (tests); `batch` (default) buffers. */
  readonly processor?: 'batch' | 'simple';
  /** The `service.version` resource attribute. */
  readonly serviceVersion?: string;
  readonly logger?: Logger;
}

/**
 * OpenTelemetry spans for every inference request, created after the fact from the engine's
 * events with their real start and end times:
 *
 * ```text
 * tessera.infer    (SERVER; request received → answered; parent: the caller's traceparent)
 * ├─ tessera.queue    (enqueued → dispatched to a model instance)
 * └─ tessera.compute  (dispatched → batch finished; tessera.batch_size)
 * ```
 *
 * requestScheduled and requestEnd are correlated by the InferenceRequest object (WeakMaps, so
 * nothing outlives its request). Build it with {@link createTracing}, which returns undefined
 * when tracing is off: then nothing subscribes and requests pay nothing.
 */
export class TracingService {
  readonly config: TracingConfig;
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  private readonly logger: Logger;
  private readonly scheduled = new WeakMap<InferenceRequest, RequestScheduledEvent>();
  private readonly contexts = new WeakMap<InferenceRequest, SpanContext>();
  private readonly subscriptions: [string, (message: unknown) => void][] = [];
  private closing: Promise<void> | undefined;

  constructor(options: TracingOptions) {
    const { exporter: custom, processor, serviceVersion, logger, ...config } = options;
    this.config = tracingConfigSchema.parse(config);
    this.logger = logger ?? silentLogger;
    const exporter =
      custom ??
      new OTLPTraceExporter({
        ...(this.config.endpoint === undefined ? {} : { url: this.config.endpoint }),
        headers: this.config.headers,
      });
    const spanProcessor =
      (processor ?? 'batch') === 'simple'
        ? new SimpleSpanProcessor(exporter)
        : new BatchSpanProcessor(exporter, { maxQueueSize: this.config.maxQueueSize, scheduledDelayMillis: this.config.scheduledDelayMs });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        'service.name': this.config.serviceName,
        ...(serviceVersion === undefined ? {} : { 'service.version': serviceVersion }),
      }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(this.config.sampleRatio) }),
      spanProcessors: [spanProcessor],
    });
    this.tracer = this.provider.getTracer('tessera');
    this.on<RequestScheduledEvent>(channels.requestScheduled.name, (event) => {
      if (event.request !== undefined) this.scheduled.set(event.request, event);
    });
    this.on<RequestEndEvent>(channels.requestEnd.name, (event) => this.record(event));
  }

  /**
   * The `traceparent` response header for a request once it was answered: the caller's trace id
   * (or a new one) and the id of its `tessera.infer` span. Undefined before requestEnd.
   */
  traceparentFor(request: InferenceRequest): string | undefined {
    const context = this.contexts.get(request);
    return context === undefined ? undefined : formatTraceparent(context);
  }

  /** The trace id of an answered request (for logs), if traced. */
  traceIdFor(request: InferenceRequest): string | undefined {
    return this.contexts.get(request)?.traceId;
  }

  /** Export every finished span now. */
  forceFlush(): Promise<void> {
    return this.provider.forceFlush();
  }

  /** Stop listening, export what is buffered, shut the exporter down. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const [name, handler] of this.subscriptions.splice(0)) unsubscribe(name, handler);
      try {
        await this.provider.shutdown();
      } catch (error) {
        this.logger.warn({ err: error }, 'tracing: exporting the last spans failed');
      }
    })();
    return this.closing;
  }

  private record(event: RequestEndEvent): void {
    const request = event.request;
    const parent = parseTraceparent(request.traceparent);
    const parentContext = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
    const start = event.startedAtMs;
    const end = start + event.durationSeconds * 1000;
    const attributes: Attributes = {
      [ATTR.model]: event.model,
      [ATTR.protocol]: event.protocol,
      [ATTR.outcome]: event.outcome,
    };
    if (event.version !== undefined) attributes[ATTR.version] = event.version;
    if (request.id !== undefined) attributes[ATTR.requestId] = request.id;
    const span = this.tracer.startSpan(SPAN_INFER, { kind: SpanKind.SERVER, startTime: start, attributes }, parentContext);
    if (event.outcome !== 'success') span.setStatus({ code: SpanStatusCode.ERROR, message: event.outcome });
    const scheduled = this.scheduled.get(request);
    if (scheduled !== undefined) {
      this.scheduled.delete(request);
      if (span.isRecording()) {
        // Children sit inside the server span (the clocks behind the two events differ by < 1 ms).
        const clamp = (t: number): number => Math.min(end, Math.max(start, t));
        const context = trace.setSpan(ROOT_CONTEXT, span);
        const child = { [ATTR.model]: scheduled.model, [ATTR.version]: scheduled.version };
        const queue = this.tracer.startSpan(SPAN_QUEUE, { kind: SpanKind.INTERNAL, startTime: clamp(scheduled.enqueuedAtMs), attributes: child }, context);
        queue.end(clamp(scheduled.dispatchedAtMs));
        const compute = this.tracer.startSpan(
          SPAN_COMPUTE,
          { kind: SpanKind.INTERNAL, startTime: clamp(scheduled.dispatchedAtMs), attributes: { ...child, [ATTR.batchSize]: scheduled.batchRows } },
          context,
        );
        compute.end(clamp(scheduled.finishedAtMs));
      }
    }
    span.end(end);
    this.contexts.set(request, span.spanContext());
  }

  private on<E>(name: string | symbol, handler: (event: E) => void): void {
    const listener = (message: unknown): void => {
      try {
        handler(message as E);
      } catch (error) {
        // Tracing must never fail a request.
        this.logger.error({ err: error }, 'tracing failed on an event');
      }
    };
    subscribe(name, listener);
    this.subscriptions.push([String(name), listener]);
  }
}

/** The tracing service, or undefined when `enabled` is false (then wire nothing). */
export function createTracing(options: TracingOptions): TracingService | undefined {
  return options.enabled === true ? new TracingService(options) : undefined;
}

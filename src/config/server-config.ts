import { z } from 'zod';
import { MAX_TIMER_MS } from '../core/timers.js';
import { describeIssues } from './model-config.js';
import { securityConfigShape } from '../security/config.js';
import { auditLogConfigSchema } from './audit-config.js';
import { tracingConfigSchema } from './tracing-config.js';

/**
 * The server's configuration: one schema, one defaults table. The CLI merges flags, TESSERA_*
 * environment variables and a config file into this shape; it is validated once at start-up
 * and then frozen.
 */

export const SERVER_DEFAULTS = {
  modelRepository: './models',
  host: '0.0.0.0',
  httpPort: 8000,
  logLevel: 'info',
  strictReadiness: true,
  /** 64 MiB: a batch of 224x224 images as JSON is ~1.1 MB an image. */
  bodyLimitBytes: 64 * 1024 * 1024,
  /** Per-version queue bound when a model's config sets none. */
  maxQueueSize: 1024,
  /** Retry-After sent with QUEUE_FULL. */
  retryAfterSeconds: 1,
  /** Grace period for in-flight and queued requests on shutdown. */
  shutdownGraceMs: 30_000,
  /** Longest time to receive a whole HTTP request, headers and body (slow clients are dropped). */
  requestTimeoutMs: 60_000,
  /** Load-shedding sample window: event-loop delay and memory are read this often. */
  shedSampleIntervalMs: 500,
  grpcPort: 8001,
  grpcMaxMessageBytes: 256 * 1024 * 1024,
  metricsPort: 8002,
  managementPort: 8081,
  repositoryPollSecs: 15,
  /** Responses smaller than this are not compressed (gzip costs more than it saves on them). */
  compressionThresholdBytes: 1024,
  /** Vertex AI routes when AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE are not set (local runs). */
  vertexHealthRoute: '/health',
  vertexPredictRoute: '/predict',
} as const;

export { MAX_TIMER_MS };

/** A duration in milliseconds that becomes a timer: 0 up to {@link MAX_TIMER_MS}. */
const timerMs = z
  .number()
  .int()
  .min(0)
  .max(MAX_TIMER_MS, { error: (issue) => `expected at most ${MAX_TIMER_MS} ms (about 24.8 days, the longest Node.js timer), got ${String(issue.input)}` });

/** The longest repository poll interval, in seconds: the longest timer. */
const MAX_POLL_SECS = Math.floor(MAX_TIMER_MS / 1000);

/** An HTTP route path: starts with '/', no spaces, no wildcard or query. */
const routePath = z.string().regex(/^\/[^\s?#*]*$/, "must be a path starting with '/', without spaces, '?', '#' or '*'");

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export const serverConfigSchema = z.strictObject({
  modelRepository: z.string().min(1).default(SERVER_DEFAULTS.modelRepository),
  host: z.string().min(1).default(SERVER_DEFAULTS.host),
  httpPort: z.number().int().min(0).max(65535).default(SERVER_DEFAULTS.httpPort),
  logLevel: logLevel.default(SERVER_DEFAULTS.logLevel),
  strictReadiness: z.boolean().default(SERVER_DEFAULTS.strictReadiness),
  bodyLimitBytes: z.number().int().min(1024).default(SERVER_DEFAULTS.bodyLimitBytes),
  maxQueueSize: z.number().int().min(1).default(SERVER_DEFAULTS.maxQueueSize),
  /** Status for QUEUE_FULL over HTTP: 503 (Triton's) or 429. */
  queueFullStatus: z.union([z.literal(503), z.literal(429)]).default(503),
  retryAfterSeconds: z.number().int().min(0).default(SERVER_DEFAULTS.retryAfterSeconds),
  shutdownGraceMs: timerMs.default(SERVER_DEFAULTS.shutdownGraceMs),
  /**
   * After SIGTERM, keep serving (while readiness reports not ready) this long before the
   * listeners close, so load balancers (a Kubernetes Service's endpoints) stop sending first:
   * a preStop-style delay. 0 = close at once. docs/reliability.md.
   */
  shutdownDelayMs: timerMs.default(0),
  /**
   * Longest time to receive a whole HTTP request, headers and body: slower clients (slowloris)
   * get 408 and the connection is closed. Headers must arrive within min(60 s, this). 0 = no limit.
   */
  requestTimeoutMs: timerMs.default(SERVER_DEFAULTS.requestTimeoutMs),
  /**
   * Load shedding (src/security/load-shedding.ts, docs/reliability.md): new requests are refused
   * with 503 OVERLOADED + Retry-After while the p99 event-loop delay of the last sample window
   * exceeds this many milliseconds. 0 = off (the default).
   */
  shedEventLoopDelayMs: z.number().int().min(0).default(0),
  /** Load shedding while the process's resident set size exceeds this many bytes. 0 = off (the default). */
  shedMaxRssBytes: z.number().int().min(0).default(0),
  /** Load shedding while the V8 heap in use exceeds this many bytes. 0 = off (the default). */
  shedMaxHeapUsedBytes: z.number().int().min(0).default(0),
  /** How often load shedding samples event-loop delay and memory (the length of a sample window). */
  shedSampleIntervalMs: z.number().int().min(10).max(60_000).default(SERVER_DEFAULTS.shedSampleIntervalMs),
  /**
   * Test hook (Triton's TRITONSERVER_DELAY_SCHEDULER): batchers hold work until this many
   * requests are queued, so tests can assert exact batch compositions. 0 = off.
   */
  delaySchedulerUntil: z.number().int().min(0).default(0),
  /** The V2 gRPC service (inference.GRPCInferenceService, health, reflection). */
  grpc: z.boolean().default(true),
  grpcPort: z.number().int().min(0).max(65535).default(SERVER_DEFAULTS.grpcPort),
  /** Largest gRPC message received or sent (grpc-js's default of 4 MiB is too small for real tensors). */
  grpcMaxMessageBytes: z.number().int().min(1024).default(SERVER_DEFAULTS.grpcMaxMessageBytes),
  /** The management API (list, register, scale, set default, unregister): its own listener. */
  management: z.boolean().default(true),
  /** Loopback by default: the management API changes what is served (with authentication on, it needs the admin scope). */
  managementHost: z.string().min(1).default('127.0.0.1'),
  managementPort: z.number().int().min(0).max(65535).default(SERVER_DEFAULTS.managementPort),
  /** Model-quality monitoring for models whose config has a `monitoring:` section. */
  monitoring: z.boolean().default(true),
  /** Prediction audit log directory; unset = no audit log. */
  auditDir: z.string().min(1).optional(),
  // The audit log's and tracing's own schemas (src/config/audit-config.ts, tracing-config.ts)
  // check these settings: one set of rules, applied when the configuration is read.
  /** Audit sample rate for models whose config has no `audit:` section. */
  auditSampleRate: auditLogConfigSchema.shape.sampleRate,
  auditMaxFileBytes: auditLogConfigSchema.shape.maxFileBytes,
  auditKeepFiles: auditLogConfigSchema.shape.keepFiles,
  /**
   * OpenTelemetry tracing (OTLP/HTTP); free when off. Unset: on exactly when tracingEndpoint is
   * set; an explicit false keeps it off even then (a flag beats an endpoint from the environment).
   */
  tracing: z.boolean().optional(),
  /** OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces; setting it turns tracing on unless tracing is false. */
  tracingEndpoint: tracingConfigSchema.shape.endpoint,
  tracingSampleRatio: tracingConfigSchema.shape.sampleRatio,
  /** Prometheus metrics. */
  metrics: z.boolean().default(true),
  /** Port of the metrics listener (Triton's 8002); `metricsOnHttpPort` serves /metrics on the HTTP port instead. */
  metricsPort: z.number().int().min(0).max(65535).default(SERVER_DEFAULTS.metricsPort),
  metricsOnHttpPort: z.boolean().default(false),
  /** Triton's model control modes: none (load all at start), poll (follow the repository), explicit (load on request). */
  modelControlMode: z.enum(['none', 'poll', 'explicit']).default('none'),
  /** Explicit mode: models to load at start (`*` = all). */
  loadModel: z.array(z.string().min(1)).default([]),
  /** Poll mode: seconds between repository scans (at most the longest timer, about 24.8 days). */
  repositoryPollSecs: z
    .number()
    .min(0.1)
    .max(MAX_POLL_SECS, { error: (issue) => `expected at most ${MAX_POLL_SECS} s (about 24.8 days, the longest Node.js timer), got ${String(issue.input)}` })
    .default(SERVER_DEFAULTS.repositoryPollSecs),

  // HTTP protocols and encodings (src/protocols/http; docs/http-protocols.md).
  /** gzip/deflate responses for clients that accept them. */
  responseCompression: z.boolean().default(true),
  compressionThresholdBytes: z.number().int().min(0).default(SERVER_DEFAULTS.compressionThresholdBytes),
  /** TensorFlow Serving's REST API under /v1/models. */
  tfServing: z.boolean().default(true),
  /** TorchServe's inference API: /ping and /predictions. */
  torchServe: z.boolean().default(true),
  /** Amazon SageMaker's container contract: /ping and /invocations (port 8080 unless set). */
  sagemaker: z.boolean().default(false),
  /** Google Vertex AI's custom-container contract: health and predict routes (port 8080 unless set). */
  vertex: z.boolean().default(false),
  vertexHealthRoute: routePath.default(SERVER_DEFAULTS.vertexHealthRoute),
  vertexPredictRoute: routePath.default(SERVER_DEFAULTS.vertexPredictRoute),
  /** Azure Machine Learning's online-endpoint contract: GET / and POST /score. */
  azureml: z.boolean().default(false),
  /** The model the single-model platform endpoints serve; unset: the repository's only model. */
  defaultModel: z.string().min(1).optional(),
  /**
   * Where run-time routing changes (split, aliases, shadow, canaries) are persisted, written
   * atomically; default `<modelRepository>/.tessera-routing.json`. docs/rollouts.md.
   */
  routingStateFile: z.string().min(1).optional(),

  // Security: authentication and authorization, TLS, CORS, request limits, rate limits and
  // query budgets (src/security/config.ts; docs/security.md).
  ...securityConfigShape,
});

export type ServerConfigInput = z.input<typeof serverConfigSchema>;
export type ServerConfig = Readonly<z.output<typeof serverConfigSchema>>;

/** Validate and freeze a server configuration; throws an Error listing every problem. */
export function parseServerConfig(input: unknown): ServerConfig {
  const result = serverConfigSchema.safeParse(input);
  if (!result.success) throw new Error(`invalid server configuration: ${describeIssues(result.error)}`);
  return Object.freeze(result.data);
}

import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { FakeBackend } from '../backends/fake/backend.js';
import { OnnxBackend } from '../backends/onnx/backend.js';
import type { ServerConfig } from '../config/server-config.js';
import { Engine } from '../engine/engine.js';
import { buildHttpApp } from '../protocols/http/app.js';
import { buildManagementApp } from '../protocols/http/management/app.js';
import { singleModelProblem } from '../protocols/http/cloud/single-model.js';
import type { InferenceRequest } from '../core/inference.js';
import { MetricsExporter } from '../observability/metrics.js';
import { AuditLog, MonitoringService, createTracing, registerAuditMetrics, registerMonitoringMetrics } from '../observability/index.js';
import { startGrpcServer, type GrpcServerHandle } from '../protocols/grpc/server.js';
import { createLogger } from './logger.js';
import { createServerSecurity } from '../security/setup.js';
import { enforceRequestLimits } from '../security/limits.js';
import { startMetricsListener, type MetricsListener } from './metrics-listener.js';
import { TESSERA_VERSION } from './version.js';
import { tuneHeapForServing } from './v8-tuning.js';
import { LoadShedder, SHED_REASONS, sheddingEnabled } from '../security/load-shedding.js';
import { registerSheddingMetrics } from '../observability/shedding-metrics.js';
import type { FastifyInstance } from 'fastify';
import { registerRoutingMetrics, registerRoutingRoutes, startRouting } from '../routing/index.js';

/** Default max_batch_size for models that can batch and whose config sets none. */
const DEFAULT_MAX_BATCH_SIZE = 8;

export interface TesseraServer {
  readonly engine: Engine;
  /** Port the HTTP listener is bound to (useful with port 0). */
  readonly httpPort: number;
  /** Base URL of the HTTP listener, e.g. http://127.0.0.1:8000. */
  readonly httpUrl: string;
  /** Port of the gRPC listener, when gRPC is on. */
  readonly grpcPort: number | undefined;
  /** Port of the metrics listener, when it has its own. */
  readonly metricsPort: number | undefined;
  /** Port of the management API listener, when it is on. */
  readonly managementPort: number | undefined;
  /**
   * Graceful stop: readiness turns false at once; after `shutdownDelayMs` (serving meanwhile)
   * the listeners stop accepting; the requests they took and the queued ones finish (up to the
   * grace period); models are released; audit records and spans are flushed. Idempotent.
   */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Use this logger instead of creating one from config.logLevel. */
  readonly logger?: Logger;
}

/** Build and start a server: engine (repository loaded), HTTP listener. */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<TesseraServer> {
  // Before the models load and warm up: the heap's decisions from then on are the serving ones.
  tuneHeapForServing();
  const logger = options.logger ?? createLogger(config.logLevel);
  // Keys, JWT keys and certificates are read first: a bad one stops the server before anything starts.
  const security = createServerSecurity(config, logger);
  let started: Engine | undefined;
  const configOf = (model: string) => started?.modelConfigFile(model);
  // First of the subscribers: it checks its directory and may refuse to start, before the
  // others subscribe to anything.
  const audit =
    config.auditDir === undefined
      ? undefined
      : new AuditLog({
          directory: config.auditDir,
          sampleRate: config.auditSampleRate,
          maxFileBytes: config.auditMaxFileBytes,
          keepFiles: config.auditKeepFiles,
          modelConfig: (model) => configOf(model)?.audit,
          logger,
        });
  // Listening before the engine starts, so the loads at start-up are counted too.
  const metrics = config.metrics ? new MetricsExporter({ describeModels: () => started?.describeModels() ?? [] }) : undefined;
  const monitoring = config.monitoring
    ? new MonitoringService({
        source: {
          monitoringConfig: (model) => configOf(model)?.monitoring,
          modelDirectory: (model) => (started?.modelConfigFile(model) === undefined ? undefined : started.describeModels(model)[0]?.directory),
          modelLabels: (model) => (started?.modelConfigFile(model) === undefined ? undefined : started.modelLabels(model)),
        },
        logger,
      })
    : undefined;
  const tracing = createTracing({
    enabled: config.tracing ?? config.tracingEndpoint !== undefined,
    ...(config.tracingEndpoint === undefined ? {} : { endpoint: config.tracingEndpoint }),
    sampleRatio: config.tracingSampleRatio,
    serviceVersion: TESSERA_VERSION,
    logger,
  });
  if (metrics !== undefined) {
    if (monitoring !== undefined) registerMonitoringMetrics(metrics.registry, monitoring);
    if (audit !== undefined) registerAuditMetrics(metrics.registry, audit);
  }
  /** Observability that outlives the request path: closed after the engine drained. */
  const closeObservability = async (): Promise<void> => {
    await audit?.close();
    await tracing?.close();
    monitoring?.close();
    metrics?.close();
  };
  const engine = await Engine.start({
    repository: config.modelRepository,
    backends: [new OnnxBackend(), new FakeBackend()],
    scheduling: {
      defaultMaxBatchSize: DEFAULT_MAX_BATCH_SIZE,
      maxQueueSize: config.maxQueueSize,
      retryAfterSeconds: config.retryAfterSeconds,
      holdUntilQueued: config.delaySchedulerUntil,
    },
    strictReadiness: config.strictReadiness,
    drainGraceMs: config.shutdownGraceMs,
    controlMode: config.modelControlMode,
    initialModels: config.loadModel,
    pollIntervalSeconds: config.repositoryPollSecs,
    logger,
  }).catch(async (error: unknown) => {
    await closeObservability();
    throw error;
  });
  started = engine;
  // Version routing and safe rollouts (src/routing): installed before any listener takes requests.
  const routing = await startRouting({ engine, repository: config.modelRepository, stateFile: config.routingStateFile, logger }).catch(async (error: unknown) => {
    await engine.close();
    await closeObservability();
    throw error;
  });
  if (metrics !== undefined) registerRoutingMetrics(metrics.registry, routing);
  // Request limits hold for every request the engine runs, whichever front door decoded it.
  enforceRequestLimits(engine, security.limits);
  const readiness = gateReadiness(engine);
  const sheddingLimits = { maxEventLoopDelayMs: config.shedEventLoopDelayMs, maxRssBytes: config.shedMaxRssBytes, maxHeapUsedBytes: config.shedMaxHeapUsedBytes };
  const shedder = sheddingEnabled(sheddingLimits)
    ? new LoadShedder({
        ...sheddingLimits,
        sampleIntervalMs: config.shedSampleIntervalMs,
        retryAfterSeconds: config.retryAfterSeconds,
        onChange: (reason, detail) =>
          reason === undefined ? logger.info({}, 'load shedding stopped') : logger.warn({ reason, detail }, 'load shedding: refusing new requests'),
      })
    : undefined;
  if (metrics !== undefined && shedder !== undefined) registerSheddingMetrics(metrics.registry, shedder, SHED_REASONS);
  const shed = shedder === undefined ? undefined : () => shedder.check();
  const app = buildHttpApp({
    engine,
    logger,
    bodyLimitBytes: config.bodyLimitBytes,
    errors: { queueFullStatus: config.queueFullStatus },
    serverName: 'tessera',
    serverVersion: TESSERA_VERSION,
    compression: { enabled: config.responseCompression, thresholdBytes: config.compressionThresholdBytes },
    requestTimeoutMs: config.requestTimeoutMs,
    draining: () => readiness.stopping,
    ...(shedder === undefined ? {} : { loadShedder: shedder }),
    security: security.http,
    ...(security.https === undefined ? {} : { https: security.https }),
    protocols: {
      tfServing: config.tfServing,
      torchServe: config.torchServe,
      sagemaker: config.sagemaker,
      vertex: config.vertex ? { healthRoute: config.vertexHealthRoute, predictRoute: config.vertexPredictRoute } : undefined,
      azureml: config.azureml,
      defaultModel: config.defaultModel,
    },
    observability: {
      ...(monitoring === undefined ? {} : { monitoringSnapshot: (model: string, version?: string) => monitoring.snapshot(model, version) }),
      ...(tracing === undefined ? {} : { traceparentFor: (request: InferenceRequest) => tracing.traceparentFor(request) }),
    },
  });
  if (config.sagemaker || config.vertex || config.azureml) {
    const problem = singleModelProblem(engine, config.defaultModel);
    if (problem !== undefined) logger.warn({}, `single-model platform endpoints will refuse requests: ${problem}`);
  }
  if (metrics !== undefined && config.metricsOnHttpPort) {
    app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.render()));
  }
  let grpc: GrpcServerHandle | undefined;
  let metricsListener: MetricsListener | undefined;
  const management = config.management ? buildManagementApp({
        engine,
        logger,
        errors: { queueFullStatus: config.queueFullStatus },
        access: security.access,
        ...(security.https === undefined ? {} : { https: security.https }),
        // Slow clients are dropped on the management listener too, checked as often as on the main one.
        requestTimeoutMs: config.requestTimeoutMs,
      }) : undefined;
  if (management !== undefined) registerRoutingRoutes(management, { router: routing, errors: { queueFullStatus: config.queueFullStatus } });
  try {
    await app.listen({ host: config.host, port: config.httpPort });
    if (config.grpc) {
      grpc = await startGrpcServer({
        engine,
        host: config.host,
        port: config.grpcPort,
        logger,
        maxMessageBytes: config.grpcMaxMessageBytes,
        shutdownGraceMs: config.shutdownGraceMs,
        serverName: 'tessera',
        serverVersion: TESSERA_VERSION,
        ...(shed === undefined ? {} : { shed }),
        interceptors: security.grpcInterceptors,
        credentials: security.grpcCredentials,
      });
    }
    if (metrics !== undefined && !config.metricsOnHttpPort) metricsListener = await startMetricsListener(metrics, config.host, config.metricsPort);
    await management?.listen({ host: config.managementHost, port: config.managementPort });
  } catch (error) {
    await Promise.all([engine.close(), app.close(), grpc?.close(), metricsListener?.close(), management?.close()]);
    await routing.close();
    shedder?.close();
    await closeObservability();
    throw error;
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const protocols = ['v2', ...(config.tfServing ? ['tf-serving'] : []), ...(config.torchServe ? ['torchserve'] : []), ...(config.sagemaker ? ['sagemaker'] : []), ...(config.vertex ? ['vertex'] : []), ...(config.azureml ? ['azureml'] : [])];
  logger.info(
    {
      http: `${host}:${address.port}`,
      grpc: grpc === undefined ? 'off' : grpc.port,
      metrics: metricsListener?.port ?? (metrics === undefined ? 'off' : 'http'),
      management: management === undefined ? 'off' : `${config.managementHost}:${(management.server.address() as AddressInfo).port}`,
      repository: config.modelRepository,
      modelControlMode: config.modelControlMode,
      protocols,
      security: security.summary,
    },
    'tessera is serving',
  );
  let closing: Promise<void> | undefined;
  return {
    engine,
    httpPort: address.port,
    httpUrl: `${security.scheme}://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`,
    grpcPort: grpc?.port,
    metricsPort: metricsListener?.port,
    managementPort: management === undefined ? undefined : (management.server.address() as AddressInfo).port,
    close: () =>
      (closing ??= (async () => {
        // Readiness first: probes (HTTP, gRPC health) report not ready from now on.
        readiness.stop();
        const graceMs = config.shutdownGraceMs;
        if (config.shutdownDelayMs > 0) {
          // preStop-style delay: keep serving while load balancers take this endpoint out.
          logger.info({ delayMs: config.shutdownDelayMs }, 'shutting down: not ready; serving until the shutdown delay ends');
          await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
        }
        logger.info({ graceMs }, 'shutting down: closing listeners, draining requests');
        // Triton's delay-scheduler test hook holds queued requests until their scheduler closes:
        // with it on, the engine closes alongside the listeners, or the drain would wait on itself.
        const engineClosed = config.delaySchedulerUntil > 0 ? engine.close() : undefined;
        // Listeners stop accepting; the requests they took run to completion on the engine, which
        // still takes them (closing it first would refuse requests already read from a socket).
        await Promise.all([closeHttpApp(app, graceMs, logger), grpc?.close(), management === undefined ? undefined : closeHttpApp(management, graceMs, logger)]);
        // Nothing new can arrive: what is still queued drains (up to the grace period), models are released.
        await (engineClosed ?? engine.close());
        // Canary timers stop; the routing state file is written.
        await routing.close();
        shedder?.close();
        // Audit records flush and spans export after the drain; metrics stay scrapeable until the end.
        await closeObservability();
        await metricsListener?.close();
        logger.info({}, 'stopped');
      })()),
  };
}

/**
 * Readiness that can be turned off ahead of the engine's own close: during the shutdown delay
 * and while listeners drain, probes must see "not ready" while requests are still served.
 * Every front door (V2 HTTP and gRPC health, /ping, Vertex AI's health route) asks
 * engine.isReady(), so the gate wraps that. Returns the switch and its state.
 */
function gateReadiness(engine: Engine): { stop(): void; readonly stopping: boolean } {
  const ready = engine.isReady.bind(engine);
  const gate = {
    stopping: false,
    stop(): void {
      gate.stopping = true;
    },
  };
  engine.isReady = () => !gate.stopping && ready();
  return gate;
}

/**
 * Close a Fastify listener gracefully: it stops accepting, idle keep-alive connections close,
 * busy ones close after their response (`Connection: close`). Connections still open after
 * `graceMs` (a request that never finishes, a client that never sends its body) are destroyed.
 */
async function closeHttpApp(app: FastifyInstance, graceMs: number, logger: Logger): Promise<void> {
  const closed = app.close();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), graceMs);
  });
  const overdue = await Promise.race([closed.then(() => false), late]);
  clearTimeout(timer);
  if (!overdue) return;
  logger.warn({ graceMs }, 'HTTP connections still open after the grace period; closing them');
  app.server.closeAllConnections();
  await closed;
}

import fastifyCompress from '@fastify/compress';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { TesseraError } from '../../core/errors.js';
import { requestTimeouts } from './timeouts.js';
import type { Engine } from '../../engine/engine.js';
import { registerBodyParser } from './body.js';
import { deferredChildLogger } from './request-logger.js';
import { registerAzureMlRoutes } from './cloud/azureml.js';
import { registerSageMakerRoutes } from './cloud/sagemaker.js';
import { registerVertexRoutes } from './cloud/vertex.js';
import { errorObject, sendError, type ErrorBody, type HttpErrorPolicy } from './errors.js';
import { registerTfServingRoutes } from './tfserving/routes.js';
import { torchServeErrorBody } from './torchserve/errors.js';
import { registerPingRoute, registerTorchServeRoutes } from './torchserve/routes.js';
import { registerV2Routes } from './v2/routes.js';
import type { InferenceRequest } from '../../core/inference.js';
import type { LoadShedder } from '../../security/load-shedding.js';
import { registerLoadShedding } from '../../security/load-shedding-http.js';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { Socket } from 'node:net';
import { httpRouteContext, installHttpSecurity, type HttpSecurity } from '../../security/http.js';
import { warmNumberScanner } from './v2/number-scanner.js';

/** Which protocols besides KServe V2 the HTTP listener speaks. */
export interface HttpProtocols {
  /** TensorFlow Serving REST under /v1/models. */
  readonly tfServing: boolean;
  /** TorchServe's /ping and /predictions. */
  readonly torchServe: boolean;
  /** SageMaker's /ping and /invocations. */
  readonly sagemaker: boolean;
  /** Vertex AI's health and predict routes (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE), when enabled. */
  readonly vertex: { readonly healthRoute: string; readonly predictRoute: string } | undefined;
  /** Azure ML's GET / and POST /score. */
  readonly azureml: boolean;
  /** The model single-model platform endpoints serve; undefined: the repository's only model. */
  readonly defaultModel: string | undefined;
}

/** Response compression (gzip/deflate when the client's Accept-Encoding allows). */
export interface HttpCompression {
  readonly enabled: boolean;
  /** Responses smaller than this are sent uncompressed. */
  readonly thresholdBytes: number;
}

export interface HttpAppOptions {
  readonly engine: Engine;
  readonly logger: FastifyBaseLogger;
  /** Largest request body, compressed and decompressed. */
  readonly bodyLimitBytes: number;
  readonly errors: HttpErrorPolicy;
  readonly serverName: string;
  readonly serverVersion: string;
  /** Default: gzip/deflate above 1 KiB. */
  readonly compression?: HttpCompression;
  /** Default: TF Serving and TorchServe on, platform adapters off. */
  readonly protocols?: Partial<HttpProtocols>;
  /** Hooks into observability the HTTP routes expose. */
  readonly observability?: HttpObservability;
  /** Load shedding (src/security/load-shedding.ts): new requests refused while overloaded; health checks exempt. */
  readonly loadShedder?: LoadShedder;
  /**
   * Longest time to receive a whole request, headers and body (Node's server.requestTimeout;
   * headers within min(60 s, this)); slower clients get 408 and are disconnected. 0 = no limit.
   * Default 0 (Fastify's).
   */
  readonly requestTimeoutMs?: number;
  /**
   * True once shutdown has begun (during the shutdown delay, before close()): responses then say
   * `Connection: close`, so keep-alive clients reconnect — through the load balancer, to another
   * replica — instead of staying pinned to this one until its listener closes.
   */
  readonly draining?: () => boolean;
  /** Authentication, authorization, rate limits, request limits and CORS (src/security/http.ts; docs/security.md). */
  readonly security?: HttpSecurity;
  /** TLS: node:https server options (src/security/tls.ts). */
  readonly https?: HttpsServerOptions;
}

/** What the HTTP layer shows of observability: monitoring snapshots and trace context. */
export interface HttpObservability {
  /** JSON for GET /v2/models/{m}[/versions/{v}]/monitoring; undefined when monitoring is off. */
  readonly monitoringSnapshot?: (model: string, version?: string) => unknown;
  /** The `traceparent` to answer with for a request (same trace, the server's span). */
  readonly traceparentFor?: (request: InferenceRequest) => string | undefined;
}

export const DEFAULT_PROTOCOLS: HttpProtocols = {
  tfServing: true,
  torchServe: true,
  sagemaker: false,
  vertex: undefined,
  azureml: false,
  defaultModel: undefined,
};

/**
 * The HTTP front door: one Fastify app, one body parser (raw Buffers, decompressed and bounded;
 * see body.ts), response compression, and each protocol as a thin adapter over engine.infer().
 * Every error, whatever raised it, is answered in the shape of the protocol whose route it hit.
 */
export function buildHttpApp(options: HttpAppOptions): FastifyInstance {
  const protocols = { ...DEFAULT_PROTOCOLS, ...options.protocols };
  const compression = options.compression ?? { enabled: true, thresholdBytes: 1024 };
  const { engine, errors } = options;
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    // Per-request access logs cost throughput; errors are logged where they are answered.
    logController: new LogController({ disableRequestLogging: true }),
    // Each request's child logger (its reqId) is made only if the request logs something.
    childLoggerFactory: deferredChildLogger,
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
    forceCloseConnections: false,
    ...requestTimeouts(options.requestTimeoutMs ?? 0),
    // node:https takes the same timeouts as node:http (Fastify passes `http` options to http servers only).
    ...(options.https === undefined ? {} : { https: { ...requestTimeouts(options.requestTimeoutMs ?? 0).http, ...options.https } }),
  });
  if (options.loadShedder !== undefined) {
    const healthPaths = [...(protocols.vertex === undefined ? [] : [protocols.vertex.healthRoute]), ...(protocols.azureml ? ['/'] : [])];
    registerLoadShedding(app, options.loadShedder, { healthPaths });
  }
  if (options.security !== undefined) installHttpSecurity(app, options.security, httpRouteContext(engine, protocols));
  registerBodyParser(app, options.bodyLimitBytes);
  warmNumberScanner();
  closeConnectionsWhenClosing(app, options.draining);
  if (compression.enabled) {
    // Request bodies are decompressed by the body parser (bounded); the plugin only compresses replies.
    void app.register(fastifyCompress, { global: true, globalDecompression: false, encodings: ['gzip', 'deflate'], threshold: compression.thresholdBytes });
  }

  const onError = errorHandler(errors);
  app.setErrorHandler(onError(errorObject));
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new TesseraError('ROUTE_NOT_FOUND', `no endpoint ${request.method} ${request.url}`), errors),
  );

  // Routes are registered as plugins so that they load after the compression plugin's hooks.
  void app.register(async (scope) => registerV2Routes(scope, options));
  if (protocols.tfServing) void app.register(async (scope) => registerTfServingRoutes(scope, { engine, errors }));
  if (protocols.torchServe || protocols.sagemaker) void app.register(async (scope) => registerPingRoute(scope, engine));
  if (protocols.torchServe) {
    void app.register(async (scope) => {
      scope.setErrorHandler(onError(torchServeErrorBody));
      registerTorchServeRoutes(scope, { engine, errors });
    });
  }
  const { defaultModel } = protocols;
  if (protocols.sagemaker) {
    void app.register(async (scope) => registerSageMakerRoutes(scope, { engine, errors, defaultModel, bodyLimitBytes: options.bodyLimitBytes }));
  }
  const vertex = protocols.vertex;
  if (vertex !== undefined) void app.register(async (scope) => registerVertexRoutes(scope, { engine, errors, defaultModel, ...vertex }));
  if (protocols.azureml) void app.register(async (scope) => registerAzureMlRoutes(scope, { engine, errors, defaultModel }));
  return app;
}

/**
 * Errors raised before a handler runs (body too large or short of its Content-Length, from
 * body-reader.ts; a request Fastify refused) in the error shape `body` of the scope's protocol.
 */
function errorHandler(errors: HttpErrorPolicy) {
  return (body: ErrorBody) =>
    (error: FastifyError | TesseraError, _request: unknown, reply: FastifyReply): FastifyReply => {
      const fastifyError = error as { code?: string; statusCode?: number; message: string };
      // A body refused for its size may still be arriving: close the connection rather than read it all.
      if (error instanceof TesseraError && error.code === 'PAYLOAD_TOO_LARGE') reply.header('connection', 'close');
      if (!(error instanceof TesseraError) && fastifyError.statusCode !== undefined && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
        return sendError(reply, new TesseraError('INVALID_REQUEST', fastifyError.message), errors, body);
      }
      return sendError(reply, error, errors, body);
    };
}

/**
 * Once close() starts, the last response a keep-alive connection owes says `Connection: close`,
 * so a connection that was busy when closing began is closed after it instead of idling until
 * its keep-alive timeout and holding close() up (idle ones are closed by the server at once).
 * Only the last: Node ends the connection after a `Connection: close` answer, and requests a
 * client pipelined behind it, already read and running, would never be answered.
 */
function closeConnectionsWhenClosing(app: FastifyInstance, draining?: () => boolean): void {
  let closing = false;
  /** Per connection, its requests not yet answered (more than one when the client pipelines). */
  const unanswered = new WeakMap<Socket, Set<FastifyRequest>>();
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Callback style: every request passes here, and an async hook costs a promise and a microtask turn.
  app.addHook('onRequest', (request, _reply, done) => {
    const socket = request.raw.socket;
    const pending = unanswered.get(socket);
    if (pending === undefined) unanswered.set(socket, new Set([request]));
    else pending.add(request);
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    const pending = unanswered.get(request.raw.socket);
    pending?.delete(request);
    if ((closing || draining?.() === true) && (pending === undefined || pending.size === 0)) reply.header('connection', 'close');
    done(null, payload);
  });
}

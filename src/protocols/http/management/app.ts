import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { requestTimeouts } from '../timeouts.js';
import { sendError, type HttpErrorPolicy } from '../errors.js';
import { torchServeErrorBody } from '../torchserve/errors.js';
import { registerManagementRoutes } from './routes.js';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { AccessControl } from '../../../security/access.js';
import { installManagementSecurity } from '../../../security/http.js';

/** The management listener's app: the management routes and TorchServe-shaped errors. */
export function buildManagementApp(options: {
  engine: Engine;
  logger: FastifyBaseLogger;
  errors: HttpErrorPolicy;
  /** Access control: every management endpoint needs the `admin` scope (src/security/http.ts). */
  access?: AccessControl;
  /** TLS: node:https server options. */
  https?: HttpsServerOptions;
  /** Receiving a whole request (0: no limit); slow clients are dropped as on the main listener. */
  requestTimeoutMs?: number;
}): FastifyInstance {
  const timeouts = requestTimeouts(options.requestTimeoutMs ?? 0);
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    ...timeouts,
    ...(options.https === undefined ? {} : { https: { ...timeouts.http, ...options.https } }),
  });
  if (options.access !== undefined) installManagementSecurity(app, options.access);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  registerManagementRoutes(app, options);
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new TesseraError('ROUTE_NOT_FOUND', `no management endpoint ${request.method} ${request.url}`), options.errors, torchServeErrorBody),
  );
  app.setErrorHandler((error, _request, reply) => sendError(reply, error, options.errors, torchServeErrorBody));
  return app;
}

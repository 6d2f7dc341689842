import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { TesseraError } from '../../core/errors.js';
import type { Engine } from '../../engine/engine.js';
import { sendError, type HttpErrorPolicy } from './errors.js';
import { registerV2Routes } from './v2/routes.js';

export interface HttpAppOptions {
  readonly engine: Engine;
  readonly logger: FastifyBaseLogger;
  readonly bodyLimitBytes: number;
  readonly errors: HttpErrorPolicy;
  readonly serverName: string;
  readonly serverVersion: string;
}

/**
 * The HTTP front door. Bodies arrive as raw Buffers whatever their content type (curl's -d
 * sends form encoding; Triton's binary extension sends octet streams): each protocol parses
 * its own body, so parse errors carry protocol-specific messages.
 */
export function buildHttpApp(options: HttpAppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    // Per-request access logs cost throughput; errors are logged where they are answered.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    return503OnClosing: true,
    forceCloseConnections: false,
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  registerV2Routes(app, options);

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new TesseraError('ROUTE_NOT_FOUND', `no endpoint ${request.method} ${request.url}`), options.errors),
  );
  app.setErrorHandler((error, _request, reply) => {
    // Errors Fastify raises before a handler runs: body too large, bad content length, ...
    const fastifyError = error as { code?: string; statusCode?: number; message: string };
    if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, new TesseraError('PAYLOAD_TOO_LARGE', `the request body exceeds the limit of ${options.bodyLimitBytes} bytes`), options.errors);
    }
    if (fastifyError.statusCode !== undefined && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      return sendError(reply, new TesseraError('INVALID_REQUEST', fastifyError.message), options.errors);
    }
    return sendError(reply, error, options.errors);
  });
  return app;
}

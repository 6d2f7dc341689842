import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { sendError, type HttpErrorPolicy } from '../errors.js';
import { abortOnDisconnect } from '../disconnect.js';
import { decodeInferenceRequest } from './decode.js';
import { encodeInferenceResponse } from './encode.js';

export interface V2RoutesOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
  readonly serverName: string;
  readonly serverVersion: string;
}

/** V2 protocol extensions this server implements (reported by GET /v2). */
export const V2_EXTENSIONS = ['model_repository', 'model_configuration', 'statistics', 'schedule_policy', 'parameters'] as const;

type ModelParams = { model: string; version?: string };

/**
 * KServe V2 / Open Inference Protocol REST endpoints: health, server and model metadata,
 * readiness, configuration, statistics, repository index and inference.
 */
export function registerV2Routes(app: FastifyInstance, options: V2RoutesOptions): void {
  const { engine, errors } = options;
  const json = (reply: FastifyReply, status: number, body: unknown): FastifyReply =>
    reply.code(status).type('application/json').send(JSON.stringify(body));
  /** Run a handler, turning every thrown error into the V2 error object. */
  const handle =
    <P>(fn: (request: FastifyRequest<{ Params: P }>, reply: FastifyReply) => Promise<unknown> | unknown) =>
    async (request: FastifyRequest<{ Params: P }>, reply: FastifyReply): Promise<unknown> => {
      try {
        return await fn(request, reply);
      } catch (error) {
        return sendError(reply, error, errors);
      }
    };

  app.get('/v2', handle(() => ({ name: options.serverName, version: options.serverVersion, extensions: V2_EXTENSIONS })));
  app.get('/v2/health/live', handle((_req, reply) => json(reply, 200, { live: engine.isLive() })));
  app.get(
    '/v2/health/ready',
    handle((_req, reply) => {
      const ready = engine.isReady();
      return json(reply, ready ? 200 : 503, { ready });
    }),
  );

  for (const prefix of ['/v2/models/:model', '/v2/models/:model/versions/:version']) {
    app.get<{ Params: ModelParams }>(
      prefix,
      handle<ModelParams>((req) => engine.modelMetadata(req.params.model, req.params.version)),
    );
    app.get<{ Params: ModelParams }>(
      `${prefix}/ready`,
      handle<ModelParams>((req, reply) => {
        const ready = engine.modelReady(req.params.model, req.params.version);
        return json(reply, ready ? 200 : 503, { name: req.params.model, ready });
      }),
    );
    app.get<{ Params: ModelParams }>(`${prefix}/config`, handle<ModelParams>((req) => engine.modelConfig(req.params.model, req.params.version)));
    app.get<{ Params: ModelParams }>(
      `${prefix}/stats`,
      handle<ModelParams>((req) => ({ model_stats: engine.statistics(req.params.model, req.params.version) })),
    );
    app.post<{ Params: ModelParams }>(
      `${prefix}/infer`,
      handle<ModelParams>(async (req, reply) => {
        const body = parseJsonBody(req.body);
        const signal = abortOnDisconnect(req, reply);
        const request = decodeInferenceRequest(body, { model: req.params.model, version: req.params.version, signal });
        const response = await engine.infer(request);
        return reply.code(200).type('application/json').send(encodeInferenceResponse(response));
      }),
    );
  }
  app.get('/v2/models/stats', handle(() => ({ model_stats: engine.statistics() })));
  app.post(
    '/v2/repository/index',
    handle((req) => {
      const body = req.body === undefined || (Buffer.isBuffer(req.body) && req.body.length === 0) ? {} : parseJsonBody(req.body);
      const readyOnly = typeof body === 'object' && body !== null && (body as Record<string, unknown>)['ready'] === true;
      const index = engine.repositoryIndex();
      return readyOnly ? index.filter((entry) => entry.state === 'READY') : index;
    }),
  );
}

/** Parse a raw request body as JSON, answering INVALID_REQUEST with the parser's reason. */
export function parseJsonBody(body: unknown): unknown {
  if (!Buffer.isBuffer(body) || body.length === 0) throw new TesseraError('INVALID_REQUEST', 'the request body is empty; expected a JSON object');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new TesseraError('INVALID_REQUEST', `the request body is not valid JSON: ${(error as Error).message}`);
  }
}

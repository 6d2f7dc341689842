import type { FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import type { HttpObservability } from '../app.js';
import { parseLoadParameters, type LoadParameterValue } from '../../repository-load.js';
import { parseJsonBody, rawBody } from '../body.js';
import { receivedRequestPool } from '../../../core/buffer-pool.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { inferV2, requestFailedInEngine, sendV2Reply, type V2Reply } from './infer.js';


export interface V2RoutesOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
  readonly serverName: string;
  readonly serverVersion: string;
  readonly observability?: HttpObservability;
}

/** V2 protocol extensions this server implements (reported by GET /v2). */
export const V2_EXTENSIONS = [
  'model_repository',
  'model_configuration',
  'statistics',
  'schedule_policy',
  'parameters',
  'binary_tensor_data',
  'classification',
] as const;

type ModelParams = { model: string; version?: string };

/**
 * KServe V2 / Open Inference Protocol REST endpoints: health, server and model metadata,
 * readiness, configuration, statistics, repository index and inference (JSON, or JSON plus
 * binary tensor data).
 */
export function registerV2Routes(app: FastifyInstance, options: V2RoutesOptions): void {
  const { engine, errors } = options;
  const handle = guarded(errors);

  app.get('/v2', handle(() => ({ name: options.serverName, version: options.serverVersion, extensions: V2_EXTENSIONS })));
  app.get('/v2/health/live', handle((_req, reply) => sendJson(reply, 200, { live: engine.isLive() })));
  app.get(
    '/v2/health/ready',
    handle((_req, reply) => {
      const ready = engine.isReady();
      return sendJson(reply, ready ? 200 : 503, { ready });
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
        return sendJson(reply, ready ? 200 : 503, { name: req.params.model, ready });
      }),
    );
    app.get<{ Params: ModelParams }>(`${prefix}/config`, handle<ModelParams>((req) => engine.modelConfig(req.params.model, req.params.version)));
    app.get<{ Params: ModelParams }>(
      `${prefix}/stats`,
      handle<ModelParams>((req) => ({ model_stats: engine.statistics(req.params.model, req.params.version) })),
    );
    app.get<{ Params: ModelParams }>(
      `${prefix}/monitoring`,
      handle<ModelParams>((req) => {
        // Unknown models and versions answer 404 as every model endpoint does.
        const [model] = engine.describeModels(req.params.model);
        if (req.params.version !== undefined && !model!.versions.some((v) => v.version === req.params.version)) {
          throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${req.params.model}' has no version '${req.params.version}'`);
        }
        return options.observability?.monitoringSnapshot?.(req.params.model, req.params.version) ?? { model: req.params.model, enabled: false, versions: [] };
      }),
    );
    app.post<{ Params: ModelParams }>(
      `${prefix}/infer`,
      {
        // A full queue refuses before the body is read: an excess request costs no parsing.
        // Callback style: no promise per request on the hot path.
        onRequest: (req, _reply, done) => {
          done(engine.admissionRefusal(req.params.model, req.params.version, 'v2-http'));
        },
      },
      handle<ModelParams>(async (req, reply) => {
        const caller = callerContext(req, reply, 'v2-http');
        const body = rawBody(req);
        let answer: V2Reply;
        try {
          answer = await inferV2(engine, body, req.headers, { model: req.params.model, version: req.params.version, ...caller });
        } catch (error) {
          // A request the engine failed has a span too: the error answer names it.
          const failed = requestFailedInEngine(error);
          const traceparent = failed === undefined ? undefined : options.observability?.traceparentFor?.(failed);
          if (traceparent !== undefined) reply.header('traceparent', traceparent);
          throw error;
        } finally {
          // Settled and encoded: nothing reads the body any more (Engine.infer), so its memory is lent again.
          receivedRequestPool.giveBack(body);
        }
        const traceparent = answer.request === undefined ? undefined : options.observability?.traceparentFor?.(answer.request);
        if (traceparent !== undefined) reply.header('traceparent', traceparent);
        if (answer.version !== undefined) reply.header('x-model-version', answer.version);
        return sendV2Reply(reply, answer);
      }),
    );
  }
  app.get('/v2/models/stats', handle(() => ({ model_stats: engine.statistics() })));
  // Triton's model_repository extension: load (optionally with a config and files) and unload.
  app.post<{ Params: { model: string } }>(
    '/v2/repository/models/:model/load',
    handle<{ model: string }>(async (req, reply) => {
      await engine.loadModel(req.params.model, parseLoadParameters(repositoryParameters(rawBody(req))));
      return sendJson(reply, 200, {});
    }),
  );
  app.post<{ Params: { model: string } }>(
    '/v2/repository/models/:model/unload',
    handle<{ model: string }>(async (req, reply) => {
      // unload_dependents is accepted: Tessera has no ensembles, so a model has no dependents.
      repositoryParameters(rawBody(req));
      await engine.unloadModel(req.params.model);
      return sendJson(reply, 200, {});
    }),
  );
  app.post(
    '/v2/repository/index',
    handle((req) => {
      const body = rawBody(req).length === 0 ? {} : parseJsonBody(req.body);
      const readyOnly = typeof body === 'object' && body !== null && (body as Record<string, unknown>)['ready'] === true;
      const index = engine.repositoryIndex();
      return readyOnly ? index.filter((entry) => entry.state === 'READY') : index;
    }),
  );
}

/** The `parameters` object of a repository load/unload body (the body may be empty). */
function repositoryParameters(body: Buffer): Map<string, LoadParameterValue> {
  if (body.length === 0) return new Map();
  const json = parseJsonBody(body);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TesseraError('INVALID_REQUEST', 'the request body must be a JSON object');
  const parameters = (json as Record<string, unknown>)['parameters'];
  if (parameters === undefined) return new Map();
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters)) {
    throw new TesseraError('INVALID_PARAMETER', "'parameters' must be an object");
  }
  const out = new Map<string, LoadParameterValue>();
  for (const [key, value] of Object.entries(parameters)) {
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new TesseraError('INVALID_PARAMETER', `parameter '${key}' must be a string, number or boolean`);
    }
    out.set(key, value);
  }
  return out;
}

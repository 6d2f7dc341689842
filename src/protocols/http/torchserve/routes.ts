import type { FastifyInstance } from 'fastify';
import type { Engine } from '../../../engine/engine.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { payloadsOf } from '../payload.js';
import { handlerAnswerJson } from '../../../backends/handlers/common.js';
import { torchServeErrorBody } from './errors.js';
import { predictTabular } from './handler.js';

export interface TorchServeRoutesOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
}

type Params = { model: string; version?: string };

/**
 * TorchServe's inference API (pytorch/serve docs/inference_api.md): `POST|PUT
 * /predictions/{model}[/{version}]` with the raw body or a multipart upload (`curl -T file` sends
 * PUT, `curl -F data=@file` multipart), answered by the model's handler (image, tabular,
 * custom; see docs/handlers.md) or, for models without one, the default tabular/JSON handler.
 * Requests naming no version are routed as every front door's (split, sticky key, override
 * header, canary, shadow: src/routing); `X-Model-Version` names the version that answered. Errors
 * are TorchServe's `{"code", "type", "message"}`. `GET /ping` is registered by
 * {@link registerPingRoute}, shared with SageMaker.
 */
export function registerTorchServeRoutes(app: FastifyInstance, options: TorchServeRoutesOptions): void {
  const { engine } = options;
  const handle = guarded(options.errors, torchServeErrorBody);
  for (const url of ['/predictions/:model', '/predictions/:model/:version']) {
    app.route<{ Params: Params }>({
      method: ['POST', 'PUT'],
      url,
      handler: handle<Params>(async (req, reply) => {
        const payloads = await payloadsOf(req);
        const caller = callerContext(req, reply, 'torchserve');
        const { model, version } = req.params;
        if (engine.modelHandlerKind(model, version) !== undefined) {
          // The model's handler (image, tabular, custom) takes the raw upload.
          const files = payloads.map((payload, i) => ({
            fieldName: payload.field ?? (i === 0 ? 'body' : `part${i}`),
            filename: undefined,
            contentType: payload.mediaType === '' ? undefined : payload.mediaType,
            data: payload.bytes,
          }));
          const fields = Object.fromEntries(Object.entries(req.query as Record<string, unknown>).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
          const { version: served, answer } = await engine.predict(model, version, { files, fields }, caller);
          return reply.code(200).header('x-model-version', served).type('application/json').send(handlerAnswerJson(answer));
        }
        const answer = await predictTabular(engine, { model, ...(version === undefined ? {} : { version }), ...caller }, payloads);
        reply.header('x-model-version', answer.version);
        return sendJson(reply, 200, answer.json);
      }),
    });
  }
}

/**
 * `GET /ping`: TorchServe's health API (current releases answer `{"status": "Healthy"}`) and
 * SageMaker's health check (any 200 is healthy). 503 `{"status": "Unhealthy"}` while the server
 * is not ready (loading, shutting down, or a model unavailable under strict readiness).
 */
export function registerPingRoute(app: FastifyInstance, engine: Engine): void {
  app.get('/ping', (_req, reply) => {
    const ready = engine.isReady();
    return sendJson(reply, ready ? 200 : 503, { status: ready ? 'Healthy' : 'Unhealthy' });
  });
}

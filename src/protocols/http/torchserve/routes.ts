import type { FastifyInstance } from 'fastify';
import type { Engine } from '../../../engine/engine.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { payloadsOf, type Payload } from '../payload.js';
import type { HandlerFile, HandlerRequest } from '../../../backends/handlers/handler.js';
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
          const { version: served, answer } = await engine.predict(model, version, handlerRequest(payloads, req.query as Record<string, unknown>), caller);
          return reply.code(200).header('x-model-version', served).type('application/json').send(handlerAnswerJson(answer));
        }
        const answer = await predictTabular(engine, { model, ...(version === undefined ? {} : { version }), ...caller }, payloads);
        reply.header('x-model-version', answer.version);
        return sendJson(reply, 200, answer.json);
      }),
    });
  }
}

/** Form fields TorchServe's handlers read the input from (`data` or `body`), whether uploaded as a file or typed as text. */
const INPUT_FIELDS: ReadonlySet<string> = new Set(['data', 'body']);

/**
 * The raw request as a handler takes it (handler.ts): the body, or the uploaded files of a
 * multipart request with their names, in `files`; the query string's parameters and the form's
 * text fields (a form field wins over a query parameter of the same name; the last of a repeated
 * one wins) in `fields`. A text field named `data` or `body` is the input, as TorchServe reads it,
 * so it is a file (without a name): `-F data='{"instances": ...}'` reaches the handler as a body.
 */
function handlerRequest(payloads: readonly Payload[], query: Record<string, unknown>): HandlerRequest {
  const fields = new Map<string, string>();
  for (const [name, value] of Object.entries(query)) if (typeof value === 'string') fields.set(name, value);
  const files: HandlerFile[] = [];
  for (const payload of payloads) {
    if (payload.part === 'text' && !INPUT_FIELDS.has(payload.field!)) {
      fields.set(payload.field!, payload.bytes.toString('utf8'));
      continue;
    }
    files.push({
      fieldName: payload.field ?? 'body',
      filename: payload.filename,
      contentType: payload.mediaType === '' ? undefined : payload.mediaType,
      data: payload.bytes,
    });
  }
  // fromEntries: a field named __proto__ becomes an own property, not the object's prototype.
  return { files, fields: Object.fromEntries(fields) };
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

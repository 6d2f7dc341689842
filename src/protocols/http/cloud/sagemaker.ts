import type { FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { isV2Request, jsonOfPayload, payloadsOf } from '../payload.js';
import { isNamedObject } from '../rows.js';
import { predict } from '../tfserving/predict.js';
import { inferV2Json, sendV2Reply } from '../v2/infer.js';
import { singleModel } from './single-model.js';

export interface SageMakerOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
  /** The model /invocations serves; undefined: the repository's only model. */
  readonly defaultModel: string | undefined;
  readonly bodyLimitBytes: number;
}

const ACCEPTED =
  'send application/json: a V2 inference request ({"inputs": [{"name", "datatype", "shape", "data"}]}), ' +
  'or TF Serving-style {"instances": [...]} rows or {"inputs": ...} columns';

/**
 * Amazon SageMaker's container contract for real-time inference ("Use your own inference code
 * with hosting services"): the container is started as `<image> serve` and answers on port 8080
 * `GET /ping` (200 when healthy; registered with TorchServe's /ping) and `POST /invocations`
 * (the body and its Content-Type are the client's InvokeEndpoint payload). The single model is
 * the configured default or the repository's only model. Errors are `{"error": message}`, which
 * SageMaker relays to the client as the ModelError's OriginalMessage.
 *
 * `GET /execution-parameters` answers batch transform's optional query.
 */
export function registerSageMakerRoutes(app: FastifyInstance, options: SageMakerOptions): void {
  const { engine } = options;
  const handle = guarded(options.errors);
  app.post(
    '/invocations',
    handle(async (req, reply) => {
      const model = singleModel(engine, options.defaultModel);
      const [payload, ...rest] = await payloadsOf(req);
      if (rest.length > 0 || payload === undefined) throw new TesseraError('INVALID_REQUEST', 'send one JSON body, not a multipart upload');
      const body = jsonOfPayload(payload, ACCEPTED);
      const caller = callerContext(req, reply, 'sagemaker');
      if (isV2Request(body)) return sendV2Reply(reply, await inferV2Json(engine, body, { model, ...caller }));
      if (!isNamedObject(body) || !('instances' in body || 'inputs' in body)) {
        throw new TesseraError('INVALID_REQUEST', `the body is neither a V2 inference request nor TF Serving-style; ${ACCEPTED}`);
      }
      return sendJson(reply, 200, await predict(engine, body, { model, ...caller }));
    }),
  );
  app.get(
    '/execution-parameters',
    handle(() => ({
      MaxConcurrentTransforms: 1,
      BatchStrategy: 'MULTI_RECORD',
      MaxPayloadInMB: Math.max(1, Math.floor(options.bodyLimitBytes / (1024 * 1024))),
    })),
  );
}

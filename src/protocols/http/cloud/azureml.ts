import type { FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { isV2Request, jsonOfPayload, payloadsOf } from '../payload.js';
import { isNamedObject, outputRows, predictionsOf } from '../rows.js';
import { tabularInputs } from '../tabular.js';
import { predict } from '../tfserving/predict.js';
import { inferV2Json, sendV2Reply } from '../v2/infer.js';
import { singleModel } from './single-model.js';

export interface AzureMlOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
  readonly defaultModel: string | undefined;
}

const ACCEPTED =
  'send application/json: {"input_data": rows} (or MLflow\'s split form {"input_data": {"columns": [...], "data": rows}}), ' +
  '{"data": rows}, TF Serving-style {"instances": rows}, or a V2 inference request';

/**
 * Azure Machine Learning's online-endpoint contract, as its inference HTTP server
 * (azureml-inference-server-http) serves it: `GET /` is the liveness probe (200 "Healthy") and
 * `POST /score` the scoring route. Bodies: `{"input_data": rows}` (MLflow's split orientation
 * `{"columns", "index", "data"}` too), `{"data": rows}` → a JSON list with one prediction per
 * row; `{"instances": rows}` → `{"predictions": [...]}`; a V2 request → a V2 response.
 */
export function registerAzureMlRoutes(app: FastifyInstance, options: AzureMlOptions): void {
  const { engine } = options;
  const handle = guarded(options.errors);
  app.get('/', (_req, reply) => sendJson(reply, 200, { status: 'Healthy' }));
  app.post(
    '/score',
    handle(async (req, reply) => {
      const model = singleModel(engine, options.defaultModel);
      const [payload, ...rest] = await payloadsOf(req);
      if (rest.length > 0 || payload === undefined) throw new TesseraError('INVALID_REQUEST', 'send one JSON body, not a multipart upload');
      const body = jsonOfPayload(payload, ACCEPTED);
      const caller = callerContext(req, reply, 'azureml');
      if (isV2Request(body)) return sendV2Reply(reply, await inferV2Json(engine, body, { model, ...caller }));
      if (isNamedObject(body) && 'instances' in body) return sendJson(reply, 200, await predict(engine, body, { model, ...caller }));
      const rows = scoringRows(body);
      const { inputs } = engine.modelMetadata(model);
      const batch = tabularInputs([rows], inputs, model);
      const response = await engine.infer({ model, inputs: batch.inputs, ...caller });
      return sendJson(reply, 200, predictionsOf(outputRows(response.outputs, batch)));
    }),
  );
}

/** Rows of `{"input_data": rows | {"data": rows}}` or `{"data": rows}`. */
function scoringRows(body: unknown): unknown {
  if (!isNamedObject(body)) throw new TesseraError('INVALID_REQUEST', `the body must be a JSON object; ${ACCEPTED}`);
  if ('input_data' in body) {
    const inputData = body['input_data'];
    if (isNamedObject(inputData)) {
      if (!('data' in inputData)) throw new TesseraError('INVALID_REQUEST', "'input_data' is an object without 'data'; MLflow's split form is {\"columns\": [...], \"data\": rows}");
      return inputData['data'];
    }
    return inputData;
  }
  if ('data' in body) return body['data'];
  throw new TesseraError('INVALID_REQUEST', `the body has neither 'input_data' nor 'data'; ${ACCEPTED}`);
}

import type { FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { takeJsonBody } from '../body.js';
import { callerContext } from '../disconnect.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { describe } from '../../../core/json-tensor.js';
import { isNamedObject } from '../rows.js';
import { predict } from '../tfserving/predict.js';
import { singleModel } from './single-model.js';

export interface VertexOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
  readonly defaultModel: string | undefined;
  /** AIP_HEALTH_ROUTE. */
  readonly healthRoute: string;
  /** AIP_PREDICT_ROUTE. */
  readonly predictRoute: string;
}

/**
 * Vertex AI's custom-container contract ("Custom container requirements for prediction"): the
 * server listens on AIP_HTTP_PORT, answers health checks on AIP_HEALTH_ROUTE (200 = ready) and
 * predictions on AIP_PREDICT_ROUTE: `{"instances": [...], "parameters": {...}}` in,
 * `{"predictions": [...]}` out (one entry per instance). `parameters` is accepted and ignored.
 * The routes may contain ':' (`.../deployedModels/123:predict`): it is escaped for the router.
 */
export function registerVertexRoutes(app: FastifyInstance, options: VertexOptions): void {
  const { engine } = options;
  const handle = guarded(options.errors);
  const route = (path: string): string => path.replaceAll(':', '::');
  if (!app.hasRoute({ method: 'GET', url: route(options.healthRoute) })) {
    app.get(route(options.healthRoute), (_req, reply) => {
      const ready = engine.isReady();
      return sendJson(reply, ready ? 200 : 503, { status: ready ? 'Healthy' : 'Unhealthy' });
    });
  }
  if (app.hasRoute({ method: 'POST', url: route(options.predictRoute) })) {
    throw new Error(`the Vertex AI predict route ${options.predictRoute} (AIP_PREDICT_ROUTE) is already an endpoint of another protocol; choose another path`);
  }
  app.post(
    route(options.predictRoute),
    handle(async (req, reply) => {
      const model = singleModel(engine, options.defaultModel);
      const body = takeJsonBody(req);
      if (!isNamedObject(body) || !('instances' in body)) {
        throw new TesseraError('INVALID_REQUEST', `the body must be a JSON object {"instances": [...], "parameters": {...}}, got ${isNamedObject(body) ? "an object without 'instances'" : describe(body)}`);
      }
      const caller = callerContext(req, reply, 'vertex');
      return sendJson(reply, 200, await predict(engine, { instances: body['instances'] }, { model, ...caller }));
    }),
  );
}

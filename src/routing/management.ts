import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TesseraError } from '../core/errors.js';
import { parseJsonBody } from '../protocols/http/body.js';
import { guarded, type HttpErrorPolicy } from '../protocols/http/errors.js';
import { torchServeErrorBody } from '../protocols/http/torchserve/errors.js';
import type { Router } from './router.js';

type ModelParams = { model: string };
type AliasParams = { model: string; alias: string };
type VersionParams = { model: string; version: string };

/**
 * The rollout endpoints of the management API (its own listener; docs/rollouts.md). Bodies are
 * JSON; errors use the management API's TorchServe-shaped `{"code", "type", "message"}`.
 *
 *   GET    /models/{m}/rollout                    everything: split, aliases, canary, shadow, breakers
 *   PUT    /models/{m}/traffic                    {"split": {"1": 90, "2": 10}} and/or {"default_version": "2"}
 *   DELETE /models/{m}/traffic                    clear the split
 *   POST   /models/{m}/canary                     {"version": "2", "steps": [5,25,50,100], "hold": "60s", "gates": {...}}
 *   DELETE /models/{m}/canary                     abort: roll back to 0% now
 *   GET    /models/{m}/aliases                    {"stable": "1", ...}
 *   PUT    /models/{m}/aliases/{alias}            {"version": "2"}
 *   POST   /models/{m}/aliases/{alias}/rollback   back to the version it named before
 *   DELETE /models/{m}/aliases/{alias}
 *   GET    /models/{m}/shadow                     shadow status (agreement, latency, errors, drops)
 *   PUT    /models/{m}/shadow                     {"version": "2", "share": 0.1, "max_in_flight": 4}
 *   DELETE /models/{m}/shadow
 *   POST   /models/{m}/circuit/{version}/reset    close a version's circuit breaker
 */
export function registerRoutingRoutes(app: FastifyInstance, options: { readonly router: Router; readonly errors: HttpErrorPolicy }): void {
  const { router } = options;
  const handle = guarded(options.errors, torchServeErrorBody);

  app.get<{ Params: ModelParams }>('/models/:model/rollout', handle<ModelParams>((req) => router.status(req.params.model)));

  app.put<{ Params: ModelParams }>(
    '/models/:model/traffic',
    handle<ModelParams>((req) => {
      const body = objectBody(req);
      if (!('split' in body) && !('default_version' in body)) throw invalid("the body names 'split' (version -> weight, or null) and/or 'default_version' (a version, an alias, or null)");
      let defaultVersion: string | null | undefined;
      if ('default_version' in body) {
        const version = body['default_version'];
        if (version !== null && typeof version !== 'string' && typeof version !== 'number') throw invalid("'default_version' must be a version, an alias, or null");
        defaultVersion = version === null ? null : String(version);
      }
      return router.setTraffic(req.params.model, { ...(defaultVersion === undefined ? {} : { defaultVersion }), ...('split' in body ? { split: body['split'] } : {}) });
    }),
  );
  app.delete<{ Params: ModelParams }>('/models/:model/traffic', handle<ModelParams>((req) => router.setSplit(req.params.model, null)));

  app.post<{ Params: ModelParams }>('/models/:model/canary', handle<ModelParams>((req) => router.startCanary(req.params.model, objectBody(req))));
  app.delete<{ Params: ModelParams }>('/models/:model/canary', handle<ModelParams>((req) => router.abortCanary(req.params.model)));

  app.get<{ Params: ModelParams }>('/models/:model/aliases', handle<ModelParams>((req) => router.status(req.params.model).aliases));
  app.put<{ Params: AliasParams }>(
    '/models/:model/aliases/:alias',
    handle<AliasParams>((req) => {
      const body = objectBody(req);
      const version = body['version'];
      if (typeof version !== 'string' && typeof version !== 'number') throw invalid("the body names the alias's 'version'");
      return router.setAlias(req.params.model, req.params.alias, String(version));
    }),
  );
  app.post<{ Params: AliasParams }>('/models/:model/aliases/:alias/rollback', handle<AliasParams>((req) => router.rollbackAlias(req.params.model, req.params.alias)));
  app.delete<{ Params: AliasParams }>('/models/:model/aliases/:alias', handle<AliasParams>((req) => router.deleteAlias(req.params.model, req.params.alias)));

  app.get<{ Params: ModelParams }>(
    '/models/:model/shadow',
    handle<ModelParams>((req) => {
      const shadow = router.status(req.params.model).shadow;
      if (shadow === null) throw new TesseraError('ROLLOUT_NOT_FOUND', `model '${req.params.model}' has no shadow`);
      return shadow;
    }),
  );
  app.put<{ Params: ModelParams }>('/models/:model/shadow', handle<ModelParams>((req) => router.setShadow(req.params.model, objectBody(req))));
  app.delete<{ Params: ModelParams }>('/models/:model/shadow', handle<ModelParams>((req) => router.setShadow(req.params.model, null)));

  app.post<{ Params: VersionParams }>('/models/:model/circuit/:version/reset', handle<VersionParams>((req) => router.resetCircuit(req.params.model, req.params.version)));
}

function objectBody(req: FastifyRequest): Record<string, unknown> {
  const body = parseJsonBody(req.body);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the request body must be a JSON object');
  return body as Record<string, unknown>;
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_PARAMETER', message);
}

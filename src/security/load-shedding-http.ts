import type { FastifyInstance } from 'fastify';
import type { LoadShedder } from './load-shedding.js';

/** Health and scrape endpoints, never shed: probes must see the truth while the server is busy. */
const HEALTH_PATHS = ['/v2/health/live', '/v2/health/ready', '/ping', '/metrics'] as const;

/** V2 model readiness: /v2/models/{m}/ready and /v2/models/{m}/versions/{v}/ready. */
const MODEL_READY = /^\/v2\/models\/[^/]+(?:\/versions\/[^/]+)?\/ready$/;

export interface HttpSheddingOptions {
  /** More health routes of the enabled protocols (Vertex AI's AIP_HEALTH_ROUTE, Azure ML's `/`). */
  readonly healthPaths?: readonly string[];
}

/** True for GET/HEAD requests of a health endpoint. */
export function isHealthCheck(method: string, url: string, extra: ReadonlySet<string>): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  return extra.has(path) || (HEALTH_PATHS as readonly string[]).includes(path) || MODEL_READY.test(path);
}

/**
 * Shed at the earliest point Fastify offers: an `onRequest` hook, which runs once the headers
 * are parsed and before the body is read. The refusal is thrown, so the route's own error
 * handler answers it in its protocol's error shape (503 + Retry-After).
 */
export function registerLoadShedding(app: FastifyInstance, shedder: LoadShedder, options: HttpSheddingOptions = {}): void {
  if (!shedder.enabled) return;
  const extra = new Set(options.healthPaths ?? []);
  // Callback style: no promise per request on the hot path.
  app.addHook('onRequest', (request, _reply, done) => {
    done(isHealthCheck(request.method, request.url, extra) ? undefined : shedder.check());
  });
}

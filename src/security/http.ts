import fastifyCors from '@fastify/cors';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders } from 'node:http';
import { TesseraError } from '../core/errors.js';
import type { Engine } from '../engine/engine.js';
import { singleModel } from '../protocols/http/cloud/single-model.js';
import { missingScope, type AccessControl, type CheckOptions, type Requirement } from './access.js';
import { NO_CREDENTIAL, type PresentedCredentials } from './auth.js';
import { LIMITS_DECORATION, checkJsonDepth, type RequestLimits } from './limits.js';

/**
 * Security on the HTTP listeners (Fastify): CORS, then access control in an `onRequest` hook
 * (before the body is read: an unauthenticated or rate-limited request costs no parsing), then
 * the JSON nesting check in a `preValidation` hook (after the body is read, before any route
 * parses it). Refusals are thrown, so each route's own error handler answers them in its
 * protocol's shape (`{"error"}`, TorchServe's `{"code","type","message"}`).
 *
 * What each route needs is decided from its registered URL pattern (see {@link httpRequirement});
 * a route may state its own with `config: { auth: { access, models } }`.
 */

export interface HttpSecurity {
  readonly access: AccessControl;
  readonly limits: RequestLimits;
  /** Allowed CORS origins (`*` for any); empty: CORS off. */
  readonly corsOrigins: readonly string[];
}

/** A route's own requirement: `models: 'param'` takes the model from the `model` path parameter. */
export interface RouteAuth {
  readonly access: Requirement['access'];
  readonly models?: 'param' | 'all' | 'none';
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Access the route needs (src/security/http.ts); default: decided from its URL. */
    auth?: RouteAuth;
  }
}

/** What the requirements depend on besides the URL: the enabled protocols' extra routes. */
export interface HttpRouteContext {
  /** Health routes besides /v2/health/*, /ping (Vertex AI's health route, Azure ML's `/`). */
  readonly healthPaths: readonly string[];
  /** Inference routes of single-model platforms (/invocations, Vertex AI's predict route, /score). */
  readonly singleModelPaths: readonly string[];
  /** The model those routes serve, when it can be told. */
  readonly singleModel: () => string | undefined;
}

/** The route context of the main listener, from its protocol settings. */
export function httpRouteContext(
  engine: Engine,
  protocols: {
    readonly sagemaker: boolean;
    readonly vertex: { readonly healthRoute: string; readonly predictRoute: string } | undefined;
    readonly azureml: boolean;
    readonly defaultModel: string | undefined;
  },
): HttpRouteContext {
  return {
    healthPaths: [...(protocols.vertex === undefined ? [] : [protocols.vertex.healthRoute]), ...(protocols.azureml ? ['/'] : [])],
    singleModelPaths: [...(protocols.sagemaker ? ['/invocations'] : []), ...(protocols.vertex === undefined ? [] : [protocols.vertex.predictRoute]), ...(protocols.azureml ? ['/score'] : [])],
    singleModel: () => {
      try {
        return singleModel(engine, protocols.defaultModel);
      } catch {
        return undefined;
      }
    },
  };
}

const HEALTH_PATHS = new Set(['/v2/health/live', '/v2/health/ready', '/ping']);

/** Headers browsers may send cross-origin, and may read from answers. */
const CORS_ALLOWED_HEADERS = ['authorization', 'x-api-key', 'content-type', 'content-encoding', 'inference-header-content-length', 'traceparent', 'x-request-id'];
const CORS_EXPOSED_HEADERS = ['retry-after', 'www-authenticate', 'inference-header-content-length', 'traceparent', 'x-request-id'];

/** Install CORS, access control, request limits and the JSON nesting check on the main HTTP app. */
export function installHttpSecurity(app: FastifyInstance, security: HttpSecurity, context: HttpRouteContext): void {
  const cors = security.corsOrigins.length > 0;
  if (cors) {
    const any = security.corsOrigins.includes('*');
    const allowed = new Set(security.corsOrigins);
    void app.register(fastifyCors, {
      // A disallowed origin gets no CORS headers at all, and its preflight a 404.
      origin: (origin, callback) => callback(null, origin !== undefined && (any || allowed.has(origin)) ? (any ? '*' : origin) : false),
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
      allowedHeaders: CORS_ALLOWED_HEADERS,
      exposedHeaders: CORS_EXPOSED_HEADERS,
      maxAge: 600,
    });
  }
  app.decorate(LIMITS_DECORATION, security.limits);
  const { access } = security;
  if (access.active) {
    app.addHook('onRequest', async (request, reply) => {
      const requirement = httpRequirement(request, context, cors);
      if (requirement === undefined) return;
      await admit(access, requirement, request, reply);
    });
  }
  const { limits } = security;
  if (limits.maxJsonDepth > 0) {
    app.addHook('preValidation', async (request) => {
      const body = request.body;
      if (Buffer.isBuffer(body) && body.length > 0) checkJsonDepth(jsonPart(body, request.headers), limits);
    });
  }
}

/**
 * The management listener: every endpoint needs `admin` (and the model, when one is named, in
 * the allow list). Rate limits and budgets do not apply to it.
 */
export function installManagementSecurity(app: FastifyInstance, access: AccessControl): void {
  // Operators are not rate-limited: only authentication applies here.
  if (!access.authenticating) return;
  app.addHook('onRequest', async (request, reply) => {
    const model = modelParam(request);
    const requirement: Requirement =
      request.routeOptions.url === undefined ? { access: 'authenticated', models: 'none' } : { access: 'admin', models: model === undefined ? 'all' : { model } };
    await admit(access, requirement, request, reply, { metered: false });
  });
}

async function admit(access: AccessControl, requirement: Requirement, request: FastifyRequest, reply: FastifyReply, options: CheckOptions = {}): Promise<void> {
  try {
    await access.admit(requirement, { credentials: credentialsOf(request.headers), address: request.ip }, options);
  } catch (error) {
    if (error instanceof TesseraError) challenge(reply, error, requirement);
    throw error;
  }
}

/** The credential headers of a request (never logged: see src/security/redact.ts). */
export function credentialsOf(headers: IncomingHttpHeaders): PresentedCredentials {
  const apiKey = headers['x-api-key'];
  return { authorization: headers.authorization, apiKey: Array.isArray(apiKey) ? apiKey.join(',') : apiKey };
}

/** RFC 6750 §3: `WWW-Authenticate: Bearer` on 401, with the scope needed on 403. */
function challenge(reply: FastifyReply, error: TesseraError, requirement: Requirement): void {
  if (error.code === 'UNAUTHENTICATED') {
    const invalid = error.message === NO_CREDENTIAL ? '' : `, error="invalid_token", error_description="${quoted(error.message)}"`;
    reply.header('www-authenticate', `Bearer realm="tessera"${invalid}`);
  } else if (error.code === 'PERMISSION_DENIED') {
    const scope = missingScope(requirement);
    reply.header('www-authenticate', `Bearer realm="tessera", error="insufficient_scope"${scope === undefined ? '' : `, scope="${scope}"`}`);
  }
}

function quoted(text: string): string {
  return text.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '');
}

/** The JSON part of a body: the inference header's bytes when the binary extension is used. */
function jsonPart(body: Buffer, headers: IncomingHttpHeaders): Buffer {
  const header = headers['inference-header-content-length'];
  if (typeof header !== 'string' || !/^\s*\d+\s*$/.test(header)) return body;
  const length = Number(header);
  return length > 0 && length <= body.length ? body.subarray(0, length) : body;
}

function modelParam(request: FastifyRequest): string | undefined {
  const params = request.params as Record<string, unknown> | undefined;
  const model = params?.['model'];
  return typeof model === 'string' && model !== '' ? model : undefined;
}

/**
 * What an HTTP request needs, from its route's URL pattern and method; undefined when nothing
 * (a CORS preflight). Unknown URLs need a credential (any), so they are not disclosed.
 *
 * | route | needs |
 * |---|---|
 * | /v2/health/*, /ping, the platforms' health routes | health (open by default) |
 * | GET /v2, /execution-parameters | read |
 * | GET /v2/models/{m}[/versions/{v}][/ready,/config,/stats,/monitoring], GET /v1/models/{m}... | read, model m |
 * | GET /v2/models/stats, POST /v2/repository/index, /metrics | read, every model |
 * | POST /v2/models/{m}[...]/infer, /v1/models/{m}:predict, /predictions/{m} | infer, model m |
 * | /invocations, /score, Vertex AI's predict route | infer, the served model |
 * | POST /v2/repository/models/{m}/load, /unload | admin, model m |
 * | anything else | GET/HEAD: read; others: admin (model m when the path names one, else every model) |
 */
export function httpRequirement(request: FastifyRequest, context: HttpRouteContext, cors = false): Requirement | undefined {
  const url = request.routeOptions.url;
  const method = request.method;
  if (url === undefined) return { access: 'authenticated', models: 'none' };
  if (method === 'OPTIONS' && cors && url === '*') return undefined;
  const own = request.routeOptions.config?.auth;
  const model = modelParam(request);
  if (own !== undefined) {
    const models = own.models ?? 'param';
    return { access: own.access, models: models === 'param' ? (model === undefined ? 'all' : { model }) : models };
  }
  const read = method === 'GET' || method === 'HEAD';
  const path = url.replaceAll('::', ':');
  const one = (name: string | undefined): Requirement['models'] => (name === undefined ? 'all' : { model: name });
  if (read && (HEALTH_PATHS.has(path) || context.healthPaths.includes(path))) return { access: 'health', models: 'none' };
  if (path === '/v2' || path === '/execution-parameters') return { access: 'read', models: 'none' };
  if (path === '/v2/models/stats' || path === '/v2/repository/index' || path === '/metrics') return { access: 'read', models: 'all' };
  if (path.startsWith('/v2/models/:model')) return { access: path.endsWith('/infer') ? 'infer' : 'read', models: one(model) };
  if (path.startsWith('/v2/repository/models/:model/')) return { access: 'admin', models: one(model) };
  if (path.startsWith('/v1/models/')) {
    if (read) return { access: 'read', models: one(model) };
    // POST /v1/models/{m}:predict: the model is the segment before the last colon.
    const target = (request.params as Record<string, unknown>)['target'];
    const head = model ?? (typeof target === 'string' && target.lastIndexOf(':') > 0 ? target.slice(0, target.lastIndexOf(':')) : undefined);
    return { access: 'infer', models: one(head) };
  }
  if (path.startsWith('/predictions/:model')) return { access: 'infer', models: one(model) };
  if (!read && context.singleModelPaths.includes(path)) return { access: 'infer', models: one(context.singleModel()) };
  return { access: read ? 'read' : 'admin', models: one(model) };
}

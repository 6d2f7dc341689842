import type { FastifyReply, FastifyRequest } from 'fastify';
import { toTesseraError, type ErrorCategory, type TesseraError } from '../../core/errors.js';

/** The one map from error category to HTTP status; the compiler checks it is complete. */
export const HTTP_STATUS: Readonly<Record<ErrorCategory, number>> = {
  invalid_argument: 400,
  not_found: 404,
  unavailable: 503,
  unsupported: 400,
  already_exists: 409,
  // Client closed the request (nginx's 499): only logs ever see it.
  cancelled: 499,
  deadline_exceeded: 504,
  unauthenticated: 401,
  permission_denied: 403,
  resource_exhausted: 429,
  too_large: 413,
  internal: 500,
};

export interface HttpErrorPolicy {
  /** Status for QUEUE_FULL: 503 (Triton's) or 429. */
  readonly queueFullStatus: number;
}

/** The HTTP status of an error: its category's, with two code-level refinements. */
export function httpStatusOf(error: TesseraError, policy: HttpErrorPolicy): number {
  if (error.code === 'QUEUE_FULL') return policy.queueFullStatus;
  // RFC 9110 §15.5.16: the body's media type (or content coding) is not one the endpoint takes.
  if (error.code === 'UNSUPPORTED_MEDIA_TYPE') return 415;
  return HTTP_STATUS[error.category];
}

/** Builds a protocol's error body from the error and the status it is answered with. */
export type ErrorBody = (error: TesseraError, status: number) => object;

/** The V2 / TF Serving / cloud error object: `{"error": message}`. */
export const errorObject: ErrorBody = (error) => ({ error: error.message });

/**
 * Answer with `{"error": message}` (the V2 error object; protocols with another error shape,
 * such as TorchServe's, pass `body`) and Retry-After where one applies.
 */
export function sendError(reply: FastifyReply, thrown: unknown, policy: HttpErrorPolicy, body: ErrorBody = errorObject): FastifyReply {
  const error = toTesseraError(thrown);
  const status = httpStatusOf(error, policy);
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  if (error.category === 'internal') reply.request.log.error({ err: error, code: error.code }, error.message);
  else if (status >= 500) logRefusal(reply.request.log, error);
  else reply.request.log.debug({ code: error.code }, error.message);
  return reply.code(status).type('application/json').send(JSON.stringify(body(error, status)));
}

/** Refusals logged per code: when the last line was written and how many were left out since. */
const refusals = new Map<string, { lastMs: number; suppressed: number }>();

/**
 * Refusals that are the server protecting itself (queue full, deadline, unavailable) are
 * expected in bursts under overload: one warning per code per second, counting the rest, so
 * that a flood of 503s is neither a flood of log lines nor a synchronous write per refusal
 * (metrics count every one). Internal errors are always logged, with their stack.
 */
function logRefusal(log: FastifyRequest['log'], error: TesseraError): void {
  const now = performance.now();
  const entry = refusals.get(error.code);
  if (entry !== undefined && now - entry.lastMs < 1000) {
    entry.suppressed++;
    return;
  }
  const suppressed = entry?.suppressed ?? 0;
  refusals.set(error.code, { lastMs: now, suppressed: 0 });
  log.warn({ code: error.code, ...(suppressed > 0 ? { suppressed_since_last: suppressed } : {}) }, error.message);
}

/** A route handler of Fastify with typed path parameters. */
export type Handler<P> = (request: FastifyRequest<{ Params: P }>, reply: FastifyReply) => Promise<unknown> | unknown;

/** Wrap a handler so that every thrown error is answered by {@link sendError} in `body`'s shape. */
export function guarded(policy: HttpErrorPolicy, body: ErrorBody = errorObject) {
  return <P>(fn: Handler<P>) =>
    async (request: FastifyRequest<{ Params: P }>, reply: FastifyReply): Promise<unknown> => {
      try {
        return await fn(request, reply);
      } catch (error) {
        return sendError(reply, error, policy, body);
      }
    };
}

/** Send `body` as JSON text with a status. */
export function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).type('application/json').send(typeof body === 'string' ? body : JSON.stringify(body));
}

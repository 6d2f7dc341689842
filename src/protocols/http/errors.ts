import type { FastifyReply } from 'fastify';
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

export function httpStatusOf(error: TesseraError, policy: HttpErrorPolicy): number {
  if (error.code === 'QUEUE_FULL') return policy.queueFullStatus;
  return HTTP_STATUS[error.category];
}

/**
 * Answer with `{"error": message}` (the V2 error object; TF Serving's and TorchServe's
 * adapters shape their own bodies from the same status) and Retry-After where one applies.
 */
export function sendError(reply: FastifyReply, thrown: unknown, policy: HttpErrorPolicy, body?: (error: TesseraError) => object): FastifyReply {
  const error = toTesseraError(thrown);
  const status = httpStatusOf(error, policy);
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  if (status >= 500) reply.request.log.error({ err: error, code: error.code }, error.message);
  else reply.request.log.debug({ code: error.code }, error.message);
  return reply.code(status).type('application/json').send(JSON.stringify(body === undefined ? { error: error.message } : body(error)));
}

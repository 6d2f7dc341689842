import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * An AbortSignal that fires when the caller disconnects before the response is written, so a
 * queued request is dropped instead of run for nobody.
 */
export function abortOnDisconnect(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const response = reply.raw;
  const onClose = (): void => {
    if (!response.writableFinished) controller.abort();
  };
  response.once('close', onClose);
  request.raw.once('aborted', onClose);
  return controller.signal;
}

/** What every HTTP adapter passes on to the engine about the caller. */
export interface CallerContext {
  readonly signal: AbortSignal;
  /** The front door, for metrics and logs. */
  readonly protocol: string;
  /** The caller's W3C trace context, if it sent one. */
  readonly traceparent?: string;
}

/** The caller context of one HTTP request: disconnect signal, protocol tag, `traceparent` header. */
export function callerContext(request: FastifyRequest, reply: FastifyReply, protocol: string): CallerContext {
  const header = request.headers['traceparent'];
  const traceparent = typeof header === 'string' && header.length <= 256 ? header : undefined;
  return { signal: abortOnDisconnect(request, reply), protocol, ...(traceparent === undefined ? {} : { traceparent }) };
}

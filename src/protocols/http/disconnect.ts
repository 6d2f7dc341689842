import type { FastifyReply, FastifyRequest } from 'fastify';
import { CancelFlag, type CancelSignal } from '../../core/cancel.js';
import { requestLimitsOf, type RequestLimits } from '../../security/limits.js';

/**
 * A signal that fires when the caller disconnects before the response is written, so a
 * queued request is dropped instead of run for nobody. The response's 'close' event covers
 * both ways a caller goes away: the socket closing while the request is read or queued, and
 * before the answer is flushed; after a complete answer `writableFinished` is true.
 */
export function abortOnDisconnect(_request: FastifyRequest, reply: FastifyReply): CancelSignal {
  const flag = new CancelFlag();
  const response = reply.raw;
  // 'close' is emitted once per response, so `on` spares the once-wrapper of `once`.
  response.on('close', () => {
    if (!response.writableFinished) flag.cancel();
  });
  return flag;
}

/** What every HTTP adapter passes on to the engine about the caller. */
export interface CallerContext {
  readonly signal: CancelSignal;
  /** The front door, for metrics and logs. */
  readonly protocol: string;
  /** The caller's W3C trace context, if it sent one. */
  readonly traceparent?: string;
  /** Reads a request header by lower-case name: routing takes sticky keys and version overrides from it. */
  readonly callerHeader: (name: string) => string | undefined;
  /** Request limits the decoders check before building tensors (src/security/limits.ts), when installed. */
  readonly limits?: RequestLimits;
}

/** The caller context of one HTTP request: disconnect signal, protocol tag, `traceparent` header, header lookup for routing. */
export function callerContext(request: FastifyRequest, reply: FastifyReply, protocol: string): CallerContext {
  const header = request.headers['traceparent'];
  const traceparent = typeof header === 'string' && header.length <= 256 ? header : undefined;
  const callerHeader = (name: string): string | undefined => headerValue(request.headers[name]);
  const limits = requestLimitsOf(request);
  return { signal: abortOnDisconnect(request, reply), protocol, ...(traceparent === undefined ? {} : { traceparent }), callerHeader, ...(limits === undefined ? {} : { limits }) };
}

/** The first value of a header, if it is a sane length for a routing key. */
function headerValue(value: string | string[] | undefined): string | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  return first !== undefined && first !== '' && first.length <= 256 ? first : undefined;
}

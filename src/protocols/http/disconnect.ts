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

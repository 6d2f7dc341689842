import type { TesseraError } from '../core/errors.js';

/**
 * Inference messages the gRPC security interceptor refused (model not allowed, rate limit,
 * budget, request limits) but still passes on to the handler, which answers the refusal as it
 * answers any failed request: a status with its error code on ModelInfer, an `error_message`
 * on ModelStreamInfer — where one refused message must not end the whole stream. The decoder
 * (src/protocols/grpc/infer-request.ts) throws the refusal before reading anything.
 */
const refusals = new WeakMap<object, TesseraError>();

export function refuseMessage(message: object, refusal: TesseraError): void {
  refusals.set(message, refusal);
}

/** The refusal recorded for `message`, if any. */
export function refusalOf(message: object): TesseraError | undefined {
  return refusals.get(message);
}

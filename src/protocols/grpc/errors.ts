import { Metadata, status, type ServerErrorResponse } from '@grpc/grpc-js';
import { toTesseraError, type ErrorCategory, type TesseraError } from '../../core/errors.js';

/**
 * The one map from error category to gRPC status code; the compiler checks it is complete.
 * Codes follow gRPC's definitions (grpc/doc/statuscodes.md) and Triton's mapping of its own
 * error codes, with one deliberate choice:
 *
 * - `unsupported` (UNSUPPORTED_DATATYPE, ...) → INVALID_ARGUMENT, not UNIMPLEMENTED: the rpc
 *   exists and the request carries something this model cannot take, which is the caller's to
 *   fix (REST answers 400 for it too). UNIMPLEMENTED stays reserved for rpcs the server does
 *   not serve, which is what clients take it to mean.
 * - `too_large` → RESOURCE_EXHAUSTED, the code gRPC itself uses for oversized messages.
 * - QUEUE_FULL and SHUTTING_DOWN are `unavailable` → UNAVAILABLE, which gRPC clients retry.
 */
export const GRPC_STATUS: Readonly<Record<ErrorCategory, status>> = {
  invalid_argument: status.INVALID_ARGUMENT,
  not_found: status.NOT_FOUND,
  unavailable: status.UNAVAILABLE,
  unsupported: status.INVALID_ARGUMENT,
  already_exists: status.ALREADY_EXISTS,
  cancelled: status.CANCELLED,
  deadline_exceeded: status.DEADLINE_EXCEEDED,
  unauthenticated: status.UNAUTHENTICATED,
  permission_denied: status.PERMISSION_DENIED,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  too_large: status.RESOURCE_EXHAUSTED,
  internal: status.INTERNAL,
};

/** Trailing-metadata key carrying the Tessera error code (e.g. INVALID_INPUT_SHAPE). */
export const ERROR_CODE_METADATA_KEY = 'tessera-error-code';

/** Trailing-metadata key carrying the retry delay of retryable refusals, in seconds (as HTTP's Retry-After). */
export const RETRY_AFTER_METADATA_KEY = 'retry-after';

/**
 * The gRPC error for anything thrown: status from the category map, details = the error's
 * message (the same text REST puts in `{"error": ...}`), and trailing metadata with the
 * Tessera error code and, where one applies, the retry delay.
 */
export function toServiceError(thrown: unknown): ServerErrorResponse & { code: status } {
  const error = toTesseraError(thrown);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA_KEY, error.code);
  if (error.retryAfterSeconds !== undefined) metadata.set(RETRY_AFTER_METADATA_KEY, String(error.retryAfterSeconds));
  return Object.assign(new Error(error.message), { code: grpcStatusOf(error), details: error.message, metadata });
}

export function grpcStatusOf(error: TesseraError): status {
  return GRPC_STATUS[error.category];
}

import type { TesseraError } from '../../../core/errors.js';
import type { ErrorBody } from '../errors.js';

/**
 * TorchServe's error body: `{"code": status, "type": "<Java exception name>", "message": ...}`,
 * as its frontend answers (e.g. `{"code": 404, "type": "ModelNotFoundException",
 * "message": "Model not found: resnet"}`). Status codes stay Tessera's.
 */
export const torchServeErrorBody: ErrorBody = (error, status) => ({ code: status, type: exceptionType(error, status), message: error.message });

function exceptionType(error: TesseraError, status: number): string {
  if (error.code === 'MODEL_NOT_FOUND') return 'ModelNotFoundException';
  if (error.code === 'MODEL_VERSION_NOT_FOUND') return 'ModelVersionNotFoundException';
  if (error.code === 'ROUTE_NOT_FOUND') return 'ResourceNotFoundException';
  if (error.code === 'UNSUPPORTED_MEDIA_TYPE') return 'UnsupportedMediaTypeException';
  if (error.code === 'PAYLOAD_TOO_LARGE') return 'RequestEntityTooLargeException';
  if (error.code === 'DEADLINE_EXCEEDED') return 'RequestTimeoutException';
  if (status === 409) return 'ConflictStatusException';
  if (status === 503 || status === 429) return 'ServiceUnavailableException';
  if (status >= 500) return 'InternalServerException';
  return 'BadRequestException';
}

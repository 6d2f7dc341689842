import { TesseraError } from '../core/errors.js';

/** A repository load request's parameters as the engine takes them. */
export interface LoadRequestOptions {
  readonly config?: unknown;
  readonly files?: ReadonlyMap<string, Buffer>;
}

/** One parameter value as the protocols carry it: JSON values over REST, a oneof over gRPC. */
export type LoadParameterValue = string | number | boolean | Buffer;

/**
 * The V2 repository extension's load parameters (Triton's model_repository extension):
 * `config` is a JSON model configuration that replaces the model's own; `file:<path>` carries
 * a model file (base64 over REST, bytes over gRPC) and requires `config`.
 */
export function parseLoadParameters(parameters: ReadonlyMap<string, LoadParameterValue>): LoadRequestOptions {
  let config: unknown;
  const files = new Map<string, Buffer>();
  for (const [key, value] of parameters) {
    if (key === 'config') {
      if (typeof value !== 'string') throw new TesseraError('INVALID_PARAMETER', "parameter 'config' must be a JSON string");
      try {
        config = JSON.parse(value);
      } catch (error) {
        throw new TesseraError('INVALID_PARAMETER', `parameter 'config' is not valid JSON: ${(error as Error).message}`);
      }
    } else if (key.startsWith('file:')) {
      const path = key.slice('file:'.length);
      if (Buffer.isBuffer(value)) files.set(path, value);
      else if (typeof value === 'string') files.set(path, Buffer.from(value, 'base64'));
      else throw new TesseraError('INVALID_PARAMETER', `parameter '${key}' must hold the file's bytes (base64 over REST)`);
    }
  }
  if (files.size > 0 && config === undefined) {
    throw new TesseraError('INVALID_PARAMETER', "model files were sent without a 'config' parameter; Triton's load API requires one with files");
  }
  return { ...(config === undefined ? {} : { config }), ...(files.size === 0 ? {} : { files }) };
}

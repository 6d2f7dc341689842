import { TesseraError } from '../core/errors.js';

/** A repository load request's parameters as the engine takes them. */
export interface LoadRequestOptions {
  readonly config?: unknown;
  readonly files?: ReadonlyMap<string, Buffer>;
}

/** Deepest nesting of arrays and objects accepted in a load request's `config`. */
const MAX_CONFIG_DEPTH = 32;

/** Nesting depth of a parsed JSON value (0 for a scalar), walked without recursion. */
function nestingDepth(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const [node, depth] = top;
    if (typeof node !== 'object' || node === null) continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_CONFIG_DEPTH) return deepest;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return deepest;
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
      // Configs are a few levels deep; thousands of levels would overflow the stack of every
      // recursive walk of the config afterwards (zod, JSON.stringify).
      if (nestingDepth(config) > MAX_CONFIG_DEPTH) {
        throw new TesseraError('INVALID_PARAMETER', `parameter 'config' nests more than ${MAX_CONFIG_DEPTH} levels deep`);
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

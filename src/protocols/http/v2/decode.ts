import { isDataType } from '../../../core/datatype.js';
import { TesseraError } from '../../../core/errors.js';
import type { CancelSignal } from '../../../core/cancel.js';
import type { InferenceRequest, RequestedOutput } from '../../../core/inference.js';
import type { ParameterValue, Parameters, Tensor } from '../../../core/tensor.js';
import { elementCount } from '../../../core/shape.js';
import { describe, nestingProblem, tensorDataFromJson } from '../../../core/json-tensor.js';
import { tensorDataFromBinary, type BinaryTail } from './binary.js';
import { checkInputCount, checkShape, jsonTensorLimits, type RequestLimits } from '../../../security/limits.js';

/** Where the request came from: path parameters and the caller's abort signal. */
export interface RequestTarget {
  readonly model: string;
  readonly version?: string;
  readonly signal?: CancelSignal;
  /** The front door (`v2-http`, `tfserving`, ...), for metrics and logs. */
  readonly protocol?: string;
  readonly traceparent?: string;
  /** The caller's headers, for routing (sticky keys, version overrides). */
  readonly callerHeader?: (name: string) => string | undefined;
  /** Request limits checked while decoding, before tensor data is built (src/security/limits.ts). */
  readonly limits?: RequestLimits;
}

/**
 * Decode a V2 inference request body (the Open Inference Protocol's $inference_request) into
 * the engine's InferenceRequest. Request parameters `priority` and `timeout` (microseconds)
 * are Triton's scheduling parameters. With `tail` (the binary tensor data extension), inputs
 * with parameter `binary_data_size` take their bytes from it, in order.
 */
export function decodeInferenceRequest(body: unknown, target: RequestTarget, tail?: BinaryTail): InferenceRequest {
  if (!isObject(body)) throw invalid(`the request body must be a JSON object, got ${describe(body)}`);
  const id = body['id'];
  if (id !== undefined && typeof id !== 'string') throw invalid(`'id' must be a string, got ${describe(id)}`);
  const parameters = decodeParameters(body['parameters'], "request 'parameters'");
  const inputsJson = body['inputs'];
  if (!Array.isArray(inputsJson)) throw invalid(`'inputs' must be an array of tensors, got ${describe(inputsJson)}`);
  if (inputsJson.length === 0) throw invalid("'inputs' is empty; send at least one input tensor");
  if (target.limits !== undefined) checkInputCount(inputsJson.length, target.limits);
  const inputs = inputsJson.map((input, i) => decodeInput(input, i, tail, target.limits));
  tail?.finish();
  const outputsJson = body['outputs'];
  let outputs: RequestedOutput[] | undefined;
  if (outputsJson !== undefined) {
    if (!Array.isArray(outputsJson)) throw invalid(`'outputs' must be an array, got ${describe(outputsJson)}`);
    outputs = outputsJson.map((output, i) => decodeOutput(output, i));
  }
  const priority = optionalInteger(parameters, 'priority');
  const timeoutUs = optionalInteger(parameters, 'timeout');
  return {
    ...(id === undefined ? {} : { id }),
    model: target.model,
    ...(target.version === undefined ? {} : { version: target.version }),
    inputs,
    ...(outputs === undefined ? {} : { outputs }),
    ...(parameters === undefined ? {} : { parameters }),
    ...(priority === undefined ? {} : { priority }),
    ...(timeoutUs === undefined || timeoutUs === 0 ? {} : { timeoutMs: timeoutUs / 1000 }),
    ...(target.signal === undefined ? {} : { signal: target.signal }),
    ...(target.protocol === undefined ? {} : { protocol: target.protocol }),
    ...(target.traceparent === undefined ? {} : { traceparent: target.traceparent }),
    ...(target.callerHeader === undefined ? {} : { callerHeader: target.callerHeader }),
  };
}

function decodeInput(json: unknown, index: number, tail: BinaryTail | undefined, limits?: RequestLimits): Tensor {
  if (!isObject(json)) throw invalid(`inputs[${index}] must be an object, got ${describe(json)}`);
  const name = json['name'];
  if (typeof name !== 'string' || name === '') throw invalid(`inputs[${index}].name must be a non-empty string, got ${describe(name)}`);
  const where = `input '${name}'`;
  const datatype = json['datatype'];
  if (!isDataType(datatype)) {
    throw new TesseraError('INVALID_DATATYPE', `${where}: datatype ${describe(datatype)} is not a V2 datatype (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES)`);
  }
  const shape = json['shape'];
  if (!Array.isArray(shape) || !shape.every((dim) => typeof dim === 'number' && Number.isSafeInteger(dim) && dim >= 0)) {
    throw new TesseraError('INVALID_INPUT_SHAPE', `${where}: 'shape' must be an array of non-negative integers, got ${Array.isArray(shape) ? shapePreview(shape) : describe(shape)}`);
  }
  // Elements and rows the shape declares, before any data is read.
  if (limits !== undefined) checkShape(where, datatype, shape as number[], limits);
  const parameters = decodeParameters(json['parameters'], `${where} 'parameters'`);
  const binarySize = parameters?.['binary_data_size'];
  if (binarySize !== undefined) {
    // extension_binary_data.md: "binary_data_size": int64, the size of the tensor's binary data.
    if (typeof binarySize !== 'number' || !Number.isSafeInteger(binarySize) || binarySize < 0) {
      throw new TesseraError('INVALID_PARAMETER', `${where}: parameter 'binary_data_size' must be a non-negative integer, got ${describe(binarySize)}`);
    }
    if ('data' in json) throw invalid(`${where}: has both 'data' and parameter 'binary_data_size'; send one`);
    if (tail === undefined) {
      throw invalid(`${where}: parameter 'binary_data_size' is set but the request has no binary data (the Inference-Header-Content-Length header is missing)`);
    }
    const data = tensorDataFromBinary(datatype, shape as number[], tail.take(binarySize, where), where, limits);
    return { name, datatype, shape: shape as number[], data } as Tensor;
  }
  if (!('data' in json)) throw invalid(`${where}: 'data' is missing`);
  const data = tensorDataFromJson(datatype, json['data'], where, limits === undefined ? {} : jsonTensorLimits(datatype, limits));
  // Ragged rows whose element count happens to fit the shape would be silently re-cut: refuse them.
  const count = elementCount(shape as number[]);
  if (count === data.length) {
    const problem = nestingProblem(json['data']);
    if (problem !== undefined) throw new TesseraError('INVALID_INPUT_DATA', `${where}: 'data' is ragged: ${problem}`);
  }
  return { name, datatype, shape: shape as number[], data } as Tensor;
}

function decodeOutput(json: unknown, index: number): RequestedOutput {
  if (!isObject(json)) throw invalid(`outputs[${index}] must be an object, got ${describe(json)}`);
  const name = json['name'];
  if (typeof name !== 'string' || name === '') throw invalid(`outputs[${index}].name must be a non-empty string, got ${describe(name)}`);
  const parameters = decodeParameters(json['parameters'], `output '${name}' 'parameters'`);
  return parameters === undefined ? { name } : { name, parameters };
}

function decodeParameters(json: unknown, where: string): Parameters | undefined {
  if (json === undefined) return undefined;
  if (!isObject(json)) throw new TesseraError('INVALID_PARAMETER', `${where} must be an object, got ${describe(json)}`);
  const out: Record<string, ParameterValue> = {};
  for (const [key, value] of Object.entries(json)) {
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new TesseraError('INVALID_PARAMETER', `${where}.${key} must be a string, number or boolean, got ${describe(value)}`);
    }
    out[key] = value;
  }
  return out;
}

function optionalInteger(parameters: Parameters | undefined, key: string): number | undefined {
  const value = parameters?.[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TesseraError('INVALID_PARAMETER', `request parameter '${key}' must be a non-negative integer, got ${describe(value)}`);
  }
  return value;
}

/**
 * A refused shape as JSON-like text for messages: its first dims, nested values only described,
 * so a shape nested thousands of levels deep cannot overflow the stack (JSON.stringify recurses).
 */
function shapePreview(shape: readonly unknown[]): string {
  const dims = shape.slice(0, 20).map((dim) => (typeof dim === 'object' && dim !== null ? describe(dim) : String(JSON.stringify(dim))));
  return `[${dims.join(',')}${shape.length > 20 ? ',...' : ''}]`.slice(0, 80);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_REQUEST', message);
}

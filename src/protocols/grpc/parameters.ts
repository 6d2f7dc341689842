import { TesseraError } from '../../core/errors.js';
import type { ParameterValue, Parameters } from '../../core/tensor.js';
import { describe } from '../../core/json-tensor.js';
import type { InferParameterMap, InferParameterMessage, InferParameterOut } from './messages.js';

/**
 * InferParameter maps (Open Inference Protocol `parameters`) to and from the engine's
 * Parameters. 64-bit values become JS numbers and must be exact (|v| <= 2^53 - 1).
 */

/** Decode a parameter map; undefined when it is empty (proto3 cannot tell empty from absent). */
export function decodeParameters(map: InferParameterMap, where: string): Parameters | undefined {
  const entries = Object.entries(map);
  if (entries.length === 0) return undefined;
  const out: Record<string, ParameterValue> = {};
  for (const [key, parameter] of entries) out[key] = decodeParameter(parameter, `${where}.${key}`);
  return out;
}

function decodeParameter(parameter: InferParameterMessage, where: string): ParameterValue {
  switch (parameter.parameter_choice) {
    case 'bool_param':
      return parameter.bool_param === true;
    case 'string_param':
      return parameter.string_param ?? '';
    case 'double_param':
      return parameter.double_param ?? 0;
    case 'int64_param':
    case 'uint64_param': {
      const raw = parameter[parameter.parameter_choice] ?? 0;
      const value = Number(raw);
      if (!Number.isSafeInteger(value)) {
        throw new TesseraError('INVALID_PARAMETER', `${where} is ${String(raw)}; integer parameters must be within ±(2^53 - 1)`);
      }
      return value;
    }
    default:
      throw new TesseraError('INVALID_PARAMETER', `${where} has no value; set one of bool_param, int64_param, string_param, double_param or uint64_param`);
  }
}

/**
 * A request parameter that must be a non-negative integer (Triton's `priority`, and `timeout`
 * in microseconds); the message matches the REST adapter's.
 */
export function optionalNonNegativeInteger(parameters: Parameters | undefined, key: string): number | undefined {
  const value = parameters?.[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TesseraError('INVALID_PARAMETER', `request parameter '${key}' must be a non-negative integer, got ${describe(value)}`);
  }
  return value;
}

/** Encode Parameters as an InferParameter map: integers as int64, other numbers as double. */
export function encodeParameters(parameters: Parameters): Record<string, InferParameterOut> {
  const out: Record<string, InferParameterOut> = {};
  for (const [key, value] of Object.entries(parameters)) {
    if (typeof value === 'boolean') out[key] = { bool_param: value };
    else if (typeof value === 'string') out[key] = { string_param: value };
    else if (Number.isSafeInteger(value)) out[key] = { int64_param: value };
    else out[key] = { double_param: value };
  }
  return out;
}

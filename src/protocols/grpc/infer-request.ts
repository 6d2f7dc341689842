import { isDataType, type TensorData } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import type { InferenceRequest, RequestedOutput } from '../../core/inference.js';
import type { Tensor } from '../../core/tensor.js';
import { describe } from '../../core/json-tensor.js';
import type { CallScope } from './call-scope.js';
import { decodeContents, populatedFields } from './contents.js';
import type { InferInputTensorMessage, ModelInferRequestMessage } from './messages.js';
import { decodeParameters, optionalNonNegativeInteger } from './parameters.js';
import { decodeRaw } from './raw.js';
import { refusalOf } from '../../security/message-refusals.js';

/**
 * Decode a ModelInferRequest into the engine's InferenceRequest. Input data comes from
 * `raw_input_contents` (one entry per input, in order) or from each input's typed `contents`,
 * never both (Open Inference Protocol gRPC spec). Request parameters `priority` and `timeout`
 * (microseconds) are Triton's scheduling parameters, as in the REST adapter; the request's
 * timeout is the shorter of `timeout` and the time left before the gRPC deadline.
 */
export function decodeInferRequest(message: ModelInferRequestMessage, scope: CallScope = {}): InferenceRequest {
  // A message the security interceptor refused (model not allowed, rate limit, request limits).
  const refusal = refusalOf(message);
  if (refusal !== undefined) throw refusal;
  if (message.model_name === '') throw invalid("'model_name' is empty; name the model to run");
  const parameters = decodeParameters(message.parameters, "request 'parameters'");
  if (message.inputs.length === 0) throw invalid("'inputs' is empty; send at least one input tensor");
  const raw = message.raw_input_contents;
  if (raw.length > 0 && raw.length !== message.inputs.length) {
    throw invalid(`raw_input_contents has ${raw.length} entries but the request has ${message.inputs.length} inputs; give one entry per input, in the order of 'inputs'`);
  }
  const inputs = message.inputs.map((input, i) => decodeInput(input, i, raw.length > 0 ? raw[i] : undefined));
  const outputs = message.outputs.map((output, i): RequestedOutput => {
    if (output.name === '') throw invalid(`outputs[${i}].name is empty`);
    const outputParameters = decodeParameters(output.parameters, `output '${output.name}' 'parameters'`);
    return outputParameters === undefined ? { name: output.name } : { name: output.name, parameters: outputParameters };
  });
  const priority = optionalNonNegativeInteger(parameters, 'priority');
  const timeoutMs = effectiveTimeoutMs(optionalNonNegativeInteger(parameters, 'timeout'), scope.deadlineMs);
  return {
    ...(message.id === '' ? {} : { id: message.id }),
    model: message.model_name,
    ...(message.model_version === '' ? {} : { version: message.model_version }),
    inputs,
    ...(outputs.length === 0 ? {} : { outputs }),
    ...(parameters === undefined ? {} : { parameters }),
    ...(priority === undefined ? {} : { priority }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(scope.signal === undefined ? {} : { signal: scope.signal }),
    ...(scope.traceparent === undefined ? {} : { traceparent: scope.traceparent }),
    ...(scope.callerHeader === undefined ? {} : { callerHeader: scope.callerHeader }),
    protocol: 'v2-grpc',
  };
}

function decodeInput(input: InferInputTensorMessage, index: number, raw: Buffer | undefined): Tensor {
  const { name, datatype } = input;
  if (name === '') throw invalid(`inputs[${index}].name is empty`);
  const where = `input '${name}'`;
  if (!isDataType(datatype)) {
    throw new TesseraError('INVALID_DATATYPE', `${where}: datatype ${describe(datatype)} is not a V2 datatype (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES)`);
  }
  const shape = input.shape.map(Number);
  if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
    throw new TesseraError('INVALID_INPUT_SHAPE', `${where}: 'shape' must be non-negative integers, got [${input.shape.join(',')}]`);
  }
  decodeParameters(input.parameters, `${where} 'parameters'`);
  let data: TensorData;
  if (raw !== undefined) {
    const set = populatedFields(input.contents);
    if (set.length > 0) {
      throw invalid(`${where}: sets contents.${set.join(', contents.')} although the request uses raw_input_contents; use one or the other`);
    }
    data = decodeRaw(datatype, raw, where);
  } else {
    data = decodeContents(datatype, input.contents, where);
  }
  return { name, datatype, shape, data } as Tensor;
}

/** The shorter of the `timeout` parameter (µs; 0 = none) and the deadline, in ms; undefined if neither. */
function effectiveTimeoutMs(timeoutUs: number | undefined, deadlineMs: number | undefined): number | undefined {
  const fromParameter = timeoutUs === undefined || timeoutUs === 0 ? undefined : timeoutUs / 1000;
  // A deadline already past still needs a positive timeout: 0 would mean "none" to the scheduler.
  const fromDeadline = deadlineMs === undefined ? undefined : Math.max(deadlineMs, 1);
  if (fromParameter === undefined) return fromDeadline;
  if (fromDeadline === undefined) return fromParameter;
  return Math.min(fromParameter, fromDeadline);
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_REQUEST', message);
}

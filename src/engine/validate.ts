import { TesseraError } from '../core/errors.js';
import type { InferenceRequest } from '../core/inference.js';
import { elementCount, formatShape } from '../core/shape.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';
import type { ModelSignature } from '../repository/signature.js';

/** A request checked against its model: inputs in the model's order, batch rows, shape key. */
export interface ValidatedRequest {
  readonly inputs: readonly Tensor[];
  /** Rows along dim 0 for batching models; 1 otherwise. */
  readonly batchSize: number;
  /** Non-batch dims of every input; requests batch together only when keys are equal. */
  readonly shapeKey: string;
  readonly outputNames: readonly string[];
}

/**
 * Check a request against the model's signature before it is queued. Every failure names the
 * input, what the model expects and what the request gave.
 */
export function validateRequest(request: InferenceRequest, signature: ModelSignature, label: string): ValidatedRequest {
  const specs = new Map(signature.inputs.map((spec) => [spec.name, spec]));
  const given = new Map<string, Tensor>();
  for (const input of request.inputs) {
    if (given.has(input.name)) throw new TesseraError('DUPLICATE_INPUT', `input '${input.name}' is given more than once`);
    const spec = specs.get(input.name);
    if (spec === undefined) {
      throw new TesseraError('UNKNOWN_INPUT', `${label} has no input '${input.name}'; its inputs are: ${names(signature.inputs)}`);
    }
    checkTensor(input, spec, signature.maxBatchSize);
    given.set(input.name, input);
  }
  const missing = signature.inputs.filter((spec) => !given.has(spec.name));
  if (missing.length > 0) {
    throw new TesseraError('MISSING_INPUT', `${label} needs input${missing.length > 1 ? 's' : ''} ${missing.map((s) => `'${s.name}'`).join(', ')}, which the request lacks`);
  }
  const inputs = signature.inputs.map((spec) => given.get(spec.name)!);
  let batchSize = 1;
  let shapeKey = '';
  if (signature.maxBatchSize > 0) {
    batchSize = inputs[0]!.shape[0]!;
    for (const input of inputs) {
      if (input.shape[0] !== batchSize) {
        throw new TesseraError(
          'INVALID_INPUT_SHAPE',
          `inputs disagree on the batch size: '${inputs[0]!.name}' has ${batchSize} rows, '${input.name}' has ${input.shape[0]}`,
        );
      }
    }
    shapeKey = inputs.map((input) => input.shape.slice(1).join(',')).join('|');
  }
  return { inputs, batchSize, shapeKey, outputNames: outputNames(request, signature, label) };
}

function checkTensor(input: Tensor, spec: TensorSpec, maxBatchSize: number): void {
  const where = `input '${input.name}'`;
  if (input.datatype !== spec.datatype) {
    throw new TesseraError('INVALID_DATATYPE', `${where}: expected datatype ${spec.datatype}, got ${input.datatype}`);
  }
  const count = elementCount(input.shape);
  if (typeof count !== 'number') throw new TesseraError('INVALID_INPUT_SHAPE', `${where}: ${count.problem}`);
  if (input.data.length !== count) {
    throw new TesseraError(
      'INVALID_INPUT_DATA',
      `${where}: shape ${formatShape(input.shape)} needs ${count} elements, but the data has ${input.data.length}`,
    );
  }
  const fits =
    input.shape.length === spec.shape.length && spec.shape.every((dim, i) => dim === -1 || dim === input.shape[i]);
  if (!fits) {
    throw new TesseraError(
      'INVALID_INPUT_SHAPE',
      `${where}: expected shape ${formatShape(spec.shape)}, got ${formatShape(input.shape)}` +
        (input.shape.length !== spec.shape.length ? ` (rank ${spec.shape.length} expected, got ${input.shape.length})` : ''),
    );
  }
  if (maxBatchSize > 0) {
    const rows = input.shape[0]!;
    if (rows < 1) throw new TesseraError('INVALID_INPUT_SHAPE', `${where}: the batch dimension is ${rows}; send at least one row`);
    if (rows > maxBatchSize) {
      throw new TesseraError('BATCH_TOO_LARGE', `${where}: batch size ${rows} exceeds the model's max_batch_size ${maxBatchSize}`);
    }
  }
}

function outputNames(request: InferenceRequest, signature: ModelSignature, label: string): string[] {
  if (request.outputs === undefined || request.outputs.length === 0) return signature.outputs.map((spec) => spec.name);
  const known = new Set(signature.outputs.map((spec) => spec.name));
  const wanted: string[] = [];
  for (const output of request.outputs) {
    if (!known.has(output.name)) {
      throw new TesseraError('UNKNOWN_OUTPUT', `${label} has no output '${output.name}'; its outputs are: ${names(signature.outputs)}`);
    }
    if (!wanted.includes(output.name)) wanted.push(output.name);
  }
  return wanted;
}

function names(specs: readonly TensorSpec[]): string {
  return specs.map((spec) => spec.name).join(', ');
}

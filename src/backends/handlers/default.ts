import { isDataType, type DataType } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import { elementCount, formatShape } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { tensorDataFromJson, tensorDataToJsonValues } from '../../core/json-tensor.js';
import type { HandlerInputs, HandlerModelInfo, HandlerRequest, ModelHandler } from './handler.js';
import { bodyJson } from './common.js';

/**
 * The default handler: tensors in, tensors out, as V2 JSON.
 * Request: `{"inputs": [{"name", "shape", "datatype"?, "data"}], "outputs"?: [{"name"}]}`
 * (`datatype` defaults to the model's); answer: `{"outputs": [{"name", "datatype", "shape", "data"}]}`.
 * A custom handler that exports only one of preprocess / postprocess gets the other from here.
 */

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_REQUEST', message);
}

export function defaultPreprocess(request: HandlerRequest, model: HandlerModelInfo): HandlerInputs {
  const body = bodyJson(request);
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Array.isArray((body as Record<string, unknown>)['inputs'])) {
    throw invalid(`the request body must be {"inputs": [{"name", "shape", "datatype", "data"}, ...]}`);
  }
  const record = body as Record<string, unknown>;
  const inputs = (record['inputs'] as unknown[]).map((item, i): Tensor => {
    if (typeof item !== 'object' || item === null) throw invalid(`inputs[${i}] must be an object`);
    const { name, shape, datatype, data } = item as Record<string, unknown>;
    if (typeof name !== 'string' || name === '') throw invalid(`inputs[${i}].name must be a non-empty string`);
    const where = `input '${name}'`;
    const declared = model.inputs.find((spec) => spec.name === name)?.datatype;
    const type: unknown = datatype ?? declared;
    if (!isDataType(type)) throw invalid(`${where}: datatype ${JSON.stringify(type ?? null)} is not a V2 datatype`);
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number')) throw invalid(`${where}: shape must be an array of integers`);
    const count = elementCount(shape as number[]);
    if (typeof count !== 'number') throw new TesseraError('INVALID_INPUT_SHAPE', `${where}: ${count.problem}`);
    const values = tensorDataFromJson(type as DataType, data, where);
    if (values.length !== count) {
      throw new TesseraError('INVALID_INPUT_DATA', `${where}: shape ${formatShape(shape as number[])} needs ${count} values, got ${values.length}`);
    }
    return { name, datatype: type, shape: shape as number[], data: values } as Tensor;
  });
  const requested = record['outputs'];
  if (requested === undefined) return { inputs };
  if (!Array.isArray(requested)) throw invalid('outputs must be an array of {"name"}');
  const outputNames = requested.map((o, i) => {
    const name = typeof o === 'object' && o !== null ? (o as Record<string, unknown>)['name'] : undefined;
    if (typeof name !== 'string') throw invalid(`outputs[${i}].name must be a string`);
    return name;
  });
  return { inputs, outputNames };
}

export function defaultPostprocess(outputs: readonly Tensor[]): unknown {
  return {
    outputs: outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [...t.shape], data: tensorDataToJsonValues(t.datatype, t.data) })),
  };
}

export class DefaultHandler implements ModelHandler {
  preprocess(request: HandlerRequest, model: HandlerModelInfo): HandlerInputs {
    return defaultPreprocess(request, model);
  }

  postprocess(outputs: readonly Tensor[]): unknown {
    return defaultPostprocess(outputs);
  }
}

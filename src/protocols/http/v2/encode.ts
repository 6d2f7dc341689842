import type { InferenceResponse } from '../../../core/inference.js';
import type { Tensor } from '../../../core/tensor.js';
import { tensorDataToJsonText } from '../../../core/json-tensor.js';
import { tensorBinary } from './binary.js';

/**
 * The V2 $inference_response as JSON text, written directly: output data is joined from its
 * typed arrays rather than going through per-element JS values.
 */
export function encodeInferenceResponse(response: InferenceResponse): string {
  return encodeWithBinary(response, new Set()).json;
}

/** A response whose outputs are partly binary: the JSON header and the bytes that follow it. */
export interface EncodedWithBinary {
  readonly json: string;
  /** Binary data of the outputs named in `binary`, in output order (empty when none is binary). */
  readonly binary: readonly Buffer[];
}

/**
 * Encode a response, outputs named in `binary` as binary data (extension_binary_data.md):
 * such an output carries `parameters.binary_data_size` instead of `data`, and its bytes follow
 * the JSON in output order.
 */
export function encodeWithBinary(response: InferenceResponse, binary: ReadonlySet<string>): EncodedWithBinary {
  const chunks: Buffer[] = [];
  const outputs = response.outputs.map((output) => {
    const head = `{"name":${JSON.stringify(output.name)},"datatype":"${output.datatype}","shape":[${output.shape.join(',')}],`;
    if (!binary.has(output.name)) return `${head}"data":${tensorDataToJsonText(output.datatype, output.data)}}`;
    const bytes = tensorBinary(output as Tensor);
    chunks.push(bytes);
    return `${head}"parameters":{"binary_data_size":${bytes.length}}}`;
  });
  const id = response.id === undefined ? '' : `"id":${JSON.stringify(response.id)},`;
  const parameters = response.parameters === undefined ? '' : `"parameters":${JSON.stringify(response.parameters)},`;
  const json = `{${id}"model_name":${JSON.stringify(response.model)},"model_version":${JSON.stringify(response.version)},${parameters}"outputs":[${outputs.join(',')}]}`;
  return { json, binary: chunks };
}

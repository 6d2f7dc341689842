import type { InferenceResponse } from '../../../core/inference.js';
import { tensorDataToJsonText } from '../../json-tensor.js';

/**
 * The V2 $inference_response as JSON text, written directly: output data is joined from its
 * typed arrays rather than going through per-element JS values.
 */
export function encodeInferenceResponse(response: InferenceResponse): string {
  const outputs = response.outputs.map(
    (output) =>
      `{"name":${JSON.stringify(output.name)},"datatype":"${output.datatype}","shape":[${output.shape.join(',')}],` +
      `"data":${tensorDataToJsonText(output.datatype, output.data)}}`,
  );
  const id = response.id === undefined ? '' : `"id":${JSON.stringify(response.id)},`;
  const parameters = response.parameters === undefined ? '' : `"parameters":${JSON.stringify(response.parameters)},`;
  return `{${id}"model_name":${JSON.stringify(response.model)},"model_version":${JSON.stringify(response.version)},${parameters}"outputs":[${outputs.join(',')}]}`;
}

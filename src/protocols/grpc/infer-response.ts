import type { InferenceResponse } from '../../core/inference.js';
import type { ModelInferResponseOut } from './messages.js';
import { encodeParameters } from './parameters.js';
import { encodeRaw } from './raw.js';

/**
 * Encode the engine's answer as a ModelInferResponse. Output data always goes in
 * `raw_output_contents` (one entry per output, in the order of `outputs`), never in typed
 * `contents`: it is what Triton's clients read, it carries FP16, and numeric outputs are
 * handed to protobuf as views of their typed arrays, with no per-element conversion.
 */
export function encodeInferResponse(response: InferenceResponse): ModelInferResponseOut {
  return {
    model_name: response.model,
    model_version: response.version,
    id: response.id ?? '',
    ...(response.parameters === undefined ? {} : { parameters: encodeParameters(response.parameters) }),
    outputs: response.outputs.map((output) => ({ name: output.name, datatype: output.datatype, shape: [...output.shape] })),
    raw_output_contents: response.outputs.map((output) => encodeRaw(output.datatype, output.data)),
  };
}

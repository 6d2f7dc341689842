import type { RequestTarget } from '../v2/decode.js';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { describe } from '../../../core/json-tensor.js';
import { inputsFromColumns, inputsFromInstances, isNamedObject, outputColumns, outputRows, predictionsOf } from '../rows.js';
import { SERVING_SIGNATURE } from './metadata.js';

/**
 * TF Serving's Predict API over REST (api_rest.md "Predict API"): `{"instances": ...}` (row
 * format) answers `{"predictions": ...}`; `{"inputs": ...}` (columnar) answers
 * `{"outputs": ...}`. Each input's datatype is the model's; shapes come from the nesting.
 */
export async function predict(
  engine: Engine,
  body: unknown,
  target: RequestTarget,
): Promise<{ predictions: unknown[] } | { outputs: unknown }> {
  if (!isNamedObject(body)) throw invalid(`the request body must be a JSON object with 'instances' or 'inputs', got ${describe(body)}`);
  const signature = body['signature_name'];
  if (signature !== undefined && signature !== '' && signature !== SERVING_SIGNATURE) {
    throw invalid(`signature_name ${describe(signature)} is not served; models have one signature, '${SERVING_SIGNATURE}'`);
  }
  const hasInstances = 'instances' in body;
  const hasInputs = 'inputs' in body;
  if (hasInstances && hasInputs) throw invalid("the request has both 'instances' (row format) and 'inputs' (columnar format); send one");
  if (!hasInstances && !hasInputs) throw invalid("the request needs 'instances' (row format) or 'inputs' (columnar format)");
  const { inputs: specs } = engine.modelMetadata(target.model, target.version);
  const request = target;
  if (hasInstances) {
    const batch = inputsFromInstances(body['instances'], specs, target.model);
    const response = await engine.infer({ ...request, inputs: batch.inputs });
    return { predictions: predictionsOf(outputRows(response.outputs, batch)) };
  }
  const inputs = inputsFromColumns(body['inputs'], specs, target.model);
  const response = await engine.infer({ ...request, inputs });
  const columns = outputColumns(response.outputs);
  return { outputs: columns.size === 1 ? columns.values().next().value : Object.fromEntries(columns) };
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_REQUEST', message);
}

import type { RequestTarget } from '../v2/decode.js';
import type { InferenceResponse } from '../../../core/inference.js';
import type { Tensor } from '../../../core/tensor.js';
import type { Engine } from '../../../engine/engine.js';
import { tensorDataToJsonValues } from '../../../core/json-tensor.js';
import { jsonOfPayload, isV2Request, type Payload } from '../payload.js';
import { outputRows, predictionsOf, type RowInputs } from '../rows.js';
import { rowsValue, tabularInputs } from '../tabular.js';
import { decodeInferenceRequest } from '../v2/decode.js';
import { servedFacts } from '../../classification.js';

/**
 * TorchServe's default handler, for tabular/JSON models: the body (or each multipart part) is
 * a V2 inference request, `{"data": rows}` / `{"instances": rows}`, or a plain JSON list of
 * rows or one row. The answer is a JSON list with one entry per row: the row's output (an
 * object of outputs when there are several), or — for classifiers with labels.txt —
 * TorchServe's `{label: probability}` map of the top 5 classes, highest first.
 */

/** Told to clients whose payload is not JSON. */
export const ACCEPTED =
  'send JSON (application/json): a V2 inference request, {"data": [...]} or {"instances": [...]} rows, or a plain list of rows; ' +
  'multipart/form-data uploads of such JSON (-F data=@input.json) work too';

/** Classes listed per row for classifiers (TorchServe's default topk). */
export const TOP_K = 5;

/** Run the payloads through `model`: the JSON text of the answer, and the version that served it (routing may choose it). */
export async function predictTabular(
  engine: Engine,
  target: RequestTarget,
  payloads: readonly Payload[],
): Promise<{ readonly version: string; readonly json: string }> {
  const values = payloads.map((payload) => jsonOfPayload(payload, ACCEPTED));
  const { model } = target;
  const metadata = engine.modelMetadata(model, target.version);
  let response: InferenceResponse;
  let batch: Pick<RowInputs, 'rows' | 'stacked'>;
  const first = values[0];
  if (values.length === 1 && isV2Request(first)) {
    const request = decodeInferenceRequest(first, target);
    response = await engine.infer(request);
    const batched = metadata.inputs.every((spec) => spec.shape[0] === -1);
    batch = { rows: batched ? (request.inputs[0]?.shape[0] ?? 1) : 1, stacked: batched };
  } else {
    const rows = tabularInputs(
      values.map((value, i) => rowsValue(value, ['data', 'instances'], payloads.length === 1 ? 'the request body' : `form part ${i + 1}`)),
      metadata.inputs,
      model,
    );
    response = await engine.infer({ ...target, inputs: rows.inputs });
    batch = rows;
  }
  // The labels of the version that answered (a reload may have changed the model's since).
  const { labels } = servedFacts(engine, response);
  const only = response.outputs.length === 1 ? response.outputs[0] : undefined;
  if (labels !== undefined && only !== undefined && batch.stacked && only.shape.length === 2 && only.datatype !== 'BYTES') {
    return { version: response.version, json: labelMaps(only, labels) };
  }
  return { version: response.version, json: JSON.stringify(predictionsOf(outputRows(response.outputs, batch))) };
}

/**
 * Per row, the top classes as `{label: probability}`, written as text so keys keep the order
 * of the scores even when labels look like numbers (JS objects would reorder those).
 */
function labelMaps(output: Tensor, labels: readonly string[]): string {
  const values = tensorDataToJsonValues(output.datatype, output.data) as (number | null)[];
  const rows = output.shape[0]!;
  const classes = output.shape[1]!;
  const maps: string[] = [];
  for (let r = 0; r < rows; r++) {
    const base = r * classes;
    const order = Array.from({ length: classes }, (_, i) => i).sort((a, b) => (values[base + b] ?? -Infinity) - (values[base + a] ?? -Infinity) || a - b);
    const seen = new Set<string>();
    const entries: string[] = [];
    for (const index of order) {
      if (entries.length === TOP_K) break;
      const label = labels[index] ?? String(index);
      if (seen.has(label)) continue;
      seen.add(label);
      entries.push(`${JSON.stringify(label)}:${JSON.stringify(values[base + index] ?? null)}`);
    }
    maps.push(`{${entries.join(',')}}`);
  }
  return `[${maps.join(',')}]`;
}

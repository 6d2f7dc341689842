import { TesseraError } from '../core/errors.js';
import { fromHalfBits, toHalfBits } from '../core/float16.js';
import type { InferenceResponse, RequestedOutput, ServedVersion } from '../core/inference.js';
import { formatShape } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import type { Engine } from '../engine/engine.js';

/**
 * Triton's classification extension (server docs/protocol/extension_classification.md): an
 * output requested with parameter `classification: k` is answered as a BYTES tensor of the k
 * highest-valued classes per batch entry, each "<value>:<index>[:<label>]", shape [batch, k]
 * for batching models and [k] otherwise. Nothing here is specific to HTTP: gRPC's V2 can use it.
 */

/**
 * Whether the answering version batches, and its labels: what the response carries about the
 * version that ran it (which an unload or a reload may have retired by now), else looked up.
 */
export function servedFacts(engine: Pick<Engine, 'modelLabels' | 'modelConfig'>, response: InferenceResponse): ServedVersion {
  return response.served ?? { labels: engine.modelLabels(response.model), batched: engine.modelConfig(response.model, response.version).max_batch_size > 0 };
}

/** The `classification` count requested for `output`, or undefined; a bad value answers 400. */
export function classificationCount(output: RequestedOutput): number | undefined {
  const value = output.parameters?.['classification'];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TesseraError('INVALID_PARAMETER', `output '${output.name}': parameter 'classification' must be a positive integer (the number of classes), got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Replace `tensor` by its top-`k` classifications. `batched`: dim 0 is the batch (each entry
 * is classified over the rest of its elements); otherwise the whole tensor is one entry.
 * Fewer than k classes gives all of them. Ties keep the lower index first; NaN ranks as -Infinity
 * (after every other value, tied with -Infinity by index).
 */
export function classify(tensor: Tensor, k: number, labels: readonly string[] | undefined, batched: boolean): Tensor {
  if (tensor.datatype === 'BYTES') {
    throw new TesseraError('INVALID_PARAMETER', `output '${tensor.name}' is BYTES; classification needs a numeric output`);
  }
  if (batched && tensor.shape.length < 2) {
    throw new TesseraError('INVALID_PARAMETER', `output '${tensor.name}' has shape ${formatShape(tensor.shape)}: classification needs classes after the batch dimension`);
  }
  const values = numericValues(tensor);
  const rows = batched ? tensor.shape[0]! : 1;
  const classes = rows === 0 ? 0 : values.length / rows;
  const count = Math.min(k, classes);
  const data: Buffer[] = [];
  const top = new Int32Array(count);
  for (let r = 0; r < rows; r++) {
    const base = r * classes;
    topClasses(values, base, classes, top);
    for (let i = 0; i < count; i++) {
      const index = top[i]!;
      const label = labels?.[index];
      const score = formatScore(values[base + index]!, tensor.datatype);
      data.push(Buffer.from(label === undefined || label === '' ? `${score}:${index}` : `${score}:${index}:${label}`, 'utf8'));
    }
  }
  return { name: tensor.name, datatype: 'BYTES', shape: batched ? [rows, count] : [count], data };
}

/** Up to this many classes wanted, they are picked in one pass; more, by sorting the row. */
const SELECT_MAX = 32;

/**
 * The indices of the `top.length` highest-ranked classes of the row `values[base, base +
 * classes)` into `top`, best first (ties: lower index first; NaN ranks as -Infinity). A few
 * classes (the usual top 1 to top 5 of ImageNet's 1000) take one pass that keeps them in order,
 * instead of sorting every class of every row.
 */
function topClasses(values: ArrayLike<number>, base: number, classes: number, top: Int32Array): void {
  const count = top.length;
  if (count > SELECT_MAX) {
    const order = Array.from({ length: classes }, (_, i) => i);
    order.sort((a, b) => rank(values[base + b]!) - rank(values[base + a]!) || a - b);
    for (let i = 0; i < count; i++) top[i] = order[i]!;
    return;
  }
  let filled = 0;
  for (let i = 0; i < classes; i++) {
    const value = rank(values[base + i]!);
    // Indices come in increasing order: a tie with the last kept one ranks after it.
    if (filled === count && !(value > rank(values[base + top[count - 1]!]!))) continue;
    let at = filled < count ? filled++ : count - 1;
    while (at > 0 && value > rank(values[base + top[at - 1]!]!)) {
      top[at] = top[at - 1]!;
      at--;
    }
    top[at] = i;
  }
}

function rank(value: number): number {
  return Number.isNaN(value) ? -Infinity : value;
}

/** The tensor's values as numbers: typed arrays of numbers as they are, others converted. */
function numericValues(tensor: Exclude<Tensor, { datatype: 'BYTES' }>): ArrayLike<number> {
  if (tensor.datatype === 'FP16') return Array.from(tensor.data, fromHalfBits);
  if (tensor.datatype === 'INT64' || tensor.datatype === 'UINT64') return Array.from(tensor.data as BigInt64Array, Number);
  return tensor.data as Float32Array;
}

/** The shortest decimal that reads back as the same FP32/FP16 value (0.1, not 0.10000000149011612). */
function formatScore(value: number, datatype: string): string {
  if (!Number.isFinite(value) || (datatype !== 'FP32' && datatype !== 'FP16')) return String(value);
  for (let digits = 1; digits < 17; digits++) {
    const text = value.toPrecision(digits);
    const back = Number(text);
    if (datatype === 'FP32' ? Math.fround(back) === value : fromHalfBits(toHalfBits(back)) === value) return String(back);
  }
  return String(value);
}

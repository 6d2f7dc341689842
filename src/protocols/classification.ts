import { TesseraError } from '../core/errors.js';
import { fromHalfBits, toHalfBits } from '../core/float16.js';
import type { RequestedOutput } from '../core/inference.js';
import { formatShape } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';

/**
 * Triton's classification extension (server docs/protocol/extension_classification.md): an
 * output requested with parameter `classification: k` is answered as a BYTES tensor of the k
 * highest-valued classes per batch entry, each "<value>:<index>[:<label>]", shape [batch, k]
 * for batching models and [k] otherwise. Nothing here is specific to HTTP: gRPC's V2 can use it.
 */

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
  for (let r = 0; r < rows; r++) {
    const base = r * classes;
    const order = Array.from({ length: classes }, (_, i) => i);
    order.sort((a, b) => rank(values[base + b]!) - rank(values[base + a]!) || a - b);
    for (let i = 0; i < count; i++) {
      const index = order[i]!;
      const label = labels?.[index];
      const score = formatScore(values[base + index]!, tensor.datatype);
      data.push(Buffer.from(label === undefined || label === '' ? `${score}:${index}` : `${score}:${index}:${label}`, 'utf8'));
    }
  }
  return { name: tensor.name, datatype: 'BYTES', shape: batched ? [rows, count] : [count], data };
}

function rank(value: number): number {
  return Number.isNaN(value) ? -Infinity : value;
}

function numericValues(tensor: Exclude<Tensor, { datatype: 'BYTES' }>): number[] {
  if (tensor.datatype === 'FP16') return Array.from(tensor.data, fromHalfBits);
  if (tensor.datatype === 'INT64' || tensor.datatype === 'UINT64') return Array.from(tensor.data as BigInt64Array, Number);
  return Array.from(tensor.data as Float32Array);
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

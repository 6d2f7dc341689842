import { fromHalfBits } from '../core/float16.js';
import type { Tensor } from '../core/tensor.js';
import type { ComparisonResult } from './window.js';

/**
 * Comparing two versions' outputs for the same inputs (shadow traffic, canary mirroring). An
 * output of shape [rows, classes] with classes >= 2 is read as class scores: rows are compared
 * by their top-1 class. Every numeric output is also compared value by value (mean absolute
 * difference), which is the measure for regressors.
 */

/** The output to compare: `name` if given, else the first output the reference has. */
export function pickOutput(outputs: readonly Tensor[], name: string | undefined): Tensor | undefined {
  return name === undefined ? outputs[0] : outputs.find((output) => output.name === name);
}

/** Whether a tensor looks like class scores: numeric, [rows, classes] with at least two classes. */
export function isClassScores(tensor: Tensor): boolean {
  return tensor.datatype !== 'BYTES' && tensor.datatype !== 'BOOL' && tensor.shape.length === 2 && (tensor.shape[1] ?? 0) >= 2;
}

/** Compare `candidate` with `reference`; undefined when they cannot be compared (BYTES, other shapes). */
export function compareTensors(reference: Tensor, candidate: Tensor): ComparisonResult | undefined {
  if (reference.datatype === 'BYTES' || candidate.datatype === 'BYTES') return undefined;
  if (reference.data.length !== candidate.data.length || reference.shape.join(',') !== candidate.shape.join(',')) return undefined;
  const a = numberAt(reference);
  const b = numberAt(candidate);
  const n = reference.data.length;
  let absDiffSum = 0;
  let values = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(a(i) - b(i));
    if (Number.isFinite(d)) {
      absDiffSum += d;
      values++;
    }
  }
  let classifiedRows = 0;
  let agreedRows = 0;
  if (isClassScores(reference)) {
    const rows = reference.shape[0] ?? 0;
    const width = reference.shape[1] ?? 0;
    for (let r = 0; r < rows; r++) {
      classifiedRows++;
      if (argmax(a, r * width, width) === argmax(b, r * width, width)) agreedRows++;
    }
  }
  return { classifiedRows, agreedRows, values, absDiffSum };
}

function argmax(at: (i: number) => number, offset: number, width: number): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < width; i++) {
    const value = at(offset + i);
    if (value > bestValue) {
      bestValue = value;
      best = i;
    }
  }
  return best;
}

function numberAt(tensor: Tensor): (i: number) => number {
  const data = tensor.data;
  if (tensor.datatype === 'FP16') return (i) => fromHalfBits((data as Uint16Array)[i]!);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return (i) => Number(data[i]!);
  const numbers = data as Exclude<typeof data, BigInt64Array | BigUint64Array | Buffer[]>;
  return (i) => numbers[i]!;
}

/**
 * Copies of a request's input tensors for a replay on another version. Taken before the
 * primary request is scheduled: the engine may transfer the originals' buffers to a worker
 * thread, which detaches them, and a BYTES element may be a view of the request's body, whose
 * memory is lent to the next request once this one is answered: its bytes are copied too.
 */
export function copyInputs(inputs: readonly Tensor[]): Tensor[] {
  return inputs.map(
    (tensor) =>
      ({
        ...tensor,
        shape: [...tensor.shape],
        data: Array.isArray(tensor.data) ? tensor.data.map((element: Buffer) => Buffer.from(element)) : tensor.data.slice(),
      }) as Tensor,
  );
}

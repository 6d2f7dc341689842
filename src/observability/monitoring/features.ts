import type { NumericArray } from '../../core/datatype.js';
import { fromHalfBits } from '../../core/float16.js';
import type { Tensor } from '../../core/tensor.js';

/**
 * How a model's input tensors become drift features, fixed from the first request a version
 * monitors. Rows are the first dimension. Per input:
 *  - rank 0 or 1 ([rows]): one feature, the input itself;
 *  - rank 2 ([rows, F]): F features, one per column;
 *  - rank ≥ 3 ([rows, C, ...]): C features, each row's mean over channel c (images: per-channel
 *    mean brightness). Reading these costs one pass over the tensor;
 *  - BYTES inputs are skipped.
 * Features beyond `max_features` are skipped; notes say what was reduced or skipped.
 */

/** Element readers: plain numbers, 64-bit integers, FP16 half bits. */
export type Read = 0 | 1 | 2;
const READ_NUMBER: Read = 0;
const READ_BIGINT: Read = 1;
const READ_HALF: Read = 2;

interface InputPlan {
  readonly name: string;
  readonly kind: 'column' | 'matrix' | 'channels';
  /** Features this input contributes. */
  readonly width: number;
  /** Elements per channel (channels kind). */
  readonly inner: number;
  /** Index of the input's first feature. */
  readonly offset: number;
  readonly rank: number;
}

export interface FeatureLayout {
  readonly names: readonly string[];
  readonly plans: readonly InputPlan[];
  readonly notes: readonly string[];
}

export function planFeatures(inputs: readonly Tensor[], maxFeatures: number, configured: readonly string[] | undefined): FeatureLayout {
  const plans: InputPlan[] = [];
  const names: string[] = [];
  const notes: string[] = [];
  for (const tensor of inputs) {
    const shape = tensor.shape;
    const shown = `input '${tensor.name}' ${tensor.datatype}[${shape.join(',')}]`;
    if (tensor.datatype === 'BYTES') {
      notes.push(`${shown}: BYTES inputs are not monitored for drift`);
      continue;
    }
    const rank = shape.length;
    let kind: InputPlan['kind'];
    let width: number;
    let inner = 1;
    if (rank <= 1) {
      kind = 'column';
      width = 1;
    } else if (rank === 2) {
      kind = 'matrix';
      width = shape[1]!;
    } else {
      kind = 'channels';
      width = shape[1]!;
      inner = shape.slice(2).reduce((a, b) => a * b, 1);
    }
    if (width === 0) {
      notes.push(`${shown}: no features (zero-sized dimension)`);
      continue;
    }
    if (names.length + width > maxFeatures) {
      notes.push(`${shown}: skipped, ${width} features would exceed max_features (${maxFeatures})`);
      continue;
    }
    if (kind === 'channels') notes.push(`${shown}: rank ${rank}, reduced to ${width} per-channel means (dimension 1) per row`);
    plans.push({ name: tensor.name, kind, width, inner, offset: names.length, rank });
    for (let j = 0; j < width; j++) names.push(kind === 'column' ? tensor.name : `${tensor.name}[${j}]`);
  }
  if (configured !== undefined) {
    if (configured.length === names.length) {
      for (let i = 0; i < names.length; i++) names[i] = configured[i]!;
    } else {
      notes.push(`monitoring.features names ${configured.length} features but the inputs give ${names.length}; using ${names.length === 0 ? 'no' : 'generated'} names`);
    }
  }
  return { names, plans, notes };
}

/**
 * Call `value(feature, v)` for every feature of every row of `inputs`, then `endRow()` per row.
 * Inputs whose shape no longer fits the layout are skipped (counted in the return value).
 * Rows of inputs with fewer rows than others simply end earlier.
 */
export function forEachRow(
  layout: FeatureLayout,
  inputs: readonly Tensor[],
  value: (feature: number, v: number) => void,
  endRow: () => void,
): { rows: number; skippedInputs: number } {
  let rows = 0;
  let skippedInputs = 0;
  // Small per-request array: the tensors matched to the plans (undefined: skipped).
  const matched: (Tensor | undefined)[] = [];
  for (const plan of layout.plans) {
    const tensor = inputs.find((t) => t.name === plan.name);
    if (tensor === undefined || tensor.datatype === 'BYTES' || !fits(plan, tensor.shape)) {
      matched.push(undefined);
      skippedInputs++;
      continue;
    }
    matched.push(tensor);
    const r = tensor.shape.length === 0 ? 1 : tensor.shape[0]!;
    if (r > rows) rows = r;
  }
  for (let r = 0; r < rows; r++) {
    for (let p = 0; p < layout.plans.length; p++) {
      const tensor = matched[p];
      if (tensor === undefined || tensor.datatype === 'BYTES') continue;
      const plan = layout.plans[p]!;
      const tensorRows = tensor.shape.length === 0 ? 1 : tensor.shape[0]!;
      if (r >= tensorRows) continue;
      const data = tensor.data;
      const read = readerOf(tensor.datatype);
      if (plan.kind === 'channels') {
        const base = r * plan.width * plan.inner;
        for (let c = 0; c < plan.width; c++) {
          let sum = 0;
          const start = base + c * plan.inner;
          for (let i = 0; i < plan.inner; i++) sum += at(data, start + i, read);
          value(plan.offset + c, sum / plan.inner);
        }
      } else {
        const base = r * plan.width;
        for (let j = 0; j < plan.width; j++) value(plan.offset + j, at(data, base + j, read));
      }
    }
    endRow();
  }
  return { rows, skippedInputs };
}

function fits(plan: InputPlan, shape: readonly number[]): boolean {
  if (plan.kind === 'column') return shape.length <= 1;
  if (shape.length !== plan.rank || shape[1] !== plan.width) return false;
  if (plan.kind === 'channels') {
    let inner = 1;
    for (let i = 2; i < shape.length; i++) inner *= shape[i]!;
    return inner === plan.inner;
  }
  return true;
}

/** Element i of a numeric tensor's data as a number. */
export function at(data: NumericArray, i: number, read: Read): number {
  const v = data[i];
  if (v === undefined) return Number.NaN;
  if (read === READ_NUMBER) return v as number;
  if (read === READ_BIGINT) return Number(v);
  return fromHalfBits(v as number);
}

/** Which reader a datatype needs. */
export function readerOf(datatype: Tensor['datatype']): Read {
  return datatype === 'FP16' ? READ_HALF : datatype === 'INT64' || datatype === 'UINT64' ? READ_BIGINT : READ_NUMBER;
}

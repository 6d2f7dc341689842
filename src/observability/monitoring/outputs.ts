import type { Tensor } from '../../core/tensor.js';
import { at, readerOf } from './features.js';
import { ValueSummarizer, type ValueSummary } from './sketch.js';

/** Upper bounds of the confidence (max probability) histogram. */
export const CONFIDENCE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1] as const;

export const OTHER_CLASS = '_other';

export interface ClassCount {
  readonly index: number | null;
  readonly class: string;
  readonly count: number;
}

export interface ClassifierSnapshot {
  readonly name: string;
  readonly task: 'classifier';
  readonly classes: number;
  readonly rows: number;
  /** Predicted (argmax) class counts, classes never predicted left out. */
  readonly predicted: readonly ClassCount[];
  readonly confidence: {
    readonly count: number;
    readonly mean: number | null;
    /** Cumulative counts per upper bound `le` (Prometheus style). */
    readonly buckets: readonly { readonly le: number; readonly count: number }[];
  };
}

export interface RegressorSnapshot {
  readonly name: string;
  readonly task: 'regressor';
  /** Summary of every element of the output. */
  readonly values: ValueSummary;
}

export type OutputSnapshot = ClassifierSnapshot | RegressorSnapshot;

export interface OutputTracker {
  readonly task: 'classifier' | 'regressor';
  observe(tensor: Tensor): void;
  snapshot(label: (index: number) => string): OutputSnapshot;
}

/** Float outputs whose last dim > 1 and whose rows are probabilities (in [0,1], summing to 1). */
export function looksLikeProbabilities(tensor: Tensor): boolean {
  if (tensor.datatype !== 'FP32' && tensor.datatype !== 'FP64' && tensor.datatype !== 'FP16') return false;
  const width = tensor.shape[tensor.shape.length - 1];
  if (width === undefined || width < 2) return false;
  const read = readerOf(tensor.datatype);
  const tolerance = tensor.datatype === 'FP16' ? 1e-2 : 1e-3;
  const rows = tensor.data.length / width;
  if (rows < 1) return false;
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let j = 0; j < width; j++) {
      const v = at(tensor.data, r * width + j, read);
      if (!(v >= -tolerance && v <= 1 + tolerance)) return false;
      sum += v;
    }
    if (Math.abs(sum - 1) > tolerance) return false;
  }
  return true;
}

/** Argmax class counts and the confidence histogram of a classification output. */
export class ClassifierTracker implements OutputTracker {
  readonly task = 'classifier';
  private classes = 0;
  private counts: Float64Array;
  private readonly buckets = new Float64Array(CONFIDENCE_BUCKETS.length);
  private confidenceSum = 0;
  private rows = 0;

  constructor(
    readonly name: string,
    private readonly maxClasses: number,
  ) {
    // Index maxClasses counts every class at or beyond it.
    this.counts = new Float64Array(maxClasses + 1);
  }

  observe(tensor: Tensor): void {
    if (tensor.datatype === 'BYTES') return;
    const width = tensor.shape.length === 0 ? 1 : tensor.shape[tensor.shape.length - 1]!;
    if (width < 1) return;
    if (width > this.classes) this.classes = width;
    const read = readerOf(tensor.datatype);
    const data = tensor.data;
    const rows = Math.floor(data.length / width);
    for (let r = 0; r < rows; r++) {
      const base = r * width;
      let best = 0;
      let max = -Infinity;
      let min = Infinity;
      let sum = 0;
      for (let j = 0; j < width; j++) {
        const v = at(data, base + j, read);
        if (v > max) {
          max = v;
          best = j;
        }
        if (v < min) min = v;
        sum += v;
      }
      // A row with a NaN or an infinity has no confidence: it would turn the sum NaN for good.
      if (!Number.isFinite(sum)) continue;
      let confidence = max;
      if (!(min >= 0 && max <= 1 && Math.abs(sum - 1) <= 1e-3)) {
        // Logits (or scores): the confidence is the softmax probability of the argmax.
        let total = 0;
        for (let j = 0; j < width; j++) total += Math.exp(at(data, base + j, read) - max);
        confidence = 1 / total;
      }
      const slot = best < this.maxClasses ? best : this.maxClasses;
      this.counts[slot] = (this.counts[slot] as number) + 1;
      this.rows++;
      this.confidenceSum += confidence;
      for (let b = 0; b < CONFIDENCE_BUCKETS.length; b++) {
        if (confidence <= CONFIDENCE_BUCKETS[b]!) {
          this.buckets[b] = (this.buckets[b] as number) + 1;
          break;
        }
      }
    }
  }

  /** Predicted counts by class index (the last entry: `_other`). */
  classCounts(): Float64Array {
    return this.counts;
  }

  /** Non-cumulative confidence bucket counts, the sum and the count. */
  confidence(): { buckets: Float64Array; sum: number; count: number } {
    return { buckets: this.buckets, sum: this.confidenceSum, count: this.rows };
  }

  snapshot(label: (index: number) => string): ClassifierSnapshot {
    const predicted: ClassCount[] = [];
    for (let i = 0; i < this.maxClasses; i++) {
      const count = this.counts[i] as number;
      if (count > 0) predicted.push({ index: i, class: label(i), count });
    }
    const other = this.counts[this.maxClasses] as number;
    if (other > 0) predicted.push({ index: null, class: OTHER_CLASS, count: other });
    let cumulative = 0;
    return {
      name: this.name,
      task: 'classifier',
      classes: this.classes,
      rows: this.rows,
      predicted,
      confidence: {
        count: this.rows,
        mean: this.rows > 0 ? this.confidenceSum / this.rows : null,
        buckets: CONFIDENCE_BUCKETS.map((le, b) => ({ le, count: (cumulative += this.buckets[b] as number) })),
      },
    };
  }
}

/** Count, mean, std, min, max and quantiles of every element of a regression output. */
export class RegressorTracker implements OutputTracker {
  readonly task = 'regressor';
  private readonly values = new ValueSummarizer();

  constructor(readonly name: string) {}

  observe(tensor: Tensor): void {
    if (tensor.datatype === 'BYTES') return;
    const read = readerOf(tensor.datatype);
    const data = tensor.data;
    for (let i = 0; i < data.length; i++) this.values.add(at(data, i, read));
  }

  snapshot(): RegressorSnapshot {
    return { name: this.name, task: 'regressor', values: this.values.summary() };
  }
}

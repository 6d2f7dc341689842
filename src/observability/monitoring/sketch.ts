/**
 * Bounded-memory summaries of output values: exact count/mean/std/min/max (Welford) and
 * quantiles from a DDSketch-style log-bucket sketch (relative accuracy 1%, at most
 * `maxBuckets` buckets per sign; when full, the buckets nearest zero are merged).
 */

export const SUMMARY_QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99] as const;

export interface ValueSummary {
  readonly count: number;
  /** NaN and ±Infinity values, not in the other fields. */
  readonly non_finite: number;
  readonly mean: number | null;
  readonly std: number | null;
  readonly min: number | null;
  readonly max: number | null;
  /** Approximate (±1% relative) quantiles: p01, p05, p25, p50, p75, p95, p99. */
  readonly quantiles: Readonly<Record<string, number>> | null;
}

export class QuantileSketch {
  private readonly gamma: number;
  private readonly logGamma: number;
  private readonly positive = new Map<number, number>();
  private readonly negative = new Map<number, number>();
  private zeros = 0;
  private total = 0;
  /** Smallest magnitude told apart from zero. */
  private static readonly MIN_VALUE = 1e-12;

  constructor(
    relativeAccuracy = 0.01,
    private readonly maxBuckets = 2048,
  ) {
    this.gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
    this.logGamma = Math.log(this.gamma);
  }

  get count(): number {
    return this.total;
  }

  add(value: number): void {
    this.total++;
    const magnitude = Math.abs(value);
    if (magnitude < QuantileSketch.MIN_VALUE) {
      this.zeros++;
      return;
    }
    const store = value > 0 ? this.positive : this.negative;
    const key = Math.ceil(Math.log(magnitude) / this.logGamma);
    store.set(key, (store.get(key) ?? 0) + 1);
    if (store.size > this.maxBuckets) collapseLowest(store);
  }

  /** The value at quantile q in [0, 1]; NaN when empty. */
  quantile(q: number): number {
    return this.quantiles([q])[0] ?? Number.NaN;
  }

  /** Several quantiles in one pass over the sorted buckets. */
  quantiles(qs: readonly number[]): number[] {
    if (this.total === 0) return qs.map(() => Number.NaN);
    const ordered: [number, number][] = [];
    for (const key of [...this.negative.keys()].sort((a, b) => b - a)) ordered.push([-this.valueOf(key), this.negative.get(key)!]);
    if (this.zeros > 0) ordered.push([0, this.zeros]);
    for (const key of [...this.positive.keys()].sort((a, b) => a - b)) ordered.push([this.valueOf(key), this.positive.get(key)!]);
    return qs.map((q) => {
      const rank = Math.max(0, Math.min(1, q)) * (this.total - 1);
      let seen = 0;
      for (const [value, count] of ordered) {
        seen += count;
        if (seen > rank) return value;
      }
      return ordered[ordered.length - 1]![0];
    });
  }

  /** The representative value of bucket `key` (within the relative accuracy of its members). */
  private valueOf(key: number): number {
    return (2 * this.gamma ** key) / (1 + this.gamma);
  }
}

function collapseLowest(store: Map<number, number>): void {
  const keys = [...store.keys()].sort((a, b) => a - b);
  const [lowest, next] = keys;
  if (lowest === undefined || next === undefined) return;
  store.set(next, (store.get(next) ?? 0) + (store.get(lowest) ?? 0));
  store.delete(lowest);
}

/** Running count/mean/std/min/max and a quantile sketch of a stream of numbers. */
export class ValueSummarizer {
  private n = 0;
  private nonFinite = 0;
  private mean = 0;
  private m2 = 0;
  private min = Infinity;
  private max = -Infinity;
  private readonly sketch = new QuantileSketch();

  add(value: number): void {
    if (!Number.isFinite(value)) {
      this.nonFinite++;
      return;
    }
    this.n++;
    const delta = value - this.mean;
    this.mean += delta / this.n;
    this.m2 += delta * (value - this.mean);
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    this.sketch.add(value);
  }

  summary(): ValueSummary {
    if (this.n === 0) return { count: 0, non_finite: this.nonFinite, mean: null, std: null, min: null, max: null, quantiles: null };
    const values = this.sketch.quantiles(SUMMARY_QUANTILES);
    const quantiles: Record<string, number> = {};
    SUMMARY_QUANTILES.forEach((q, i) => {
      // Clamp into the exact range: the sketch is ±1% relative.
      quantiles[`p${String(Math.round(q * 100)).padStart(2, '0')}`] = Math.min(this.max, Math.max(this.min, values[i]!));
    });
    return {
      count: this.n,
      non_finite: this.nonFinite,
      mean: this.mean,
      std: this.n > 1 ? Math.sqrt(this.m2 / (this.n - 1)) : 0,
      min: this.min,
      max: this.max,
      quantiles,
    };
  }
}

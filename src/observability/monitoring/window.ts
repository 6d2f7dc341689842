import { binIndex, psi } from './psi.js';

/** How the drift window slides: by rows or by time, in `buckets` steps. */
export type WindowSpec =
  | { readonly kind: 'rows'; readonly rows: number; readonly buckets: number }
  | { readonly kind: 'time'; readonly seconds: number; readonly buckets: number };

/** One monitored feature: the baseline's bin edges and proportions. */
export interface WindowFeature {
  readonly edges: ArrayLike<number>;
  readonly expected: ArrayLike<number>;
}

/**
 * The sliding window of input drift: for each feature, counts of values per baseline bin plus
 * sum, sum of squares and counts, kept in a ring of `buckets` sub-windows (bin counts also in an
 * aggregate over the ring). Adding a value is one binary search over ≤ 100 edges and a few array writes; memory
 * is fixed (buckets × Σ bins counts) whatever the traffic. When the ring turns, the oldest
 * bucket is subtracted from the aggregate and reused.
 */
export class DriftWindow {
  readonly features: number;
  private readonly k: number;
  private readonly offsets: Int32Array;
  private readonly totalBins: number;
  private readonly edges: ArrayLike<number>[];
  private readonly expected: ArrayLike<number>[];
  private readonly counts: Uint32Array;
  private readonly sums: Float64Array;
  private readonly sumSquares: Float64Array;
  private readonly finite: Uint32Array;
  private readonly nonFinite: Uint32Array;
  private readonly rows: Float64Array;
  private readonly aggCounts: Float64Array;
  private readonly aggFinite: Float64Array;
  private readonly aggNonFinite: Float64Array;
  private aggRows = 0;
  private current = 0;
  private readonly rowsPerBucket: number;
  private readonly bucketMs: number;
  private bucketStart: number;

  constructor(
    features: readonly WindowFeature[],
    readonly spec: WindowSpec,
    now: number,
  ) {
    this.features = features.length;
    this.k = spec.buckets;
    this.edges = features.map((f) => f.edges);
    this.expected = features.map((f) => f.expected);
    this.offsets = new Int32Array(this.features + 1);
    for (let f = 0; f < this.features; f++) this.offsets[f + 1] = (this.offsets[f] as number) + features[f]!.expected.length;
    this.totalBins = this.offsets[this.features] as number;
    const k = this.k;
    const f = this.features;
    this.counts = new Uint32Array(k * this.totalBins);
    this.sums = new Float64Array(k * f);
    this.sumSquares = new Float64Array(k * f);
    this.finite = new Uint32Array(k * f);
    this.nonFinite = new Uint32Array(k * f);
    this.rows = new Float64Array(k);
    this.aggCounts = new Float64Array(this.totalBins);
    this.aggFinite = new Float64Array(f);
    this.aggNonFinite = new Float64Array(f);
    this.rowsPerBucket = spec.kind === 'rows' ? Math.max(1, Math.ceil(spec.rows / k)) : Infinity;
    this.bucketMs = spec.kind === 'time' ? (spec.seconds * 1000) / k : Infinity;
    this.bucketStart = now;
  }

  /** Rows in the window. */
  get rowCount(): number {
    return this.aggRows;
  }

  /** Record value `v` of feature `f` in the current row. */
  add(f: number, v: number): void {
    const k = this.current;
    const slot = k * this.features + f;
    if (!Number.isFinite(v)) {
      this.nonFinite[slot] = (this.nonFinite[slot] as number) + 1;
      this.aggNonFinite[f] = (this.aggNonFinite[f] as number) + 1;
      return;
    }
    const bin = (this.offsets[f] as number) + binIndex(this.edges[f]!, v);
    const cell = k * this.totalBins + bin;
    this.counts[cell] = (this.counts[cell] as number) + 1;
    this.aggCounts[bin] = (this.aggCounts[bin] as number) + 1;
    this.sums[slot] = (this.sums[slot] as number) + v;
    this.sumSquares[slot] = (this.sumSquares[slot] as number) + v * v;
    this.finite[slot] = (this.finite[slot] as number) + 1;
    this.aggFinite[f] = (this.aggFinite[f] as number) + 1;
  }

  /** Close the current row. True when (row window) the current bucket is now full: evaluate, then {@link rotate}. */
  endRow(): boolean {
    this.rows[this.current] = (this.rows[this.current] as number) + 1;
    this.aggRows++;
    return (this.rows[this.current] as number) >= this.rowsPerBucket;
  }

  /** (Time window) whether `now` is past the current bucket: evaluate, then {@link advance}. */
  due(now: number): boolean {
    return now - this.bucketStart >= this.bucketMs;
  }

  /** (Time window) turn the ring past every bucket that ended before `now`. */
  advance(now: number): void {
    if (this.spec.kind !== 'time') return;
    const steps = Math.floor((now - this.bucketStart) / this.bucketMs);
    if (steps <= 0) return;
    for (let i = 0; i < Math.min(steps, this.k); i++) this.rotate();
    this.bucketStart += steps * this.bucketMs;
  }

  /** Move to the next bucket, dropping the oldest one's counts. */
  rotate(): void {
    this.current = (this.current + 1) % this.k;
    const k = this.current;
    const base = k * this.totalBins;
    for (let b = 0; b < this.totalBins; b++) {
      this.aggCounts[b] = (this.aggCounts[b] as number) - (this.counts[base + b] as number);
      this.counts[base + b] = 0;
    }
    for (let f = 0; f < this.features; f++) {
      const slot = k * this.features + f;
      this.aggFinite[f] = (this.aggFinite[f] as number) - (this.finite[slot] as number);
      this.aggNonFinite[f] = (this.aggNonFinite[f] as number) - (this.nonFinite[slot] as number);
      this.sums[slot] = 0;
      this.sumSquares[slot] = 0;
      this.finite[slot] = 0;
      this.nonFinite[slot] = 0;
    }
    this.aggRows -= this.rows[k] as number;
    this.rows[k] = 0;
  }

  /** PSI of feature `f` over the window (NaN when it holds no finite value). */
  psi(f: number): number {
    return psi(this.expected[f]!, this.aggCounts, this.offsets[f] as number);
  }

  /** Finite values of feature `f` in the window. */
  count(f: number): number {
    return this.aggFinite[f] as number;
  }

  nonFiniteCount(f: number): number {
    return this.aggNonFinite[f] as number;
  }

  /** Mean of feature `f` over the window (summed from the buckets: exact, no running subtraction). */
  mean(f: number): number {
    const n = this.aggFinite[f] as number;
    return n > 0 ? this.sumOf(this.sums, f) / n : Number.NaN;
  }

  /** Sample standard deviation of feature `f` over the window. */
  std(f: number): number {
    const n = this.aggFinite[f] as number;
    if (n < 2) return n === 1 ? 0 : Number.NaN;
    const mean = this.sumOf(this.sums, f) / n;
    return Math.sqrt(Math.max(0, (this.sumOf(this.sumSquares, f) - n * mean * mean) / (n - 1)));
  }

  private sumOf(values: Float64Array, f: number): number {
    let total = 0;
    for (let k = 0; k < this.k; k++) total += values[k * this.features + f] as number;
    return total;
  }

  /** Proportions of the window's values per bin of feature `f`. */
  proportions(f: number): number[] {
    const start = this.offsets[f] as number;
    const end = this.offsets[f + 1] as number;
    const n = this.aggFinite[f] as number;
    const out: number[] = [];
    for (let b = start; b < end; b++) out.push(n > 0 ? (this.aggCounts[b] as number) / n : 0);
    return out;
  }
}

/**
 * What the routing layer measures of a version over a window: requests, failures and a
 * latency sample (for the p99), and comparisons of its outputs with another version's on the
 * same inputs. Bounded: at most {@link LATENCY_SAMPLE} latencies are kept (reservoir sampling).
 */

export const LATENCY_SAMPLE = 4096;

export class VersionWindow {
  requests = 0;
  failures = 0;
  private readonly latencies: number[] = [];

  constructor(private readonly random: () => number = Math.random) {}

  record(latencyMs: number, failed: boolean): void {
    this.requests++;
    if (failed) {
      this.failures++;
      return;
    }
    if (this.latencies.length < LATENCY_SAMPLE) this.latencies.push(latencyMs);
    else {
      const slot = Math.floor(this.random() * (this.requests - this.failures));
      if (slot < LATENCY_SAMPLE) this.latencies[slot] = latencyMs;
    }
  }

  /** Successful requests whose latency is in the sample. */
  get latencySamples(): number {
    return this.latencies.length;
  }

  get errorRate(): number {
    return this.requests === 0 ? 0 : this.failures / this.requests;
  }

  /** Nearest-rank percentile (0..1) of the successful requests' latency, NaN when none. */
  percentile(q: number): number {
    if (this.latencies.length === 0) return Number.NaN;
    const sorted = Float64Array.from(this.latencies).sort();
    const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
    return sorted[rank - 1]!;
  }

  snapshot(): WindowSnapshot {
    return { requests: this.requests, failures: this.failures, errorRate: this.errorRate, p50Ms: round(this.percentile(0.5)), p99Ms: round(this.percentile(0.99)) };
  }
}

export interface WindowSnapshot {
  readonly requests: number;
  readonly failures: number;
  readonly errorRate: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

/** Running totals of output comparisons between a reference version and another. */
export class ComparisonStats {
  /** Mirrored requests whose outputs were compared. */
  requests = 0;
  /** Rows compared by top-1 class (classifier outputs). */
  classifiedRows = 0;
  agreedRows = 0;
  /** Elements compared by value. */
  values = 0;
  absDiffSum = 0;

  add(result: ComparisonResult): void {
    this.requests++;
    this.classifiedRows += result.classifiedRows;
    this.agreedRows += result.agreedRows;
    this.values += result.values;
    this.absDiffSum += result.absDiffSum;
  }

  /** Top-1 agreement over the classifier rows compared; undefined when none was. */
  get agreement(): number | undefined {
    return this.classifiedRows === 0 ? undefined : this.agreedRows / this.classifiedRows;
  }

  get meanAbsDiff(): number | undefined {
    return this.values === 0 ? undefined : this.absDiffSum / this.values;
  }

  snapshot(): ComparisonSnapshot {
    return {
      requests: this.requests,
      rows: this.classifiedRows,
      agreement: this.agreement ?? null,
      meanAbsDiff: this.meanAbsDiff ?? null,
    };
  }
}

/** What one comparison of two outputs found. */
export interface ComparisonResult {
  readonly classifiedRows: number;
  readonly agreedRows: number;
  readonly values: number;
  readonly absDiffSum: number;
}

export interface ComparisonSnapshot {
  readonly requests: number;
  /** Classifier rows compared by top-1 class. */
  readonly rows: number;
  readonly agreement: number | null;
  readonly meanAbsDiff: number | null;
}

function round(value: number): number | null {
  return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : null;
}

import { ComparisonStats, VersionWindow, type ComparisonSnapshot, type WindowSnapshot } from './window.js';

/** Buckets (seconds) of the shadow latency histogram: 0.5 ms to 10 s, as the request histograms. */
export const MIRROR_LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/**
 * One lane of replayed traffic (a shadow version, or a canary's mirror): a bound on requests in
 * flight (beyond it requests are dropped, never queued, so the replayed version's load stays
 * bounded), counts, the replayed requests' latency, and the comparison of their outputs with
 * the served ones.
 */
export class MirrorLane {
  inFlight = 0;
  sent = 0;
  dropped = 0;
  succeeded = 0;
  failed = 0;
  readonly comparisons = new ComparisonStats();
  readonly window = new VersionWindow();
  /** Non-cumulative counts per bucket of {@link MIRROR_LATENCY_BUCKETS}. */
  readonly buckets = new Array<number>(MIRROR_LATENCY_BUCKETS.length).fill(0);
  latencySumSeconds = 0;
  lastError: string | undefined;

  constructor(
    readonly target: string,
    public maxInFlight: number,
  ) {}

  /** Take a slot, or count a drop. */
  tryAcquire(): boolean {
    if (this.inFlight >= this.maxInFlight) {
      this.dropped++;
      return false;
    }
    this.inFlight++;
    this.sent++;
    return true;
  }

  /** A slot taken for a request that was never sent (its primary failed). */
  cancel(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.sent = Math.max(0, this.sent - 1);
  }

  /** The replayed request finished. */
  settle(latencyMs: number, error: string | undefined): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.window.record(latencyMs, error !== undefined);
    if (error !== undefined) {
      this.failed++;
      this.lastError = error;
      return;
    }
    this.succeeded++;
    const seconds = latencyMs / 1000;
    this.latencySumSeconds += seconds;
    const bucket = MIRROR_LATENCY_BUCKETS.findIndex((le) => seconds <= le);
    if (bucket >= 0) this.buckets[bucket]!++;
  }

  snapshot(): MirrorSnapshot {
    return {
      target: this.target,
      maxInFlight: this.maxInFlight,
      inFlight: this.inFlight,
      sent: this.sent,
      dropped: this.dropped,
      succeeded: this.succeeded,
      failed: this.failed,
      lastError: this.lastError ?? null,
      latency: this.window.snapshot(),
      comparison: this.comparisons.snapshot(),
    };
  }
}

export interface MirrorSnapshot {
  readonly target: string;
  readonly maxInFlight: number;
  readonly inFlight: number;
  readonly sent: number;
  /** Not sent: the lane was full. */
  readonly dropped: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly lastError: string | null;
  readonly latency: WindowSnapshot;
  readonly comparison: ComparisonSnapshot;
}

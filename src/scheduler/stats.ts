/**
 * Per-version statistics in the shape of the V2 statistics extension (Triton's
 * ModelStatistics): counts and cumulative nanoseconds per phase, and per executed batch size.
 */

export interface Duration {
  count: number;
  ns: number;
}

export interface InferStatistics {
  readonly success: Duration;
  readonly fail: Duration;
  readonly queue: Duration;
  readonly compute_input: Duration;
  readonly compute_infer: Duration;
  readonly compute_output: Duration;
}

export interface BatchStatistics {
  readonly batch_size: number;
  readonly compute_input: Duration;
  readonly compute_infer: Duration;
  readonly compute_output: Duration;
}

export interface VersionStatisticsSnapshot {
  /** Milliseconds since the epoch of the last inference, 0 if none. */
  readonly last_inference: number;
  /** Items (rows) inferred. */
  readonly inference_count: number;
  /** Batches executed. */
  readonly execution_count: number;
  readonly inference_stats: InferStatistics;
  readonly batch_stats: readonly BatchStatistics[];
}

const zero = (): Duration => ({ count: 0, ns: 0 });

export class VersionStatistics {
  private lastInference = 0;
  private inferenceCount = 0;
  private executionCount = 0;
  private readonly infer = {
    success: zero(),
    fail: zero(),
    queue: zero(),
    compute_input: zero(),
    compute_infer: zero(),
    compute_output: zero(),
  };
  private readonly batches = new Map<number, { compute_input: Duration; compute_infer: Duration; compute_output: Duration }>();

  /** A request answered successfully: its total time and the phases it spent. */
  recordSuccess(totalNs: number, queueNs: number, inputNs: number, inferNs: number, outputNs: number): void {
    this.lastInference = Date.now();
    add(this.infer.success, totalNs);
    add(this.infer.queue, queueNs);
    add(this.infer.compute_input, inputNs);
    add(this.infer.compute_infer, inferNs);
    add(this.infer.compute_output, outputNs);
  }

  recordFailure(totalNs: number): void {
    add(this.infer.fail, totalNs);
  }

  /** One executed batch of `rows` items. */
  recordExecution(rows: number, inputNs: number, inferNs: number, outputNs: number): void {
    this.executionCount++;
    this.inferenceCount += rows;
    let entry = this.batches.get(rows);
    if (entry === undefined) {
      entry = { compute_input: zero(), compute_infer: zero(), compute_output: zero() };
      this.batches.set(rows, entry);
    }
    add(entry.compute_input, inputNs);
    add(entry.compute_infer, inferNs);
    add(entry.compute_output, outputNs);
  }

  snapshot(): VersionStatisticsSnapshot {
    const copy = (d: Duration): Duration => ({ count: d.count, ns: d.ns });
    return {
      last_inference: this.lastInference,
      inference_count: this.inferenceCount,
      execution_count: this.executionCount,
      inference_stats: {
        success: copy(this.infer.success),
        fail: copy(this.infer.fail),
        queue: copy(this.infer.queue),
        compute_input: copy(this.infer.compute_input),
        compute_infer: copy(this.infer.compute_infer),
        compute_output: copy(this.infer.compute_output),
      },
      batch_stats: [...this.batches.entries()]
        .sort(([a], [b]) => a - b)
        .map(([batch_size, e]) => ({
          batch_size,
          compute_input: copy(e.compute_input),
          compute_infer: copy(e.compute_infer),
          compute_output: copy(e.compute_output),
        })),
    };
  }
}

function add(duration: Duration, ns: number): void {
  duration.count++;
  duration.ns += Math.max(0, Math.round(ns));
}

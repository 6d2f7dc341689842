/**
 * The dynamic batcher's decision, as a pure function of the queue and the clock (after
 * Triton's DynamicBatchScheduler::GetDynamicBatch): run the first `take` queued requests now,
 * wait `waitMs` for more, or stay idle. The driver owns time and instances.
 */

/** What the policy sees of a queued request. */
export interface BatchCandidate {
  /** Rows this request contributes (its dim 0; 1 for models that do not batch). */
  readonly batchSize: number;
  /** Requests batch together only when their non-batch dims agree (same key). */
  readonly shapeKey: string;
  /** Clock time (ms) the request entered the queue. */
  readonly enqueuedAt: number;
}

export interface BatchingPolicy {
  /** 0 = the model does not batch: every request runs alone. */
  readonly maxBatchSize: number;
  /** Batch sizes to prefer; empty = any size up to the maximum. */
  readonly preferredBatchSizes: readonly number[];
  /** How long the oldest request may wait for a fuller batch; 0 = send what is there. */
  readonly maxQueueDelayMs: number;
}

export type BatchDecision =
  | { readonly kind: 'run'; readonly take: number; readonly rows: number }
  | { readonly kind: 'wait'; readonly ms: number }
  | { readonly kind: 'idle' };

const IDLE: BatchDecision = { kind: 'idle' };

/**
 * Decide over `candidates` in dispatch order (highest priority first, then arrival), as
 * Triton's dynamic batcher does. A batch is cut at the first request whose shape key differs
 * or that would overflow maxBatchSize. The largest preferred size the queue reaches runs at
 * once, unless the oldest request has waited out the delay (then everything up to the cut
 * runs); with no preferred size reached, the queue runs at a cut, once the delay is out (or
 * without a delay), or when it holds the largest preferred size's rows; otherwise it waits.
 */
export function decideBatch(candidates: Iterable<BatchCandidate>, now: number, policy: BatchingPolicy): BatchDecision {
  let count = 0;
  let rows = 0;
  let key = '';
  let oldest = 0;
  let preferredCount = 0;
  let preferredRows = 0;
  let cut = false;

  for (const candidate of candidates) {
    if (policy.maxBatchSize === 0) return { kind: 'run', take: 1, rows: candidate.batchSize };
    if (count === 0) {
      key = candidate.shapeKey;
      oldest = candidate.enqueuedAt;
    } else if (candidate.shapeKey !== key || rows + candidate.batchSize > policy.maxBatchSize) {
      cut = true;
      break;
    }
    count++;
    rows += candidate.batchSize;
    oldest = Math.min(oldest, candidate.enqueuedAt);
    if (policy.preferredBatchSizes.includes(rows)) {
      preferredCount = count;
      preferredRows = rows;
    }
    if (rows >= policy.maxBatchSize) {
      cut = true;
      break;
    }
  }
  if (count === 0) return IDLE;
  const waited = now - oldest;
  const delayedOut = policy.maxQueueDelayMs > 0 && waited >= policy.maxQueueDelayMs;
  if (preferredCount > 0 && !delayedOut) return { kind: 'run', take: preferredCount, rows: preferredRows };
  const largestPreferred = policy.preferredBatchSizes.length > 0 ? Math.max(...policy.preferredBatchSizes) : policy.maxBatchSize;
  if (cut || delayedOut || policy.maxQueueDelayMs <= 0 || rows >= largestPreferred) return { kind: 'run', take: count, rows };
  return { kind: 'wait', ms: policy.maxQueueDelayMs - waited };
}

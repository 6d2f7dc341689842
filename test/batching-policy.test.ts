import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideBatch, type BatchCandidate, type BatchingPolicy } from '../src/scheduler/batching-policy.js';

const policy = (overrides: Partial<BatchingPolicy> = {}): BatchingPolicy => ({
  maxBatchSize: 8,
  preferredBatchSizes: [],
  maxQueueDelayMs: 0,
  ...overrides,
});
const item = (batchSize = 1, enqueuedAt = 0, shapeKey = '4'): BatchCandidate => ({ batchSize, enqueuedAt, shapeKey });

describe('decideBatch', () => {
  test('an empty queue is idle', () => {
    assert.deepEqual(decideBatch([], 0, policy()), { kind: 'idle' });
  });

  test('without a delay, everything queued runs at once', () => {
    assert.deepEqual(decideBatch([item(), item(), item()], 0, policy()), { kind: 'run', take: 3, rows: 3 });
  });

  test('models that do not batch take one request at a time, whatever its rows', () => {
    assert.deepEqual(decideBatch([item(5), item()], 0, policy({ maxBatchSize: 0 })), { kind: 'run', take: 1, rows: 5 });
  });

  test('a full batch runs at once even when a delay is configured', () => {
    const queue = Array.from({ length: 10 }, () => item());
    assert.deepEqual(decideBatch(queue, 0, policy({ maxQueueDelayMs: 100 })), { kind: 'run', take: 8, rows: 8 });
  });

  test('a request that would overflow max_batch_size is left for the next batch', () => {
    assert.deepEqual(decideBatch([item(3), item(3), item(3)], 0, policy()), { kind: 'run', take: 2, rows: 6 });
  });

  test('a partial batch waits for the rest of the delay, measured from the oldest request', () => {
    assert.deepEqual(decideBatch([item(1, 10), item(1, 12)], 14, policy({ maxQueueDelayMs: 5 })), { kind: 'wait', ms: 1 });
  });

  test('once the oldest request has waited the delay, the partial batch runs', () => {
    assert.deepEqual(decideBatch([item(1, 10), item(1, 12)], 15, policy({ maxQueueDelayMs: 5 })), { kind: 'run', take: 2, rows: 2 });
  });

  test('a shape change cuts the batch: only equal non-batch dims run together', () => {
    const queue = [item(1, 0, 'a'), item(1, 0, 'a'), item(1, 0, 'b'), item(1, 0, 'a')];
    assert.deepEqual(decideBatch(queue, 0, policy({ maxQueueDelayMs: 100 })), { kind: 'run', take: 2, rows: 2 });
  });

  test('a queue that forms a preferred size exactly runs without waiting', () => {
    const queue = [item(), item(), item(), item()];
    assert.deepEqual(decideBatch(queue, 0, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })), { kind: 'run', take: 4, rows: 4 });
  });

  test('below a preferred size the batcher waits', () => {
    const queue = [item(), item(), item()];
    assert.equal(decideBatch(queue, 0, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })).kind, 'wait');
  });

  test('at a cut, the largest preferred size reached is sent', () => {
    // 2 + 2 = 4 is preferred; adding 3 more would be 7 (allowed) but then 9 overflows max 8.
    const queue = [item(2), item(2), item(3), item(2)];
    assert.deepEqual(decideBatch(queue, 0, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })), { kind: 'run', take: 2, rows: 4 });
  });

  test('the largest preferred size the queue reaches runs at once, without waiting out the delay (as in Triton)', () => {
    const five = [item(), item(), item(), item(), item()];
    assert.deepEqual(decideBatch(five, 0, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })), { kind: 'run', take: 4, rows: 4 });
    assert.deepEqual(decideBatch(five, 0, policy({ preferredBatchSizes: [2, 4], maxQueueDelayMs: 100 })), { kind: 'run', take: 4, rows: 4 });
    // Without a delay too: the preferred size first, the rest in the next batch.
    assert.deepEqual(decideBatch([item(), item(), item()], 0, policy({ preferredBatchSizes: [2] })), { kind: 'run', take: 2, rows: 2 });
  });

  test('a queue past the largest preferred size without landing on one runs at once', () => {
    // 3 + 3 = 6 rows: no preferred size (4) reached, none larger to wait for.
    assert.deepEqual(decideBatch([item(3), item(3)], 0, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })), { kind: 'run', take: 2, rows: 6 });
  });

  test('once the delay is out, everything up to the cut runs, past the preferred size', () => {
    const five = [item(1, 0), item(1, 0), item(1, 0), item(1, 0), item(1, 0)];
    assert.deepEqual(decideBatch(five, 200, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })), { kind: 'run', take: 5, rows: 5 });
  });

  test('after the delay a batch runs even off the preferred sizes', () => {
    const queue = [item(1, 0), item(1, 0), item(1, 0)];
    assert.deepEqual(decideBatch(queue, 200, policy({ preferredBatchSizes: [4], maxQueueDelayMs: 100 })), { kind: 'run', take: 3, rows: 3 });
  });

  test('a request larger than max_batch_size on its own still forms a batch of one', () => {
    // Validation refuses such requests earlier; the policy must not loop on them.
    assert.deepEqual(decideBatch([item(9)], 0, policy()), { kind: 'run', take: 1, rows: 9 });
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { BackendInstance, ExecutionResult } from '../src/backends/backend.js';
import { TesseraError } from '../src/core/errors.js';
import type { Tensor } from '../src/core/tensor.js';
import { Scheduler, type SchedulerOptions } from '../src/scheduler/scheduler.js';
import { VersionStatistics } from '../src/scheduler/stats.js';

/** An instance whose executions the test completes by hand; it echoes input `x` as output `y`. */
class ManualInstance implements BackendInstance {
  readonly batches: Tensor[][] = [];
  private readonly waiting: (() => void)[] = [];
  constructor(readonly index = 0) {}

  execute(inputs: readonly Tensor[]): Promise<ExecutionResult> {
    this.batches.push([...inputs]);
    return new Promise((resolve) => {
      this.waiting.push(() => {
        const x = inputs[0]!;
        resolve({ outputs: [{ ...x, name: 'y' } as Tensor], timings: { inputNs: 0, inferNs: 1000, outputNs: 0 } });
      });
    });
  }

  /** Finish the oldest running execution. */
  finishOne(): void {
    this.waiting.shift()?.();
  }

  get running(): number {
    return this.waiting.length;
  }
}

function rowTensor(value: number, rows = 1): Tensor {
  return { name: 'x', datatype: 'FP32', shape: [rows, 2], data: Float32Array.from({ length: rows * 2 }, (_, i) => value + i / 10) };
}

function makeScheduler(instance: BackendInstance, overrides: Partial<SchedulerOptions> = {}): Scheduler {
  return new Scheduler({
    label: "model 'm' version 1",
    modelName: 'm',
    version: '1',
    instances: [instance],
    inputNames: ['x'],
    policy: { maxBatchSize: 4, preferredBatchSizes: [], maxQueueDelayMs: 0 },
    maxQueueSize: 16,
    priorityLevels: 1,
    defaultPriority: 1,
    defaultTimeoutMs: 0,
    allowTimeoutOverride: true,
    retryAfterSeconds: 2,
    holdUntilQueued: 0,
    stats: new VersionStatistics(),
    ...overrides,
  });
}

const request = (value: number, extra: { rows?: number; priority?: number; timeoutMs?: number; signal?: AbortSignal } = {}) => ({
  inputs: [rowTensor(value, extra.rows ?? 1)],
  batchSize: extra.rows ?? 1,
  shapeKey: '2',
  outputNames: ['y'],
  ...(extra.priority === undefined ? {} : { priority: extra.priority }),
  ...(extra.timeoutMs === undefined ? {} : { timeoutMs: extra.timeoutMs }),
  ...(extra.signal === undefined ? {} : { signal: extra.signal }),
});

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function fullGc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('Scheduler', () => {
  test('the hold hook makes batch compositions exact, and outputs split back per request', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { holdUntilQueued: 5 });
    const results = [1, 2, 3, 4, 5].map((v) => scheduler.schedule(request(v)));
    await tick();
    assert.equal(instance.batches.length, 1);
    assert.deepEqual(instance.batches[0]![0]!.shape, [4, 2]);
    assert.deepEqual(Array.from(instance.batches[0]![0]!.data as Float32Array), [1, 1.1, 2, 2.1, 3, 3.1, 4, 4.1].map(Math.fround));
    instance.finishOne();
    await tick();
    assert.equal(instance.batches.length, 2);
    assert.deepEqual(instance.batches[1]![0]!.shape, [1, 2]);
    instance.finishOne();
    const outputs = await Promise.all(results);
    outputs.forEach((tensors, i) => {
      assert.equal(tensors[0]!.name, 'y');
      assert.deepEqual(tensors[0]!.shape, [1, 2]);
      assert.deepEqual(Array.from(tensors[0]!.data as Float32Array), [i + 1, i + 1.1].map(Math.fround));
    });
  });

  test('multi-row requests keep their rows together', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { holdUntilQueued: 2 });
    const a = scheduler.schedule(request(10, { rows: 3 }));
    const b = scheduler.schedule(request(20, { rows: 1 }));
    await tick();
    assert.deepEqual(instance.batches[0]![0]!.shape, [4, 2]);
    instance.finishOne();
    const [ra, rb] = await Promise.all([a, b]);
    assert.deepEqual(ra[0]!.shape, [3, 2]);
    assert.deepEqual(rb[0]!.shape, [1, 2]);
    assert.equal((rb[0]!.data as Float32Array)[0], 20);
  });

  test('a full queue refuses at once with QUEUE_FULL and Retry-After, and runs nothing', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { holdUntilQueued: 100, maxQueueSize: 3 });
    const queued = [1, 2, 3].map((v) => scheduler.schedule(request(v)));
    const started = performance.now();
    await assert.rejects(scheduler.schedule(request(4)), (error: TesseraError) => {
      assert.equal(error.code, 'QUEUE_FULL');
      assert.equal(error.retryAfterSeconds, 2);
      assert.match(error.message, /full \(3 requests waiting\)/);
      return true;
    });
    assert.ok(performance.now() - started < 5);
    assert.equal(instance.batches.length, 0);
    await scheduler.destroy();
    await Promise.allSettled(queued);
  });

  test('a request that times out in the queue is answered DEADLINE_EXCEEDED and never runs', async () => {
    const instance = new ManualInstance();
    const stats = new VersionStatistics();
    const scheduler = makeScheduler(instance, { stats });
    const first = scheduler.schedule(request(1)); // occupies the only instance
    await tick();
    const late = scheduler.schedule(request(2, { timeoutMs: 20 }));
    await assert.rejects(late, (error: TesseraError) => error.code === 'DEADLINE_EXCEEDED' && /timed out after 20 ms/.test(error.message));
    instance.finishOne();
    await first;
    await tick();
    assert.equal(instance.batches.length, 1, 'the expired request did not run');
    assert.equal(stats.snapshot().inference_stats.fail.count, 1);
  });

  test('the default timeout applies when a request sets none, and overrides can be refused', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { defaultTimeoutMs: 15, allowTimeoutOverride: false });
    const first = scheduler.schedule(request(1));
    await tick();
    // The config does not allow overriding: a request's timeout, longer or shorter, is not used.
    await assert.rejects(scheduler.schedule(request(2, { timeoutMs: 10_000 })), { code: 'DEADLINE_EXCEEDED', message: /timed out after 15 ms/ });
    await assert.rejects(scheduler.schedule(request(3, { timeoutMs: 1 })), { code: 'DEADLINE_EXCEEDED', message: /timed out after 15 ms/ });
    instance.finishOne();
    await first;
  });

  test('a request may shorten the default timeout but not lengthen it, as in Triton', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { defaultTimeoutMs: 40, allowTimeoutOverride: true });
    const first = scheduler.schedule(request(1));
    await tick();
    await assert.rejects(scheduler.schedule(request(2, { timeoutMs: 10_000 })), (error: TesseraError) => /timed out after 40 ms/.test(error.message));
    await assert.rejects(scheduler.schedule(request(3, { timeoutMs: 5 })), (error: TesseraError) => /timed out after 5 ms/.test(error.message));
    instance.finishOne();
    await first;
  });

  test('a timeout longer than a timer can hold (over 24.8 days) is no limit, not an immediate expiry', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance);
    const first = scheduler.schedule(request(1));
    await tick();
    let settled = false;
    const patient = scheduler.schedule(request(2, { timeoutMs: 30 * 24 * 3600 * 1000 })).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(settled, false, 'still queued');
    instance.finishOne();
    await first;
    await tick();
    instance.finishOne();
    assert.deepEqual(Array.from((await patient)[0]!.data as Float32Array), [2, 2.1].map(Math.fround));
  });

  test('requests that time out behind a busy instance are let go, inputs and all, before they reach the head', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { maxQueueSize: 4 });
    const first = scheduler.schedule(request(1)); // occupies the only instance
    await tick();
    const head = scheduler.schedule(request(2)); // waits at the head, no timeout
    const collected = new Set<number>();
    const registry = new FinalizationRegistry((index: number) => collected.add(index));
    for (let i = 0; i < 300; i++) {
      const timed = request(100 + i, { timeoutMs: 1 });
      registry.register(timed.inputs[0]!.data, i);
      await assert.rejects(scheduler.schedule(timed), { code: 'DEADLINE_EXCEEDED' });
    }
    for (let round = 0; round < 5 && collected.size < 300 - 64; round++) {
      fullGc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(collected.size >= 300 - 64, `inputs of timed-out requests let go: ${collected.size} of 300`);
    assert.equal(scheduler.queueDepth, 1);
    instance.finishOne();
    await first;
    await tick();
    instance.finishOne();
    await head;
  });

  test('preserve_ordering answers requests in the order they were queued; without it, as they finish', async () => {
    for (const preserveOrdering of [true, false]) {
      const first = new ManualInstance(0);
      const second = new ManualInstance(1);
      const scheduler = makeScheduler(first, { instances: [first, second], policy: { maxBatchSize: 0, preferredBatchSizes: [], maxQueueDelayMs: 0 }, preserveOrdering });
      const answered: string[] = [];
      const a = scheduler.schedule(request(1)).then(() => answered.push('a'));
      const b = scheduler.schedule(request(2)).then(() => answered.push('b'));
      const c = scheduler.schedule(request(3, { timeoutMs: 5 })).catch(() => answered.push('c timed out'));
      await tick();
      assert.equal(first.running + second.running, 2, 'a and b run on the two instances');
      // c times out in the queue, then b's instance finishes, both before a's.
      await new Promise((resolve) => setTimeout(resolve, 20));
      (first.batches[0]![0]!.data[0] === 2 ? first : second).finishOne();
      await tick();
      assert.deepEqual(answered, preserveOrdering ? [] : ['c timed out', 'b'], `preserveOrdering ${preserveOrdering}`);
      (first.batches[0]![0]!.data[0] === 1 ? first : second).finishOne();
      await Promise.all([a, b, c]);
      assert.deepEqual(answered, preserveOrdering ? ['a', 'b', 'c timed out'] : ['c timed out', 'b', 'a']);
    }
  });

  test('a request whose caller went away is dropped before it runs', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance);
    const first = scheduler.schedule(request(1));
    await tick();
    const controller = new AbortController();
    const abandoned = scheduler.schedule(request(2, { signal: controller.signal }));
    controller.abort();
    await assert.rejects(abandoned, { code: 'REQUEST_CANCELLED' });
    instance.finishOne();
    await first;
    await tick();
    assert.equal(instance.batches.length, 1);
    assert.equal(scheduler.queueDepth, 0);
  });

  test('higher priority requests are batched first', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { priorityLevels: 2, defaultPriority: 2, holdUntilQueued: 6 });
    const low = [1, 2, 3].map((v) => scheduler.schedule(request(v, { priority: 2 })));
    const high = [7, 8, 9].map((v) => scheduler.schedule(request(v, { priority: 1 })));
    await tick();
    const firstBatch = Array.from(instance.batches[0]![0]!.data as Float32Array).filter((_, i) => i % 2 === 0);
    assert.deepEqual(firstBatch, [7, 8, 9, 1]);
    instance.finishOne();
    await tick();
    instance.finishOne();
    await Promise.all([...low, ...high]);
  });

  test('max_queue_delay holds a partial batch for the configured time, then sends it', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { policy: { maxBatchSize: 4, preferredBatchSizes: [], maxQueueDelayMs: 60 } });
    const started = performance.now();
    const result = scheduler.schedule(request(1));
    await tick();
    assert.equal(instance.batches.length, 0, 'waits for more requests');
    while (instance.batches.length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    const waited = performance.now() - started;
    assert.ok(waited >= 55 && waited < 200, `waited ${waited} ms`);
    instance.finishOne();
    await result;
  });

  test('a sub-millisecond max_queue_delay is held for its own length, not rounded up to a timer millisecond', async () => {
    const executedAt: number[] = [];
    const instance: BackendInstance = {
      index: 0,
      execute(inputs) {
        executedAt.push(performance.now());
        return Promise.resolve({ outputs: [{ ...inputs[0]!, name: 'y' } as Tensor], timings: { inputNs: 0, inferNs: 1000, outputNs: 0 } });
      },
    };
    const scheduler = makeScheduler(instance, { policy: { maxBatchSize: 4, preferredBatchSizes: [], maxQueueDelayMs: 0.5 } });
    const waits: number[] = [];
    for (let i = 0; i < 25; i++) {
      const started = performance.now();
      await scheduler.schedule(request(i));
      waits.push(executedAt.at(-1)! - started);
    }
    waits.sort((a, b) => a - b);
    const median = waits[Math.floor(waits.length / 2)]!;
    // Node's timers would hold each lone request for 1 ms or more (measured 1.1-1.2 ms).
    assert.ok(waits[0]! >= 0.5, `a request ran after ${waits[0]} ms, before the 0.5 ms delay`);
    assert.ok(median < 0.9, `median wait ${median.toFixed(3)} ms for a 0.5 ms delay; waits ${waits.map((w) => w.toFixed(2)).join(' ')}`);
  });

  test('close() drains queued and running requests and refuses new ones; destroy() refuses the queue', async () => {
    const instance = new ManualInstance();
    const scheduler = makeScheduler(instance, { policy: { maxBatchSize: 1, preferredBatchSizes: [], maxQueueDelayMs: 0 } });
    const results = [1, 2, 3].map((v) => scheduler.schedule(request(v)));
    await tick();
    let closed = false;
    const closing = scheduler.close().then(() => {
      closed = true;
    });
    await assert.rejects(scheduler.schedule(request(4)), { code: 'MODEL_UNAVAILABLE' });
    for (let i = 0; i < 3; i++) {
      assert.equal(closed, false);
      instance.finishOne();
      await tick();
    }
    await closing;
    assert.equal((await Promise.all(results)).length, 3);
    // Idempotent: closing again resolves at once.
    await scheduler.close();
    await scheduler.destroy();

    const other = new ManualInstance();
    const doomed = makeScheduler(other, { holdUntilQueued: 10 });
    const pending = [1, 2].map((v) => doomed.schedule(request(v)));
    await doomed.destroy();
    for (const outcome of await Promise.allSettled(pending)) {
      assert.equal(outcome.status, 'rejected');
      assert.equal((outcome as PromiseRejectedResult).reason.code, 'MODEL_UNAVAILABLE');
    }
    assert.equal(other.batches.length, 0);
  });

  test('an instance that is down (its worker being replaced) gets no batches while another is up; with none up, requests fail at once', async () => {
    /** An instance whose worker died: it refuses every batch, as the ONNX instance does until it is replaced. */
    const down = {
      index: 0,
      up: false,
      calls: 0,
      available(): boolean {
        return this.up;
      },
      execute(): Promise<ExecutionResult> {
        this.calls++;
        return Promise.reject(new TesseraError('MODEL_UNAVAILABLE', 'model instance 0 is restarting'));
      },
    };
    const up = new ManualInstance(1);
    const scheduler = makeScheduler(up, { instances: [down, up], policy: { maxBatchSize: 1, preferredBatchSizes: [], maxQueueDelayMs: 0 } });
    const results = [1, 2, 3].map((v) => scheduler.schedule(request(v)));
    await tick();
    // One runs on the instance that is up; the others wait for it rather than fail on the other.
    assert.equal(up.running, 1);
    assert.equal(down.calls, 0);
    for (let i = 0; i < 3; i++) {
      up.finishOne();
      await tick();
    }
    const answers = await Promise.all(results);
    assert.deepEqual(answers.map((outputs) => (outputs[0]!.data as Float32Array)[0]), [1, 2, 3]);
    assert.equal(down.calls, 0, 'the instance that is down ran nothing');
    // Every instance down: no waiting for one to come back, the request is refused at once.
    const alone = makeScheduler(down, { instances: [down] });
    await assert.rejects(alone.schedule(request(9)), { code: 'MODEL_UNAVAILABLE' });
    assert.equal(down.calls, 1);
    // Back up: it is used again.
    down.up = true;
    await assert.rejects(alone.schedule(request(10)), { code: 'MODEL_UNAVAILABLE' });
    assert.equal(down.calls, 2);
    await scheduler.close();
    await alone.close();
  });

  test('statistics count successes, queue time and batch sizes', async () => {
    const instance = new ManualInstance();
    const stats = new VersionStatistics();
    const scheduler = makeScheduler(instance, { stats, holdUntilQueued: 3 });
    const results = [1, 2, 3].map((v) => scheduler.schedule(request(v)));
    await tick();
    instance.finishOne();
    await Promise.all(results);
    const snapshot = stats.snapshot();
    assert.equal(snapshot.inference_count, 3);
    assert.equal(snapshot.execution_count, 1);
    assert.equal(snapshot.inference_stats.success.count, 3);
    assert.equal(snapshot.inference_stats.queue.count, 3);
    assert.deepEqual(snapshot.batch_stats.map((b) => [b.batch_size, b.compute_infer.count]), [[3, 1]]);
  });
});

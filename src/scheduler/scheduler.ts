import { performance } from 'node:perf_hooks';
import { TesseraError } from '../core/errors.js';
import type { InferenceRequest } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import type { BackendInstance } from '../backends/backend.js';
import { concatInputs, splitOutputs } from './batch-assembly.js';
import { decideBatch, type BatchCandidate, type BatchingPolicy } from './batching-policy.js';
import { RingQueue } from './ring-queue.js';
import type { VersionStatistics } from './stats.js';
import { channels, publish } from '../core/events.js';
import { MAX_TIMER_MS } from '../core/timers.js';
import type { CancelSignal } from '../core/cancel.js';

export interface SchedulerOptions {
  /** "model 'm' version 1", for messages. */
  readonly label: string;
  readonly modelName: string;
  readonly version: string;
  readonly instances: readonly BackendInstance[];
  /** The model's input names, in the order batches pass them to the backend. */
  readonly inputNames: readonly string[];
  readonly policy: BatchingPolicy;
  /** Requests waiting beyond this many are refused at once with QUEUE_FULL. */
  readonly maxQueueSize: number;
  /** Number of priority levels (>= 1); level 1 is served first. */
  readonly priorityLevels: number;
  /** Level for requests that give no (or an out-of-range) priority. */
  readonly defaultPriority: number;
  /** Timeout for requests that set none; 0 = none. */
  readonly defaultTimeoutMs: number;
  readonly allowTimeoutOverride: boolean;
  /** Retry-After hint on QUEUE_FULL. */
  readonly retryAfterSeconds: number;
  /** Test hook: hold batches until this many requests are queued (once). 0 = off. */
  readonly holdUntilQueued: number;
  /**
   * Batches handed to an instance before it finishes the one it runs (default 1). 2 keeps an
   * instance's next batch waiting at the instance itself, so it starts without a round trip
   * through the event loop: for throughput jobs (tessera batch), at the cost of batches formed
   * earlier (smaller) than they could be.
   */
  readonly batchesPerInstance?: number;
  /**
   * Answer requests in the order they were queued (Triton's `preserve_ordering`): a request
   * finished before an earlier one waits for it. Off: each is answered as soon as it finishes.
   */
  readonly preserveOrdering?: boolean;
  readonly stats: VersionStatistics;
  /** Milliseconds; injectable for tests. */
  readonly clock?: () => number;
}

/** One request as the scheduler takes it: validated, with its batch rows and shape key. */
export interface ScheduledRequest {
  readonly inputs: readonly Tensor[];
  /** Rows along dim 0 (1 for models that do not batch). */
  readonly batchSize: number;
  /** Non-batch dims of every input; only equal keys batch together. */
  readonly shapeKey: string;
  readonly outputNames: readonly string[];
  readonly priority?: number;
  readonly timeoutMs?: number;
  readonly signal?: CancelSignal;
  /** The engine request this came from, passed through to observability events. */
  readonly origin?: InferenceRequest;
}

type PendingState = 'queued' | 'running' | 'done';

/** Dropped requests that may wait in the queues before they are cleared out (see drop). */
const COMPACT_AFTER_DROPS = 64;

class Pending implements BatchCandidate {
  state: PendingState = 'queued';
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  dispatchedNs = 0n;
  /** With preserve_ordering: its answer, held until every request queued before it is answered. */
  answer: (() => void) | undefined;

  constructor(
    readonly request: ScheduledRequest,
    readonly enqueuedAt: number,
    readonly enqueuedNs: bigint,
    readonly resolve: (outputs: Tensor[]) => void,
    readonly reject: (error: TesseraError) => void,
  ) {}

  get batchSize(): number {
    return this.request.batchSize;
  }

  get shapeKey(): string {
    return this.request.shapeKey;
  }
}

/** hrtime nanoseconds as epoch milliseconds. */
const HRTIME_EPOCH_OFFSET_MS = Date.now() - Number(process.hrtime.bigint()) / 1e6;
function epochMs(ns: bigint): number {
  return HRTIME_EPOCH_OFFSET_MS + Number(ns) / 1e6;
}

/**
 * The scheduler of one model version: bounded priority queues, a dynamic batcher driven by
 * the pure `decideBatch`, and a pool of instances that each run one batch at a time.
 * `close()` drains (queued and running requests finish); `destroy()` refuses what is queued.
 * Both are idempotent.
 */
export class Scheduler {
  private readonly levels: RingQueue<Pending>[];
  private readonly free: BackendInstance[];
  private readonly clock: () => number;
  private queued = 0;
  private running = 0;
  /** With preserve_ordering: requests in the order they were queued, until answered. */
  private readonly inOrder: RingQueue<Pending> | undefined;
  /** Requests dropped (timed out, cancelled) since the queues were last cleared of them. */
  private droppedInQueue = 0;
  private holding: boolean;
  private pumping = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeImmediate: NodeJS.Immediate | undefined;
  private closed = false;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly options: SchedulerOptions) {
    this.levels = Array.from({ length: Math.max(1, options.priorityLevels) }, () => new RingQueue<Pending>());
    const slots = Math.max(1, options.batchesPerInstance ?? 1);
    // Each instance once per slot, the first slot of every instance first.
    this.free = Array.from({ length: slots }, () => [...options.instances]).flat().reverse();
    this.clock = options.clock ?? (() => performance.now());
    this.holding = options.holdUntilQueued > 0;
    this.inOrder = options.preserveOrdering === true ? new RingQueue<Pending>() : undefined;
  }

  /** Requests waiting in the queues. */
  get queueDepth(): number {
    return this.queued;
  }

  /** Requests whose batch is executing. */
  get inFlight(): number {
    return this.running;
  }

  /** The QUEUE_FULL refusal a request would get now, or undefined while the queue has room. */
  fullQueueRefusal(): TesseraError | undefined {
    if (this.queued < this.options.maxQueueSize) return undefined;
    return new TesseraError('QUEUE_FULL', `the queue of ${this.options.label} is full (${this.options.maxQueueSize} requests waiting); retry later`, {
      retryAfterSeconds: this.options.retryAfterSeconds,
    });
  }

  /** Queue a request; resolves with its requested outputs in order. */
  schedule(request: ScheduledRequest): Promise<Tensor[]> {
    if (this.closed) {
      return Promise.reject(new TesseraError('MODEL_UNAVAILABLE', `${this.options.label} is unloading and takes no new requests`));
    }
    if (request.signal?.aborted === true) {
      return Promise.reject(new TesseraError('REQUEST_CANCELLED', 'the request was cancelled before it was queued'));
    }
    const full = this.fullQueueRefusal();
    if (full !== undefined) return Promise.reject(full);
    return new Promise<Tensor[]>((resolve, reject) => {
      const item = new Pending(request, this.clock(), process.hrtime.bigint(), resolve, reject);
      this.levels[this.levelOf(request.priority)]!.push(item);
      this.inOrder?.push(item);
      this.queued++;
      const timeoutMs = this.timeoutOf(request);
      if (timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS) {
        item.timer = setTimeout(
          () => this.drop(item, new TesseraError('DEADLINE_EXCEEDED', `the request timed out after ${timeoutMs} ms in the queue of ${this.options.label}`)),
          timeoutMs,
        );
      }
      if (request.signal !== undefined) {
        item.onAbort = () => this.drop(item, new TesseraError('REQUEST_CANCELLED', 'the caller went away before the request ran'));
        request.signal.addEventListener('abort', item.onAbort, { once: true });
      }
      this.pump();
    });
  }

  /** Stop taking requests; resolves once every queued and running request has finished. */
  close(): Promise<void> {
    this.closed = true;
    this.holding = false;
    this.pump();
    return this.whenDrained();
  }

  /** Refuse every queued request now; resolves once running batches end. */
  destroy(): Promise<void> {
    this.closed = true;
    this.holding = false;
    for (const level of this.levels) {
      for (let item = level.shift(); item !== undefined; item = level.shift()) {
        if (item.state === 'queued') this.drop(item, new TesseraError('MODEL_UNAVAILABLE', `${this.options.label} was unloaded before the request ran`));
      }
    }
    return this.whenDrained();
  }

  /**
   * How long a request may wait in the queue (0: no limit). As in Triton, a request may set a
   * timeout when the config allows it, shorter than the default, never longer. A timeout too
   * long for a timer (over 24.8 days) is no limit.
   */
  private timeoutOf(request: ScheduledRequest): number {
    const byDefault = this.options.defaultTimeoutMs;
    if (request.timeoutMs === undefined || !this.options.allowTimeoutOverride) return byDefault;
    return byDefault > 0 ? Math.min(request.timeoutMs, byDefault) : request.timeoutMs;
  }

  private levelOf(priority: number | undefined): number {
    const levels = this.levels.length;
    const level = priority !== undefined && priority >= 1 && priority <= levels ? priority : this.options.defaultPriority;
    return Math.min(Math.max(level, 1), levels) - 1;
  }

  /** Live queued requests in dispatch order: level 1 first, then arrival. */
  private *candidates(): Generator<Pending> {
    for (const level of this.levels) {
      while (level.peek()?.state === 'done') level.shift();
      for (const item of level) if (item.state === 'queued') yield item;
    }
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.free.length > 0 && this.queued > 0) {
        if (this.holding) {
          if (this.queued < this.options.holdUntilQueued) return;
          this.holding = false;
        }
        const decision = decideBatch(this.candidates(), this.clock(), this.options.policy);
        if (decision.kind === 'run') {
          const instance = this.takeInstance();
          // The free instances are down and a busy one is up: it pumps again when its batch ends.
          if (instance === undefined) return;
          this.dispatch(decision.take, instance);
        } else {
          if (decision.kind === 'wait') this.wakeAfter(decision.ms);
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Pump again once `ms` have passed. Node's timers count whole milliseconds (a 0.5 ms timer
   * fires after 1 ms or more), so a timer covers the whole milliseconds and the rest is waited
   * by turns of the event loop (setImmediate), each of which pumps and so re-reads the clock:
   * a max_queue_delay of 500 us holds a lone request for 500 us, not 1.1 ms. Those turns keep the
   * main thread busy for under a millisecond per partial batch, and only while nothing else is
   * queued behind it in the loop.
   */
  private wakeAfter(ms: number): void {
    this.cancelWake();
    if (ms >= 1) {
      this.wakeTimer = setTimeout(() => {
        this.wakeTimer = undefined;
        this.pump();
      }, Math.floor(ms));
    } else {
      this.wakeImmediate = setImmediate(() => {
        this.wakeImmediate = undefined;
        this.pump();
      });
    }
  }

  private cancelWake(): void {
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    if (this.wakeImmediate !== undefined) clearImmediate(this.wakeImmediate);
    this.wakeTimer = undefined;
    this.wakeImmediate = undefined;
  }

  /**
   * A free instance to run the next batch on: the most recently freed one that is available.
   * When every free instance is down (its worker is being replaced) but a busy one is up, none:
   * the batch waits for that one rather than fail on a dead instance. When no instance is up
   * at all, a down one, which refuses the batch at once (503) rather than keep callers waiting.
   */
  private takeInstance(): BackendInstance | undefined {
    const free = this.free;
    const last = free.length - 1;
    const top = free[last]!;
    if (top.available === undefined || top.available()) return free.pop();
    for (let at = last - 1; at >= 0; at--) {
      const instance = free[at]!;
      if (instance.available === undefined || instance.available()) return free.splice(at, 1)[0];
    }
    if (this.options.instances.some((instance) => instance.available === undefined || instance.available())) return undefined;
    return free.pop();
  }

  private dispatch(take: number, instance: BackendInstance): void {
    const batch: Pending[] = [];
    for (const item of this.candidates()) {
      batch.push(item);
      if (batch.length === take) break;
    }
    const now = process.hrtime.bigint();
    for (const item of batch) {
      item.state = 'running';
      item.dispatchedNs = now;
      this.release(item);
    }
    this.queued -= batch.length;
    this.running += batch.length;
    void this.execute(instance, batch).finally(() => {
      this.running -= batch.length;
      this.free.push(instance);
      this.pump();
      this.checkDrained();
    });
  }

  private async execute(instance: BackendInstance, batch: readonly Pending[]): Promise<void> {
    const outputNames = [...new Set(batch.flatMap((item) => item.request.outputNames))];
    const rows = batch.map((item) => item.request.batchSize);
    const totalRows = rows.reduce((a, b) => a + b, 0);
    try {
      const t0 = process.hrtime.bigint();
      const inputs = concatInputs(
        batch.map((item) => item.request.inputs),
        this.options.inputNames,
        instance.inputStaging === undefined ? undefined : (name, datatype, length) => instance.inputStaging!(name, datatype, length),
      );
      const t1 = process.hrtime.bigint();
      const result = await instance.execute(inputs, outputNames);
      const t2 = process.hrtime.bigint();
      const perRequest = splitOutputs(result.outputs, rows);
      const t3 = process.hrtime.bigint();
      const { timings } = result;
      // compute_infer is the backend's own run time (session.run in the worker); moving the
      // batch to the worker and back counts as input and output, so the phases add up.
      const inferNs = timings.inferNs;
      const inputNs = Number(t1 - t0) + timings.inputNs;
      const outputNs = Math.max(0, Number(t3 - t1) - timings.inputNs - inferNs);
      this.options.stats.recordExecution(totalRows, inputNs, inferNs, outputNs);
      const computeNs = Number(t3 - t0);
      const { modelName: model, version } = this.options;
      publish(channels.batchExecuted, () => ({ model, version, rows: totalRows, requests: batch.length, ok: true, computeSeconds: computeNs / 1e9 }));
      batch.forEach((item, r) => {
        const outputs = perRequest[r]!;
        const wanted = item.request.outputNames.map((name) => outputs.find((o) => o.name === name)!);
        item.state = 'done';
        this.options.stats.recordSuccess(Number(t3 - item.enqueuedNs), Number(item.dispatchedNs - item.enqueuedNs), inputNs, inferNs, outputNs);
        publish(channels.requestScheduled, () => ({
          model,
          version,
          request: item.request.origin,
          queueSeconds: Number(item.dispatchedNs - item.enqueuedNs) / 1e9,
          computeSeconds: computeNs / 1e9,
          enqueuedAtMs: epochMs(item.enqueuedNs),
          dispatchedAtMs: epochMs(item.dispatchedNs),
          finishedAtMs: epochMs(t3),
          batchRows: totalRows,
        }));
        if (this.inOrder === undefined) item.resolve(wanted);
        else this.answer(item, () => item.resolve(wanted));
      });
    } catch (error) {
      const failure = error instanceof TesseraError ? error : new TesseraError('INFERENCE_FAILED', (error as Error).message, { cause: error });
      const end = process.hrtime.bigint();
      publish(channels.batchExecuted, () => ({
        model: this.options.modelName,
        version: this.options.version,
        rows: totalRows,
        requests: batch.length,
        ok: false,
        computeSeconds: Number(end - (batch[0]?.dispatchedNs ?? end)) / 1e9,
      }));
      for (const item of batch) {
        item.state = 'done';
        this.options.stats.recordFailure(Number(end - item.enqueuedNs));
        if (this.inOrder === undefined) item.reject(failure);
        else this.answer(item, () => item.reject(failure));
      }
    }
  }

  /** Take a queued request out (timeout, cancellation, destroy) and answer it with `error`. */
  private drop(item: Pending, error: TesseraError): void {
    if (item.state !== 'queued') return;
    item.state = 'done';
    this.queued--;
    this.release(item);
    // A dropped request leaves its queue when it reaches the head; while the head waits (all
    // instances busy), timed-out and cancelled ones would pile up behind it with their inputs,
    // unbounded by max_queue_size. Once they outnumber the live ones, they go at once.
    if (++this.droppedInQueue >= COMPACT_AFTER_DROPS && this.droppedInQueue > this.queued) {
      for (const level of this.levels) level.retain((queued) => queued.state !== 'done');
      this.droppedInQueue = 0;
    }
    this.options.stats.recordFailure(Number(process.hrtime.bigint() - item.enqueuedNs));
    if (this.inOrder === undefined) item.reject(error);
    else this.answer(item, () => item.reject(error));
    this.checkDrained();
    // The head may have changed: a waiting batch can be ready now.
    queueMicrotask(() => this.pump());
  }

  /**
   * preserve_ordering: answer `item` once every request queued before it is answered (callers
   * answer at once without it, allocating nothing per request).
   */
  private answer(item: Pending, settle: () => void): void {
    const inOrder = this.inOrder!;
    item.answer = settle;
    for (let head = inOrder.peek(); head?.answer !== undefined; head = inOrder.peek()) {
      inOrder.shift();
      head.answer();
      head.answer = undefined;
    }
  }

  private release(item: Pending): void {
    if (item.timer !== undefined) clearTimeout(item.timer);
    if (item.onAbort !== undefined) item.request.signal?.removeEventListener('abort', item.onAbort);
    item.timer = undefined;
    item.onAbort = undefined;
  }

  private whenDrained(): Promise<void> {
    if (this.queued === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private checkDrained(): void {
    if (this.queued !== 0 || this.running !== 0) return;
    this.cancelWake();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

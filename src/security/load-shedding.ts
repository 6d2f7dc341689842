import { PerformanceObserver, constants as perfConstants, monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { TesseraError } from '../core/errors.js';

/**
 * Load shedding beyond the schedulers' bounded queues: while the process is overloaded — its
 * event loop lags, or its memory is above a limit — new work is refused at the door (503
 * OVERLOADED + Retry-After over HTTP, UNAVAILABLE over gRPC) before it is parsed and queued, so
 * an overloaded server recovers instead of piling up work it cannot finish. Health checks are
 * never shed (the front doors exempt them). Every limit is off by default; docs/reliability.md.
 *
 * Signals are sampled, not measured per request: every `sampleIntervalMs` the p99 event-loop
 * delay of the window just ended (perf_hooks.monitorEventLoopDelay), the resident set size and,
 * when limited, the V8 heap in use are read; the verdict holds until the next sample. A
 * request's check is one property read.
 */

/** Why work is shed; the `reason` label of tessera_shed_requests_total. */
export type ShedReason = 'event_loop_delay' | 'rss' | 'heap_used';

export const SHED_REASONS: readonly ShedReason[] = ['event_loop_delay', 'rss', 'heap_used'];

/** One reading of the signals. */
export interface LoadSample {
  /** p99 event-loop delay over the window since the previous sample, in milliseconds. */
  readonly eventLoopDelayMs: number;
  readonly rssBytes: number;
  /**
   * V8 heap held by live objects: the heap in use, but no more than right after the last
   * mark-compact (garbage made since then is not load); 0 when not read (no heap limit).
   */
  readonly heapUsedBytes: number;
}

/** Where samples come from (injectable for tests). */
export interface LoadProbe {
  sample(): LoadSample;
  close(): void;
}

export interface LoadSheddingOptions {
  /** Shed while the window's p99 event-loop delay exceeds this (ms); 0 = off. */
  readonly maxEventLoopDelayMs: number;
  /** Shed while the resident set size exceeds this (bytes); 0 = off. */
  readonly maxRssBytes: number;
  /** Shed while the V8 heap in use exceeds this (bytes); 0 = off. */
  readonly maxHeapUsedBytes: number;
  /** Length of a sample window (ms). */
  readonly sampleIntervalMs: number;
  /** Retry-After of the refusals (seconds). */
  readonly retryAfterSeconds: number;
  /** Default: the process's own event loop and memory. */
  readonly probe?: LoadProbe;
  /** Called when shedding starts, changes reason or stops (for a log line). */
  readonly onChange?: (active: ShedReason | undefined, detail: string) => void;
}

/** Counters and the current verdict, for metrics and logs. */
export interface SheddingStats {
  /** Requests refused so far, by reason. */
  readonly shed: Readonly<Record<ShedReason, number>>;
  /** The reason new work is refused now, or undefined. */
  readonly active: ShedReason | undefined;
  readonly lastSample: LoadSample | undefined;
}

/** The process's event-loop delay (10 ms resolution) and memory. */
export function processProbe(readHeap: boolean): LoadProbe {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const liveHeap = readHeap ? new LiveHeap() : undefined;
  return {
    sample: () => {
      // An empty window (no timer tick completed) reads 0.
      const eventLoopDelayMs = histogram.count === 0 ? 0 : histogram.percentile(99) / 1e6;
      histogram.reset();
      return { eventLoopDelayMs, rssBytes: process.memoryUsage.rss(), heapUsedBytes: liveHeap?.bytes() ?? 0 };
    },
    close: () => {
      histogram.disable();
      liveHeap?.close();
    },
  };
}

/**
 * The V8 heap held by live objects, as well as it can be known without forcing a collection:
 * the heap in use, but no more than it was right after the last mark-compact. `used_heap_size`
 * alone counts garbage too, and the server lets up to its headroom (96 MB, v8-tuning.ts) of it
 * build up between mark-compacts: a few large refused bodies would read as load and shed for
 * as long as V8 waits to collect them. Live growth shows at the next mark-compact, which V8
 * starts before the heap outgrows that headroom.
 */
class LiveHeap {
  private afterMarkCompact: number;
  private readonly observer: PerformanceObserver;

  constructor() {
    // Until a mark-compact is seen: the heap at start-up (start-up code and its garbage).
    this.afterMarkCompact = getHeapStatistics().used_heap_size;
    this.observer = new PerformanceObserver((list) => {
      // Delivered after the collection, before much is allocated again.
      if (list.getEntries().some((entry) => (entry as { detail?: { kind?: number } | null }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR)) {
        this.afterMarkCompact = getHeapStatistics().used_heap_size;
      }
    });
    this.observer.observe({ entryTypes: ['gc'] });
  }

  bytes(): number {
    return Math.min(getHeapStatistics().used_heap_size, this.afterMarkCompact);
  }

  close(): void {
    this.observer.disconnect();
  }
}

/** True when any limit of `options` is set: only then is a shedder worth running. */
export function sheddingEnabled(options: Pick<LoadSheddingOptions, 'maxEventLoopDelayMs' | 'maxRssBytes' | 'maxHeapUsedBytes'>): boolean {
  return options.maxEventLoopDelayMs > 0 || options.maxRssBytes > 0 || options.maxHeapUsedBytes > 0;
}

export class LoadShedder {
  private readonly counts: Record<ShedReason, number> = { event_loop_delay: 0, rss: 0, heap_used: 0 };
  private readonly probe: LoadProbe | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private active: ShedReason | undefined;
  private detail = '';
  private last: LoadSample | undefined;

  constructor(private readonly options: LoadSheddingOptions) {
    if (!sheddingEnabled(options)) return;
    this.probe = options.probe ?? processProbe(options.maxHeapUsedBytes > 0);
    this.timer = setInterval(() => this.sampleNow(), Math.max(10, options.sampleIntervalMs));
    this.timer.unref();
  }

  /** True when at least one limit is configured. */
  get enabled(): boolean {
    return this.probe !== undefined;
  }

  /**
   * The refusal for new work arriving now (counted under its reason), or undefined when the
   * work may proceed.
   */
  check(): TesseraError | undefined {
    const reason = this.active;
    if (reason === undefined) return undefined;
    this.counts[reason]++;
    return new TesseraError('OVERLOADED', `the server is overloaded (${this.detail}) and sheds new requests; retry after ${this.options.retryAfterSeconds} s`, {
      retryAfterSeconds: this.options.retryAfterSeconds,
    });
  }

  /** Read the signals and decide whether to shed until the next sample (the timer calls this). */
  sampleNow(): LoadSample | undefined {
    if (this.probe === undefined) return undefined;
    const sample = this.probe.sample();
    this.last = sample;
    const { maxRssBytes, maxHeapUsedBytes, maxEventLoopDelayMs } = this.options;
    const mib = (bytes: number): string => `${Math.round(bytes / 1048576)} MiB`;
    if (maxRssBytes > 0 && sample.rssBytes > maxRssBytes) {
      this.verdict('rss', `resident memory ${mib(sample.rssBytes)} > limit ${mib(maxRssBytes)}`);
    } else if (maxHeapUsedBytes > 0 && sample.heapUsedBytes > maxHeapUsedBytes) {
      this.verdict('heap_used', `V8 heap in use ${mib(sample.heapUsedBytes)} > limit ${mib(maxHeapUsedBytes)}`);
    } else if (maxEventLoopDelayMs > 0 && sample.eventLoopDelayMs > maxEventLoopDelayMs) {
      this.verdict('event_loop_delay', `event-loop delay ${Math.round(sample.eventLoopDelayMs)} ms > limit ${maxEventLoopDelayMs} ms`);
    } else {
      this.verdict(undefined, '');
    }
    return sample;
  }

  stats(): SheddingStats {
    return { shed: { ...this.counts }, active: this.active, lastSample: this.last };
  }

  /** Stop sampling; nothing is shed afterwards. Idempotent. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.probe?.close();
    this.active = undefined;
  }

  private verdict(reason: ShedReason | undefined, detail: string): void {
    const changed = reason !== this.active;
    this.active = reason;
    this.detail = detail;
    if (changed) this.options.onChange?.(reason, detail);
  }
}

import { randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { channels } from '../../core/events.js';
import type { ModelLoadedEvent, ModelUnloadedEvent, RequestEndEvent, RequestStartEvent } from '../../core/events.js';
import type { InferenceRequest } from '../../core/inference.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { captureTensors, finishTensor, type AuditTensor, type CapturedTensor } from './capture.js';
import { auditLogConfigSchema, auditModelConfigSchema, type AuditLogConfig, type AuditLogConfigInput, type AuditModelConfig } from '../../config/audit-config.js';
import { TesseraError } from '../../core/errors.js';
import { directoryProblem, RotatingJsonlWriter } from './writer.js';
import { parseTraceparent } from '../tracing/traceparent.js';

/** One line of the audit log. */
export interface AuditRecord {
  readonly request_id: string;
  /** ISO time the engine received the request. */
  readonly time: string;
  readonly model: string;
  /** Null when the request failed before a version was chosen. */
  readonly version: string | null;
  readonly protocol: string;
  readonly latency_ms: number;
  /** `success` or the error code. */
  readonly outcome: string;
  /** Trace id of the caller's `traceparent`, when it sent one. */
  readonly trace_id?: string;
  /** Null when the request failed before validation (its tensors were never accepted). */
  readonly inputs: readonly AuditTensor[] | null;
  /** Null when the request failed. */
  readonly outputs: readonly AuditTensor[] | null;
}

export type DropReason = 'queue_full' | 'write_error';

export interface AuditStats {
  /** Records written to files. */
  readonly written: number;
  readonly dropped: Readonly<Record<DropReason, number>>;
  /** Failed writes (each drops the records it carried). */
  readonly writeErrors: number;
  /** Records waiting to be written. */
  readonly queued: number;
  readonly queuedBytes: number;
  readonly currentFile: string | undefined;
}

export interface AuditLogOptions extends AuditLogConfigInput {
  /** The model's parsed `audit:` section (undefined: the server's `sampleRate` and default redaction). */
  readonly modelConfig?: (model: string) => AuditModelConfig | undefined;
  readonly logger?: Logger;
  readonly now?: () => number;
  /** Uniform [0, 1) source for sampling (tests pass a seeded one). */
  readonly random?: () => number;
}

interface Pending {
  readonly config: AuditModelConfig;
  readonly inputs: CapturedTensor[];
  readonly bytes: number;
}

interface Queued {
  readonly head: Omit<AuditRecord, 'inputs' | 'outputs'>;
  readonly inputs: CapturedTensor[] | null;
  readonly outputs: CapturedTensor[] | null;
  readonly bytes: number;
}

/** Marks a request seen at requestStart and not sampled. */
const NOT_SAMPLED = Symbol('not sampled');
/** Records per write. */
const BATCH = 1000;

/**
 * The prediction audit log: a sample of requests (per-model rate) recorded as JSONL
 * {request_id, time, model, version, protocol, latency_ms, outcome, inputs, outputs}. Inputs are
 * captured synchronously at requestStart (copied or bytes copied for hashing), outputs at
 * requestEnd; records go to a bounded in-memory queue that a writer flushes asynchronously to
 * rotating files. A full queue drops records (counted); write errors (read-only directory, full
 * disk) drop the batch, are counted and logged at most once a minute, and never reach callers.
 * The directory is checked when the log is created (created if missing): one that is not a
 * directory or not writable fails the construction, and so the server's start-up.
 */
export class AuditLog {
  private readonly config: AuditLogConfig;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly writer: RotatingJsonlWriter;
  private readonly defaultModelConfig: AuditModelConfig;
  private readonly modelConfigs = new Map<string, AuditModelConfig>();
  private readonly pending = new WeakMap<InferenceRequest, Pending | typeof NOT_SAMPLED>();
  private readonly subscriptions: [string, (message: unknown) => void][] = [];
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private written = 0;
  private readonly dropped: Record<DropReason, number> = { queue_full: 0, write_error: 0 };
  private writeErrors = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private retryAt = 0;
  private lastErrorLog = -Infinity;
  private suppressedErrors = 0;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: AuditLogOptions) {
    this.config = auditLogConfigSchema.parse(pickConfig(options));
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.defaultModelConfig = auditModelConfigSchema.parse({ sample_rate: this.config.sampleRate });
    // Checked now, before any event is subscribed to: found at the first record, it would only
    // be logged while every record is dropped.
    const problem = directoryProblem(this.config.directory);
    if (problem !== undefined) {
      throw new TesseraError(
        'INVALID_PARAMETER',
        `auditDir: ${this.config.directory} ${problem}; expected a writable directory for the audit log (created if missing)`,
      );
    }
    this.writer = new RotatingJsonlWriter({
      directory: this.config.directory,
      maxFileBytes: this.config.maxFileBytes,
      rotateDaily: this.config.rotateDaily,
      keepFiles: this.config.keepFiles,
      now: this.now,
    });
    this.on<RequestStartEvent>(channels.requestStart.name, (event) => this.onStart(event));
    this.on<RequestEndEvent>(channels.requestEnd.name, (event) => this.onEnd(event));
    this.on<ModelLoadedEvent>(channels.modelLoaded.name, (event) => this.modelConfigs.delete(event.model));
    this.on<ModelUnloadedEvent>(channels.modelUnloaded.name, (event) => this.modelConfigs.delete(event.model));
  }

  /** The directory the files are written to. */
  get directory(): string {
    return this.config.directory;
  }

  stats(): AuditStats {
    return {
      written: this.written,
      dropped: { ...this.dropped },
      writeErrors: this.writeErrors,
      queued: this.queue.length,
      queuedBytes: this.queuedBytes,
      currentFile: this.writer.currentFile,
    };
  }

  /** Audit files in the directory, oldest first (names only). */
  files(): Promise<string[]> {
    return this.writer.files();
  }

  /** Write every queued record now (ignores the flush interval, not the error back-off). */
  async flush(): Promise<void> {
    this.clearTimer();
    await this.drain(false);
  }

  /**
   * Stop recording, write what is queued (one attempt, even during an error back-off), close the
   * file. Call after the engine has drained: requests still in flight are not recorded. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      for (const [name, handler] of this.subscriptions.splice(0)) unsubscribe(name, handler);
      this.clearTimer();
      await this.drain(true);
      await this.writer.close();
    })();
    return this.closing;
  }

  private onStart(event: RequestStartEvent): void {
    const config = this.configOf(event.model);
    if (config.sample_rate <= 0) return;
    if (!this.sampled(config)) {
      this.pending.set(event.request, NOT_SAMPLED);
      return;
    }
    const captured = captureTensors(event.inputs, config, 'inputs');
    this.pending.set(event.request, { config, inputs: captured.tensors, bytes: captured.bytes });
  }

  private onEnd(event: RequestEndEvent): void {
    const entry = this.pending.get(event.request);
    if (entry === NOT_SAMPLED) {
      this.pending.delete(event.request);
      return;
    }
    let config: AuditModelConfig;
    let inputs: CapturedTensor[] | null = null;
    let bytes = 256;
    if (entry === undefined) {
      // Failed before requestStart (unknown model, invalid request): sample it now, without inputs.
      // Unknown model names come from callers: they are not looked up (nor cached).
      config = event.outcome === 'MODEL_NOT_FOUND' ? this.defaultModelConfig : this.configOf(event.model);
      if (config.sample_rate <= 0 || !this.sampled(config)) return;
    } else {
      this.pending.delete(event.request);
      config = entry.config;
      inputs = entry.inputs;
      bytes += entry.bytes;
    }
    let outputs: CapturedTensor[] | null = null;
    if (event.response !== undefined) {
      const captured = captureTensors(event.response.outputs, config, 'outputs');
      outputs = captured.tensors;
      bytes += captured.bytes;
    }
    const traceId = traceIdOf(event.request.traceparent);
    this.enqueue({
      head: {
        request_id: event.request.id ?? randomUUID(),
        time: new Date(event.startedAtMs).toISOString(),
        model: event.model,
        version: event.version ?? null,
        protocol: event.protocol,
        latency_ms: Math.round(event.durationSeconds * 1e6) / 1e3,
        outcome: event.outcome,
        ...(traceId === undefined ? {} : { trace_id: traceId }),
      },
      inputs,
      outputs,
      bytes,
    });
  }

  private sampled(config: AuditModelConfig): boolean {
    return config.sample_rate >= 1 || this.random() < config.sample_rate;
  }

  private enqueue(record: Queued): void {
    if (this.queue.length >= this.config.queueMaxRecords || this.queuedBytes + record.bytes > this.config.queueMaxBytes) {
      this.dropped.queue_full++;
      return;
    }
    this.queue.push(record);
    this.queuedBytes += record.bytes;
    if (this.queue.length >= BATCH) this.schedule(0);
    else this.schedule(this.config.flushIntervalMs);
  }

  private schedule(delayMs: number): void {
    if (this.flushing !== undefined || this.closed) return;
    if (this.timer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.timer);
    }
    const wait = Math.max(delayMs, this.retryAt - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain(false);
    }, wait);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Write the queue in batches; one drain at a time. */
  private async drain(final: boolean): Promise<void> {
    while (this.flushing !== undefined) await this.flushing;
    this.flushing = (async () => {
      while (this.queue.length > 0) {
        if (!final && this.now() < this.retryAt) break;
        const batch = this.queue.splice(0, BATCH);
        let batchBytes = 0;
        const lines: string[] = [];
        for (const record of batch) {
          batchBytes += record.bytes;
          lines.push(`${JSON.stringify(serialize(record))}\n`);
        }
        this.queuedBytes -= batchBytes;
        try {
          await this.writer.writeLines(lines);
          this.written += batch.length;
        } catch (error) {
          this.writeErrors++;
          this.dropped.write_error += batch.length;
          this.retryAt = this.now() + this.config.retryAfterErrorMs;
          this.logWriteError(error, batch.length);
          if (final) {
            this.dropped.write_error += this.queue.length;
            this.queue = [];
            this.queuedBytes = 0;
          }
        }
      }
    })();
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
    if (this.queue.length > 0 && !this.closed) this.schedule(this.config.flushIntervalMs);
  }

  private logWriteError(error: unknown, records: number): void {
    const now = this.now();
    if (now - this.lastErrorLog < this.config.errorLogIntervalMs) {
      this.suppressedErrors++;
      return;
    }
    this.lastErrorLog = now;
    const suppressed = this.suppressedErrors;
    this.suppressedErrors = 0;
    this.logger.error(
      { err: error, directory: this.config.directory, dropped_records: records, suppressed_errors: suppressed, write_errors_total: this.writeErrors },
      `audit log: cannot write to ${this.config.directory} (${(error as Error).message}); records are dropped (logged at most once per ${Math.round(this.config.errorLogIntervalMs / 1000)} s)`,
    );
  }

  private configOf(model: string): AuditModelConfig {
    let config = this.modelConfigs.get(model);
    if (config === undefined) {
      try {
        config = this.options.modelConfig?.(model) ?? this.defaultModelConfig;
      } catch {
        config = this.defaultModelConfig;
      }
      this.modelConfigs.set(model, config);
    }
    return config;
  }

  private on<E>(name: string | symbol, handler: (event: E) => void): void {
    const listener = (message: unknown): void => {
      try {
        handler(message as E);
      } catch (error) {
        // The audit log must never fail a request.
        this.logger.error({ err: error }, 'audit log failed on an event');
      }
    };
    subscribe(name, listener);
    this.subscriptions.push([String(name), listener]);
  }
}

function serialize(record: Queued): AuditRecord {
  return {
    ...record.head,
    inputs: record.inputs === null ? null : record.inputs.map(finishTensor),
    outputs: record.outputs === null ? null : record.outputs.map(finishTensor),
  };
}

/** The trace id of a W3C traceparent, if valid: by tracing's own rules, so the two never disagree on a trace. */
function traceIdOf(traceparent: string | undefined): string | undefined {
  return parseTraceparent(traceparent)?.traceId;
}

function pickConfig(options: AuditLogOptions): AuditLogConfigInput {
  const { modelConfig: _m, logger: _l, now: _n, random: _r, ...config } = options;
  return config;
}

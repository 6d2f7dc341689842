/**
 * Messages between the benchmark (parent) and its child processes: the server under test,
 * the tutorial baseline server and the raw onnxruntime runner. Jobs travel as JSON in argv[2];
 * replies over the IPC channel.
 */
import type { ServerConfigInput } from '../../src/config/server-config.js';

export interface ServerChildJob {
  readonly repository: string;
  /** Server configuration overrides; host and port are forced to 127.0.0.1:0. */
  readonly server: ServerConfigInput;
}

export interface BaselineChildJob {
  readonly modelPath: string;
}

export interface RawChildJob {
  readonly modelPath: string;
  readonly input: string;
  readonly itemShape: readonly number[];
  readonly batchSizes: readonly number[];
  readonly intraOpNumThreads: number;
  readonly interOpNumThreads: number;
  readonly allowSpinning: boolean;
  /**
   * Sessions run side by side, each in its own worker thread with `intraOpNumThreads` threads
   * (default 1: one session, on the child's main thread).
   */
  readonly sessions?: number;
  /** Measured time per batch size (after warm-up runs). */
  readonly durationMs: number;
  readonly warmupRuns: number;
  /** Bounds on measured runs per batch size. */
  readonly minRuns: number;
  readonly maxRuns: number;
  /** Before each batch size, wait (at most quietMaxWaitMs) for other processes to use less than this much CPU. */
  readonly quietThresholdPct: number;
  readonly quietMaxWaitMs: number;
}

export interface RawBatchResult {
  /** Items per run of each session. */
  readonly batchSize: number;
  /** Sessions run side by side (their runs and items added up). */
  readonly sessions: number;
  /** Intra-op threads of each session. */
  readonly intraOpThreads: number;
  /** Runs of all sessions; the run-time figures are over all of them. */
  readonly runs: number;
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly itemsPerSecond: number;
  /** Process CPU (all threads) over the measured runs, percent of one core. */
  readonly cpuPct: number;
  /** CPU used by other processes on the machine meanwhile, percent of one core. */
  readonly foreignPct: number;
}

export type ChildMessage =
  | {
      readonly kind: 'ready';
      /** HTTP port. */
      readonly port: number;
      /** gRPC port of the Tessera server child (absent for the tutorial baseline, or when gRPC is off). */
      readonly grpcPort?: number;
      readonly startMs: number;
    }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'raw-result'; readonly results: readonly RawBatchResult[] }
  /** The server child's memory right after two full garbage collections (answer to 'collect'). */
  | { readonly kind: 'collected'; readonly rss: number; readonly heapUsed: number; readonly external: number };

/** `stop`: shut down gracefully. `collect`: run full garbage collections and report memory ('collected'). */
export type ParentMessage = { readonly kind: 'stop' } | { readonly kind: 'collect' };

export function isChildMessage(value: unknown): value is ChildMessage {
  if (typeof value !== 'object' || value === null) return false;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'ready' || kind === 'failed' || kind === 'raw-result' || kind === 'collected';
}

export function isParentMessage(value: unknown): value is ParentMessage {
  const kind = typeof value === 'object' && value !== null ? (value as { kind?: unknown }).kind : undefined;
  return kind === 'stop' || kind === 'collect';
}

/** The job a child was started with (argv[2]), parsed; the caller checks the fields it needs. */
export function readJob<T extends object>(requiredKeys: readonly (keyof T & string)[]): T {
  const text = process.argv[2];
  if (text === undefined) throw new Error('missing job argument');
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null) throw new Error('the job must be a JSON object');
  for (const key of requiredKeys) if (!(key in parsed)) throw new Error(`the job lacks '${key}'`);
  return parsed as T;
}

/** Send a message to the parent (no-op without an IPC channel). */
export function toParent(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

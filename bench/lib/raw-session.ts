/**
 * One raw onnxruntime-node session of the raw baseline (raw-child.ts): created with the
 * options the parent passes, fed one fixed batch per batch size, and run back to back until a
 * wall-clock end. Used on raw-child's main thread when the baseline has one session, and in
 * each worker (raw-session-worker.ts) when it has several.
 */
import * as ort from 'onnxruntime-node';
import { seededRandom } from './payloads.js';

export interface RawSessionOptions {
  readonly modelPath: string;
  readonly input: string;
  readonly itemShape: readonly number[];
  readonly intraOpNumThreads: number;
  readonly interOpNumThreads: number;
  readonly allowSpinning: boolean;
  readonly warmupRuns: number;
}

/** When to stop: at `endEpochMs` (Date-based, comparable across threads), within the run bounds. */
export interface RawRunLimits {
  readonly endEpochMs: number;
  readonly minRuns: number;
  readonly maxRuns: number;
}

/** What raw-child.ts asks a session worker (raw-session-worker.ts), one request at a time. */
export type RawWorkerRequest =
  | { readonly kind: 'prepare'; readonly batchSize: number }
  | { readonly kind: 'run'; readonly limits: RawRunLimits }
  | { readonly kind: 'release' };

/** The worker's answers: `ready` once its session exists, then one per request. */
export type RawWorkerReply =
  | { readonly kind: 'ready' }
  | { readonly kind: 'prepared' }
  | { readonly kind: 'ran'; readonly times: number[] }
  | { readonly kind: 'released' };

export class RawSession {
  private feeds: Record<string, ort.Tensor> = {};

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly options: RawSessionOptions,
  ) {}

  static async create(options: RawSessionOptions): Promise<RawSession> {
    const spinning = options.allowSpinning ? '1' : '0';
    const session = await ort.InferenceSession.create(options.modelPath, {
      intraOpNumThreads: options.intraOpNumThreads,
      interOpNumThreads: options.interOpNumThreads,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      enableCpuMemArena: true,
      executionProviders: ['cpu'],
      extra: { session: { intra_op: { allow_spinning: spinning }, inter_op: { allow_spinning: spinning } } },
    });
    return new RawSession(session, options);
  }

  /** Build the batch of `batchSize` items (seeded values in [-1, 1)) and run the warm-up runs. */
  async prepare(batchSize: number): Promise<void> {
    const itemSize = this.options.itemShape.reduce((a, b) => a * b, 1);
    const random = seededRandom(7);
    const data = new Float32Array(batchSize * itemSize);
    for (let i = 0; i < data.length; i++) data[i] = random() * 2 - 1;
    this.feeds = { [this.options.input]: new ort.Tensor('float32', data, [batchSize, ...this.options.itemShape]) };
    for (let i = 0; i < this.options.warmupRuns; i++) await this.session.run(this.feeds);
  }

  /** Run the prepared batch back to back; the time of each run, in ms. */
  async runUntil(limits: RawRunLimits): Promise<number[]> {
    const times: number[] = [];
    const endAt = performance.now() + (limits.endEpochMs - Date.now());
    while (times.length < limits.maxRuns && (times.length < limits.minRuns || performance.now() < endAt)) {
      const t0 = performance.now();
      await this.session.run(this.feeds);
      times.push(performance.now() - t0);
    }
    return times;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/**
 * The raw onnxruntime-node baseline, in its own process so nothing else shares its event
 * loop: `session.run` back to back at each batch size of the job (argv[2], JSON), reported
 * over IPC. One session runs on the main thread; with `sessions` > 1, each session runs in a
 * worker thread of its own (raw-session-worker.ts), all started together and stopped at the
 * same wall-clock time, their items added up: the layout of a server with that many model
 * instances. Session options are passed by the parent (the server's defaults from
 * src/backends/onnx/settings.ts, mapped as session-worker.ts maps them).
 */
import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '../src/backends/onnx/spawn.js';
import { readJob, toParent, type RawBatchResult, type RawChildJob } from './lib/ipc.js';
import { machineBusySeconds, waitForQuiet } from './lib/machine.js';
import { RawSession, type RawRunLimits, type RawSessionOptions, type RawWorkerReply, type RawWorkerRequest } from './lib/raw-session.js';

/** One session of the baseline, wherever it runs. */
interface Runner {
  prepare(batchSize: number): Promise<void>;
  runUntil(limits: RawRunLimits): Promise<number[]>;
  release(): Promise<void>;
}

/** A session in a worker thread: one request at a time, each answered by the worker's next reply. */
class WorkerRunner implements Runner {
  /** Replies that came before anyone waited (the worker's `ready`). */
  private readonly early: RawWorkerReply[] = [];
  private pending: { readonly resolve: (reply: RawWorkerReply) => void; readonly reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (reply: RawWorkerReply) => {
      const pending = this.pending;
      this.pending = undefined;
      if (pending === undefined) this.early.push(reply);
      else pending.resolve(reply);
    });
    worker.on('error', (error: Error) => this.fail(error));
    worker.on('exit', (code) => this.fail(new Error(`a raw session worker exited (code ${code})`)));
  }

  static async start(options: RawSessionOptions): Promise<WorkerRunner> {
    const runner = new WorkerRunner(spawnModuleWorker(new URL('./raw-session-worker.ts', import.meta.url), options));
    await runner.next('ready');
    return runner;
  }

  async prepare(batchSize: number): Promise<void> {
    await this.ask({ kind: 'prepare', batchSize }, 'prepared');
  }

  async runUntil(limits: RawRunLimits): Promise<number[]> {
    const reply = await this.ask({ kind: 'run', limits }, 'ran');
    return reply.kind === 'ran' ? reply.times : [];
  }

  async release(): Promise<void> {
    await this.ask({ kind: 'release' }, 'released');
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }

  private ask(request: RawWorkerRequest, expected: RawWorkerReply['kind']): Promise<RawWorkerReply> {
    this.worker.postMessage(request);
    return this.next(expected);
  }

  private async next(expected: RawWorkerReply['kind']): Promise<RawWorkerReply> {
    const reply =
      this.early.shift() ??
      (await new Promise<RawWorkerReply>((resolve, reject) => {
        if (this.failure !== undefined) reject(this.failure);
        else this.pending = { resolve, reject };
      }));
    if (reply.kind !== expected) throw new Error(`a raw session worker answered '${reply.kind}', expected '${expected}'`);
    return reply;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(this.failure);
  }
}

const job = readJob<RawChildJob>(['modelPath', 'input', 'itemShape', 'batchSizes', 'intraOpNumThreads', 'allowSpinning', 'durationMs']);
const sessions = job.sessions ?? 1;
const options: RawSessionOptions = {
  modelPath: job.modelPath,
  input: job.input,
  itemShape: job.itemShape,
  intraOpNumThreads: job.intraOpNumThreads,
  interOpNumThreads: job.interOpNumThreads,
  allowSpinning: job.allowSpinning,
  warmupRuns: job.warmupRuns,
};
const runners: Runner[] = sessions === 1 ? [await RawSession.create(options)] : await Promise.all(Array.from({ length: sessions }, () => WorkerRunner.start(options)));

const results: RawBatchResult[] = [];
for (const batchSize of job.batchSizes) {
  await Promise.all(runners.map((runner) => runner.prepare(batchSize)));
  await waitForQuiet([], job.quietThresholdPct, job.quietMaxWaitMs);
  const cpu = process.cpuUsage();
  const busy = machineBusySeconds();
  const start = performance.now();
  const limits: RawRunLimits = { endEpochMs: Date.now() + job.durationMs, minRuns: job.minRuns, maxRuns: Math.ceil(job.maxRuns / sessions) };
  const perSession = await Promise.all(runners.map((runner) => runner.runUntil(limits)));
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const ownSeconds = (used.user + used.system) / 1e6;
  const foreignSeconds = Math.max(0, machineBusySeconds() - busy - ownSeconds);
  const times = perSession.flat().sort((a, b) => a - b);
  const at = (q: number): number => times[Math.min(times.length - 1, Math.max(0, Math.ceil(q * times.length) - 1))]!;
  results.push({
    batchSize,
    sessions,
    intraOpThreads: job.intraOpNumThreads,
    runs: times.length,
    medianMs: at(0.5),
    p99Ms: at(0.99),
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
    itemsPerSecond: (times.length * batchSize) / (elapsed / 1000),
    cpuPct: (100 * ownSeconds * 1000) / elapsed,
    foreignPct: (100 * foreignSeconds * 1000) / elapsed,
  });
}
await Promise.all(runners.map((runner) => runner.release()));
await toParent({ kind: 'raw-result', results });
process.exit(0);

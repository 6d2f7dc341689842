/**
 * One benchmark cell: a running server (Tessera or the tutorial baseline), one model, one
 * concurrency. Wraps the closed-loop generator with what the server reports about itself:
 * CPU (whole process and main thread, from /proc), RSS sampled every second, the V2
 * statistics delta over the measurement window (mean executed batch size, queue time,
 * compute time per batch) and the CPU used meanwhile by processes outside the benchmark.
 */
import { request } from 'undici';
import type { ModelStatisticsEntry } from '../../src/engine/engine.js';
import type { ServerProcess } from './children.js';
import { closedLoop, type ClosedLoopResult, type ClosedLoopTiming } from './loadgen.js';
import { foreignPct, sampleLoad, waitForQuiet, type LoadSample } from './machine.js';
import type { BenchModel } from './models.js';
import { cpuBetween, readRssBytes, sampleCpu, type CpuSample, type CpuUse } from './proc.js';

export interface Timing {
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Wait for a quiet machine before each cell: threshold (percent of one core) and bound. */
  readonly quietThresholdPct: number;
  readonly quietMaxWaitMs: number;
  /** Re-run a cell once when foreign CPU during it exceeded this (percent of one core). */
  readonly retryForeignPct: number;
  /** Re-runs left for the whole benchmark run (shared, decremented), to bound its duration. */
  readonly retries: { remaining: number };
}

/** What the V2 statistics say happened in the window. */
export interface BatchFigures {
  readonly executions: number;
  readonly inferences: number;
  readonly meanBatch: number;
  /** Executions per batch size in the window. */
  readonly histogram: Readonly<Record<string, number>>;
  readonly meanQueueMs: number;
  /** Per executed batch: input assembly + transfer, inference (incl. worker round trip), output split. */
  readonly inputMsPerBatch: number;
  readonly inferMsPerBatch: number;
  readonly outputMsPerBatch: number;
  /** Mean server-side request time (queue + compute), ms. */
  readonly meanRequestMs: number;
}

export interface CellResult extends ClosedLoopResult {
  readonly model: string;
  readonly server: string;
  readonly concurrency: number;
  readonly itemsPerSecond: number;
  readonly serverCpu: CpuUse;
  /** Server main-thread CPU per answered request, ms. */
  readonly mainCpuMsPerRequest: number;
  readonly serverRssBytes: number;
  readonly serverRssMaxBytes: number;
  readonly batch: BatchFigures | undefined;
  readonly foreignCpuPct: number;
  readonly quietWaitMs: number;
  readonly attempts: number;
}

type StatsBody = { model_stats: ModelStatisticsEntry[] };

export async function fetchStats(origin: string, model: string): Promise<ModelStatisticsEntry | undefined> {
  let problem = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const response = await request(`${origin}/v2/models/${model}/stats`, { headersTimeout: 15_000, bodyTimeout: 15_000 });
      if (response.statusCode === 200) {
        const body = (await response.body.json()) as StatsBody;
        return body.model_stats[0];
      }
      problem = `status ${response.statusCode}: ${(await response.body.text()).slice(0, 200)}`;
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
  }
  console.error(`  (statistics of ${model} unavailable: ${problem})`);
  return undefined;
}

function answered(stats: ModelStatisticsEntry): number {
  return stats.inference_stats.success.count + stats.inference_stats.fail.count;
}

/**
 * Wait until the server has stopped answering requests of `model`: the success + fail counts
 * stay the same over three polls 150 ms apart. Bounded by `maxMs`. Servers without the V2
 * statistics (the tutorial baseline) get a short quiet period instead.
 */
export async function waitForIdle(origin: string, model: string | undefined, maxMs = 30_000): Promise<void> {
  if (model === undefined) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return;
  }
  const start = performance.now();
  let last = -1;
  let stable = 0;
  while (performance.now() - start < maxMs && stable < 3) {
    const stats = await fetchStats(origin, model);
    const count = stats === undefined ? -1 : answered(stats);
    stable = count === last ? stable + 1 : 0;
    last = count;
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

export function batchFigures(before: ModelStatisticsEntry, after: ModelStatisticsEntry): BatchFigures {
  const executions = after.execution_count - before.execution_count;
  const inferences = after.inference_count - before.inference_count;
  const histogram: Record<string, number> = {};
  let inputNs = 0;
  let inferNs = 0;
  let outputNs = 0;
  for (const entry of after.batch_stats) {
    const prior = before.batch_stats.find((b) => b.batch_size === entry.batch_size);
    const count = entry.compute_infer.count - (prior?.compute_infer.count ?? 0);
    if (count > 0) histogram[String(entry.batch_size)] = count;
    inputNs += entry.compute_input.ns - (prior?.compute_input.ns ?? 0);
    inferNs += entry.compute_infer.ns - (prior?.compute_infer.ns ?? 0);
    outputNs += entry.compute_output.ns - (prior?.compute_output.ns ?? 0);
  }
  const a = before.inference_stats;
  const b = after.inference_stats;
  const successes = b.success.count - a.success.count;
  return {
    executions,
    inferences,
    meanBatch: executions > 0 ? inferences / executions : Number.NaN,
    histogram,
    meanQueueMs: successes > 0 ? (b.queue.ns - a.queue.ns) / successes / 1e6 : Number.NaN,
    inputMsPerBatch: executions > 0 ? inputNs / executions / 1e6 : Number.NaN,
    inferMsPerBatch: executions > 0 ? inferNs / executions / 1e6 : Number.NaN,
    outputMsPerBatch: executions > 0 ? outputNs / executions / 1e6 : Number.NaN,
    meanRequestMs: successes > 0 ? (b.success.ns - a.success.ns) / successes / 1e6 : Number.NaN,
  };
}

export interface CellOptions {
  readonly server: ServerProcess;
  readonly serverLabel: string;
  readonly model: BenchModel;
  /** Whether the server has the V2 statistics endpoint (Tessera does, the tutorial baseline not). */
  readonly hasStats: boolean;
  readonly bodies: readonly Buffer[];
  readonly headers?: Readonly<Record<string, string>>;
  readonly concurrency: number;
  readonly timing: Timing;
  readonly requestTimeoutMs?: number;
  /** Rows per request (items/s = requests/s x rows). */
  readonly rows?: number;
  /**
   * Drive the server some other way than V2 HTTP POSTs of `bodies` (e.g. gRPC, grpc-loadgen.ts):
   * a closed loop with the cell's concurrency, timing and window hooks.
   */
  readonly drive?: (loop: ClosedLoopTiming) => Promise<ClosedLoopResult>;
}

async function runOnce(options: CellOptions, quietWaitMs: number, attempts: number): Promise<CellResult> {
  const { server, model, timing } = options;
  const statsModel = options.hasStats ? model.name : undefined;
  let statsBefore: ModelStatisticsEntry | undefined;
  let statsAfter: ModelStatisticsEntry | undefined;
  let cpuBefore: CpuSample | undefined;
  let cpuAfter: CpuSample | undefined;
  let loadBefore: LoadSample | undefined;
  let loadAfter: LoadSample | undefined;
  let rssMax = 0;
  const rssTimer = setInterval(() => {
    rssMax = Math.max(rssMax, readRssBytes(server.pid) || 0);
  }, 1_000);
  let loop: ClosedLoopResult;
  const loopTiming: ClosedLoopTiming = {
    concurrency: options.concurrency,
    warmupMs: timing.warmupMs,
    durationMs: timing.durationMs,
    maxRequests: 5_000_000,
    requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
    onWindowStart: async () => {
      cpuBefore = sampleCpu(server.pid);
      loadBefore = sampleLoad([server.pid]);
      if (statsModel !== undefined) statsBefore = await fetchStats(server.origin, statsModel);
    },
    onWindowEnd: async () => {
      cpuAfter = sampleCpu(server.pid);
      loadAfter = sampleLoad([server.pid]);
      if (statsModel !== undefined) statsAfter = await fetchStats(server.origin, statsModel);
    },
  };
  try {
    loop =
      options.drive !== undefined
        ? await options.drive(loopTiming)
        : await closedLoop({
            ...loopTiming,
            origin: server.origin,
            path: `/v2/models/${model.name}/infer`,
            bodies: options.bodies,
            ...(options.headers === undefined ? {} : { headers: options.headers }),
          });
  } finally {
    clearInterval(rssTimer);
  }
  const rss = readRssBytes(server.pid);
  await waitForIdle(server.origin, statsModel);
  const serverCpu =
    cpuBefore !== undefined && cpuAfter !== undefined
      ? cpuBetween(cpuBefore, cpuAfter)
      : { totalPct: Number.NaN, mainPct: Number.NaN, otherPct: Number.NaN, mainSeconds: Number.NaN, totalSeconds: Number.NaN };
  const answeredInWindow = loop.ok + loop.errors;
  return {
    ...loop,
    model: model.key,
    server: options.serverLabel,
    concurrency: options.concurrency,
    itemsPerSecond: loop.requestsPerSecond * (options.rows ?? 1),
    serverCpu,
    mainCpuMsPerRequest: answeredInWindow > 0 ? (serverCpu.mainSeconds * 1000) / answeredInWindow : Number.NaN,
    serverRssBytes: rss,
    serverRssMaxBytes: Math.max(rssMax, rss || 0),
    batch: statsBefore !== undefined && statsAfter !== undefined ? batchFigures(statsBefore, statsAfter) : undefined,
    foreignCpuPct: loadBefore !== undefined && loadAfter !== undefined ? foreignPct(loadBefore, loadAfter) : Number.NaN,
    quietWaitMs,
    attempts,
  };
}

/**
 * Run one cell: wait for a quiet machine (bounded), run, and if other processes used more
 * than `retryForeignPct` of a core meanwhile, run once more and keep the quieter attempt.
 */
export async function runCell(options: CellOptions): Promise<CellResult> {
  const { timing, server } = options;
  const first = await waitForQuiet([server.pid], timing.quietThresholdPct, timing.quietMaxWaitMs);
  const result = await runOnce(options, first.waitedMs, 1);
  if (!(result.foreignCpuPct > timing.retryForeignPct) || timing.retries.remaining <= 0) return result;
  timing.retries.remaining--;
  const second = await waitForQuiet([server.pid], timing.quietThresholdPct, timing.quietMaxWaitMs);
  const retry = await runOnce(options, first.waitedMs + second.waitedMs, 2);
  return retry.foreignCpuPct < result.foreignCpuPct ? retry : { ...result, attempts: 2 };
}

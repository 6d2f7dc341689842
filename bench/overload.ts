/**
 * The overload cell: a model with a fixed cost per batch (the `slowModel` test fixture: the
 * same work whatever the batch size), max_batch_size 8 and a small queue (max_queue_size 32).
 * First the server's capacity is measured (closed loop that keeps full batches queued), then
 * an open-loop generator offers 4x that rate for 60 s (10 s with --quick). Reports how fast
 * the refusals (503 QUEUE_FULL) come back, whether they carry Retry-After, what the accepted
 * requests see, and the server's RSS sampled every second (first, max, last: it should stay
 * flat; a queue that is really bounded holds memory constant under any overload).
 *
 * Run alone: node --import tsx bench/overload.ts [--quick] [--log-level silent] [--intra N] [--tsx];
 * `npm run bench` runs it too (server defaults: log level info, intra-op threads = cores).
 */
import './lib/onnxruntime-env.js';
import { pathToFileURL } from 'node:url';
import { buildServerScripts } from './lib/build.js';
import { startServerProcess, useCompiledServers } from './lib/children.js';
import { closedLoop, openLoop } from './lib/loadgen.js';
import { foreignPct, sampleLoad, waitForQuiet } from './lib/machine.js';
import { prepareModels, type ModelFiles } from './lib/models.js';
import { cpuBetween, readRssBytes, sampleCpu, type CpuUse } from './lib/proc.js';
import { batchFigures, fetchStats } from './lib/cells.js';
import { mb, ms, summarize, type LatencySummary } from './lib/stats.js';

export const OVERLOAD = {
  /** Nominal cost of one batch of the fixed-cost model, ms (actual cost is measured). */
  batchMs: 40,
  maxBatchSize: 8,
  maxQueueSize: 32,
  overloadFactor: 4,
  connections: 256,
  maxInFlight: 2048,
} as const;

export interface OverloadResult {
  readonly capacityRps: number;
  readonly batchMs: number;
  readonly offeredRps: number;
  readonly seconds: number;
  readonly sent: number;
  readonly skipped: number;
  readonly statusCounts: Readonly<Record<string, number>>;
  readonly goodputRps: number;
  readonly rejected: LatencySummary;
  readonly accepted: LatencySummary;
  readonly retryAfter: { readonly present: number; readonly absent: number; readonly values: readonly string[] };
  readonly rssSeries: readonly number[];
  readonly rssIdle: number;
  readonly rssFirst: number;
  /** Highest samples of the first and second half: flat when the second is within 5% + 5 MB of the first. */
  readonly rssPeakFirstHalf: number;
  readonly rssPeakSecondHalf: number;
  readonly rssMax: number;
  readonly rssLast: number;
  readonly rssFlat: boolean;
  /** Memory after full garbage collections, idle before the load and right after it. */
  readonly heldBefore: { readonly rss: number; readonly heapUsed: number; readonly external: number };
  readonly heldAfter: { readonly rss: number; readonly heapUsed: number; readonly external: number };
  readonly serverCpu: CpuUse;
  readonly generatorCpuPct: number;
  readonly sendLagP99: number;
  readonly clientQueuedMax: number;
  readonly foreignCpuPct: number;
  readonly meanBatch: number;
  /** Server main-thread CPU per answer (any status) during the overload, ms. */
  readonly mainCpuMsPerAnswer: number;
  readonly connectionsOpened: number;
}

export interface OverloadOptions {
  readonly quick: boolean;
  readonly log: (line: string) => void;
  /** parameters.intra_op_thread_count of the model (default: the server's default). */
  readonly intraOpThreads?: number;
  /** Server log level (default: the server's default, info). */
  readonly logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export async function runOverload(files: ModelFiles, options: OverloadOptions): Promise<OverloadResult> {
  const { log } = options;
  const file = await files.slowModelFile(OVERLOAD.batchMs);
  const repository = await files.repository('slow', file, {
    max_batch_size: OVERLOAD.maxBatchSize,
    dynamic_batching: { max_queue_delay_microseconds: 0, default_queue_policy: { max_queue_size: OVERLOAD.maxQueueSize } },
    warmup: { batch_sizes: [1, OVERLOAD.maxBatchSize], iterations: 2 },
    ...(options.intraOpThreads === undefined ? {} : { parameters: { intra_op_thread_count: options.intraOpThreads } }),
  });
  const server = await startServerProcess('server-child.ts', { repository, server: options.logLevel === undefined ? {} : { logLevel: options.logLevel } });
  try {
    const body = [Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4] }] }))];
    const path = '/v2/models/slow/infer';
    await waitForQuiet([server.pid], 15, 20_000);
    // Capacity: twice max_batch_size workers keep one full batch queued behind the running one.
    const capacity = await closedLoop({
      origin: server.origin,
      path,
      bodies: body,
      concurrency: OVERLOAD.maxBatchSize * 2,
      warmupMs: options.quick ? 1_000 : 2_000,
      durationMs: options.quick ? 3_000 : 6_000,
      maxRequests: 200_000,
      requestTimeoutMs: 30_000,
    });
    const capacityRps = capacity.requestsPerSecond;
    const stats0 = await fetchStats(server.origin, 'slow');
    const offeredRps = capacityRps * OVERLOAD.overloadFactor;
    const durationMs = options.quick ? 10_000 : 60_000;
    log(`  overload: capacity ${capacityRps.toFixed(0)} req/s; offering ${offeredRps.toFixed(0)} req/s for ${durationMs / 1000} s`);
    await waitForQuiet([server.pid], 15, 20_000);
    // What the server holds, after full collections, warmed up but idle: the reference for after.
    const heldBefore = await server.collect();
    const rssIdle = readRssBytes(server.pid);
    const rssSeries: number[] = [];
    const cpuBefore = sampleCpu(server.pid);
    const loadBefore = sampleLoad([server.pid]);
    const run = await openLoop({
      origin: server.origin,
      path,
      bodies: body,
      ratePerSecond: offeredRps,
      durationMs,
      connections: OVERLOAD.connections,
      maxInFlight: OVERLOAD.maxInFlight,
      requestTimeoutMs: 30_000,
      everySecond: () => rssSeries.push(readRssBytes(server.pid)),
    });
    const cpuAfter = sampleCpu(server.pid);
    const loadAfter = sampleLoad([server.pid]);
    const stats1 = await fetchStats(server.origin, 'slow');
    const heldAfter = await server.collect();
    const statusCounts: Record<string, number> = {};
    for (const [status, list] of run.byStatus) statusCounts[status] = list.length;
    const rejected = summarize([...(run.byStatus.get('503') ?? []), ...(run.byStatus.get('429') ?? [])]);
    const accepted = summarize(run.byStatus.get('200') ?? []);
    const rssFirst = rssSeries[0] ?? Number.NaN;
    const rssLast = rssSeries[rssSeries.length - 1] ?? Number.NaN;
    // Flatness is judged on peaks, not single samples: V8's heap grows in a sawtooth until a
    // major GC (tens of MB, tens of seconds), so a sample's phase says little. A leak shows as
    // peaks that climb: compare the second half's highest sample with the first half's.
    const half = Math.max(1, Math.floor(rssSeries.length / 2));
    const rssPeakFirstHalf = Math.max(...rssSeries.slice(0, half));
    const rssPeakSecondHalf = Math.max(...rssSeries.slice(half));
    const rssMax = Math.max(...rssSeries);
    const batch = stats0 !== undefined && stats1 !== undefined ? batchFigures(stats0, stats1) : undefined;
    const batchMs = batch?.inferMsPerBatch ?? Number.NaN;
    const meanBatch = batch?.meanBatch ?? Number.NaN;
    return {
      capacityRps,
      batchMs,
      offeredRps,
      seconds: run.seconds,
      sent: run.sent,
      skipped: run.skipped,
      statusCounts,
      goodputRps: accepted.count / run.seconds,
      rejected,
      accepted,
      retryAfter: run.retryAfter,
      rssSeries,
      rssIdle,
      rssFirst,
      rssMax,
      rssLast,
      // Flat: what the server holds after full collections is what it held before the load.
      // The sampled series also shows V8 deferring its major collections (peaks alone may climb
      // for a minute when refusals allocate little: garbage, not growth).
      rssFlat: heldAfter.rss <= heldBefore.rss * 1.05 + 5 * 2 ** 20,
      heldBefore,
      heldAfter,
      rssPeakFirstHalf,
      rssPeakSecondHalf,
      serverCpu: cpuBetween(cpuBefore, cpuAfter),
      generatorCpuPct: run.generatorCpuPct,
      sendLagP99: run.sendLagP99,
      clientQueuedMax: run.clientQueuedMax,
      foreignCpuPct: foreignPct(loadBefore, loadAfter),
      meanBatch,
      connectionsOpened: run.connectionsOpened,
      mainCpuMsPerAnswer: (cpuBetween(cpuBefore, cpuAfter).mainSeconds * 1000) / Math.max(1, run.sent),
    };
  } finally {
    await server.stop();
  }
}

export function describeOverload(r: OverloadResult): string[] {
  const statuses = Object.entries(r.statusCounts)
    .map(([status, count]) => `${status}: ${count}`)
    .join(', ');
  return [
    `capacity ${r.capacityRps.toFixed(0)} req/s (mean batch ${r.meanBatch.toFixed(1)}, ${ms(r.batchMs)} ms per batch); offered ${r.offeredRps.toFixed(0)} req/s for ${r.seconds.toFixed(0)} s; sent ${r.sent}, skipped ${r.skipped} (generator in-flight cap)`,
    `answers: ${statuses}; goodput ${r.goodputRps.toFixed(0)} req/s`,
    `503 latency ms: p50 ${ms(r.rejected.p50)}  p95 ${ms(r.rejected.p95)}  p99 ${ms(r.rejected.p99)}  max ${ms(r.rejected.max)}  (n=${r.rejected.count})`,
    `200 latency ms: p50 ${ms(r.accepted.p50)}  p95 ${ms(r.accepted.p95)}  p99 ${ms(r.accepted.p99)}  max ${ms(r.accepted.max)}  (n=${r.accepted.count})`,
    `Retry-After: on ${r.retryAfter.present} of ${r.retryAfter.present + r.retryAfter.absent} refusals (values: ${r.retryAfter.values.join(', ') || 'none'})`,
    `server RSS MB: idle ${mb(r.rssIdle)}, first ${mb(r.rssFirst)}, max ${mb(r.rssMax)}, last ${mb(r.rssLast)}; peak of the first half ${mb(r.rssPeakFirstHalf)}, of the second half ${mb(r.rssPeakSecondHalf)}`,
    `held after full GCs, before -> after the load: RSS ${mb(r.heldBefore.rss)} -> ${mb(r.heldAfter.rss)} MB, JS heap ${mb(r.heldBefore.heapUsed)} -> ${mb(r.heldAfter.heapUsed)} MB, external ${mb(r.heldBefore.external)} -> ${mb(r.heldAfter.external)} MB -> ${r.rssFlat ? 'flat' : 'NOT flat'} (flat: RSS after within 5% + 5 MB of before)`,
    `server CPU ${r.serverCpu.totalPct.toFixed(0)}% (main thread ${r.serverCpu.mainPct.toFixed(0)}%, ${r.mainCpuMsPerAnswer.toFixed(3)} ms per answer), generator CPU ${r.generatorCpuPct.toFixed(0)}%, send lag p99 ${ms(r.sendLagP99)} ms, client queue max ${r.clientQueuedMax}, connections opened ${r.connectionsOpened}, foreign CPU ${r.foreignCpuPct.toFixed(0)}%`,
  ];
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const levelAt = process.argv.indexOf('--log-level');
  const level = levelAt > 0 ? process.argv[levelAt + 1] : undefined;
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
  const logLevel = levels.find((candidate) => candidate === level);
  if (level !== undefined && logLevel === undefined) throw new Error(`--log-level: one of ${levels.join(', ')}`);
  const intraAt = process.argv.indexOf('--intra');
  const intra = intraAt > 0 ? Number(process.argv[intraAt + 1]) : undefined;
  if (intra !== undefined && !(Number.isInteger(intra) && intra >= 1)) throw new Error('--intra: a positive integer');
  if (!process.argv.includes('--tsx')) useCompiledServers(await buildServerScripts());
  const files = await prepareModels([]);
  try {
    const result = await runOverload(files, { quick, log: (line) => console.log(line), ...(logLevel === undefined ? {} : { logLevel }), ...(intra === undefined ? {} : { intraOpThreads: intra }) });
    for (const line of describeOverload(result)) console.log(`  ${line}`);
  } finally {
    await files.cleanup();
  }
}

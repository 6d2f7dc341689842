/**
 * The raw onnxruntime-node baseline, in its own process so nothing else shares its event
 * loop: one InferenceSession, `session.run` back to back at each batch size of the job
 * (argv[2], JSON), reported over IPC. Session options are passed by the parent (the server's
 * defaults from src/backends/onnx/settings.ts, mapped as session-worker.ts maps them).
 */
import * as ort from 'onnxruntime-node';
import { readJob, toParent, type RawBatchResult, type RawChildJob } from './lib/ipc.js';
import { machineBusySeconds, waitForQuiet } from './lib/machine.js';
import { seededRandom } from './lib/payloads.js';

const job = readJob<RawChildJob>(['modelPath', 'input', 'itemShape', 'batchSizes', 'intraOpNumThreads', 'allowSpinning', 'durationMs']);
const spinning = job.allowSpinning ? '1' : '0';
const session = await ort.InferenceSession.create(job.modelPath, {
  intraOpNumThreads: job.intraOpNumThreads,
  interOpNumThreads: job.interOpNumThreads,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
  enableCpuMemArena: true,
  executionProviders: ['cpu'],
  extra: { session: { intra_op: { allow_spinning: spinning }, inter_op: { allow_spinning: spinning } } },
});

const itemSize = job.itemShape.reduce((a, b) => a * b, 1);
const random = seededRandom(7);
const results: RawBatchResult[] = [];
for (const batchSize of job.batchSizes) {
  const data = new Float32Array(batchSize * itemSize);
  for (let i = 0; i < data.length; i++) data[i] = random() * 2 - 1;
  const feeds = { [job.input]: new ort.Tensor('float32', data, [batchSize, ...job.itemShape]) };
  await waitForQuiet([], job.quietThresholdPct, job.quietMaxWaitMs);
  for (let i = 0; i < job.warmupRuns; i++) await session.run(feeds);
  const times: number[] = [];
  const cpu = process.cpuUsage();
  const busy = machineBusySeconds();
  const start = performance.now();
  const deadline = start + job.durationMs;
  while (times.length < job.maxRuns && (times.length < job.minRuns || performance.now() < deadline)) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const ownSeconds = (used.user + used.system) / 1e6;
  const foreignSeconds = Math.max(0, machineBusySeconds() - busy - ownSeconds);
  times.sort((a, b) => a - b);
  const at = (q: number): number => times[Math.min(times.length - 1, Math.max(0, Math.ceil(q * times.length) - 1))]!;
  results.push({
    batchSize,
    runs: times.length,
    medianMs: at(0.5),
    p99Ms: at(0.99),
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
    itemsPerSecond: (times.length * batchSize) / (elapsed / 1000),
    cpuPct: (100 * ownSeconds * 1000) / elapsed,
    foreignPct: (100 * foreignSeconds * 1000) / elapsed,
  });
}
await session.release();
await toParent({ kind: 'raw-result', results });
process.exit(0);

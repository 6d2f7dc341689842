/**
 * One instance on every core against the default instances (two, each on half the cores),
 * side by side: two Tessera servers on the same model, driven in turn by the same closed loop
 * (A B B A ... so that machine drift falls on both alike), and each layout's mean.
 *
 *   node --import tsx bench/instances.ts [--model resnet|mlp] [--protocol json|binary] [--concurrency N] [--pairs N]
 *
 * Defaults: ResNet, V2 JSON, concurrency 32, 2 pairs of ABBA (8 cells). Not part of `npm run
 * bench`: it decided the default instance count (docs/architecture.md), and is here to check
 * that decision on another machine.
 */
import './lib/onnxruntime-env.js';
import { parseArgs } from 'node:util';
import { runCell, type CellResult } from './lib/cells.js';
import { startServerProcess, type ServerProcess } from './lib/children.js';
import { prepareModels, serverModelConfig, type BenchModelConfig } from './lib/models.js';
import { binaryRequestBodies, requestBodies } from './lib/payloads.js';
import { fmt, ms, rate } from './lib/stats.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'resnet' },
    protocol: { type: 'string', default: 'json' },
    concurrency: { type: 'string', default: '32' },
    pairs: { type: 'string', default: '2' },
  },
});
const key = values.model;
if (key !== 'resnet' && key !== 'mlp') throw new Error('--model: resnet or mlp');
const protocol = values.protocol;
if (protocol !== 'json' && protocol !== 'binary') throw new Error('--protocol: json or binary');
const concurrency = Number(values.concurrency);
const pairs = Number(values.pairs);
if (!Number.isInteger(concurrency) || concurrency < 1 || !Number.isInteger(pairs) || pairs < 1) throw new Error('--concurrency and --pairs: positive integers');

const LAYOUTS: readonly { readonly name: string; readonly extra: BenchModelConfig }[] = [
  { name: 'one instance (threads = cores)', extra: { instance_group: [{ count: 1 }] } },
  { name: 'default instances', extra: {} },
];

const files = await prepareModels([key]);
const model = files.models[key];
const servers: ServerProcess[] = [];
try {
  for (const layout of LAYOUTS) {
    const config = serverModelConfig(model, true, 500, layout.extra);
    servers.push(await startServerProcess('server-child.ts', { repository: await files.repository(model.name, model.file, config), server: {} }));
  }
  const binary = binaryRequestBodies(model, 1, 4, true);
  const load =
    protocol === 'binary'
      ? { bodies: binary.bodies, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(binary.headerLength) } }
      : { bodies: requestBodies(model) };
  const slow = key === 'resnet';
  const timing = { warmupMs: slow ? 3_000 : 2_000, durationMs: slow ? 8_000 : 6_000, quietThresholdPct: 15, quietMaxWaitMs: 3_000, retryForeignPct: 30, retries: { remaining: 2 } };
  console.log(`instances: ${model.title}, V2 ${protocol}, concurrency ${concurrency}, ${pairs} pair(s) of ABBA cells (${timing.warmupMs / 1000} s warm-up + ${timing.durationMs / 1000} s each)`);
  const cells: CellResult[][] = LAYOUTS.map(() => []);
  const order = Array.from({ length: pairs }, () => [0, 1, 1, 0]).flat();
  for (const index of order) {
    const cell = await runCell({ server: servers[index]!, serverLabel: LAYOUTS[index]!.name, model, hasStats: true, concurrency, timing, ...load });
    cells[index]!.push(cell);
    console.log(
      `  ${LAYOUTS[index]!.name.padEnd(31)} ${rate(cell.itemsPerSecond).padStart(6)} items/s  p50 ${ms(cell.latency.p50)}  p99 ${ms(cell.latency.p99)} ms  batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}` +
        `  main ${fmt(cell.mainCpuMsPerRequest, 3)} ms/req  srv CPU ${fmt(cell.serverCpu.totalPct, 0)}%  gen CPU ${fmt(cell.generatorCpuPct, 0)}%  foreign ${fmt(cell.foreignCpuPct, 0)}%`,
    );
  }
  const mean = (list: readonly number[]): number => list.reduce((a, b) => a + b, 0) / list.length;
  const means = cells.map((list) => mean(list.map((c) => c.itemsPerSecond)));
  for (const [i, layout] of LAYOUTS.entries()) {
    const list = cells[i]!;
    console.log(`${layout.name}: mean ${rate(means[i]!)} items/s (${list.map((c) => rate(c.itemsPerSecond)).join(', ')}), p99 ${list.map((c) => ms(c.latency.p99)).join(', ')} ms`);
  }
  console.log(`default / one instance: ${fmt(means[1]! / means[0]!, 3)}`);
} finally {
  for (const server of servers) await server.stop();
  await files.cleanup();
}

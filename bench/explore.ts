/**
 * `npm run bench -- --explore`: which server defaults suit this machine? Each variant is one
 * server configuration (instance count, intra-op threads, spinning, batching delay) applied
 * to every selected model, driven at the concurrencies where the choice matters: the MLP at
 * 1 (latency) and 64 (overhead-bound throughput), ResNet and OCR at 32 (compute-bound).
 * Prints a small table; run.ts writes it to bench/EXPLORE.md.
 */
import './lib/onnxruntime-env.js';
import { runCell, type CellResult, type Timing } from './lib/cells.js';
import { startServerProcess } from './lib/children.js';
import { serverModelConfig, type BenchModel, type BenchModelConfig, type ModelFiles } from './lib/models.js';
import { requestBodies } from './lib/payloads.js';
import { fmt, mb, ms, rate } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface ExploreVariant {
  readonly name: string;
  readonly delayUs: number;
  readonly extra: BenchModelConfig;
}

/** The variants, each differing from the first (the benchmark's batching configuration) in one setting. */
export function exploreVariants(baseDelayUs: number): ExploreVariant[] {
  return [
    { name: `base: 1 instance, intra auto (=cores), no spin, delay ${baseDelayUs}us`, delayUs: baseDelayUs, extra: {} },
    { name: '2 instances (intra auto = 1 each)', delayUs: baseDelayUs, extra: { instance_group: [{ count: 2 }] } },
    { name: '2 instances, intra 2 each', delayUs: baseDelayUs, extra: { instance_group: [{ count: 2 }], parameters: { intra_op_thread_count: 2 } } },
    { name: '1 instance, intra 1', delayUs: baseDelayUs, extra: { parameters: { intra_op_thread_count: 1 } } },
    { name: '1 instance, intra auto, spinning on', delayUs: baseDelayUs, extra: { parameters: { allow_spinning: true } } },
    { name: 'compute threads at the event loop priority (nice 0)', delayUs: baseDelayUs, extra: { parameters: { compute_thread_nice: 0 } } },
    { name: 'delay 0us', delayUs: 0, extra: {} },
    { name: 'delay 500us', delayUs: 500, extra: {} },
    { name: 'delay 2000us', delayUs: 2000, extra: {} },
    { name: 'delay 5000us', delayUs: 5000, extra: {} },
  ];
}

/** Concurrencies explored per model. */
export const EXPLORE_CONCURRENCY: Readonly<Record<string, readonly number[]>> = { mlp: [1, 64], resnet: [32], ocr: [32] };

export interface ExploreRow {
  readonly variant: string;
  readonly cell: CellResult;
}

export async function runExplore(
  files: ModelFiles,
  models: readonly BenchModel[],
  timing: Timing,
  baseDelayUs: number,
  log: (line: string) => void,
): Promise<ExploreRow[]> {
  const rows: ExploreRow[] = [];
  for (const model of models) {
    const bodies = requestBodies(model);
    for (const variant of exploreVariants(baseDelayUs)) {
      // Warm-up limited to the sizes the cells form most, to keep start-up short.
      const config = serverModelConfig(model, true, variant.delayUs, {
        ...variant.extra,
        warmup: { batch_sizes: [1, 2, 4, 8, 16, 32, 64].filter((size) => size <= model.maxBatchSize) },
      });
      const repository = await files.repository(model.name, model.file, config);
      const server = await startServerProcess('server-child.ts', { repository, server: {} });
      try {
        for (const concurrency of EXPLORE_CONCURRENCY[model.key] ?? [32]) {
          const cell = await runCell({ server, serverLabel: variant.name, model, hasStats: true, bodies, concurrency, timing });
          rows.push({ variant: variant.name, cell });
          log(`  explore ${model.key} c${concurrency} [${variant.name}]: ${rate(cell.requestsPerSecond)} req/s, p50 ${ms(cell.latency.p50)} ms, p99 ${ms(cell.latency.p99)} ms, batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}, foreign ${fmt(cell.foreignCpuPct, 0)}%`);
        }
      } finally {
        await server.stop();
      }
    }
  }
  return rows;
}

export function exploreTable(rows: readonly ExploreRow[]): Table {
  return {
    headers: ['model', 'variant', 'conc', 'req/s', 'p50 ms', 'p99 ms', 'mean batch', 'srv CPU %', 'main %', 'RSS MB', 'errors', 'foreign %'],
    rows: rows.map(({ variant, cell }) => [
      cell.model,
      variant,
      String(cell.concurrency),
      rate(cell.requestsPerSecond),
      ms(cell.latency.p50),
      ms(cell.latency.p99),
      fmt(cell.batch?.meanBatch ?? Number.NaN),
      fmt(cell.serverCpu.totalPct, 0),
      fmt(cell.serverCpu.mainPct, 0),
      mb(cell.serverRssBytes),
      String(cell.errors),
      fmt(cell.foreignCpuPct, 0),
    ]),
  };
}

/**
 * What shadow traffic costs the callers: the primary's latency with a 10% shadow share vs no
 * shadow, on the benchmark MLP (64 -> 256 -> 256 -> 10) at concurrency 16, both cells in one run.
 *
 *   node --import tsx bench/shadow-overhead.ts            # 3 rounds x 2 cells, 5 s windows
 *   node --import tsx bench/shadow-overhead.ts --quick    # 1 round, 3 s windows
 *   node --import tsx bench/shadow-overhead.ts --rounds 5 --duration 8 --concurrency 16 --share 0.1
 *
 * Two server processes (bench/server-child.ts), each with the same two versions of the model:
 * version 1 serves; the `shadow` server also replays `--share` of the requests on version 2
 * (max_in_flight 4) and compares the outputs. The cells alternate (off, on, off, on, ...) so
 * drift on a shared machine hits both alike; the verdict compares the medians of the rounds'
 * p50s against the budget (+1 ms) and the exit code says whether it held.
 */
import './lib/onnxruntime-env.js';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mlpBenchModel, mlpModel, seededMlpWeights } from '../test/support/fixtures.js';
import { startServerProcess, type ServerProcess } from './lib/children.js';
import { closedLoop, type ClosedLoopResult } from './lib/loadgen.js';
import { seededRandom } from './lib/payloads.js';
import { fmt, median } from './lib/stats.js';

interface Options {
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly concurrency: number;
  readonly share: number;
  readonly budgetMs: number;
}

function parseArgs(argv: readonly string[]): Options {
  const value = (flag: string, fallback: number): number => {
    const i = argv.indexOf(flag);
    if (i < 0) return fallback;
    const parsed = Number(argv[i + 1]);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${flag} needs a positive number`);
    return parsed;
  };
  const quick = argv.includes('--quick');
  return {
    rounds: value('--rounds', quick ? 1 : 3),
    durationMs: value('--duration', quick ? 3 : 5) * 1000,
    warmupMs: value('--warmup', quick ? 1 : 1.5) * 1000,
    concurrency: value('--concurrency', 16),
    share: value('--share', 0.1),
    budgetMs: value('--budget-ms', 1),
  };
}

type Cell = 'no shadow' | 'shadow';

async function writeRepository(root: string, shadowShare: number | undefined): Promise<string> {
  const repo = await mkdtemp(join(root, 'repo-'));
  const dir = join(repo, 'mlp');
  await mkdir(join(dir, '1'), { recursive: true });
  await mkdir(join(dir, '2'), { recursive: true });
  await writeFile(join(dir, '1', 'model.onnx'), mlpBenchModel());
  await writeFile(join(dir, '2', 'model.onnx'), mlpModel(seededMlpWeights([64, 256, 256, 10], 4321)));
  const config = {
    max_batch_size: 64,
    version_policy: { all: {} },
    routing: { default_version: 1, ...(shadowShare === undefined ? {} : { shadow: { version: 2, share: shadowShare, max_in_flight: 4 } }) },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return repo;
}

function bodies(): Buffer[] {
  return Array.from({ length: 32 }, (_, v) => {
    const random = seededRandom(1000 + v);
    const data = Array.from({ length: 64 }, () => Math.round((random() * 2 - 1) * 1e4) / 1e4);
    return Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [1, 64], datatype: 'FP32', data }] }));
  });
}

/** Shadow counters from the server's /metrics (served on its HTTP port in this benchmark). */
async function shadowCounters(server: ServerProcess): Promise<{ success: number; error: number; dropped: number; agreement: number | undefined }> {
  const text = await (await fetch(`${server.origin}/metrics`)).text();
  const count = (outcome: string): number => Number(new RegExp(`tessera_shadow_requests_total\\{model="mlp",version="2",outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  const agreement = /tessera_shadow_agreement_ratio\{model="mlp",version="2"\} ([\d.e-]+)/.exec(text)?.[1];
  return { success: count('success'), error: count('error'), dropped: count('dropped'), agreement: agreement === undefined ? undefined : Number(agreement) };
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const root = await mkdtemp(join(tmpdir(), 'tessera-shadow-bench-'));
  const servers = new Map<Cell, ServerProcess>();
  try {
    const serverConfig = { grpc: false, management: false, metricsOnHttpPort: true, logLevel: 'warn' as const };
    for (const [cell, share] of [
      ['no shadow', undefined],
      ['shadow', options.share],
    ] as const) {
      servers.set(cell, await startServerProcess('server-child.ts', { repository: await writeRepository(root, share), server: serverConfig }));
    }
    const requestBodies = bodies();
    const results: Record<Cell, ClosedLoopResult[]> = { 'no shadow': [], shadow: [] };
    const before = await shadowCounters(servers.get('shadow')!);
    process.stdout.write(
      `shadow overhead: bench MLP 64-256-256-10, concurrency ${options.concurrency}, shadow share ${options.share} (max_in_flight 4), ${options.rounds} round(s) of ${options.durationMs / 1000} s per cell\n`,
    );
    for (let round = 0; round < options.rounds; round++) {
      for (const cell of ['no shadow', 'shadow'] as const) {
        const result = await closedLoop({
          origin: servers.get(cell)!.origin,
          path: '/v2/models/mlp/infer',
          bodies: requestBodies,
          concurrency: options.concurrency,
          warmupMs: options.warmupMs,
          durationMs: options.durationMs,
          maxRequests: 5_000_000,
          requestTimeoutMs: 30_000,
        });
        results[cell].push(result);
        process.stdout.write(
          `  round ${round + 1} ${cell.padEnd(9)}  ${fmt(result.requestsPerSecond, 0).padStart(6)} req/s  p50 ${fmt(result.latency.p50, 3)} ms  p99 ${fmt(result.latency.p99, 3)} ms  errors ${result.errors}\n`,
        );
      }
    }
    const after = await shadowCounters(servers.get('shadow')!);
    const summary = (cell: Cell) => ({
      rps: median(results[cell].map((r) => r.requestsPerSecond)),
      p50: median(results[cell].map((r) => r.latency.p50)),
      p95: median(results[cell].map((r) => r.latency.p95)),
      p99: median(results[cell].map((r) => r.latency.p99)),
      issued: results[cell].reduce((sum, r) => sum + r.issued, 0),
    });
    const off = summary('no shadow');
    const on = summary('shadow');
    const rows = [
      ['cell', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms'],
      ['no shadow', fmt(off.rps, 0), fmt(off.p50, 3), fmt(off.p95, 3), fmt(off.p99, 3)],
      [`shadow ${options.share * 100}%`, fmt(on.rps, 0), fmt(on.p50, 3), fmt(on.p95, 3), fmt(on.p99, 3)],
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
    process.stdout.write('\nmedians over the rounds:\n');
    for (const row of rows) process.stdout.write(`  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}\n`);
    const sent = after.success + after.error - before.success - before.error;
    const dropped = after.dropped - before.dropped;
    const sampled = sent + dropped;
    process.stdout.write(
      `shadow cell (warm-ups included): ${on.issued} requests, ${sampled} sampled (${fmt((100 * sampled) / Math.max(1, on.issued), 1)}%): ${sent} replayed on version 2 (${after.error - before.error} errors), ${dropped} dropped (lane full); top-1 agreement of the two versions ${after.agreement === undefined ? '-' : fmt(after.agreement * 100, 1)}%\n`,
    );
    const delta = on.p50 - off.p50;
    const held = delta <= options.budgetMs;
    process.stdout.write(`p50 delta: ${delta >= 0 ? '+' : ''}${fmt(delta, 3)} ms (budget +${options.budgetMs} ms): ${held ? 'OK' : 'OVER BUDGET'}\n`);
    if (!held) process.exitCode = 1;
  } finally {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    await rm(root, { recursive: true, force: true });
  }
}

await main();

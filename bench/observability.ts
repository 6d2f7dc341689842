/**
 * What observability costs in throughput (issue 6): the benchmark MLP (64 -> 256 -> 256 -> 10,
 * one row a request, V2 JSON) at concurrency 64 on two servers of the same build, one with
 * everything observability off and one with Prometheus metrics, model-quality monitoring
 * (drift + prediction distribution) and a 1 % sampled prediction audit log on. Target: the
 * `on` server serves at least 95 % of the `off` server's requests/s.
 *
 *   node --import tsx bench/observability.ts            # 3 rounds x 2 cells, 2 s warm-up + 6 s windows
 *   node --import tsx bench/observability.ts --quick    # 2 rounds, 1 s + 3 s
 *   node --import tsx bench/observability.ts --rounds 5 --duration 8 --concurrency 64 --sample-rate 0.01
 *   npm run bench:observability -- --quick
 *
 *   off  server config metrics: false, monitoring: false, no auditDir; the model config has no
 *        monitoring: or audit: section. Tracing off (the server's default).
 *   on   server config metrics: true (served on the HTTP port, metricsOnHttpPort), monitoring: true,
 *        auditDir: a temp dir; the model config has `monitoring: {}` (every default: 1000-row
 *        window, baseline from the first 100 requests, 64 features) and
 *        `audit: { sample_rate: 0.01 }` (default redaction: auto, which keeps the 64 inputs and
 *        10 outputs). /metrics is scraped every `--scrape-interval` seconds (default 5) while its
 *        cells run, as Prometheus would. Tracing off: the target names metrics,
 *        monitoring and audit; tracing is off by default and free when off.
 *
 * Both servers start first (the compiled server, bench/server-child.ts, as `npm run bench`
 * runs it), then the cells alternate off, on, off, on, ... (bench/lib/cells.ts runCell: quiet
 * machine wait, server CPU from /proc, idle wait after each cell, a re-run when other processes
 * loaded the machine), so drift hits both alike. The verdict is median(on req/s) / median(off
 * req/s) >= 0.95. At the end it checks that the `on` cells really were on: the audit files hold
 * ~1 % of the requests (within 4 standard deviations of the binomial expectation, none dropped),
 * /metrics and /v2/models/mlp/monitoring account for every request the server answered, and the
 * `off` server has no /metrics and reports monitoring disabled. The exit code is 1 when the target
 * is missed or a check fails.
 *
 * From bench/run.ts: `runObservability(files, { quick, log })` (servers compiled beforehand by
 * the caller, as run.ts does), `describeObservability(result)` and `observabilityRatio(result)`.
 */
import './lib/onnxruntime-env.js';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ServerConfigInput } from '../src/config/server-config.js';
import type { MonitoringConfigInput } from '../src/config/monitoring-config.js';
import type { AuditModelConfigInput } from '../src/config/audit-config.js';
import { buildServerScripts } from './lib/build.js';
import { fetchStats, runCell, waitForIdle, type CellResult, type Timing } from './lib/cells.js';
import { startServerProcess, useCompiledServers, type ServerProcess } from './lib/children.js';
import { closedLoop } from './lib/loadgen.js';
import { prepareModels, serverModelConfig, type BenchModelConfig, type ModelFiles } from './lib/models.js';
import { requestBodies } from './lib/payloads.js';
import { fmt, median, ms, rate } from './lib/stats.js';
import { renderConsole, type Table } from './lib/table.js';

export type Variant = 'off' | 'on';

export interface ObservabilityOptions {
  readonly quick: boolean;
  readonly log: (line: string) => void;
  /** Rounds of (off, on) cells; default 3 (quick: 2). */
  readonly rounds?: number;
  readonly warmupMs?: number;
  readonly durationMs?: number;
  /** Closed-loop concurrency; default 64. */
  readonly concurrency?: number;
  /** Audit sample rate of the `on` server; default 0.01. */
  readonly sampleRate?: number;
  /**
   * Load each server this long before the rounds (not measured): JIT warm-up, and the `on`
   * server's one-time start-up work (monitoring collects its baseline from the first 100
   * requests). Default 3 s (quick: 2 s).
   */
  readonly primeMs?: number;
  /** Seconds between /metrics scrapes during the `on` cells; 0 = none. Default 5. */
  readonly scrapeIntervalSeconds?: number;
  /** max_queue_delay_microseconds of both servers (run.ts's tessera-batch default 500). */
  readonly delayUs?: number;
  /** Re-runs of disturbed cells allowed (shared with the caller's other cells if it passes its own). */
  readonly retries?: { remaining: number };
  /** Target: on req/s / off req/s at least this. Default 0.95. */
  readonly target?: number;
}

export interface ObservabilityCell {
  readonly round: number;
  readonly variant: Variant;
  readonly cell: CellResult;
  /** Server CPU (all threads) per answered request in the window, ms. */
  readonly cpuMsPerRequest: number;
  /** /metrics scrapes during the cell (warm-up and idle wait included) and their mean time, ms. */
  readonly scrapes: number;
  readonly scrapeMs: number;
}

export interface VariantSummary {
  /** Medians over the rounds. */
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuMsPerRequest: number;
  readonly mainMsPerRequest: number;
  readonly foreignPct: number;
  /** Lowest and highest req/s of the rounds (the spread shows the noise). */
  readonly rpsMin: number;
  readonly rpsMax: number;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ObservabilityResult {
  readonly concurrency: number;
  readonly sampleRate: number;
  readonly rounds: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly primeMs: number;
  readonly scrapeIntervalSeconds: number;
  readonly cells: readonly ObservabilityCell[];
  readonly off: VariantSummary;
  readonly on: VariantSummary;
  /** median(on req/s) / median(off req/s): the figure the target is judged on. */
  readonly ratio: number;
  /** on / off req/s of each round (adjacent cells). */
  readonly roundRatios: readonly number[];
  /** off CPU per request / on CPU per request (1 = no extra CPU; less disturbed by other load than req/s). */
  readonly cpuRatio: number;
  readonly target: number;
  readonly met: boolean;
  /** Evidence that the `on` cells had observability on and the `off` cells off. */
  readonly checks: readonly Check[];
  readonly configs: Readonly<Record<Variant, { readonly server: ServerConfigInput; readonly model: BenchModelConfig }>>;
}

type ObservedModelConfig = BenchModelConfig & { readonly monitoring?: MonitoringConfigInput; readonly audit?: AuditModelConfigInput };

const DEFAULTS = {
  rounds: 3,
  quickRounds: 2,
  warmupMs: 2_000,
  quickWarmupMs: 1_000,
  durationMs: 6_000,
  quickDurationMs: 3_000,
  primeMs: 3_000,
  quickPrimeMs: 2_000,
  concurrency: 64,
  sampleRate: 0.01,
  scrapeIntervalSeconds: 5,
  delayUs: 500,
  target: 0.95,
} as const;

// ---------------------------------------------------------------------------------------------
// Prometheus text

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Samples of a text exposition (no escapes in our label values beyond \" and \\). */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

function sum(samples: readonly Sample[], name: string, where: Readonly<Record<string, string>> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([key, value]) => s.labels[key] === value))
    .reduce((total, s) => total + s.value, 0);
}

async function getText(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  return { status: response.status, text: await response.text() };
}

// ---------------------------------------------------------------------------------------------

function summarizeVariant(cells: readonly ObservabilityCell[]): VariantSummary {
  const rps = cells.map((c) => c.cell.requestsPerSecond);
  return {
    rps: median(rps),
    p50: median(cells.map((c) => c.cell.latency.p50)),
    p99: median(cells.map((c) => c.cell.latency.p99)),
    cpuMsPerRequest: median(cells.map((c) => c.cpuMsPerRequest)),
    mainMsPerRequest: median(cells.map((c) => c.cell.mainCpuMsPerRequest)),
    foreignPct: median(cells.map((c) => c.cell.foreignCpuPct)),
    rpsMin: Math.min(...rps),
    rpsMax: Math.max(...rps),
  };
}

/** Scrape /metrics every `intervalMs` until stopped, as Prometheus would. */
function startScraper(server: ServerProcess, intervalMs: number): { stop(): Promise<{ scrapes: number; meanMs: number }> } {
  let scrapes = 0;
  let totalMs = 0;
  let running: Promise<void> | undefined;
  const timer =
    intervalMs > 0
      ? setInterval(() => {
          if (running !== undefined) return;
          const t0 = performance.now();
          running = getText(`${server.origin}/metrics`)
            .then(() => {
              scrapes++;
              totalMs += performance.now() - t0;
            })
            .catch(() => undefined)
            .finally(() => (running = undefined));
        }, intervalMs)
      : undefined;
  return {
    async stop() {
      clearInterval(timer);
      await running;
      return { scrapes, meanMs: scrapes > 0 ? totalMs / scrapes : Number.NaN };
    },
  };
}

/** Wait (bounded) until the audit log has written everything it queued. */
async function auditSettled(server: ServerProcess, maxMs = 10_000): Promise<Sample[]> {
  const start = performance.now();
  let samples: Sample[] = [];
  while (performance.now() - start < maxMs) {
    samples = parsePrometheus((await getText(`${server.origin}/metrics`)).text);
    if (sum(samples, 'tessera_audit_queue_records') === 0) return samples;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return samples;
}

async function auditRecords(directory: string): Promise<{ files: number; records: number; mlpWithData: number }> {
  const names = (await readdir(directory)).filter((name) => name.endsWith('.jsonl'));
  let records = 0;
  let mlpWithData = 0;
  for (const name of names) {
    for (const line of (await readFile(join(directory, name), 'utf8')).split('\n')) {
      if (line.trim() === '') continue;
      records++;
      try {
        const record = JSON.parse(line) as { model?: string; outcome?: string; inputs?: unknown[] | null; outputs?: unknown[] | null };
        const complete = (record.inputs?.length ?? 0) > 0 && (record.outputs?.length ?? 0) > 0;
        if (record.model === 'mlp' && (record.outcome !== 'success' || complete)) mlpWithData++;
      } catch {
        // counted as a record, not as a valid one
      }
    }
  }
  return { files: names.length, records, mlpWithData };
}

interface MonitoringBody {
  readonly enabled: boolean;
  readonly versions: readonly {
    readonly requests: number;
    readonly rows: number;
    readonly drift: { readonly status: string; readonly features: readonly { readonly psi: number | null }[] };
    readonly outputs: readonly { readonly name: string; readonly kind?: string }[];
  }[];
}

async function verify(servers: Record<Variant, ServerProcess>, auditDir: string, sampleRate: number): Promise<Check[]> {
  const checks: Check[] = [];
  const on = servers.on;
  const samples = await auditSettled(on);
  const stats = await fetchStats(on.origin, 'mlp');
  const answered = stats === undefined ? Number.NaN : stats.inference_stats.success.count + stats.inference_stats.fail.count;
  const counted = sum(samples, 'tessera_requests_total', { model: 'mlp' });
  const succeeded = sum(samples, 'tessera_requests_total', { model: 'mlp', outcome: 'success' });
  checks.push({
    name: 'on: /metrics counts every request',
    ok: counted > 0 && counted === answered,
    detail: `tessera_requests_total{model="mlp"} ${counted} (success ${succeeded}); V2 statistics: ${answered} answered`,
  });
  const psiSeries = samples.filter((s) => s.name === 'tessera_drift_psi' && s.labels['model'] === 'mlp');
  const classes = sum(samples, 'tessera_prediction_class_total', { model: 'mlp' });
  checks.push({
    name: 'on: /metrics has the monitoring series',
    ok: psiSeries.length > 0 && classes === succeeded,
    detail: `${psiSeries.length} tessera_drift_psi series (max ${fmt(Math.max(...psiSeries.map((s) => s.value)), 3)}), tessera_drift_alert ${sum(samples, 'tessera_drift_alert', { model: 'mlp' })}, tessera_prediction_class_total ${classes}`,
  });
  const monitoringText = await getText(`${on.origin}/v2/models/mlp/monitoring`);
  let monitoring: MonitoringBody | undefined;
  try {
    monitoring = JSON.parse(monitoringText.text) as MonitoringBody;
  } catch {
    monitoring = undefined;
  }
  const version = monitoring?.versions[0];
  const withPsi = version?.drift.features.filter((f) => f.psi !== null).length ?? 0;
  checks.push({
    name: 'on: /v2/models/mlp/monitoring shows the traffic',
    ok:
      monitoringText.status === 200 &&
      monitoring?.enabled === true &&
      version !== undefined &&
      // Monitoring counts validated requests; all of them succeed here unless something failed.
      version.requests >= succeeded &&
      version.requests <= counted &&
      version.drift.status === 'monitoring' &&
      withPsi > 0,
    detail:
      version === undefined
        ? `status ${monitoringText.status}: ${monitoringText.text.slice(0, 200)}`
        : `enabled ${monitoring!.enabled}, ${version.requests} requests / ${version.rows} rows, drift ${version.drift.status}, ${withPsi} of ${version.drift.features.length} features with a PSI, outputs ${version.outputs.map((o) => o.name).join(', ')}`,
  });
  const files = await auditRecords(auditDir);
  // Every answered request is sampled at the same rate, whatever its outcome.
  const expected = counted * sampleRate;
  const sd = Math.sqrt(counted * sampleRate * (1 - sampleRate));
  const written = sum(samples, 'tessera_audit_records_total');
  const dropped = sum(samples, 'tessera_audit_records_dropped_total');
  const writeErrors = sum(samples, 'tessera_audit_write_errors_total');
  checks.push({
    name: `on: audit log holds ~${fmt(sampleRate * 100, 1)}% of the requests`,
    ok: files.records > 0 && Math.abs(files.records - expected) <= 4 * sd + 1 && files.mlpWithData === files.records && dropped === 0 && writeErrors === 0 && written === files.records,
    detail:
      `${files.records} records in ${files.files} file(s) = ${fmt((100 * files.records) / Math.max(1, counted), 2)}% of ${counted} requests ` +
      `(expected ${fmt(expected, 0)} ± ${fmt(4 * sd, 0)}); ${files.mlpWithData} complete (model, inputs, outputs); tessera_audit_records_total ${written}, dropped ${dropped}, write errors ${writeErrors}`,
  });
  const offMetrics = await getText(`${servers.off.origin}/metrics`);
  const offMonitoring = await getText(`${servers.off.origin}/v2/models/mlp/monitoring`);
  let offEnabled: boolean | undefined;
  try {
    offEnabled = (JSON.parse(offMonitoring.text) as MonitoringBody).enabled;
  } catch {
    offEnabled = undefined;
  }
  checks.push({
    name: 'off: no /metrics, monitoring disabled',
    ok: offMetrics.status === 404 && offEnabled === false,
    detail: `GET /metrics ${offMetrics.status}; /v2/models/mlp/monitoring enabled ${String(offEnabled)}`,
  });
  return checks;
}

// ---------------------------------------------------------------------------------------------

/** Run the off/on cells and the checks. The caller prepares the models (and compiles the servers, or not). */
export async function runObservability(files: ModelFiles, options: ObservabilityOptions): Promise<ObservabilityResult> {
  const { log, quick } = options;
  const model = files.models.mlp;
  const rounds = options.rounds ?? (quick ? DEFAULTS.quickRounds : DEFAULTS.rounds);
  const warmupMs = options.warmupMs ?? (quick ? DEFAULTS.quickWarmupMs : DEFAULTS.warmupMs);
  const durationMs = options.durationMs ?? (quick ? DEFAULTS.quickDurationMs : DEFAULTS.durationMs);
  const concurrency = options.concurrency ?? DEFAULTS.concurrency;
  const sampleRate = options.sampleRate ?? DEFAULTS.sampleRate;
  const scrapeIntervalSeconds = options.scrapeIntervalSeconds ?? DEFAULTS.scrapeIntervalSeconds;
  const target = options.target ?? DEFAULTS.target;
  const base = serverModelConfig(model, true, options.delayUs ?? DEFAULTS.delayUs);
  const auditDir = await mkdtemp(join(tmpdir(), 'tessera-audit-bench-'));
  const configs: Record<Variant, { server: ServerConfigInput; model: ObservedModelConfig }> = {
    off: { server: { metrics: false, monitoring: false, metricsOnHttpPort: true }, model: base },
    on: {
      server: { metrics: true, metricsOnHttpPort: true, monitoring: true, auditDir },
      model: { ...base, monitoring: {}, audit: { sample_rate: sampleRate } },
    },
  };
  const timing: Timing = {
    warmupMs,
    durationMs,
    quietThresholdPct: 15,
    quietMaxWaitMs: 3_000,
    retryForeignPct: 30,
    retries: options.retries ?? { remaining: rounds },
  };
  const bodies = requestBodies(model);
  const servers: Partial<Record<Variant, ServerProcess>> = {};
  try {
    for (const variant of ['off', 'on'] as const) {
      const repository = await files.repository(model.name, model.file, configs[variant].model);
      const server = await startServerProcess('server-child.ts', { repository, server: configs[variant].server });
      servers[variant] = server;
      log(`  observability ${variant}: started in ${(server.startMs / 1000).toFixed(1)} s (pid ${server.pid})`);
    }
    const primeMs = options.primeMs ?? (quick ? DEFAULTS.quickPrimeMs : DEFAULTS.primeMs);
    if (primeMs > 0) {
      for (const variant of ['off', 'on'] as const) {
        const server = servers[variant]!;
        await closedLoop({ origin: server.origin, path: `/v2/models/${model.name}/infer`, bodies, concurrency, warmupMs: 0, durationMs: primeMs, maxRequests: 5_000_000, requestTimeoutMs: 30_000 });
        await waitForIdle(server.origin, model.name);
      }
      log(`  primed both servers with ${primeMs / 1000} s of load each (not measured)`);
    }
    const cells: ObservabilityCell[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const variant of ['off', 'on'] as const) {
        const server = servers[variant]!;
        const scraper = startScraper(server, variant === 'on' ? scrapeIntervalSeconds * 1000 : 0);
        let cell: CellResult;
        let scraped: { scrapes: number; meanMs: number };
        try {
          cell = await runCell({ server, serverLabel: `observability-${variant}`, model, hasStats: true, bodies, concurrency, timing });
        } finally {
          scraped = await scraper.stop();
        }
        const answered = cell.ok + cell.errors;
        const entry: ObservabilityCell = {
          round,
          variant,
          cell,
          cpuMsPerRequest: answered > 0 ? (cell.serverCpu.totalSeconds * 1000) / answered : Number.NaN,
          scrapes: scraped.scrapes,
          scrapeMs: scraped.meanMs,
        };
        cells.push(entry);
        log(
          `    round ${round} ${variant.padEnd(3)}: ${rate(cell.requestsPerSecond)} req/s  p50 ${ms(cell.latency.p50)}  p99 ${ms(cell.latency.p99)} ms` +
            `  errors ${cell.errors}  batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}  srv CPU ${fmt(cell.serverCpu.totalPct, 0)}% (main ${fmt(cell.serverCpu.mainPct, 0)}%)` +
            `  ${fmt(entry.cpuMsPerRequest, 3)} CPU ms/req  foreign ${fmt(cell.foreignCpuPct, 0)}%` +
            (variant === 'on' && scrapeIntervalSeconds > 0 ? `  scrapes ${entry.scrapes} (${ms(entry.scrapeMs)} ms)` : '') +
            (cell.attempts > 1 ? ` (attempt ${cell.attempts})` : ''),
        );
      }
    }
    const checks = await verify(servers as Record<Variant, ServerProcess>, auditDir, sampleRate);
    const off = summarizeVariant(cells.filter((c) => c.variant === 'off'));
    const on = summarizeVariant(cells.filter((c) => c.variant === 'on'));
    const roundRatios = Array.from({ length: rounds }, (_, i) => {
      const a = cells.find((c) => c.round === i + 1 && c.variant === 'off')!;
      const b = cells.find((c) => c.round === i + 1 && c.variant === 'on')!;
      return b.cell.requestsPerSecond / a.cell.requestsPerSecond;
    });
    const ratio = on.rps / off.rps;
    return {
      concurrency,
      sampleRate,
      rounds,
      warmupMs,
      durationMs,
      primeMs,
      scrapeIntervalSeconds,
      cells,
      off,
      on,
      ratio,
      roundRatios,
      cpuRatio: off.cpuMsPerRequest / on.cpuMsPerRequest,
      target,
      met: ratio >= target,
      checks,
      configs,
    };
  } finally {
    await Promise.all(Object.values(servers).map((server) => server.stop()));
    await rm(auditDir, { recursive: true, force: true });
  }
}

export function observabilityTable(result: ObservabilityResult): Table {
  const row = (label: string, s: VariantSummary): string[] => [
    label,
    rate(s.rps),
    `${rate(s.rpsMin)}-${rate(s.rpsMax)}`,
    ms(s.p50),
    ms(s.p99),
    fmt(s.cpuMsPerRequest, 3),
    fmt(s.mainMsPerRequest, 3),
    fmt(s.foreignPct, 0),
  ];
  return {
    headers: ['variant', 'req/s', 'req/s range', 'p50 ms', 'p99 ms', 'srv CPU ms/req', 'main ms/req', 'foreign %'],
    rows: [row('off', result.off), row(`on (metrics, monitoring, audit ${fmt(result.sampleRate * 100, 1)}%)`, result.on)],
  };
}

/** The ratio line in the shape of bench/run.ts's ratio table (name, value, target, met, detail). */
export function observabilityRatio(result: ObservabilityResult): { name: string; value: string; target: string; met: boolean; detail: string } {
  const failed = result.checks.filter((c) => !c.ok);
  return {
    name: `MLP c${result.concurrency}: req/s with metrics + monitoring + ${fmt(result.sampleRate * 100, 1)}% audit ÷ req/s with them off`,
    value: fmt(result.ratio, 3),
    target: `>= ${result.target}`,
    met: result.met && failed.length === 0,
    detail:
      `median of ${result.rounds} alternating rounds: ${rate(result.on.rps)} vs ${rate(result.off.rps)} req/s (per round ${result.roundRatios.map((r) => fmt(r, 3)).join(', ')}); ` +
      `p99 ${ms(result.on.p99)} vs ${ms(result.off.p99)} ms; server CPU per request ${fmt(result.on.cpuMsPerRequest, 3)} vs ${fmt(result.off.cpuMsPerRequest, 3)} ms; ` +
      (failed.length === 0 ? 'the on cells were verifiably on' : `CHECKS FAILED: ${failed.map((c) => c.name).join('; ')}`),
  };
}

export function describeObservability(result: ObservabilityResult): string[] {
  return [
    `ratio on/off req/s: ${fmt(result.ratio, 3)} (target >= ${result.target}): ${result.met ? 'met' : 'NOT met'}; per round ${result.roundRatios.map((r) => fmt(r, 3)).join(', ')}`,
    `server CPU per request off/on: ${fmt(result.cpuRatio, 3)} (${fmt(result.off.cpuMsPerRequest, 3)} vs ${fmt(result.on.cpuMsPerRequest, 3)} ms; 1 = observability adds no CPU)`,
    ...result.checks.map((c) => `check ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`),
  ];
}

// ---------------------------------------------------------------------------------------------

const USAGE = `usage: node --import tsx bench/observability.ts [options]

  --quick                 2 rounds of 1 s warm-up + 3 s windows (default 3 rounds, 2 s + 6 s)
  --rounds N              rounds of (off, on) cells
  --warmup S, --duration S  seconds per cell
  --prime S               seconds of unmeasured load on each server before the rounds (default 3, quick 2; 0 = none)
  --concurrency N         closed-loop connections (default 64)
  --sample-rate R         audit sample rate of the on server (default 0.01)
  --scrape-interval S     /metrics scrape interval during the on cells, 0 = none (default 5)
  --delay US              max_queue_delay_microseconds of both servers (default 500)
  --tsx                   run the servers from TypeScript through tsx instead of compiling them
  --help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      duration: { type: 'string' },
      prime: { type: 'string' },
      concurrency: { type: 'string' },
      'sample-rate': { type: 'string' },
      'scrape-interval': { type: 'string' },
      delay: { type: 'string' },
      tsx: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(USAGE);
    return;
  }
  const number = (flag: string, value: string | undefined, min: number, max: number): number | undefined => {
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < min || parsed > max) throw new Error(`--${flag}: a number from ${min} to ${max}`);
    return parsed;
  };
  const seconds = (flag: string, value: string | undefined): number | undefined => {
    const parsed = number(flag, value, 0.1, 600);
    return parsed === undefined ? undefined : parsed * 1000;
  };
  const rounds = number('rounds', values.rounds, 2, 50);
  const warmupMs = seconds('warmup', values.warmup);
  const durationMs = seconds('duration', values.duration);
  const prime = number('prime', values.prime, 0, 600);
  const concurrency = number('concurrency', values.concurrency, 1, 512);
  const sampleRate = number('sample-rate', values['sample-rate'], 0.0001, 1);
  const scrapeIntervalSeconds = number('scrape-interval', values['scrape-interval'], 0, 600);
  const delayUs = number('delay', values.delay, 0, 1_000_000);
  const log = (line: string): void => console.log(line);
  if (values.tsx !== true) {
    const t0 = performance.now();
    useCompiledServers(await buildServerScripts());
    log(`compiled the server into bench/.build in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const files = await prepareModels(['mlp']);
  try {
    const quick = values.quick === true;
    log(
      `observability overhead: ${files.models.mlp.title}, V2 JSON, concurrency ${concurrency ?? DEFAULTS.concurrency}, ` +
        `audit sample rate ${sampleRate ?? DEFAULTS.sampleRate}, ${rounds ?? (quick ? DEFAULTS.quickRounds : DEFAULTS.rounds)} rounds of (off, on)`,
    );
    const result = await runObservability(files, {
      quick,
      log,
      ...(rounds === undefined ? {} : { rounds }),
      ...(warmupMs === undefined ? {} : { warmupMs }),
      ...(durationMs === undefined ? {} : { durationMs }),
      ...(prime === undefined ? {} : { primeMs: prime * 1000 }),
      ...(concurrency === undefined ? {} : { concurrency }),
      ...(sampleRate === undefined ? {} : { sampleRate }),
      ...(scrapeIntervalSeconds === undefined ? {} : { scrapeIntervalSeconds }),
      ...(delayUs === undefined ? {} : { delayUs }),
    });
    log('');
    log('medians over the rounds:');
    log(renderConsole(observabilityTable(result)));
    for (const line of describeObservability(result)) log(line);
    const ratio = observabilityRatio(result);
    log(`\n${ratio.name}: ${ratio.value} (target ${ratio.target}) met: ${ratio.met ? 'yes' : 'NO'}`);
    if (!ratio.met) process.exitCode = 1;
  } finally {
    await files.cleanup();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    await main();
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    console.error(USAGE);
    process.exitCode = 2;
  }
}

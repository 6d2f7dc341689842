/**
 * `npm run bench`: the whole benchmark in one run, figures and ratios taken side by side.
 *
 *   raw baseline     onnxruntime-node alone in a child process (server default options, and
 *                    with spinning), session.run back to back at several batch sizes, in one
 *                    session on every core and in two side by side (the default instances)
 *   hot path         main-thread decode/encode cost per request, worker round trip
 *   server cells     Tessera (dynamic batching / none) and the tutorial baseline, each in its
 *                    own child process, driven closed-loop at concurrencies 1, 8, 16, 32, 64,
 *                    for the MLP, ResNet and the two example models (OCR, Iris)
 *   protocols        bench/protocols.ts: V2 JSON vs V2 binary vs V2 gRPC at concurrency 16
 *   overload         bench/overload.ts: 4x capacity against a small queue
 *   ratios           the product targets, computed from the figures above
 *
 * Writes bench/RESULTS.md (and bench/results.json) after a full run, or with --write.
 * `--explore` runs the server-defaults exploration instead (bench/explore.ts -> EXPLORE.md).
 * See bench/README.md.
 */
import './lib/onnxruntime-env.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { exploreTable, runExplore } from './explore.js';
import { runCell, type CellResult, type Timing } from './lib/cells.js';
import { buildServerScripts } from './lib/build.js';
import { rawLayoutLabel, runRawBaseline, startServerProcess, useCompiledServers, type RawLayout, type ServerProcess } from './lib/children.js';
import type { RawBatchResult } from './lib/ipc.js';
import { machineInfo, type MachineInfo } from './lib/machine.js';
import { measureMicro, type MicroResult } from './lib/micro.js';
import { MODEL_KEYS, prepareModels, REPO_ROOT, serverModelConfig, type BenchModel, type BenchModelConfig, type ModelFiles, type ModelKey } from './lib/models.js';
import { binaryRequestBodies, requestBodies } from './lib/payloads.js';
import { fmt, mb, median, ms, rate } from './lib/stats.js';
import { ratioTable, renderConsole, renderMarkdown, type Ratio, type Table } from './lib/table.js';
import { describeOverload, OVERLOAD, runOverload, type OverloadResult } from './overload.js';
import { BracketedRaw } from './lib/bracketed-raw.js';
import { describeProtocols, PROTOCOLS, protocolRatios, protocolsRawTable, protocolsTable, runProtocols, type ProtocolsResult } from './protocols.js';

const BENCH_DIR = join(REPO_ROOT, 'bench');

/**
 * max_queue_delay_microseconds of the batching configuration ("small, e.g. 500-2000"). The MLP
 * also runs with delay 0 (tessera-batch-d0) in the same run: see EXPLORE.md and README.md.
 */
const DEFAULT_DELAY_US = 500;
const DEFAULT_CONCURRENCY = [1, 8, 16, 32, 64];

/**
 * The cells the ratios read, per model: full-length windows. The other cells of the matrix
 * get shorter ones (see timingFor), to keep a full run near 15 minutes on 2 cores.
 */
const KEY_CONCURRENCY: Readonly<Record<ModelKey, readonly number[]>> = { mlp: [1, 64], resnet: [32], ocr: [1, 16], iris: [1, 16] };

/** The example models (issue 2's ratios at concurrency 1 and 16). */
const EXAMPLE_MODELS: readonly ModelKey[] = ['iris', 'ocr'];

const USAGE = `usage: npm run bench -- [options]

  --only LIST      run only these parts: mlp, resnet, ocr, iris (models), protocols, overload
  --skip LIST      skip parts: raw, micro, tutorial, nobatch, d0 (MLP and Iris with delay 0),
                   binary (ResNet/OCR binary-body cells), protocols, overload
  --quick          short cells (1 s warm-up, 3 s window; overload 10 s) for iterating
  --conc LIST      concurrencies (default ${DEFAULT_CONCURRENCY.join(',')})
  --delay US       max_queue_delay_microseconds of the batching server (default ${DEFAULT_DELAY_US})
  --explore        explore server defaults (instances, threads, spinning, delay) instead
  --tsx            run the servers from TypeScript through tsx instead of compiling them
  --write          write bench/RESULTS.md even for a partial or quick run
  --no-write       do not write bench/RESULTS.md
  --out DIR        write RESULTS.md and results.json (EXPLORE.md) into DIR instead of bench/ (implies --write)
  --help`;

type Part = ModelKey | 'protocols' | 'overload';
type Skip = 'raw' | 'micro' | 'tutorial' | 'nobatch' | 'd0' | 'binary' | 'protocols' | 'overload';

interface Flags {
  readonly parts: ReadonlySet<Part>;
  /** The parts were chosen with --only. */
  readonly only: boolean;
  readonly skip: ReadonlySet<Skip>;
  readonly quick: boolean;
  readonly explore: boolean;
  readonly tsx: boolean;
  readonly concurrencies: readonly number[];
  readonly delayUs: number;
  readonly write: boolean;
  /** Where RESULTS.md and results.json go. */
  readonly outDir: string;
  readonly full: boolean;
}

function parseList<T extends string>(value: string | undefined, allowed: readonly T[], flag: string): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '');
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) throw new Error(`${flag}: unknown '${item}' (expected ${allowed.join(', ')})`);
  }
  return items as T[];
}

function parseFlags(argv: readonly string[]): Flags | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      only: { type: 'string' },
      skip: { type: 'string' },
      quick: { type: 'boolean', default: false },
      conc: { type: 'string' },
      delay: { type: 'string' },
      explore: { type: 'boolean', default: false },
      tsx: { type: 'boolean', default: false },
      write: { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help === true) return undefined;
  const only = parseList<Part>(values.only, [...MODEL_KEYS, 'protocols', 'overload'], '--only');
  const skip = parseList<Skip>(values.skip, ['raw', 'micro', 'tutorial', 'nobatch', 'd0', 'binary', 'protocols', 'overload'], '--skip') ?? [];
  const concurrencies = values.conc === undefined ? DEFAULT_CONCURRENCY : values.conc.split(',').map(Number);
  if (concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > 512)) throw new Error('--conc: integers from 1 to 512');
  const delayUs = values.delay === undefined ? DEFAULT_DELAY_US : Number(values.delay);
  if (!Number.isInteger(delayUs) || delayUs < 0 || delayUs > 1_000_000) throw new Error('--delay: microseconds from 0 to 1000000');
  const quick = values.quick === true;
  const full = only === undefined && skip.length === 0 && !quick && values.conc === undefined && values.delay === undefined && values.tsx !== true;
  return {
    parts: new Set(only ?? [...MODEL_KEYS, 'protocols', 'overload']),
    only: only !== undefined,
    skip: new Set(skip),
    quick,
    explore: values.explore === true,
    tsx: values.tsx === true,
    concurrencies,
    delayUs,
    write: values['no-write'] === true ? false : values.out !== undefined || values.write === true || (full && values.explore !== true),
    outDir: values.out === undefined ? BENCH_DIR : resolve(values.out),
    full,
  };
}

/** Cells re-run because other processes loaded the machine meanwhile: at most this many per run. */
const RETRIES = { remaining: 5 };

/**
 * Cell timing: the cells a ratio reads (KEY_CONCURRENCY) get 2 s warm-up + 6 s window
 * (ResNet 3 s + 8 s); the others 1 s + 4 s (ResNet 2 s + 5 s); --quick 1 s + 3 s for all.
 */
function timingFor(model: BenchModel, quick: boolean, concurrency: number): Timing {
  const slow = model.key === 'resnet';
  const key = KEY_CONCURRENCY[model.key].includes(concurrency);
  return {
    warmupMs: quick ? 1_000 : slow ? (key ? 3_000 : 2_000) : key ? 2_000 : 1_000,
    durationMs: quick ? 3_000 : slow ? (key ? 8_000 : 5_000) : key ? 6_000 : 4_000,
    quietThresholdPct: 15,
    quietMaxWaitMs: 3_000,
    retryForeignPct: 30,
    retries: RETRIES,
  };
}

const log = (line: string): void => console.log(line);

// ---------------------------------------------------------------------------------------------
// Raw onnxruntime baseline

interface RawFigures {
  readonly model: ModelKey;
  readonly spinning: boolean;
  readonly results: readonly RawBatchResult[];
  readonly best: RawBatchResult;
}

async function runRaw(model: BenchModel, quick: boolean): Promise<RawFigures[]> {
  const out: RawFigures[] = [];
  for (const spinning of [false, true]) {
    // The server's session options with default parameters (+ spinning), for one session on
    // every core and for the default instance count side by side.
    const { results, best } = await runRawBaseline(model, model.rawBatchSizes, spinning ? { allow_spinning: true } : {}, quick);
    out.push({ model: model.key, spinning, results, best });
    log(
      `  raw ${model.key} spinning=${spinning ? 'on' : 'off'}: ` +
        results.map((r) => `${rawLayoutLabel(r)} ${ms(r.medianMs)} ms ${rate(r.itemsPerSecond)}/s`).join(', '),
    );
  }
  return out;
}

/** Raw's single-item run of `model` (spinning off): one session on every core, batch 1, as a lone request runs. */
function rawSingleRun(raw: readonly RawFigures[], model: string): RawBatchResult | undefined {
  return raw.find((r) => r.model === model && !r.spinning)?.results.find((r) => r.batchSize === 1 && r.sessions === 1);
}

function rawTable(raw: readonly RawFigures[]): Table {
  return {
    headers: ['model', 'spinning', 'sessions', 'intra', 'batch', 'median ms', 'p99 ms', 'items/s', 'CPU %', 'foreign %', 'runs'],
    rows: raw.flatMap((figures) =>
      figures.results.map((r) => [
        figures.model,
        figures.spinning ? 'on' : 'off (server default)',
        String(r.sessions),
        String(r.intraOpThreads),
        String(r.batchSize),
        ms(r.medianMs),
        ms(r.p99Ms),
        rate(r.itemsPerSecond) + (r === figures.best ? ' *' : ''),
        fmt(r.cpuPct, 0),
        fmt(r.foreignPct, 0),
        String(r.runs),
      ]),
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// Server cells

interface ServerVariant {
  readonly label: 'tessera-batch' | 'tessera-batch-d0' | 'tessera-nobatch' | 'tutorial';
  readonly config?: BenchModelConfig;
  /** Also drive this server with binary-extension bodies at these concurrencies (label + '-binary'). */
  readonly binaryConcurrencies?: readonly number[];
}

/**
 * All variants of one model: every server is started first (idle servers cost nothing), then
 * each concurrency is run on every variant in turn, so the figures a ratio compares are taken
 * next to each other in time even if the machine's other load drifts.
 */
async function runServerCells(files: ModelFiles, model: BenchModel, variants: readonly ServerVariant[], flags: Flags): Promise<CellResult[]> {
  const bodies = requestBodies(model);
  const servers: { variant: ServerVariant; server: ServerProcess }[] = [];
  const cells: CellResult[] = [];
  try {
    for (const variant of variants) {
      const server =
        variant.config === undefined
          ? await startServerProcess('baseline-server.ts', { modelPath: model.file })
          : await startServerProcess('server-child.ts', { repository: await files.repository(model.name, model.file, variant.config), server: {} });
      servers.push({ variant, server });
      log(`  ${model.key} ${variant.label}: started in ${(server.startMs / 1000).toFixed(1)} s (pid ${server.pid}, body ${bodies[0]!.length} bytes)`);
    }
    for (const concurrency of flags.concurrencies) {
      for (const { variant, server } of servers) {
        const cell = await runCell({
          server,
          serverLabel: variant.label,
          model,
          hasStats: variant.config !== undefined,
          bodies,
          concurrency,
          timing: timingFor(model, flags.quick, concurrency),
        });
        cells.push(cell);
        logCell(cell);
      }
    }
    for (const { variant, server } of servers) {
      if (variant.binaryConcurrencies === undefined) continue;
      const binary = binaryRequestBodies(model);
      for (const concurrency of variant.binaryConcurrencies) {
        const cell = await runCell({
          server,
          serverLabel: `${variant.label}-binary`,
          model,
          hasStats: true,
          bodies: binary.bodies,
          headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(binary.headerLength) },
          concurrency,
          timing: timingFor(model, flags.quick, concurrency),
        });
        cells.push(cell);
        logCell(cell, ` (binary body, ${binary.bodies[0]!.length} bytes)`);
      }
    }
  } finally {
    await Promise.all(servers.map(({ server }) => server.stop()));
  }
  return cells;
}

function logCell(cell: CellResult, note = ''): void {
  log(
    `    ${cell.server} c${cell.concurrency}${note}: ${rate(cell.requestsPerSecond)} req/s  p50 ${ms(cell.latency.p50)}  p99 ${ms(cell.latency.p99)} ms` +
      `  batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}  errors ${cell.errors}  srv CPU ${fmt(cell.serverCpu.totalPct, 0)}%` +
      ` (main ${fmt(cell.serverCpu.mainPct, 0)}%)  gen CPU ${fmt(cell.generatorCpuPct, 0)}%  foreign ${fmt(cell.foreignCpuPct, 0)}%` +
      (cell.attempts > 1 ? ` (attempt ${cell.attempts})` : ''),
  );
}

function statusText(cell: CellResult): string {
  const bad = Object.entries(cell.statusCounts).filter(([status]) => !status.startsWith('2'));
  return bad.length === 0 ? '0' : bad.map(([status, count]) => `${count}x${status}`).join(' ');
}

const SERVER_ORDER = ['tessera-batch', 'tessera-batch-d0', 'tessera-batch-binary', 'tessera-nobatch', 'tutorial'];

function cellsTable(unsorted: readonly CellResult[]): Table {
  const cells = [...unsorted].sort(
    (a, b) =>
      MODEL_KEYS.indexOf(a.model as ModelKey) - MODEL_KEYS.indexOf(b.model as ModelKey) ||
      SERVER_ORDER.indexOf(a.server) - SERVER_ORDER.indexOf(b.server) ||
      a.concurrency - b.concurrency,
  );
  return {
    headers: [
      'model', 'server', 'conc', 'req/s', 'items/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'mean batch', 'queue ms',
      'infer ms/batch', 'srv CPU %', 'main %', 'main ms/req', 'req/srv CPU-s', 'gen CPU %', 'RSS MB', 'foreign %',
    ],
    rows: cells.map((c) => [
      c.model,
      c.server,
      String(c.concurrency),
      rate(c.requestsPerSecond),
      rate(c.itemsPerSecond),
      ms(c.latency.p50),
      ms(c.latency.p95),
      ms(c.latency.p99),
      statusText(c),
      fmt(c.batch?.meanBatch ?? Number.NaN),
      ms(c.batch?.meanQueueMs ?? Number.NaN),
      ms(c.batch?.inferMsPerBatch ?? Number.NaN),
      fmt(c.serverCpu.totalPct, 0),
      fmt(c.serverCpu.mainPct, 0),
      fmt(c.mainCpuMsPerRequest, 3),
      rate(c.requestsPerSecond / (c.serverCpu.totalPct / 100)),
      fmt(c.generatorCpuPct, 0),
      mb(c.serverRssMaxBytes),
      fmt(c.foreignCpuPct, 0) + (c.attempts > 1 ? ' (retried)' : ''),
    ]),
  };
}

// ---------------------------------------------------------------------------------------------
// Hot path

function microTable(micro: readonly MicroResult[], raw: readonly RawFigures[]): Table {
  return {
    headers: ['model', 'body bytes', 'decode us', 'tutorial decode us', 'encode us', 'worker run us (b1)', 'raw run us (b1)', 'worker overhead us'],
    rows: micro.map((m) => {
      const rawB1 = rawSingleRun(raw, m.model);
      const rawUs = (rawB1?.medianMs ?? Number.NaN) * 1000;
      return [
        m.model,
        String(m.bodyBytes),
        fmt(m.decodeUs, 1),
        fmt(m.tutorialDecodeUs, 1),
        fmt(m.encodeUs, 1),
        fmt(m.workerRunUs, 1),
        fmt(rawUs, 1),
        fmt(m.workerRunUs - rawUs, 1),
      ];
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Ratios

function findCell(cells: readonly CellResult[], model: ModelKey, server: string, concurrency: number): CellResult | undefined {
  return cells.find((c) => c.model === model && c.server === server && c.concurrency === concurrency);
}

/**
 * Issue 2's figures for the example models: server req/s and latency at concurrency 1 and 16,
 * against raw onnxruntime and the tutorial server (reference lines: the issue sets no target).
 * Raw at c1 is the batch-1 run of one session (a lone client never batches); at c16 the best
 * raw run whose items in flight (sessions x batch size) a closed loop of 16 single-item
 * requests can fill (<= 16).
 */
function exampleRatios(cells: readonly CellResult[], raw: readonly RawFigures[]): Ratio[] {
  const ratios: Ratio[] = [];
  const titles: Readonly<Record<string, string>> = { iris: 'Iris', ocr: 'OCR' };
  for (const key of EXAMPLE_MODELS) {
    const rawFigures = raw.find((r) => r.model === key && !r.spinning);
    for (const concurrency of [1, 16]) {
      const server = findCell(cells, key, 'tessera-batch', concurrency);
      if (server === undefined) continue;
      const tutorial = findCell(cells, key, 'tutorial', concurrency);
      const usable = rawFigures?.results.filter((r) => r.sessions * r.batchSize <= concurrency) ?? [];
      const rawBest = usable.length === 0 ? undefined : usable.reduce((a, b) => (b.itemsPerSecond > a.itemsPerSecond ? b : a));
      const vsRaw = rawBest === undefined ? Number.NaN : server.itemsPerSecond / rawBest.itemsPerSecond;
      // The Iris model runs in microseconds: its server / raw ratio is far below 0.01.
      const small = (value: number): string => (value > 0 && value < 0.01 ? value.toPrecision(2) : fmt(value, 2));
      const vsTutorial = tutorial === undefined ? Number.NaN : server.requestsPerSecond / tutorial.requestsPerSecond;
      ratios.push({
        name: `${titles[key] ?? key} c${concurrency} (tessera-batch): req/s, p50 / p99; server / raw, server / tutorial`,
        value: `${rate(server.requestsPerSecond)} req/s, ${ms(server.latency.p50)} / ${ms(server.latency.p99)} ms; ${small(vsRaw)}x raw, ${fmt(vsTutorial, 2)}x tutorial`,
        target: '(reference)',
        met: undefined,
        detail:
          `server ${rate(server.requestsPerSecond)} req/s p50 ${ms(server.latency.p50)} / p99 ${ms(server.latency.p99)} ms (mean batch ${fmt(server.batch?.meanBatch ?? Number.NaN)}, errors ${statusText(server)}); ` +
          (rawBest === undefined ? 'no raw figure' : `raw ${rate(rawBest.itemsPerSecond)} items/s at ${rawLayoutLabel(rawBest)} (server default options${concurrency > 1 ? `, best of runs with <= ${concurrency} items in flight` : ''})`) +
          '; ' +
          (tutorial === undefined ? 'no tutorial cell' : `tutorial ${rate(tutorial.requestsPerSecond)} req/s p50 ${ms(tutorial.latency.p50)} / p99 ${ms(tutorial.latency.p99)} ms`),
      });
    }
  }
  return ratios;
}

/** The ResNet c32 target's rounds: each server cell with the raw figure measured around it. */
interface PairedRound {
  readonly round: number;
  readonly cell: CellResult;
  readonly rawItemsPerSecond: number;
}

/** Rounds of the ResNet c32 cell taken for the issue's ratio (3; 1 with --quick). */
const PAIRED_ROUNDS = 3;

/**
 * The ResNet c32 target, measured so that machine drift cannot decide it: a fresh
 * `tessera-batch` server runs the c32 cell in rounds, with raw onnxruntime (in the layout and
 * at the batch size the raw sweep found best) measured before the first round and after each (bench/lib/bracketed-raw.ts).
 */
async function runResnetPaired(files: ModelFiles, model: BenchModel, config: BenchModelConfig, rawLayout: RawLayout, flags: Flags): Promise<PairedRound[]> {
  const bracket = BracketedRaw.forModel(model, rawLayout, flags.quick);
  const rawLabel = rawLayoutLabel(rawLayout);
  const server = await startServerProcess('server-child.ts', { repository: await files.repository(model.name, model.file, config), server: {} });
  const rounds = flags.quick ? 1 : PAIRED_ROUNDS;
  const cells: CellResult[] = [];
  try {
    log(`  resnet c32 rounds against raw ${rawLabel}: server started in ${(server.startMs / 1000).toFixed(1)} s (pid ${server.pid})`);
    log(`    raw ${rawLabel} before round 1: ${rate(await bracket.mark())} items/s`);
    for (let round = 1; round <= rounds; round++) {
      const cell = await runCell({ server, serverLabel: 'tessera-batch', model, hasStats: true, bodies: requestBodies(model), concurrency: 32, timing: timingFor(model, flags.quick, 32) });
      cells.push(cell);
      logCell(cell, ` round ${round}`);
      log(`    raw ${rawLabel} after round ${round}: ${rate(await bracket.mark())} items/s`);
    }
  } finally {
    await server.stop();
  }
  return cells.map((cell, i) => ({ round: i + 1, cell, rawItemsPerSecond: bracket.forRound(i + 1) }));
}

function computeRatios(
  cells: readonly CellResult[],
  raw: readonly RawFigures[],
  overload: OverloadResult | undefined,
  protocols: ProtocolsResult | undefined,
  paired: readonly PairedRound[],
): Ratio[] {
  const ratios: Ratio[] = [];
  const resnetRaw = raw.find((r) => r.model === 'resnet' && !r.spinning);
  const resnetRawSpin = raw.find((r) => r.model === 'resnet' && r.spinning);
  const resnet32 = findCell(cells, 'resnet', 'tessera-batch', 32);
  if (paired.length > 0) {
    const roundRatios = paired.map((p) => p.cell.itemsPerSecond / p.rawItemsPerSecond);
    const value = median(roundRatios);
    const worstP99 = Math.max(...paired.map((p) => p.cell.latency.p99));
    ratios.push({
      name: 'ResNet c32: server items/s / raw items/s',
      value: fmt(value, 2),
      target: '>= 0.75, p99 < 2 s',
      met: value >= 0.75 && worstP99 < 2000,
      detail:
        `median of ${paired.length} round${paired.length === 1 ? '' : 's'}: ` +
        paired.map((p, i) => `${rate(p.cell.itemsPerSecond)}/s (p99 ${ms(p.cell.latency.p99)} ms, mean batch ${fmt(p.cell.batch?.meanBatch ?? Number.NaN)}) vs raw ${rate(p.rawItemsPerSecond)}/s = ${fmt(roundRatios[i]!, 2)}`).join('; ') +
        `; raw at ${resnetRaw === undefined ? '?' : rawLayoutLabel(resnetRaw.best)} (the raw sweep's best, server default options), measured before the first round and after each, a round taking the mean of its two` +
        (resnet32 !== undefined && resnetRaw !== undefined
          ? `; the matrix's c32 cell: ${rate(resnet32.itemsPerSecond)}/s against the sweep's ${rate(resnetRaw.best.itemsPerSecond)}/s, best raw with any spinning setting ${rate(Math.max(resnetRaw.best.itemsPerSecond, resnetRawSpin?.best.itemsPerSecond ?? 0))}/s`
          : ''),
    });
  } else if (resnetRaw !== undefined && resnet32 !== undefined) {
    const value = resnet32.itemsPerSecond / resnetRaw.best.itemsPerSecond;
    const p99Ok = resnet32.latency.p99 < 2000;
    const bestAny = Math.max(resnetRaw.best.itemsPerSecond, resnetRawSpin?.best.itemsPerSecond ?? 0);
    ratios.push({
      name: 'ResNet c32: server items/s / raw best items/s',
      value: fmt(value, 2),
      target: '>= 0.75, p99 < 2 s',
      met: value >= 0.75 && p99Ok,
      detail:
        `one cell (no paired rounds in this run): server ${rate(resnet32.itemsPerSecond)}/s (p99 ${ms(resnet32.latency.p99)} ms, mean batch ${fmt(resnet32.batch?.meanBatch ?? Number.NaN)}) vs raw ` +
        `${rate(resnetRaw.best.itemsPerSecond)}/s at ${rawLayoutLabel(resnetRaw.best)} (server default options); ` +
        `vs best raw with any spinning setting (${rate(bestAny)}/s): ${fmt(resnet32.itemsPerSecond / bestAny, 2)}`,
    });
  }
  const tut64 = findCell(cells, 'mlp', 'tutorial', 64);
  for (const server of ['tessera-batch', 'tessera-batch-d0'] as const) {
    const mlp64 = findCell(cells, 'mlp', server, 64);
    if (mlp64 === undefined || tut64 === undefined) continue;
    const value = mlp64.requestsPerSecond / tut64.requestsPerSecond;
    ratios.push({
      name: `MLP c64 (${server}): server req/s / tutorial req/s`,
      value: fmt(value, 2),
      target: '>= 1.3, lower p99',
      met: value >= 1.3 && mlp64.latency.p99 < tut64.latency.p99,
      detail:
        `server ${rate(mlp64.requestsPerSecond)} req/s p99 ${ms(mlp64.latency.p99)} ms (mean batch ${fmt(mlp64.batch?.meanBatch ?? Number.NaN)}) ` +
        `vs tutorial ${rate(tut64.requestsPerSecond)} req/s p99 ${ms(tut64.latency.p99)} ms`,
    });
  }
  const mlpRawB1 = rawSingleRun(raw, 'mlp');
  for (const server of ['tessera-batch', 'tessera-batch-d0', 'tessera-nobatch'] as const) {
    const mlp1 = findCell(cells, 'mlp', server, 1);
    if (mlp1 === undefined || mlpRawB1 === undefined) continue;
    const value = mlp1.latency.p50 - mlpRawB1.medianMs;
    ratios.push({
      name: `MLP c1 (${server}): median latency - raw single-row run`,
      value: `${fmt(value, 3)} ms`,
      target: '<= 1 ms',
      met: value <= 1,
      detail: `server p50 ${fmt(mlp1.latency.p50, 3)} ms, raw b1 median ${fmt(mlpRawB1.medianMs, 3)} ms; server queue ${fmt(mlp1.batch?.meanQueueMs ?? Number.NaN, 3)} ms, infer ${fmt(mlp1.batch?.inferMsPerBatch ?? Number.NaN, 3)} ms per batch`,
    });
  }
  const tut1 = findCell(cells, 'mlp', 'tutorial', 1);
  if (tut1 !== undefined && mlpRawB1 !== undefined) {
    ratios.push({
      name: 'MLP c1 (tutorial, reference): median latency - raw single-row run',
      value: `${fmt(tut1.latency.p50 - mlpRawB1.medianMs, 3)} ms`,
      target: '(reference)',
      met: undefined,
      detail: `tutorial p50 ${fmt(tut1.latency.p50, 3)} ms`,
    });
  }
  ratios.push(...exampleRatios(cells, raw));
  if (protocols !== undefined) ratios.push(...protocolRatios(protocols));
  if (overload !== undefined) {
    ratios.push({
      name: 'Overload (4x capacity): p99 latency of 503 answers',
      value: `${ms(overload.rejected.p99)} ms`,
      target: '<= 5 ms',
      met: overload.rejected.p99 <= 5,
      detail: `p50 ${ms(overload.rejected.p50)} ms, max ${ms(overload.rejected.max)} ms over ${overload.rejected.count} refusals`,
    });
    const total = overload.retryAfter.present + overload.retryAfter.absent;
    ratios.push({
      name: 'Overload: Retry-After on refusals',
      value: `${overload.retryAfter.present}/${total}`,
      target: 'all',
      met: total > 0 && overload.retryAfter.absent === 0,
      detail: `values: ${overload.retryAfter.values.join(', ') || 'none'}`,
    });
    ratios.push({
      name: 'Overload: server RSS first / max / last (MB)',
      value: `${mb(overload.rssFirst)} / ${mb(overload.rssMax)} / ${mb(overload.rssLast)}`,
      target: 'flat',
      met: overload.rssFlat,
      detail:
        `held after full GCs before / after the load: RSS ${mb(overload.heldBefore.rss)} / ${mb(overload.heldAfter.rss)} MB, JS heap ` +
        `${mb(overload.heldBefore.heapUsed)} / ${mb(overload.heldAfter.heapUsed)} MB (flat: RSS after within 5% + 5 MB of before); sampled: idle ${mb(overload.rssIdle)} MB, ` +
        `${overload.rssSeries.length} samples, 1 per second, peaks of the first / second half ${mb(overload.rssPeakFirstHalf)} / ${mb(overload.rssPeakSecondHalf)} MB`,
    });
  }
  return ratios;
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  readonly info: MachineInfo;
  readonly command: string;
  readonly flags: Flags;
  readonly elapsedSeconds: number;
  readonly raw: readonly RawFigures[];
  readonly micro: readonly MicroResult[];
  readonly cells: readonly CellResult[];
  readonly protocols: ProtocolsResult | undefined;
  readonly overload: OverloadResult | undefined;
  readonly ratios: readonly Ratio[];
  readonly configs: Readonly<Record<string, BenchModelConfig>>;
  readonly loadAverage: { readonly start: readonly number[]; readonly end: readonly number[] };
}

/** How much other processes disturbed a set of cells. */
function foreignNote(cells: readonly CellResult[]): string {
  const foreign = cells.map((c) => c.foreignCpuPct).filter((v) => Number.isFinite(v));
  const mean = foreign.reduce((a, b) => a + b, 0) / Math.max(1, foreign.length);
  const disturbed = foreign.filter((v) => v > 30).length;
  const warning = mean > 30 ? '**Disturbed run:** ' : '';
  return `${warning}Other processes on the machine used on average ${fmt(mean, 0)}% of a core during these cells (${disturbed} of ${foreign.length} cells above 30%).`;
}

/** One line on how busy the machine was with other work during the run. */
function loadLine(report: Report): string {
  const avg = (values: readonly number[]): string => values.map((v) => v.toFixed(2)).join(' ');
  const cells = [...report.cells, ...(report.protocols?.cells.map((p) => p.cell) ?? [])];
  return `${foreignNote(cells)} Load average ${avg(report.loadAverage.start)} at the start, ${avg(report.loadAverage.end)} at the end.`;
}

/** Derived figures that say where the time goes, for the cells the ratios use. */
function diagnostics(report: Report): string[] {
  const lines: string[] = [];
  for (const cell of report.cells) {
    const key = `${cell.model}/${cell.server}/c${cell.concurrency}`;
    const interesting =
      (cell.model === 'resnet' && cell.concurrency === 32) ||
      (cell.model === 'mlp' && (cell.concurrency === 64 || cell.concurrency === 1)) ||
      (cell.model === 'ocr' && (cell.concurrency === 16 || cell.concurrency === 32)) ||
      (cell.model === 'iris' && cell.concurrency === 16);
    if (!interesting) continue;
    const micro = report.micro.find((m) => m.model === cell.model);
    const decodeShare = micro === undefined || cell.server.endsWith('-binary') ? Number.NaN : (micro.decodeUs * cell.requestsPerSecond) / 1e4;
    const parts = [
      `server CPU ${fmt(cell.serverCpu.totalPct, 0)}% of a core (main thread ${fmt(cell.serverCpu.mainPct, 0)}%, other threads ${fmt(cell.serverCpu.otherPct, 0)}%)`,
      `main thread ${fmt(cell.mainCpuMsPerRequest, 3)} ms CPU per request`,
    ];
    if (Number.isFinite(decodeShare)) parts.push(`JSON decode alone ~${fmt(decodeShare, 0)}% of a core at this rate`);
    if (cell.batch !== undefined) {
      const top = Object.entries(cell.batch.histogram)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 4)
        .map(([size, count]) => `${size}x${count}`)
        .join(' ');
      parts.push(
        `mean batch ${fmt(cell.batch.meanBatch)} (most executed sizes: ${top})`,
        `per batch: input ${ms(cell.batch.inputMsPerBatch)} / infer ${ms(cell.batch.inferMsPerBatch)} / output ${ms(cell.batch.outputMsPerBatch)} ms`,
        `queue ${ms(cell.batch.meanQueueMs)} ms and server-side total ${ms(cell.batch.meanRequestMs)} ms per request (client p50 ${ms(cell.latency.p50)} ms)`,
      );
    }
    parts.push(`generator ${fmt(cell.generatorCpuPct, 0)}% of a core`);
    lines.push(`- **${key}**: ${parts.join('; ')}.`);
  }
  return lines;
}

function markdown(report: Report): string {
  const { info } = report;
  const sections: string[] = [
    '# Tessera benchmark results',
    '',
    `Generated by \`${report.command}\` on ${info.date} in ${(report.elapsedSeconds / 60).toFixed(1)} min. ` +
      'Figures are from one run and are not edited; see bench/README.md for what each figure means.',
    '',
    '| machine | |',
    '| :-- | :-- |',
    `| CPU | ${info.cpuModel} |`,
    `| cores (available parallelism) | ${info.cores} |`,
    `| memory | ${info.memoryGiB} GiB |`,
    `| kernel | ${info.kernel} |`,
    `| Node.js | ${info.node} |`,
    `| onnxruntime-node | ${info.onnxruntime} |`,
    `| undici (load generator) | ${info.undici} |`,
    `| server under test | ${report.flags.tsx ? 'TypeScript sources through tsx' : 'compiled to JavaScript (bench/.build), plain node'} |`,
    '',
    loadLine(report),
    '',
    '## Ratios',
    '',
    renderMarkdown(ratioTable(report.ratios)),
    '',
    ...report.ratios.map((r) => `- ${r.name}: ${r.detail}.`),
    '',
  ];
  if (report.raw.length > 0) {
    sections.push(
      '## Raw onnxruntime-node baseline',
      '',
      'One InferenceSession in its own process, `session.run` back to back. `*` marks the best items/s of each row group.',
      '',
      renderMarkdown(rawTable(report.raw)),
      '',
    );
  }
  if (report.micro.length > 0) {
    sections.push(
      '## Hot path (main thread, per request)',
      '',
      'decode = `JSON.parse` + V2 decode into typed arrays (the server\'s functions); tutorial decode = `JSON.parse` + `Float32Array.from`; ' +
        'encode = V2 response for one item; worker run = `SessionInstance.execute` at batch 1 (postMessage round trip + run), median.',
      '',
      renderMarkdown(microTable(report.micro, report.raw)),
      '',
    );
  }
  if (report.cells.length > 0) {
    sections.push(
      '## Server cells',
      '',
      'Closed loop, one request = one item. Latency in ms from the client; queue / infer from the server\'s V2 statistics over the same window ' +
        '(infer includes the worker round trip). srv CPU = whole server process, main = its main thread (percent of one core). ' +
        'RSS = max sampled during the cell. foreign = CPU used by other processes on the machine during the window.',
      '',
      renderMarkdown(cellsTable(report.cells)),
      '',
      '### Where the time goes',
      '',
      ...diagnostics(report),
      '',
      '### Server configurations',
      '',
      ...Object.entries(report.configs).map(([name, config]) => `- ${name}: \`${JSON.stringify(config)}\``),
      '- tutorial: `baseline-server.ts` (node:http, `InferenceSession.create(path)` with default options, `session.run` per request on the main thread)',
      '',
    );
  }
  if (report.protocols !== undefined) {
    sections.push(
      `## Protocols: V2 JSON, V2 binary, V2 gRPC at concurrency ${report.protocols.concurrency}`,
      '',
      ...describeProtocols(report.protocols).map((line) => `- ${line}`),
      '',
      renderMarkdown(protocolsTable(report.protocols)),
      '',
    );
    if (report.protocols.raw.length > 0) {
      sections.push('Raw onnxruntime-node for the denominator (`*`: best), run just before the cells:', '', renderMarkdown(protocolsRawTable(report.protocols)), '');
    }
  }
  if (report.overload !== undefined) {
    sections.push(
      '## Overload',
      '',
      `Fixed-cost model (test fixture \`slowModel(${OVERLOAD.batchMs})\`), max_batch_size ${OVERLOAD.maxBatchSize}, max_queue_size ${OVERLOAD.maxQueueSize}, ` +
        `open loop at ${OVERLOAD.overloadFactor}x the measured capacity, ${OVERLOAD.connections} connections.`,
      '',
      ...describeOverload(report.overload).map((line) => `- ${line}`),
      `- RSS every second (MB): ${report.overload.rssSeries.map((v) => mb(v)).join(' ')}`,
      '',
    );
  }
  return sections.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  let flags: Flags | undefined;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (error) {
    console.error((error as Error).message);
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  if (flags === undefined) {
    console.log(USAGE);
    return;
  }
  const info = machineInfo();
  const loadAtStart = loadavg();
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  log(`tessera bench: ${info.cpuModel}, ${info.cores} cores, node ${info.node}, onnxruntime-node ${info.onnxruntime}`);
  const modelKeys = MODEL_KEYS.filter((key) => flags.parts.has(key));
  const runProtocolsPart = flags.parts.has('protocols') && !flags.skip.has('protocols') && !flags.explore;
  if (!flags.tsx) {
    const t0 = performance.now();
    useCompiledServers(await buildServerScripts());
    log(`compiled the server into bench/.build in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const files = await prepareModels([...new Set<ModelKey>([...modelKeys, ...(runProtocolsPart ? PROTOCOLS.models : [])])]);
  try {
    const models = modelKeys.map((key) => files.models[key]);
    if (flags.explore) {
      const quick = flags.quick;
      const timing: Timing = {
        warmupMs: quick ? 1_000 : 2_000,
        durationMs: quick ? 3_000 : 6_000,
        quietThresholdPct: 15,
        quietMaxWaitMs: 3_000,
        retryForeignPct: 30,
        retries: RETRIES,
      };
      log('explore: one setting changed at a time from the base configuration');
      // The Iris model behaves as the MLP (tiny, overhead-bound): not explored unless asked for.
      const explored = flags.only ? models : models.filter((model) => model.key !== 'iris');
      const rows = await runExplore(files, explored, timing, flags.delayUs, log);
      const table = exploreTable(rows);
      log('');
      log(renderConsole(table));
      log(foreignNote(rows.map((row) => row.cell)));
      const text = [
        '# Tessera server-defaults exploration',
        '',
        `Generated by \`${command}\` on ${info.date} (${info.cpuModel}, ${info.cores} cores, node ${info.node}, onnxruntime-node ${info.onnxruntime}).`,
        `Each variant changes one setting of the base configuration; cells: warm-up ${timing.warmupMs / 1000} s, window ${timing.durationMs / 1000} s.`,
        '',
        renderMarkdown(table),
        '',
        foreignNote(rows.map((row) => row.cell)),
        '',
      ].join('\n');
      if (!flags.quick || flags.write) {
        await mkdir(flags.outDir, { recursive: true });
        await writeFile(join(flags.outDir, 'EXPLORE.md'), text);
        log(`wrote ${join(flags.outDir, 'EXPLORE.md')}`);
      }
      return;
    }

    const raw: RawFigures[] = [];
    const micro: MicroResult[] = [];
    const cells: CellResult[] = [];
    const paired: PairedRound[] = [];
    const configs: Record<string, BenchModelConfig> = {};
    if (!flags.skip.has('raw')) {
      log('raw onnxruntime baseline');
      for (const model of models) raw.push(...(await runRaw(model, flags.quick)));
    }
    if (!flags.skip.has('micro')) {
      log('hot path');
      for (const model of models) {
        const result = await measureMicro(model, requestBodies(model, 1, 1)[0]!, flags.quick ? 300 : 1_000);
        micro.push(result);
        log(`  ${model.key}: decode ${fmt(result.decodeUs)} us, tutorial decode ${fmt(result.tutorialDecodeUs)} us, encode ${fmt(result.encodeUs)} us, worker run ${fmt(result.workerRunUs)} us`);
      }
    }
    for (const model of models) {
      log(`server cells: ${model.title}`);
      // Large-input models also get a binary-body cell on the same server: how much of the
      // JSON cell's cost is JSON (not in the brief's matrix; reported beside it).
      const large = model.key === 'resnet' || model.key === 'ocr';
      const binaryConcurrencies = large && !flags.skip.has('binary') ? [32] : undefined;
      const variants: ServerVariant[] = [
        { label: 'tessera-batch', config: serverModelConfig(model, true, flags.delayUs), ...(binaryConcurrencies === undefined ? {} : { binaryConcurrencies }) },
      ];
      if (!large && flags.delayUs !== 0 && !flags.skip.has('d0')) {
        variants.push({ label: 'tessera-batch-d0', config: serverModelConfig(model, true, 0) });
      }
      if (!flags.skip.has('nobatch')) variants.push({ label: 'tessera-nobatch', config: serverModelConfig(model, false, 0) });
      if (!flags.skip.has('tutorial')) variants.push({ label: 'tutorial' });
      for (const variant of variants) if (variant.config !== undefined) configs[`${model.key} ${variant.label}`] = variant.config;
      cells.push(...(await runServerCells(files, model, variants, flags)));
      const resnetRaw = raw.find((r) => r.model === 'resnet' && !r.spinning);
      if (model.key === 'resnet' && flags.concurrencies.includes(32) && resnetRaw !== undefined) {
        paired.push(...(await runResnetPaired(files, model, variants[0]!.config!, resnetRaw.best, flags)));
      }
    }
    let protocols: ProtocolsResult | undefined;
    if (runProtocolsPart) {
      log(`protocols: V2 JSON, V2 binary, V2 gRPC at concurrency ${PROTOCOLS.concurrency}`);
      protocols = await runProtocols(files, { quick: flags.quick, log, delayUs: flags.delayUs, retries: RETRIES });
    }
    let overload: OverloadResult | undefined;
    if (flags.parts.has('overload') && !flags.skip.has('overload')) {
      log('overload');
      overload = await runOverload(files, { quick: flags.quick, log });
      for (const line of describeOverload(overload)) log(`  ${line}`);
    }

    const ratios = computeRatios(cells, raw, overload, protocols, paired);
    const report: Report = {
      info,
      command,
      flags,
      elapsedSeconds: (performance.now() - started) / 1000,
      raw,
      micro,
      cells,
      protocols,
      overload,
      ratios,
      configs,
      loadAverage: { start: loadAtStart, end: loadavg() },
    };
    log('');
    if (raw.length > 0) log(`${renderConsole(rawTable(raw))}\n`);
    if (micro.length > 0) log(`${renderConsole(microTable(micro, raw))}\n`);
    if (cells.length > 0) log(`${renderConsole(cellsTable(cells))}\n`);
    if (protocols !== undefined) {
      if (protocols.raw.length > 0) log(`${renderConsole(protocolsRawTable(protocols))}\n`);
      log(`${renderConsole(protocolsTable(protocols))}\n`);
    }
    if (overload !== undefined) log(`${describeOverload(overload).join('\n')}\n`);
    log('RATIOS');
    log(renderConsole(ratioTable(ratios)));
    for (const ratio of ratios) log(`  ${ratio.name}: ${ratio.detail}`);
    if (cells.length > 0 || protocols !== undefined) log(loadLine(report));
    log(`\ntotal ${(report.elapsedSeconds / 60).toFixed(1)} min`);
    if (flags.write) {
      await mkdir(flags.outDir, { recursive: true });
      await writeFile(join(flags.outDir, 'RESULTS.md'), markdown(report));
      await writeFile(
        join(flags.outDir, 'results.json'),
        JSON.stringify({ ...report, flags: { ...flags, parts: [...flags.parts], skip: [...flags.skip] } }, (_key, value: unknown) =>
          typeof value === 'number' && !Number.isFinite(value) ? null : value,
        2),
      );
      log(`wrote ${join(flags.outDir, 'RESULTS.md')} and results.json`);
    } else {
      log('(partial or quick run: bench/RESULTS.md not written; pass --write to write it)');
    }
  } finally {
    await files.cleanup();
  }
}

await main();

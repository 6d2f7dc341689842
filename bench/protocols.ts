/**
 * The protocol comparison (issue 4): the same model on the same Tessera server, driven at
 * concurrency 16 over
 *
 *   v2-json     KServe V2 REST, JSON tensors (`data`), JSON outputs
 *   v2-binary   KServe V2 REST, binary tensor extension: JSON header + raw float32 bytes
 *               (`Inference-Header-Content-Length`, `binary_data_size`), binary outputs
 *               requested (`binary_data_output`)
 *   v2-grpc     KServe V2 gRPC, ModelInfer with the tensor in `raw_input_contents`
 *               (outputs in `raw_output_contents`), one HTTP/2 channel; the generator
 *               writes gRPC's wire format on Node's HTTP/2 client (`--grpc-client grpc-js`
 *               drives it through @grpc/grpc-js instead)
 *
 * against raw in-process onnxruntime-node (raw-child.ts, the server's default session options,
 * best items/s over the batch sizes a closed loop of 16 can form: 1, 8, 16). Target for the
 * ResNet-18-shaped model: binary and gRPC each >= 0.9 x raw throughput, and less main-thread
 * CPU per request than JSON. The MLP gets the same three cells as reference lines (its raw
 * run is far beyond any server; what matters there is the per-request cost).
 *
 * Each cell is a bench/lib/cells.ts cell: server CPU and main-thread CPU from /proc, V2
 * statistics over the window, foreign CPU, a re-run when disturbed. Before each cell one
 * request is sent and its answer decoded, so a protocol that answers something else (an
 * error, JSON instead of binary outputs) stops the run instead of being measured.
 *
 * Run alone:  node --import tsx bench/protocols.ts [--quick] [--only resnet,mlp] [--protocols v2-binary,...] [--rounds N] [--channels N] [--grpc-client h2|grpc-js] [--delay US] [--tsx]
 *             (npm run bench:protocols -- --quick)
 * `npm run bench` runs it as its `protocols` part and puts the section in RESULTS.md.
 */
import './lib/onnxruntime-env.js';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import { buildServerScripts } from './lib/build.js';
import { runCell, type CellResult, type Timing } from './lib/cells.js';
import { BracketedRaw } from './lib/bracketed-raw.js';
import { RAW_SESSION_LAYOUTS, rawLayoutLabel, runRawBaseline, startServerProcess, useCompiledServers, type ServerProcess } from './lib/children.js';
import { checkGrpcInfer, grpcClosedLoop, grpcInferBodies, type GrpcClient } from './lib/grpc-loadgen.js';
import type { RawBatchResult } from './lib/ipc.js';
import { prepareModels, serverModelConfig, type BenchModel, type BenchModelConfig, type ModelFiles } from './lib/models.js';
import { binaryRequestBodies, requestBodies } from './lib/payloads.js';
import { fmt, median, ms, rate } from './lib/stats.js';
import { ratioTable, renderConsole, type Ratio, type Table } from './lib/table.js';

export type ProtocolModel = 'resnet' | 'mlp';
export type Protocol = 'v2-json' | 'v2-binary' | 'v2-grpc';

export const PROTOCOLS = {
  concurrency: 16,
  models: ['resnet', 'mlp'] as readonly ProtocolModel[],
  protocols: ['v2-json', 'v2-binary', 'v2-grpc'] as readonly Protocol[],
  /** Raw batch sizes for the denominator: what a closed loop of 16 single-item requests can batch. */
  rawBatchSizes: [1, 8, 16],
  /**
   * Rounds of the ResNet cells (each round drives every protocol, the order rotated from round
   * to round); the ratios take each protocol's median round. A single 8 s cell of this model
   * moves by 10-15% from run to run on this machine.
   */
  resnetRounds: 3,
  /** Target of the binary and gRPC cells: server items/s / raw best items/s. */
  target: 0.9,
  /** max_queue_delay_microseconds of the server (as the main matrix's tessera-batch). */
  delayUs: 500,
} as const;

export interface ProtocolCell {
  readonly model: ProtocolModel;
  readonly protocol: Protocol;
  readonly cell: CellResult;
  /** 1-based; the MLP reference cells run one round. */
  readonly round: number;
  readonly requestBytes: number;
  /** What the pre-cell check found in the answer. */
  readonly answer: string;
  /** ResNet: raw items/s measured around this cell's round (see bracketed-raw.ts). */
  readonly rawItemsPerSecond?: number;
}

export interface ProtocolRaw {
  readonly model: ProtocolModel;
  readonly results: readonly RawBatchResult[];
  readonly best: RawBatchResult;
}

export interface ProtocolsResult {
  readonly concurrency: number;
  readonly channels: number;
  readonly grpcClient: GrpcClient;
  readonly raw: readonly ProtocolRaw[];
  readonly cells: readonly ProtocolCell[];
  /** ResNet: raw items/s at the best batch size, measured before the first round and after each round. */
  readonly rawMarks: readonly number[];
  readonly configs: Readonly<Record<string, BenchModelConfig>>;
  readonly timing: Readonly<Record<string, { readonly warmupMs: number; readonly durationMs: number }>>;
}

export interface ProtocolsOptions {
  readonly quick: boolean;
  readonly log: (line: string) => void;
  readonly models?: readonly ProtocolModel[];
  /** gRPC channels the generator opens (default 1: every call multiplexed on one connection). */
  readonly channels?: number;
  /** The gRPC generator's client (default 'h2', see grpc-loadgen.ts). */
  readonly grpcClient?: GrpcClient;
  readonly delayUs?: number;
  /** The protocols to drive, in order (default: all three). */
  readonly protocols?: readonly Protocol[];
  /** Rounds of the ResNet cells (default PROTOCOLS.resnetRounds; 1 with `quick`). */
  readonly rounds?: number;
  /** Re-runs of disturbed cells left (shared with the caller's other cells). */
  readonly retries?: { remaining: number };
}

function timingFor(model: ProtocolModel, quick: boolean, retries: { remaining: number }): Timing {
  const slow = model === 'resnet';
  return {
    warmupMs: quick ? 1_000 : slow ? 3_000 : 2_000,
    durationMs: quick ? 3_000 : slow ? 8_000 : 6_000,
    quietThresholdPct: 15,
    quietMaxWaitMs: 3_000,
    retryForeignPct: 30,
    retries,
  };
}

async function runRaw(model: BenchModel, quick: boolean): Promise<ProtocolRaw> {
  const raw = await runRawBaseline(model, PROTOCOLS.rawBatchSizes, {}, quick);
  return { model: model.key as ProtocolModel, ...raw };
}

// ---------------------------------------------------------------------------------------------
// One request per protocol, decoded, before its cell

function expectOutput(what: string, model: BenchModel, datatype: unknown, shape: readonly unknown[] | undefined, elements: number): string {
  const dims = (shape ?? []).map(Number);
  if (datatype !== 'FP32' || dims.length !== 2 || dims[0] !== 1 || dims[1] !== model.outputElements || elements !== model.outputElements) {
    throw new Error(`${what}: unexpected answer: datatype ${String(datatype)}, shape [${dims.join(',')}], ${elements} elements (expected FP32 [1,${model.outputElements}])`);
  }
  return `${model.output} FP32 [1,${model.outputElements}]`;
}

async function checkHttp(server: ServerProcess, model: BenchModel, body: Buffer, headers: Record<string, string>, binary: boolean): Promise<string> {
  const what = `${model.key} ${binary ? 'v2-binary' : 'v2-json'}`;
  const response = await request(`${server.origin}/v2/models/${model.name}/infer`, { method: 'POST', headers, body, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  if (response.statusCode !== 200) throw new Error(`${what}: status ${response.statusCode}: ${bytes.subarray(0, 300).toString('utf8')}`);
  type Output = { name: string; datatype: string; shape: number[]; data?: unknown[]; parameters?: { binary_data_size?: number } };
  if (!binary) {
    const output = (JSON.parse(bytes.toString('utf8')) as { outputs: Output[] }).outputs[0];
    return `JSON: ${expectOutput(what, model, output?.datatype, output?.shape, output?.data?.length ?? 0)}`;
  }
  const headerLength = Number(response.headers['inference-header-content-length']);
  if (!Number.isInteger(headerLength)) throw new Error(`${what}: the answer has no Inference-Header-Content-Length (binary outputs were asked for)`);
  const output = (JSON.parse(bytes.subarray(0, headerLength).toString('utf8')) as { outputs: Output[] }).outputs[0];
  const size = output?.parameters?.binary_data_size;
  if (size !== bytes.length - headerLength) throw new Error(`${what}: binary_data_size ${size} but ${bytes.length - headerLength} bytes follow the header`);
  return `binary: ${expectOutput(what, model, output?.datatype, output?.shape, size / 4)}, ${size} bytes after a ${headerLength}-byte header`;
}

async function checkGrpc(address: string, model: BenchModel, body: Buffer): Promise<string> {
  const answer = await checkGrpcInfer(address, body);
  const output = answer.outputs[0];
  const raw = answer.raw_output_contents[0];
  return `raw_output_contents: ${expectOutput(`${model.key} v2-grpc`, model, output?.datatype, output?.shape, (raw?.length ?? 0) / 4)}`;
}

// ---------------------------------------------------------------------------------------------

export async function runProtocols(files: ModelFiles, options: ProtocolsOptions): Promise<ProtocolsResult> {
  const { log, quick } = options;
  const concurrency = PROTOCOLS.concurrency;
  const channels = options.channels ?? 1;
  const grpcClient = options.grpcClient ?? 'h2';
  const retries = options.retries ?? { remaining: 3 };
  const raw: ProtocolRaw[] = [];
  const cells: ProtocolCell[] = [];
  let bracket: BracketedRaw | undefined;
  const configs: Record<string, BenchModelConfig> = {};
  const timings: Record<string, { warmupMs: number; durationMs: number }> = {};
  for (const key of options.models ?? PROTOCOLS.models) {
    const model = files.models[key];
    if (key === 'resnet') {
      const figures = await runRaw(model, quick);
      raw.push(figures);
      log(`  raw ${key} (server default options): ` + figures.results.map((r) => `${rawLayoutLabel(r)} (intra ${r.intraOpThreads}) ${ms(r.medianMs)} ms ${rate(r.itemsPerSecond)}/s`).join(', '));
      bracket = BracketedRaw.forModel(model, figures.best, quick);
    }
    const config = serverModelConfig(model, true, options.delayUs ?? PROTOCOLS.delayUs);
    configs[`${key} tessera-batch`] = config;
    const server = await startServerProcess('server-child.ts', { repository: await files.repository(model.name, model.file, config), server: {} });
    try {
      if (server.grpcPort === undefined) throw new Error('the server child reported no gRPC port');
      const address = `127.0.0.1:${server.grpcPort}`;
      log(`  ${key} server: started in ${(server.startMs / 1000).toFixed(1)} s (pid ${server.pid}, HTTP ${server.port}, gRPC ${server.grpcPort})`);
      const timing = timingFor(key, quick, retries);
      timings[key] = { warmupMs: timing.warmupMs, durationMs: timing.durationMs };
      const order = options.protocols ?? PROTOCOLS.protocols;
      const rounds = key === 'resnet' ? (options.rounds ?? (quick ? 1 : PROTOCOLS.resnetRounds)) : 1;
      const plan = Array.from({ length: rounds }, (_, r) => order.map((_, i) => ({ round: r + 1, protocol: order[(i + r) % order.length]! }))).flat();
      const roundBracket = key === 'resnet' ? bracket : undefined;
      const markRaw = async (when: string): Promise<void> => {
        if (roundBracket === undefined) return;
        const value = await roundBracket.mark();
        log(`    raw ${key} ${rawLayoutLabel(raw.at(-1)!.best)} ${when}: ${rate(value)} items/s`);
      };
      const modelCells: ProtocolCell[] = [];
      await markRaw('before round 1');
      for (const [index, { round, protocol }] of plan.entries()) {
        let cell: CellResult;
        let answer: string;
        let requestBytes: number;
        const base = { server, serverLabel: protocol, model, hasStats: true, concurrency, timing } as const;
        if (protocol === 'v2-grpc') {
          const bodies = grpcInferBodies(model);
          requestBytes = bodies[0]!.length;
          answer = await checkGrpc(address, model, bodies[0]!);
          cell = await runCell({ ...base, bodies, drive: (loop) => grpcClosedLoop({ ...loop, address, bodies, channels, client: grpcClient }) });
        } else if (protocol === 'v2-binary') {
          const binary = binaryRequestBodies(model, 1, 4, true);
          const headers = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(binary.headerLength) };
          requestBytes = binary.bodies[0]!.length;
          answer = await checkHttp(server, model, binary.bodies[0]!, headers, true);
          cell = await runCell({ ...base, bodies: binary.bodies, headers });
        } else {
          const bodies = requestBodies(model);
          requestBytes = bodies[0]!.length;
          answer = await checkHttp(server, model, bodies[0]!, { 'content-type': 'application/json' }, false);
          cell = await runCell({ ...base, bodies });
        }
        modelCells.push({ model: key, protocol, cell, requestBytes, answer, round });
        log(
          `    ${key} ${protocol}${rounds > 1 ? ` round ${round}` : ''} c${concurrency} (${requestBytes} bytes; ${answer}): ${rate(cell.itemsPerSecond)} items/s  p50 ${ms(cell.latency.p50)}  p99 ${ms(cell.latency.p99)} ms` +
            `  batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}  errors ${cell.errors}  main ${fmt(cell.mainCpuMsPerRequest, 3)} ms/req` +
            `  srv CPU ${fmt(cell.serverCpu.totalPct, 0)}% (main ${fmt(cell.serverCpu.mainPct, 0)}%)  gen CPU ${fmt(cell.generatorCpuPct, 0)}%  foreign ${fmt(cell.foreignCpuPct, 0)}%` +
            (cell.attempts > 1 ? ` (attempt ${cell.attempts})` : ''),
        );
        if (plan[index + 1]?.round !== round) await markRaw(`after round ${round}`);
      }
      cells.push(...modelCells.map((c) => (roundBracket === undefined ? c : { ...c, rawItemsPerSecond: roundBracket.forRound(c.round) })));
    } finally {
      await server.stop();
    }
  }
  return { concurrency, channels, grpcClient, raw, cells, rawMarks: bracket?.measurements ?? [], configs, timing: timings };
}

// ---------------------------------------------------------------------------------------------
// Report

function errorsText(cell: CellResult): string {
  const bad = Object.entries(cell.statusCounts).filter(([status]) => !status.startsWith('2') && status !== 'OK');
  return bad.length === 0 ? '0' : bad.map(([status, count]) => `${count}x${status}`).join(' ');
}

export function protocolsTable(result: ProtocolsResult): Table {
  return {
    headers: [
      'model', 'protocol', 'round', 'conc', 'request bytes', 'items/s', 'x raw', 'p50 ms', 'p99 ms', 'errors', 'mean batch', 'queue ms', 'infer ms/batch',
      'srv CPU %', 'main %', 'main ms/req', 'req/srv CPU-s', 'gen CPU %', 'foreign %',
    ],
    rows: [...result.cells].sort((a, b) => PROTOCOLS.models.indexOf(a.model) - PROTOCOLS.models.indexOf(b.model) || PROTOCOLS.protocols.indexOf(a.protocol) - PROTOCOLS.protocols.indexOf(b.protocol) || a.round - b.round).map(({ model, protocol, cell, requestBytes, round, rawItemsPerSecond }) => {
      const raw = result.raw.find((r) => r.model === model);
      const median = medianCell(result, model, protocol);
      return [
        model,
        protocol,
        String(round) + (median === cell && result.cells.some((c) => c.model === model && c.protocol === protocol && c.round !== round) ? ' (median)' : ''),
        String(cell.concurrency),
        String(requestBytes),
        rate(cell.itemsPerSecond),
        raw === undefined ? '-' : fmt(cell.itemsPerSecond / (rawItemsPerSecond ?? raw.best.itemsPerSecond), 2),
        ms(cell.latency.p50),
        ms(cell.latency.p99),
        errorsText(cell),
        fmt(cell.batch?.meanBatch ?? Number.NaN),
        ms(cell.batch?.meanQueueMs ?? Number.NaN),
        ms(cell.batch?.inferMsPerBatch ?? Number.NaN),
        fmt(cell.serverCpu.totalPct, 0),
        fmt(cell.serverCpu.mainPct, 0),
        fmt(cell.mainCpuMsPerRequest, 3),
        rate(cell.requestsPerSecond / (cell.serverCpu.totalPct / 100)),
        fmt(cell.generatorCpuPct, 0),
        fmt(cell.foreignCpuPct, 0) + (cell.attempts > 1 ? ' (retried)' : ''),
      ];
    }),
  };
}

export function protocolsRawTable(result: ProtocolsResult): Table {
  return {
    headers: ['model', 'sessions', 'intra', 'batch', 'median ms', 'p99 ms', 'items/s', 'CPU %', 'foreign %', 'runs'],
    rows: result.raw.flatMap((figures) =>
      figures.results.map((r) => [
        figures.model,
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

/** The round of `protocol` on `model` with the median items/s (the lower middle of an even count). */
export function medianCell(result: ProtocolsResult, model: ProtocolModel, protocol: Protocol): CellResult | undefined {
  const all = result.cells.filter((p) => p.model === model && p.protocol === protocol).map((p) => p.cell);
  all.sort((a, b) => a.itemsPerSecond - b.itemsPerSecond);
  return all[Math.floor((all.length - 1) / 2)];
}

const LABEL: Readonly<Record<Protocol, string>> = { 'v2-json': 'V2 JSON', 'v2-binary': 'V2 binary', 'v2-grpc': 'V2 gRPC' };
const TITLE: Readonly<Record<ProtocolModel, string>> = { resnet: 'ResNet', mlp: 'MLP' };

export function protocolRatios(result: ProtocolsResult): Ratio[] {
  const ratios: Ratio[] = [];
  const c = result.concurrency;
  const find = (model: ProtocolModel, protocol: Protocol): CellResult | undefined => medianCell(result, model, protocol);
  const raw = result.raw.find((r) => r.model === 'resnet');
  const json = find('resnet', 'v2-json');
  if (raw !== undefined) {
    for (const protocol of PROTOCOLS.protocols) {
      const rounds = result.cells.filter((p) => p.model === 'resnet' && p.protocol === protocol);
      const cell = find('resnet', protocol);
      if (cell === undefined) continue;
      const roundRatios = rounds.map((p) => p.cell.itemsPerSecond / (p.rawItemsPerSecond ?? raw.best.itemsPerSecond));
      const value = median(roundRatios);
      const targeted = protocol !== 'v2-json';
      ratios.push({
        name: `ResNet c${c} ${LABEL[protocol]}: server items/s / raw items/s`,
        value: fmt(value, 2),
        target: targeted ? `>= ${PROTOCOLS.target}` : '(reference)',
        met: targeted ? value >= PROTOCOLS.target : undefined,
        detail:
          `median of ${rounds.length} round${rounds.length === 1 ? '' : 's'}: ` +
          rounds.map((p, i) => `${rate(p.cell.itemsPerSecond)}/s vs raw ${rate(p.rawItemsPerSecond ?? raw.best.itemsPerSecond)}/s = ${fmt(roundRatios[i]!, 2)}`).join('; ') +
          ` (raw: ${rawLayoutLabel(raw.best)}, the best of batch sizes ${PROTOCOLS.rawBatchSizes.join(', ')} in ${RAW_SESSION_LAYOUTS.map((n) => (n === 1 ? 'one session' : `${n} sessions side by side`)).join(' and ')}, server default session options, measured before the first round and after each, a round taking the mean of its two); ` +
          `median cell p50 ${ms(cell.latency.p50)} / p99 ${ms(cell.latency.p99)} ms, mean batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}, ${errorsText(cell)} errors`,
      });
    }
  }
  for (const model of ['resnet', 'mlp'] as const) {
    const jsonCell = model === 'resnet' ? json : find('mlp', 'v2-json');
    if (jsonCell === undefined) continue;
    for (const protocol of ['v2-binary', 'v2-grpc'] as const) {
      const cell = find(model, protocol);
      if (cell === undefined) continue;
      if (model === 'resnet') {
        ratios.push({
          name: `ResNet c${c} ${LABEL[protocol]}: main-thread CPU per request (vs V2 JSON)`,
          value: `${fmt(cell.mainCpuMsPerRequest, 3)} vs ${fmt(jsonCell.mainCpuMsPerRequest, 3)} ms`,
          target: '< V2 JSON',
          met: cell.mainCpuMsPerRequest < jsonCell.mainCpuMsPerRequest,
          detail: `main thread ${fmt(cell.serverCpu.mainPct, 0)}% of a core at ${rate(cell.requestsPerSecond)} req/s vs V2 JSON ${fmt(jsonCell.serverCpu.mainPct, 0)}% at ${rate(jsonCell.requestsPerSecond)} req/s`,
        });
      } else {
        ratios.push({
          name: `${TITLE[model]} c${c} ${LABEL[protocol]} (reference): req/s / V2 JSON req/s; main-thread ms per request`,
          value: `${fmt(cell.requestsPerSecond / jsonCell.requestsPerSecond, 2)}; ${fmt(cell.mainCpuMsPerRequest, 3)} vs ${fmt(jsonCell.mainCpuMsPerRequest, 3)} ms`,
          target: '(reference)',
          met: undefined,
          detail:
            `${LABEL[protocol]} ${rate(cell.requestsPerSecond)} req/s p50 ${ms(cell.latency.p50)} / p99 ${ms(cell.latency.p99)} ms (mean batch ${fmt(cell.batch?.meanBatch ?? Number.NaN)}) ` +
            `vs V2 JSON ${rate(jsonCell.requestsPerSecond)} req/s p50 ${ms(jsonCell.latency.p50)} / p99 ${ms(jsonCell.latency.p99)} ms`,
        });
      }
    }
  }
  return ratios;
}

/** What the protocol cells send and how they are timed, for RESULTS.md and the console. */
export function describeProtocols(result: ProtocolsResult): string[] {
  const resnetRounds = Math.max(0, ...result.cells.filter((p) => p.model === 'resnet').map((p) => p.round));
  const timing = Object.entries(result.timing)
    .map(([model, t]) => `${model} ${t.warmupMs / 1000} s warm-up + ${t.durationMs / 1000} s window`)
    .join(', ');
  return [
    `One Tessera server per model (\`tessera-batch\` configuration: ${Object.entries(result.configs)
      .map(([name, config]) => `${name} \`${JSON.stringify(config)}\``)
      .join('; ')}), driven closed-loop at concurrency ${result.concurrency} over each protocol in turn; ${timing}.` +
      (resnetRounds > 1 ? ` The ResNet cells run in ${resnetRounds} rounds, the protocols' order rotated each round, with raw onnxruntime measured before the first round and after each (${result.rawMarks.map((v) => rate(v)).join(', ')} items/s): each round's ratio is against the mean of the raw figures either side of it, and a protocol's ratio is the median of its rounds' ratios. (median) in the table marks the round with the median items/s, whose CPU figures the comparisons use.` : ''),
    'v2-json: V2 REST with JSON `data` (4-decimal values), JSON outputs. v2-binary: V2 REST binary tensor extension (JSON header with `binary_data_size` + raw float32, ' +
      '`Inference-Header-Content-Length`), `binary_data_output: true`. ' +
      `v2-grpc: ModelInfer with \`raw_input_contents\`, outputs in \`raw_output_contents\`; ${result.grpcClient === 'h2' ? "gRPC's wire format on Node's own HTTP/2 client (after a check call through @grpc/grpc-js)" : '@grpc/grpc-js'}, ${result.channels} channel${result.channels === 1 ? '' : 's'} (HTTP/2 connection${result.channels === 1 ? '' : 's'}) shared by the ${result.concurrency} workers, requests serialized once.`,
    'Before each cell one request is sent and its answer decoded: ' + result.cells.filter((p) => p.round === 1).map((p) => `${p.model} ${p.protocol}: ${p.answer}`).join('; ') + '.',
    `x raw = server items/s / raw items/s of the cell's round (server default session options, at the best of batch sizes ${PROTOCOLS.rawBatchSizes.join(', ')}, in one session on every core and in ${RAW_SESSION_LAYOUTS.at(-1)} sessions side by side as the server's default instances run: a closed loop of ${result.concurrency} single-item requests cannot form larger batches). ` +
      'main ms/req = CPU of the server\'s main (event-loop) thread per answered request, from /proc/<pid>/task/<pid>/schedstat.',
  ];
}

// ---------------------------------------------------------------------------------------------

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      protocols: { type: 'string' },
      rounds: { type: 'string' },
      channels: { type: 'string' },
      'grpc-client': { type: 'string' },
      delay: { type: 'string' },
      tsx: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log('usage: node --import tsx bench/protocols.ts [--quick] [--only resnet,mlp] [--protocols v2-json,v2-binary,v2-grpc] [--rounds N (ResNet, default 3)] [--channels N (gRPC, default 1)] [--grpc-client h2|grpc-js] [--delay US] [--tsx]');
    process.exit(0);
  }
  const models = values.only === undefined ? PROTOCOLS.models : (values.only.split(',').map((m) => m.trim()) as ProtocolModel[]);
  for (const model of models) if (!PROTOCOLS.models.includes(model)) throw new Error(`--only: unknown '${model}' (expected ${PROTOCOLS.models.join(', ')})`);
  const protocols = values.protocols === undefined ? PROTOCOLS.protocols : (values.protocols.split(',').map((p) => p.trim()) as Protocol[]);
  for (const protocol of protocols) if (!PROTOCOLS.protocols.includes(protocol)) throw new Error(`--protocols: unknown '${protocol}' (expected ${PROTOCOLS.protocols.join(', ')})`);
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1 || rounds > 20)) throw new Error('--rounds: an integer from 1 to 20');
  const channels = values.channels === undefined ? 1 : Number(values.channels);
  if (!Number.isInteger(channels) || channels < 1 || channels > 64) throw new Error('--channels: an integer from 1 to 64');
  const grpcClient = (values['grpc-client'] ?? 'h2') as GrpcClient;
  if (grpcClient !== 'h2' && grpcClient !== 'grpc-js') throw new Error("--grpc-client: 'h2' or 'grpc-js'");
  const delayUs = values.delay === undefined ? PROTOCOLS.delayUs : Number(values.delay);
  if (!Number.isInteger(delayUs) || delayUs < 0 || delayUs > 1_000_000) throw new Error('--delay: microseconds from 0 to 1000000');
  const started = performance.now();
  if (values.tsx !== true) useCompiledServers(await buildServerScripts());
  const files = await prepareModels(models);
  try {
    console.log(`protocols: ${models.join(', ')} at concurrency ${PROTOCOLS.concurrency}${values.quick === true ? ' (quick)' : ''}`);
    const result = await runProtocols(files, { quick: values.quick === true, log: (line) => console.log(line), models, protocols, channels, grpcClient, delayUs, ...(rounds === undefined ? {} : { rounds }) });
    console.log('');
    if (result.raw.length > 0) console.log(`${renderConsole(protocolsRawTable(result))}\n`);
    console.log(`${renderConsole(protocolsTable(result))}\n`);
    const ratios = protocolRatios(result);
    console.log(renderConsole(ratioTable(ratios)));
    for (const ratio of ratios) console.log(`  ${ratio.name}: ${ratio.detail}`);
    for (const line of describeProtocols(result)) console.log(`  ${line}`);
    console.log(`\ntotal ${((performance.now() - started) / 60_000).toFixed(1)} min`);
  } finally {
    await files.cleanup();
  }
}

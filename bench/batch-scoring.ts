/**
 * Batch scoring benchmark: `tessera batch` Parquet -> Parquet against raw onnxruntime-node.
 *
 *   node --import tsx bench/batch-scoring.ts [--rows 1000000] [--batch-size 1024] [--rounds 3] [--tsx]
 *
 * Generates (once, cached under bench/.cache/batch-scoring/) a Parquet file of `rows` rows x 64
 * FP32 features (plus an id), in row groups of 100k rows, snappy-compressed. Then, for `rounds`
 * rounds, each run in its own child process, alternating which goes first:
 *
 *  (a) raw: onnxruntime-node in-process on the same model (the 64 -> 256 -> 256 -> 10 MLP), one
 *      session, at the same batch size: the rows are read from the same Parquet file and made
 *      into row-major Float32Array batches beforehand, untimed, then `session.run` goes back to
 *      back over all of them. This is the denominator, raw inference throughput: no
 *      Parquet I/O is in it. Run twice per round, with onnxruntime's default session options
 *      (threads = cores, spinning on) and with Tessera's (no spinning, threads = cores); the
 *      faster is the round's baseline;
 *  (b) `tessera batch mlp -i rows.parquet -o scored.parquet --features f0..f63 --passthrough id`
 *      with its defaults (in-process engine, Parquet out, checkpointing on): rows/s over the
 *      job's wall time less its model load. The CLI runs compiled to JavaScript (into the cache,
 *      as `npm run build` would), as installed; `--tsx` runs it from the sources instead.
 *
 * It prints the medians: rows/s of both and their ratio (target >= 0.80), CPU seconds per
 * million rows of both (user + system of every thread; less sensitive than wall time to other
 * processes on the machine), the peak RSS of the batch process (process.resourceUsage().maxRSS,
 * which covers the worker threads; target < 1 GiB), whether the target is met, and the load
 * average, since other processes on the machine skew the figures.
 */
import './lib/onnxruntime-env.js';
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './lib/stats.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const CACHE = path.join(HERE, '.cache', 'batch-scoring');
const FEATURES = 64;
const GROUP_ROWS = 100_000;

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected a positive integer`);
  return value;
}

// ---------------------------------------------------------------------------
// Child: raw onnxruntime-node
// ---------------------------------------------------------------------------

async function rawChild(file: string, modelPath: string, batchSize: number, variant: string): Promise<void> {
  const ort = await import('onnxruntime-node');
  const { parquetMetadataAsync, parquetRead } = await import('hyparquet');
  const loadStarted = performance.now();
  // 'default': onnxruntime's default session options (threads = cores, spinning on);
  // 'tessera': the options Tessera's instances use (no thread spinning), with one session
  // using every core (threads = cores), as a single loop would.
  const options =
    variant === 'tessera'
      ? {
          intraOpNumThreads: availableParallelism(),
          interOpNumThreads: 1,
          graphOptimizationLevel: 'all' as const,
          executionMode: 'sequential' as const,
          enableCpuMemArena: true,
          extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
        }
      : {};
  const session = await ort.InferenceSession.create(modelPath, options);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  // The rows are read from the same Parquet file and made into row-major batches beforehand,
  // untimed: the baseline is raw inference throughput, session.run back to back.
  const handle = await open(file, 'r');
  const { size } = await handle.stat();
  const buffer = {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = end ?? size;
      const bytes = new Uint8Array(stop - start);
      let done = 0;
      while (done < bytes.length) done += (await handle.read(bytes, done, bytes.length - done, start + done)).bytesRead;
      return bytes.buffer;
    },
  };
  // Timed on its own: with it, this is the loop a user would write (read, then run), the
  // secondary baseline the report also gives.
  const readStarted = performance.now();
  const metadata = await parquetMetadataAsync(buffer);
  const columns = Array.from({ length: FEATURES }, (_, j) => `f${j}`);
  const batches: { x: Float32Array; n: number }[] = [];
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const groupRows = Number(group.num_rows);
    const data = new Map<string, Float32Array>();
    await parquetRead({
      file: buffer,
      metadata,
      columns,
      rowStart,
      rowEnd: rowStart + groupRows,
      onChunk: (chunk) => data.set(chunk.columnName, chunk.columnData as Float32Array),
    });
    const arrays = columns.map((name) => data.get(name)!);
    for (let from = 0; from < groupRows; from += batchSize) {
      const n = Math.min(batchSize, groupRows - from);
      const x = new Float32Array(n * FEATURES);
      for (let r = 0; r < n; r++) for (let j = 0; j < FEATURES; j++) x[r * FEATURES + j] = arrays[j]![from + r]!;
      batches.push({ x, n });
    }
    rowStart += groupRows;
  }
  const readSeconds = (performance.now() - readStarted) / 1000;
  await handle.close();
  for (const { x, n } of batches.slice(0, 3)) await session.run({ x: new ort.Tensor('float32', x, [n, FEATURES]) });
  let rows = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (const { x, n } of batches) {
    await session.run({ x: new ort.Tensor('float32', x, [n, FEATURES]) });
    rows += n;
  }
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await session.release();
  process.stdout.write(`${JSON.stringify({ rows, loadSeconds, readSeconds, seconds, cpuSeconds: (used.user + used.system) / 1e6, maxRssKiB: process.resourceUsage().maxRSS })}\n`);
}

// ---------------------------------------------------------------------------
// Child: the tessera CLI, reporting its peak RSS on exit
// ---------------------------------------------------------------------------

const REPORT_ON_EXIT = `process.on('exit', () => {
  const usage = process.resourceUsage();
  process.stderr.write('@@maxrss ' + usage.maxRSS + '\\n@@cpu ' + (usage.userCPUTime + usage.systemCPUTime) / 1e6 + '\\n');
});
`;

async function cliChild(args: readonly string[]): Promise<void> {
  // eslint-disable-next-line no-new-func
  new Function('process', REPORT_ON_EXIT)(process);
  process.argv = [process.argv[0]!, path.join(ROOT, 'src', 'cli', 'main.ts'), ...args];
  await import(pathToFileURL(path.join(ROOT, 'src', 'cli', 'main.ts')).href);
}

/**
 * Compile the sources to JavaScript (as `npm run build` does, into the cache), so that the job
 * runs as the installed `tessera` does: plain node, no tsx loader in the process or its
 * worker threads. Returns the CLI's entry point.
 */
async function buildCli(): Promise<string> {
  const outDir = path.join(CACHE, 'dist');
  const compiled = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        '-p', path.join(ROOT, 'tsconfig.build.json'),
        '--outDir', outDir,
        '--declaration', 'false', '--sourceMap', 'false', '--noEmitOnError', 'false',
        '--incremental', '--tsBuildInfoFile', path.join(CACHE, 'dist.tsbuildinfo'),
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
  });
  const main = path.join(outDir, 'cli', 'main.js');
  // tsc exits non-zero on type errors elsewhere but still emits; only a missing output is fatal.
  if (!(await stat(main).then(() => true, () => false))) throw new Error(`compiling the CLI failed:\n${compiled.output.slice(0, 4000)}`);
  // Compiled modules look for package.json two levels up, as from dist/.
  await writeFile(path.join(CACHE, 'package.json'), await readFile(path.join(ROOT, 'package.json')));
  await writeFile(path.join(CACHE, 'report-on-exit.cjs'), REPORT_ON_EXIT);
  return main;
}

// ---------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------

interface ChildResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallSeconds: number;
}

/** A child process: this script through tsx, or `argv` as given (compiled JavaScript). */
function runChild(args: readonly string[], argv: readonly string[] = ['--import', 'tsx', fileURLToPath(import.meta.url), ...args]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr, wallSeconds: (performance.now() - started) / 1000 }));
  });
}

/** Write the benchmark input once: row groups of 100k rows streamed to a file (memory stays flat). */
async function ensureData(rows: number): Promise<string> {
  const file = path.join(CACHE, `rows-${rows}x${FEATURES}.parquet`);
  if (await stat(file).then(() => true, () => false)) return file;
  const { ParquetWriter } = await import('hyparquet-writer');
  const { fileWriter } = await import('hyparquet-writer');
  const { mulberry32 } = await import('../test/support/fixtures.js');
  process.stderr.write(`generating ${rows} rows x ${FEATURES} features into ${path.relative(ROOT, file)} (once)...\n`);
  const temporary = `${file}.tmp`;
  const writer = fileWriter(temporary);
  const schema = [
    { name: 'schema', num_children: FEATURES + 1 },
    { name: 'id', type: 'INT64' as const, repetition_type: 'REQUIRED' as const },
    ...Array.from({ length: FEATURES }, (_, j) => ({ name: `f${j}`, type: 'FLOAT' as const, repetition_type: 'REQUIRED' as const })),
  ];
  const parquet = new ParquetWriter({ writer, schema, codec: 'SNAPPY', statistics: true });
  const rng = mulberry32(2024);
  for (let start = 0; start < rows; start += GROUP_ROWS) {
    const n = Math.min(GROUP_ROWS, rows - start);
    parquet.write({
      columnData: [
        { name: 'id', data: BigInt64Array.from({ length: n }, (_, i) => BigInt(start + i)) },
        ...Array.from({ length: FEATURES }, (_, j) => ({ name: `f${j}`, data: Float32Array.from({ length: n }, () => rng() * 2 - 1), encoding: 'PLAIN' as const })),
      ],
      rowGroupSize: n,
    });
  }
  await parquet.finish();
  await rename(temporary, file);
  return file;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const rows = flag('rows', 1_000_000);
  const batchSize = flag('batch-size', 1024);
  const rounds = flag('rounds', 3);
  await mkdir(CACHE, { recursive: true });
  const { mlpBenchModel, writeModel } = await import('../test/support/fixtures.js');
  const repository = path.join(CACHE, 'models');
  const modelPath = await writeModel(repository, 'mlp', 1, mlpBenchModel());
  const data = await ensureData(rows);
  // --tsx: run the job from the TypeScript sources through tsx instead of compiled JavaScript.
  const cliMain = process.argv.includes('--tsx') ? undefined : await buildCli();
  const output = path.join(CACHE, 'scored.parquet');
  const summaryFile = path.join(CACHE, 'summary.json');
  const loadBefore = loadavg();
  process.stderr.write(`machine: ${cpus()[0]?.model ?? 'cpu'} x ${availableParallelism()}, ${fmt(totalmem() / 2 ** 30, 1)} GiB; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}\n`);
  process.stderr.write(`input: ${path.relative(ROOT, data)} (${fmt((await stat(data)).size / 2 ** 20, 1)} MiB, ${fmt(rows)} rows); batch size ${batchSize}; ${rounds} rounds\n`);

  interface Raw {
    rps: number;
    /** With the rows read from Parquet by hyparquet (timed), one thread at a time: read, then run. */
    withRead: number;
    e2e: number;
    rss: number;
    load: number;
    cpuPerM: number;
    variant: string;
  }
  const raw: Raw[] = [];
  const rawOther: Raw[] = [];
  const batch: { rps: number; e2e: number; rss: number; load: number; wall: number; outputBytes: number; cpuPerM: number; totalCpuPerM: number }[] = [];
  const runRaw = async (): Promise<void> => {
    // The baseline of a round is the faster of the two raw variants; the other is kept for the record.
    const results: Raw[] = [];
    for (const variant of ['default', 'tessera']) {
      const a = await runChild(['--raw', data, modelPath, String(batchSize), variant]);
      if (a.code !== 0) throw new Error(`raw run failed: ${a.stderr}`);
      const r = JSON.parse(a.stdout.trim().split('\n').pop()!) as { rows: number; loadSeconds: number; readSeconds: number; seconds: number; cpuSeconds: number; maxRssKiB: number };
      results.push({ rps: r.rows / r.seconds, withRead: r.rows / (r.seconds + r.readSeconds), e2e: r.rows / (r.seconds + r.loadSeconds), rss: r.maxRssKiB * 1024, load: r.loadSeconds, cpuPerM: (r.cpuSeconds / r.rows) * 1e6, variant });
    }
    results.sort((a, b) => b.rps - a.rps);
    raw.push(results[0]!);
    rawOther.push(results[1]!);
  };
  const runBatch = async (): Promise<void> => {
    await rm(summaryFile, { force: true });
    const cli = [
      'batch', 'mlp', '-i', data, '-o', output, '--model-repository', repository, '--features', 'f0..f63', '--passthrough', 'id',
      '--batch-size', String(batchSize), '--overwrite', '--progress', 'none', '--summary-json', summaryFile,
    ];
    const b = cliMain === undefined ? await runChild(['--cli', ...cli]) : await runChild([], ['--require', path.join(CACHE, 'report-on-exit.cjs'), cliMain, ...cli]);
    if (b.code !== 0) throw new Error(`tessera batch failed (${b.code}): ${b.stderr}`);
    const summary = JSON.parse(await readFile(summaryFile, 'utf8')) as { rows: number; seconds: number; loadSeconds: number; outputBytes: number; scoreCpuSeconds: number };
    if (summary.rows !== rows) throw new Error(`tessera batch wrote ${summary.rows} rows, expected ${rows}`);
    const maxRss = Number(/@@maxrss (\d+)/.exec(b.stderr)?.[1] ?? NaN) * 1024;
    const totalCpu = Number(/@@cpu ([\d.]+)/.exec(b.stderr)?.[1] ?? NaN);
    const scoring = summary.seconds - summary.loadSeconds;
    batch.push({
      rps: rows / scoring,
      e2e: rows / summary.seconds,
      rss: maxRss,
      load: summary.loadSeconds,
      wall: summary.seconds,
      outputBytes: summary.outputBytes,
      cpuPerM: (summary.scoreCpuSeconds / rows) * 1e6,
      totalCpuPerM: (totalCpu / rows) * 1e6,
    });
  };
  for (let round = 1; round <= rounds; round++) {
    // Alternate which goes first, so that neither always runs in the other's wake.
    const before = loadavg()[0]!;
    if (round % 2 === 1) {
      await runRaw();
      await runBatch();
    } else {
      await runBatch();
      await runRaw();
    }
    const a = raw.at(-1)!;
    const b = batch.at(-1)!;
    process.stderr.write(
      `round ${round}: raw ${fmt(a.rps)} rows/s (${a.variant} options; ${a.cpuPerM.toFixed(2)} CPU-s/M rows; other options ${fmt(rawOther.at(-1)!.rps)} rows/s); ` +
        `tessera batch ${fmt(b.rps)} rows/s (${(rows / b.rps).toFixed(2)}s + ${b.load.toFixed(2)}s load; ${b.cpuPerM.toFixed(2)} CPU-s/M rows scoring); ratio ${(b.rps / a.rps).toFixed(2)}; ` +
        `load average ${before.toFixed(2)} -> ${loadavg()[0]!.toFixed(2)}\n`,
    );
  }
  const rawRps = median(raw.map((x) => x.rps));
  const batchRps = median(batch.map((x) => x.rps));
  const rawE2e = median(raw.map((x) => x.e2e));
  const batchE2e = median(batch.map((x) => x.e2e));
  const ratios = batch.map((x, i) => x.rps / raw[i]!.rps);
  const ratio = median(ratios);
  const peak = Math.max(...batch.map((x) => x.rss));
  const rawCpu = median(raw.map((x) => x.cpuPerM));
  const rawOtherCpu = median(rawOther.map((x) => x.cpuPerM));
  const batchCpu = median(batch.map((x) => x.cpuPerM));
  const met = ratio >= 0.8 && peak < 2 ** 30;
  const lines = [
    '',
    `batch scoring, ${fmt(rows)} rows x ${FEATURES} features, Parquet -> Parquet, batch size ${batchSize} (medians of ${rounds} rounds)`,
    `  (a) raw onnxruntime-node     ${fmt(rawRps).padStart(10)} rows/s   session.run back to back on batches made beforehand (no Parquet I/O); faster of ORT default options / Tessera's (spinning off), threads = cores`,
    `                                          (${fmt(rawE2e)} rows/s with session creation, ${median(raw.map((x) => x.load)).toFixed(2)}s; other options: ${fmt(median(rawOther.map((x) => x.rps)))} rows/s)   peak RSS ${fmt(median(raw.map((x) => x.rss)) / 2 ** 20)} MiB`,
    `  (b) tessera batch            ${fmt(batchRps).padStart(10)} rows/s   Parquet in, scoring, Parquet out, checkpointing (${fmt(batchE2e)} rows/s with model load, ${median(batch.map((x) => x.load)).toFixed(2)}s); ${cliMain === undefined ? 'from the sources through tsx' : 'compiled to JavaScript'}`,
    `  ratio (b)/(a)                ${ratio.toFixed(2).padStart(10)}          (median of the rounds' ratios: ${ratios.map((x) => x.toFixed(2)).join(', ')}; with model load: ${median(batch.map((x, i) => x.e2e / raw[i]!.e2e)).toFixed(2)})   target >= 0.80`,
    `  secondary baseline           ${fmt(median(raw.map((x) => x.withRead))).padStart(10)} rows/s   the same raw loop with its Parquet reading (hyparquet) timed; ratio (b)/that ${median(batch.map((x, i) => x.rps / raw[i]!.withRead)).toFixed(2)}`,
    `  CPU seconds per 1M rows      raw ${rawCpu.toFixed(2)} (other options ${rawOtherCpu.toFixed(2)}); tessera batch ${batchCpu.toFixed(2)} while scoring, ${median(batch.map((x) => x.totalCpuPerM)).toFixed(2)} for the whole process`,
    `  peak RSS of tessera batch    ${fmt(peak / 2 ** 20).padStart(10)} MiB    target < 1024 MiB`,
    `  output                       ${fmt(median(batch.map((x) => x.outputBytes)) / 2 ** 20, 1)} MiB Parquet; wall ${median(batch.map((x) => x.wall)).toFixed(2)}s per job`,
    `  target met                   ${met ? 'yes' : 'NO'} (ratio >= 0.80 and peak RSS < 1 GiB)`,
    `  load average before/after    ${loadBefore.map((l) => l.toFixed(2)).join(' ')} / ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${availableParallelism()} cores`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.argv[2] === '--raw') {
  await rawChild(process.argv[3]!, process.argv[4]!, Number(process.argv[5]), process.argv[6] ?? 'default');
} else if (process.argv[2] === '--cli') {
  await cliChild(process.argv.slice(3));
} else {
  await main();
}

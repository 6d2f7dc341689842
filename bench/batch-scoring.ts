/**
 * Batch scoring benchmark: `tessera batch` Parquet -> Parquet against raw onnxruntime-node.
 *
 *   node --import tsx bench/batch-scoring.ts [--rows 1000000] [--batch-size 1024] [--rounds 3]
 *
 * Generates (once, cached under bench/.cache/batch-scoring/) a Parquet file of `rows` rows x 64
 * FP32 features (plus an id), in row groups of 100k rows, snappy-compressed as pyarrow writes
 * by default. Then, alternating for `rounds` rounds, each in its own child process:
 *
 *  (a) raw: onnxruntime-node in-process on the same model (the 64 -> 256 -> 256 -> 10 MLP) and
 *      batch size: read the rows with hyparquet row group by row group, build each batch's
 *      Float32Array, run the session; no output. Run twice per round, with onnxruntime's default
 *      session options and with Tessera's (no thread spinning); the faster is the baseline;
 *  (b) `tessera batch mlp -i rows.parquet -o scored.parquet --features f0..f63 --passthrough id`
 *      (in-process engine, Parquet out, checkpointing on).
 *
 * It prints the medians: rows/s of both, their ratio (target >= 0.80) with and without model
 * load, and the peak RSS of each child (process.resourceUsage().maxRSS, which covers the
 * worker threads; target < 1 GiB for the batch process), plus the machine's load average,
 * since other processes on the machine skew the figures.
 */
import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
  // 'tessera': the options Tessera's instances use (threads = cores, spinning off).
  const options =
    variant === 'tessera'
      ? {
          intraOpNumThreads: availableParallelism(),
          interOpNumThreads: 1,
          extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
        }
      : {};
  const session = await ort.InferenceSession.create(modelPath, options);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
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
  const started = performance.now();
  const metadata = await parquetMetadataAsync(buffer);
  const columns = Array.from({ length: FEATURES }, (_, j) => `f${j}`);
  let rowStart = 0;
  let rows = 0;
  let readMs = 0;
  let runMs = 0;
  for (const group of metadata.row_groups) {
    const groupRows = Number(group.num_rows);
    const t0 = performance.now();
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
    readMs += performance.now() - t0;
    for (let from = 0; from < groupRows; from += batchSize) {
      const n = Math.min(batchSize, groupRows - from);
      const t1 = performance.now();
      const x = new Float32Array(n * FEATURES);
      for (let r = 0; r < n; r++) for (let j = 0; j < FEATURES; j++) x[r * FEATURES + j] = arrays[j]![from + r]!;
      await session.run({ x: new ort.Tensor('float32', x, [n, FEATURES]) });
      runMs += performance.now() - t1;
      rows += n;
    }
    rowStart += groupRows;
  }
  const seconds = (performance.now() - started) / 1000;
  await handle.close();
  await session.release();
  process.stdout.write(`${JSON.stringify({ rows, loadSeconds, seconds, readMs, runMs, maxRssKiB: process.resourceUsage().maxRSS })}\n`);
}

// ---------------------------------------------------------------------------
// Child: the tessera CLI, reporting its peak RSS on exit
// ---------------------------------------------------------------------------

async function cliChild(args: readonly string[]): Promise<void> {
  process.on('exit', () => process.stderr.write(`@@maxrss ${process.resourceUsage().maxRSS}\n`));
  process.argv = [process.argv[0]!, path.join(ROOT, 'src', 'cli', 'main.ts'), ...args];
  await import(pathToFileURL(path.join(ROOT, 'src', 'cli', 'main.ts')).href);
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

function runChild(args: readonly string[]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
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

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
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
  const output = path.join(CACHE, 'scored.parquet');
  const summaryFile = path.join(CACHE, 'summary.json');
  const loadBefore = loadavg();
  process.stderr.write(`machine: ${cpus()[0]?.model ?? 'cpu'} x ${availableParallelism()}, ${fmt(totalmem() / 2 ** 30, 1)} GiB; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}\n`);
  process.stderr.write(`input: ${path.relative(ROOT, data)} (${fmt((await stat(data)).size / 2 ** 20, 1)} MiB, ${fmt(rows)} rows); batch size ${batchSize}; ${rounds} rounds\n`);

  const raw: { rps: number; e2e: number; rss: number; load: number; read: number; run: number; variant: string }[] = [];
  const batch: { rps: number; e2e: number; rss: number; load: number; wall: number; outputBytes: number }[] = [];
  for (let round = 1; round <= rounds; round++) {
    // The baseline of a round is the faster of the two raw variants.
    let best: (typeof raw)[number] | undefined;
    for (const variant of ['default', 'tessera']) {
      const a = await runChild(['--raw', data, modelPath, String(batchSize), variant]);
      if (a.code !== 0) throw new Error(`raw run failed: ${a.stderr}`);
      const r = JSON.parse(a.stdout.trim().split('\n').pop()!) as { rows: number; loadSeconds: number; seconds: number; readMs: number; runMs: number; maxRssKiB: number };
      const result = { rps: r.rows / r.seconds, e2e: r.rows / (r.seconds + r.loadSeconds), rss: r.maxRssKiB * 1024, load: r.loadSeconds, read: r.readMs / 1000, run: r.runMs / 1000, variant };
      if (best === undefined || result.rps > best.rps) best = result;
    }
    raw.push(best!);

    await rm(summaryFile, { force: true });
    const cli = [
      'batch', 'mlp', '-i', data, '-o', output, '--model-repository', repository, '--features', 'f0..f63', '--passthrough', 'id',
      '--batch-size', String(batchSize), '--overwrite', '--progress', 'none', '--summary-json', summaryFile,
    ];
    const b = await runChild(['--cli', ...cli]);
    if (b.code !== 0) throw new Error(`tessera batch failed (${b.code}): ${b.stderr}`);
    const summary = JSON.parse(await readFile(summaryFile, 'utf8')) as { rows: number; seconds: number; loadSeconds: number; outputBytes: number };
    if (summary.rows !== rows) throw new Error(`tessera batch wrote ${summary.rows} rows, expected ${rows}`);
    const maxRss = Number(/@@maxrss (\d+)/.exec(b.stderr)?.[1] ?? NaN) * 1024;
    const scoring = summary.seconds - summary.loadSeconds;
    batch.push({ rps: rows / scoring, e2e: rows / summary.seconds, rss: maxRss, load: summary.loadSeconds, wall: summary.seconds, outputBytes: summary.outputBytes });
    process.stderr.write(
      `round ${round}: raw ${fmt(raw.at(-1)!.rps)} rows/s (${raw.at(-1)!.variant} options; read ${raw.at(-1)!.read.toFixed(2)}s, run ${raw.at(-1)!.run.toFixed(2)}s); ` +
        `tessera batch ${fmt(batch.at(-1)!.rps)} rows/s (${scoring.toFixed(2)}s + ${summary.loadSeconds.toFixed(2)}s load); ratio ${(batch.at(-1)!.rps / raw.at(-1)!.rps).toFixed(2)}\n`,
    );
  }
  const rawRps = median(raw.map((x) => x.rps));
  const batchRps = median(batch.map((x) => x.rps));
  const rawE2e = median(raw.map((x) => x.e2e));
  const batchE2e = median(batch.map((x) => x.e2e));
  const ratios = batch.map((x, i) => x.rps / raw[i]!.rps);
  const peak = Math.max(...batch.map((x) => x.rss));
  const lines = [
    '',
    `batch scoring, ${fmt(rows)} rows x ${FEATURES} features, Parquet -> Parquet, batch size ${batchSize} (medians of ${rounds} rounds)`,
    `  (a) raw onnxruntime-node     ${fmt(rawRps).padStart(10)} rows/s   (${fmt(rawE2e)} rows/s with session creation, ${median(raw.map((x) => x.load)).toFixed(2)}s)   peak RSS ${fmt(median(raw.map((x) => x.rss)) / 2 ** 20)} MiB`,
    `  (b) tessera batch            ${fmt(batchRps).padStart(10)} rows/s   (${fmt(batchE2e)} rows/s with model load, ${median(batch.map((x) => x.load)).toFixed(2)}s)   peak RSS ${fmt(peak / 2 ** 20)} MiB (max of rounds)`,
    `  ratio (b)/(a)                ${median(ratios).toFixed(2).padStart(10)}          (median of the rounds' ratios: ${ratios.map((x) => x.toFixed(2)).join(', ')}; with model load: ${median(batch.map((x, i) => x.e2e / raw[i]!.e2e)).toFixed(2)})   target >= 0.80`,
    `  peak RSS of tessera batch    ${fmt(peak / 2 ** 20).padStart(10)} MiB    target < 1024 MiB`,
    `  output                       ${fmt(median(batch.map((x) => x.outputBytes)) / 2 ** 20, 1)} MiB Parquet; wall ${median(batch.map((x) => x.wall)).toFixed(2)}s per job`,
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

import { constants } from 'node:fs';
import { access, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { TesseraError, toTesseraError } from '../core/errors.js';
import { exitCodeOf, formatSummary, runBatchJob, type BatchJobOptions } from '../batch/job.js';
import type { ParquetCompression } from '../batch/output/parquet.js';
import type { ProgressMode } from '../batch/progress.js';
import { DEFAULT_MODEL_REPOSITORY, modelRepositoryOf } from './infer.js';

export interface BatchFlags {
  input: string;
  output: string;
  inputFormat?: string;
  outputFormat?: string;
  modelRepository?: string;
  modelVersion?: string;
  url?: string;
  features?: string[];
  inputColumn?: string[];
  passthrough?: string[];
  outputs?: string;
  classify?: string;
  labels?: string;
  batchSize?: string;
  concurrency?: string;
  instances?: string;
  intraOpThreads?: string;
  chunkRows?: string;
  retries: string;
  timeoutMs: string;
  csvDelimiter?: string;
  compression: string;
  restart?: boolean;
  overwrite?: boolean;
  dryRun?: boolean;
  dryRunRows?: string;
  progress: string;
  logInterval: string;
  summaryJson?: string;
  readerThread: string;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function list(values: readonly string[]): string[] {
  return values.flatMap((value) => value.split(',')).map((value) => value.trim()).filter((value) => value !== '');
}

function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  // Decimal digits only: Number() would also take '0x10', '1e3' and ''.
  if (!/^\s*-?\d+\s*$/.test(value)) throw new TesseraError('INVALID_PARAMETER', `${flag}: expected an integer, got '${value}'`);
  return Number(value);
}

/** `--log-interval` bounds: a line every 0.1 s at most, every day at least. */
export const MIN_LOG_INTERVAL_SECONDS = 0.1;
export const MAX_LOG_INTERVAL_SECONDS = 86_400;

/** Turn the command line's flags into job options (throws INVALID_PARAMETER on bad values). */
export function jobOptionsFromFlags(model: string, flags: BatchFlags, stderrIsTty: boolean): BatchJobOptions {
  const progress = flags.progress === 'auto' ? (stderrIsTty ? 'bar' : 'log') : flags.progress;
  const retries = integer(flags.retries, '--retries')!;
  const timeoutMs = integer(flags.timeoutMs, '--timeout-ms')!;
  // Decimal seconds, as every number on the command line ('1e3' is refused).
  const logInterval = /^(\d+(\.\d*)?|\.\d+)$/.test(flags.logInterval.trim()) ? Number(flags.logInterval) : Number.NaN;
  if (retries < 0) throw new TesseraError('INVALID_PARAMETER', `--retries: expected 0 or more, got ${retries}`);
  if (timeoutMs < 1) throw new TesseraError('INVALID_PARAMETER', `--timeout-ms: expected a positive number, got ${timeoutMs}`);
  if (Number.isNaN(logInterval) || logInterval < MIN_LOG_INTERVAL_SECONDS || logInterval > MAX_LOG_INTERVAL_SECONDS) {
    throw new TesseraError(
      'INVALID_PARAMETER',
      `--log-interval: expected seconds from ${MIN_LOG_INTERVAL_SECONDS} to ${MAX_LOG_INTERVAL_SECONDS} (1 day), got '${flags.logInterval}'`,
    );
  }
  const outputs = flags.outputs === undefined ? undefined : flags.outputs.trim() === 'none' ? [] : list([flags.outputs]);
  const classify = flags.classify === undefined ? undefined : flags.classify.trim() === 'none' ? null : flags.classify.trim();
  return {
    model,
    version: flags.modelVersion,
    input: flags.input,
    output: flags.output,
    inputFormat: flags.inputFormat,
    outputFormat: flags.outputFormat,
    repository: flags.modelRepository ?? DEFAULT_MODEL_REPOSITORY,
    url: flags.url,
    features: flags.features ?? [],
    inputColumns: list(flags.inputColumn ?? []),
    passthrough: list(flags.passthrough ?? []),
    outputs,
    classify,
    labelsFile: flags.labels,
    batchSize: integer(flags.batchSize, '--batch-size'),
    concurrency: integer(flags.concurrency, '--concurrency'),
    instances: integer(flags.instances, '--instances'),
    intraOpThreads: integer(flags.intraOpThreads, '--intra-op-threads'),
    chunkRows: integer(flags.chunkRows, '--chunk-rows'),
    retries,
    timeoutMs,
    csvDelimiter: flags.csvDelimiter === '\\t' ? '\t' : flags.csvDelimiter,
    compression: flags.compression as ParquetCompression,
    restart: flags.restart === true,
    overwrite: flags.overwrite === true,
    dryRun: flags.dryRun === true,
    dryRunRows: integer(flags.dryRunRows, '--dry-run-rows'),
    progress: progress as ProgressMode,
    readerThread: flags.readerThread === 'auto' ? undefined : flags.readerThread === 'on',
    logIntervalSeconds: logInterval,
  };
}

/**
 * `--summary-json`: checked before the job starts, so that a path that cannot be written is not
 * found only once every row is scored (the summary lost, and the finished output in the way of
 * a rerun). It must not be the input or the output, nor a directory; a new file's directory must
 * exist and be writable.
 */
export async function checkSummaryPath(path: string, job: { readonly input: string; readonly output: string }): Promise<void> {
  const refuse = (why: string): TesseraError => new TesseraError('INVALID_PARAMETER', `--summary-json: ${path} ${why}; expected a JSON file path that can be written`);
  if (resolve(path) === resolve(job.input)) throw refuse('is the --input');
  if (resolve(path) === resolve(job.output)) throw refuse('is the --output');
  const existing = await stat(path).catch(() => undefined);
  if (existing !== undefined) {
    if (existing.isDirectory()) throw refuse('is a directory');
    if (!existing.isFile()) throw refuse('is not a regular file');
    await access(path, constants.W_OK).catch(() => {
      throw refuse('is not writable');
    });
    return;
  }
  const parent = dirname(path);
  const directory = await stat(parent).catch(() => undefined);
  if (directory?.isDirectory() !== true) throw refuse(directory === undefined ? `cannot be created: ${parent} does not exist` : `cannot be created: ${parent} is not a directory`);
  await access(parent, constants.W_OK | constants.X_OK).catch(() => {
    throw refuse(`cannot be created: ${parent} is not writable`);
  });
}

/** `tessera batch <model> --input rows.parquet --output scored.parquet ...` */
export async function batchCommand(model: string, flags: BatchFlags, command?: Command): Promise<void> {
  const interrupt = new AbortController();
  const onSignal = (): void => {
    if (interrupt.signal.aborted) {
      process.stderr.write('\ntessera batch: interrupted again; quitting without waiting (the checkpoint holds every chunk written so far)\n');
      process.exit(130);
    }
    interrupt.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const options = jobOptionsFromFlags(model, { ...flags, modelRepository: modelRepositoryOf(flags.modelRepository, command) }, process.stderr.isTTY === true);
    if (flags.summaryJson !== undefined) await checkSummaryPath(flags.summaryJson, options);
    const summary = await runBatchJob(options, { stdout: process.stdout, stderr: process.stderr, interrupt: interrupt.signal });
    if (summary.status !== 'dry-run') process.stdout.write(formatSummary(summary));
    process.exitCode = exitCodeOf(summary);
    if (flags.summaryJson !== undefined) {
      // Checked before the job, but the path may have changed since: the summary above still stands.
      await writeFile(flags.summaryJson, `${JSON.stringify(summary, null, 2)}\n`).catch((error: unknown) => {
        throw new TesseraError('INVALID_PARAMETER', `--summary-json: cannot write ${flags.summaryJson}: ${(error as Error).message}`, { cause: error });
      });
    }
  } catch (error) {
    const failure = toTesseraError(error);
    process.stderr.write(`tessera batch: ${failure.code}: ${failure.message}\n`);
    process.exitCode = interrupt.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The `batch` command's definition, registered by main.ts. */
export function batchProgramCommand(): Command {
  return new Command('batch')
    .argument('<model>', 'model name (in the repository, or on the --url server)')
    .description('score a JSONL, CSV or Parquet data set with a model, in-process or against a V2 endpoint; resumable')
    .requiredOption('-i, --input <file>', 'rows to score: .jsonl, .csv/.tsv or .parquet')
    .requiredOption('-o, --output <file>', 'scored rows: .parquet, .jsonl or .csv (a checkpoint lives in <output>.parts/ while the job runs)')
    .addOption(new Option('--input-format <format>', 'input format when the extension does not say').choices(['jsonl', 'csv', 'parquet']))
    .addOption(new Option('--output-format <format>', 'output format when the extension does not say').choices(['jsonl', 'csv', 'parquet']))
    .option('--model-repository <dir>', 'model repository for in-process scoring (env TESSERA_MODEL_REPOSITORY)', DEFAULT_MODEL_REPOSITORY)
    .option('--model-version <version>', 'model version (default: the latest ready)')
    .option('--url <url>', 'score against a remote Tessera / Triton / KServe V2 REST endpoint instead (e.g. http://host:8000)')
    .option('--features <[input=]columns>', 'columns concatenated into one input tensor [rows, n]: f1,f2,... ranges f0..f63, wildcards f* (repeatable)', collect)
    .option('--input-column <input=column>', 'a column holding a whole input per row (array, list, or JSON text) (repeatable)', collect)
    .option('--passthrough <columns>', 'input columns copied to the output (comma-separated, repeatable)', collect)
    .option('--outputs <names>', "model outputs written raw (comma-separated; 'none'; default all)")
    .option('--classify <output>', "output whose argmax is 'prediction' (with 'label' and 'confidence'); 'none' to skip (default: the first output with 2+ values per row)")
    .option('--labels <file>', "class labels, one per line (default: the model's labels.txt)")
    .option('--batch-size <n>', 'rows per request (default 1024 in-process, 256 remote; capped by the model max_batch_size for remote)')
    .option('--concurrency <n>', 'requests in flight (default: 3 per instance in-process, 4 remote)')
    .option('--instances <n>', "in-process model instances (worker threads) (default: the model config's instance_group, else 2)")
    .option('--intra-op-threads <n>', "in-process onnxruntime threads per instance (default: the model config's intra_op_thread_count, else cores / instances)")
    .option('--chunk-rows <n>', 'rows per checkpointed part (default 65536, rounded up to a multiple of the batch size)')
    .option('--retries <n>', 'remote: retries of a refused (429/503), failed (5xx) or disconnected request', '8')
    .option('--timeout-ms <ms>', 'remote: per-request timeout', '120000')
    .option('--csv-delimiter <char>', "CSV delimiter (default ',' or tab for .tsv)")
    .addOption(new Option('--reader-thread <mode>', 'decode the input in a worker thread beside the model (auto: on with 2 cores or more)').choices(['auto', 'on', 'off']).default('auto'))
    .addOption(new Option('--compression <codec>', 'Parquet output compression').choices(['snappy', 'gzip', 'none']).default('snappy'))
    .option('--restart', 'discard an existing checkpoint of this output and start over')
    .option('--overwrite', 'replace an existing output file')
    .option('--dry-run', 'check the column mapping on the first rows and print the tensors it would send; run nothing')
    .option('--dry-run-rows <n>', 'rows the dry run checks (default 5)')
    .addOption(new Option('--progress <mode>', 'progress display on stderr').choices(['auto', 'bar', 'log', 'none']).default('auto'))
    .option('--log-interval <seconds>', 'seconds between progress log lines when stderr is not a terminal (0.1 to 86400)', '10')
    .option('--summary-json <file>', 'also write the summary (rows, errors, seconds, rows/s, ...) as JSON to this file')
    .action(batchCommand);
}

import { rename, stat, unlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { TesseraError } from '../core/errors.js';
import { fromHalfBits } from '../core/float16.js';
import { formatShape } from '../core/shape.js';
import type { Tensor } from '../core/tensor.js';
import { readLabels as readLabelFile } from '../repository/labels.js';
import { Checkpoint } from './checkpoint.js';
import { failureScope, rowErrorText, type Executor } from './executor.js';
import { openSource } from './input/open.js';
import { ThreadedSource } from './input/threaded.js';
import { parseFormat, type ChunkBlock, type InputBlock, type InputFormat, type InputSource } from './input/source.js';
import { LocalExecutor } from './local-executor.js';
import { BlockEncoder, expandFeatures, packSpecs, RequestBuilder, resolveMapping, type Mapping } from './mapping.js';
import { floatColumns, packColumns, packedBytes, SharedPool, type PackedFeatures, type PackSpec } from './pack.js';
import { formatFloat32, type ChunkResult } from './columns.js';
import { ChunkAssembler, ColumnPool, planOutputs, type OutputPlan } from './outputs.js';
import { syncDirectory } from './output/files.js';
import type { ParquetCompression } from './output/parquet.js';
import { createOutputWriter, type EncodedPart, type OutputAssembly, type OutputWriter } from './output/writer.js';
import { formatBytes, formatCount, formatDuration, Progress, RowCountEstimate, type ProgressMode } from './progress.js';
import { RemoteExecutor } from './remote-executor.js';

export const DEFAULT_BATCH_SIZE = 1024;
export const DEFAULT_REMOTE_BATCH_SIZE = 256;
export const DEFAULT_CHUNK_ROWS = 65_536;
/** In-process: requests in flight per model instance (one running, one waiting at the instance, one queued). */
export const REQUESTS_PER_INSTANCE = 3;
export const DEFAULT_REMOTE_CONCURRENCY = 4;

export interface BatchJobOptions {
  readonly model: string;
  readonly version?: string | undefined;
  readonly input: string;
  readonly output: string;
  readonly inputFormat?: string | undefined;
  readonly outputFormat?: string | undefined;
  /** In-process: the model repository. */
  readonly repository: string;
  /** Remote: a V2 endpoint's base URL (instead of the repository). */
  readonly url?: string | undefined;
  readonly features: readonly string[];
  readonly inputColumns: readonly string[];
  readonly passthrough: readonly string[];
  /** Raw outputs to write: undefined = all, [] = none. */
  readonly outputs?: readonly string[] | undefined;
  /** Output to classify: undefined = automatic, null = none. */
  readonly classify?: string | null | undefined;
  readonly labelsFile?: string | undefined;
  readonly batchSize?: number | undefined;
  readonly concurrency?: number | undefined;
  readonly instances?: number | undefined;
  readonly intraOpThreads?: number | undefined;
  readonly chunkRows?: number | undefined;
  readonly retries: number;
  readonly timeoutMs: number;
  readonly backoffMs?: number | undefined;
  readonly csvDelimiter?: string | undefined;
  readonly compression: ParquetCompression;
  readonly restart: boolean;
  readonly overwrite: boolean;
  readonly dryRun: boolean;
  readonly dryRunRows?: number | undefined;
  /** Decode the input in a worker thread (default: when there are more than 2 cores). */
  readonly readerThread?: boolean | undefined;
  readonly progress: ProgressMode;
  readonly logIntervalSeconds: number;
}

interface Sink {
  write(text: string): unknown;
}

export interface BatchIo {
  readonly stdout: Sink;
  readonly stderr: Sink;
  /** Aborted to interrupt the job (SIGINT): reading stops, chunks in flight finish and are checkpointed. */
  readonly interrupt?: AbortSignal;
}

export interface BatchSummary {
  readonly status: 'done' | 'interrupted' | 'dry-run';
  /** Rows in the output (or done so far, when interrupted). */
  readonly rows: number;
  readonly errors: number;
  readonly rowsThisRun: number;
  readonly resumedRows: number;
  readonly seconds: number;
  readonly loadSeconds: number;
  /** Reading and scoring the rows and writing the parts (this run). */
  readonly scoreSeconds: number;
  /** CPU time of the whole process (every thread) while scoring: user + system seconds. */
  readonly scoreCpuSeconds: number;
  /** Assembling the output from the parts. */
  readonly assembleSeconds: number;
  readonly rowsPerSecond: number;
  readonly output: string;
  readonly outputBytes: number;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly chunkRows: number;
  readonly executor: string;
  /** Requests retried after a refusal or a transient failure. */
  readonly retries: number;
  /** The input's chunks were decoded in a reader (worker) thread, not on the main thread (`--reader-thread`). */
  readonly readerThread: boolean;
}

/** A counting semaphore: at most `limit` tasks run at once; the rest wait in arrival order. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}

function positiveInteger(value: number | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) throw new TesseraError('INVALID_PARAMETER', `${flag}: expected a positive integer, got ${value}`);
  return value;
}

/**
 * `--labels`: read as the repository reads a model's labels.txt (line n names class n, blank
 * lines included), so the same file gives the same labels either way.
 */
async function readLabels(path: string): Promise<string[]> {
  try {
    return await readLabelFile(path);
  } catch (error) {
    throw new TesseraError('INVALID_PARAMETER', `--labels: cannot read ${path}: ${(error as Error).message}`);
  }
}

/**
 * Run a batch job: read the input in chunks, score each chunk's rows in requests of
 * `batchSize` rows (`concurrency` in flight), write each chunk as a part file and checkpoint
 * it, then assemble the parts, in order, into the output. Throws TesseraError on failures that
 * stop the job (the checkpoint keeps what was done); bad rows only fill their `error` column.
 */
export async function runBatchJob(options: BatchJobOptions, io: BatchIo): Promise<BatchSummary> {
  const startedAt = performance.now();
  // A directory is never replaced by the output (--overwrite included): refused before any row is scored.
  const existing = await stat(options.output).catch(() => undefined);
  if (existing?.isDirectory() === true) {
    throw new TesseraError('INVALID_PARAMETER', `--output ${options.output} is a directory; expected the path of a file to write (e.g. ${join(options.output, 'scored.parquet')})`);
  }
  const inputFormat = parseFormat(options.inputFormat, options.input, 'input');
  const outputFormat = parseFormat(options.outputFormat, options.output, 'output');
  const wantedBatch = positiveInteger(options.batchSize, '--batch-size');
  const wantedConcurrency = positiveInteger(options.concurrency, '--concurrency');
  const instances = positiveInteger(options.instances, '--instances');
  const wantedChunk = positiveInteger(options.chunkRows, '--chunk-rows') ?? DEFAULT_CHUNK_ROWS;
  if (resolve(options.input) === resolve(options.output)) throw new TesseraError('INVALID_PARAMETER', 'the output would overwrite the input; choose another --output');
  if (options.url !== undefined && (instances !== undefined || options.intraOpThreads !== undefined)) {
    throw new TesseraError('INVALID_PARAMETER', '--instances and --intra-op-threads apply to in-process scoring, not to --url');
  }

  if (!options.dryRun && !options.overwrite && !(await Checkpoint.exists(options.output))) {
    if (existing !== undefined) {
      throw new TesseraError('INVALID_PARAMETER', `the output ${options.output} already exists; pass --overwrite to replace it`);
    }
  }

  const labels = options.labelsFile === undefined ? undefined : await readLabels(options.labelsFile);
  // The model loads (or the remote endpoint is checked) while the input is opened.
  const loadStarted = performance.now();
  const starting: Promise<Executor> =
    options.url === undefined
      ? LocalExecutor.start({
          repository: options.repository,
          model: options.model,
          version: options.version,
          batchSize: wantedBatch ?? DEFAULT_BATCH_SIZE,
          instances,
          intraOpThreads: positiveInteger(options.intraOpThreads, '--intra-op-threads'),
          warmup: !options.dryRun,
        })
      : RemoteExecutor.start({
          url: options.url,
          model: options.model,
          version: options.version,
          connections: wantedConcurrency ?? DEFAULT_REMOTE_CONCURRENCY,
          retries: options.retries,
          timeoutMs: options.timeoutMs,
          ...(options.backoffMs === undefined ? {} : { backoffMs: options.backoffMs }),
          labels,
        });
  // Its failure is reported when it is awaited, after the input's.
  starting.catch(() => undefined);
  let opened: InputSource;
  try {
    opened = await openSource(options.input, inputFormat, options.csvDelimiter);
  } catch (error) {
    await starting.then((started) => started.close(), () => undefined);
    throw error;
  }
  // With two cores or more, chunks are decoded in a reader thread beside the model (on two
  // cores it still runs the job faster than decoding on the main thread that feeds the
  // instances); on one core it would only take turns with them. Dry runs read a few rows here.
  const threaded = options.readerThread ?? availableParallelism() >= 2;
  const source = options.dryRun || !threaded ? opened : new ThreadedSource(opened, options.csvDelimiter);
  let executor: Executor | undefined;
  try {
    executor = await starting;
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    const concurrency =
      wantedConcurrency ?? (executor instanceof LocalExecutor ? REQUESTS_PER_INSTANCE * executor.instances : DEFAULT_REMOTE_CONCURRENCY);
    const model = { ...executor.model, labels: labels ?? executor.model.labels };
    const defaultBatch = options.url === undefined ? DEFAULT_BATCH_SIZE : DEFAULT_REMOTE_BATCH_SIZE;
    const batchSize = model.maxBatchSize > 0 ? Math.min(wantedBatch ?? defaultBatch, model.maxBatchSize) : 1;
    const chunkRows = Math.ceil(wantedChunk / batchSize) * batchSize;

    // The first rows: they settle variable per-row shapes, JSONL passthrough types and the dry run.
    const names = source.columns.map((column) => column.name);
    const referenced = new Set<string>(options.passthrough);
    for (const spec of options.inputColumns) referenced.add(spec.slice(spec.indexOf('=') + 1));
    for (const spec of model.inputs) if (names.includes(spec.name)) referenced.add(spec.name);
    if (options.dryRun) {
      for (const spec of options.features) {
        const at = spec.indexOf('=');
        const list = at > 0 && !spec.slice(0, at).includes(',') ? spec.slice(at + 1) : spec;
        for (const name of expandFeatures(list, names)) referenced.add(name);
      }
    }
    const headRows = options.dryRun ? (positiveInteger(options.dryRunRows, '--dry-run-rows') ?? 5) : 100;
    const head = await source.head(headRows, [...referenced].filter((name) => names.includes(name)));
    const mapping = resolveMapping(model.inputs, model.maxBatchSize, source.columns, options, head, model.label);
    const plan = planOutputs(
      model.outputs,
      mapping.batching,
      source.columns,
      inputFormat,
      head,
      { rawOutputs: options.outputs, classify: options.classify, passthrough: options.passthrough, labels: model.labels },
      model.label,
    );

    if (options.dryRun) {
      const dryHead = await source.head(headRows, [...new Set([...mapping.columns, ...options.passthrough])]);
      printDryRun(io.stdout, { options, executor, mapping, plan, head: dryHead, batchSize, chunkRows, concurrency, inputFormat, outputFormat });
      return {
        status: 'dry-run',
        rows: 0,
        errors: 0,
        rowsThisRun: 0,
        resumedRows: 0,
        seconds: (performance.now() - startedAt) / 1000,
        loadSeconds,
        scoreSeconds: 0,
        scoreCpuSeconds: 0,
        assembleSeconds: 0,
        rowsPerSecond: 0,
        output: options.output,
        outputBytes: 0,
        batchSize,
        concurrency,
        chunkRows,
        executor: executor.description,
        retries: 0,
        readerThread: false,
      };
    }

    const writer = createOutputWriter(outputFormat, options.output, plan.columns, { compression: options.compression, csvDelimiter: options.csvDelimiter });
    const inputInfo = await stat(options.input);
    const job: Record<string, unknown> = {
      input: resolve(options.input),
      inputBytes: inputInfo.size,
      inputModifiedMs: inputInfo.mtimeMs,
      inputFormat,
      output: resolve(options.output),
      outputFormat,
      model: options.model,
      version: options.version ?? null,
      target: options.url ?? resolve(options.repository),
      // The model itself, not only its name: a new version or replaced files are another model.
      modelVersion: model.identity.version,
      modelVersions: model.identity.versions,
      modelFiles: model.identity.files,
      signature: { inputs: model.inputs, outputs: model.outputs },
      mapping: mapping.bindings.map((b) => ({ input: b.input, source: b.source, rowShape: b.rowShape })),
      passthrough: options.passthrough,
      columns: plan.columns,
      classify: plan.classify?.output ?? null,
      labels: model.labels ?? null,
      batchSize,
      chunkRows,
      compression: options.compression,
      csvDelimiter: options.csvDelimiter ?? null,
    };
    const checkpoint = await Checkpoint.open(options.output, job, chunkRows, plan.columns, writer.extension, { restart: options.restart, keepsState: writer.keepsState });
    const run = new JobRun({
      source,
      executor,
      mapping,
      plan,
      writer,
      checkpoint,
      output: options.output,
      batchSize,
      chunkRows,
      concurrency,
      io,
      progressMode: options.progress,
      logIntervalMs: options.logIntervalSeconds * 1000,
    });
    let outcome: 'done' | 'interrupted';
    try {
      outcome = await run.execute();
    } catch (error) {
      // A job that fails before finishing any chunk leaves nothing worth resuming: no checkpoint
      // is kept to stand in the way of the corrected command.
      if (checkpoint.doneChunks === 0) await checkpoint.remove().catch(() => undefined);
      throw error;
    } finally {
      await checkpoint.release().catch(() => undefined);
    }
    const rows = checkpoint.doneRows;
    const errors = checkpoint.doneErrors;
    const seconds = (performance.now() - startedAt) / 1000;
    const outputBytes = outcome === 'done' ? (await stat(options.output)).size : 0;
    return {
      status: outcome,
      rows,
      errors,
      rowsThisRun: run.rowsThisRun,
      resumedRows: run.resumedRows,
      seconds,
      loadSeconds,
      scoreSeconds: run.scoreSeconds,
      scoreCpuSeconds: run.scoreCpuSeconds,
      assembleSeconds: run.assembleSeconds,
      rowsPerSecond: seconds > 0 ? run.rowsThisRun / seconds : 0,
      output: options.output,
      outputBytes,
      batchSize,
      concurrency,
      chunkRows,
      executor: executor.description,
      retries: executor.retried,
      readerThread: source instanceof ThreadedSource,
    };
  } finally {
    await executor?.close().catch(() => undefined);
    await source.close().catch(() => undefined);
  }
}

interface JobRunOptions {
  readonly source: InputSource;
  readonly executor: Executor;
  readonly mapping: Mapping;
  readonly plan: OutputPlan;
  readonly writer: OutputWriter;
  readonly checkpoint: Checkpoint;
  readonly output: string;
  readonly batchSize: number;
  readonly chunkRows: number;
  readonly concurrency: number;
  readonly io: BatchIo;
  readonly progressMode: ProgressMode;
  readonly logIntervalMs: number;
}

/**
 * Chunks being scored at once: the next chunk's requests queue while the last ones of a chunk
 * run, which keeps every request slot busy; more would only hold more memory.
 */
const CHUNKS_IN_FLIGHT = 2;
/** Scored chunks being encoded and appended to the output; bounds the memory they hold. */
const WRITES_IN_FLIGHT = 4;
/** Consecutive rows the model fails on (at least) before the job stops. */
const MAX_FAILING_STREAK = 1000;

/** One run of a job (a resumed job is a new run over the same checkpoint). */
class JobRun {
  readonly resumedRows: number;
  scoreSeconds = 0;
  scoreCpuSeconds = 0;
  assembleSeconds = 0;
  private assembly: OutputAssembly | undefined;
  /** Chunks in the output so far (0 .. assembled-1). */
  private assembled: number;
  private assembling: Promise<void> = Promise.resolve();
  /** Chunks encoded and waiting for the ones before them to be appended (with their columns, which the parts may view). */
  private readonly encoded = new Map<number, { readonly part: EncodedPart; readonly result: ChunkResult }>();
  private rowsDone: number;
  private errors: number;
  private readonly limiter: Limiter;
  /** Feature inputs packed row-major chunk by chunk, and the shared memory the job packs into. */
  private readonly packs: readonly PackSpec[];
  private readonly pool = new SharedPool();
  /** Output column storage, reused from chunk to chunk. */
  private readonly columns = new ColumnPool();
  private fatal: unknown;
  private interrupted = false;
  /** Rows the model failed on in a row, with nothing scored in between. */
  private failingStreak = 0;
  /** The input's row count as the chunks are taken, for the progress of inputs that do not state it. */
  private readonly rowCount: RowCountEstimate;

  constructor(private readonly o: JobRunOptions) {
    this.resumedRows = o.checkpoint.doneRows;
    this.assembled = o.checkpoint.doneChunks;
    this.rowsDone = this.resumedRows;
    this.errors = o.checkpoint.doneErrors;
    this.limiter = new Limiter(o.concurrency);
    this.packs = packSpecs(o.mapping);
    this.rowCount = new RowCountEstimate(o.source.byteLength);
  }

  get rowsThisRun(): number {
    return this.rowsDone - this.resumedRows;
  }

  async execute(): Promise<'done' | 'interrupted'> {
    const { checkpoint, source, io } = this.o;
    // Progress counts rows done (scored or failed), never the rows the source has read ahead.
    const progress = new Progress(io.stderr, this.o.progressMode, this.o.logIntervalMs, () => ({
      rowsDone: this.rowsDone,
      rowsThisRun: this.rowsThisRun,
      errors: this.errors,
      totalRows: source.totalRows ?? this.rowCount.total,
      estimatedRows: this.rowCount.estimate,
    }));
    const onInterrupt = (): void => {
      if (this.interrupted) return;
      this.interrupted = true;
      progress.note('tessera batch: interrupted; finishing the chunks in flight and saving the checkpoint (interrupt again to quit at once)');
    };
    // The output is put together while the job runs: chunks are appended, in row order, as soon
    // as they and every chunk before them are scored. Only the footer is left for the end. A
    // resumed job carries on with the output its checkpoint counts.
    this.assembly = await this.o.writer.assemble(
      checkpoint.partialPath,
      checkpoint.doneChunks === 0 ? undefined : { bytes: checkpoint.outputBytes, states: this.o.writer.keepsState ? await checkpoint.readStates() : [] },
    );
    if (io.interrupt?.aborted === true) onInterrupt();
    io.interrupt?.addEventListener('abort', onInterrupt, { once: true });
    progress.start();
    let finished = false;
    try {
      if (checkpoint.resumed) {
        progress.note(`tessera batch: resuming from ${checkpoint.dir}: ${formatCount(checkpoint.doneRows)} rows in ${checkpoint.doneChunks} chunks are done`);
      }
      if (!checkpoint.complete) {
        const scoring = performance.now();
        const cpu = process.cpuUsage();
        const reachedEnd = await this.scoreChunks();
        this.scoreSeconds = (performance.now() - scoring) / 1000;
        const used = process.cpuUsage(cpu);
        this.scoreCpuSeconds = (used.user + used.system) / 1e6;
        if (this.fatal !== undefined) throw this.fatal;
        if (!reachedEnd) {
          await this.assembling;
          if (this.fatal !== undefined) throw this.fatal;
          await checkpoint.flush();
          return 'interrupted';
        }
      }
      progress.stop();
      const assembling = performance.now();
      await this.finishAssembly();
      finished = true;
      this.assembleSeconds = (performance.now() - assembling) / 1000;
      return 'done';
    } finally {
      progress.stop();
      io.interrupt?.removeEventListener('abort', onInterrupt);
      if (!finished) {
        // What is scored gets into the output and the checkpoint; the partial output stays for
        // the next run.
        await this.assembling.catch(() => undefined);
        await this.assembly.close().catch(() => undefined);
      }
    }
  }

  /**
   * Append every encoded chunk that comes next in row order to the output (one append at a
   * time), then record it in the checkpoint: the append is on disk before the manifest counts it.
   */
  private advanceAssembly(): Promise<void> {
    const { checkpoint, writer } = this.o;
    this.assembling = this.assembling.then(async () => {
      for (let next = this.encoded.get(this.assembled); next !== undefined; next = this.encoded.get(this.assembled)) {
        const index = this.assembled;
        this.encoded.delete(index);
        const state = await this.assembly!.append(next.part);
        // The chunk's bytes are in the output: its part's memory and its columns serve later chunks.
        writer.reclaim?.(next.part);
        this.columns.giveBack(next.result);
        if (writer.keepsState) await checkpoint.saveState(index, state);
        await checkpoint.markDone(index, next.result.rows, next.result.errors, this.assembly!.length);
        this.assembled++;
      }
    });
    const done = this.assembling.catch((error: unknown) => {
      this.fatal ??= error;
    });
    return done;
  }

  /** Finish the output and move it into place; drop the checkpoint. */
  private async finishAssembly(): Promise<void> {
    const { checkpoint, source } = this.o;
    await this.assembling;
    if (this.encoded.size > 0 || this.assembled !== checkpoint.doneChunks) {
      throw new TesseraError('INTERNAL', `${this.encoded.size} scored chunks were never appended to the output; rerun with --restart`);
    }
    const rows = checkpoint.doneRows;
    if (source.totalRows !== undefined && rows !== source.totalRows) {
      throw new TesseraError('INTERNAL', `the checkpoint covers ${rows} rows but the input has ${source.totalRows}; rerun with --restart`);
    }
    await this.assembly!.finish();
    await rename(checkpoint.partialPath, this.o.output);
    await syncDirectory(dirname(this.o.output));
    await checkpoint.remove();
  }

  /**
   * Read and score every chunk not done yet. True when the input was read to its end. Scoring
   * and writing are bounded separately: a chunk leaves its scoring slot as soon as its rows are
   * scored, so parts being written and flushed to disk never hold up the model.
   */
  private async scoreChunks(): Promise<boolean> {
    const { source, checkpoint, chunkRows, mapping, plan } = this.o;
    const scoring = new Set<Promise<void>>();
    const writing = new Set<Promise<void>>();
    const track = (set: Set<Promise<void>>, task: Promise<void>): void => {
      set.add(task);
      void task.finally(() => set.delete(task));
    };
    const fail = (error: unknown): void => {
      this.fatal ??= error;
    };
    const columns = [...new Set([...mapping.columns, ...plan.passthrough.map((p) => p.column)])];
    // Feature inputs are packed row-major as chunks are read (by the reader thread, if any);
    // the job itself then reads only the passthrough columns and those of other inputs.
    const pack = this.packs;
    const packedColumns = new Set(pack.flatMap((spec) => spec.columns));
    const keep = [
      ...new Set([
        ...plan.passthrough.map((p) => p.column),
        ...mapping.bindings.flatMap((b) => (b.source.kind === 'column' ? [b.source.column] : b.source.columns.filter((name) => !packedColumns.has(name)))),
      ]),
    ];
    let lastIndex = -1;
    let reachedEnd = true;
    let rowsRead = 0;
    const stopping = (): boolean => this.interrupted || this.fatal !== undefined;
    const chunks = source.chunks(chunkRows, columns, checkpoint.doneIndices(), { pack, keep });
    try {
      for (;;) {
        // A free slot first, then the next chunk: a chunk is taken from the source only when it
        // can be scored, so the source (and its reader thread) holds no more than it prefetches.
        while (scoring.size >= CHUNKS_IN_FLIGHT || writing.size >= WRITES_IN_FLIGHT) await Promise.race([...scoring, ...writing]);
        if (stopping()) {
          reachedEnd = false;
          break;
        }
        const next = await chunks.next();
        if (next.done === true) {
          this.rowCount.ended(rowsRead);
          break;
        }
        const chunk = next.value;
        rowsRead += chunk.rows;
        this.rowCount.read(rowsRead, source.bytesRead());
        if (stopping()) {
          reachedEnd = false;
          break;
        }
        lastIndex = chunk.index;
        if (chunk.skipped) continue;
        track(
          scoring,
          this.scoreChunk(chunk).then((result) => track(writing, this.writeChunk(result).catch(fail)), fail),
        );
      }
    } catch (error) {
      // The input failed mid-way: what is in flight still finishes and is checkpointed.
      fail(error);
      reachedEnd = false;
    } finally {
      await chunks.return(undefined).catch(() => undefined);
    }
    while (scoring.size > 0 || writing.size > 0) await Promise.all([...scoring, ...writing]);
    if (reachedEnd && this.fatal === undefined && !this.interrupted) await checkpoint.markEnd(lastIndex);
    return reachedEnd && !this.interrupted;
  }

  /**
   * Pack the block's feature inputs row-major if its source did not (see pack.ts), into shared
   * memory the job reuses from chunk to chunk.
   */
  private packBlock(block: ChunkBlock): ChunkBlock {
    const missing = this.packs.filter((spec) => block.packed?.get(spec.input) === undefined);
    if (missing.length === 0 || block.rowErrors.size > 0) return block;
    const packed = new Map<string, PackedFeatures>(block.packed ?? []);
    for (const spec of missing) {
      const columns = floatColumns(spec.columns.map((name) => block.column(name)), block.rows);
      if (columns === undefined) continue;
      packed.set(spec.input, packColumns(spec, columns, block.rows, this.pool.take(packedBytes(spec, block.rows))));
    }
    if (packed.size === (block.packed?.size ?? 0)) return block;
    return { skipped: false, index: block.index, start: block.start, rows: block.rows, rowErrors: block.rowErrors, packed, column: (name) => block.column(name) };
  }

  /** The block's packed memory is free again (its requests are all answered). */
  private recycle(original: ChunkBlock, block: ChunkBlock): void {
    this.o.source.recycle?.(original);
    for (const [input, features] of block.packed ?? []) {
      if (original.packed?.get(input) === features) continue;
      if (features.data.buffer instanceof SharedArrayBuffer) this.pool.give(features.data.buffer);
    }
  }

  /** Score a chunk's rows: requests of `batchSize` rows, `concurrency` in flight across chunks. */
  private async scoreChunk(original: ChunkBlock): Promise<ChunkResult> {
    const { mapping, plan, batchSize } = this.o;
    const block = this.packBlock(original);
    const assembler = new ChunkAssembler(plan, block.index, block, this.columns);
    const encoder = new BlockEncoder(mapping, block);
    this.errors += assembler.errors;
    this.rowsDone += assembler.errors;
    // Rows that failed before scoring (passthrough values of the wrong type) are skipped; with
    // none, rows are not checked one by one.
    const skip = assembler.errors > 0 ? (r: number): boolean => assembler.hasFailed(r) : undefined;
    // Each request covers the next `batchSize` rows of the block (less its bad rows). It is
    // encoded only when a request slot frees up, so the event loop never blocks for long
    // while an instance waits for its next batch.
    const ranges: number[] = [];
    for (let from = 0; from < block.rows; from += batchSize) ranges.push(from);
    await Promise.all(
      ranges.map((from) =>
        this.limiter.run(async () => {
          if (this.fatal !== undefined) throw this.fatal;
          const to = Math.min(block.rows, from + batchSize);
          const builder = new RequestBuilder(mapping, to - from);
          encoder.encodeRange(
            from,
            to,
            builder,
            skip,
            (r, problem) => {
              assembler.fail(r, problem);
              this.errors++;
              this.rowsDone++;
            },
          );
          if (builder.rows > 0) await this.score(builder, encoder, assembler);
        }),
      ),
    );
    // Every request of the chunk is answered (a failed one rejects above, and its chunk's memory
    // is left to the garbage collector, since other requests of it may still be running).
    this.recycle(original, block);
    return assembler.finish();
  }

  /**
   * Encode a scored chunk and have it appended to the output (with the chunks before it), which
   * records it in the checkpoint. Chunks are written once, into the output itself.
   */
  private async writeChunk(result: ChunkResult): Promise<void> {
    const part = await this.o.writer.encodePart(result);
    this.encoded.set(result.index, { part, result });
    await this.advanceAssembly();
  }

  /** Run one request; if the rows are at fault, run them one by one to find the bad ones. */
  private async score(request: RequestBuilder, encoder: BlockEncoder, assembler: ChunkAssembler): Promise<void> {
    const { executor, plan, mapping } = this.o;
    try {
      const outputs = await executor.infer(request.tensors(), plan.requestedOutputs);
      assembler.setOutputs(request.rowIndex, request.rows, outputs);
      this.rowsDone += request.rows;
      this.failingStreak = 0;
      return;
    } catch (error) {
      if (failureScope(error) === 'job') throw error;
      if (request.rows === 1) {
        assembler.fail(request.rowIndex[0]!, rowErrorText(error));
        this.errors++;
        this.rowsDone++;
        this.noteFailure(error);
        return;
      }
    }
    // The batch failed because of (some of) its rows: score each alone. The batch's tensors may
    // have been handed to a worker, so each row is encoded again from the block.
    for (let i = 0; i < request.rows; i++) {
      const r = request.rowIndex[i]!;
      const single = new RequestBuilder(mapping, 1);
      const problem = encoder.encodeRow(r, single);
      try {
        if (problem !== undefined) throw new TesseraError('INVALID_INPUT_DATA', problem);
        const outputs: Tensor[] = await executor.infer(single.tensors(), plan.requestedOutputs, { isolating: true });
        assembler.setOutputs(single.rowIndex, 1, outputs);
        this.failingStreak = 0;
      } catch (error) {
        if (failureScope(error) === 'job') throw error;
        assembler.fail(r, rowErrorText(error));
        this.errors++;
        this.noteFailure(error);
      }
      this.rowsDone++;
    }
  }

  /**
   * Rows the model refuses one after another, with nothing scored in between: past a point it
   * is the job (a mapping the model does not take, a broken model), not the rows. Stop then.
   */
  private noteFailure(error: unknown): void {
    this.failingStreak++;
    if (this.failingStreak >= Math.max(MAX_FAILING_STREAK, 2 * this.o.batchSize)) {
      throw new TesseraError(
        'INFERENCE_FAILED',
        `the last ${this.failingStreak} rows sent all failed, with nothing scored in between, so the job stops; the last error: ${rowErrorText(error)}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------
// Dry run
// ---------------------------------------------------------------------------

function previewValues(tensor: Tensor, row: number, perRow: number, limit: number): string {
  const values: string[] = [];
  const start = row * perRow;
  for (let k = start; k < Math.min(start + perRow, start + limit); k++) {
    const value = tensor.data[k];
    if (value === undefined) break;
    if (Buffer.isBuffer(value)) values.push(JSON.stringify(value.toString('utf8')));
    else if (tensor.datatype === 'FP32') values.push(formatFloat32(value as number));
    else if (tensor.datatype === 'FP16') values.push(formatFloat32(fromHalfBits(value as number)));
    else values.push(String(value));
  }
  return `[${values.join(', ')}${perRow > limit ? ', ...' : ''}]`;
}

function printDryRun(
  out: Sink,
  context: {
    options: BatchJobOptions;
    executor: Executor;
    mapping: Mapping;
    plan: OutputPlan;
    head: InputBlock;
    batchSize: number;
    chunkRows: number;
    concurrency: number;
    inputFormat: InputFormat;
    outputFormat: InputFormat;
  },
): void {
  const { options, executor, mapping, plan, head } = context;
  const lines: string[] = [];
  lines.push(`tessera batch --dry-run: nothing is run and nothing is written`);
  lines.push(`  model    ${executor.model.label}: ${executor.description}`);
  lines.push(`  input    ${options.input} (${context.inputFormat}); first ${head.rows} row${head.rows === 1 ? '' : 's'} checked`);
  lines.push(`  requests ${context.batchSize} rows each, ${context.concurrency} in flight; parts of ${context.chunkRows} rows`);
  const builder = new RequestBuilder(mapping, mapping.batching ? Math.max(1, Math.min(head.rows, context.batchSize)) : 1);
  const scratch = new RequestBuilder(mapping, 1);
  const encoder = new BlockEncoder(mapping, head);
  const bad: string[] = [];
  for (let r = 0; r < head.rows; r++) {
    scratch.rows = 0;
    const problem = encoder.encodeRow(r, builder.full ? scratch : builder);
    if (problem !== undefined) bad.push(`    row ${head.start + r}: ${problem}`);
  }
  lines.push(`tensors of the first request (${builder.rows} valid row${builder.rows === 1 ? '' : 's'}):`);
  if (builder.rows > 0) {
    const tensors = builder.tensors();
    mapping.bindings.forEach((binding, i) => {
      const tensor = tensors[i]!;
      const from =
        binding.source.kind === 'features'
          ? `${binding.source.columns.length} feature column${binding.source.columns.length === 1 ? '' : 's'} ${summariseColumns(binding.source.columns)}`
          : `column '${binding.source.column}'`;
      lines.push(`  ${tensor.name}  ${tensor.datatype} ${formatShape(tensor.shape)}  from ${from}`);
      for (let r = 0; r < Math.min(builder.rows, 3); r++) lines.push(`    row ${head.start + builder.rowIndex[r]!}: ${previewValues(tensor, r, binding.perRow, 8)}`);
    });
  }
  if (bad.length > 0) {
    lines.push(`rows that would get an error:`);
    lines.push(...bad);
  }
  lines.push(`output ${options.output} (${context.outputFormat}), ${plan.columns.length} columns:`);
  lines.push(`  ${summariseColumns(plan.columns.map((c) => `${c.name}:${c.kind}`), 12)}`);
  if (plan.classify !== undefined) {
    lines.push(`  prediction = argmax of '${plan.classify.output}', confidence = its maximum${plan.labels === undefined ? '' : `, label from ${plan.labels.length} labels`}`);
  }
  out.write(`${lines.join('\n')}\n`);
}

function summariseColumns(columns: readonly string[], limit = 6): string {
  if (columns.length <= limit) return columns.join(', ');
  return `${columns.slice(0, limit - 2).join(', ')}, ..., ${columns.slice(-2).join(', ')}`;
}

/** The summary printed as the last lines of a finished (or interrupted) job. */
export function formatSummary(summary: BatchSummary): string {
  const lines: string[] = [];
  if (summary.status === 'interrupted') {
    lines.push(`tessera batch: interrupted: ${formatCount(summary.rows)} rows done and checkpointed (${formatCount(summary.errors)} errors); rerun the same command to resume`);
  } else {
    lines.push(`tessera batch: done: ${formatCount(summary.rows)} rows, ${formatCount(summary.errors)} errors`);
  }
  lines.push(`  model       ${summary.executor}`);
  lines.push(
    `  requests    ${formatCount(summary.batchSize)} rows each, ${summary.concurrency} in flight, parts of ${formatCount(summary.chunkRows)} rows` +
      (summary.retries > 0 ? `; ${formatCount(summary.retries)} retried` : ''),
  );
  lines.push(
    `  rows        ${formatCount(summary.rowsThisRun)} scored by this run${summary.resumedRows > 0 ? `, ${formatCount(summary.resumedRows)} resumed from the checkpoint` : ''}; ${formatCount(summary.errors)} with an error`,
  );
  lines.push(`  throughput  ${formatCount(Math.round(summary.rowsPerSecond))} rows/s`);
  lines.push(
    `  wall time   ${formatDuration(summary.seconds)} (model load ${summary.loadSeconds.toFixed(2)}s, scoring ${summary.scoreSeconds.toFixed(2)}s` +
      (summary.status === 'done' ? `, writing the output ${summary.assembleSeconds.toFixed(2)}s)` : ')'),
  );
  lines.push(summary.status === 'done' ? `  output      ${summary.output} (${formatBytes(summary.outputBytes)})` : `  checkpoint  ${Checkpoint.dirFor(summary.output)}`);
  return `${lines.join('\n')}\n`;
}

/** The exit status of a finished job: 0 done, 130 interrupted (as a shell reports SIGINT). */
export function exitCodeOf(summary: BatchSummary): number {
  return summary.status === 'interrupted' ? 130 : 0;
}

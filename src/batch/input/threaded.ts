import type { Worker } from 'node:worker_threads';
import { siblingModule, spawnModuleWorker } from '../../backends/onnx/spawn.js';
import { TesseraError, type ErrorCode } from '../../core/errors.js';
import type { PackedFeatures, PackSpec } from '../pack.js';
import { ColumnarBlock, type ChunkBlock, type ChunkOptions, type ColumnInfo, type InputBlock, type InputFormat, type InputSource, type SkippedChunk } from './source.js';

/** A packed features input as it crosses threads (its data is a view of shared memory). */
export interface WirePacked {
  readonly input: string;
  readonly data: Float32Array | Float64Array;
  readonly perRow: number;
  readonly problems: readonly [number, string][];
}

export type ToReader =
  /** Open the input now (while the model loads), so that reading starts at once when asked. */
  | { readonly kind: 'open'; readonly path: string; readonly format: InputFormat; readonly csvDelimiter: string | undefined }
  | {
      readonly kind: 'start';
      readonly path: string;
      readonly format: InputFormat;
      readonly csvDelimiter: string | undefined;
      readonly chunkRows: number;
      readonly columns: readonly string[];
      readonly done: readonly number[];
      /** Chunks the reader may decode ahead of the ones taken. */
      readonly prefetch: number;
      /** Feature inputs to pack, and the columns to send (the others are only read for packing). */
      readonly pack?: readonly PackSpec[];
      readonly keep?: readonly string[];
    }
  | { readonly kind: 'ack' }
  /** Shared memory of packed chunks the job is done with, for the reader to reuse. */
  | { readonly kind: 'recycle'; readonly buffers: readonly SharedArrayBuffer[] }
  /** No chunks will be asked for: close the input opened ahead and end. */
  | { readonly kind: 'close' };

export type FromReader =
  | {
      readonly kind: 'chunk';
      readonly index: number;
      readonly start: number;
      readonly rows: number;
      readonly columns: readonly [string, unknown][];
      readonly rowErrors: readonly [number, string][];
      readonly packed: readonly WirePacked[];
      readonly bytesRead: number;
    }
  | { readonly kind: 'skipped'; readonly index: number; readonly rows: number; readonly bytesRead: number }
  | { readonly kind: 'end'; readonly bytesRead: number }
  | { readonly kind: 'error'; readonly code: ErrorCode; readonly message: string };

/** Chunks decoded ahead by the reader thread (with the job's chunks in flight, enough to never wait). */
const PREFETCH = 1;

/**
 * An input read in a worker thread: chunks are parsed and decoded there, feature inputs packed
 * row-major into shared memory (pack.ts; the job gives that memory back for reuse), and handed
 * over a chunk ahead of the job (other columns' typed arrays transferred, not copied), so
 * decoding runs beside the model instead of taking turns with the main thread that feeds it.
 * Everything else (the columns, the first rows) comes from `inner`, opened on the main thread.
 */
export class ThreadedSource implements InputSource {
  private consumed = 0;
  private worker: Worker | undefined;
  /** The reader of the chunks being read. */
  private running: Worker | undefined;

  constructor(
    private readonly inner: InputSource,
    private readonly csvDelimiter: string | undefined,
  ) {
    // Started now, and the input opened in it (its footer parsed), so that both overlap the
    // model's load and the first chunk is read as soon as the job asks for it.
    this.worker = spawnModuleWorker(siblingModule(import.meta.url, 'reader-worker'));
    this.worker.unref();
    const open: ToReader = { kind: 'open', path: inner.path, format: inner.format, csvDelimiter };
    this.worker.postMessage(open);
  }

  get format(): InputFormat {
    return this.inner.format;
  }

  get path(): string {
    return this.inner.path;
  }

  get columns(): readonly ColumnInfo[] {
    return this.inner.columns;
  }

  get totalRows(): number | undefined {
    return this.inner.totalRows;
  }

  get byteLength(): number {
    return this.inner.byteLength;
  }

  bytesRead(): number {
    return this.consumed;
  }

  head(rows: number, columns: readonly string[]): Promise<InputBlock> {
    return this.inner.head(rows, columns);
  }

  async *chunks(chunkRows: number, columns: readonly string[], done: ReadonlySet<number>, options: ChunkOptions = {}): AsyncGenerator<ChunkBlock | SkippedChunk> {
    const worker = this.worker ?? spawnModuleWorker(siblingModule(import.meta.url, 'reader-worker'));
    this.worker = undefined;
    this.running = worker;
    worker.ref();
    const inbox: FromReader[] = [];
    let waiting: (() => void) | undefined;
    let ended = false;
    const deliver = (message: FromReader): void => {
      inbox.push(message);
      waiting?.();
      waiting = undefined;
    };
    worker.on('message', deliver);
    worker.on('error', (error: Error) => deliver({ kind: 'error', code: 'INVALID_BATCH_INPUT', message: `the input reader failed: ${error.message}` }));
    worker.on('exit', (code) => {
      if (!ended) deliver({ kind: 'error', code: 'INVALID_BATCH_INPUT', message: `the input reader exited with code ${code}` });
    });
    const start: ToReader = {
      kind: 'start',
      path: this.inner.path,
      format: this.inner.format,
      csvDelimiter: this.csvDelimiter,
      chunkRows,
      columns,
      done: [...done],
      prefetch: PREFETCH,
      ...(options.pack === undefined ? {} : { pack: options.pack }),
      ...(options.keep === undefined ? {} : { keep: options.keep }),
    };
    worker.postMessage(start);
    try {
      for (;;) {
        while (inbox.length === 0) await new Promise<void>((resolve) => (waiting = resolve));
        const message = inbox.shift()!;
        switch (message.kind) {
          case 'chunk': {
            this.consumed = message.bytesRead;
            const ack: ToReader = { kind: 'ack' };
            worker.postMessage(ack);
            const packed = new Map<string, PackedFeatures>(message.packed.map((p) => [p.input, { data: p.data, perRow: p.perRow, problems: new Map(p.problems) }]));
            yield new ColumnarBlock(message.index, message.start, message.rows, new Map(message.columns as [string, ArrayLike<unknown>][]), new Map(message.rowErrors), packed);
            break;
          }
          case 'skipped':
            this.consumed = message.bytesRead;
            yield { skipped: true, index: message.index, rows: message.rows };
            break;
          case 'end':
            this.consumed = message.bytesRead;
            ended = true;
            return;
          case 'error':
            ended = true;
            throw new TesseraError(message.code, message.message);
        }
      }
    } finally {
      ended = true;
      this.running = undefined;
      await worker.terminate();
    }
  }

  /** Give a chunk's packed memory back to the reader, which packs later chunks into it. */
  recycle(block: InputBlock): void {
    const buffers: SharedArrayBuffer[] = [];
    for (const packed of block.packed?.values() ?? []) {
      if (packed.data.buffer instanceof SharedArrayBuffer) buffers.push(packed.data.buffer);
    }
    if (buffers.length === 0 || this.running === undefined) return;
    const message: ToReader = { kind: 'recycle', buffers };
    this.running.postMessage(message);
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) {
      // Never asked for chunks: let it close the input it opened ahead (a file descriptor is the
      // process's), then stop it. The worker (referenced again) and the timer keep the event
      // loop alive until one of them ends the wait.
      worker.ref();
      let timer: NodeJS.Timeout | undefined;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      const close: ToReader = { kind: 'close' };
      worker.postMessage(close);
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 1_000)))]);
      clearTimeout(timer);
      await worker.terminate();
    }
    await this.inner.close();
  }
}

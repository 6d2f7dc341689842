import type { Worker } from 'node:worker_threads';
import { siblingModule, spawnModuleWorker } from '../../backends/onnx/spawn.js';
import { TesseraError, type ErrorCode } from '../../core/errors.js';
import { ColumnarBlock, type ChunkBlock, type ColumnInfo, type InputBlock, type InputFormat, type InputSource, type SkippedChunk } from './source.js';

export type ToReader =
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
    }
  | { readonly kind: 'ack' };

export type FromReader =
  | {
      readonly kind: 'chunk';
      readonly index: number;
      readonly start: number;
      readonly rows: number;
      readonly columns: readonly [string, unknown][];
      readonly rowErrors: readonly [number, string][];
      readonly bytesRead: number;
    }
  | { readonly kind: 'skipped'; readonly index: number; readonly rows: number; readonly bytesRead: number }
  | { readonly kind: 'end'; readonly bytesRead: number }
  | { readonly kind: 'error'; readonly code: ErrorCode; readonly message: string };

/** Chunks decoded ahead by the reader thread. */
const PREFETCH = 2;

/**
 * An input read in a worker thread: chunks are parsed and decoded there and handed over
 * (typed arrays transferred, not copied), a couple ahead of the job, so decoding runs beside
 * the model instead of taking turns with the main thread that feeds it. Everything else (the
 * columns, the first rows) comes from `inner`, opened on the main thread.
 */
export class ThreadedSource implements InputSource {
  private consumed = 0;
  private worker: Worker | undefined;

  constructor(
    private readonly inner: InputSource,
    private readonly csvDelimiter: string | undefined,
  ) {
    // Started now, so its start-up overlaps the model's load.
    this.worker = spawnModuleWorker(siblingModule(import.meta.url, 'reader-worker'));
    this.worker.unref();
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

  async *chunks(chunkRows: number, columns: readonly string[], done: ReadonlySet<number>): AsyncGenerator<ChunkBlock | SkippedChunk> {
    const worker = this.worker ?? spawnModuleWorker(siblingModule(import.meta.url, 'reader-worker'));
    this.worker = undefined;
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
    const start: ToReader = { kind: 'start', path: this.inner.path, format: this.inner.format, csvDelimiter: this.csvDelimiter, chunkRows, columns, done: [...done], prefetch: PREFETCH };
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
            yield new ColumnarBlock(message.index, message.start, message.rows, new Map(message.columns as [string, ArrayLike<unknown>][]), new Map(message.rowErrors));
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
      await worker.terminate();
    }
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) await worker.terminate();
    await this.inner.close();
  }
}

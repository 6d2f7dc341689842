import { extname } from 'node:path';
import { TesseraError } from '../../core/errors.js';
import type { PackedFeatures, PackSpec, SharedPool } from '../pack.js';

export type InputFormat = 'jsonl' | 'csv' | 'parquet';
export const INPUT_FORMATS: readonly InputFormat[] = ['jsonl', 'csv', 'parquet'];

/** Rows read from the input: a contiguous range, column by column. */
export interface InputBlock {
  /** Absolute index of the first row. */
  readonly start: number;
  readonly rows: number;
  /** Values of a column for the block's rows (undefined/null where a row lacks it). */
  column(name: string): ArrayLike<unknown>;
  /** Rows (block-relative) that could not be parsed at all, with why. */
  readonly rowErrors: ReadonlyMap<number, string>;
  /** Feature inputs already packed row-major (see pack.ts), by model input name. */
  readonly packed?: ReadonlyMap<string, PackedFeatures>;
}

/** A chunk the caller said to skip (already done): only its size is known. */
export interface SkippedChunk {
  readonly skipped: true;
  readonly index: number;
  readonly rows: number;
}

export interface ChunkBlock extends InputBlock {
  readonly skipped: false;
  readonly index: number;
}

export interface ColumnInfo {
  readonly name: string;
  /** For typed inputs (Parquet), the column's physical/logical type; text inputs: undefined. */
  readonly parquetType?: string;
  readonly convertedType?: string;
  readonly logicalType?: string;
  /** True for a Parquet column that holds lists or structs, not scalars. */
  readonly nested?: boolean;
}

/**
 * A streaming reader of one input file. Chunks are read in order; memory stays bounded by a
 * chunk (plus, for Parquet, the row group being sliced).
 */
export interface InputSource {
  readonly format: InputFormat;
  readonly path: string;
  /** Columns in file order (the CSV header, the Parquet schema, JSONL keys of the first rows). */
  readonly columns: readonly ColumnInfo[];
  /** Row count when the format states it up front (Parquet). */
  readonly totalRows: number | undefined;
  readonly byteLength: number;
  /** Bytes consumed so far (for progress on formats without a row count). */
  bytesRead(): number;
  /**
   * Chunks of `chunkRows` rows (the last may be shorter), in order, reading only `columns`.
   * Chunks in `done` are not materialised (Parquet does not even read them).
   */
  chunks(chunkRows: number, columns: readonly string[], done: ReadonlySet<number>, options?: ChunkOptions): AsyncGenerator<ChunkBlock | SkippedChunk>;
  /** Take back a chunk's memory once the job is done with it (sources that pool it). */
  recycle?(block: InputBlock): void;
  /** The first `rows` rows (fewer if the input is shorter), reading only `columns`. */
  head(rows: number, columns: readonly string[]): Promise<InputBlock>;
  close(): Promise<void>;
}

/** How a source may prepare chunks for the job (sources that do not, ignore it). */
export interface ChunkOptions {
  /** Feature inputs to pack row-major (packed ones come in `packed`). */
  readonly pack?: readonly PackSpec[];
  /** Columns the job reads from blocks itself; the others of `columns` are only needed for packing. */
  readonly keep?: readonly string[];
  /**
   * The caller is done with a chunk's columns once it asks for the next chunk (it copies what it
   * keeps), so their memory may be reused for later chunks.
   */
  readonly transient?: boolean;
  /** Shared memory to pack into (a source that packs `pack` itself takes it from here). */
  readonly pool?: SharedPool;
}

/** The format a path's extension names, if any. */
export function formatFromPath(path: string): InputFormat | undefined {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  if (ext === '.csv' || ext === '.tsv' || ext === '.txt') return 'csv';
  if (ext === '.parquet' || ext === '.pq') return 'parquet';
  return undefined;
}

export function parseFormat(value: string | undefined, path: string, what: string): InputFormat {
  if (value !== undefined) {
    const lower = value.toLowerCase();
    const normal = lower === 'ndjson' ? 'jsonl' : lower === 'pq' ? 'parquet' : lower;
    if ((INPUT_FORMATS as readonly string[]).includes(normal)) return normal as InputFormat;
    throw new TesseraError('INVALID_PARAMETER', `--${what}-format: expected one of ${INPUT_FORMATS.join(', ')}, got '${value}'`);
  }
  const format = formatFromPath(path);
  if (format === undefined) {
    throw new TesseraError('INVALID_PARAMETER', `cannot tell the format of ${what} '${path}' from its extension; pass --${what}-format ${INPUT_FORMATS.join('|')}`);
  }
  return format;
}

/** A block over row objects or arrays gathered column by column. */
export class ColumnarBlock implements ChunkBlock {
  readonly skipped = false as const;
  constructor(
    readonly index: number,
    readonly start: number,
    readonly rows: number,
    private readonly data: ReadonlyMap<string, ArrayLike<unknown>>,
    readonly rowErrors: ReadonlyMap<number, string>,
    readonly packed?: ReadonlyMap<string, PackedFeatures>,
  ) {}

  column(name: string): ArrayLike<unknown> {
    return this.data.get(name) ?? EMPTY;
  }
}

const EMPTY: ArrayLike<unknown> = { length: 0 };

/** Fills row `at` of a chunk from one record: its values into `data`, or a message into `errors`. */
export type RecordFiller<R> = (record: R, data: ReadonlyMap<string, unknown[]>, errors: Map<number, string>, at: number) => void;

/**
 * Cut records read one by one (CSV, JSONL) into chunks of `chunkRows`: a ColumnarBlock of the
 * named columns per chunk, or a SkippedChunk for the chunks `skip` names (their records are
 * counted, not filled). The last chunk may be shorter.
 */
export async function* chunksOfRecords<R>(
  records: AsyncIterable<R>,
  chunkRows: number,
  columns: readonly string[],
  skip: (index: number) => boolean,
  fill: RecordFiller<R>,
): AsyncGenerator<ChunkBlock | SkippedChunk> {
  const newColumns = (rows: number): Map<string, unknown[]> => new Map(columns.map((name) => [name, new Array<unknown>(rows)]));
  let index = 0;
  let count = 0;
  let skipping = skip(0);
  let data = newColumns(skipping ? 0 : chunkRows);
  let errors = new Map<number, string>();
  for await (const record of records) {
    if (!skipping) fill(record, data, errors, count);
    count++;
    if (count === chunkRows) {
      yield skipping ? { skipped: true, index, rows: count } : new ColumnarBlock(index, index * chunkRows, count, data, errors);
      index++;
      count = 0;
      skipping = skip(index);
      data = newColumns(skipping ? 0 : chunkRows);
      errors = new Map();
    }
  }
  if (count === 0) return;
  if (skipping) {
    yield { skipped: true, index, rows: count };
  } else {
    for (const values of data.values()) values.length = count;
    yield new ColumnarBlock(index, index * chunkRows, count, data, errors);
  }
}

export function inputError(message: string, cause?: unknown): TesseraError {
  return new TesseraError('INVALID_BATCH_INPUT', message, cause === undefined ? {} : { cause });
}

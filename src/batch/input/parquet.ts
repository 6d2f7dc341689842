import { open, type FileHandle } from 'node:fs/promises';
import { parquetMetadataAsync, parquetRead, parquetSchema, type AsyncBuffer, type ColumnData, type FileMetaData } from 'hyparquet';
import { ColumnarBlock, inputError, type ChunkBlock, type ColumnInfo, type InputBlock, type InputSource, type SkippedChunk } from './source.js';

/** Columns decoded per read (one task each). */
const COLUMNS_PER_READ = 8;

/** Largest slice of a row group decoded at once when the file has page (offset) indexes. */
const MAX_WINDOW_ROWS = 131_072;

interface Window {
  readonly start: number;
  readonly end: number;
  readonly columns: ReadonlyMap<string, ArrayLike<unknown>>;
}

/**
 * Parquet, read with hyparquet through an AsyncBuffer over one open file descriptor: only the
 * byte ranges of the row groups (or pages) and columns being read are fetched, so memory is
 * bounded by one row group slice, whatever the file size.
 */
export class ParquetSource implements InputSource {
  readonly format = 'parquet' as const;
  private consumed = 0;
  private window: Window | undefined;
  private readonly groupStarts: number[];

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly file: AsyncBuffer,
    private readonly metadata: FileMetaData,
    readonly columns: readonly ColumnInfo[],
  ) {
    this.groupStarts = [];
    let start = 0;
    for (const group of metadata.row_groups) {
      this.groupStarts.push(start);
      start += Number(group.num_rows);
    }
  }

  get totalRows(): number {
    return Number(this.metadata.num_rows);
  }

  get byteLength(): number {
    return this.file.byteLength;
  }

  static async open(path: string): Promise<ParquetSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw inputError(`cannot read input ${path}: ${(error as Error).message}`, error);
    }
    try {
      const { size } = await handle.stat();
      const file = fileBuffer(handle, size);
      const metadata = await parquetMetadataAsync(file);
      const schema = parquetSchema(metadata);
      const columns: ColumnInfo[] = schema.children.map((child) => ({
        name: child.element.name,
        ...(child.element.type === undefined ? {} : { parquetType: child.element.type }),
        ...(child.element.converted_type === undefined ? {} : { convertedType: child.element.converted_type }),
        ...(child.element.logical_type === undefined ? {} : { logicalType: child.element.logical_type.type }),
        nested: child.children.length > 0 || child.element.repetition_type === 'REPEATED',
      }));
      return new ParquetSource(path, handle, file, metadata, columns);
    } catch (error) {
      await handle.close();
      throw inputError(`input ${path} is not a readable Parquet file: ${(error as Error).message}`, error);
    }
  }

  bytesRead(): number {
    return this.consumed;
  }

  async head(rows: number, columns: readonly string[]): Promise<InputBlock> {
    const end = Math.min(rows, this.totalRows);
    return new ColumnarBlock(0, 0, end, await this.readRange(0, end, columns), new Map());
  }

  async *chunks(chunkRows: number, columns: readonly string[], done: ReadonlySet<number>): AsyncGenerator<ChunkBlock | SkippedChunk> {
    const total = this.totalRows;
    for (let index = 0; index * chunkRows < total; index++) {
      const start = index * chunkRows;
      const end = Math.min(total, start + chunkRows);
      if (done.has(index)) {
        yield { skipped: true, index, rows: end - start };
        continue;
      }
      const data = await this.readRange(start, end, columns);
      yield new ColumnarBlock(index, start, end - start, data, new Map());
    }
    this.window = undefined;
  }

  /** Columns of rows [start, end), assembled from as many windows as the range spans. */
  private async readRange(start: number, end: number, columns: readonly string[]): Promise<Map<string, ArrayLike<unknown>>> {
    const pieces: Window[] = [];
    for (let at = start; at < end; ) {
      const window = await this.windowAt(at, end, columns);
      pieces.push(window);
      at = window.end;
    }
    const result = new Map<string, ArrayLike<unknown>>();
    for (const name of columns) {
      const parts = pieces.map((window) => ({ window, values: window.columns.get(name)! }));
      const only = parts.length === 1 ? parts[0]! : undefined;
      if (only !== undefined) {
        result.set(name, slice(only.values, start - only.window.start, end - only.window.start));
        continue;
      }
      result.set(
        name,
        assemble(
          parts.map(({ window, values }) => ({ columnName: name, columnData: values as ColumnData['columnData'], rowStart: window.start, rowEnd: window.end })),
          start,
          end,
        ),
      );
    }
    return result;
  }

  /** The decoded window holding row `at` (reading it if it is not the current one). */
  private async windowAt(at: number, end: number, columns: readonly string[]): Promise<Window> {
    const current = this.window;
    if (current !== undefined && at >= current.start && at < current.end && columns.every((name) => current.columns.has(name))) return current;
    this.window = undefined;
    const group = this.groupIndexOf(at);
    const groupStart = this.groupStarts[group]!;
    const rowGroup = this.metadata.row_groups[group]!;
    const groupEnd = groupStart + Number(rowGroup.num_rows);
    const indexed = rowGroup.columns.every((column) => column.offset_index_offset !== undefined);
    const span = Math.max(MAX_WINDOW_ROWS, end - at);
    const windowStart = indexed ? at : groupStart;
    const windowEnd = indexed ? Math.min(groupEnd, at + span) : groupEnd;
    const window = await this.readWindow(windowStart, windowEnd, columns, rowGroup.total_compressed_size ?? rowGroup.total_byte_size);
    this.window = window;
    return window;
  }

  private async readWindow(start: number, end: number, columns: readonly string[], groupBytes: bigint): Promise<Window> {
    // A few columns per read, all reads under way at once: each group of columns decodes in its
    // own task as its bytes arrive, so the event loop (which feeds the model instances) never
    // stalls for a whole row group's decoding.
    const assembled = new Map<string, ArrayLike<unknown>>();
    const groups: string[][] = [];
    for (let i = 0; i < columns.length; i += COLUMNS_PER_READ) groups.push(columns.slice(i, i + COLUMNS_PER_READ));
    await Promise.all(
      groups.map(async (names) => {
        const chunks = new Map<string, ColumnData[]>(names.map((name) => [name, []]));
        try {
          await parquetRead({
            file: this.file,
            metadata: this.metadata,
            columns: names,
            rowStart: start,
            rowEnd: end,
            useOffsetIndex: true,
            onChunk: (chunk) => chunks.get(chunk.columnName)?.push(chunk),
          });
        } catch (error) {
          throw inputError(`cannot read rows ${start}-${end - 1} of ${this.path} (columns ${names.join(', ')}): ${(error as Error).message}`, error);
        }
        for (const [name, pieces] of chunks) assembled.set(name, assemble(pieces, start, end));
      }),
    );
    this.consumed = Math.min(this.byteLength, this.consumed + Number(groupBytes) * ((end - start) / Math.max(1, this.rowsOfGroupAt(start))));
    return { start, end, columns: assembled };
  }

  private groupIndexOf(row: number): number {
    let low = 0;
    let high = this.groupStarts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.groupStarts[middle]! <= row) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  private rowsOfGroupAt(row: number): number {
    return Number(this.metadata.row_groups[this.groupIndexOf(row)]?.num_rows ?? 1);
  }

  async close(): Promise<void> {
    this.window = undefined;
    await this.handle.close();
  }
}

/** An AsyncBuffer reading byte ranges from an open file descriptor. */
function fileBuffer(handle: FileHandle, size: number): AsyncBuffer {
  return {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = Math.min(size, end ?? size);
      const length = Math.max(0, stop - start);
      const buffer = new ArrayBuffer(length);
      const view = new Uint8Array(buffer);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(view, done, length - done, start + done);
        if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${start + done} of ${size}`);
        done += bytesRead;
      }
      return buffer;
    },
  };
}

/** One contiguous array for rows [start, end) from decoded chunks that may overhang it. */
function assemble(chunks: readonly ColumnData[], start: number, end: number): ArrayLike<unknown> {
  const rows = end - start;
  const first = chunks[0];
  if (chunks.length === 1 && first !== undefined && first.rowStart <= start && first.rowEnd >= end) {
    return slice(first.columnData, start - first.rowStart, end - first.rowStart);
  }
  const ctor = chunks.every((chunk) => ArrayBuffer.isView(chunk.columnData) && chunk.columnData.constructor === first?.columnData.constructor)
    ? (first?.columnData.constructor as (new (n: number) => { [i: number]: unknown; length: number }) | undefined)
    : undefined;
  const out: { [i: number]: unknown; length: number } = ctor !== undefined ? new ctor(rows) : new Array<unknown>(rows);
  for (const chunk of chunks) {
    const from = Math.max(start, chunk.rowStart);
    const to = Math.min(end, chunk.rowEnd);
    if (to <= from) continue;
    const data = chunk.columnData as ArrayLike<unknown>;
    if (ctor !== undefined) {
      (out as unknown as Float32Array).set((data as unknown as Float32Array).subarray(from - chunk.rowStart, to - chunk.rowStart), from - start);
    } else {
      for (let row = from; row < to; row++) out[row - start] = data[row - chunk.rowStart];
    }
  }
  return out as ArrayLike<unknown>;
}

/** Rows [from, to) of a decoded array: a view for typed arrays, a copy otherwise. */
function slice(values: ArrayLike<unknown>, from: number, to: number): ArrayLike<unknown> {
  if (from === 0 && to === values.length) return values;
  if (ArrayBuffer.isView(values)) return (values as unknown as Float32Array).subarray(from, to) as ArrayLike<unknown>;
  return Array.prototype.slice.call(values, from, to) as unknown[];
}

import { open, type FileHandle } from 'node:fs/promises';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import {
  parquetMetadataAsync,
  parquetRead,
  parquetSchema,
  type AsyncBuffer,
  type ColumnData,
  type ColumnMetaData,
  type Compressors,
  type FileMetaData,
  type RowGroup,
  type SchemaElement,
} from 'hyparquet';
import { floatColumns, packedBytes, packedView, packRows, type PackedFeatures, type PackSpec, type SharedPool } from '../pack.js';
import { decodeFlatColumn, flatDecodable, type FlatArray } from './parquet-flat.js';
import { ColumnarBlock, inputError, type ChunkOptions, type ChunkBlock, type ColumnInfo, type InputBlock, type InputSource, type SkippedChunk } from './source.js';

/**
 * Codecs beyond hyparquet's own (uncompressed and snappy), from node:zlib: gzip and brotli.
 * zstd and lz4 columns are refused with the codec named (Node 20's zlib has neither).
 */
const DECOMPRESSORS: Compressors = {
  GZIP: (input) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
};

/** Columns decoded per read (one task each). */
const COLUMNS_PER_READ = 8;

/** Bytes of neighbouring column chunks read at once. */
const MAX_READ_BYTES = 4 * 1024 * 1024;

/** Spare arrays kept for reuse when reading transient chunks (two windows of 64 columns, and then some). */
const SPARE_ARRAYS = 256;

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
  /** Schema elements of the top-level columns, by name. */
  private readonly elements: Map<string, SchemaElement>;
  private readBuffer = new Uint8Array(0);
  private reading = false;
  /** Reading transient chunks (ChunkOptions.transient): arrays are reused from chunk to chunk. */
  private transient = false;
  /** Packing a chunk (readPacked): a window is done with once the next is read. */
  private consuming = false;
  /** Arrays this source allocated, free for reuse; those lent to the last chunk; all it allocated. */
  private readonly spare: FlatArray[] = [];
  private readonly lent: ArrayLike<unknown>[] = [];
  private readonly ours = new WeakSet<object>();

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly file: AsyncBuffer,
    private readonly metadata: FileMetaData,
    readonly columns: readonly ColumnInfo[],
  ) {
    this.groupStarts = [];
    this.elements = new Map(parquetSchema(metadata).children.filter((child) => child.children.length === 0).map((child) => [child.element.name, child.element]));
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

  async *chunks(chunkRows: number, columns: readonly string[], done: ReadonlySet<number>, options: ChunkOptions = {}): AsyncGenerator<ChunkBlock | SkippedChunk> {
    const total = this.totalRows;
    this.transient = options.transient === true;
    try {
      for (let index = 0; index * chunkRows < total; index++) {
        const start = index * chunkRows;
        const end = Math.min(total, start + chunkRows);
        if (done.has(index)) {
          yield { skipped: true, index, rows: end - start };
          continue;
        }
        // The caller is done with the chunk before (transient): its arrays can be reused.
        for (const values of this.lent.splice(0)) this.giveBack(values);
        const { pack, pool } = options;
        if (pack !== undefined && pack.length > 0 && pool !== undefined) {
          const packed = await this.readPacked(index, start, end, columns, pack, options.keep ?? columns, pool);
          if (packed !== undefined) {
            yield packed;
            continue;
          }
        }
        const data = await this.readRange(start, end, columns);
        yield new ColumnarBlock(index, start, end - start, data, new Map());
      }
    } finally {
      this.window = undefined;
      this.transient = false;
      this.spare.length = 0;
      this.lent.length = 0;
    }
  }

  /**
   * A chunk with its feature inputs packed straight from the decoded row groups into shared
   * memory (see pack.ts), window by window, and only the `keep` columns copied out; undefined
   * when some feature column is not a float column (the caller reads the chunk the usual way).
   * Reading transient chunks, a window's memory is reused as soon as the next one is read.
   */
  private async readPacked(
    index: number,
    start: number,
    end: number,
    columns: readonly string[],
    pack: readonly PackSpec[],
    keep: readonly string[],
    pool: SharedPool,
  ): Promise<ColumnarBlock | undefined> {
    const rows = end - start;
    const memories = pack.map((spec) => pool.take(packedBytes(spec, rows)));
    const targets = pack.map((spec, i) => packedView(spec, rows, memories[i]!));
    const problems = pack.map(() => new Map<number, string>());
    const kept = new Map<string, { [i: number]: unknown; length: number }>();
    this.consuming = true;
    try {
      for (let at = start; at < end; ) {
        const window = await this.windowAt(at, end, columns);
        const to = Math.min(end, window.end);
        const from = at - window.start;
        const n = to - at;
        for (let i = 0; i < pack.length; i++) {
          const spec = pack[i]!;
          const values = floatColumns(spec.columns.map((name) => slice(window.columns.get(name) ?? [], from, from + n)), n);
          if (values === undefined) {
            for (const memory of memories) pool.give(memory);
            return undefined;
          }
          packRows(spec, values, n, targets[i]!, at - start, problems[i]!);
        }
        for (const name of keep) {
          const values = window.columns.get(name);
          if (values === undefined) continue;
          let out = kept.get(name);
          if (out === undefined) {
            out = ArrayBuffer.isView(values) ? new (values.constructor as new (n: number) => Float32Array)(rows) : new Array<unknown>(rows);
            kept.set(name, out);
          }
          if (ArrayBuffer.isView(out) && ArrayBuffer.isView(values) && out.constructor === values.constructor) {
            (out as Float32Array).set((values as unknown as Float32Array).subarray(from, from + n), at - start);
          } else {
            for (let r = 0; r < n; r++) out[at - start + r] = values[from + r];
          }
        }
        at = to;
      }
    } finally {
      this.consuming = false;
    }
    const packed = new Map<string, PackedFeatures>(pack.map((spec, i) => [spec.input, { data: targets[i]!, perRow: spec.columns.length, problems: problems[i]! }]));
    return new ColumnarBlock(index, start, rows, kept as Map<string, ArrayLike<unknown>>, new Map(), packed);
  }

  /** A typed array of `rows` values for decoding or assembling: a spare one when reading transient chunks. */
  private allocate = <T extends FlatArray>(ctor: new (n: number) => T, rows: number): T => {
    if (this.transient) {
      const at = this.spare.findIndex((values) => values.constructor === ctor && values.length === rows);
      if (at !== -1) return this.spare.splice(at, 1)[0] as T;
    }
    const values = new ctor(rows);
    this.ours.add(values);
    return values;
  };

  /** Keep an array this source allocated for reuse (transient chunks only). */
  private giveBack(values: unknown): void {
    if (!this.transient || !this.ours.has(values as object) || this.spare.length >= SPARE_ARRAYS || this.spare.includes(values as FlatArray)) return;
    this.spare.push(values as FlatArray);
  }

  private releaseWindow(window: Window): void {
    for (const values of window.columns.values()) this.giveBack(values);
  }

  /** Columns of rows [start, end), assembled from as many windows as the range spans. */
  private async readRange(start: number, end: number, columns: readonly string[]): Promise<Map<string, ArrayLike<unknown>>> {
    const previous = this.window;
    const pieces: Window[] = [];
    for (let at = start; at < end; ) {
      const window = await this.windowAt(at, end, columns);
      pieces.push(window);
      at = window.end;
    }
    const result = this.assembleRange(pieces, start, end, columns);
    if (this.transient) {
      // Windows this range no longer needs (their rows are in `result`, copied) are reused.
      const current = this.window;
      const done = new Set([previous, ...pieces]);
      done.delete(current);
      for (const window of done) if (window !== undefined) this.releaseWindow(window);
      for (const values of result.values()) if (!(current?.columns !== undefined && [...current.columns.values()].includes(values))) this.lent.push(values);
    }
    return result;
  }

  private assembleRange(pieces: readonly Window[], start: number, end: number, columns: readonly string[]): Map<string, ArrayLike<unknown>> {
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
          this.allocate,
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
    // Packing transient chunks, the rows of the window being left are already copied out.
    if (this.consuming && this.transient && current !== undefined) this.releaseWindow(current);
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
    const assembled = new Map<string, ArrayLike<unknown>>();
    // Whole row groups: flat numeric columns are decoded by the fast path, straight into one
    // typed array each; the rest (and any column it turns down) by hyparquet.
    const group = this.groupIndexOf(start);
    const groupStart = this.groupStarts[group]!;
    const rowGroup = this.metadata.row_groups[group]!;
    let rest = columns;
    if (start === groupStart && end === groupStart + Number(rowGroup.num_rows)) {
      for (const [name, values] of await this.readFlatColumns(rowGroup, columns, end - start)) assembled.set(name, values);
      rest = columns.filter((name) => !assembled.has(name));
    }
    // A few columns per read, all reads under way at once: each group of columns decodes in its
    // own task as its bytes arrive, so the event loop (which feeds the model instances) never
    // stalls for a whole row group's decoding.
    const groups: string[][] = [];
    for (let i = 0; i < rest.length; i += COLUMNS_PER_READ) groups.push(rest.slice(i, i + COLUMNS_PER_READ));
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
            compressors: DECOMPRESSORS,
            onChunk: (chunk) => chunks.get(chunk.columnName)?.push(chunk),
          });
        } catch (error) {
          throw inputError(`cannot read rows ${start}-${end - 1} of ${this.path} (columns ${names.join(', ')}): ${(error as Error).message}`, error);
        }
        for (const [name, pieces] of chunks) assembled.set(name, assemble(pieces, start, end, this.allocate));
      }),
    );
    this.consumed = Math.min(this.byteLength, this.consumed + Number(groupBytes) * ((end - start) / Math.max(1, this.rowsOfGroupAt(start))));
    return { start, end, columns: assembled };
  }

  /**
   * The columns of a whole row group the fast path decodes (see parquet-flat.ts): their bytes
   * are read at once (one read when they lie close together, as they usually do), into a buffer
   * reused from group to group.
   */
  private async readFlatColumns(rowGroup: RowGroup, columns: readonly string[], rows: number): Promise<Map<string, ArrayLike<unknown>>> {
    const decoded = new Map<string, ArrayLike<unknown>>();
    const wanted: { name: string; element: SchemaElement; meta: ColumnMetaData; start: number; end: number }[] = [];
    for (const name of columns) {
      const element = this.elements.get(name);
      const chunk = rowGroup.columns.find((column) => column.meta_data?.path_in_schema.length === 1 && column.meta_data.path_in_schema[0] === name);
      const meta = chunk?.meta_data;
      if (element === undefined || meta === undefined || !flatDecodable(element, meta)) continue;
      const first = meta.dictionary_page_offset !== undefined && meta.dictionary_page_offset > 0n && meta.dictionary_page_offset < meta.data_page_offset ? meta.dictionary_page_offset : meta.data_page_offset;
      const from = Number(first);
      const to = from + Number(meta.total_compressed_size);
      if (to > this.file.byteLength) continue;
      wanted.push({ name, element, meta, start: from, end: to });
    }
    if (wanted.length === 0) return decoded;
    wanted.sort((a, b) => a.start - b.start);
    // Neighbouring column chunks are read together, a few MiB at a time: few reads, and a small
    // read buffer (reused from read to read).
    const ranges: { start: number; end: number }[] = [];
    for (const column of wanted) {
      const last = ranges[ranges.length - 1];
      if (last !== undefined && column.start >= last.end && column.start - last.end <= 65_536 && column.end - last.start <= MAX_READ_BYTES) last.end = column.end;
      else ranges.push({ start: column.start, end: column.end });
    }
    for (const range of ranges) {
      const bytes = await this.readBytes(range.start, range.end);
      for (const column of wanted) {
        if (column.start < range.start || column.end > range.end) continue;
        const values = decodeFlatColumn(bytes.subarray(column.start - range.start, column.end - range.start), column.element, column.meta, rows, this.allocate);
        if (values !== undefined) decoded.set(column.name, values);
      }
    }
    return decoded;
  }

  /** Bytes [start, end) of the file, in the reused read buffer (valid until the next call). */
  private async readBytes(start: number, end: number): Promise<Uint8Array> {
    const length = end - start;
    if (this.readBuffer.length < length) this.readBuffer = new Uint8Array(Math.max(length, Math.ceil(this.readBuffer.length * 1.25)));
    // Reads do not overlap (windows are read one after another); if one ever did, it gets its own buffer.
    const view = this.reading ? new Uint8Array(length) : this.readBuffer.subarray(0, length);
    this.reading = true;
    try {
      await this.fill(view, start);
    } finally {
      if (view.buffer === this.readBuffer.buffer) this.reading = false;
    }
    return view;
  }

  private async fill(view: Uint8Array, start: number): Promise<void> {
    const length = view.length;
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(view, done, length - done, start + done);
      if (bytesRead === 0) throw inputError(`cannot read ${this.path}: unexpected end of file at byte ${start + done}`);
      done += bytesRead;
    }
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
function assemble(chunks: readonly ColumnData[], start: number, end: number, allocate: <T extends FlatArray>(ctor: new (n: number) => T, rows: number) => T): ArrayLike<unknown> {
  const rows = end - start;
  const first = chunks[0];
  if (chunks.length === 1 && first !== undefined && first.rowStart <= start && first.rowEnd >= end) {
    return slice(first.columnData, start - first.rowStart, end - first.rowStart);
  }
  const ctor = chunks.every((chunk) => ArrayBuffer.isView(chunk.columnData) && chunk.columnData.constructor === first?.columnData.constructor)
    ? (first?.columnData.constructor as (new (n: number) => { [i: number]: unknown; length: number }) | undefined)
    : undefined;
  const flat = ctor === Float32Array || ctor === Float64Array || ctor === Int32Array || ctor === BigInt64Array;
  const out: { [i: number]: unknown; length: number } =
    ctor === undefined ? new Array<unknown>(rows) : flat ? allocate(ctor as unknown as new (n: number) => FlatArray, rows) : new ctor(rows);
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

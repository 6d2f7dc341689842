import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Parser } from 'csv-parse';
import { TesseraError } from '../../core/errors.js';
import { chunksOfRecords, ColumnarBlock, inputError, type ChunkBlock, type ColumnInfo, type InputBlock, type InputSource, type SkippedChunk } from './source.js';

interface CsvRecord {
  readonly fields: string[];
  readonly line: number;
}

/**
 * CSV (or TSV) with a header row, parsed by csv-parse as a stream. Values are strings; an empty
 * field is a missing value. A record with more or fewer fields than the header is a row with an
 * error. Broken quoting makes the rest of the file ambiguous, so it stops the job with the line.
 */
export class CsvSource implements InputSource {
  readonly format = 'csv' as const;
  readonly totalRows = undefined;
  private consumed = 0;

  private constructor(
    readonly path: string,
    readonly byteLength: number,
    readonly columns: readonly ColumnInfo[],
    private readonly delimiter: string,
  ) {}

  static async open(path: string, delimiter: string | undefined): Promise<CsvSource> {
    const info = await stat(path).catch((error: unknown) => {
      throw inputError(`cannot read input ${path}: ${(error as Error).message}`, error);
    });
    if (!info.isFile()) throw inputError(`input ${path} is not a file`);
    const chosen = delimiter ?? (path.toLowerCase().endsWith('.tsv') ? '\t' : ',');
    let header: string[] | undefined;
    for await (const record of readRecords(path, chosen, () => undefined)) {
      header = record.fields;
      break;
    }
    if (header === undefined) throw inputError(`input ${path} is empty: a CSV input needs a header row`);
    const seen = new Set<string>();
    for (const name of header) {
      if (name === '') throw inputError(`input ${path}: the header has an empty column name`);
      if (seen.has(name)) throw inputError(`input ${path}: the header names column '${name}' twice`);
      seen.add(name);
    }
    return new CsvSource(path, info.size, header.map((name) => ({ name })), chosen);
  }

  bytesRead(): number {
    return this.consumed;
  }

  async head(rows: number, columns: readonly string[]): Promise<InputBlock> {
    for await (const chunk of this.readChunks(rows, columns, () => false, false)) {
      if (!chunk.skipped) return chunk;
    }
    return new ColumnarBlock(0, 0, 0, new Map(), new Map());
  }

  chunks(chunkRows: number, columns: readonly string[], done: ReadonlySet<number>): AsyncGenerator<ChunkBlock | SkippedChunk> {
    return this.readChunks(chunkRows, columns, (index) => done.has(index), true);
  }

  private readChunks(chunkRows: number, columns: readonly string[], skip: (index: number) => boolean, track: boolean): AsyncGenerator<ChunkBlock | SkippedChunk> {
    const header = this.columns.map((column) => column.name);
    const positions = columns.map((name) => [name, header.indexOf(name)] as const);
    const onBytes = track ? (n: number) => (this.consumed += n) : () => undefined;
    return chunksOfRecords(dataRecords(readRecords(this.path, this.delimiter, onBytes)), chunkRows, columns, skip, (record, data, errors, at) => {
      if (record.fields.length !== header.length) {
        errors.set(at, `line ${record.line}: ${record.fields.length} fields, but the header has ${header.length}`);
        return;
      }
      for (const [name, column] of positions) {
        const value = column === -1 ? undefined : record.fields[column];
        data.get(name)![at] = value === '' ? null : value;
      }
    });
  }

  async close(): Promise<void> {}
}

/** The records after the header. */
async function* dataRecords(records: AsyncIterable<CsvRecord>): AsyncGenerator<CsvRecord> {
  let first = true;
  for await (const record of records) {
    if (first) first = false;
    else yield record;
  }
}

/** Every record of a CSV file, in order, parsed incrementally as the file streams in. */
async function* readRecords(path: string, delimiter: string, onBytes: (n: number) => void): AsyncGenerator<CsvRecord> {
  const queue: CsvRecord[] = [];
  let failure: Error | undefined;
  const parser = new Parser({
    delimiter,
    bom: true,
    skip_empty_lines: true,
    relax_column_count: true,
    relax_quotes: true,
    info: false,
    on_record: (fields: string[], context) => {
      queue.push({ fields, line: context.lines });
      return null;
    },
  });
  parser.on('error', (error: Error) => {
    failure ??= error;
  });
  const fail = (error: Error): Error => inputError(`input ${path} is not valid CSV: ${error.message}`, error);
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      onBytes(piece.length);
      parser.write(piece);
      if (failure !== undefined) throw fail(failure);
      for (const record of queue) yield record;
      queue.length = 0;
    }
  } catch (error) {
    if (error instanceof TesseraError) throw error;
    throw inputError(`cannot read input ${path}: ${(error as Error).message}`, error);
  } finally {
    stream.destroy();
  }
  const finished = new Promise<void>((resolve) => {
    parser.once('finish', resolve);
    parser.once('error', () => resolve());
  });
  parser.end();
  await finished;
  if (failure !== undefined) throw fail(failure);
  for (const record of queue) yield record;
}

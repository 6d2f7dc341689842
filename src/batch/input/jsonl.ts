import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { chunksOfRecords, ColumnarBlock, inputError, type ChunkBlock, type ColumnInfo, type InputBlock, type InputSource, type SkippedChunk } from './source.js';

/** Rows whose keys make up the column list. */
const DISCOVERY_ROWS = 1000;

/**
 * JSON Lines: one JSON object per line, read line by line from a stream. Blank lines are not
 * rows. A line that is not a JSON object is a row with an error, not a failure of the job.
 */
export class JsonlSource implements InputSource {
  readonly format = 'jsonl' as const;
  readonly totalRows = undefined;
  private consumed = 0;

  private constructor(
    readonly path: string,
    readonly byteLength: number,
    readonly columns: readonly ColumnInfo[],
  ) {}

  static async open(path: string): Promise<JsonlSource> {
    const info = await stat(path).catch((error: unknown) => {
      throw inputError(`cannot read input ${path}: ${(error as Error).message}`, error);
    });
    if (!info.isFile()) throw inputError(`input ${path} is not a file`);
    const keys = new Set<string>();
    let seen = 0;
    for await (const { text } of readLines(path, () => undefined)) {
      try {
        const row: unknown = JSON.parse(text);
        if (isObject(row)) for (const key of Object.keys(row)) keys.add(key);
      } catch {
        // A bad line is reported when it is read as a row.
      }
      if (++seen >= DISCOVERY_ROWS) break;
    }
    return new JsonlSource(path, info.size, [...keys].map((name) => ({ name })));
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
    const onBytes = track ? (n: number) => (this.consumed += n) : () => undefined;
    // A row without a key named like an Object.prototype member ('constructor', 'toString',
    // '__proto__') would read the inherited member: a function the reader thread cannot post,
    // or a value that is not the row's. Only those columns are checked for an own key.
    const inherited = columns.filter((name) => name in Object.prototype);
    return chunksOfRecords(readLines(this.path, onBytes), chunkRows, columns, skip, ({ text, line }, data, errors, at) => {
      let row: unknown;
      try {
        row = JSON.parse(text);
      } catch (error) {
        errors.set(at, `line ${line}: invalid JSON: ${(error as Error).message}`);
        return;
      }
      if (isObject(row)) {
        for (const [name, values] of data) values[at] = row[name];
        for (const name of inherited) if (!Object.hasOwn(row, name)) data.get(name)![at] = undefined;
      } else {
        errors.set(at, `line ${line}: expected a JSON object, got ${Array.isArray(row) ? 'an array' : typeof row}`);
      }
    });
  }

  async close(): Promise<void> {}
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const NEWLINE = 0x0a;

/** Non-blank lines of a file, with their 1-based line numbers; `onBytes` sees every byte read. */
export async function* readLines(path: string, onBytes: (n: number) => void): AsyncGenerator<{ text: string; line: number }> {
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  let carry: Buffer | undefined;
  let line = 0;
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      onBytes(piece.length);
      let buffer = carry === undefined ? piece : Buffer.concat([carry, piece]);
      carry = undefined;
      let from = 0;
      for (let at = buffer.indexOf(NEWLINE, from); at !== -1; at = buffer.indexOf(NEWLINE, from)) {
        line++;
        const text = buffer.toString('utf8', from, at);
        from = at + 1;
        if (line === 1 && text.charCodeAt(0) === 0xfeff) {
          const stripped = text.slice(1);
          if (!isBlank(stripped)) yield { text: stripped, line };
          continue;
        }
        if (!isBlank(text)) yield { text, line };
      }
      if (from < buffer.length) carry = buffer.subarray(from);
      buffer = Buffer.alloc(0);
    }
  } catch (error) {
    throw inputError(`cannot read input ${path}: ${(error as Error).message}`, error);
  }
  if (carry !== undefined && carry.length > 0) {
    line++;
    const text = carry.toString('utf8');
    if (!isBlank(text)) yield { text, line };
  }
}

function isBlank(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

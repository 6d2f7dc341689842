import { open, type FileHandle } from 'node:fs/promises';
import { formatFloat32, type ChunkResult, type ColumnSpec, type ColumnVector } from '../columns.js';
import { writePiecesAt } from './files.js';
import { yieldToEventLoop } from './parquet-encoder.js';
import type { EncodedPart, OutputAssembly, OutputWriter } from './writer.js';

/** Rows formatted between yields to the event loop. */
const ROWS_PER_SLICE = 2048;

/** Text of one cell, or null for a null cell. JSON numbers and CSV fields share it. */
function cellText(column: ColumnVector, r: number): string | null {
  if (column.nulls !== undefined && column.nulls[r] === 1) return null;
  const value = column.values[r];
  if (value === null || value === undefined) return null;
  switch (column.spec.kind) {
    case 'float32': {
      const n = value as number;
      return Number.isFinite(n) ? formatFloat32(n) : null;
    }
    case 'float64': {
      const n = value as number;
      return Number.isFinite(n) ? String(n) : null;
    }
    case 'bool':
      return value === true || value === 1 ? 'true' : 'false';
    default:
      return String(value);
  }
}

/** UTF-8 text of `rows` lines made by `lineOf`, yielding to the event loop every ROWS_PER_SLICE rows. */
async function encodeLines(rows: number, lineOf: (row: number) => string): Promise<EncodedPart> {
  const lines: string[] = new Array<string>(rows);
  for (let r = 0; r < rows; r++) {
    if (r > 0 && r % ROWS_PER_SLICE === 0) await yieldToEventLoop();
    lines[r] = lineOf(r);
  }
  const bytes = Buffer.from(lines.join(''), 'utf8');
  return { pieces: [bytes], byteLength: bytes.length };
}

/** JSON Lines: one object per row, keys in column order; null cells are JSON null. */
export class JsonlWriter implements OutputWriter {
  readonly format = 'jsonl' as const;
  readonly extension = 'jsonl';
  private readonly keys: string[];

  constructor(private readonly columns: readonly ColumnSpec[]) {
    this.keys = columns.map((column, i) => `${i === 0 ? '{' : ','}${JSON.stringify(column.name)}:`);
  }

  readonly keepsState = false;

  encodePart(chunk: ChunkResult): Promise<EncodedPart> {
    const columns = chunk.columns;
    return encodeLines(chunk.rows, (r) => {
      let line = '';
      for (let c = 0; c < columns.length; c++) {
        const column = columns[c]!;
        const text = cellText(column, r);
        line += this.keys[c]!;
        line += text === null ? 'null' : column.spec.kind === 'string' ? JSON.stringify(text) : text;
      }
      return `${line}}\n`;
    });
  }

  assemble(target: string, resume?: { readonly bytes: number }): Promise<OutputAssembly> {
    return Concatenation.open(target, '', resume?.bytes);
  }
}

/** CSV with a header row; null cells are empty; fields are quoted when they need it. */
export class CsvWriter implements OutputWriter {
  readonly format = 'csv' as const;
  readonly extension = 'csv';

  constructor(
    private readonly columns: readonly ColumnSpec[],
    private readonly delimiter = ',',
  ) {}

  readonly keepsState = false;

  encodePart(chunk: ChunkResult): Promise<EncodedPart> {
    const columns = chunk.columns;
    return encodeLines(chunk.rows, (r) => {
      let line = '';
      for (let c = 0; c < columns.length; c++) {
        const column = columns[c]!;
        if (c > 0) line += this.delimiter;
        const text = cellText(column, r);
        if (text !== null) line += column.spec.kind === 'string' ? this.quote(text) : text;
      }
      return `${line}\n`;
    });
  }

  private quote(text: string): string {
    if (text === '') return '""';
    const needs = text.includes(this.delimiter) || /["\r\n]/.test(text) || text.trim() !== text;
    return needs ? `"${text.replaceAll('"', '""')}"` : text;
  }

  assemble(target: string, resume?: { readonly bytes: number }): Promise<OutputAssembly> {
    return Concatenation.open(target, `${this.columns.map((column) => this.quote(column.name)).join(this.delimiter)}\n`, resume?.bytes);
  }
}

/** A text output: `prefix` (a header), then every chunk's bytes, in order. */
class Concatenation implements OutputAssembly {
  private constructor(
    private readonly handle: FileHandle,
    private offset: number,
  ) {}

  get length(): number {
    return this.offset;
  }

  /** A new output starting with `prefix`, or the one at `target` cut to `resumeBytes` (its chunks so far). */
  static async open(target: string, prefix: string, resumeBytes?: number): Promise<Concatenation> {
    if (resumeBytes !== undefined && resumeBytes > 0) {
      const handle = await open(target, 'r+');
      try {
        await handle.truncate(resumeBytes);
      } catch (error) {
        await handle.close();
        throw error;
      }
      return new Concatenation(handle, resumeBytes);
    }
    const handle = await open(target, 'w');
    const bytes = Buffer.from(prefix, 'utf8');
    if (bytes.length > 0) await handle.write(bytes, 0, bytes.length, 0);
    return new Concatenation(handle, bytes.length);
  }

  async append(part: EncodedPart): Promise<unknown> {
    this.offset += await writePiecesAt(this.handle, part.pieces, this.offset);
    // Flushed as it grows (off the job's critical path): the checkpoint counts on these bytes.
    await this.handle.datasync();
    return undefined;
  }

  async finish(): Promise<void> {
    try {
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

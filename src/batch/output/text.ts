import { open, readFile, type FileHandle } from 'node:fs/promises';
import { formatFloat32, type ChunkResult, type ColumnSpec, type ColumnVector } from '../columns.js';
import { writeFileAtomic } from './files.js';
import { yieldToEventLoop } from './parquet-encoder.js';

/** Rows formatted between yields to the event loop. */
const ROWS_PER_SLICE = 2048;
import type { OutputAssembly, OutputWriter } from './writer.js';

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

/** JSON Lines: one object per row, keys in column order; null cells are JSON null. */
export class JsonlWriter implements OutputWriter {
  readonly format = 'jsonl' as const;
  readonly extension = 'jsonl';
  private readonly keys: string[];

  constructor(private readonly columns: readonly ColumnSpec[]) {
    this.keys = columns.map((column, i) => `${i === 0 ? '{' : ','}${JSON.stringify(column.name)}:`);
  }

  async writePart(path: string, chunk: ChunkResult): Promise<Uint8Array> {
    const lines: string[] = new Array<string>(chunk.rows);
    const columns = chunk.columns;
    for (let r = 0; r < chunk.rows; r++) {
      if (r > 0 && r % ROWS_PER_SLICE === 0) await yieldToEventLoop();
      let line = '';
      for (let c = 0; c < columns.length; c++) {
        const column = columns[c]!;
        const text = cellText(column, r);
        line += this.keys[c]!;
        line += text === null ? 'null' : column.spec.kind === 'string' ? JSON.stringify(text) : text;
      }
      lines[r] = `${line}}\n`;
    }
    const bytes = Buffer.from(lines.join(''), 'utf8');
    await writeFileAtomic(path, bytes);
    return bytes;
  }

  assemble(target: string): Promise<OutputAssembly> {
    return Concatenation.open(target, '');
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

  async writePart(path: string, chunk: ChunkResult): Promise<Uint8Array> {
    const lines: string[] = new Array<string>(chunk.rows);
    const columns = chunk.columns;
    for (let r = 0; r < chunk.rows; r++) {
      if (r > 0 && r % ROWS_PER_SLICE === 0) await yieldToEventLoop();
      let line = '';
      for (let c = 0; c < columns.length; c++) {
        const column = columns[c]!;
        if (c > 0) line += this.delimiter;
        const text = cellText(column, r);
        if (text !== null) line += column.spec.kind === 'string' ? this.quote(text) : text;
      }
      lines[r] = `${line}\n`;
    }
    const bytes = Buffer.from(lines.join(''), 'utf8');
    await writeFileAtomic(path, bytes);
    return bytes;
  }

  private quote(text: string): string {
    if (text === '') return '""';
    const needs = text.includes(this.delimiter) || /["\r\n]/.test(text) || text.trim() !== text;
    return needs ? `"${text.replaceAll('"', '""')}"` : text;
  }

  assemble(target: string): Promise<OutputAssembly> {
    return Concatenation.open(target, `${this.columns.map((column) => this.quote(column.name)).join(this.delimiter)}\n`);
  }
}

/** A text output: `prefix` (a header), then every part's bytes, in order. */
class Concatenation implements OutputAssembly {
  private constructor(private readonly handle: FileHandle) {}

  static async open(target: string, prefix: string): Promise<Concatenation> {
    const handle = await open(target, 'w');
    if (prefix !== '') await handle.write(prefix);
    return new Concatenation(handle);
  }

  async append(part: string, bytes?: Uint8Array): Promise<void> {
    await this.handle.write(bytes ?? (await readFile(part)));
    // Flushed as it grows (off the job's critical path), so that the final flush is short.
    await this.handle.datasync();
  }

  async finish(): Promise<void> {
    try {
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  async abandon(): Promise<void> {
    await this.handle.close();
  }
}

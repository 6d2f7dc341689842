import { extname } from 'node:path';
import type { ChunkResult, ColumnSpec } from '../columns.js';
import type { InputFormat } from '../input/source.js';
import { ParquetOutputWriter, type ParquetCompression } from './parquet.js';
import { CsvWriter, JsonlWriter } from './text.js';

export type OutputFormat = InputFormat;

/**
 * Writes one output format: each chunk as a self-contained part file (atomically), and the
 * final output from the parts in row order, appended one part at a time (while the job still
 * runs) and finished once the last part is in.
 */
export interface OutputWriter {
  readonly format: OutputFormat;
  /** Extension of part files. */
  readonly extension: string;
  /** Write a chunk's part; resolves with the bytes written (for the assembly, saving a re-read). */
  writePart(path: string, chunk: ChunkResult): Promise<Uint8Array>;
  /** Start the final output at `target` (renamed into place by the caller once finished). */
  assemble(target: string): Promise<OutputAssembly>;
}

/** The final output being put together from parts, in order. */
export interface OutputAssembly {
  /** Append the next part (parts must come in row order), from `bytes` when given, else read from `part`. */
  append(part: string, bytes?: Uint8Array): Promise<void>;
  /** Write what ends the file, flush it to disk and close it. */
  finish(): Promise<void>;
  /** Close without finishing (the job stopped); the caller deletes the file. */
  abandon(): Promise<void>;
}

export interface OutputWriterOptions {
  readonly compression: ParquetCompression;
  readonly csvDelimiter: string | undefined;
}

export function createOutputWriter(format: OutputFormat, outputPath: string, columns: readonly ColumnSpec[], options: OutputWriterOptions): OutputWriter {
  switch (format) {
    case 'jsonl':
      return new JsonlWriter(columns);
    case 'csv':
      return new CsvWriter(columns, options.csvDelimiter ?? (extname(outputPath).toLowerCase() === '.tsv' ? '\t' : ','));
    case 'parquet':
      return new ParquetOutputWriter(columns, options.compression);
  }
}

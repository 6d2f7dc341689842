import { extname } from 'node:path';
import type { ChunkResult, ColumnSpec } from '../columns.js';
import type { InputFormat } from '../input/source.js';
import { ParquetOutputWriter, type ParquetCompression } from './parquet.js';
import { CsvWriter, JsonlWriter } from './text.js';

export type OutputFormat = InputFormat;

/**
 * A chunk as it goes into the output: bytes in pieces, written one after the other. The pieces
 * may be views of the chunk's own column arrays (Parquet writes numeric values as they are), so
 * the chunk's columns stay untouched until the part is appended.
 */
export interface EncodedPart {
  readonly pieces: readonly Uint8Array[];
  readonly byteLength: number;
}

/**
 * Writes one output format: each chunk encoded on its own, then appended, in row order, to
 * the output being put together (kept across runs: an interrupted job resumes from it), which
 * is finished once the last chunk is in.
 */
export interface OutputWriter {
  readonly format: OutputFormat;
  /** Extension of the partial output's name. */
  readonly extension: string;
  /** Whether appending a chunk returns a state that resuming needs back (Parquet's row-group metadata). */
  readonly keepsState: boolean;
  /** A chunk's bytes, as they go into the output. */
  encodePart(chunk: ChunkResult): Promise<EncodedPart>;
  /** The part encodePart returned is in the output now: its memory may be reused. */
  reclaim?(part: EncodedPart): void;
  /**
   * Start the output at `target` (renamed into place by the caller once finished), or carry on
   * with the one there: its first `resume.bytes` bytes hold the chunks whose states are given.
   */
  assemble(target: string, resume?: { readonly bytes: number; readonly states: readonly unknown[] }): Promise<OutputAssembly>;
}

/** The output being put together from chunks, in order. */
export interface OutputAssembly {
  /** Bytes of the output so far. */
  readonly length: number;
  /**
   * Append the next chunk (a part from the same writer's encodePart) and flush it to disk;
   * resolves with the chunk's state (keepsState), else undefined.
   */
  append(part: EncodedPart): Promise<unknown>;
  /** Write what ends the file, flush it to disk and close it. */
  finish(): Promise<void>;
  /** Close, keeping what was appended (a later run carries on from it). */
  close(): Promise<void>;
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

import { CsvSource } from './csv.js';
import { JsonlSource } from './jsonl.js';
import { ParquetSource } from './parquet.js';
import type { InputFormat, InputSource } from './source.js';

/** Open an input file of `format` for streaming reads. */
export async function openSource(path: string, format: InputFormat, csvDelimiter: string | undefined): Promise<InputSource> {
  switch (format) {
    case 'jsonl':
      return JsonlSource.open(path);
    case 'csv':
      return CsvSource.open(path, csvDelimiter);
    case 'parquet':
      return ParquetSource.open(path);
  }
}

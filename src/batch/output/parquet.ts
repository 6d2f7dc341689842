import { open, readFile, type FileHandle } from 'node:fs/promises';
import { parquetMetadata, type ColumnChunk, type FileMetaData, type RowGroup, type SchemaElement } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import type { ChunkResult, ColumnSpec } from '../columns.js';
import { writeFileAtomic } from './files.js';
import { encodeParquetPart, parquetSchemaOf, type ParquetCodec } from './parquet-encoder.js';
import type { OutputAssembly, OutputWriter } from './writer.js';

export type ParquetCompression = 'snappy' | 'gzip' | 'none';

const CODEC: Readonly<Record<ParquetCompression, ParquetCodec>> = { snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' };

const MAGIC = Buffer.from('PAR1', 'ascii');

/**
 * Parquet output. Each part is a complete Parquet file of one row group. The final file is
 * assembled without decoding anything: the parts' row-group bytes are copied in order and their
 * column-chunk offsets shifted, then one footer lists every row group. Memory stays at one
 * part (plus the footer's metadata), whatever the output size.
 */
export class ParquetOutputWriter implements OutputWriter {
  readonly format = 'parquet' as const;
  readonly extension = 'parquet';
  private readonly schema: SchemaElement[];

  constructor(
    columns: readonly ColumnSpec[],
    private readonly compression: ParquetCompression,
  ) {
    this.schema = parquetSchemaOf(columns);
  }

  async writePart(path: string, chunk: ChunkResult): Promise<Uint8Array> {
    const bytes = await encodeParquetPart(chunk, this.schema, CODEC[this.compression]);
    await writeFileAtomic(path, bytes);
    return bytes;
  }

  assemble(target: string): Promise<OutputAssembly> {
    return ParquetAssembly.open(target, this.schema);
  }
}

/**
 * The final Parquet file, put together from parts without decoding them: each part's row-group
 * bytes are appended as they are, their offsets shifted in the metadata kept for the footer.
 */
class ParquetAssembly implements OutputAssembly {
  private offset = MAGIC.length;
  private rows = 0n;
  private readonly rowGroups: RowGroup[] = [];

  private constructor(
    private readonly handle: FileHandle,
    private schema: SchemaElement[],
  ) {}

  static async open(target: string, schema: SchemaElement[]): Promise<ParquetAssembly> {
    const handle = await open(target, 'w');
    await handle.write(MAGIC);
    return new ParquetAssembly(handle, schema);
  }

  async append(part: string, given?: Uint8Array): Promise<void> {
    const bytes = given ?? (await readFile(part));
    const metadata = parquetMetadata(bytes);
    this.schema = metadata.schema;
    for (const group of metadata.row_groups) {
      const { start, end } = groupExtent(group);
      await this.handle.write(bytes.subarray(Number(start), Number(end)));
      this.rowGroups.push(shiftGroup(group, BigInt(this.offset) - start));
      this.offset += Number(end - start);
      this.rows += group.num_rows;
    }
    // Flushed as it grows (off the job's critical path), so that the final flush is short.
    await this.handle.datasync();
  }

  async finish(): Promise<void> {
    try {
      const footer = new ByteWriter();
      const metadata: FileMetaData = {
        version: 2,
        schema: this.schema,
        num_rows: this.rows,
        row_groups: this.rowGroups,
        created_by: 'tessera batch',
        metadata_length: 0,
      };
      writeMetadata(footer, metadata);
      footer.appendUint32(0x31524150);
      await this.handle.write(footer.getBytes());
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  async abandon(): Promise<void> {
    await this.handle.close();
  }
}

/** Byte range of a row group's column chunks (dictionary and data pages). */
function groupExtent(group: RowGroup): { start: bigint; end: bigint } {
  let start: bigint | undefined;
  let end = 0n;
  for (const column of group.columns) {
    const meta = column.meta_data;
    if (meta === undefined) throw new Error('a part has a column chunk without metadata');
    const first = meta.dictionary_page_offset !== undefined && meta.dictionary_page_offset < meta.data_page_offset ? meta.dictionary_page_offset : meta.data_page_offset;
    const last = first + meta.total_compressed_size;
    if (start === undefined || first < start) start = first;
    if (last > end) end = last;
  }
  return { start: start ?? 4n, end: end === 0n ? (start ?? 4n) : end };
}

/** A row group's metadata with every offset moved by `shift`; page indexes are dropped. */
function shiftGroup(group: RowGroup, shift: bigint): RowGroup {
  const columns = group.columns.map((column): ColumnChunk => {
    const meta = column.meta_data!;
    return {
      file_offset: column.file_offset + shift,
      meta_data: {
        ...meta,
        data_page_offset: meta.data_page_offset + shift,
        ...(meta.dictionary_page_offset === undefined ? {} : { dictionary_page_offset: meta.dictionary_page_offset + shift }),
        ...(meta.index_page_offset === undefined ? {} : { index_page_offset: meta.index_page_offset + shift }),
        bloom_filter_offset: undefined,
        bloom_filter_length: undefined,
      },
    };
  });
  return {
    columns,
    total_byte_size: group.total_byte_size,
    num_rows: group.num_rows,
    ...(group.file_offset === undefined ? {} : { file_offset: group.file_offset + shift }),
    ...(group.total_compressed_size === undefined ? {} : { total_compressed_size: group.total_compressed_size }),
  };
}

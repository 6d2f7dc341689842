import { open, type FileHandle } from 'node:fs/promises';
import { parquetMetadata, type ColumnChunk, type FileMetaData, type RowGroup, type SchemaElement } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import type { ChunkResult, ColumnSpec } from '../columns.js';
import { encodeParquetPart, PartBuffers, parquetSchemaOf, type ParquetCodec } from './parquet-encoder.js';
import type { OutputAssembly, OutputWriter } from './writer.js';

export type ParquetCompression = 'snappy' | 'gzip' | 'none';

const CODEC: Readonly<Record<ParquetCompression, ParquetCodec>> = { snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' };

const MAGIC = Buffer.from('PAR1', 'ascii');

/**
 * Parquet output. Each chunk is encoded as a complete Parquet file of one row group; the output
 * is put together without decoding anything: the chunks' row-group bytes are copied in order
 * and their column-chunk offsets shifted, then one footer lists every row group. Memory stays
 * at a few chunks (plus the footer's metadata), whatever the output size.
 */
export class ParquetOutputWriter implements OutputWriter {
  readonly format = 'parquet' as const;
  readonly extension = 'parquet';
  private readonly schema: SchemaElement[];
  /** Memory parts are encoded into, back once they are in the output (see reclaim). */
  private readonly buffers = new PartBuffers();

  constructor(
    columns: readonly ColumnSpec[],
    private readonly compression: ParquetCompression,
  ) {
    this.schema = parquetSchemaOf(columns);
  }

  readonly keepsState = true;

  encodePart(chunk: ChunkResult): Promise<Uint8Array> {
    return encodeParquetPart(chunk, this.schema, CODEC[this.compression], this.buffers);
  }

  reclaim(bytes: Uint8Array): void {
    if (bytes.buffer instanceof ArrayBuffer) this.buffers.give(bytes.buffer);
  }

  assemble(target: string, resume?: { readonly bytes: number; readonly states: readonly unknown[] }): Promise<OutputAssembly> {
    return ParquetAssembly.open(target, this.schema, resume);
  }
}

/**
 * The Parquet output, put together from chunks without decoding them: each chunk's row-group
 * bytes are appended as they are, their offsets shifted in the metadata kept for the footer
 * (and saved per chunk, for a later run to carry on).
 */
class ParquetAssembly implements OutputAssembly {
  private constructor(
    private readonly handle: FileHandle,
    private schema: SchemaElement[],
    private offset: number,
    private rows: bigint,
    private readonly rowGroups: RowGroup[],
  ) {}

  get length(): number {
    return this.offset;
  }

  static async open(target: string, schema: SchemaElement[], resume?: { readonly bytes: number; readonly states: readonly unknown[] }): Promise<ParquetAssembly> {
    if (resume === undefined || resume.bytes < MAGIC.length) {
      const handle = await open(target, 'w');
      await handle.write(MAGIC, 0, MAGIC.length, 0);
      return new ParquetAssembly(handle, schema, MAGIC.length, 0n, []);
    }
    const handle = await open(target, 'r+');
    try {
      await handle.truncate(resume.bytes);
      const rowGroups = resume.states.flatMap((state) => (state as { rowGroups: RowGroup[] }).rowGroups);
      const rows = rowGroups.reduce((sum, group) => sum + BigInt(group.num_rows), 0n);
      return new ParquetAssembly(handle, schema, resume.bytes, rows, rowGroups);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async append(bytes: Uint8Array): Promise<unknown> {
    const metadata = parquetMetadata(bytes);
    this.schema = metadata.schema;
    const added: RowGroup[] = [];
    for (const group of metadata.row_groups) {
      const { start, end } = groupExtent(group);
      const body = bytes.subarray(Number(start), Number(end));
      for (let done = 0; done < body.length; ) done += (await this.handle.write(body, done, body.length - done, this.offset + done)).bytesWritten;
      added.push(shiftGroup(group, BigInt(this.offset) - start));
      this.offset += Number(end - start);
      this.rows += group.num_rows;
    }
    // Flushed as it grows (off the job's critical path): the checkpoint counts on these bytes.
    await this.handle.datasync();
    this.rowGroups.push(...added);
    return { rowGroups: added };
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
      const bytes = footer.getBytes();
      await this.handle.write(bytes, 0, bytes.length, this.offset);
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  async close(): Promise<void> {
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

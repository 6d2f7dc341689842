import { open, type FileHandle } from 'node:fs/promises';
import type { ColumnChunk, FileMetaData, RowGroup, SchemaElement } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import type { ChunkResult, ColumnSpec } from '../columns.js';
import { writePiecesAt } from './files.js';
import { encodeRowGroup, PageMemory, parquetSchemaOf, type EncodedRowGroup, type ParquetCodec } from './parquet-encoder.js';
import type { EncodedPart, OutputAssembly, OutputWriter } from './writer.js';

export type ParquetCompression = 'snappy' | 'gzip' | 'none';

const CODEC: Readonly<Record<ParquetCompression, ParquetCodec>> = { snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' };

const MAGIC = Buffer.from('PAR1', 'ascii');

/** A Parquet part: one row group, its offsets counted from its first byte. */
interface RowGroupPart extends EncodedPart {
  readonly encoded: EncodedRowGroup;
}

function isRowGroupPart(part: EncodedPart): part is RowGroupPart {
  return (part as Partial<RowGroupPart>).encoded !== undefined;
}

/**
 * Parquet output. Each chunk is encoded as one row group; the output is the row groups'
 * bytes written in order (gathered writes straight from the chunk's columns), their
 * column-chunk offsets shifted, then one footer lists every row group. Memory stays at a few
 * chunks (plus the footer's metadata), whatever the output size.
 */
export class ParquetOutputWriter implements OutputWriter {
  readonly format = 'parquet' as const;
  readonly extension = 'parquet';
  private readonly schema: SchemaElement[];
  /** Memory compressed pages are written into, back once they are in the output (see reclaim). */
  private readonly memory = new PageMemory();

  constructor(
    columns: readonly ColumnSpec[],
    private readonly compression: ParquetCompression,
  ) {
    this.schema = parquetSchemaOf(columns);
  }

  readonly keepsState = true;

  async encodePart(chunk: ChunkResult): Promise<EncodedPart> {
    const encoded = await encodeRowGroup(chunk, this.schema, CODEC[this.compression], this.memory);
    const part: RowGroupPart = { pieces: encoded.pieces, byteLength: encoded.byteLength, encoded };
    return part;
  }

  reclaim(part: EncodedPart): void {
    if (isRowGroupPart(part) && part.encoded.memory !== undefined) this.memory.give(part.encoded.memory);
  }

  assemble(target: string, resume?: { readonly bytes: number; readonly states: readonly unknown[] }): Promise<OutputAssembly> {
    return ParquetAssembly.open(target, this.schema, resume);
  }
}

/**
 * The Parquet output, put together from chunks: each chunk's row-group bytes are appended as
 * they are, their offsets shifted in the metadata kept for the footer (and saved per chunk, for
 * a later run to carry on).
 */
class ParquetAssembly implements OutputAssembly {
  private constructor(
    private readonly handle: FileHandle,
    private readonly schema: SchemaElement[],
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

  async append(part: EncodedPart): Promise<unknown> {
    if (!isRowGroupPart(part)) throw new Error('a Parquet output appends parts of its own writer');
    const group = part.encoded.rowGroup;
    const added: RowGroup[] = [];
    if (group.num_rows > 0n) {
      await writePiecesAt(this.handle, part.pieces, this.offset);
      added.push(shiftGroup(group, BigInt(this.offset)));
      this.offset += part.byteLength;
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

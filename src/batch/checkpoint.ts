import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TesseraError } from '../core/errors.js';
import { CheckpointLock, LOCK_FILE } from './checkpoint-lock.js';
import type { ColumnSpec } from './columns.js';
import { syncDirectory, writeFileAtomic } from './output/files.js';

const FORMAT = 'tessera-batch-checkpoint/2';

/** The checkpoint of a job: what it is (fingerprint), which chunks are done and where the output stands. */
interface Manifest {
  readonly format: typeof FORMAT;
  readonly fingerprint: string;
  /** What the job is, for people reading the file. */
  readonly job: Record<string, unknown>;
  readonly chunkRows: number;
  readonly columns: readonly ColumnSpec[];
  /** Done chunks, 0, 1, 2, ... in order: [index, rows, rows with errors]. */
  readonly chunks: readonly (readonly [number, number, number])[];
  /** Bytes of the partial output that hold the done chunks (anything after them is cut off). */
  readonly outputBytes: number;
  /** Index of the last chunk, once the end of the input has been reached. */
  readonly lastChunk?: number;
  readonly updatedAt: string;
}

/** What the fields of a job record stand for, in the message refusing another job's checkpoint. */
const JOB_FIELDS = new Map<string, string>([
  ['input', 'the input file'],
  ['inputBytes', "the input's size"],
  ['inputModifiedMs', "the input's modification time"],
  ['inputFormat', 'the input format'],
  ['output', 'the output'],
  ['outputFormat', 'the output format'],
  ['model', 'the model'],
  ['version', '--version'],
  ['target', 'the model repository or --url'],
  ['modelVersion', 'the model version'],
  ['modelVersions', 'the model versions the server lists'],
  ['modelFiles', "the model's files or configuration"],
  ['signature', "the model's inputs or outputs"],
  ['mapping', 'the column mapping'],
  ['passthrough', '--passthrough'],
  ['columns', 'the output columns'],
  ['classify', '--classify'],
  ['labels', 'the labels'],
  ['batchSize', 'the batch size'],
  ['chunkRows', 'the chunk size'],
  ['compression', '--compression'],
  ['csvDelimiter', '--csv-delimiter'],
]);

/** Longest value quoted in that message; longer ones (signatures) are only named. */
const QUOTED_VALUE = 48;
/** Fields only named: their values (file fingerprints) say nothing to a reader. */
const UNQUOTED = new Set(['modelFiles']);

/** The fields that differ between the job a checkpoint was written for and this one, with short values quoted. */
function describeChanges(before: unknown, now: Readonly<Record<string, unknown>>): string {
  const earlier: Readonly<Record<string, unknown>> = typeof before === 'object' && before !== null ? (before as Record<string, unknown>) : {};
  const changes: string[] = [];
  for (const key of new Set([...Object.keys(earlier), ...Object.keys(now)])) {
    // A field a checkpoint of an older Tessera lacks counts as null.
    const was = JSON.stringify(Object.hasOwn(earlier, key) ? earlier[key] : null) ?? 'null';
    const is = JSON.stringify(Object.hasOwn(now, key) ? now[key] : null) ?? 'null';
    if (was === is) continue;
    const name = JOB_FIELDS.get(key) ?? key;
    const quoted = !UNQUOTED.has(key) && was.length <= QUOTED_VALUE && is.length <= QUOTED_VALUE;
    changes.push(quoted ? `${name} (was ${was}, now ${is})` : name);
  }
  return changes.join(', ');
}

export function fingerprintOf(job: Record<string, unknown>): string {
  return createHash('sha256').update(JSON.stringify(job)).digest('hex');
}

/**
 * A job's checkpoint directory, `<output>.parts/`: the output so far (`output.<ext>.partial`:
 * the done chunks, appended in row order and flushed to disk), what the output format needs to
 * finish the file later (`chunk-000123.json`: a Parquet chunk's row-group metadata), and
 * `manifest.json`, rewritten atomically after each chunk. The manifest is the truth: bytes of
 * the partial output past the ones it counts (a crash between an append and the manifest) are
 * cut off and their chunks done again. A rerun of the same job (same fingerprint) carries on
 * from the manifest; a different job refuses to touch it. `lock` keeps a second job off the
 * output while this one writes it (see checkpoint-lock.ts).
 */
export class Checkpoint {
  private readonly done = new Map<number, { rows: number; errors: number }>();
  private bytes = 0;
  private lastChunk: number | undefined;
  private writing: Promise<void> = Promise.resolve();
  private saving: Promise<void> | undefined;
  private dirty = false;
  private released = false;

  private constructor(
    readonly dir: string,
    private readonly fingerprint: string,
    private readonly job: Record<string, unknown>,
    readonly chunkRows: number,
    readonly columns: readonly ColumnSpec[],
    private readonly extension: string,
    /** Whether each done chunk has a saved state (see saveState) that resuming needs. */
    private readonly keepsState: boolean,
    readonly resumed: boolean,
    private readonly lock: CheckpointLock,
  ) {}

  /** The checkpoint directory of an output path. */
  static dirFor(output: string): string {
    return join(dirname(output), `${basename(output)}.parts`);
  }

  /** Whether a checkpoint directory exists for `output`. */
  static async exists(output: string): Promise<boolean> {
    return readdir(Checkpoint.dirFor(output)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Open (resume) or create the checkpoint of a job. Throws BATCH_CHECKPOINT_CONFLICT when the
   * directory holds another job's checkpoint (unless `restart`) or another process is writing it.
   */
  static async open(
    output: string,
    job: Record<string, unknown>,
    chunkRows: number,
    columns: readonly ColumnSpec[],
    extension: string,
    options: { readonly restart: boolean; readonly keepsState: boolean },
  ): Promise<Checkpoint> {
    const dir = Checkpoint.dirFor(output);
    const fingerprint = fingerprintOf(job);
    await mkdir(dir, { recursive: true });
    const lock = await CheckpointLock.acquire(dir);
    try {
      let manifest = await readManifest(dir);
      if (manifest !== undefined && manifest.fingerprint !== fingerprint) {
        if (!options.restart) {
          const changes = describeChanges(manifest.job, job);
          throw new TesseraError(
            'BATCH_CHECKPOINT_CONFLICT',
            `${dir} holds the checkpoint of a different job (${changes === '' ? "its arguments, model or input file differ from this run's" : `changed since it was written: ${changes}`}); ` +
              `rerun the original command (with the same input and model) to finish it, or pass --restart to discard it`,
          );
        }
        manifest = undefined;
      } else if (manifest !== undefined && options.restart) {
        manifest = undefined;
      }
      const checkpoint = new Checkpoint(dir, fingerprint, job, chunkRows, columns, extension, options.keepsState, manifest !== undefined, lock);
      if (manifest !== undefined) {
        for (const [index, rows, errors] of manifest.chunks) checkpoint.done.set(index, { rows, errors });
        checkpoint.bytes = manifest.outputBytes;
        checkpoint.lastChunk = manifest.lastChunk;
      }
      await checkpoint.checkOutput();
      await checkpoint.removeStrays();
      await checkpoint.save();
      return checkpoint;
    } catch (error) {
      await lock.release().catch(() => undefined);
      throw error;
    }
  }

  isDone(index: number): boolean {
    return this.done.has(index);
  }

  /** The chunks done so far (a copy). */
  doneIndices(): Set<number> {
    return new Set(this.done.keys());
  }

  get doneRows(): number {
    let rows = 0;
    for (const chunk of this.done.values()) rows += chunk.rows;
    return rows;
  }

  get doneErrors(): number {
    let errors = 0;
    for (const chunk of this.done.values()) errors += chunk.errors;
    return errors;
  }

  get doneChunks(): number {
    return this.done.size;
  }

  /** Bytes of the partial output that hold the done chunks. */
  get outputBytes(): number {
    return this.bytes;
  }

  /** The output so far: the done chunks, in order. */
  get partialPath(): string {
    return join(this.dir, `output.${this.extension}.partial`);
  }

  /** Where chunk `index` keeps what its output format needs to finish the file. */
  statePath(index: number): string {
    return join(this.dir, `chunk-${String(index).padStart(6, '0')}.json`);
  }

  /** Save what chunk `index`'s output format needs to finish the file later (before markDone). */
  async saveState(index: number, state: unknown): Promise<void> {
    await writeFileAtomic(this.statePath(index), JSON.stringify(state, (_key, value: unknown) => (typeof value === 'bigint' ? { $bigint: value.toString() } : value)));
  }

  /** The saved states of the done chunks, in order (for a writer that saves them). */
  async readStates(): Promise<unknown[]> {
    const states: unknown[] = [];
    for (let index = 0; index < this.done.size; index++) {
      const text = await readFile(this.statePath(index), 'utf8');
      states.push(
        JSON.parse(text, (_key, value: unknown) =>
          value !== null && typeof value === 'object' && typeof (value as { $bigint?: unknown }).$bigint === 'string' ? BigInt((value as { $bigint: string }).$bigint) : value,
        ),
      );
    }
    return states;
  }

  /**
   * Record chunk `index`, the next in order, as done: its rows are in the partial output, which
   * is now `outputBytes` long (and flushed). Manifest writes happen one at a time, in call order.
   */
  markDone(index: number, rows: number, errors: number, outputBytes: number): Promise<void> {
    if (index !== this.done.size) throw new TesseraError('INTERNAL', `chunk ${index} was finished out of order (${this.done.size} chunks are done)`);
    this.done.set(index, { rows, errors });
    this.bytes = outputBytes;
    return this.save();
  }

  /** Record that the input ends with chunk `lastChunk` (-1: the input has no rows). */
  markEnd(lastChunk: number): Promise<void> {
    this.lastChunk = lastChunk;
    return this.save();
  }

  /** Every chunk up to the end of the input is done. */
  get complete(): boolean {
    if (this.lastChunk === undefined) return false;
    for (let index = 0; index <= this.lastChunk; index++) if (!this.done.has(index)) return false;
    return true;
  }

  /** Flush pending manifest writes. */
  flush(): Promise<void> {
    return this.writing;
  }

  /** The job is finished: delete the checkpoint directory. */
  async remove(): Promise<void> {
    await this.writing;
    this.released = true;
    this.lock.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Let go of the lock (the checkpoint stays for a later run). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.writing.catch(() => undefined);
    await this.lock.release();
  }

  /**
   * Write the manifest. Writes do not queue up: while one is under way, later calls share the
   * next write, which records everything done by then. Resolves once the state as of the call
   * is on disk.
   */
  private save(): Promise<void> {
    this.dirty = true;
    this.saving ??= (async () => {
      try {
        while (this.dirty) {
          this.dirty = false;
          await writeFileAtomic(join(this.dir, 'manifest.json'), this.manifestText());
        }
      } finally {
        this.saving = undefined;
      }
    })();
    this.writing = this.saving;
    return this.saving;
  }

  private manifestText(): string {
    const snapshot: Manifest = {
      format: FORMAT,
      fingerprint: this.fingerprint,
      job: this.job,
      chunkRows: this.chunkRows,
      columns: this.columns,
      chunks: [...this.done.entries()].sort(([a], [b]) => a - b).map(([index, chunk]) => [index, chunk.rows, chunk.errors] as const),
      outputBytes: this.bytes,
      ...(this.lastChunk === undefined ? {} : { lastChunk: this.lastChunk }),
      updatedAt: new Date().toISOString(),
    };
    return `${JSON.stringify(snapshot, null, 1)}\n`;
  }

  /**
   * The partial output must hold what the manifest counts; when it does not (deleted or cut by
   * hand, or the manifest lists chunks out of order), the job starts over.
   */
  private async checkOutput(): Promise<void> {
    if (this.done.size === 0) {
      this.bytes = 0;
      return;
    }
    let inOrder = true;
    for (let index = 0; index < this.done.size; index++) if (!this.done.has(index)) inOrder = false;
    const size = await stat(this.partialPath).then((info) => info.size, () => -1);
    const states = this.keepsState ? await Promise.all([...this.done.keys()].map((index) => stat(this.statePath(index)).then(() => true, () => false))) : [];
    if (!inOrder || size < this.bytes || states.includes(false)) {
      this.done.clear();
      this.bytes = 0;
      this.lastChunk = undefined;
    }
  }

  /** Delete what the manifest does not count: temporary files, states of chunks not done, files of older versions. */
  private async removeStrays(): Promise<void> {
    for (const name of await readdir(this.dir)) {
      if (name === 'manifest.json' || name === LOCK_FILE || name === basename(this.partialPath)) continue;
      const state = /^chunk-(\d+)\.json$/.exec(name);
      if (state !== null && this.done.has(Number(state[1]))) continue;
      if (name.endsWith('.tmp') || name.startsWith('part-') || state !== null) await unlink(join(this.dir, name)).catch(() => undefined);
    }
    if (this.done.size === 0) await unlink(this.partialPath).catch(() => undefined);
    await syncDirectory(this.dir);
  }
}

async function readManifest(dir: string): Promise<Manifest | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'manifest.json'), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const manifest = JSON.parse(text) as Manifest;
    if (manifest.format !== FORMAT || typeof manifest.fingerprint !== 'string' || !Array.isArray(manifest.chunks)) throw new Error('unknown format');
    return manifest;
  } catch (error) {
    throw new TesseraError('BATCH_CHECKPOINT_CONFLICT', `${join(dir, 'manifest.json')} is not a checkpoint this version understands (${(error as Error).message}); pass --restart to discard it`);
  }
}

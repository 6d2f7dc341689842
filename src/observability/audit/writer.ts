import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { mkdir, open, readdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export interface RotatingWriterOptions {
  readonly directory: string;
  readonly maxFileBytes: number;
  readonly rotateDaily: boolean;
  readonly keepFiles: number;
  /** File name prefix (default `tessera-audit`). */
  readonly prefix?: string;
  readonly now?: () => number;
}

/**
 * Make sure `directory` can take files: created (with its parents) if missing. Returns why it
 * cannot (it is not a directory, cannot be created, or is not writable), or undefined when it can.
 * Synchronous: meant for start-up, before anything is written.
 */
export function directoryProblem(directory: string): string | undefined {
  try {
    mkdirSync(directory, { recursive: true });
  } catch (error) {
    // EEXIST: something other than a directory is there (said below).
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return `cannot be created (${(error as Error).message})`;
  }
  const info = statSync(directory);
  if (!info.isDirectory()) return `is ${info.isFile() ? 'a file' : 'not a directory'}`;
  try {
    accessSync(directory, constants.W_OK | constants.X_OK);
  } catch (error) {
    return `is not writable (${(error as Error).message})`;
  }
  return undefined;
}

/**
 * Appends lines to JSONL files in a directory: a new file (named by its UTC start time and a
 * sequence number, so names sort by age) when the current one would exceed `maxFileBytes` or
 * the UTC date changed; after each new file, the oldest beyond `keepFiles` are deleted. Files
 * are created lazily (no empty files). A write error closes the current file (the next write
 * opens a new one) and is thrown to the caller.
 */
export class RotatingJsonlWriter {
  private handle: FileHandle | undefined;
  private path: string | undefined;
  private size = 0;
  private day = '';
  private sequence = 0;
  private readonly prefix: string;
  private readonly now: () => number;
  private readonly pattern: RegExp;

  constructor(private readonly options: RotatingWriterOptions) {
    this.prefix = options.prefix ?? 'tessera-audit';
    this.now = options.now ?? Date.now;
    this.pattern = new RegExp(`^${escapeRegExp(this.prefix)}-\\d{8}T\\d{6}\\.\\d{3}Z-\\d{6}\\.jsonl$`);
  }

  /** The file being written, if one is open. */
  get currentFile(): string | undefined {
    return this.path;
  }

  /** Append complete lines (each ending in "\n"), rotating between lines as needed. */
  async writeLines(lines: readonly string[]): Promise<void> {
    let chunk: string[] = [];
    let chunkBytes = 0;
    const flushChunk = async (): Promise<void> => {
      if (chunk.length === 0) return;
      await this.append(chunk.join(''), chunkBytes);
      chunk = [];
      chunkBytes = 0;
    };
    for (const line of lines) {
      const bytes = Buffer.byteLength(line);
      const today = utcDay(this.now());
      const fileBytes = this.handle === undefined ? 0 : this.size;
      const wouldExceed = fileBytes + chunkBytes > 0 && fileBytes + chunkBytes + bytes > this.options.maxFileBytes;
      const dateChanged = this.options.rotateDaily && this.handle !== undefined && this.day !== today;
      if (wouldExceed || dateChanged) {
        await flushChunk();
        await this.closeFile();
      }
      chunk.push(line);
      chunkBytes += bytes;
    }
    await flushChunk();
  }

  /** Close the current file. */
  async close(): Promise<void> {
    await this.closeFile();
  }

  /** Audit files in the directory, oldest first. */
  async files(): Promise<string[]> {
    const names = await readdir(this.options.directory);
    return names.filter((name) => this.pattern.test(name)).sort();
  }

  private async append(text: string, bytes: number): Promise<void> {
    if (this.handle === undefined) await this.openFile();
    try {
      await this.handle!.appendFile(text);
      this.size += bytes;
    } catch (error) {
      await this.closeFile();
      throw error;
    }
  }

  private async openFile(): Promise<void> {
    await mkdir(this.options.directory, { recursive: true });
    const now = this.now();
    for (;;) {
      this.sequence = (this.sequence + 1) % 1_000_000;
      const name = `${this.prefix}-${stamp(now)}-${String(this.sequence).padStart(6, '0')}.jsonl`;
      const path = join(this.options.directory, name);
      try {
        this.handle = await open(path, 'wx');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw error;
      }
      this.path = path;
      this.size = 0;
      this.day = utcDay(now);
      break;
    }
    await this.prune();
  }

  private async closeFile(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    this.path = undefined;
    this.size = 0;
    if (handle !== undefined) await handle.close().catch(() => undefined);
  }

  /** Delete the oldest files beyond keepFiles (never the current one). */
  private async prune(): Promise<void> {
    const files = await this.files();
    const excess = files.length - this.options.keepFiles;
    for (const name of files.slice(0, Math.max(0, excess))) {
      const path = join(this.options.directory, name);
      if (path === this.path) continue;
      await unlink(path).catch(() => undefined);
    }
  }
}

/** 20250102T030405.678Z */
function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '');
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

import { createHash, randomUUID, type Hash } from 'node:crypto';
import { closeSync, createReadStream, mkdirSync, openSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, posix, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { Header, Pax, Parser, type ReadEntry } from 'tar';
import { parse as parseYaml } from 'yaml';
import { TesseraError } from '../core/errors.js';
import { readModelConfig } from './config-file.js';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  checkManifest,
  MANIFEST_FILENAME,
  parseManifest,
  unsafePathReason,
  type ManifestFile,
  type ModelArchiveManifest,
} from './manifest.js';

/**
 * Model archives: one `.tar.gz` holding a model directory (version directories, config,
 * labels, handler, baseline) with `MANIFEST.json` first. Extraction is safe by construction:
 * only regular files and directories at checked relative paths, nothing outside the target,
 * sizes and counts bounded, every byte hashed and compared with the manifest, and the result
 * moved into place only once everything checked out.
 */

export interface PackOptions {
  /** Model name recorded in the manifest; default the directory's name. */
  readonly name?: string;
  /** Version directories to pack; default all of them. */
  readonly version?: number | readonly number[];
  /** Version of the packing Tessera, recorded in the manifest. */
  readonly tesseraVersion: string;
  /** Extra paths (files or directories, relative to the model directory) to pack, e.g. a handler's helper modules. */
  readonly include?: readonly string[];
  /** Packing time recorded in the manifest and as file times; default now (fix it for reproducible archives). */
  readonly createdAt?: Date;
}

export interface PackResult {
  readonly file: string;
  readonly manifest: ModelArchiveManifest;
  /** Top-level entries of the model directory that were not packed (pass them in `include` to pack them). */
  readonly skipped: readonly string[];
}

export interface ArchiveLimits {
  /** Most bytes of files an archive may unpack to (default 16 GiB). */
  readonly maxTotalBytes?: number;
  /** Most files an archive may hold (default 10 000). */
  readonly maxFiles?: number;
  /** Largest MANIFEST.json read (default 4 MiB). */
  readonly maxManifestBytes?: number;
}

export interface InspectOptions extends ArchiveLimits {
  /** Also read every file and check it against the manifest (nothing is written to disk). */
  readonly verify?: boolean;
}

const DEFAULT_LIMITS: Required<ArchiveLimits> = {
  maxTotalBytes: 16 * 2 ** 30,
  maxFiles: 10_000,
  maxManifestBytes: 4 * 2 ** 20,
};

/** Config files packed when present (Tessera's and Triton's). */
const CONFIG_FILES = ['config.yaml', 'config.yml', 'config.json', 'config.pbtxt'] as const;
const HANDLER_FILES = ['handler.js', 'handler.mjs', 'handler.ts', 'handler.mts'] as const;
const OTHER_TOP_LEVEL = ['labels.txt', 'baseline.json', 'README.md'] as const;
const VERSION_DIR = /^(0|[1-9][0-9]{0,15})$/;
const BLOCK = 512;

function invalid(message: string, cause?: unknown): TesseraError {
  return new TesseraError('INVALID_MODEL_ARCHIVE', message, cause === undefined ? {} : { cause });
}

// ---------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------

interface PackEntry {
  readonly path: string;
  readonly absolute: string;
}

/**
 * Pack a model directory into `outFile` (.tar.gz). The archive is written next to `outFile`
 * and renamed into place when complete. Throws INVALID_MODEL_ARCHIVE when the directory
 * cannot be packed (no versions, unsafe names, a file changing while it is read).
 */
export async function packModel(modelDir: string, outFile: string, options: PackOptions): Promise<PackResult> {
  const dir = resolve(modelDir);
  const dirStat = await stat(dir).catch((error: unknown) => {
    throw invalid(`cannot pack ${dir}: ${(error as Error).message}`, error);
  });
  if (!dirStat.isDirectory()) throw invalid(`cannot pack ${dir}: not a directory`);
  const name = options.name ?? basename(dir);
  const createdAt = options.createdAt ?? new Date();

  const entries = await readdir(dir, { withFileTypes: true });
  const topNames = new Set(entries.map((e) => e.name));
  // A config naming the model pins its name: under another one the archive would never load.
  const config = await readModelConfig(dir, topNames);
  if (config.ok && config.config.name !== undefined && config.config.name !== name) {
    throw invalid(
      `the config names the model '${config.config.name}', so an archive of model "${name}" would not load; ` +
        (options.name === undefined ? `rename the directory or the config's name` : `pack it as '${config.config.name}' or change the config's name`),
    );
  }
  const allVersions = entries
    .filter((e) => VERSION_DIR.test(e.name) && Number.isSafeInteger(Number(e.name)) && (e.isDirectory() || e.isSymbolicLink()))
    .map((e) => Number(e.name))
    .sort((a, b) => a - b);
  const wanted = options.version === undefined ? allVersions : [...new Set(typeof options.version === 'number' ? [options.version] : options.version)].sort((a, b) => a - b);
  for (const version of wanted) {
    if (!allVersions.includes(version)) throw invalid(`cannot pack ${dir}: no version directory ${version} (found: ${allVersions.join(', ') || 'none'})`);
  }
  if (wanted.length === 0) throw invalid(`cannot pack ${dir}: no version directories (expected e.g. 1/model.onnx)`);

  if (unsafeName(name)) throw invalid(`cannot pack ${dir}: model name ${JSON.stringify(name)} may only hold letters, digits, _ . -`);

  const files = new Map<string, PackEntry>();
  const directoriesSeen = new Set<string>(); // dev:inode, so a symbolic-link cycle is not followed forever
  const add = async (path: string): Promise<void> => {
    const reason = unsafePathReason(path);
    if (reason !== undefined) throw invalid(`cannot pack ${JSON.stringify(path)}: ${reason}`);
    if (path === MANIFEST_FILENAME) throw invalid(`cannot pack ${dir}: it holds a file named ${MANIFEST_FILENAME}, which archives reserve`);
    const absolute = join(dir, ...path.split('/'));
    const info = await stat(absolute); // follows symbolic links: their targets are packed
    if (info.isDirectory()) {
      const id = `${info.dev}:${info.ino}`;
      if (directoriesSeen.has(id)) throw invalid(`cannot pack ${path}: a symbolic link loops back to a directory already packed`);
      directoriesSeen.add(id);
      for (const child of (await readdir(absolute)).sort()) {
        if (!child.startsWith('.')) await add(`${path}/${child}`);
      }
    } else if (info.isFile()) {
      files.set(path, { path, absolute });
    }
  };
  for (const version of wanted) await add(String(version));
  const topLevel: string[] = [...CONFIG_FILES, ...HANDLER_FILES, ...OTHER_TOP_LEVEL];
  const labelFile = await declaredLabelFile(dir, topNames);
  if (labelFile !== undefined) topLevel.push(labelFile);
  for (const file of topLevel) {
    if (topNames.has(file)) await add(file);
  }
  for (const extra of options.include ?? []) {
    const path = posix.normalize(extra.split(sep).join('/')).replace(/\/+$/, '');
    if (unsafePathReason(path) !== undefined) throw invalid(`cannot pack ${JSON.stringify(extra)}: include paths are relative to the model directory`);
    await add(path).catch((error: unknown) => {
      if (error instanceof TesseraError) throw error;
      throw invalid(`cannot pack ${JSON.stringify(extra)}: ${(error as Error).message}`, error);
    });
  }
  const packedTop = new Set([...files.keys()].map((path) => path.split('/')[0]!));
  const skipped = entries
    .filter((e) => !e.name.startsWith('.') && !packedTop.has(e.name) && !(VERSION_DIR.test(e.name) && allVersions.includes(Number(e.name))))
    .map((e) => (e.isDirectory() ? `${e.name}/` : e.name))
    .sort();

  const sorted = [...files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const listed: ManifestFile[] = [];
  for (const file of sorted) listed.push({ path: file.path, ...(await hashFile(file.absolute)) });
  const manifest = checkManifest({
    format: ARCHIVE_FORMAT,
    format_version: ARCHIVE_FORMAT_VERSION,
    name,
    versions: wanted,
    files: listed,
    total_size: listed.reduce((sum, f) => sum + f.size, 0),
    created_at: createdAt.toISOString(),
    tessera_version: options.tesseraVersion,
    config_file: CONFIG_FILES.find((f) => files.has(f)) ?? null,
    handler_file: HANDLER_FILES.find((f) => files.has(f)) ?? null,
  });

  const out = resolve(outFile);
  const partial = `${out}.partial-${process.pid}-${Date.now()}`;
  try {
    await pipeline(tarStream(manifest, sorted, createdAt), createGzip({ level: 6 }), (await open(partial, 'wx')).createWriteStream());
    await rename(partial, out);
  } catch (error) {
    await rm(partial, { force: true });
    if (error instanceof TesseraError) throw error;
    throw invalid(`cannot write ${out}: ${(error as Error).message}`, error);
  }
  return { file: out, manifest, skipped };
}

function unsafeName(name: string): boolean {
  return !/^[A-Za-z0-9_.-]+$/.test(name) || name === '.' || name === '..';
}

/** The label_filename a Tessera config.yaml / config.json names, if any (best effort). */
async function declaredLabelFile(dir: string, present: ReadonlySet<string>): Promise<string | undefined> {
  for (const file of ['config.yaml', 'config.yml', 'config.json']) {
    if (!present.has(file)) continue;
    try {
      const text = await readFile(join(dir, file), 'utf8');
      const raw: unknown = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
      const label = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['label_filename'] : undefined;
      return typeof label === 'string' && present.has(label) ? label : undefined;
    } catch {
      return undefined; // an unreadable config is packed as is; the server reports it
    }
  }
  return undefined;
}

async function hashFile(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

function headerBlocks(path: string, size: number, mtime: Date): Buffer[] {
  const header = new Header({ path, mode: 0o644, uid: 0, gid: 0, size, mtime, type: 'File', uname: '', gname: '' });
  const needPax = header.encode();
  const blocks: Buffer[] = [];
  if (needPax) blocks.push(new Pax({ path, size, mtime }).encode());
  blocks.push(header.block!);
  return blocks;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** The uncompressed tar: MANIFEST.json, then every file, re-hashed as it is read. */
async function* tarStream(manifest: ModelArchiveManifest, files: readonly PackEntry[], mtime: Date): AsyncGenerator<Buffer> {
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
  yield* headerBlocks(MANIFEST_FILENAME, manifestBytes.length, mtime);
  yield manifestBytes;
  yield padding(manifestBytes.length);
  for (const [i, file] of files.entries()) {
    const listed = manifest.files[i]!;
    yield* headerBlocks(file.path, listed.size, mtime);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(file.absolute)) {
      const buffer = chunk as Buffer;
      size += buffer.length;
      if (size > listed.size) break;
      hash.update(buffer);
      yield buffer;
    }
    if (size !== listed.size || hash.digest('hex') !== listed.sha256) {
      throw invalid(`cannot pack ${file.path}: the file changed while it was being packed`);
    }
    yield padding(size);
  }
  yield Buffer.alloc(BLOCK * 2);
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/** Where a regular file's bytes go while the archive is read. */
interface FileSink {
  write(chunk: Buffer): void;
  /** Called once all bytes were written (and checked); releases resources. */
  close(): void;
}

interface ScanVisitor {
  /** Called once the manifest is read; return false to stop reading. */
  onManifest(manifest: ModelArchiveManifest): boolean;
  /** A listed file is about to be read (its size already matches). */
  openFile?(file: ManifestFile): FileSink;
  /** A directory entry at a checked path. */
  onDirectory?(path: string): void;
}

/**
 * Read an archive entry by entry, checking every rule: MANIFEST.json first and well formed;
 * only regular files and directories; safe, unique paths; every file listed, of the listed
 * size and hash; nothing listed missing; counts and sizes within limits.
 */
async function scanArchive(file: string, limits: Required<ArchiveLimits>, visitor: ScanVisitor): Promise<ModelArchiveManifest> {
  let manifest: ModelArchiveManifest | undefined;
  let failure: TesseraError | undefined;
  let stopped = false;
  let entries = 0;
  let total = 0;
  const seenFiles = new Set<string>();
  const seenPaths = new Set<string>();
  const listed = new Map<string, ManifestFile>();
  let openSink: FileSink | undefined;

  const fail = (error: TesseraError): void => {
    failure ??= error;
    stopped = true;
  };

  const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 1024 * 1024 });
  parser.on('entry', (entry: ReadEntry) => {
    if (stopped) {
      entry.resume();
      return;
    }
    try {
      handleEntry(entry);
    } catch (error) {
      fail(error instanceof TesseraError ? error : invalid(`cannot read ${file}: ${(error as Error).message}`, error));
      entry.resume();
    }
  });
  parser.on('error', (error: Error) => fail(invalid(`${file} is not a valid tar archive: ${error.message}`, error)));

  const handleEntry = (entry: ReadEntry): void => {
    entries++;
    const rawPath = entry.path;
    const path = entry.type === 'Directory' ? rawPath.replace(/\/+$/, '') : rawPath;
    const reason = unsafePathReason(path);
    if (reason !== undefined) throw invalid(`refusing archive entry ${JSON.stringify(rawPath)}: ${reason}`);
    if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile' && entry.type !== 'Directory') {
      const link = entry.linkpath === undefined ? '' : ` -> ${JSON.stringify(entry.linkpath)}`;
      throw invalid(`refusing archive entry ${path}${link}: ${entry.type} entries are not allowed (only regular files and directories)`);
    }
    if (manifest === undefined) {
      if (path !== MANIFEST_FILENAME || entry.type === 'Directory') throw invalid(`${MANIFEST_FILENAME} must be the first entry of a model archive, found ${path}`);
      if (entry.size > limits.maxManifestBytes) throw invalid(`${MANIFEST_FILENAME} is ${entry.size} bytes, more than the ${limits.maxManifestBytes} allowed`);
      const chunks: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => chunks.push(chunk));
      entry.on('end', () => {
        if (stopped) return;
        try {
          manifest = parseManifest(Buffer.concat(chunks).toString('utf8'));
          if (manifest.files.length > limits.maxFiles) throw invalid(`the archive holds ${manifest.files.length} files, more than the ${limits.maxFiles} allowed`);
          if (manifest.total_size > limits.maxTotalBytes) throw invalid(`the archive unpacks to ${manifest.total_size} bytes, more than the ${limits.maxTotalBytes} allowed`);
          for (const f of manifest.files) listed.set(f.path, f);
          if (!visitor.onManifest(manifest)) stopped = true;
        } catch (error) {
          fail(error instanceof TesseraError ? error : invalid((error as Error).message, error));
        }
      });
      return;
    }
    if (entries > limits.maxFiles * 4 + 16) throw invalid(`the archive has more than ${limits.maxFiles * 4 + 16} entries`);
    if (path === MANIFEST_FILENAME) throw invalid(`the archive holds a second ${MANIFEST_FILENAME}`);
    if (seenPaths.has(path)) throw invalid(`the archive holds ${path} twice`);
    seenPaths.add(path);
    if (entry.type === 'Directory') {
      if (listed.has(path)) throw invalid(`${path} is a directory in the archive but a file in the manifest`);
      visitor.onDirectory?.(path);
      entry.resume(); // the parser moves on once the (empty) entry has ended
      return;
    }
    const expected = listed.get(path);
    if (expected === undefined) throw invalid(`the archive holds ${path}, which ${MANIFEST_FILENAME} does not list`);
    if (entry.size !== expected.size) throw invalid(`${path} is ${entry.size} bytes in the archive but ${expected.size} in ${MANIFEST_FILENAME}`);
    total += entry.size;
    if (total > limits.maxTotalBytes) throw invalid(`the archive unpacks to more than the ${limits.maxTotalBytes} bytes allowed`);
    seenFiles.add(path);
    const hash: Hash = createHash('sha256');
    const sink = visitor.openFile?.(expected);
    openSink = sink;
    entry.on('data', (chunk: Buffer) => {
      if (stopped) return;
      hash.update(chunk);
      try {
        sink?.write(chunk);
      } catch (error) {
        fail(invalid(`cannot write ${path}: ${(error as Error).message}`, error));
      }
    });
    entry.on('end', () => {
      sink?.close();
      openSink = undefined;
      if (stopped) return;
      const digest = hash.digest('hex');
      if (digest !== expected.sha256) fail(invalid(`${path} does not match ${MANIFEST_FILENAME}: its SHA-256 is ${digest}, the manifest says ${expected.sha256}`));
    });
  };

  const ended = new Promise<void>((resolveEnd) => {
    parser.on('end', () => resolveEnd());
    parser.on('error', () => resolveEnd());
  });

  try {
    const head = Buffer.alloc(2);
    const handle = await open(file, 'r').catch((error: unknown) => {
      throw invalid(`cannot read ${file}: ${(error as Error).message}`, error);
    });
    try {
      await handle.read(head, 0, 2, 0);
    } finally {
      await handle.close();
    }
    const gzipped = head[0] === 0x1f && head[1] === 0x8b;
    // Decompression is bounded by the same limits: files, plus headers and the manifest.
    const maxExpanded = limits.maxTotalBytes + (limits.maxFiles * 4 + 16) * 3 * BLOCK + limits.maxManifestBytes + 1024 * 1024;
    let expanded = 0;
    const consume = async (source: AsyncIterable<Buffer>): Promise<void> => {
      for await (const chunk of source) {
        expanded += chunk.length;
        if (expanded > maxExpanded) {
          fail(invalid(`the archive expands to more than ${maxExpanded} bytes`));
          return;
        }
        parser.write(chunk);
        if (stopped) return;
      }
    };
    try {
      if (gzipped) await pipeline(createReadStream(file), createGunzip(), consume);
      else await pipeline(createReadStream(file), consume);
    } catch (error) {
      if (!stopped) fail(invalid(`cannot read ${file}: ${(error as Error).message}`, error));
    }
    if (!stopped) {
      parser.end();
      await ended;
    }
  } finally {
    openSink?.close();
  }
  if (failure !== undefined) throw failure;
  if (manifest === undefined) throw invalid(`${file} holds no ${MANIFEST_FILENAME}: not a Tessera model archive`);
  if (!stopped) {
    const missing = manifest.files.filter((f) => !seenFiles.has(f.path)).map((f) => f.path);
    if (missing.length > 0) throw invalid(`the archive lacks ${missing.length === 1 ? 'a file' : 'files'} ${MANIFEST_FILENAME} lists: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`);
  }
  return manifest;
}

function limitsOf(options: ArchiveLimits): Required<ArchiveLimits> {
  return {
    maxTotalBytes: options.maxTotalBytes ?? DEFAULT_LIMITS.maxTotalBytes,
    maxFiles: options.maxFiles ?? DEFAULT_LIMITS.maxFiles,
    maxManifestBytes: options.maxManifestBytes ?? DEFAULT_LIMITS.maxManifestBytes,
  };
}

/**
 * Read an archive's manifest (checked for well-formedness) without extracting anything. With
 * `verify`, every file is also read and checked against it, still without writing to disk.
 */
export async function inspectArchive(file: string, options: InspectOptions = {}): Promise<ModelArchiveManifest> {
  const verify = options.verify === true;
  return scanArchive(resolve(file), limitsOf(options), { onManifest: () => verify });
}

/**
 * Extract a model archive into `destDir` (which must not exist, or be an empty directory):
 * files are written to a temporary directory beside it, checked against the manifest, and
 * only then renamed to `destDir`. A tampered or unsafe archive leaves nothing behind and
 * throws INVALID_MODEL_ARCHIVE. Returns the manifest.
 */
export async function extractArchive(file: string, destDir: string, options: ArchiveLimits = {}): Promise<ModelArchiveManifest> {
  const dest = resolve(destDir);
  const existing = await readdir(dest).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw invalid(`cannot extract into ${dest}: ${error.message}`, error);
  });
  if (existing !== undefined && existing.length > 0) throw invalid(`cannot extract into ${dest}: the directory is not empty`);
  const parent = dirname(dest);
  await stat(parent).catch((error: unknown) => {
    throw invalid(`cannot extract into ${dest}: ${(error as Error).message}`, error);
  });
  // mkdir (not mkdtemp, which makes it 0700): the model directory gets ordinary permissions.
  const staging = join(parent, `.${basename(dest)}.extract-${randomUUID()}`);
  await mkdir(staging, { mode: 0o755 });
  const stagingPrefix = staging + sep;
  const target = (path: string): string => {
    const absolute = join(staging, ...path.split('/'));
    if (!absolute.startsWith(stagingPrefix)) throw invalid(`refusing archive entry ${path}: it resolves outside the target directory`);
    return absolute;
  };
  try {
    const manifest = await scanArchive(resolve(file), limitsOf(options), {
      onManifest: () => true,
      onDirectory: (path) => {
        mkdirSync(target(path), { recursive: true, mode: 0o755 });
      },
      openFile: (listed) => {
        const absolute = target(listed.path);
        mkdirSync(dirname(absolute), { recursive: true, mode: 0o755 });
        // 'wx': never follow or overwrite anything already there.
        const fd = openSync(absolute, 'wx', 0o644);
        let closed = false;
        return {
          write: (chunk) => {
            let offset = 0;
            while (offset < chunk.length) offset += writeSync(fd, chunk, offset);
          },
          close: () => {
            if (!closed) closeSync(fd);
            closed = true;
          },
        };
      },
    });
    if (existing !== undefined) await rmdir(dest);
    await rename(staging, dest);
    return manifest;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}


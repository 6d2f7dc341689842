import { z } from 'zod';
import { describeIssues } from '../config/model-config.js';
import { TesseraError } from '../core/errors.js';

/**
 * The manifest of a Tessera model archive: `MANIFEST.json`, the first entry of the archive,
 * lists every other file with its size and SHA-256. Extraction refuses any file that is not
 * listed, differs from its listing, or is missing. The manifest proves integrity, not origin:
 * whoever can rewrite the archive can rewrite the manifest (sign archives out of band).
 */

export const ARCHIVE_FORMAT = 'tessera-model-archive';
export const ARCHIVE_FORMAT_VERSION = 1;
export const MANIFEST_FILENAME = 'MANIFEST.json';

/** Same rule as repository discovery: what a model directory may be called. */
const MODEL_NAME = /^[A-Za-z0-9_.-]+$/;
const VERSION_DIR = /^(0|[1-9][0-9]{0,15})$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Longest path accepted inside an archive, and longest path segment. */
export const MAX_ARCHIVE_PATH_LENGTH = 1024;
const MAX_SEGMENT_LENGTH = 255;

export interface ManifestFile {
  /** POSIX path relative to the model directory, e.g. `1/model.onnx`. */
  readonly path: string;
  readonly size: number;
  /** Lower-case hex SHA-256 of the file's bytes. */
  readonly sha256: string;
}

export interface ModelArchiveManifest {
  readonly format: typeof ARCHIVE_FORMAT;
  readonly format_version: typeof ARCHIVE_FORMAT_VERSION;
  /** The model name: the directory the archive unpacks to in a repository. */
  readonly name: string;
  /** Version directories in the archive, ascending. */
  readonly versions: readonly number[];
  /** Every file except the manifest, sorted by path. */
  readonly files: readonly ManifestFile[];
  /** Sum of the files' sizes. */
  readonly total_size: number;
  /** ISO 8601 time of packing. */
  readonly created_at: string;
  /** Version of the Tessera that packed it. */
  readonly tessera_version: string;
  /** The model's config file, if it has one (`config.yaml`, `config.json` or `config.pbtxt`). */
  readonly config_file: string | null;
  /** The model's custom handler module, if it has one. */
  readonly handler_file: string | null;
}

/**
 * Why `path` is not a safe relative archive path, or undefined when it is: POSIX separators
 * only, relative, no empty, `.` or `..` segments, no NUL, no Windows drive or backslash.
 */
export function unsafePathReason(path: string): string | undefined {
  if (path === '') return 'the path is empty';
  if (path.length > MAX_ARCHIVE_PATH_LENGTH) return `the path is longer than ${MAX_ARCHIVE_PATH_LENGTH} characters`;
  if (path.includes('\0')) return 'the path contains a NUL character';
  if (path.includes('\\')) return 'the path contains a backslash';
  if (path.startsWith('/')) return 'the path is absolute';
  if (/^[A-Za-z]:/.test(path)) return 'the path starts with a drive letter';
  for (const segment of path.split('/')) {
    if (segment === '..') return "the path contains a '..' segment";
    if (segment === '' || segment === '.') return 'the path contains an empty or \'.\' segment';
    if (segment.length > MAX_SEGMENT_LENGTH) return `a path segment is longer than ${MAX_SEGMENT_LENGTH} characters`;
  }
  return undefined;
}

const fileSchema = z.strictObject({
  path: z.string(),
  size: z.number().int().min(0),
  sha256: z.string().regex(SHA256, 'expected 64 lower-case hex digits'),
});

const manifestSchema = z.strictObject({
  format: z.literal(ARCHIVE_FORMAT),
  format_version: z.number().int(),
  name: z.string().regex(MODEL_NAME, 'expected letters, digits, _ . -'),
  versions: z.array(z.number().int().min(0)),
  files: z.array(fileSchema),
  total_size: z.number().int().min(0),
  created_at: z.iso.datetime({ offset: true }),
  tessera_version: z.string().min(1),
  config_file: z.string().nullable(),
  handler_file: z.string().nullable(),
});

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_MODEL_ARCHIVE', message);
}

/** Parse and check a manifest's text. Throws INVALID_MODEL_ARCHIVE saying what is wrong. */
export function parseManifest(text: string): ModelArchiveManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw invalid(`${MANIFEST_FILENAME} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof raw === 'object' && raw !== null && 'format_version' in raw) {
    const version = (raw as { format_version: unknown }).format_version;
    if (typeof version === 'number' && version > ARCHIVE_FORMAT_VERSION) {
      throw invalid(`archive format version ${version} is newer than this Tessera reads (${ARCHIVE_FORMAT_VERSION})`);
    }
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) throw invalid(`${MANIFEST_FILENAME} is malformed: ${describeIssues(parsed.error)}`);
  return checkManifest(parsed.data as ModelArchiveManifest);
}

/** Cross-field checks of a manifest (paths, order, versions, totals). Returns it unchanged. */
export function checkManifest(manifest: ModelArchiveManifest): ModelArchiveManifest {
  const problem = (message: string): TesseraError => invalid(`${MANIFEST_FILENAME}: ${message}`);
  if (manifest.format_version !== ARCHIVE_FORMAT_VERSION) throw problem(`unsupported format_version ${manifest.format_version}`);
  const seen = new Set<string>();
  let total = 0;
  let previous = '';
  const versionsWithFiles = new Set<number>();
  for (const file of manifest.files) {
    const reason = unsafePathReason(file.path);
    if (reason !== undefined) throw problem(`file ${JSON.stringify(file.path)} is not a safe path: ${reason}`);
    if (file.path === MANIFEST_FILENAME) throw problem(`lists ${MANIFEST_FILENAME} itself`);
    if (seen.has(file.path)) throw problem(`lists ${file.path} twice`);
    if (file.path < previous) throw problem('files are not sorted by path');
    previous = file.path;
    seen.add(file.path);
    total += file.size;
    const top = file.path.split('/')[0]!;
    if (VERSION_DIR.test(top) && file.path.includes('/')) versionsWithFiles.add(Number(top));
  }
  for (const file of manifest.files) {
    // A file that is also a directory of another file cannot be extracted.
    const parts = file.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (seen.has(dir)) throw problem(`${dir} is listed as a file but also holds ${file.path}`);
    }
  }
  if (total !== manifest.total_size) throw problem(`total_size is ${manifest.total_size} but the files add up to ${total}`);
  const versions = [...manifest.versions];
  if (versions.length === 0) throw problem('no versions');
  for (let i = 1; i < versions.length; i++) {
    if (versions[i]! <= versions[i - 1]!) throw problem('versions are not ascending and unique');
  }
  const declared = new Set(versions);
  for (const version of versions) {
    if (!versionsWithFiles.has(version)) throw problem(`version ${version} has no files`);
  }
  for (const version of versionsWithFiles) {
    if (!declared.has(version)) throw problem(`files under ${version}/ but version ${version} is not listed in versions`);
  }
  for (const key of ['config_file', 'handler_file'] as const) {
    const path = manifest[key];
    if (path !== null && !seen.has(path)) throw problem(`${key} ${path} is not among the files`);
  }
  return manifest;
}

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { TesseraError } from '../core/errors.js';
import { isModelName } from './discovery.js';

/** Start of the name of each directory that files sent with a load are written into (in $TMPDIR). */
export const LOAD_FILES_PREFIX = 'tessera-load-';

/** Most files and bytes one load request may carry. */
const MAX_FILES = 256;

/**
 * Write model files sent with a load request (Triton's `file:<path>` parameters, e.g.
 * `file:1/model.onnx`) into a fresh private directory that then serves as the model's directory.
 * Paths must stay inside it: absolute paths and `..` are refused. The caller owns the
 * directory and removes it once no version loaded from it serves (see ModelRegistry); when
 * writing fails, it is removed here.
 */
export async function writeOverrideFiles(model: string, files: ReadonlyMap<string, Buffer>): Promise<string> {
  if (files.size > MAX_FILES) throw new TesseraError('INVALID_PARAMETER', `a load request may carry at most ${MAX_FILES} files, got ${files.size}`);
  for (const path of files.keys()) {
    const clean = normalize(path);
    if (path === '' || isAbsolute(path) || clean.startsWith('..') || clean.split(sep).includes('..')) {
      throw new TesseraError('INVALID_PARAMETER', `file path '${path}' must be relative and stay inside the model directory (e.g. 1/model.onnx)`);
    }
  }
  if (!isModelName(model)) throw new TesseraError('INVALID_PARAMETER', `'${model}' is not a valid model name (letters, digits, '_', '.', '-')`);
  // A directory of its own, made by mkdtemp (a new name, mode 0700) right in the temporary
  // directory: never a shared folder another user could have made first, or planted as a link.
  const dir = await mkdtemp(join(tmpdir(), `${LOAD_FILES_PREFIX}${model}-`));
  try {
    for (const [path, data] of files) {
      const target = join(dir, normalize(path));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, data);
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return dir;
}

import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ModelConfigFile } from '../config/model-config.js';
import { TesseraError } from '../core/errors.js';
import { compareStrings } from '../core/order.js';
import { readModelConfig } from './config-file.js';
import { readLabels } from './labels.js';

/** What the repository holds for one model directory, before anything is loaded. */
export interface DiscoveredModel {
  readonly name: string;
  readonly dir: string;
  /** The validated config, or undefined when it is invalid (see `problem`). */
  readonly config: ModelConfigFile | undefined;
  /** Why the model cannot be served at all (invalid config), if so. */
  readonly problem: string | undefined;
  /** Numeric version directories found, ascending. */
  readonly versions: readonly number[];
  readonly labels: readonly string[] | undefined;
  /** Fields of a Triton config.pbtxt that Tessera does not honour (logged once per load). */
  readonly ignoredConfigFields: readonly string[];
}

const VERSION_DIR = /^(0|[1-9][0-9]{0,15})$/;
const MODEL_NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * Scan a Triton-layout repository: `<root>/<model>/[config.yaml] [labels.txt] <version>/<file>`.
 * Directories starting with '.' are skipped. A model's problems are recorded on it; only an
 * unreadable root throws.
 */
export async function discoverRepository(root: string): Promise<DiscoveredModel[]> {
  const absolute = resolve(root);
  let entries;
  try {
    entries = await listEntries(absolute);
  } catch (error) {
    throw new TesseraError('REPOSITORY_UNAVAILABLE', `cannot read model repository ${absolute}: ${(error as Error).message}`, { cause: error });
  }
  const models = entries.dirs.filter(isModelName).map((name) => discoverModel(name, join(absolute, name)));
  return (await Promise.all(models)).sort((a, b) => compareStrings(a.name, b.name));
}

/** Whether `name` can name a model (a directory name Tessera serves). */
export function isModelName(name: string): boolean {
  return !name.startsWith('.') && MODEL_NAME.test(name);
}

/** Names of the model directories under `root`, sorted. */
export async function listModelNames(root: string): Promise<string[]> {
  return (await listEntries(resolve(root))).dirs.filter(isModelName).sort();
}

/**
 * The files and directories of `dir`, following symbolic links: Kubernetes volumes (ConfigMaps,
 * Secrets, projected volumes) and many deployment tools lay out model files as links.
 * Dangling links are neither.
 */
async function listEntries(dir: string): Promise<{ readonly files: Set<string>; readonly dirs: string[] }> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = new Set<string>();
  const dirs: string[] = [];
  await Promise.all(
    entries.map(async (entry) => {
      let kind = entry.isFile() ? 'file' : entry.isDirectory() ? 'dir' : undefined;
      if (entry.isSymbolicLink()) {
        const target = await stat(join(dir, entry.name)).catch(() => undefined);
        kind = target?.isFile() === true ? 'file' : target?.isDirectory() === true ? 'dir' : undefined;
      }
      if (kind === 'file') files.add(entry.name);
      else if (kind === 'dir') dirs.push(entry.name);
    }),
  );
  return { files, dirs };
}

/**
 * Scan one model directory. `configOverride` (already validated) replaces the directory's
 * config file, as Triton's load API allows.
 */
export async function discoverModel(name: string, dir: string, configOverride?: ModelConfigFile): Promise<DiscoveredModel> {
  const { files, dirs } = await listEntries(dir);
  // Version numbers are numbers: a directory beyond 2^53 would read as another version (its
  // neighbour) and be looked for under that name, so it is not a version.
  const versions = dirs
    .filter((name) => VERSION_DIR.test(name) && Number.isSafeInteger(Number(name)))
    .map(Number)
    .sort((a, b) => a - b);
  const configResult = configOverride === undefined ? await readModelConfig(dir, files) : ({ ok: true, config: configOverride, file: undefined, ignored: [] } as const);
  const config = configResult.ok ? configResult.config : undefined;
  let problem = configResult.ok ? undefined : configResult.reason;
  if (config?.name !== undefined && config.name !== name) {
    problem = `config name '${config.name}' differs from the directory name '${name}'`;
  }
  const labelFile = config?.label_filename ?? 'labels.txt';
  let labels: string[] | undefined;
  if (files.has(labelFile)) {
    labels = await readLabels(join(dir, labelFile));
  } else if (config?.label_filename !== undefined) {
    problem ??= `label file ${config.label_filename} not found`;
  }
  if (problem === undefined && versions.length === 0) problem = 'no version directories (expected e.g. 1/model.onnx)';
  const ignoredConfigFields = configResult.ok ? configResult.ignored : [];
  return { name, dir, config: problem === undefined ? config : undefined, problem, versions, labels, ignoredConfigFields };
}

import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { TesseraError, toTesseraError } from '../core/errors.js';
import { discoverModel, listModelNames } from '../repository/discovery.js';
import { createBaselineFromFile } from '../observability/monitoring/baseline.js';
import { modelRepositoryOf } from './infer.js';

/** Bins per feature a model's monitoring accepts (its config's `bins`: 2 to 100). */
export const MIN_BINS = 2;
export const MAX_BINS = 100;

/** `--bins`: an integer from 2 to 100, or undefined (the default, 10). */
export function parseBins(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  // Decimal digits only, as every number on the command line ('1e1' and '0x10' are refused).
  const bins = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
  if (!Number.isInteger(bins) || bins < MIN_BINS || bins > MAX_BINS) {
    throw new TesseraError('INVALID_PARAMETER', `--bins: expected an integer from ${MIN_BINS} to ${MAX_BINS}, got '${value}'`);
  }
  return bins;
}

/** The model's directory in the repository: a clear error when the repository or the model is missing. */
async function modelDirectory(repository: string, model: string): Promise<string> {
  const names = await listModelNames(repository).catch((error: unknown) => {
    throw new TesseraError('REPOSITORY_UNAVAILABLE', `cannot read model repository ${resolve(repository)}: ${(error as Error).message}`, { cause: error });
  });
  if (!names.includes(model)) {
    throw new TesseraError('MODEL_NOT_FOUND', `model '${model}' is not in the repository ${repository}; its models are: ${names.join(', ') || 'none'}`);
  }
  return join(repository, model);
}

/** `--data`: a file of rows (a directory or a missing file is named with the flag). */
async function checkDataFile(path: string): Promise<void> {
  const expected = 'a CSV or TSV file with a header, or a JSONL file, of feature rows';
  const info = await stat(path).catch((error: unknown) => {
    throw new TesseraError('INVALID_PARAMETER', `--data: cannot read ${path}: ${(error as Error).message}; expected ${expected}`, { cause: error });
  });
  if (!info.isFile()) throw new TesseraError('INVALID_PARAMETER', `--data: ${path} is ${info.isDirectory() ? 'a directory' : 'not a regular file'}; expected ${expected}`);
}

/**
 * `tessera baseline <model> --data rows.csv`: compute the model's drift baseline (per-feature
 * bins and moments) from a data set and write it beside the model (baseline.json), where
 * monitoring picks it up at the next load.
 */
export async function baselineCommand(
  model: string,
  flags: { data: string; modelRepository?: string; bins?: string; out?: string },
  command?: Command,
): Promise<void> {
  try {
    const bins = parseBins(flags.bins);
    const modelDir = await modelDirectory(modelRepositoryOf(flags.modelRepository, command), model);
    await checkDataFile(flags.data);
    const discovered = await discoverModel(model, modelDir);
    const monitoring = discovered.config?.monitoring;
    const { path, baseline } = await createBaselineFromFile(flags.data, flags.out ?? modelDir, {
      ...(bins === undefined ? {} : { bins }),
      ...(monitoring?.baseline_file === undefined ? {} : { fileName: monitoring.baseline_file }),
      ...(monitoring?.features === undefined ? {} : { defaultFeatureNames: monitoring.features }),
    });
    process.stdout.write(`wrote ${path}: ${baseline.features.length} features from ${baseline.rows} rows\n`);
  } catch (error) {
    const failure = toTesseraError(error);
    process.stderr.write(`tessera baseline: ${failure.code}: ${failure.message}\n`);
    process.exitCode = 1;
  }
}

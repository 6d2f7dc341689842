import { join } from 'node:path';
import { toTesseraError } from '../core/errors.js';
import { discoverModel } from '../repository/discovery.js';
import { createBaselineFromFile } from '../observability/monitoring/baseline.js';

/**
 * `tessera baseline <model> --data rows.csv`: compute the model's drift baseline (per-feature
 * bins and moments) from a data set and write it beside the model (baseline.json), where
 * monitoring picks it up at the next load.
 */
export async function baselineCommand(model: string, flags: { data: string; modelRepository: string; bins?: string; out?: string }): Promise<void> {
  try {
    const modelDir = join(flags.modelRepository, model);
    const discovered = await discoverModel(model, modelDir);
    const monitoring = discovered.config?.monitoring;
    const bins = flags.bins === undefined ? undefined : Number(flags.bins);
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

import { z } from 'zod';

/**
 * The `monitoring:` section of a model's config.yaml (model-quality monitoring: prediction
 * distributions and input drift). Present means on, unless `enabled: false`; absent means off
 * (no work at all for that model). Keys are snake_case like the rest of the model config.
 */
export const monitoringConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Rows the sliding drift window holds (count window). Ignored when `window_seconds` is set. */
    window_rows: z.number().int().min(10).max(10_000_000).default(1000),
    /** Time window instead: the window covers the last `window_seconds` seconds of traffic. */
    window_seconds: z.number().positive().max(30 * 24 * 3600).optional(),
    /** Buckets of the window's ring: it slides by 1/window_buckets of its size at a time. */
    window_buckets: z.number().int().min(2).max(120).default(10),
    /** Rows (with a finite value) a feature needs in the window before its PSI counts. Default: half of window_rows (count window) or 100 (time window). */
    min_rows: z.number().int().min(1).optional(),
    /** Bins per feature (quantile bins of the baseline). */
    bins: z.number().int().min(2).max(100).default(10),
    /** A feature whose PSI reaches this raises the model version's drift alert. */
    psi_threshold: z.number().positive().default(0.2),
    /** The alert clears when every feature's PSI is below this (hysteresis). Default 0.8 × psi_threshold. */
    psi_clear_threshold: z.number().positive().optional(),
    /** Without a baseline file, the first N requests of each version form the baseline. */
    baseline_requests: z.number().int().min(1).default(100),
    /** At most this many rows are kept while collecting a baseline from traffic. */
    baseline_max_rows: z.number().int().min(10).max(1_000_000).default(10_000),
    /** Baseline file in the model directory (written by `tessera baseline`). */
    baseline_file: z.string().min(1).default('baseline.json'),
    /** Names of the input features, in order (inputs in signature order, columns within each). */
    features: z.array(z.string().min(1)).optional(),
    /** Features beyond this many are not monitored (a note says so). */
    max_features: z.number().int().min(1).max(4096).default(256),
    /** How outputs are summarised: `auto` detects probability outputs (last dim > 1, rows sum to 1). */
    task: z.enum(['auto', 'classifier', 'regressor']).default('auto'),
    /** Outputs to summarise; default every numeric output the response carries. */
    outputs: z.array(z.string().min(1)).optional(),
    /** Classes counted one by one; a higher class index is counted as `_other`. */
    max_classes: z.number().int().min(2).max(1000).default(1000),
  })
  .refine((c) => c.psi_clear_threshold === undefined || c.psi_clear_threshold <= c.psi_threshold, {
    message: 'psi_clear_threshold must not exceed psi_threshold',
    path: ['psi_clear_threshold'],
  });

export type MonitoringConfigInput = z.input<typeof monitoringConfigSchema>;
export type MonitoringConfig = z.output<typeof monitoringConfigSchema>;

/** Parse (and default) a `monitoring:` section; throws a ZodError when invalid. */
export function parseMonitoringConfig(input: MonitoringConfigInput = {}): MonitoringConfig {
  return monitoringConfigSchema.parse(input);
}

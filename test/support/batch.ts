import type { BatchJobOptions } from '../../src/batch/job.js';

/** Output streams that swallow a job's progress and summary. */
export const QUIET = { write: (): boolean => true };

/**
 * A batch job's options as tests run it (no progress, no retries, snappy output); `job` names
 * the input, output, repository and model and overrides any default.
 */
export function batchJobOptions(job: Partial<BatchJobOptions> & Pick<BatchJobOptions, 'input' | 'output' | 'repository' | 'model'>): BatchJobOptions {
  return {
    features: [],
    inputColumns: [],
    passthrough: [],
    retries: 0,
    timeoutMs: 30_000,
    compression: 'snappy',
    restart: false,
    overwrite: false,
    dryRun: false,
    progress: 'none',
    logIntervalSeconds: 10,
    ...job,
  };
}

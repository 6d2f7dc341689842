import { TesseraError, toTesseraError, type ErrorCode } from '../core/errors.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';

/** What a job needs to know of the model it scores with. */
export interface ModelInfo {
  /** "model 'mlp' version 1" (or with the endpoint), for messages. */
  readonly label: string;
  readonly name: string;
  readonly version: string | undefined;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** 0: the model does not batch (one row per request); otherwise the largest batch a request may carry. */
  readonly maxBatchSize: number;
  readonly labels: readonly string[] | undefined;
  /** What the checkpoint records of the model, so that a resumed job refuses a changed one. */
  readonly identity: ModelIdentity;
}

/**
 * The model a job scores with, as far as the executor can tell: a job resumed with another
 * version, or with the files of its version replaced, would mix two models' outputs in one file.
 */
export interface ModelIdentity {
  /** The version requests go to: in-process, the one loaded; remote, `--version` (null: the server's choice). */
  readonly version: string | null;
  /** Remote without `--version`: the versions the server's metadata lists (a new one may take the requests). */
  readonly versions: readonly string[] | null;
  /** In-process: the model file's size, modification time and inode, and a hash of its config, labels and other files. */
  readonly files: string | null;
}

/** Runs inference requests for a job: in-process (the engine) or against a remote V2 endpoint. */
export interface Executor {
  readonly model: ModelInfo;
  /** One line saying where requests go, for the log and the summary. */
  readonly description: string;
  /** Requests retried so far (refusals, transient failures). */
  readonly retried: number;
  infer(inputs: readonly Tensor[], outputs: readonly string[], options?: { readonly isolating?: boolean }): Promise<Tensor[]>;
  close(): Promise<void>;
}

/**
 * Whether a failed request is the rows' fault (their batch is retried row by row, and the rows
 * that still fail get an `error`), or the job's (stop: every later request would fail too).
 */
export function failureScope(error: unknown): 'rows' | 'job' {
  const failure = toTesseraError(error);
  switch (failure.category) {
    case 'invalid_argument':
    case 'unsupported':
    case 'too_large':
    case 'internal':
      return failure.code === 'INVALID_MODEL_CONFIG' ? 'job' : 'rows';
    default:
      return 'job';
  }
}

/** The text of a row's `error` cell for a failed request. */
export function rowErrorText(error: unknown): string {
  const failure = toTesseraError(error);
  return `${failure.code}: ${failure.message}`;
}

export function jobError(code: ErrorCode, message: string, cause?: unknown): TesseraError {
  return new TesseraError(code, message, cause === undefined ? {} : { cause });
}

/**
 * The one catalog of Tessera's error codes. Every code belongs to one transport-neutral
 * category; protocol adapters map categories to HTTP or gRPC statuses (and nothing else
 * formats errors). docs/errors.md documents every code; test/errors.test.ts keeps them in step.
 */

/** Transport-neutral error categories (after Triton's TRITONSERVER_Error_Code and gRPC's codes). */
export type ErrorCategory =
  | 'invalid_argument'
  | 'not_found'
  | 'unavailable'
  | 'unsupported'
  | 'already_exists'
  | 'cancelled'
  | 'deadline_exceeded'
  | 'unauthenticated'
  | 'permission_denied'
  | 'resource_exhausted'
  | 'too_large'
  | 'internal';

interface CatalogEntry {
  readonly category: ErrorCategory;
  readonly summary: string;
}

/** Every error code Tessera answers with. Codes are stable: never rename or reuse one. */
export const ERROR_CATALOG = {
  INVALID_REQUEST: { category: 'invalid_argument', summary: 'The request body is malformed or a field has the wrong type.' },
  INVALID_PARAMETER: { category: 'invalid_argument', summary: 'A request or tensor parameter has an invalid value.' },
  UNKNOWN_INPUT: { category: 'invalid_argument', summary: 'The request names an input the model does not have.' },
  MISSING_INPUT: { category: 'invalid_argument', summary: 'The request lacks an input the model requires.' },
  DUPLICATE_INPUT: { category: 'invalid_argument', summary: 'The request gives the same input twice.' },
  INVALID_DATATYPE: { category: 'invalid_argument', summary: "An input's datatype differs from the model's." },
  INVALID_INPUT_SHAPE: { category: 'invalid_argument', summary: "An input's shape does not fit the model's shape." },
  INVALID_INPUT_DATA: {
    category: 'invalid_argument',
    summary: "An input's data does not match its shape or datatype, or the model rejected its values.",
  },
  BATCH_TOO_LARGE: { category: 'invalid_argument', summary: "The request's batch exceeds the model's max_batch_size." },
  UNKNOWN_OUTPUT: { category: 'invalid_argument', summary: 'The request asks for an output the model does not have.' },
  UNSUPPORTED_DATATYPE: { category: 'unsupported', summary: 'The datatype is not supported by this model or backend.' },
  MODEL_NOT_FOUND: { category: 'not_found', summary: 'No model of that name is in the repository.' },
  MODEL_VERSION_NOT_FOUND: { category: 'not_found', summary: 'The model has no such version.' },
  MODEL_UNAVAILABLE: { category: 'unavailable', summary: 'The model (or version) exists but is not ready to serve.' },
  MODEL_LOAD_FAILED: { category: 'unavailable', summary: 'Loading the model failed; the reason says why.' },
  INVALID_MODEL_CONFIG: { category: 'invalid_argument', summary: "The model's configuration is invalid." },
  REPOSITORY_UNAVAILABLE: { category: 'unavailable', summary: 'The model repository cannot be read.' },
  MODEL_CONTROL_DISABLED: {
    category: 'unsupported',
    summary: 'Loading and unloading through the API is off in this model control mode (poll follows the repository).',
  },
  MODEL_ALREADY_EXISTS: { category: 'already_exists', summary: 'A model of that name is already in the repository.' },
  QUEUE_FULL: { category: 'unavailable', summary: "The model's queue is full; retry after the indicated delay." },
  OVERLOADED: {
    category: 'unavailable',
    summary: 'The server is overloaded (event-loop delay or memory above the configured limits) and sheds new work; retry after the indicated delay.',
  },
  DEADLINE_EXCEEDED: { category: 'deadline_exceeded', summary: "The request's timeout expired before it ran." },
  REQUEST_CANCELLED: { category: 'cancelled', summary: 'The caller went away before the request ran.' },
  SHUTTING_DOWN: { category: 'unavailable', summary: 'The server is shutting down and takes no new work.' },
  UNAUTHENTICATED: {
    category: 'unauthenticated',
    summary: 'The request carries no credential where one is needed, or one that is invalid or expired (API key or bearer token).',
  },
  PERMISSION_DENIED: {
    category: 'permission_denied',
    summary: "The credential lacks the scope the endpoint needs (infer, read, admin), or may not use that model.",
  },
  RATE_LIMITED: {
    category: 'resource_exhausted',
    summary: 'The caller (its key, or its address without one) exceeded its request rate, overall or for the model; retry after the indicated delay.',
  },
  QUERY_BUDGET_EXHAUSTED: {
    category: 'resource_exhausted',
    summary: "The caller used up its inference budget for the period; retry after the indicated delay (when the period renews).",
  },
  LIMIT_EXCEEDED: {
    category: 'too_large',
    summary: 'The request exceeds a configured limit (tensor elements, batch rows, BYTES element length, JSON nesting depth, number of inputs); the message names the limit and its setting.',
  },
  ROUTE_NOT_FOUND: { category: 'not_found', summary: 'No endpoint at that path and method.' },
  UNSUPPORTED_MEDIA_TYPE: { category: 'unsupported', summary: 'The request body has a content type the endpoint does not accept.' },
  PAYLOAD_TOO_LARGE: { category: 'too_large', summary: 'The request body is larger than the configured limit.' },
  INVALID_MODEL_ARCHIVE: {
    category: 'invalid_argument',
    summary: 'A model archive is malformed, unsafe, or does not match its manifest.',
  },
  CIRCUIT_OPEN: {
    category: 'unavailable',
    summary: "The model version's circuit breaker is open (consecutive failures) and no fallback can serve; retry after the indicated delay.",
  },
  ROLLOUT_IN_PROGRESS: { category: 'already_exists', summary: 'A canary rollout of the model is already running; abort it first.' },
  ROLLOUT_NOT_FOUND: { category: 'not_found', summary: 'The model has no such rollout, shadow, alias or circuit breaker to act on.' },
  INVALID_BATCH_INPUT: {
    category: 'invalid_argument',
    summary: "A batch job's input cannot be read or parsed as its format, or lacks a column the job names.",
  },
  BATCH_CHECKPOINT_CONFLICT: {
    category: 'already_exists',
    summary: "A batch job's output holds the checkpoint of a different job, or another process is writing it.",
  },
  UPSTREAM_UNAVAILABLE: {
    category: 'unavailable',
    summary: 'A remote inference endpoint kept refusing or failing a request after every retry, or answered what V2 does not.',
  },
  INFERENCE_FAILED: { category: 'internal', summary: 'The backend failed while running the model.' },
  HANDLER_FAILED: { category: 'internal', summary: "A model's handler failed while post-processing, or returned invalid tensors." },
  INTERNAL: { category: 'internal', summary: 'An unexpected server error.' },
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export interface TesseraErrorOptions {
  cause?: unknown;
  /** For retryable refusals (queue full, overload): how long the caller should wait. */
  retryAfterSeconds?: number;
}

/** The one error type the engine and its layers throw. */
export class TesseraError extends Error {
  override readonly name = 'TesseraError';
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: TesseraErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.category = ERROR_CATALOG[code].category;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function isTesseraError(value: unknown): value is TesseraError {
  return value instanceof TesseraError;
}

/** Wrap anything thrown into a TesseraError, keeping the original as `cause`. */
export function toTesseraError(value: unknown, fallback: ErrorCode = 'INTERNAL'): TesseraError {
  if (value instanceof TesseraError) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new TesseraError(fallback, message, { cause: value });
}

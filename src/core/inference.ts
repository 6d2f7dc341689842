import type { Parameters, Tensor } from './tensor.js';
import type { CancelSignal } from './cancel.js';

/** An output the caller asks for, with its per-output parameters (e.g. binary_data, classification). */
export interface RequestedOutput {
  readonly name: string;
  readonly parameters?: Parameters;
}

/**
 * The one request every protocol decodes into. Protocols fill it; the engine validates it
 * against the model and routes it.
 */
export interface InferenceRequest {
  /** Caller-chosen id, echoed in the response (V2 `id`). */
  readonly id?: string;
  readonly model: string;
  /** A version number as a string; absent means the model's default version. */
  readonly version?: string;
  readonly inputs: readonly Tensor[];
  /** Outputs to return; absent means all of the model's outputs. */
  readonly outputs?: readonly RequestedOutput[];
  readonly parameters?: Parameters;
  /** Priority level, 1 = highest (Triton's convention); absent = the model's default level. */
  readonly priority?: number;
  /** Relative timeout in milliseconds; a request still queued after it is answered DEADLINE_EXCEEDED. */
  readonly timeoutMs?: number;
  /** Aborted when the caller goes away; a queued request is then dropped and never run. */
  readonly signal?: CancelSignal;
  /** The front door it came through (`v2-http`, `v2-grpc`, ...), for metrics and logs only. */
  readonly protocol?: string;
  /** W3C trace context of the caller (`traceparent` header value), for tracing only. */
  readonly traceparent?: string;
  /** Sticky-routing key (e.g. a user id): the same key is always served by the same version (src/routing). */
  readonly routingKey?: string;
  /** A version or alias asked for outside the URL, for testing; a version in the URL still wins (src/routing). */
  readonly versionOverride?: string;
  /**
   * Reads one of the caller's HTTP headers or gRPC metadata entries by lower-case name (first
   * value); routing takes sticky keys and version overrides from the headers a model's config names.
   */
  readonly callerHeader?: (name: string) => string | undefined;
}

/** The engine's answer, before any protocol encodes it. */
export interface InferenceResponse {
  readonly id?: string;
  readonly model: string;
  readonly version: string;
  readonly outputs: readonly Tensor[];
  readonly parameters?: Parameters;
  /**
   * What the answering version was loaded with, for protocols that shape an answer after
   * inference (classification, label maps): by then the version may be unloaded or replaced,
   * so they must not look the model up again.
   */
  readonly served?: ServedVersion;
}

/** Facts of the model version that answered a request (see InferenceResponse.served). */
export interface ServedVersion {
  /** Whether dim 0 of the inputs and outputs is the batch (max_batch_size > 0). */
  readonly batched: boolean;
  /** The version's class labels (labels.txt), if it has them. */
  readonly labels: readonly string[] | undefined;
}

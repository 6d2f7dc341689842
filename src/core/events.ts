import { channel } from 'node:diagnostics_channel';
import type { ErrorCode } from './errors.js';
import type { InferenceRequest, InferenceResponse } from './inference.js';
import type { Tensor } from './tensor.js';

/**
 * Every event Tessera's inner layers publish, declared in one place (after undici's
 * lib/core/diagnostics.js), in core so every layer may publish. Publishers check `hasSubscribers` first, so an event nobody
 * listens to costs nothing. Subscribers run synchronously on the request path: they must be
 * quick and must not throw. Only src/observability subscribes.
 */

/** A validated request about to be queued. Tensors are readable only during the callback (they may be moved to a worker right after). */
export interface RequestStartEvent {
  readonly model: string;
  readonly version: string;
  readonly protocol: string;
  readonly request: InferenceRequest;
  readonly inputs: readonly Tensor[];
}

/** A request answered (successfully or not). */
export interface RequestEndEvent {
  /** Epoch milliseconds the engine received the request. */
  readonly startedAtMs: number;
  readonly model: string;
  /** Undefined when the request failed before a version was chosen. */
  readonly version: string | undefined;
  readonly protocol: string;
  readonly outcome: 'success' | ErrorCode;
  readonly durationSeconds: number;
  readonly request: InferenceRequest;
  readonly response: InferenceResponse | undefined;
}

/** A request's time in the scheduler, once its batch finished. Times are epoch milliseconds. */
export interface RequestScheduledEvent {
  readonly model: string;
  readonly version: string;
  /** The engine request this was, when the scheduler was called by the engine. */
  readonly request: InferenceRequest | undefined;
  readonly queueSeconds: number;
  readonly computeSeconds: number;
  readonly enqueuedAtMs: number;
  readonly dispatchedAtMs: number;
  readonly finishedAtMs: number;
  /** Rows of the batch the request ran in. */
  readonly batchRows: number;
}

/** One batch executed by a model instance. */
export interface BatchExecutedEvent {
  readonly model: string;
  readonly version: string;
  /** Items (rows) in the batch. */
  readonly rows: number;
  /** Requests in the batch. */
  readonly requests: number;
  readonly ok: boolean;
  readonly computeSeconds: number;
}

export interface ModelLoadedEvent {
  readonly model: string;
  readonly version: string;
  readonly ok: boolean;
  readonly durationSeconds: number;
  readonly reason: string;
}

export interface ModelUnloadedEvent {
  readonly model: string;
  readonly version: string;
  /**
   * A reload put a new copy of the same version in its place (changed files or config): the
   * version goes on serving, and what describes the new copy (its monitoring) must be kept.
   */
  readonly replaced: boolean;
}

export const channels = {
  requestStart: channel('tessera:request:start'),
  requestEnd: channel('tessera:request:end'),
  requestScheduled: channel('tessera:request:scheduled'),
  batchExecuted: channel('tessera:batch:executed'),
  modelLoaded: channel('tessera:model:loaded'),
  modelUnloaded: channel('tessera:model:unloaded'),
} as const;

/** Typed publish: only when someone listens. */
export function publish<E>(target: (typeof channels)[keyof typeof channels], event: () => E): void {
  if (target.hasSubscribers) target.publish(event());
}

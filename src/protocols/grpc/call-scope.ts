import type { EventEmitter } from 'node:events';
import type { Deadline } from '@grpc/grpc-js';
import { CancelFlag, type CancelSignal } from '../../core/cancel.js';

/** What a call adds to the messages it carries: the caller's abort signal and the gRPC deadline. */
export interface CallScope {
  /** Aborted when the client cancels the call (or its deadline passes). */
  readonly signal?: CancelSignal;
  /** Milliseconds left before the call's deadline; undefined when it has none. */
  readonly deadlineMs?: number;
  /** The caller's W3C trace context from the call metadata, if any. */
  readonly traceparent?: string;
  /** Reads a metadata entry by lower-case name (routing: sticky keys, version overrides). */
  readonly callerHeader?: (name: string) => string | undefined;
}

/** The parts of a grpc-js server call that cancellation and deadlines need. */
export interface CancellableCall extends EventEmitter {
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  readonly metadata?: { get(key: string): (string | Buffer)[] };
}

/** A call's scope, and what to do once the call is answered. */
export interface OpenCallScope {
  readonly scope: CallScope;
  /**
   * The call is answered: stop following its cancellation. grpc-js reports every call
   * 'cancelled' when its HTTP/2 stream closes, answered or not; firing the signal then would
   * run its listeners for a request that is already over, on every call.
   */
  end(): void;
}

/**
 * The abort signal and deadline of a server call. The signal aborts when grpc-js reports
 * the call cancelled before it is answered: the client cancelled it, went away, or its
 * deadline passed. A queued request is then dropped instead of run for nobody. The signal is a
 * {@link CancelFlag}, as the HTTP front door's: an AbortController per call took ~35 µs of the
 * event loop per ResNet call in a CPU profile under load, for a signal that almost never fires.
 */
export function openCallScope(call: CancellableCall): OpenCallScope {
  const flag = new CancelFlag();
  const onCancelled = (): void => flag.cancel();
  if (call.cancelled) flag.cancel();
  else call.once('cancelled', onCancelled);
  const deadlineMs = remainingMs(call.getDeadline());
  const trace = call.metadata?.get('traceparent')[0];
  const traceparent = typeof trace === 'string' && trace.length <= 256 ? trace : undefined;
  const metadata = call.metadata;
  const scope: CallScope = {
    signal: flag,
    ...(deadlineMs === undefined ? {} : { deadlineMs }),
    ...(traceparent === undefined ? {} : { traceparent }),
    ...(metadata === undefined ? {} : { callerHeader: (name: string) => metadataValue(metadata.get(name)[0]) }),
  };
  return { scope, end: () => call.off('cancelled', onCancelled) };
}

/** A string metadata value of a sane length for a routing key (binary `-bin` entries are not). */
function metadataValue(value: string | Buffer | undefined): string | undefined {
  return typeof value === 'string' && value !== '' && value.length <= 256 ? value : undefined;
}

/** Milliseconds until `deadline`, or undefined when the call has none (grpc-js reports Infinity). */
export function remainingMs(deadline: Deadline): number | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  return at - Date.now();
}

import { TraceFlags, isSpanContextValid, type SpanContext } from '@opentelemetry/api';

/**
 * W3C Trace Context `traceparent`: `{version}-{trace-id}-{parent-id}-{flags}`, lower-case hex
 * (https://www.w3.org/TR/trace-context/#traceparent-header). Version 00 has exactly four
 * fields; later versions may append fields, which are ignored. Version ff and all-zero ids are
 * invalid.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The remote span context of a `traceparent` value, or undefined when it is absent or invalid. */
export function parseTraceparent(value: string | undefined): SpanContext | undefined {
  if (value === undefined) return undefined;
  const match = TRACEPARENT.exec(value.trim());
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  const context: SpanContext = { traceId: traceId!, spanId: spanId!, traceFlags: parseInt(flags!, 16) & 0xff, isRemote: true };
  return isSpanContextValid(context) ? context : undefined;
}

/** The `traceparent` value of a span context (version 00; only the sampled flag is kept). */
export function formatTraceparent(context: SpanContext): string {
  const sampled = (context.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
  return `00-${context.traceId}-${context.spanId}-${sampled ? '01' : '00'}`;
}

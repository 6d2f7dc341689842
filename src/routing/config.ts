import { z } from 'zod';
import { MAX_TIMER_MS } from '../core/timers.js';

/**
 * The `routing:` section of a model's config (docs/rollouts.md), and the shapes the management
 * API accepts for the same settings at run time. This module imports nothing of the project but
 * core/timers.ts, a leaf (src/config/model-config.ts embeds the schema), so it can sit below the
 * config layer.
 */

/** Alias names: a letter first, so an alias never reads as a version number. */
export const ALIAS_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
/** Aliases that would be confused with the V2 API's own words. */
const RESERVED_ALIASES = new Set(['latest', 'ready', 'infer', 'config', 'stats', 'versions']);

/** A version number, as an integer or a string of digits; normalised to a string. */
export const versionName = z
  .union([z.number().int().min(0), z.string().regex(/^\d+$/, 'must be a version number')])
  .transform((value) => String(value));

/** A version number or an alias name. */
export const versionOrAlias = z
  .union([z.number().int().min(0), z.string().regex(/^(\d+|[A-Za-z][A-Za-z0-9_.-]{0,63})$/, 'must be a version number or an alias name')])
  .transform((value) => String(value));

export const aliasName = z
  .string()
  .regex(ALIAS_NAME, 'an alias starts with a letter and holds letters, digits, "_", "." or "-" (at most 64)')
  .refine((name) => !RESERVED_ALIASES.has(name), { message: `reserved alias name (${[...RESERVED_ALIASES].join(', ')})` });

const headerName = z
  .string()
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'must be an HTTP header name')
  .transform((name) => name.toLowerCase());

/**
 * Parse a duration: `250ms`, `60s`, `2m`, `1h`, or a number of milliseconds. Undefined when
 * the text is not a duration.
 */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (match === null) return undefined;
  const amount = Number(match[1]);
  const unit = match[2] ?? 'ms';
  return amount * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const)[unit as 'ms' | 's' | 'm' | 'h'];
}

/** Human form of a duration in milliseconds (`200ms`, `60s`, `2m`). */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `'${value}' is not a duration (e.g. 250ms, 60s, 2m, or milliseconds)` });
    return z.NEVER;
  }
  if (ms > MAX_TIMER_MS) {
    ctx.addIssue({ code: 'custom', message: `'${value}' is longer than the 24.8 days (${MAX_TIMER_MS} ms) a duration may be` });
    return z.NEVER;
  }
  return ms;
});

/** Where the sticky key comes from: `{header: X-User-Id}`, `{parameter: user_id}`, or `header:X-User-Id` / `parameter:user_id` / a bare header name. */
const stickyKey = z
  .union([
    z.strictObject({ header: headerName }),
    z.strictObject({ parameter: z.string().min(1).max(128) }),
    z.string().min(1),
  ])
  .transform((value, ctx): StickyKey => {
    if (typeof value !== 'string') return 'header' in value ? { source: 'header', name: value.header } : { source: 'parameter', name: value.parameter };
    const [prefix, ...rest] = value.split(':');
    const name = rest.join(':');
    if (rest.length > 0 && (prefix === 'parameter' || prefix === 'param')) return { source: 'parameter', name };
    const header = headerName.safeParse(rest.length > 0 && prefix === 'header' ? name : value);
    if (!header.success) {
      ctx.addIssue({ code: 'custom', message: `sticky_key '${value}' is neither a header name nor 'parameter:<name>'` });
      return z.NEVER;
    }
    return { source: 'header', name: header.data };
  });

export interface StickyKey {
  readonly source: 'header' | 'parameter';
  /** Header names are lower case. */
  readonly name: string;
}

/** Weights by version: `{"1": 90, "2": 10}` (any positive scale; normalised when routing). */
export const splitSchema = z
  .record(z.string().regex(/^\d+$/, 'split keys are version numbers'), z.number().min(0))
  .refine((split) => Object.keys(split).length > 0 && Object.values(split).some((weight) => weight > 0), {
    message: 'a split needs at least one version with a positive weight',
  });

/** Gates a canary step must hold, measured against the stable version over the same window. */
export const gatesSchema = z.strictObject({
  /** The canary's error rate may exceed the stable version's by at most this much (0.02 = 2 points). */
  max_error_rate_delta: z.number().min(0).max(1).default(0.02),
  /** Canary p99 latency / stable p99 latency may be at most this. */
  max_p99_ratio: z.number().min(1).default(1.5),
  /** Latencies below this count as this when taking the p99 ratio (sub-millisecond noise is not a regression). */
  p99_floor_ms: z.number().min(0).default(5),
  /** Least top-1 agreement with the stable version on mirrored requests (classifiers); null = no agreement gate. */
  min_agreement: z.number().min(0).max(1).nullable().default(0.9),
  /** Largest mean absolute difference from the stable version's outputs on mirrored requests (regressors); null = none. */
  max_mean_abs_diff: z.number().min(0).nullable().default(null),
  /** Canary requests a step needs before its gates are judged. */
  min_requests: z.number().int().min(1).default(20),
  /** Mirrored rows compared before the agreement gate is judged. */
  min_comparisons: z.number().int().min(1).default(20),
});

/** Mirroring of requests between canary and stable, to compare their outputs on the same inputs. */
export const mirrorSchema = z.strictObject({
  /** Share of the `from` version's requests copied to the other version (0 = no mirroring). */
  share: z.number().min(0).max(1).default(1),
  /** `canary`: the canary's requests are replayed on stable; `stable`: stable's on the canary. */
  from: z.enum(['canary', 'stable']).default('canary'),
  /** Mirrored requests in flight at most; beyond it they are dropped, never queued. */
  max_in_flight: z.number().int().min(1).max(256).default(4),
});

export const canarySpecSchema = z.strictObject({
  version: versionName,
  /** The version the canary is measured against; default: the model's default version when it starts. */
  stable: versionName.optional(),
  /** Canary traffic percentages, ascending; the version is promoted after the last one holds. */
  steps: z
    .array(z.number().min(0.01).max(100))
    .min(1)
    .default([5, 25, 50, 100])
    .refine((steps) => steps.every((step, i) => i === 0 || step > steps[i - 1]!), { message: 'steps must be ascending' }),
  /** How long each step must hold its gates. */
  hold: duration.default(60_000),
  gates: gatesSchema.default(gatesSchema.parse({})),
  mirror: mirrorSchema.default(mirrorSchema.parse({})),
});

export const shadowSpecSchema = z.strictObject({
  version: versionName,
  /** Share of live requests (whatever version serves them) replayed on the shadow version. */
  share: z.number().min(0).max(1).default(0.1),
  /** Shadow requests in flight at most; beyond it they are dropped, never queued. */
  max_in_flight: z.number().int().min(1).max(256).default(4),
  /** A shadow request still queued after this is dropped (DEADLINE_EXCEEDED, counted as an error). */
  timeout_ms: z.number().int().min(1).default(10_000),
  /** Output compared; default the first output. */
  output: z.string().min(1).optional(),
});

export const circuitBreakerSchema = z.strictObject({
  /** Consecutive failures (server errors, timeouts) that open the breaker. */
  failure_threshold: z.number().int().min(1).default(5),
  /** A request slower than this counts as a failure (a timeout); unset = only errors count. */
  timeout_ms: z.number().min(1).optional(),
  /** How long the breaker stays open before a probe may try the version again. */
  cooldown: duration.default(30_000),
  /** Requests let through at once while half-open. */
  half_open_probes: z.number().int().min(1).default(1),
});

/** Where requests go while a version's breaker is open: another version (or alias) and/or another model. */
export const fallbackSchema = z
  .strictObject({ version: versionOrAlias.optional(), model: z.string().min(1).max(256).optional() })
  .refine((fallback) => fallback.version !== undefined || fallback.model !== undefined, { message: 'a fallback names a version, a model, or both' });

export const routingConfigSchema = z.strictObject({
  /** Version (or alias) serving requests that name none and fall in no split. */
  default_version: versionOrAlias.optional(),
  /** Weighted split of requests that name no version. */
  split: splitSchema.optional(),
  /** Hash this key to pick the version, so a caller always hits the same one. */
  sticky_key: stickyKey.optional(),
  /** Header naming a version or alias to serve a request (testing); `false` turns it off. */
  override_header: z.union([headerName, z.literal(false)]).default('x-model-version'),
  /** Request parameter doing the same; `false` turns it off. */
  override_parameter: z.union([z.string().min(1).max(128), z.literal(false)]).default('model_version'),
  /** Named versions (blue-green): `{stable: 1, candidate: 2}`. */
  aliases: z.record(aliasName, versionName).default({}),
  shadow: shadowSpecSchema.optional(),
  /** A canary started when the server starts (unless the state file already records one for this version). */
  canary: canarySpecSchema.optional(),
  circuit_breaker: circuitBreakerSchema.optional(),
  fallback: fallbackSchema.optional(),
});

export type RoutingConfig = z.output<typeof routingConfigSchema>;
export type RoutingConfigInput = z.input<typeof routingConfigSchema>;
export type CanarySpec = z.output<typeof canarySpecSchema>;
export type CanarySpecInput = z.input<typeof canarySpecSchema>;
export type ShadowSpec = z.output<typeof shadowSpecSchema>;
export type GateConfig = z.output<typeof gatesSchema>;
export type MirrorConfig = z.output<typeof mirrorSchema>;
export type CircuitBreakerConfig = z.output<typeof circuitBreakerSchema>;
export type FallbackConfig = z.output<typeof fallbackSchema>;
export type Split = Readonly<Record<string, number>>;

/** The routing of a model without a `routing:` section. */
export const DEFAULT_ROUTING: RoutingConfig = routingConfigSchema.parse({});

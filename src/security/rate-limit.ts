import { TesseraError } from '../core/errors.js';
import type { Principal } from './principal.js';

/**
 * Rate limits and query budgets, per principal (its key or token; its address when anonymous),
 * kept in memory by this process (replicas each keep their own).
 *
 * - Rate: a token bucket per principal holding `rate` tokens and refilling `rate` per window:
 *   a burst of up to `rate` requests passes, then one more per window/rate. Every request that
 *   is not a health check takes a token.
 * - Per-model quota: a second bucket per (principal, model) for inference requests on a model
 *   with a quota.
 * - Query budget: inference requests per principal per period (fixed windows starting at its
 *   first request), against scraping a model to extract it.
 *
 * A request is admitted only when every applicable check passes, and only then is anything
 * taken, so a refused request costs the caller nothing. Refusals are RATE_LIMITED or
 * QUERY_BUDGET_EXHAUSTED (429 + Retry-After; gRPC RESOURCE_EXHAUSTED + retry-after metadata).
 */

export interface RateLimitOptions {
  /** Requests per window per principal; 0 = no overall limit (keys may still set their own). */
  readonly requests: number;
  readonly windowSeconds: number;
  /** Inference requests per window per principal on each listed model. */
  readonly perModel: ReadonlyMap<string, number>;
}

export interface QueryBudgetOptions {
  /** Inference requests per principal per period; 0 = none (keys may still set their own). */
  readonly requests: number;
  readonly periodSeconds: number;
}

/** Buckets kept at most; beyond it, full (idle) buckets are dropped first, then the oldest. */
const MAX_TRACKED = 100_000;

interface Bucket {
  tokens: number;
  updatedMs: number;
  capacity: number;
}

/** The share of the tracking limit an eviction leaves (the rest is room for new keys until the next). */
const EVICT_TO = 0.9;

/** Token buckets by key, each with a capacity and a refill period. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly windowMs: number,
    private readonly maxTracked = MAX_TRACKED,
  ) {}

  /** Keys tracked now. */
  get size(): number {
    return this.buckets.size;
  }

  /** Milliseconds until `key` has a token (0: it has one now). */
  waitMs(key: string, capacity: number, now: number): number {
    const tokens = this.refilled(key, capacity, now);
    if (tokens >= 1) return 0;
    return Math.ceil(((1 - tokens) * this.windowMs) / capacity);
  }

  take(key: string, capacity: number, now: number): void {
    const tokens = this.refilled(key, capacity, now);
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: tokens - 1, updatedMs: now, capacity });
    if (this.buckets.size > this.maxTracked) this.evict(now);
  }

  private refilled(key: string, capacity: number, now: number): number {
    const bucket = this.buckets.get(key);
    if (bucket === undefined) return capacity;
    return Math.min(capacity, bucket.tokens + ((now - bucket.updatedMs) * capacity) / this.windowMs);
  }

  /**
   * Over the limit: drop the buckets that are full again (they hold nothing a new one would
   * not), then the least recently used (Map order is insertion order; take() re-inserts), down
   * to {@link EVICT_TO} of the limit, so that the next scan is thousands of new keys away and a
   * stream of new clients costs O(1) each, not a scan of every bucket each.
   */
  private evict(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.updatedMs) * bucket.capacity) / this.windowMs >= bucket.capacity) this.buckets.delete(key);
    }
    const keep = Math.floor(this.maxTracked * EVICT_TO);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= keep) break;
      this.buckets.delete(key);
    }
  }
}

interface BudgetWindow {
  startMs: number;
  used: number;
}

/** Fixed-window counters by key. */
export class QueryBudgets {
  private readonly windows = new Map<string, BudgetWindow>();

  constructor(
    private readonly periodMs: number,
    private readonly maxTracked = MAX_TRACKED,
  ) {}

  /** Milliseconds until `key` may run another request under `budget` (0: now). */
  waitMs(key: string, budget: number, now: number): number {
    const window = this.current(key, now);
    if (window === undefined || window.used < budget) return 0;
    return window.startMs + this.periodMs - now;
  }

  take(key: string, now: number): void {
    const window = this.current(key, now);
    if (window !== undefined) {
      window.used++;
      return;
    }
    this.windows.set(key, { startMs: now, used: 1 });
    if (this.windows.size > this.maxTracked) {
      // As TokenBuckets.evict: expired windows, then the oldest, down to EVICT_TO of the limit.
      for (const [k, w] of this.windows) if (now - w.startMs >= this.periodMs) this.windows.delete(k);
      const keep = Math.floor(this.maxTracked * EVICT_TO);
      for (const k of this.windows.keys()) {
        if (this.windows.size <= keep) break;
        this.windows.delete(k);
      }
    }
  }

  /** What `key` has used this period, and when the period renews. */
  usage(key: string, now: number): { used: number; renewsInMs: number } {
    const window = this.current(key, now);
    return window === undefined ? { used: 0, renewsInMs: this.periodMs } : { used: window.used, renewsInMs: window.startMs + this.periodMs - now };
  }

  private current(key: string, now: number): BudgetWindow | undefined {
    const window = this.windows.get(key);
    if (window === undefined) return undefined;
    if (now - window.startMs >= this.periodMs) {
      this.windows.delete(key);
      return undefined;
    }
    return window;
  }
}

/** What one request asks of the meter. */
export interface Metered {
  readonly principal: Principal;
  /** The model an inference request runs, if any. */
  readonly model: string | undefined;
  /** True for inference requests: they count against model quotas and the budget. */
  readonly inference: boolean;
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** Rate limits, model quotas and query budgets together. */
export class RequestMeter {
  private readonly rates: TokenBuckets;
  private readonly budgets: QueryBudgets;

  constructor(
    private readonly rate: RateLimitOptions,
    private readonly budget: QueryBudgetOptions,
  ) {
    this.rates = new TokenBuckets(rate.windowSeconds * 1000);
    this.budgets = new QueryBudgets(budget.periodSeconds * 1000);
  }

  /** True when something could be limited (the server's settings; keys may add their own). */
  static configured(rate: RateLimitOptions, budget: QueryBudgetOptions): boolean {
    return rate.requests > 0 || rate.perModel.size > 0 || budget.requests > 0;
  }

  /** Admit one request or throw RATE_LIMITED / QUERY_BUDGET_EXHAUSTED; takes tokens only when admitted. */
  admit(request: Metered, now = Date.now()): void {
    const { principal } = request;
    const rate = principal.rateLimit ?? this.rate.requests;
    const quota = request.inference && request.model !== undefined ? this.rate.perModel.get(request.model) : undefined;
    const budget = request.inference ? (principal.queryBudget ?? this.budget.requests) : 0;
    const rateKey = principal.id;
    const quotaKey = `${principal.id}\u0000${request.model ?? ''}`;
    if (rate > 0) {
      const wait = this.rates.waitMs(rateKey, rate, now);
      if (wait > 0) {
        throw new TesseraError('RATE_LIMITED', `${principal.label} exceeded its rate of ${rate} requests per ${this.rate.windowSeconds} s; retry in ${seconds(wait)} s`, {
          retryAfterSeconds: seconds(wait),
        });
      }
    }
    if (quota !== undefined) {
      const wait = this.rates.waitMs(quotaKey, quota, now);
      if (wait > 0) {
        throw new TesseraError(
          'RATE_LIMITED',
          `${principal.label} exceeded its quota of ${quota} requests per ${this.rate.windowSeconds} s on model '${request.model}'; retry in ${seconds(wait)} s`,
          { retryAfterSeconds: seconds(wait) },
        );
      }
    }
    if (budget > 0) {
      const wait = this.budgets.waitMs(principal.id, budget, now);
      if (wait > 0) {
        throw new TesseraError(
          'QUERY_BUDGET_EXHAUSTED',
          `${principal.label} used its budget of ${budget} inference requests per ${this.budget.periodSeconds} s; it renews in ${seconds(wait)} s`,
          { retryAfterSeconds: seconds(wait) },
        );
      }
    }
    if (rate > 0) this.rates.take(rateKey, rate, now);
    if (quota !== undefined) this.rates.take(quotaKey, quota, now);
    if (budget > 0) this.budgets.take(principal.id, now);
  }
}

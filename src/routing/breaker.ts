import type { CircuitBreakerConfig } from './config.js';
import type { Clock } from './clock.js';

export type CircuitState = 'closed' | 'open' | 'half_open';

/** Numeric value of a state for the `tessera_circuit_state` gauge. */
export const CIRCUIT_STATE_VALUE: Readonly<Record<CircuitState, number>> = { closed: 0, open: 1, half_open: 2 };

/** What a request may do: go ahead, go ahead as the half-open probe, or not go. */
export type CircuitPermit = 'allow' | 'probe' | 'reject';

export interface CircuitSnapshot {
  readonly state: CircuitState;
  readonly consecutiveFailures: number;
  readonly failureThreshold: number;
  readonly cooldownMs: number;
  /** When it last opened (ISO time), if it ever did. */
  readonly openedAt: string | null;
  /** Milliseconds until a probe may try again (open only). */
  readonly retryInMs: number;
  readonly lastFailure: string | null;
  /** Transitions into each state since start. */
  readonly transitions: Readonly<Record<CircuitState, number>>;
  /** Requests refused (sent to the fallback or answered 503) while open or half-open. */
  readonly rejected: number;
}

/**
 * A circuit breaker for one model version: `failure_threshold` consecutive failures (server
 * errors, or calls slower than `timeout_ms`) open it; while open every request is refused
 * (the router sends it to the fallback or answers 503); after `cooldown` it is half-open and
 * lets `half_open_probes` requests through: a probe's success closes it, its failure opens it
 * again for another cool-down. Results of requests admitted before it opened do not move it.
 */
export class CircuitBreaker {
  private current: CircuitState = 'closed';
  private failures = 0;
  private openedAtMs: number | undefined;
  private probesInFlight = 0;
  private lastFailureReason: string | undefined;
  private rejectedCount = 0;
  private readonly counts: Record<CircuitState, number> = { closed: 0, open: 0, half_open: 0 };

  constructor(
    readonly config: CircuitBreakerConfig,
    private readonly clock: Clock,
    /** Called on every state change. */
    private readonly onChange: (from: CircuitState, to: CircuitState, reason: string) => void = () => undefined,
  ) {}

  get state(): CircuitState {
    this.tick();
    return this.current;
  }

  /** Whether a request may go to the version now. A `probe` permit must be settled with {@link settle}. */
  acquire(): CircuitPermit {
    this.tick();
    if (this.current === 'closed') return 'allow';
    if (this.current === 'half_open' && this.probesInFlight < this.config.half_open_probes) {
      this.probesInFlight++;
      return 'probe';
    }
    this.rejectedCount++;
    return 'reject';
  }

  /** The outcome of a request admitted with `permit`. `failure` is its reason, undefined on success. */
  settle(permit: CircuitPermit, failure: string | undefined): void {
    if (permit === 'reject') return;
    if (permit === 'probe') {
      this.probesInFlight = Math.max(0, this.probesInFlight - 1);
      if (this.current !== 'half_open') return;
      if (failure === undefined) this.transition('closed', 'the half-open probe succeeded');
      else {
        this.lastFailureReason = failure;
        this.transition('open', `the half-open probe failed: ${failure}`);
      }
      return;
    }
    if (this.current !== 'closed') return;
    if (failure === undefined) {
      this.failures = 0;
      return;
    }
    this.failures++;
    this.lastFailureReason = failure;
    if (this.failures >= this.config.failure_threshold) this.transition('open', `${this.failures} consecutive failures, the last: ${failure}`);
  }

  /** A request admitted with `permit` ended neither well nor badly (the caller's mistake, overload): a probe slot is freed, nothing moves. */
  release(permit: CircuitPermit): void {
    if (permit === 'probe') this.probesInFlight = Math.max(0, this.probesInFlight - 1);
  }

  /** Close it now (operator reset). */
  reset(): void {
    if (this.current !== 'closed') this.transition('closed', 'reset by the operator');
    this.failures = 0;
  }

  /** Milliseconds until a probe may go (0 unless open). */
  retryInMs(): number {
    this.tick();
    if (this.current !== 'open' || this.openedAtMs === undefined) return 0;
    return Math.max(0, this.openedAtMs + this.config.cooldown - this.clock.now());
  }

  snapshot(): CircuitSnapshot {
    this.tick();
    return {
      state: this.current,
      consecutiveFailures: this.failures,
      failureThreshold: this.config.failure_threshold,
      cooldownMs: this.config.cooldown,
      openedAt: this.openedAtMs === undefined ? null : new Date(this.openedAtMs).toISOString(),
      retryInMs: this.retryInMs(),
      lastFailure: this.lastFailureReason ?? null,
      transitions: { ...this.counts },
      rejected: this.rejectedCount,
    };
  }

  /** Open -> half-open once the cool-down has passed (checked lazily; no timer). */
  private tick(): void {
    if (this.current === 'open' && this.openedAtMs !== undefined && this.clock.now() - this.openedAtMs >= this.config.cooldown) {
      this.transition('half_open', `cool-down of ${this.config.cooldown} ms passed`);
    }
  }

  private transition(to: CircuitState, reason: string): void {
    const from = this.current;
    this.current = to;
    this.counts[to]++;
    if (to === 'open') this.openedAtMs = this.clock.now();
    if (to === 'half_open') this.probesInFlight = 0;
    if (to === 'closed') this.failures = 0;
    this.onChange(from, to, reason);
  }
}

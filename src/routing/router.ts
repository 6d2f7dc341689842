import { channel } from 'node:diagnostics_channel';
import { TesseraError, toTesseraError } from '../core/errors.js';
import type { InferenceRequest, InferenceResponse } from '../core/inference.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { EngineRouting, InferDispatch, InferInterceptor, InferTarget } from '../engine/engine.js';
import { CircuitBreaker, type CircuitPermit, type CircuitSnapshot, type CircuitState } from './breaker.js';
import { CanaryController, type CanaryDecision, type CanaryRecord, type CanaryStatus } from './canary.js';
import { systemClock, type Clock } from './clock.js';
import { compareTensors, copyInputs, pickOutput } from './compare.js';
import {
  DEFAULT_ROUTING,
  aliasName,
  canarySpecSchema,
  shadowSpecSchema,
  splitSchema,
  type CanarySpecInput,
  type CircuitBreakerConfig,
  type MirrorConfig,
  type RoutingConfig,
  type ShadowSpec,
  type Split,
} from './config.js';
import { MirrorLane, type MirrorSnapshot } from './mirror.js';
import { decideRoute, resolveName, type RouteReason, type RouteTable } from './policy.js';
import { STATE_FORMAT, type PersistedModelState, type PersistedState, type RoutingStateStore } from './store.js';
import type { ComparisonResult } from './window.js';

/** What the router needs of the engine (the Engine satisfies it; tests may fake it). */
export interface RoutingEngine {
  /** READY versions (ascending) and the engine's default version; undefined for an unknown model. */
  servingVersions(model: string): { readonly ready: readonly string[]; readonly defaultVersion: string | undefined } | undefined;
  /** Every version the model has, in any state (absent: only READY ones are known). */
  versionsOf?(model: string): readonly string[];
  /** Pin the engine's default version (validates that it is READY). */
  setDefaultVersion(model: string, version: string | undefined): void;
  /**
   * Called before a request is dispatched when it will be replayed on another version (shadow,
   * canary mirror): a function that takes each replay request the router builds, for requests
   * whose inputs are more than their tensors (the engine's handler requests, whose tensors the
   * serving version's handler makes); undefined when copies of the input tensors are enough.
   */
  prepareReplay?(request: InferenceRequest): ((replay: InferenceRequest) => void) | undefined;
}

/** What replays of a request are made of, taken before it is dispatched. */
interface Replica {
  /** Copies of the input tensors: once the request is scheduled its buffers may be moved to a worker. */
  readonly inputs: InferenceRequest['inputs'];
  /** The engine's hook for each replay request (see RoutingEngine.prepareReplay). */
  readonly adopt: ((replay: InferenceRequest) => void) | undefined;
}

export interface RouterOptions {
  readonly engine: RoutingEngine;
  /** The `routing:` section of a model's config, if it has one (read per request: must be cheap). */
  readonly configOf: (model: string) => RoutingConfig | undefined;
  /** Names of the models the engine knows (for config canaries at start). */
  readonly models: () => readonly string[];
  readonly store?: RoutingStateStore;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Uniform in [0, 1): splits, canary shares and shadow sampling. */
  readonly random?: () => number;
}

/** A routing change or rollout decision: logged, counted (`tessera_rollout_decisions_total`), published, kept in the status. */
export interface RoutingEvent {
  readonly at: string;
  readonly model: string;
  readonly version: string;
  /** A canary decision (start, step, wait, promote, rollback, abort, resume) or a change: split, default, alias, shadow, circuit. */
  readonly decision: string;
  readonly reason: string;
}

/** Diagnostics channel every routing event is published on. */
export const routingEventChannel = channel('tessera:routing:event');

export interface ShadowStatus extends MirrorSnapshot {
  readonly version: string;
  readonly share: number;
  readonly timeoutMs: number;
}

export interface RolloutStatus {
  readonly model: string;
  readonly readyVersions: readonly string[];
  /** The routing's default (a version or alias) if one is set, and the version it serves. */
  readonly defaultVersion: string | null;
  readonly servingDefault: string | null;
  readonly split: Split | null;
  readonly stickyKey: { readonly source: string; readonly name: string } | null;
  readonly override: { readonly header: string | null; readonly parameter: string | null };
  readonly aliases: Readonly<Record<string, string>>;
  readonly canary: CanaryStatus | null;
  readonly canaryMirror: MirrorSnapshot | null;
  readonly shadow: ShadowStatus | null;
  readonly circuitBreakers: readonly (CircuitSnapshot & { readonly version: string })[];
  readonly fallback: { readonly model: string | null; readonly version: string | null } | null;
  /** Requests routed since start, by version and reason. */
  readonly traffic: readonly { readonly version: string; readonly reason: string; readonly requests: number }[];
  readonly events: readonly RoutingEvent[];
}

/** Series the metrics module reads at scrape time. */
export interface RoutingMetricsSnapshot {
  readonly traffic: readonly { model: string; version: string; reason: string; count: number }[];
  readonly fallbacks: readonly { model: string; version: string; target: string; count: number }[];
  readonly decisions: readonly { model: string; version: string; decision: string; count: number }[];
  readonly canaries: readonly { model: string; version: string; stable: string; phase: string; share: number; step: number; canaryErrorRate: number; stableErrorRate: number; p99Ratio: number | null; agreement: number | null }[];
  readonly circuits: readonly { model: string; version: string; state: CircuitState; transitions: Readonly<Record<CircuitState, number>>; rejected: number }[];
  readonly shadows: readonly { model: string; version: string; lane: MirrorLane }[];
}

const EVENT_LIMIT = 100;

/**
 * Outcome of a request for the breaker and the canary: ok, a failure of the version (with why;
 * `slow` when it answered but over the breaker's timeout_ms), or neither (the caller's mistake).
 */
type Outcome = { readonly kind: 'ok' } | { readonly kind: 'failure'; readonly reason: string; readonly slow?: boolean } | { readonly kind: 'neutral' };

/**
 * A server-side failure of the version: internal errors, timeouts, the version unavailable.
 * Client errors and overload are not, nor a timeout the caller set itself (`callerTimeout`):
 * one impatient caller must not open the breaker for everyone.
 */
function outcomeOf(error: unknown, callerTimeout = false): Outcome {
  const failure = toTesseraError(error);
  if (failure.code === 'DEADLINE_EXCEEDED' && callerTimeout) return { kind: 'neutral' };
  if (failure.category === 'internal' || failure.code === 'DEADLINE_EXCEEDED' || failure.code === 'MODEL_UNAVAILABLE') {
    return { kind: 'failure', reason: `${failure.code}: ${failure.message}` };
  }
  return { kind: 'neutral' };
}

/**
 * Routing of one model: its config, what operators changed at run time (persisted), and the
 * live machinery (canary controller, shadow lane, circuit breakers, counters).
 */
class ModelRoutes {
  configSource: RoutingConfig | undefined;
  config: RoutingConfig = DEFAULT_ROUTING;
  aliases = new Map<string, string>();
  split: Split | undefined;
  defaultVersion: string | undefined;
  shadowSpec: ShadowSpec | undefined;
  shadow: MirrorLane | undefined;
  canary: CanaryController | undefined;
  canaryMirror: MirrorLane | undefined;
  readonly breakers = new Map<string, CircuitBreaker>();
  readonly traffic = new Map<string, number>();
  readonly fallbacks = new Map<string, number>();
  readonly decisions = new Map<string, number>();
  readonly events: RoutingEvent[] = [];

  constructor(
    readonly name: string,
    public persisted: PersistedModelState,
  ) {}

  /** Recompute the effective settings from the config and the run-time changes. */
  rebuild(): void {
    const config = this.config;
    const aliases = new Map(Object.entries(config.aliases));
    for (const [alias, version] of Object.entries(this.persisted.aliases ?? {})) {
      if (version === null) aliases.delete(alias);
      else aliases.set(alias, version);
    }
    this.aliases = aliases;
    this.split = this.persisted.split !== undefined ? (this.persisted.split ?? undefined) : config.split;
    this.defaultVersion = this.persisted.defaultVersion !== undefined ? (this.persisted.defaultVersion ?? undefined) : config.default_version;
    const shadow = this.persisted.shadow !== undefined ? (this.persisted.shadow ?? undefined) : config.shadow;
    this.shadowSpec = shadow;
    if (shadow === undefined) this.shadow = undefined;
    else if (this.shadow === undefined || this.shadow.target !== shadow.version) this.shadow = new MirrorLane(shadow.version, shadow.max_in_flight);
    else this.shadow.maxInFlight = shadow.max_in_flight;
    if (config.circuit_breaker === undefined) this.breakers.clear();
  }

  count(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
}

/**
 * Safe rollouts (docs/rollouts.md): routes a model's requests to versions by policy (default,
 * weighted split, sticky keys, override header, aliases), runs canaries with automatic
 * promotion and rollback, mirrors shadow traffic, and breaks circuits with fallbacks. It sits
 * in the engine's request path as an interceptor (after undici's): decisions are pure
 * (./policy.ts, ./canary.ts, ./breaker.ts); this class wires them to the engine's dispatch,
 * keeps the counters, and persists what operators change.
 */
export class Router implements EngineRouting {
  private readonly models = new Map<string, ModelRoutes>();
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private state: PersistedState = { format: STATE_FORMAT, models: {} };
  /** Set while the router itself pins the engine's default (so the change hook ignores it). */
  private syncingDefault = false;
  private closed = false;
  private readonly replays = new Set<Promise<void>>();

  private constructor(private readonly options: RouterOptions) {
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
  }

  /** Load the persisted state, resume canaries, start config canaries, pin default versions. */
  static async create(options: RouterOptions): Promise<Router> {
    const router = new Router(options);
    router.state = (await options.store?.load()) ?? { format: STATE_FORMAT, models: {} };
    const names = new Set([...Object.keys(router.state.models), ...options.models()]);
    for (const name of names) router.routesFor(name);
    return router;
  }

  /** The interceptor the engine installs: routes each request, then dispatches it. */
  readonly interceptor: InferInterceptor = (next) => (request, target, chose) => this.route(next, request, target, chose);

  resolveAlias(model: string, name: string): string | undefined {
    return this.routesFor(model)?.aliases.get(name);
  }

  describeModel(model: string): unknown {
    const routes = this.routesFor(model);
    if (routes === undefined) return undefined;
    const canary = routes.canary?.record;
    return {
      defaultVersion: routes.defaultVersion ?? null,
      split: routes.split ?? null,
      aliases: Object.fromEntries(routes.aliases),
      canary: canary === undefined ? null : { version: canary.version, stable: canary.stable, phase: canary.phase, share: canary.share },
      shadow: routes.shadowSpec === undefined ? null : { version: routes.shadowSpec.version, share: routes.shadowSpec.share },
    };
  }

  describeVersion(model: string, version: string): unknown {
    const breaker = this.routesFor(model)?.breakers.get(version);
    return breaker === undefined ? undefined : { circuitBreaker: breaker.snapshot() };
  }

  /** The engine's default changed through the management API's set-default: keep it. */
  defaultVersionChanged(model: string, version: string | undefined): void {
    if (this.syncingDefault) return;
    const routes = this.routesFor(model);
    if (routes === undefined) return;
    routes.persisted.defaultVersion = version ?? null;
    routes.rebuild();
    this.event(routes, version ?? 'latest', 'default', `default version set to ${version ?? 'the highest ready version'}`);
    this.persist(routes);
  }

  // ---------------------------------------------------------------------------------------
  // Run-time changes (management API, CLI)
  // ---------------------------------------------------------------------------------------

  status(model: string): RolloutStatus {
    const routes = this.require(model);
    const serving = this.options.engine.servingVersions(model);
    const shadow = routes.shadowSpec;
    const fallback = routes.config.fallback;
    return {
      model,
      readyVersions: serving?.ready ?? [],
      defaultVersion: routes.defaultVersion ?? null,
      servingDefault: this.servingDefault(routes) ?? null,
      split: routes.split ?? null,
      stickyKey: routes.config.sticky_key ?? null,
      override: {
        header: routes.config.override_header === false ? null : routes.config.override_header,
        parameter: routes.config.override_parameter === false ? null : routes.config.override_parameter,
      },
      aliases: Object.fromEntries(routes.aliases),
      canary: routes.canary?.status() ?? null,
      canaryMirror: routes.canary?.running === true ? (routes.canaryMirror?.snapshot() ?? null) : null,
      shadow:
        shadow === undefined || routes.shadow === undefined
          ? null
          : { version: shadow.version, share: shadow.share, timeoutMs: shadow.timeout_ms, ...routes.shadow.snapshot() },
      circuitBreakers: [...routes.breakers]
        .sort(([a], [b]) => Number(a) - Number(b))
        .map(([version, breaker]) => ({ version, ...breaker.snapshot() })),
      fallback: fallback === undefined ? null : { model: fallback.model ?? null, version: fallback.version ?? null },
      traffic: [...routes.traffic].map(([key, requests]) => {
        const [version, reason] = key.split('\u0000') as [string, string];
        return { version, reason, requests };
      }),
      events: routes.events,
    };
  }

  /** Set the weighted split (null: clear it, back to the default version). */
  setSplit(model: string, split: unknown): RolloutStatus {
    return this.setTraffic(model, { split });
  }

  /** Set the routing's default version or alias (null: back to the engine's highest READY). */
  setDefault(model: string, version: string | null): RolloutStatus {
    return this.setTraffic(model, { defaultVersion: version });
  }

  /**
   * Set the default version (or alias; null: the highest READY) and/or the weighted split
   * (null: clear it). Both are checked before either is applied: a refused change changes nothing.
   */
  setTraffic(model: string, change: { readonly defaultVersion?: string | null; readonly split?: unknown }): RolloutStatus {
    const routes = this.require(model);
    const changesSplit = 'split' in change;
    let split: Split | null = null;
    if (changesSplit) {
      if (routes.canary?.running === true) throw inProgress(model, routes.canary.record.version);
      if (change.split !== null) {
        const parsed = splitSchema.safeParse(change.split);
        if (!parsed.success) throw invalid(`invalid split: ${issues(parsed.error)}`);
        for (const [version, weight] of Object.entries(parsed.data)) if (weight > 0) this.requireReady(model, version);
        split = parsed.data;
      }
    }
    const version = change.defaultVersion;
    if (version !== undefined && version !== null) {
      if (!/^\d+$/.test(version) && !routes.aliases.has(version)) throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${model}' has no version or alias '${version}'`);
      this.requireReady(model, resolveName(routes, version));
    }
    if (version !== undefined) {
      routes.persisted.defaultVersion = version;
      routes.rebuild();
      this.syncDefault(routes, true);
      this.event(routes, version ?? 'latest', 'default', `default version set to ${version ?? 'the highest ready version'}`);
    }
    if (changesSplit) {
      routes.persisted.split = split;
      routes.rebuild();
      this.event(routes, '', 'split', split === null ? 'split cleared' : `split set to ${formatSplit(split)}`);
    }
    this.persist(routes);
    return this.status(model);
  }

  /** Point `alias` at `version` (atomically: the next request already follows it). */
  setAlias(model: string, alias: string, version: string): RolloutStatus {
    const routes = this.require(model);
    const name = aliasName.safeParse(alias);
    if (!name.success) throw invalid(`invalid alias '${alias}': ${issues(name.error)}`);
    if (!/^\d+$/.test(version)) throw invalid(`an alias points at a version number, got '${version}'`);
    this.requireReady(model, version);
    const previous = routes.aliases.get(alias);
    if (previous !== version) {
      routes.persisted.aliases = { ...routes.persisted.aliases, [alias]: version };
      if (previous !== undefined) {
        const history = [...(routes.persisted.aliasHistory?.[alias] ?? []), previous].slice(-20);
        routes.persisted.aliasHistory = { ...routes.persisted.aliasHistory, [alias]: history };
      }
      routes.rebuild();
      this.syncDefault(routes, false);
      this.event(routes, version, 'alias', `alias '${alias}' -> version ${version}${previous === undefined ? '' : ` (was ${previous})`}`);
      this.persist(routes);
    }
    return this.status(model);
  }

  /** Point `alias` back at the version it named before the last change. */
  rollbackAlias(model: string, alias: string): RolloutStatus {
    const routes = this.require(model);
    const history = routes.persisted.aliasHistory?.[alias] ?? [];
    const previous = history[history.length - 1];
    if (previous === undefined) throw new TesseraError('ROLLOUT_NOT_FOUND', `alias '${alias}' of model '${model}' has no earlier version to roll back to`);
    this.requireReady(model, previous);
    const current = routes.aliases.get(alias);
    routes.persisted.aliases = { ...routes.persisted.aliases, [alias]: previous };
    routes.persisted.aliasHistory = { ...routes.persisted.aliasHistory, [alias]: history.slice(0, -1) };
    routes.rebuild();
    this.syncDefault(routes, false);
    this.event(routes, previous, 'alias', `alias '${alias}' rolled back to version ${previous}${current === undefined ? '' : ` (was ${current})`}`);
    this.persist(routes);
    return this.status(model);
  }

  deleteAlias(model: string, alias: string): RolloutStatus {
    const routes = this.require(model);
    if (!routes.aliases.has(alias)) throw new TesseraError('ROLLOUT_NOT_FOUND', `model '${model}' has no alias '${alias}'`);
    if (routes.defaultVersion === alias) throw invalid(`alias '${alias}' is the default version of model '${model}'; set another default first`);
    routes.persisted.aliases = { ...routes.persisted.aliases, [alias]: null };
    routes.rebuild();
    this.event(routes, '', 'alias', `alias '${alias}' removed`);
    this.persist(routes);
    return this.status(model);
  }

  /** Start a canary (the body of POST /models/{m}/canary). */
  startCanary(model: string, input: CanarySpecInput | unknown): RolloutStatus {
    const routes = this.require(model);
    const parsed = canarySpecSchema.safeParse(input);
    if (!parsed.success) throw invalid(`invalid canary: ${issues(parsed.error)}`);
    if (routes.canary?.running === true) throw inProgress(model, routes.canary.record.version);
    const spec = parsed.data;
    this.requireReady(model, spec.version);
    const stable = spec.stable ?? this.servingDefault(routes);
    if (stable === undefined) throw new TesseraError('MODEL_UNAVAILABLE', `model '${model}' has no ready version to serve as the stable version`);
    this.requireReady(model, stable);
    if (stable === spec.version) throw invalid(`version ${spec.version} is already the stable (default) version of model '${model}'; name another version, or a different stable version`);
    routes.canary?.close();
    routes.canaryMirror = canaryMirrorLane(spec.mirror, stable, spec.version);
    routes.canary = CanaryController.start(model, spec, stable, this.clock, { onDecision: (decision, record) => this.onCanaryDecision(routes, decision, record) }, this.random);
    return this.status(model);
  }

  /** Abort a running canary: it rolls back to 0% at once. */
  abortCanary(model: string, reason = 'aborted by the operator'): RolloutStatus {
    const routes = this.require(model);
    if (routes.canary?.running !== true) throw new TesseraError('ROLLOUT_NOT_FOUND', `model '${model}' has no running canary`);
    routes.canary.abort(reason);
    return this.status(model);
  }

  /** Mirror a share of the model's traffic to a shadow version (null: stop). */
  setShadow(model: string, input: unknown): RolloutStatus {
    const routes = this.require(model);
    if (input === null) {
      if (routes.shadowSpec === undefined) throw new TesseraError('ROLLOUT_NOT_FOUND', `model '${model}' has no shadow`);
      routes.persisted.shadow = null;
      routes.rebuild();
      this.event(routes, '', 'shadow', 'shadow stopped');
    } else {
      const parsed = shadowSpecSchema.safeParse(input);
      if (!parsed.success) throw invalid(`invalid shadow: ${issues(parsed.error)}`);
      this.requireReady(model, parsed.data.version);
      routes.persisted.shadow = parsed.data;
      routes.rebuild();
      this.event(routes, parsed.data.version, 'shadow', `shadow: ${(parsed.data.share * 100).toFixed(1)}% of traffic mirrored to version ${parsed.data.version} (at most ${parsed.data.max_in_flight} in flight)`);
    }
    this.persist(routes);
    return this.status(model);
  }

  /** Close a version's circuit breaker now. */
  resetCircuit(model: string, version: string): RolloutStatus {
    const routes = this.require(model);
    const breaker = routes.breakers.get(version);
    if (breaker === undefined) throw new TesseraError('ROLLOUT_NOT_FOUND', `model '${model}' version ${version} has no circuit breaker`);
    breaker.reset();
    return this.status(model);
  }

  /** Counters and gauges for the metrics module. */
  metricsSnapshot(): RoutingMetricsSnapshot {
    const traffic: { model: string; version: string; reason: string; count: number }[] = [];
    const fallbacks: { model: string; version: string; target: string; count: number }[] = [];
    const decisions: { model: string; version: string; decision: string; count: number }[] = [];
    const canaries: RoutingMetricsSnapshot['canaries'][number][] = [];
    const circuits: RoutingMetricsSnapshot['circuits'][number][] = [];
    const shadows: { model: string; version: string; lane: MirrorLane }[] = [];
    for (const routes of this.models.values()) {
      const model = routes.name;
      for (const [key, count] of routes.traffic) {
        const [version, reason] = key.split('\u0000') as [string, string];
        traffic.push({ model, version, reason, count });
      }
      for (const [key, count] of routes.fallbacks) {
        const [version, target] = key.split('\u0000') as [string, string];
        fallbacks.push({ model, version, target, count });
      }
      for (const [key, count] of routes.decisions) {
        const [version, decision] = key.split('\u0000') as [string, string];
        decisions.push({ model, version, decision, count });
      }
      const canary = routes.canary;
      if (canary !== undefined) {
        const status = canary.status();
        canaries.push({
          model,
          version: status.version,
          stable: status.stable,
          phase: status.phase,
          share: canary.share,
          step: status.stepIndex + 1,
          canaryErrorRate: status.current?.canary.errorRate ?? 0,
          stableErrorRate: status.current?.stable.errorRate ?? 0,
          p99Ratio: status.current?.p99Ratio ?? null,
          agreement: status.current?.comparisons.agreement ?? null,
        });
      }
      for (const [version, breaker] of routes.breakers) {
        const snapshot = breaker.snapshot();
        circuits.push({ model, version, state: snapshot.state, transitions: snapshot.transitions, rejected: snapshot.rejected });
      }
      if (routes.shadow !== undefined) shadows.push({ model, version: routes.shadow.target, lane: routes.shadow });
    }
    return { traffic, fallbacks, decisions, canaries, circuits, shadows };
  }

  /** Stop canary timers, let replays in flight finish, write the state file. */
  async close(): Promise<void> {
    this.closed = true;
    for (const routes of this.models.values()) routes.canary?.close();
    await Promise.all([...this.replays]);
    await this.options.store?.flush();
  }

  // ---------------------------------------------------------------------------------------
  // The request path
  // ---------------------------------------------------------------------------------------

  private async route(next: InferDispatch, request: InferenceRequest, target: InferTarget, chose: (model: string, version: string) => void): Promise<InferenceResponse> {
    const routes = this.routesFor(target.model);
    const serving = routes === undefined ? undefined : this.options.engine.servingVersions(target.model);
    if (routes === undefined || serving === undefined) return next(request, target, chose);
    const key = stickyKeyOf(request, routes.config);
    const canary = routes.canary;
    if (canary?.running === true && !(serving.ready.includes(canary.record.version) && serving.ready.includes(canary.record.stable))) {
      const gone = serving.ready.includes(canary.record.version) ? canary.record.stable : canary.record.version;
      canary.abort(`version ${gone} is no longer ready`);
    }
    const table: RouteTable = {
      model: target.model,
      ready: serving.ready,
      aliases: routes.aliases,
      defaultVersion: routes.defaultVersion,
      split: routes.split,
      canary: canary?.running === true ? { version: canary.record.version, stable: canary.record.stable, share: canary.share } : undefined,
    };
    const decision = decideRoute(table, { explicit: target.version, override: overrideOf(request, routes.config), key, random: key === undefined ? this.random() : 0 });
    const version = decision.version ?? serving.defaultVersion;
    if (version === undefined) return next(request, target, chose);
    // A version the model does not have (any string a caller names) is the engine's to refuse;
    // it gets no traffic counter or breaker, whose number callers would otherwise set.
    if (!serving.ready.includes(version) && !(this.options.engine.versionsOf?.(target.model) ?? []).includes(version)) {
      return next(request, decision.version === target.version ? target : { model: target.model, version }, chose);
    }
    routes.count(routes.traffic, `${version}\u0000${decision.reason}`);

    const breaker = this.breakerFor(routes, version);
    let permit: CircuitPermit = 'allow';
    if (breaker !== undefined) {
      permit = breaker.acquire();
      if (permit === 'reject') return this.fallback(next, routes, request, target, chose, version, breaker);
    }
    // Replays copy the inputs now: once the primary is scheduled its buffers may be moved to a worker.
    const shadow = this.planShadow(routes, version, decision.reason);
    const mirror = this.planMirror(routes, version);
    const replica: Replica | undefined =
      shadow !== undefined || mirror !== undefined ? { inputs: copyInputs(request.inputs), adopt: this.options.engine.prepareReplay?.(request) } : undefined;

    const routed: InferTarget = decision.version === target.version ? target : { model: target.model, version };
    const started = performance.now();
    let response: InferenceResponse;
    try {
      response = await next(request, routed, chose);
    } catch (error) {
      const outcome = outcomeOf(error, request.timeoutMs !== undefined);
      this.settle(routes, breaker, permit, version, performance.now() - started, outcome);
      shadow?.cancel();
      mirror?.cancel();
      throw error;
    }
    const elapsed = performance.now() - started;
    const timeoutMs = routes.config.circuit_breaker?.timeout_ms;
    const slow = timeoutMs !== undefined && elapsed > timeoutMs;
    this.settle(routes, breaker, permit, version, elapsed, slow ? { kind: 'failure', reason: `took ${elapsed.toFixed(0)} ms, over timeout_ms ${timeoutMs}`, slow: true } : { kind: 'ok' });
    if (replica !== undefined) {
      // Each replay owns its buffers: a dispatched replay's are moved to a worker thread.
      const mirrorReplica = shadow !== undefined && mirror !== undefined ? { ...replica, inputs: copyInputs(replica.inputs) } : replica;
      if (shadow !== undefined) this.replayShadow(next, routes, shadow, request, response, replica);
      if (mirror !== undefined) this.replayMirror(next, routes, mirror, request, response, version, mirrorReplica);
    }
    return response;
  }

  private settle(routes: ModelRoutes, breaker: CircuitBreaker | undefined, permit: CircuitPermit, version: string, elapsedMs: number, outcome: Outcome): void {
    if (breaker !== undefined) {
      if (outcome.kind === 'neutral') breaker.release(permit);
      else breaker.settle(permit, outcome.kind === 'failure' ? outcome.reason : undefined);
    }
    // For the canary's gates a slow request is a latency, not an error: the p99 gate judges it.
    if (outcome.kind !== 'neutral') routes.canary?.observe(version, elapsedMs, outcome.kind === 'failure' && outcome.slow !== true);
  }

  private async fallback(
    next: InferDispatch,
    routes: ModelRoutes,
    request: InferenceRequest,
    target: InferTarget,
    chose: (model: string, version: string) => void,
    version: string,
    breaker: CircuitBreaker,
  ): Promise<InferenceResponse> {
    const snapshot = breaker.snapshot();
    const retryAfterSeconds = Math.max(1, Math.ceil(snapshot.retryInMs / 1000));
    const refuse = (why: string): TesseraError =>
      new TesseraError(
        'CIRCUIT_OPEN',
        `model '${routes.name}' version ${version}: the circuit breaker is ${snapshot.state.replace('_', '-')} after ${snapshot.failureThreshold} consecutive failures${snapshot.lastFailure === null ? '' : ` (last: ${snapshot.lastFailure})`}; ${why}`,
        { retryAfterSeconds },
      );
    const fallback = routes.config.fallback;
    if (fallback === undefined) throw refuse(`no fallback is configured; retry in ${retryAfterSeconds} s`);
    const model = fallback.model ?? routes.name;
    const fallbackRoutes = model === routes.name ? routes : this.routesFor(model);
    const serving = this.options.engine.servingVersions(model);
    const named = fallback.version === undefined ? undefined : (fallbackRoutes?.aliases.get(fallback.version) ?? fallback.version);
    const resolved = named ?? (fallbackRoutes === undefined ? serving?.defaultVersion : (this.servingDefault(fallbackRoutes) ?? serving?.defaultVersion));
    if (model === routes.name && resolved === version) throw refuse('the fallback is the same version');
    const fallbackBreaker = fallbackRoutes === undefined || resolved === undefined ? undefined : fallbackRoutes.breakers.get(resolved);
    if (fallbackBreaker !== undefined && fallbackBreaker.state !== 'closed') throw refuse(`the fallback ${model} version ${resolved} is open too`);
    routes.count(routes.fallbacks, `${version}\u0000${model === routes.name ? '' : `${model}:`}${resolved ?? 'default'}`);
    return next(request, { model, version: resolved }, chose);
  }

  private planShadow(routes: ModelRoutes, version: string, reason: RouteReason): MirrorLane | undefined {
    const spec = routes.shadowSpec;
    const lane = routes.shadow;
    if (spec === undefined || lane === undefined || this.closed) return undefined;
    // Requests that named the shadow version themselves are not replayed on it.
    if (version === spec.version || reason === 'url' || reason === 'override') return undefined;
    if (this.random() >= spec.share) return undefined;
    return lane.tryAcquire() ? lane : undefined;
  }

  private planMirror(routes: ModelRoutes, version: string): MirrorLane | undefined {
    const canary = routes.canary;
    const lane = routes.canaryMirror;
    if (canary === undefined || lane === undefined || this.closed) return undefined;
    const to = canary.mirrorTarget(version);
    if (to === undefined || this.random() >= canary.record.mirror.share) return undefined;
    if (lane.target !== to) return undefined;
    return lane.tryAcquire() ? lane : undefined;
  }

  /** Run the request again on the shadow version, after the caller has its answer; compare. */
  private replayShadow(next: InferDispatch, routes: ModelRoutes, lane: MirrorLane, request: InferenceRequest, response: InferenceResponse, replica: Replica): void {
    const spec = routes.shadowSpec;
    const outputName = spec?.output;
    this.replay(next, lane, replayRequest(request, routes.name, lane.target, replica, spec?.timeout_ms ?? 10_000, 'shadow'), (shadowResponse) => {
      const primary = pickOutput(response.outputs, outputName);
      const candidate = primary === undefined ? undefined : shadowResponse.outputs.find((output) => output.name === primary.name);
      const result = primary === undefined || candidate === undefined ? undefined : compareTensors(primary, candidate);
      if (result === undefined) lane.comparisons.requests++;
      else lane.comparisons.add(result);
    });
  }

  /** Run a canary's (or stable's) request on the other version; compare with the stable output as reference. */
  private replayMirror(next: InferDispatch, routes: ModelRoutes, lane: MirrorLane, request: InferenceRequest, response: InferenceResponse, served: string, replica: Replica): void {
    const canary = routes.canary;
    if (canary === undefined) return lane.cancel();
    const record = canary.record;
    this.replay(
      next,
      lane,
      replayRequest(request, routes.name, lane.target, replica, Math.max(1000, record.holdMs), 'mirror'),
      (mirrored, latencyMs) => {
        canary.observe(lane.target, latencyMs, false);
        const [reference, candidate] = served === record.version ? [mirrored, response] : [response, mirrored];
        const primary = pickOutput(reference.outputs, undefined);
        const other = primary === undefined ? undefined : candidate.outputs.find((output) => output.name === primary.name);
        const result: ComparisonResult | undefined = primary === undefined || other === undefined ? undefined : compareTensors(primary, other);
        if (result === undefined) lane.comparisons.requests++;
        else lane.comparisons.add(result);
        canary.addComparison(result);
      },
      (error, latencyMs) => {
        const outcome = outcomeOf(error);
        if (outcome.kind === 'failure') canary.observe(lane.target, latencyMs, true);
      },
    );
  }

  private replay(
    next: InferDispatch,
    lane: MirrorLane,
    request: InferenceRequest,
    onSuccess: (response: InferenceResponse, latencyMs: number) => void,
    onError?: (error: unknown, latencyMs: number) => void,
  ): void {
    // After the caller's answer is on its way: the replay's validation and queueing never delay it.
    const run = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const started = performance.now();
      try {
        const response = await next(request, request, () => undefined);
        const latencyMs = performance.now() - started;
        lane.settle(latencyMs, undefined);
        onSuccess(response, latencyMs);
      } catch (error) {
        const latencyMs = performance.now() - started;
        lane.settle(latencyMs, toTesseraError(error).code);
        onError?.(error, latencyMs);
      }
    });
    this.replays.add(run);
    void run.finally(() => this.replays.delete(run));
  }

  // ---------------------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------------------

  /** True when the model's routing falls back to another model (the engine then cannot refuse on its queues alone). */
  fallsBackToOtherModel(model: string): boolean {
    const fallback = this.routesFor(model)?.config.fallback;
    return fallback?.model !== undefined && fallback.model !== model;
  }

  /** The routes of a model the engine knows (or the state file remembers); undefined otherwise. */
  private routesFor(model: string): ModelRoutes | undefined {
    let routes = this.models.get(model);
    if (routes === undefined) {
      const persisted = this.state.models[model];
      if (persisted === undefined && this.options.engine.servingVersions(model) === undefined) return undefined;
      routes = new ModelRoutes(model, persisted ?? {});
      this.models.set(model, routes);
      routes.configSource = this.options.configOf(model);
      routes.config = routes.configSource ?? DEFAULT_ROUTING;
      routes.rebuild();
      this.restore(routes);
      return routes;
    }
    const config = this.options.configOf(model);
    if (config !== routes.configSource) {
      routes.configSource = config;
      routes.config = config ?? DEFAULT_ROUTING;
      routes.rebuild();
      this.startConfigCanary(routes);
      this.syncDefault(routes, false);
    }
    return routes;
  }

  /** A model's routes first seen: resume its persisted canary, start its config canary, pin its default. */
  private restore(routes: ModelRoutes): void {
    const record = routes.persisted.canary;
    if (record !== undefined) {
      routes.canaryMirror = canaryMirrorLane(record.mirror, record.stable, record.version);
      routes.canary = CanaryController.resume(record as CanaryRecord, this.clock, { onDecision: (decision, state) => this.onCanaryDecision(routes, decision, state) }, this.random);
    }
    this.startConfigCanary(routes);
    this.syncDefault(routes, false);
  }

  private startConfigCanary(routes: ModelRoutes): void {
    const spec = routes.config.canary;
    if (spec === undefined || this.closed) return;
    if (routes.persisted.configCanary?.version === spec.version || routes.canary?.running === true) return;
    try {
      this.startCanary(routes.name, spec);
      routes.persisted.configCanary = { version: spec.version };
      this.persist(routes);
    } catch (error) {
      this.logger.warn({ model: routes.name, version: spec.version, reason: toTesseraError(error).message }, 'the canary of the model config was not started');
    }
  }

  private onCanaryDecision(routes: ModelRoutes, decision: CanaryDecision, record: CanaryRecord): void {
    routes.persisted.canary = { ...record, steps: [...record.steps], history: [...record.history] };
    if (decision.decision === 'promote') {
      routes.persisted.defaultVersion = record.version;
      routes.persisted.split = null;
      routes.rebuild();
      this.syncDefault(routes, true);
    }
    if (decision.decision === 'step' || decision.decision === 'start') {
      const lane = routes.canaryMirror;
      if (lane !== undefined) lane.maxInFlight = record.mirror.max_in_flight;
    }
    this.event(routes, record.version, decision.decision, decision.reason, decision.decision === 'rollback' || decision.decision === 'abort' ? 'warn' : 'info', decision.share);
    this.persist(routes);
  }

  private breakerFor(routes: ModelRoutes, version: string): CircuitBreaker | undefined {
    const config = routes.config.circuit_breaker;
    if (config === undefined) return undefined;
    let breaker = routes.breakers.get(version);
    // Settings equal in value keep the breaker and its state (a poll re-reads the config into new objects).
    if (breaker === undefined || !sameBreakerSettings(breaker.config, config)) {
      breaker = new CircuitBreaker(config, this.clock, (from, to, reason) =>
        this.event(routes, version, `circuit_${to}`, `circuit breaker ${from.replace('_', '-')} -> ${to.replace('_', '-')}: ${reason}`, to === 'open' ? 'warn' : 'info'),
      );
      routes.breakers.set(version, breaker);
    }
    return breaker;
  }

  /** The version requests naming none are served by (routing default if READY, else the engine's). */
  private servingDefault(routes: ModelRoutes): string | undefined {
    const serving = this.options.engine.servingVersions(routes.name);
    if (routes.defaultVersion !== undefined) {
      const version = resolveName(routes, routes.defaultVersion);
      if (serving?.ready.includes(version) === true) return version;
    }
    return serving?.defaultVersion;
  }

  /** Pin the engine's default to the routing's, so describe and metadata agree with routing. */
  private syncDefault(routes: ModelRoutes, clear: boolean): void {
    const wanted = routes.defaultVersion === undefined ? undefined : resolveName(routes, routes.defaultVersion);
    if (wanted === undefined && !clear) return;
    const ready = this.options.engine.servingVersions(routes.name)?.ready ?? [];
    if (wanted !== undefined && !ready.includes(wanted)) return;
    this.syncingDefault = true;
    try {
      this.options.engine.setDefaultVersion(routes.name, wanted);
    } catch (error) {
      this.logger.warn({ model: routes.name, version: wanted, reason: toTesseraError(error).message }, 'could not pin the default version');
    } finally {
      this.syncingDefault = false;
    }
  }

  private persist(routes: ModelRoutes): void {
    routes.persisted.updatedAt = new Date(this.clock.now()).toISOString();
    this.state.models[routes.name] = routes.persisted;
    this.options.store?.save(this.state);
  }

  private event(routes: ModelRoutes, version: string, decision: string, reason: string, level: 'info' | 'warn' = 'info', share?: number): void {
    const event: RoutingEvent = { at: new Date(this.clock.now()).toISOString(), model: routes.name, version, decision, reason };
    routes.events.push(event);
    if (routes.events.length > EVENT_LIMIT) routes.events.splice(0, routes.events.length - EVENT_LIMIT);
    routes.count(routes.decisions, `${version}\u0000${decision}`);
    this.logger[level]({ model: routes.name, version, decision, ...(share === undefined ? {} : { share }), reason }, 'rollout decision');
    if (routingEventChannel.hasSubscribers) routingEventChannel.publish(event);
  }

  private require(model: string): ModelRoutes {
    const routes = this.routesFor(model);
    if (routes === undefined) throw new TesseraError('MODEL_NOT_FOUND', `model '${model}' is not in the repository`);
    return routes;
  }

  private requireReady(model: string, version: string): void {
    const ready = this.options.engine.servingVersions(model)?.ready ?? [];
    if (ready.includes(version)) return;
    const known = this.options.engine.versionsOf?.(model);
    if (known !== undefined && !known.includes(version)) {
      throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${model}' has no version ${version}; its versions are: ${known.join(', ') || 'none'}`);
    }
    throw new TesseraError('MODEL_UNAVAILABLE', `model '${model}' version ${version} is not ready; ready versions: ${ready.join(', ') || 'none'}`);
  }
}

/** Whether two circuit-breaker settings are the same in value. */
function sameBreakerSettings(a: CircuitBreakerConfig, b: CircuitBreakerConfig): boolean {
  return a === b || (a.failure_threshold === b.failure_threshold && a.timeout_ms === b.timeout_ms && a.cooldown === b.cooldown && a.half_open_probes === b.half_open_probes);
}

/**
 * The lane a canary's mirrored requests take: to the stable version when the canary's requests
 * are mirrored (`from: canary`), to the canary when the stable version's are (`from: stable`).
 */
function canaryMirrorLane(mirror: MirrorConfig, stable: string, canary: string): MirrorLane {
  return new MirrorLane(mirror.from === 'canary' ? stable : canary, mirror.max_in_flight);
}

/** The sticky key of a request: an explicit routing key, else the configured header or parameter. */
function stickyKeyOf(request: InferenceRequest, config: RoutingConfig): string | undefined {
  if (request.routingKey !== undefined && request.routingKey !== '') return request.routingKey;
  const sticky = config.sticky_key;
  if (sticky === undefined) return undefined;
  if (sticky.source === 'header') return request.callerHeader?.(sticky.name);
  const value = request.parameters?.[sticky.name];
  return value === undefined ? undefined : String(value);
}

/** The version a request asks for outside the URL: the explicit field, the override header, the override parameter. */
function overrideOf(request: InferenceRequest, config: RoutingConfig): string | undefined {
  if (request.versionOverride !== undefined && request.versionOverride !== '') return request.versionOverride;
  if (config.override_header !== false) {
    const header = request.callerHeader?.(config.override_header);
    if (header !== undefined && header !== '') return header;
  }
  if (config.override_parameter !== false) {
    const value = request.parameters?.[config.override_parameter];
    if (value !== undefined && value !== '') return String(value);
  }
  return undefined;
}

function replayRequest(request: InferenceRequest, model: string, version: string, replica: Replica, timeoutMs: number, protocol: string): InferenceRequest {
  const replay: InferenceRequest = {
    model,
    version,
    inputs: replica.inputs,
    ...(request.outputs === undefined ? {} : { outputs: request.outputs }),
    ...(request.parameters === undefined ? {} : { parameters: request.parameters }),
    timeoutMs,
    protocol,
  };
  replica.adopt?.(replay);
  return replay;
}

function formatSplit(split: Split): string {
  return Object.entries(split)
    .map(([version, weight]) => `${version}=${weight}`)
    .join(',');
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_PARAMETER', message);
}

function inProgress(model: string, version: string): TesseraError {
  return new TesseraError('ROLLOUT_IN_PROGRESS', `model '${model}' has a canary of version ${version} running; abort it first (DELETE /models/${model}/canary)`);
}

function issues(error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] }): string {
  return error.issues.map((issue) => (issue.path.length > 0 ? `${issue.path.map(String).join('.')}: ${issue.message}` : issue.message)).join('; ');
}

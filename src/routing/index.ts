import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { Engine } from '../engine/engine.js';
import type { Clock } from './clock.js';
import { Router } from './router.js';
import { RoutingStateStore } from './store.js';

/**
 * Safe rollouts: version routing (default, split, sticky keys, override, aliases), canaries
 * with automatic promotion and rollback, shadow traffic, circuit breakers with fallbacks, all
 * persisted across restarts. docs/rollouts.md.
 */
export { Router, routingEventChannel, type RolloutStatus, type RoutingEngine, type RoutingEvent, type RouterOptions, type ShadowStatus } from './router.js';
export { registerRoutingRoutes } from './management.js';
export { registerRoutingMetrics } from './metrics.js';
export { RoutingStateStore, type PersistedState } from './store.js';
export { ManualClock, systemClock, type Clock } from './clock.js';
export * from './config.js';
export { decideRoute, hashUnit, pickWeighted, type RouteDecision, type RouteInputs, type RouteReason, type RouteTable } from './policy.js';
export { CircuitBreaker, type CircuitSnapshot, type CircuitState } from './breaker.js';
export { CanaryController, judgeGates, latencyQuantile, quantileName, type CanaryDecision, type CanaryRecord, type CanaryStatus } from './canary.js';
export { compareTensors, copyInputs, isClassScores } from './compare.js';

/** Where the routing state is kept when the server config names no file. */
export const DEFAULT_STATE_FILE = '.tessera-routing.json';

export interface StartRoutingOptions {
  readonly engine: Engine;
  readonly repository: string;
  /** The state file; default `<repository>/.tessera-routing.json`. */
  readonly stateFile?: string | undefined;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** Create the router from the engine's models and the state file, and install it in the engine. */
export async function startRouting(options: StartRoutingOptions): Promise<Router> {
  const { engine } = options;
  const store = new RoutingStateStore(options.stateFile ?? join(options.repository, DEFAULT_STATE_FILE), options.logger);
  const router = await Router.create({
    engine,
    configOf: (model) => engine.modelConfigFile(model)?.routing,
    models: () => engine.describeModels().map((model) => model.name),
    store,
    logger: options.logger,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  engine.useRouting(router);
  return router;
}

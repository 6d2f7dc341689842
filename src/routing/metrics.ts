import { Counter, Gauge, type Registry } from 'prom-client';
import { SeriesHistogram } from '../observability/monitoring/metrics.js';
import { CIRCUIT_STATE_VALUE } from './breaker.js';
import { MIRROR_LATENCY_BUCKETS } from './mirror.js';
import type { Router } from './router.js';

/**
 * Add the routing metrics to the exporter's registry (`exporter.registry`); every value is read
 * from the router at scrape time, so the request path never touches prom-client:
 *  - tessera_routing_requests_total{model,version,reason}        counter: url, alias, override, canary, stable, split, default
 *  - tessera_routing_fallbacks_total{model,version,target}       counter: requests sent to the fallback while a breaker was open
 *  - tessera_rollout_decisions_total{model,version,decision}     counter: start, step, wait, promote, rollback, abort, resume, split, default, alias, shadow, circuit_*
 *  - tessera_rollout_canary_share{model,version}                 gauge, percent of traffic on the canary (0 once finished)
 *  - tessera_rollout_canary_step{model,version}                  gauge, 1-based step
 *  - tessera_rollout_canary_phase{model,version,phase}           gauge, 1 for the canary's phase
 *  - tessera_rollout_error_rate{model,version,role}              gauge, error rate of the current step's window (role canary | stable)
 *  - tessera_rollout_p99_ratio{model,version}                    gauge, canary p99 / stable p99 over the window
 *  - tessera_rollout_agreement_ratio{model,version}              gauge, top-1 agreement on mirrored requests over the window
 *  - tessera_circuit_state{model,version}                        gauge, 0 closed, 1 open, 2 half-open
 *  - tessera_circuit_transitions_total{model,version,state}      counter
 *  - tessera_circuit_rejected_total{model,version}               counter, requests refused while open
 *  - tessera_shadow_requests_total{model,version,outcome}        counter: success, error, dropped
 *  - tessera_shadow_agreement_ratio{model,version}               gauge, top-1 agreement with the served answers (classifiers)
 *  - tessera_shadow_mean_abs_diff{model,version}                 gauge, mean absolute difference from the served outputs
 *  - tessera_shadow_compared_rows_total{model,version}           counter, rows compared by top-1 class
 *  - tessera_shadow_in_flight{model,version}                     gauge
 *  - tessera_shadow_duration_seconds{model,version}              histogram of the successful shadow requests
 */
export function registerRoutingMetrics(registry: Registry, router: Router): void {
  const registers = [registry];
  const snapshot = (): ReturnType<Router['metricsSnapshot']> => router.metricsSnapshot();
  new Counter({
    name: 'tessera_routing_requests_total',
    help: 'Requests routed, by the version serving them and why it was chosen (url, alias, override, canary, stable, split, default).',
    labelNames: ['model', 'version', 'reason'],
    registers,
    collect() {
      this.reset();
      for (const s of snapshot().traffic) this.inc({ model: s.model, version: s.version, reason: s.reason }, s.count);
    },
  });
  new Counter({
    name: 'tessera_routing_fallbacks_total',
    help: "Requests sent to the fallback because the version's circuit breaker was open; target is [model:]version.",
    labelNames: ['model', 'version', 'target'],
    registers,
    collect() {
      this.reset();
      for (const s of snapshot().fallbacks) this.inc({ model: s.model, version: s.version, target: s.target }, s.count);
    },
  });
  new Counter({
    name: 'tessera_rollout_decisions_total',
    help: 'Rollout decisions and routing changes: canary start/step/wait/promote/rollback/abort/resume, split, default, alias, shadow, circuit_<state>.',
    labelNames: ['model', 'version', 'decision'],
    registers,
    collect() {
      this.reset();
      for (const s of snapshot().decisions) this.inc({ model: s.model, version: s.version, decision: s.decision }, s.count);
    },
  });
  const canaryGauge = (name: string, help: string, value: (c: ReturnType<Router['metricsSnapshot']>['canaries'][number]) => number | null): void => {
    new Gauge({
      name,
      help,
      labelNames: ['model', 'version'],
      registers,
      collect() {
        this.reset();
        for (const c of snapshot().canaries) {
          const v = value(c);
          if (v !== null) this.set({ model: c.model, version: c.version }, v);
        }
      },
    });
  };
  canaryGauge('tessera_rollout_canary_share', "Percent of the model's traffic on the canary version (0 once rolled back, aborted or promoted).", (c) => c.share);
  canaryGauge('tessera_rollout_canary_step', 'Current (or last) step of the canary, 1-based.', (c) => c.step);
  canaryGauge('tessera_rollout_p99_ratio', "Canary p99 latency / stable p99 latency over the current step's window.", (c) => (c.phase === 'running' ? c.p99Ratio : null));
  canaryGauge('tessera_rollout_agreement_ratio', "Top-1 agreement of the canary with the stable version on mirrored requests over the current step's window.", (c) =>
    c.phase === 'running' ? c.agreement : null,
  );
  new Gauge({
    name: 'tessera_rollout_canary_phase',
    help: "1 for the canary's phase: running, promoted, rolled_back, aborted.",
    labelNames: ['model', 'version', 'phase'],
    registers,
    collect() {
      this.reset();
      for (const c of snapshot().canaries) this.set({ model: c.model, version: c.version, phase: c.phase }, 1);
    },
  });
  new Gauge({
    name: 'tessera_rollout_error_rate',
    help: "Error rate over the current step's window of the canary and of the stable version it is measured against.",
    labelNames: ['model', 'version', 'role'],
    registers,
    collect() {
      this.reset();
      for (const c of snapshot().canaries) {
        if (c.phase !== 'running') continue;
        this.set({ model: c.model, version: c.version, role: 'canary' }, c.canaryErrorRate);
        this.set({ model: c.model, version: c.stable, role: 'stable' }, c.stableErrorRate);
      }
    },
  });
  new Gauge({
    name: 'tessera_circuit_state',
    help: 'Circuit breaker of the model version: 0 closed, 1 open, 2 half-open.',
    labelNames: ['model', 'version'],
    registers,
    collect() {
      this.reset();
      for (const c of snapshot().circuits) this.set({ model: c.model, version: c.version }, CIRCUIT_STATE_VALUE[c.state]);
    },
  });
  new Counter({
    name: 'tessera_circuit_transitions_total',
    help: 'Circuit breaker transitions into each state.',
    labelNames: ['model', 'version', 'state'],
    registers,
    collect() {
      this.reset();
      for (const c of snapshot().circuits) {
        for (const [state, count] of Object.entries(c.transitions)) if (count > 0) this.inc({ model: c.model, version: c.version, state }, count);
      }
    },
  });
  new Counter({
    name: 'tessera_circuit_rejected_total',
    help: 'Requests the circuit breaker kept from the version (sent to the fallback, or answered 503 CIRCUIT_OPEN).',
    labelNames: ['model', 'version'],
    registers,
    collect() {
      this.reset();
      for (const c of snapshot().circuits) if (c.rejected > 0) this.inc({ model: c.model, version: c.version }, c.rejected);
    },
  });
  new Counter({
    name: 'tessera_shadow_requests_total',
    help: 'Shadow requests by outcome: success, error, dropped (the shadow lane was full; never queued).',
    labelNames: ['model', 'version', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const { model, version, lane } of snapshot().shadows) {
        this.inc({ model, version, outcome: 'success' }, lane.succeeded);
        this.inc({ model, version, outcome: 'error' }, lane.failed);
        this.inc({ model, version, outcome: 'dropped' }, lane.dropped);
      }
    },
  });
  const shadowGauge = (name: string, help: string, value: (lane: ReturnType<Router['metricsSnapshot']>['shadows'][number]['lane']) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['model', 'version'],
      registers,
      collect() {
        this.reset();
        for (const { model, version, lane } of snapshot().shadows) {
          const v = value(lane);
          if (v !== undefined) this.set({ model, version }, v);
        }
      },
    });
  };
  shadowGauge('tessera_shadow_agreement_ratio', "Top-1 agreement of the shadow version's outputs with the served ones (classifier outputs).", (lane) => lane.comparisons.agreement);
  shadowGauge('tessera_shadow_mean_abs_diff', "Mean absolute difference of the shadow version's outputs from the served ones.", (lane) => lane.comparisons.meanAbsDiff);
  shadowGauge('tessera_shadow_in_flight', 'Shadow requests in flight.', (lane) => lane.inFlight);
  new Counter({
    name: 'tessera_shadow_compared_rows_total',
    help: 'Rows whose top-1 class was compared between the shadow and the served version.',
    labelNames: ['model', 'version'],
    registers,
    collect() {
      this.reset();
      for (const { model, version, lane } of snapshot().shadows) this.inc({ model, version }, lane.comparisons.classifiedRows);
    },
  });
  new SeriesHistogram(
    {
      name: 'tessera_shadow_duration_seconds',
      help: 'Duration of the successful shadow requests, from their dispatch to their answer.',
      labelNames: ['model', 'version'],
      buckets: MIRROR_LATENCY_BUCKETS,
      registers,
    },
    () =>
      snapshot().shadows.map(({ model, version, lane }) => ({
        labels: { model, version },
        buckets: lane.buckets,
        sum: lane.latencySumSeconds,
        count: lane.succeeded,
      })),
  );
}

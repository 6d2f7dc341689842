import { formatDuration, type CanarySpec, type GateConfig, type MirrorConfig } from './config.js';
import type { Clock } from './clock.js';
import { ComparisonStats, VersionWindow, type ComparisonResult, type ComparisonSnapshot, type WindowSnapshot } from './window.js';

/**
 * The canary controller of one model: the new version's share of traffic steps up (e.g. 5%,
 * 25%, 50%, 100%) only while its gates hold over a step's window, measured against the stable
 * version over the same window; a failed gate rolls back to 0% at once and records why; the
 * last step holding promotes the version (the router makes it the default). Every decision is
 * handed to `onDecision` (log line, metric, persisted state) and kept in the history.
 *
 * Gates: error rate (judged continuously once the canary has `min_requests` in the window),
 * p99 latency ratio and output agreement (judged at the end of each hold). The canary and the
 * stable version are both measured on the same window; agreement comes from mirrored requests
 * (the same inputs run on both versions).
 */

export type CanaryPhase = 'running' | 'promoted' | 'rolled_back' | 'aborted';
export type CanaryDecisionKind = 'start' | 'resume' | 'step' | 'wait' | 'promote' | 'rollback' | 'abort';

export interface GateMeasurements {
  readonly canary: WindowSnapshot;
  readonly stable: WindowSnapshot;
  readonly comparisons: ComparisonSnapshot;
  readonly errorRateDelta: number;
  /** Canary / stable latency at `latencyQuantile` (the p99 once both windows hold enough samples). */
  readonly p99Ratio: number | null;
  readonly latencyQuantile: number;
}

export interface CanaryDecision {
  /** ISO time. */
  readonly at: string;
  readonly decision: CanaryDecisionKind;
  /** Index into the steps (0-based). */
  readonly step: number;
  /** The canary's share after the decision, percent. */
  readonly share: number;
  readonly reason: string;
  readonly measurements?: GateMeasurements;
}

/** The persisted state of a canary (what survives a restart). */
export interface CanaryRecord {
  readonly version: string;
  readonly stable: string;
  readonly steps: readonly number[];
  readonly holdMs: number;
  readonly gates: GateConfig;
  readonly mirror: MirrorConfig;
  phase: CanaryPhase;
  stepIndex: number;
  share: number;
  readonly startedAt: string;
  stepStartedAt: string;
  finishedAt: string | null;
  /** Why it finished (rollback / abort / promote). */
  reason: string | null;
  history: CanaryDecision[];
}

export interface CanaryStatus extends Omit<CanaryRecord, 'history'> {
  /** Milliseconds the current step has held so far. */
  readonly heldMs: number;
  readonly current: GateMeasurements | null;
  readonly history: readonly CanaryDecision[];
}

export interface GateVerdict {
  /** `ok`: nothing failed (not final) or everything holds (final); `wait`: too little evidence yet. */
  readonly verdict: 'ok' | 'fail' | 'wait';
  readonly reasons: readonly string[];
  readonly measurements: GateMeasurements;
}

const HISTORY_LIMIT = 100;

/** Samples above the quantile the latency gate compares: fewer, and one slow request decides. */
const TAIL_SAMPLES = 5;

/**
 * The latency quantile a window of `samples` can estimate: p99 from 500 samples on; below that
 * the highest quantile with at least {@link TAIL_SAMPLES} samples above it (p90 at 50, p75 at
 * 20), at least the median. A "p99" of 20 requests is their maximum: one hiccup would fail a
 * healthy canary.
 */
export function latencyQuantile(samples: number): number {
  if (samples <= 0) return 0.99;
  return Math.min(0.99, Math.max(0.5, 1 - TAIL_SAMPLES / samples));
}

/**
 * Judge the gates on a window. Not `final`: only the error-rate gate (so a failing canary is
 * rolled back at once). `final` (end of a hold): every gate; `wait` while the canary lacks
 * `min_requests` or the agreement gate lacks `min_comparisons` compared rows.
 */
export function judgeGates(gates: GateConfig, canary: VersionWindow, stable: VersionWindow, comparisons: ComparisonStats, final: boolean, expectComparisons: boolean): GateVerdict {
  const quantile = latencyQuantile(Math.min(canary.latencySamples, stable.latencySamples));
  const canaryP99 = canary.percentile(quantile);
  const stableP99 = stable.percentile(quantile);
  const p99Ratio = Number.isFinite(canaryP99) && Number.isFinite(stableP99) ? Math.max(canaryP99, gates.p99_floor_ms) / Math.max(stableP99, gates.p99_floor_ms) : null;
  const measurements: GateMeasurements = {
    canary: canary.snapshot(),
    stable: stable.snapshot(),
    comparisons: comparisons.snapshot(),
    errorRateDelta: round(canary.errorRate - stable.errorRate),
    p99Ratio: p99Ratio === null ? null : round(p99Ratio),
    latencyQuantile: quantile,
  };
  if (canary.requests < gates.min_requests) {
    return { verdict: 'wait', reasons: [`the canary has served ${canary.requests} of the ${gates.min_requests} requests a step needs`], measurements };
  }
  const failures: string[] = [];
  const waits: string[] = [];
  if (canary.errorRate - stable.errorRate > gates.max_error_rate_delta) {
    failures.push(
      `error rate ${pct(canary.errorRate)} (${canary.failures}/${canary.requests}) exceeds the stable version's ${pct(stable.errorRate)} (${stable.failures}/${stable.requests}) by more than ${pct(gates.max_error_rate_delta)}`,
    );
  }
  if (!final || failures.length > 0) return { verdict: failures.length > 0 ? 'fail' : 'ok', reasons: failures, measurements };
  if (p99Ratio !== null && p99Ratio > gates.max_p99_ratio) {
    failures.push(`${quantileName(quantile)} latency ${fmt(canaryP99)} ms is ${p99Ratio.toFixed(2)}x the stable version's ${fmt(stableP99)} ms (at most ${gates.max_p99_ratio}x allowed)`);
  }
  const classifier = comparisons.classifiedRows > 0;
  if (gates.min_agreement !== null && expectComparisons) {
    if (comparisons.requests === 0) waits.push('no mirrored request has been compared yet');
    else if (classifier && comparisons.classifiedRows < gates.min_comparisons) waits.push(`${comparisons.classifiedRows} of the ${gates.min_comparisons} mirrored rows the agreement gate needs`);
    else if (classifier && comparisons.agreement! < gates.min_agreement) {
      failures.push(`top-1 agreement with the stable version ${pct(comparisons.agreement!)} over ${comparisons.classifiedRows} mirrored rows is below ${pct(gates.min_agreement)}`);
    }
  }
  if (gates.max_mean_abs_diff !== null && expectComparisons) {
    if (comparisons.values === 0) waits.push('no mirrored output has been compared yet');
    else if (comparisons.meanAbsDiff! > gates.max_mean_abs_diff) {
      failures.push(`mean absolute difference from the stable version's outputs ${comparisons.meanAbsDiff!.toPrecision(3)} exceeds ${gates.max_mean_abs_diff}`);
    }
  }
  if (failures.length > 0) return { verdict: 'fail', reasons: failures, measurements };
  if (waits.length > 0) return { verdict: 'wait', reasons: waits, measurements };
  return { verdict: 'ok', reasons: [], measurements };
}

export interface CanaryHooks {
  /** Every decision, after the record was updated: log it, count it, persist, apply a promotion. */
  onDecision(decision: CanaryDecision, record: CanaryRecord): void;
}

export class CanaryController {
  private canaryWindow: VersionWindow;
  private stableWindow: VersionWindow;
  private comparisons = new ComparisonStats();
  private timer: unknown;
  private waitedThisStep = false;
  private closed = false;

  private constructor(
    private readonly state: CanaryRecord,
    private readonly clock: Clock,
    private readonly hooks: CanaryHooks,
    private readonly random: () => number,
  ) {
    this.canaryWindow = new VersionWindow(random);
    this.stableWindow = new VersionWindow(random);
  }

  /** Start a canary of `spec.version` against `stable` at its first step. */
  static start(model: string, spec: CanarySpec, stable: string, clock: Clock, hooks: CanaryHooks, random: () => number = Math.random): CanaryController {
    const now = new Date(clock.now()).toISOString();
    const record: CanaryRecord = {
      version: spec.version,
      stable,
      steps: [...spec.steps],
      holdMs: spec.hold,
      gates: spec.gates,
      mirror: spec.mirror,
      phase: 'running',
      stepIndex: 0,
      share: spec.steps[0]!,
      startedAt: now,
      stepStartedAt: now,
      finishedAt: null,
      reason: null,
      history: [],
    };
    const controller = new CanaryController(record, clock, hooks, random);
    controller.decide('start', `canary of ${model} version ${spec.version} against version ${stable}: steps ${spec.steps.join(', ')}%, hold ${formatDuration(spec.hold)} each`);
    controller.schedule(spec.hold);
    return controller;
  }

  /** Take a persisted canary back: a running one restarts its current step's hold (measurements are not persisted). */
  static resume(record: CanaryRecord, clock: Clock, hooks: CanaryHooks, random: () => number = Math.random): CanaryController {
    const controller = new CanaryController({ ...record, history: [...record.history] }, clock, hooks, random);
    if (record.phase === 'running') {
      controller.state.stepStartedAt = new Date(clock.now()).toISOString();
      controller.decide('resume', `resumed after a restart at step ${record.stepIndex + 1} (${record.share}%); the step's hold starts again`);
      controller.schedule(record.holdMs);
    }
    return controller;
  }

  get record(): Readonly<CanaryRecord> {
    return this.state;
  }

  get running(): boolean {
    return this.state.phase === 'running';
  }

  /** The canary's current share in percent (0 unless running). */
  get share(): number {
    return this.running ? this.state.share : 0;
  }

  /** Where a request served by `version` is mirrored to, if its side mirrors. */
  mirrorTarget(version: string): string | undefined {
    if (!this.running || this.state.mirror.share <= 0) return undefined;
    const from = this.state.mirror.from === 'canary' ? this.state.version : this.state.stable;
    if (version !== from) return undefined;
    return from === this.state.version ? this.state.stable : this.state.version;
  }

  /** A request on the canary or the stable version finished (served or mirrored). */
  observe(version: string, latencyMs: number, failed: boolean): void {
    if (!this.running) return;
    if (version === this.state.version) this.canaryWindow.record(latencyMs, failed);
    else if (version === this.state.stable) this.stableWindow.record(latencyMs, failed);
    else return;
    // The error gate, judged on every request (cheap); the full verdict only when it fails.
    const gates = this.state.gates;
    if (this.canaryWindow.requests >= gates.min_requests && this.canaryWindow.errorRate - this.stableWindow.errorRate > gates.max_error_rate_delta) {
      this.rollback(judgeGates(gates, this.canaryWindow, this.stableWindow, this.comparisons, false, this.expectComparisons));
    }
  }

  /** Outputs of the stable (reference) and canary versions compared on the same inputs. */
  addComparison(result: ComparisonResult | undefined): void {
    if (!this.running) return;
    if (result === undefined) this.comparisons.requests++;
    else this.comparisons.add(result);
  }

  /** Stop the canary and roll back (operator abort, or its version went away). */
  abort(reason: string): void {
    if (!this.running) return;
    this.finish('aborted', reason);
    this.decide('abort', reason);
  }

  /** Stop timers (server shutdown); the persisted record keeps the canary's place. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  status(): CanaryStatus {
    const { history, ...rest } = this.state;
    return {
      ...rest,
      heldMs: this.running ? Math.max(0, this.clock.now() - Date.parse(this.state.stepStartedAt)) : 0,
      current: this.running ? judgeGates(this.state.gates, this.canaryWindow, this.stableWindow, this.comparisons, true, this.expectComparisons).measurements : null,
      history,
    };
  }

  /**
   * Whether the step gives the stable version requests to measure: some of the traffic, or the
   * canary's mirrored to it. A 100% step without that judges against the step before (see resetWindows).
   */
  private get stableMeasured(): boolean {
    return this.state.share < 100 || (this.state.mirror.share > 0 && this.state.mirror.from === 'canary');
  }

  /**
   * Whether the agreement gates apply: mirroring is on, and the step's requests can be compared
   * or comparisons were carried over (mirroring from stable, a 100% step has none of its own).
   */
  private get expectComparisons(): boolean {
    if (this.state.mirror.share <= 0) return false;
    return this.stableMeasured || this.comparisons.requests > 0;
  }

  private onHold(): void {
    this.timer = undefined;
    if (!this.running || this.closed) return;
    const verdict = judgeGates(this.state.gates, this.canaryWindow, this.stableWindow, this.comparisons, true, this.expectComparisons);
    if (verdict.verdict === 'fail') return this.rollback(verdict);
    if (verdict.verdict === 'wait') {
      if (!this.waitedThisStep) this.decide('wait', `step ${this.state.stepIndex + 1} held ${formatDuration(this.state.holdMs)} but cannot be judged yet: ${verdict.reasons.join('; ')}`, verdict.measurements);
      this.waitedThisStep = true;
      this.schedule(Math.max(50, Math.min(this.state.holdMs / 4, 5000)));
      return;
    }
    const passed = `step ${this.state.stepIndex + 1} (${this.state.share}%) held its gates for ${formatDuration(this.state.holdMs)}`;
    if (this.state.stepIndex + 1 >= this.state.steps.length) {
      this.finish('promoted', `${passed}; every step passed`);
      this.state.share = 100;
      this.decide('promote', `${passed}; version ${this.state.version} is promoted to default`, verdict.measurements);
      return;
    }
    this.state.stepIndex++;
    this.state.share = this.state.steps[this.state.stepIndex]!;
    this.state.stepStartedAt = new Date(this.clock.now()).toISOString();
    this.resetWindows(!this.stableMeasured);
    this.decide('step', `${passed}; stepping up to ${this.state.share}%`, verdict.measurements);
    this.schedule(this.state.holdMs);
  }

  private rollback(verdict: GateVerdict): void {
    const reason = `gate failed at step ${this.state.stepIndex + 1} (${this.state.share}%): ${verdict.reasons.join('; ')}`;
    this.finish('rolled_back', reason);
    this.decide('rollback', `${reason}; rolled back to 0%, version ${this.state.stable} carries all traffic`, verdict.measurements);
  }

  private finish(phase: CanaryPhase, reason: string): void {
    this.state.phase = phase;
    this.state.share = 0;
    this.state.finishedAt = new Date(this.clock.now()).toISOString();
    this.state.reason = reason;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Fresh windows for a new step. `keepStable`: the step gives the stable version nothing to
   * measure, so its window and the comparisons of the step before are what the canary is judged
   * against (an empty window would let the latency gate pass on no evidence).
   */
  private resetWindows(keepStable = false): void {
    this.canaryWindow = new VersionWindow(this.random);
    if (!keepStable) {
      this.stableWindow = new VersionWindow(this.random);
      this.comparisons = new ComparisonStats();
    }
    this.waitedThisStep = false;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => this.onHold(), ms);
  }

  private decide(kind: CanaryDecisionKind, reason: string, measurements?: GateMeasurements): void {
    const decision: CanaryDecision = {
      at: new Date(this.clock.now()).toISOString(),
      decision: kind,
      step: this.state.stepIndex,
      share: this.state.share,
      reason,
      ...(measurements === undefined ? {} : { measurements }),
    };
    this.state.history.push(decision);
    if (this.state.history.length > HISTORY_LIMIT) this.state.history.splice(0, this.state.history.length - HISTORY_LIMIT);
    this.hooks.onDecision(decision, this.state);
  }
}

/** `p99`, `p90`, `p75.5`. */
export function quantileName(q: number): string {
  return `p${Math.round(q * 1000) / 10}`;
}

function pct(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

function fmt(value: number): string {
  return Number.isFinite(value) ? value.toFixed(2) : '-';
}

function round(value: number): number {
  return Math.round(value * 10000) / 10000;
}

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { InferenceRequest, InferenceResponse } from '../src/core/inference.js';
import type { InferDispatch } from '../src/engine/engine.js';
import { CanaryController, ManualClock, Router, canarySpecSchema, routingConfigSchema, type CanaryDecision } from '../src/routing/index.js';
import type { ComparisonResult } from '../src/routing/window.js';

/**
 * The canary's gates one by one, on the controller's decisions (deterministic: a manual clock,
 * measurements fed by hand): the error gate compares with the stable version, the regressor
 * gate (mean absolute difference), the wait for `min_comparisons` rows, the latency floor; and,
 * through the router, that an answer slower than the breaker's `timeout_ms` is a latency for the
 * canary (the tail-latency gate), not an error.
 */

const agreeing: ComparisonResult = { classifiedRows: 1, agreedRows: 1, values: 3, absDiffSum: 0 };

describe('canary gates', () => {
  const gates = { min_requests: 10, min_comparisons: 10, p99_floor_ms: 1 };
  const start = (clock: ManualClock, spec: Record<string, unknown>, decisions: CanaryDecision[]) =>
    CanaryController.start('m', canarySpecSchema.parse({ version: 2, steps: [10, 50, 100], hold: 1000, ...spec, gates: { ...gates, ...(spec['gates'] as object | undefined) } }), '1', clock, {
      onDecision: (d) => decisions.push(d),
    });
  /** `n` requests on each side (stable first), every fifth one failing on the sides asked; one comparison each unless told. */
  const feed = (
    canary: CanaryController,
    n: number,
    o: { canaryMs?: number; stableMs?: number; canaryFails?: boolean; stableFails?: boolean; comparison?: ComparisonResult | null } = {},
  ): void => {
    for (let i = 0; i < n; i++) {
      const failing = i % 5 === 0;
      canary.observe('1', o.stableMs ?? 2, failing && o.stableFails === true);
      canary.observe('2', o.canaryMs ?? 2, failing && o.canaryFails === true);
      if (o.comparison !== null) canary.addComparison(o.comparison ?? agreeing);
    }
  };

  test('the error gate judges the difference from the stable version: both failing 20% steps up and is promoted', () => {
    const clock = new ManualClock();
    const decisions: CanaryDecision[] = [];
    // 5 points allowed: a window of a few requests swings by a point or two (3/11 against 3/12).
    const canary = start(clock, { gates: { max_error_rate_delta: 0.05 } }, decisions);
    for (const share of [50, 100]) {
      feed(canary, 20, { canaryFails: true, stableFails: true });
      assert.equal(canary.record.phase, 'running', `not rolled back on every request: ${canary.record.reason}`);
      clock.advance(1000);
      assert.equal(canary.share, share, canary.record.reason ?? '');
    }
    feed(canary, 20, { canaryFails: true, stableFails: true });
    clock.advance(1000);
    assert.equal(canary.record.phase, 'promoted', canary.record.reason ?? '');
    assert.deepEqual(decisions.map((d) => d.decision), ['start', 'step', 'step', 'promote']);
    for (const d of decisions.slice(1)) {
      assert.equal(d.measurements?.canary.errorRate, 0.2);
      assert.equal(d.measurements?.stable.errorRate, 0.2);
      assert.equal(d.measurements?.errorRateDelta, 0);
    }
  });

  test('max_mean_abs_diff: mirrored outputs further from the stable version than allowed roll back at the end of the hold', () => {
    const clock = new ManualClock();
    const regressor = { gates: { min_agreement: null, max_mean_abs_diff: 0.1 } };
    const far = start(clock, regressor, []);
    feed(far, 20, { comparison: { classifiedRows: 0, agreedRows: 0, values: 4, absDiffSum: 0.8 } }); // 0.2 a value
    assert.equal(far.record.phase, 'running', 'judged at the end of the hold, not on every request');
    clock.advance(1000);
    assert.equal(far.record.phase, 'rolled_back');
    assert.match(far.record.reason!, /^gate failed at step 1 \(10%\): mean absolute difference from the stable version's outputs 0\.200 exceeds 0\.1$/);

    const near = start(clock, regressor, []);
    feed(near, 20, { comparison: { classifiedRows: 0, agreedRows: 0, values: 4, absDiffSum: 0.2 } }); // 0.05 a value
    clock.advance(1000);
    assert.equal(near.share, 50, near.record.reason ?? '');
  });

  test('min_comparisons: enough requests but 3 of 10 compared rows waits, then steps once the rows are there', () => {
    const clock = new ManualClock();
    const decisions: CanaryDecision[] = [];
    const canary = start(clock, {}, decisions);
    feed(canary, 20, { comparison: null });
    for (let i = 0; i < 3; i++) canary.addComparison(agreeing);
    clock.advance(1000);
    assert.equal(canary.record.phase, 'running');
    assert.equal(canary.share, 10);
    assert.deepEqual(decisions.map((d) => d.decision), ['start', 'wait']);
    assert.match(decisions[1]!.reason, /cannot be judged yet: 3 of the 10 mirrored rows the agreement gate needs$/);
    for (let i = 0; i < 7; i++) canary.addComparison(agreeing);
    clock.advance(250);
    assert.equal(canary.share, 50);
    assert.deepEqual(decisions.map((d) => d.decision), ['start', 'wait', 'step']);
  });

  test('p99_floor_ms: a canary at 0.5 ms against a stable 0.1 ms with a 1 ms floor steps up; above the floor the ratio counts', () => {
    const clock = new ManualClock();
    const decisions: CanaryDecision[] = [];
    const fast = start(clock, {}, decisions);
    feed(fast, 20, { canaryMs: 0.5, stableMs: 0.1 });
    clock.advance(1000);
    assert.equal(fast.share, 50, fast.record.reason ?? '');
    assert.equal(decisions.at(-1)?.decision, 'step');
    assert.equal(decisions.at(-1)?.measurements?.p99Ratio, 1);

    const slow = start(clock, {}, []);
    feed(slow, 20, { canaryMs: 5, stableMs: 0.1 });
    clock.advance(1000);
    assert.equal(slow.record.phase, 'rolled_back');
    assert.match(slow.record.reason!, /p75 latency 5\.00 ms is 5\.00x the stable version's 0\.10 ms/);
  });
});

/** A "random" source that cycles through 0, 0.1, ..., 0.9: splits come out exact. */
function cyclingRandom(): () => number {
  let i = 0;
  return () => (i++ % 10) / 10;
}

describe('canary gates (router, fake engine)', () => {
  test("an answer slower than the breaker's timeout_ms is a breaker failure but a latency for the canary: it rolls back on the latency gate, not the error rate", async () => {
    const clock = new ManualClock();
    // Read per request and compared by identity: one object.
    const config = routingConfigSchema.parse({ circuit_breaker: { failure_threshold: 100, timeout_ms: 20 } });
    const router = await Router.create({
      engine: { servingVersions: (model) => (model === 'm' ? { ready: ['1', '2'], defaultVersion: '1' } : undefined), setDefaultVersion: () => undefined },
      configOf: () => config,
      models: () => ['m'],
      clock,
      random: cyclingRandom(),
    });
    const dispatch = router.interceptor(async (_request: InferenceRequest, target): Promise<InferenceResponse> => {
      const version = target.version ?? '1';
      if (version === '2') await new Promise((resolve) => setTimeout(resolve, 60));
      return { model: target.model, version, outputs: [{ name: 'p', datatype: 'FP32', shape: [1, 2], data: new Float32Array([0.9, 0.1]) }] };
    }) satisfies InferDispatch;
    router.startCanary('m', { version: '2', steps: [50, 100], hold: 100, gates: { min_requests: 2, p99_floor_ms: 1, max_p99_ratio: 2 }, mirror: { share: 0 } });
    const request = (): InferenceRequest => ({ model: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: new Float32Array([1, 2]) }] });
    const served: string[] = [];
    for (let i = 0; i < 10; i++) served.push((await dispatch(request(), request(), () => undefined)).version);
    const onCanary = served.filter((v) => v === '2').length;
    assert.ok(onCanary >= 2 && onCanary < 10, `${onCanary} of 10 on the canary`);

    const during = router.status('m');
    assert.equal(during.canary?.phase, 'running', `slow answers are no errors for the canary: ${during.canary?.reason}`);
    assert.deepEqual([during.canary?.current?.canary.requests, during.canary?.current?.canary.failures], [onCanary, 0]);
    const breaker = during.circuitBreakers.find((b) => b.version === '2');
    assert.equal(breaker?.consecutiveFailures, onCanary, 'the breaker counts each slow answer as a failure');
    assert.match(breaker?.lastFailure ?? '', /took \d+ ms, over timeout_ms 20/);

    clock.advance(100);
    const after = router.status('m').canary;
    assert.equal(after?.phase, 'rolled_back', JSON.stringify(after?.history.at(-1)));
    assert.match(after?.reason ?? '', /^gate failed at step 1 \(50%\): p\d+(\.\d)? latency \d+\.\d\d ms is \d+\.\d\dx the stable version's/);
    assert.doesNotMatch(after?.reason ?? '', /error rate/);
    await router.close();
  });
});

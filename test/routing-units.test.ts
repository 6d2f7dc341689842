import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { InferenceRequest, InferenceResponse } from '../src/core/inference.js';
import type { Tensor } from '../src/core/tensor.js';
import type { InferDispatch } from '../src/engine/engine.js';
import {
  CanaryController,
  CircuitBreaker,
  ManualClock,
  Router,
  RoutingStateStore,
  canarySpecSchema,
  circuitBreakerSchema,
  compareTensors,
  decideRoute,
  hashUnit,
  latencyQuantile,
  parseDuration,
  pickWeighted,
  routingConfigSchema,
  type CanaryDecision,
  type RouteTable,
} from '../src/routing/index.js';

const table = (overrides: Partial<RouteTable> = {}): RouteTable => ({
  model: 'm',
  ready: ['1', '2', '3'],
  aliases: new Map([['stable', '1']]),
  defaultVersion: undefined,
  split: undefined,
  canary: undefined,
  ...overrides,
});

describe('routing policy', () => {
  test('precedence: URL version or alias, override, canary, split, default, engine default', () => {
    const full = table({ defaultVersion: '3', split: { '1': 50, '2': 50 }, canary: { version: '2', stable: '1', share: 100 } });
    assert.deepEqual(decideRoute(full, { explicit: '3', override: '1', key: undefined, random: 0.5 }), { version: '3', reason: 'url' });
    assert.deepEqual(decideRoute(full, { explicit: 'stable', override: '2', key: undefined, random: 0.5 }), { version: '1', reason: 'alias' });
    assert.deepEqual(decideRoute(full, { explicit: undefined, override: 'stable', key: undefined, random: 0.5 }), { version: '1', reason: 'override' });
    assert.deepEqual(decideRoute(full, { explicit: undefined, override: undefined, key: undefined, random: 0.5 }), { version: '2', reason: 'canary' });
    const noCanary = table({ defaultVersion: 'stable', split: { '2': 1 } });
    assert.deepEqual(decideRoute(noCanary, { explicit: undefined, override: undefined, key: undefined, random: 0.9 }), { version: '2', reason: 'split' });
    assert.deepEqual(decideRoute(table({ defaultVersion: 'stable' }), { explicit: undefined, override: undefined, key: undefined, random: 0.9 }), { version: '1', reason: 'default' });
    assert.deepEqual(decideRoute(table(), { explicit: undefined, override: undefined, key: undefined, random: 0.9 }), { version: undefined, reason: 'default' });
    // A canary whose stable version is not READY does not route.
    const broken = table({ ready: ['2'], canary: { version: '2', stable: '1', share: 50 } });
    assert.equal(decideRoute(broken, { explicit: undefined, override: undefined, key: undefined, random: 0 }).reason, 'default');
  });

  test('weighted split over READY versions, by cumulative weight in version order', () => {
    const split = { '1': 90, '2': 10 };
    assert.equal(pickWeighted(split, ['1', '2'], 0), '1');
    assert.equal(pickWeighted(split, ['1', '2'], 0.8999), '1');
    assert.equal(pickWeighted(split, ['1', '2'], 0.9), '2');
    assert.equal(pickWeighted(split, ['1', '2'], 0.99999), '2');
    assert.equal(pickWeighted(split, ['2'], 0.1), '2', 'a version that is not READY takes no share');
    assert.equal(pickWeighted(split, ['3'], 0.1), undefined);
  });

  test('sticky keys hash evenly, and a growing canary share only ever moves keys to the canary', () => {
    const points = Array.from({ length: 20_000 }, (_, i) => hashUnit(`user-${i}`));
    const low = points.filter((p) => p < 0.1).length;
    assert.ok(Math.abs(low - 2000) < 4 * Math.sqrt(20_000 * 0.1 * 0.9), `${low} of 20000 below 0.1`);
    assert.equal(hashUnit('abc'), hashUnit('abc'));
    const inputs = (key: string) => ({ explicit: undefined, override: undefined, key, random: 0 });
    for (let i = 0; i < 2000; i++) {
      const key = `k${i}`;
      let onCanary = false;
      for (const share of [5, 25, 50, 100]) {
        const decision = decideRoute(table({ canary: { version: '2', stable: '1', share } }), inputs(key));
        if (onCanary) assert.equal(decision.version, '2', `key ${key} went back to stable at ${share}%`);
        onCanary = decision.version === '2';
      }
      assert.ok(onCanary);
    }
  });
});

describe('routing config', () => {
  test('durations, sticky keys, steps, defaults', () => {
    assert.equal(parseDuration('60s'), 60_000);
    assert.equal(parseDuration('200ms'), 200);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration(150), 150);
    assert.equal(parseDuration('soon'), undefined);
    // A timer holds at most 2^31 - 1 ms: longer holds and cool-downs are refused, not fired at once.
    assert.equal(canarySpecSchema.safeParse({ version: 2, hold: '596h' }).success, true);
    const tooLong = canarySpecSchema.safeParse({ version: 2, hold: '600h' });
    assert.equal(tooLong.success, false);
    assert.match(JSON.stringify(tooLong.error?.issues), /longer than the 24\.8 days/);
    assert.equal(routingConfigSchema.safeParse({ circuit_breaker: { cooldown: 2 ** 31 } }).success, false);
    const config = routingConfigSchema.parse({
      default_version: 2,
      split: { '1': 90, '2': 10 },
      sticky_key: 'X-User-Id',
      aliases: { stable: 1, candidate: '2' },
      canary: { version: 2, hold: '200ms' },
      circuit_breaker: { failure_threshold: 3, cooldown: '5s' },
      fallback: { version: 'stable' },
    });
    assert.equal(config.default_version, '2');
    assert.deepEqual(config.sticky_key, { source: 'header', name: 'x-user-id' });
    assert.deepEqual(config.aliases, { stable: '1', candidate: '2' });
    assert.deepEqual(config.canary?.steps, [5, 25, 50, 100]);
    assert.equal(config.canary?.hold, 200);
    assert.equal(config.circuit_breaker?.cooldown, 5000);
    assert.equal(config.override_header, 'x-model-version');
    assert.deepEqual(routingConfigSchema.parse({ sticky_key: 'parameter:user' }).sticky_key, { source: 'parameter', name: 'user' });
    assert.deepEqual(routingConfigSchema.parse({ sticky_key: { header: 'X-Session' } }).sticky_key, { source: 'header', name: 'x-session' });
    assert.equal(canarySpecSchema.safeParse({ version: 2, steps: [50, 25] }).success, false);
    assert.equal(routingConfigSchema.safeParse({ aliases: { latest: 1 } }).success, false, 'reserved alias');
    assert.equal(routingConfigSchema.safeParse({ aliases: { '9lives': 1 } }).success, false, 'aliases start with a letter');
    assert.equal(routingConfigSchema.safeParse({ split: { '1': 0 } }).success, false);
    assert.equal(routingConfigSchema.safeParse({ fallback: {} }).success, false);
  });
});

describe('circuit breaker', () => {
  test('opens after consecutive failures, half-opens after the cool-down, a probe closes or re-opens it', () => {
    const clock = new ManualClock();
    const changes: string[] = [];
    const breaker = new CircuitBreaker(circuitBreakerSchema.parse({ failure_threshold: 3, cooldown: 1000 }), clock, (from, to) => changes.push(`${from}->${to}`));
    breaker.settle(breaker.acquire(), 'boom');
    breaker.settle(breaker.acquire(), 'boom');
    breaker.settle(breaker.acquire(), undefined); // a success resets the count
    assert.equal(breaker.snapshot().consecutiveFailures, 0);
    for (let i = 0; i < 3; i++) breaker.settle(breaker.acquire(), 'boom');
    assert.equal(breaker.state, 'open');
    assert.equal(breaker.acquire(), 'reject');
    assert.equal(breaker.retryInMs(), 1000);
    clock.advance(999);
    assert.equal(breaker.acquire(), 'reject');
    clock.advance(1);
    assert.equal(breaker.state, 'half_open');
    const probe = breaker.acquire();
    assert.equal(probe, 'probe');
    assert.equal(breaker.acquire(), 'reject', 'one probe at a time');
    breaker.settle(probe, 'still broken');
    assert.equal(breaker.state, 'open');
    clock.advance(1000);
    const neutral = breaker.acquire();
    breaker.release(neutral); // a client error neither closes nor opens it
    assert.equal(breaker.state, 'half_open');
    breaker.settle(breaker.acquire(), undefined);
    assert.equal(breaker.state, 'closed');
    assert.deepEqual(changes, ['closed->open', 'open->half_open', 'half_open->open', 'open->half_open', 'half_open->closed']);
    assert.deepEqual(breaker.snapshot().transitions, { closed: 1, open: 2, half_open: 2 });
  });
});

describe('canary controller', () => {
  const gates = { min_requests: 10, min_comparisons: 10, p99_floor_ms: 1 };
  const start = (clock: ManualClock, spec: Record<string, unknown>, decisions: CanaryDecision[]) =>
    CanaryController.start('m', canarySpecSchema.parse({ version: 2, steps: [10, 50, 100], hold: 1000, gates, ...spec }), '1', clock, { onDecision: (d) => decisions.push(d) });
  const feed = (canary: CanaryController, n: number, canaryMs: number, canaryFails = 0, agree = true): void => {
    for (let i = 0; i < n; i++) {
      canary.observe('2', canaryMs, i < canaryFails);
      canary.observe('1', 2, false);
      canary.addComparison({ classifiedRows: 1, agreedRows: agree ? 1 : 0, values: 3, absDiffSum: 0 });
    }
  };

  test('steps up while its gates hold, then promotes', () => {
    const clock = new ManualClock();
    const decisions: CanaryDecision[] = [];
    const canary = start(clock, {}, decisions);
    assert.equal(canary.share, 10);
    for (const share of [50, 100]) {
      feed(canary, 20, 2);
      clock.advance(1000);
      assert.equal(canary.share, share);
    }
    feed(canary, 20, 2);
    clock.advance(1000);
    assert.equal(canary.record.phase, 'promoted');
    assert.deepEqual(decisions.map((d) => d.decision), ['start', 'step', 'step', 'promote']);
    assert.equal(clock.pendingTimers, 0);
  });

  test('a failing error gate rolls back at once, without waiting for the hold', () => {
    const clock = new ManualClock();
    const decisions: CanaryDecision[] = [];
    const canary = start(clock, {}, decisions);
    feed(canary, 10, 2, 2); // 20% errors vs 0% on stable
    assert.equal(canary.record.phase, 'rolled_back');
    assert.equal(canary.share, 0);
    assert.match(canary.record.reason!, /error rate 20\.0% \(2\/10\) exceeds the stable version's 0\.0%/);
    assert.deepEqual(decisions.map((d) => d.decision), ['start', 'rollback']);
    assert.equal(clock.pendingTimers, 0);
  });

  test('p99 latency and agreement are judged at the end of the hold; too little traffic waits', () => {
    const clock = new ManualClock();
    const slow = start(clock, {}, []);
    feed(slow, 20, 10); // 10 ms vs 2 ms
    clock.advance(1000);
    assert.equal(slow.record.phase, 'rolled_back');
    // 20 samples a side: the gate compares p75 (a "p99" of 20 requests would be their maximum).
    assert.match(slow.record.reason!, /p75 latency 10\.00 ms is 5\.00x the stable version's 2\.00 ms/);
    assert.deepEqual([20, 50, 100, 500, 5000].map(latencyQuantile), [0.75, 0.9, 0.95, 0.99, 0.99]);

    const disagreeing = start(clock, {}, []);
    feed(disagreeing, 20, 2, 0, false);
    clock.advance(1000);
    assert.match(disagreeing.record.reason!, /top-1 agreement with the stable version 0\.0% over 20 mirrored rows is below 90\.0%/);

    const decisions: CanaryDecision[] = [];
    const quiet = start(clock, {}, decisions);
    feed(quiet, 3, 2);
    clock.advance(1000);
    assert.equal(quiet.record.phase, 'running');
    assert.equal(quiet.share, 10);
    assert.deepEqual(decisions.map((d) => d.decision), ['start', 'wait']);
    feed(quiet, 20, 2);
    clock.advance(250);
    assert.equal(quiet.share, 50);
    quiet.abort('test over');
    assert.equal(quiet.record.phase, 'aborted');
  });
});

describe('output comparison', () => {
  test('top-1 agreement for class scores, mean absolute difference for every value', () => {
    const a: Tensor = { name: 'p', datatype: 'FP32', shape: [3, 2], data: new Float32Array([0.9, 0.1, 0.2, 0.8, 0.6, 0.4]) };
    const b: Tensor = { name: 'p', datatype: 'FP32', shape: [3, 2], data: new Float32Array([0.7, 0.3, 0.6, 0.4, 0.6, 0.4]) };
    const result = compareTensors(a, b)!;
    assert.equal(result.classifiedRows, 3);
    assert.equal(result.agreedRows, 2);
    assert.ok(Math.abs(result.absDiffSum / result.values - (0.2 + 0.2 + 0.4 + 0.4) / 6) < 1e-6);
    const regression: Tensor = { name: 'y', datatype: 'FP64', shape: [2, 1], data: new Float64Array([1, 2]) };
    const other: Tensor = { name: 'y', datatype: 'FP64', shape: [2, 1], data: new Float64Array([1.5, 2]) };
    assert.deepEqual(compareTensors(regression, other), { classifiedRows: 0, agreedRows: 0, values: 2, absDiffSum: 0.5 });
    assert.equal(compareTensors(a, regression), undefined);
  });
});

describe('routing state file', () => {
  test('written atomically, read back; an invalid file is moved aside', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-state-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const path = join(dir, 'state.json');
    const store = new RoutingStateStore(path, silent);
    assert.deepEqual(await store.load(), { format: 1, models: {} });
    for (let i = 0; i < 20; i++) store.save({ format: 1, models: { m: { split: { '1': i } } } });
    await store.flush();
    assert.deepEqual((await store.load()).models['m']?.split, { '1': 19 });
    assert.deepEqual((await readdir(dir)).sort(), ['state.json'], 'no temporary files are left');
    await writeFile(path, '{"format": 1, "models": {"m": {"split": "half"}}}');
    assert.deepEqual(await store.load(), { format: 1, models: {} });
    const files = await readdir(dir);
    assert.ok(files.some((file) => file.startsWith('state.json.corrupt-')), files.join(','));
    assert.match(await readFile(join(dir, files.find((file) => file.startsWith('state.json.corrupt-'))!), 'utf8'), /half/);
  });
});

const silent = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

/** A "random" source that cycles through 0, 0.1, ..., 0.9: splits and samples come out exact. */
function cyclingRandom(): () => number {
  let i = 0;
  return () => (i++ % 10) / 10;
}

describe('router (fake engine)', () => {
  test('every canary decision is a log line, an event and a counter; promotion pins the default version', async () => {
    const clock = new ManualClock();
    const lines: { level: string; object: Record<string, unknown> }[] = [];
    const log = (level: string) => (object: object) => lines.push({ level, object: object as Record<string, unknown> });
    const pinned: (string | undefined)[] = [];
    let defaultVersion = '1';
    const router = await Router.create({
      engine: {
        servingVersions: (model) => (model === 'm' ? { ready: ['1', '2'], defaultVersion } : undefined),
        setDefaultVersion: (_model, version) => {
          pinned.push(version);
          defaultVersion = version ?? '2';
        },
      },
      configOf: () => undefined,
      models: () => ['m'],
      logger: { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug') },
      clock,
      random: cyclingRandom(),
    });
    const dispatch = router.interceptor(async (request: InferenceRequest, target): Promise<InferenceResponse> => {
      const version = target.version ?? defaultVersion;
      return { model: target.model, version, outputs: [{ name: 'p', datatype: 'FP32', shape: [1, 2], data: new Float32Array([0.9, 0.1]) }] };
    }) satisfies InferDispatch;
    router.startCanary('m', { version: '2', steps: [50, 100], hold: 100, gates: { min_requests: 2, min_comparisons: 2, p99_floor_ms: 1000 }, mirror: { share: 1 } });
    const request = (): InferenceRequest => ({ model: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: new Float32Array([1, 2]) }] });
    const served = new Set<string>();
    for (let step = 0; step < 2; step++) {
      for (let i = 0; i < 10; i++) served.add((await dispatch(request(), request(), () => undefined)).version);
      await new Promise((resolve) => setImmediate(resolve)); // mirrored replays run after the answer
      await new Promise((resolve) => setImmediate(resolve));
      clock.advance(100);
    }
    const status = router.status('m');
    assert.equal(status.canary?.phase, 'promoted', JSON.stringify(status.canary?.history));
    assert.deepEqual(pinned, ['2']);
    assert.equal(status.servingDefault, '2');
    assert.deepEqual([...served].sort(), ['1', '2']);
    const decisions = lines.filter((line) => line.object['decision'] !== undefined).map((line) => line.object['decision']);
    assert.deepEqual(decisions, ['start', 'step', 'promote']);
    assert.deepEqual(
      router.metricsSnapshot().decisions.map((d) => `${d.version}:${d.decision}=${d.count}`),
      ['2:start=1', '2:step=1', '2:promote=1'],
    );
    assert.deepEqual(status.events.map((e) => e.decision), ['start', 'step', 'promote']);
    await router.close();
  });

  test('a canary mirroring from the stable version replays stable requests on the canary, compares them and promotes', async () => {
    const clock = new ManualClock();
    let defaultVersion = '1';
    const router = await Router.create({
      engine: {
        servingVersions: (model) => (model === 'm' ? { ready: ['1', '2'], defaultVersion } : undefined),
        setDefaultVersion: (_model, version) => {
          defaultVersion = version ?? '2';
        },
      },
      configOf: () => undefined,
      models: () => ['m'],
      clock,
      random: cyclingRandom(),
    });
    const ran: string[] = [];
    const dispatch = router.interceptor(async (_request: InferenceRequest, target): Promise<InferenceResponse> => {
      const version = target.version ?? defaultVersion;
      ran.push(version);
      return { model: target.model, version, outputs: [{ name: 'p', datatype: 'FP32', shape: [1, 2], data: new Float32Array([0.9, 0.1]) }] };
    }) satisfies InferDispatch;
    router.startCanary('m', { version: '2', steps: [50, 100], hold: 100, gates: { min_requests: 2, min_comparisons: 2, p99_floor_ms: 1000 }, mirror: { share: 1, from: 'stable' } });
    const request = (): InferenceRequest => ({ model: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: new Float32Array([1, 2]) }] });
    for (let i = 0; i < 10; i++) await dispatch(request(), request(), () => undefined);
    await new Promise((resolve) => setImmediate(resolve)); // mirrored replays run after the answer
    await new Promise((resolve) => setImmediate(resolve));
    const status = router.status('m');
    // At 50%, each request served by the stable version is replayed on the canary and compared.
    const onStable = ran.filter((v) => v === '1').length;
    assert.ok(onStable > 0 && onStable < 10, `stable served ${onStable} of 10`);
    assert.equal(status.canaryMirror?.sent, onStable);
    assert.equal(ran.filter((v) => v === '2').length, 10 - onStable + onStable, 'the canary ran its own requests and the replays');
    assert.equal(status.canary?.current?.comparisons.requests, onStable);
    clock.advance(100);
    assert.equal(router.status('m').canary?.share, 100);
    // At 100% the stable version serves nothing to replay: the step is judged without agreement.
    for (let i = 0; i < 10; i++) await dispatch(request(), request(), () => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    clock.advance(100);
    const after = router.status('m');
    assert.equal(after.canary?.phase, 'promoted', JSON.stringify(after.canary?.history));
    assert.equal(after.servingDefault, '2');
    await router.close();
  });

  test('a 100% step that leaves the stable version no requests is judged against the step before: a canary slow only then rolls back', async () => {
    for (const from of ['stable', 'none'] as const) {
      const clock = new ManualClock();
      let slowCanary = false;
      const router = await Router.create({
        engine: { servingVersions: (model) => (model === 'm' ? { ready: ['1', '2'], defaultVersion: '1' } : undefined), setDefaultVersion: () => undefined },
        configOf: () => undefined,
        models: () => ['m'],
        clock,
        random: cyclingRandom(),
      });
      const dispatch = router.interceptor(async (_request: InferenceRequest, target): Promise<InferenceResponse> => {
        const version = target.version ?? '1';
        if (version === '2' && slowCanary) await new Promise((resolve) => setTimeout(resolve, 30));
        return { model: target.model, version, outputs: [{ name: 'p', datatype: 'FP32', shape: [1, 2], data: new Float32Array([0.9, 0.1]) }] };
      }) satisfies InferDispatch;
      const mirror = from === 'stable' ? { share: 1, from: 'stable' as const } : { share: 0 };
      router.startCanary('m', { version: '2', steps: [50, 100], hold: 100, gates: { min_requests: 2, min_comparisons: 2, p99_floor_ms: 1, max_p99_ratio: 2 }, mirror });
      const request = (): InferenceRequest => ({ model: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: new Float32Array([1, 2]) }] });
      for (let i = 0; i < 10; i++) await dispatch(request(), request(), () => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      clock.advance(100);
      assert.equal(router.status('m').canary?.share, 100, from);
      slowCanary = true;
      for (let i = 0; i < 4; i++) await dispatch(request(), request(), () => undefined);
      clock.advance(100);
      const canary = router.status('m').canary;
      assert.equal(canary?.phase, 'rolled_back', `${from}: ${JSON.stringify(canary?.history.at(-1))}`);
      assert.match(canary?.reason ?? '', /latency .* the stable version's/);
      await router.close();
    }
  });

  test('a canary whose version stops being ready is aborted, and its traffic goes back to stable', async () => {
    let ready = ['1', '2'];
    const router = await Router.create({
      engine: { servingVersions: () => ({ ready, defaultVersion: '1' }), setDefaultVersion: () => undefined },
      configOf: () => undefined,
      models: () => ['m'],
      clock: new ManualClock(),
      random: () => 0,
    });
    const dispatch = router.interceptor(async (_request, target) => ({ model: target.model, version: target.version ?? '1', outputs: [] }));
    router.startCanary('m', { version: '2', steps: [50], hold: 1000 });
    const request: InferenceRequest = { model: 'm', inputs: [] };
    assert.equal((await dispatch(request, request, () => undefined)).version, '2');
    ready = ['1'];
    assert.equal((await dispatch(request, request, () => undefined)).version, '1');
    const canary = router.status('m').canary!;
    assert.deepEqual([canary.phase, canary.reason], ['aborted', 'version 2 is no longer ready']);
    await router.close();
  });
});

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { makeTempRepository } from './support/fixtures.js';
import { getJson, postJson, startTestServer, untilHeld, writeFakeModel } from './support/server.js';

/**
 * Circuit breakers per model version on the fake backend: consecutive failures (or slow calls)
 * open the breaker; while open, requests go to the fallback (another version or another model)
 * or get 503 CIRCUIT_OPEN at once; after the cool-down one probe decides: closed again, or open.
 */

const FAIL = 7;
const io = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }] };
const base = 'max_batch_size: 8\ndynamic_batching: false\nversion_policy:\n  all: {}\n';

async function call(
  server: { httpUrl: string },
  model: string,
  first: number,
  version?: string,
): Promise<{ status: number; version: string | null; model: string | undefined; retryAfter: string | null; error: string | undefined }> {
  const path = version === undefined ? `/v2/models/${model}/infer` : `/v2/models/${model}/versions/${version}/infer`;
  const r = await postJson(`${server.httpUrl}${path}`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [first, 2, 3, 4] }] });
  const body = r.body as { model_name?: string; error?: string };
  return { status: r.status, version: r.headers.get('x-model-version'), model: body.model_name, retryAfter: r.headers.get('retry-after'), error: body.error };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The circuit series of one model version on the metrics port: requests rejected, transitions into each state (absent series: 0). */
async function circuitMetrics(server: { metricsPort?: number | undefined }, model: string, version: string): Promise<{ rejected: number; transitions: Record<string, number> }> {
  assert.ok(server.metricsPort !== undefined, 'the metrics listener is on');
  const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const value = (series: string): number => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 0);
  const transitions = Object.fromEntries(['closed', 'open', 'half_open'].map((state) => [state, value(`tessera_circuit_transitions_total{model="${model}",version="${version}",state="${state}"}`)]));
  return { rejected: value(`tessera_circuit_rejected_total{model="${model}",version="${version}"}`), transitions };
}

describe('circuit breaker', () => {
  test('timeouts callers set themselves do not open the breaker for everyone', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'slow', 1, { ...io, delay_ms: 1000 }, base + 'instance_group:\n  - count: 1\nrouting:\n  circuit_breaker: {failure_threshold: 3, cooldown: 30s}\n');
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/v2/models/slow/infer`;
    const body = (parameters?: object) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }], ...(parameters === undefined ? {} : { parameters }) });
    // One request runs for a second; six callers queued behind it meanwhile give up after 1 ms each.
    let settled = false;
    const running = postJson(url, body()).finally(() => (settled = true));
    await untilHeld(server, 'slow', 1);
    const impatient = await Promise.all(Array.from({ length: 6 }, () => postJson(url, body({ timeout: 1000 }))));
    assert.deepEqual(impatient.map((r) => r.status), [504, 504, 504, 504, 504, 504]);
    assert.equal(settled, false, 'the six timed out behind the running request');
    assert.equal((await running).status, 200);
    const after = await postJson(url, body());
    assert.equal(after.status, 200, JSON.stringify(after.body));
    const rollout = (await getJson(`http://127.0.0.1:${server.managementPort}/models/slow/rollout`)).body as { circuitBreakers: { version: string; state: string }[] };
    assert.deepEqual(rollout.circuitBreakers.map((b) => [b.version, b.state]), [['1', 'closed']]);
  });

  test('in poll mode an open breaker stays open through repository polls until its cool-down ends', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'alone', 1, { ...io, fail_on_value: FAIL }, base + 'routing:\n  circuit_breaker: {failure_threshold: 2, cooldown: 30s}\n');
    const server = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 0.1 });
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'alone', FAIL)).status, 500);
    assert.equal((await call(server, 'alone', 1)).status, 503);
    await sleep(500); // several polls, each reading the model's config again
    const refused = await call(server, 'alone', 1);
    assert.equal(refused.status, 503, 'still open');
    assert.match(refused.error ?? '', /circuit/i);
  });

  test('opens after consecutive failures, sends traffic to the fallback version, half-opens after the cool-down and closes on a good probe', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const routing = 'routing:\n  circuit_breaker: {failure_threshold: 3, cooldown: 400ms}\n  fallback: {version: 1}\n';
    await writeFakeModel(repo, 'fake', 1, io, base + routing);
    await writeFakeModel(repo, 'fake', 2, { ...io, fail_on_value: FAIL }, base + routing);
    // No fallback: refused at once while open.
    const alone = 'routing:\n  circuit_breaker: {failure_threshold: 2, cooldown: 10s}\n';
    await writeFakeModel(repo, 'alone', 1, { ...io, fail_on_value: FAIL }, base + alone);
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const state = async (model: string, version: string): Promise<string> => {
      const described = (await getJson(`${admin}/models/${model}`)).body as { versions: { version: string; routing?: { circuitBreaker: { state: string } } }[] };
      return described.versions.find((v) => v.version === version)?.routing?.circuitBreaker.state ?? 'none';
    };
    const gauge = async (model: string, version: string): Promise<string | undefined> => {
      const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
      return new RegExp(`tessera_circuit_state\\{model="${model}",version="${version}"\\} (\\d)`).exec(metrics)?.[1];
    };

    assert.deepEqual([(await call(server, 'fake', 1)).version, await state('fake', '2')], ['2', 'closed']);
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'fake', FAIL)).status, 500);
    assert.equal((await call(server, 'fake', 1)).version, '2', 'a success resets the count');
    for (let i = 0; i < 3; i++) assert.equal((await call(server, 'fake', FAIL)).status, 500);
    assert.equal(await state('fake', '2'), 'open');
    assert.equal(await gauge('fake', '2'), '1');
    // Open: version 1 serves, failing inputs included (version 1 does not fail on them).
    for (const first of [1, FAIL, 1]) assert.deepEqual((({ status, version }) => [status, version])(await call(server, 'fake', first)), [200, '1']);
    assert.equal((await call(server, 'fake', 1)).version, '1');

    await sleep(450);
    assert.equal(await state('fake', '2'), 'half_open');
    assert.equal(await gauge('fake', '2'), '2');
    assert.equal((await call(server, 'fake', 1)).version, '2', 'the probe goes to version 2 and succeeds');
    assert.equal(await state('fake', '2'), 'closed');
    assert.equal(await gauge('fake', '2'), '0');

    // A failed probe opens it again for another cool-down.
    for (let i = 0; i < 3; i++) await call(server, 'fake', FAIL);
    await sleep(450);
    assert.equal((await call(server, 'fake', FAIL)).status, 500, 'the probe fails');
    assert.equal(await state('fake', '2'), 'open');
    assert.equal((await call(server, 'fake', 1)).version, '1');

    const rollout = (await getJson(`${admin}/models/fake/rollout`)).body as { circuitBreakers: { version: string; transitions: Record<string, number>; lastFailure: string; rejected: number }[]; events: { decision: string }[] };
    const breaker = rollout.circuitBreakers.find((b) => b.version === '2')!;
    assert.deepEqual(breaker.transitions, { closed: 1, open: 3, half_open: 2 });
    assert.match(breaker.lastFailure, /INFERENCE_FAILED/);
    assert.deepEqual(rollout.events.map((e) => e.decision), ['circuit_open', 'circuit_half_open', 'circuit_closed', 'circuit_open', 'circuit_half_open', 'circuit_open']);
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    assert.match(metrics, /tessera_routing_fallbacks_total\{model="fake",version="2",target="1"\} 5/);
    // Refused while open: the three failing-input requests and one more, then one after the failed probe; the probe itself was let through.
    assert.deepEqual(await circuitMetrics(server, 'fake', '2'), { rejected: 5, transitions: breaker.transitions });
    assert.equal(breaker.rejected, 5);
    // The operator can close it at once.
    assert.equal((await postJson(`${admin}/models/fake/circuit/2/reset`, {})).status, 200);
    assert.equal((await call(server, 'fake', 1)).version, '2');

    // Without a fallback: 503 CIRCUIT_OPEN at once, with Retry-After.
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'alone', FAIL)).status, 500);
    const refused = await call(server, 'alone', 1);
    assert.equal(refused.status, 503);
    assert.match(refused.error!, /model 'alone' version 1: the circuit breaker is open after 2 consecutive failures \(last: INFERENCE_FAILED: .*\); no fallback is configured; retry in 10 s/);
    assert.equal(refused.retryAfter, '10');
    assert.deepEqual(await circuitMetrics(server, 'alone', '1'), { rejected: 1, transitions: { closed: 0, open: 1, half_open: 0 } });
    assert.deepEqual(await circuitMetrics(server, 'fake', '2'), { rejected: 5, transitions: { closed: 2, open: 3, half_open: 2 } }, 'the reset is a transition to closed');
  });

  test('slow calls count as timeouts; the fallback can be another model', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'backup', 1, io, base);
    const routing = 'routing:\n  circuit_breaker: {failure_threshold: 2, timeout_ms: 40, cooldown: 1m}\n  fallback: {model: backup}\n';
    await writeFakeModel(repo, 'slow', 1, { ...io, delay_ms: 80 }, base + routing);
    const server = await startTestServer(t, repo);
    for (let i = 0; i < 2; i++) {
      const r = await call(server, 'slow', 1);
      assert.deepEqual([r.status, r.model], [200, 'slow'], 'a slow answer is still an answer');
    }
    const r = await call(server, 'slow', 1);
    assert.deepEqual([r.status, r.model, r.version], [200, 'backup', '1']);
    const status = (await getJson(`http://127.0.0.1:${server.managementPort}/models/slow/rollout`)).body as { circuitBreakers: { lastFailure: string }[] };
    assert.match(status.circuitBreakers[0]!.lastFailure, /took \d+ ms, over timeout_ms 40/);
  });

  test('client errors (a wrong shape, a bad datatype) do not open the breaker', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'strict', 1, io, base + 'routing:\n  circuit_breaker: {failure_threshold: 2, cooldown: 30s}\n');
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/v2/models/strict/infer`;
    // One caller's bad requests, many more than the threshold: each is the caller's 400, none a failure of the version.
    const wrongShape = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] };
    const badDatatype = { inputs: [{ name: 'x', datatype: 'INT32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await postJson(url, wrongShape));
    for (let i = 0; i < 2; i++) answers.push(await postJson(url, badDatatype));
    assert.deepEqual(answers.map((r) => r.status), [400, 400, 400, 400, 400, 400, 400], JSON.stringify(answers.map((r) => r.body)));
    assert.deepEqual(answers.map((r) => (r.body as { error: string }).error.match(/shape|datatype/i)?.[0].toLowerCase()), ['shape', 'shape', 'shape', 'shape', 'shape', 'datatype', 'datatype']);
    const good = await call(server, 'strict', 1);
    assert.deepEqual([good.status, good.version], [200, '1'], good.error);
    const rollout = (await getJson(`http://127.0.0.1:${server.managementPort}/models/strict/rollout`)).body as {
      circuitBreakers: { version: string; state: string; consecutiveFailures: number; transitions: Record<string, number> }[];
    };
    assert.deepEqual(
      rollout.circuitBreakers.map((b) => [b.version, b.state, b.consecutiveFailures, b.transitions.open]),
      [['1', 'closed', 0, 0]],
    );
  });

  test('the fallback is not taken when it is the open version itself, nor when its own breaker is open', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const routing = 'routing:\n  circuit_breaker: {failure_threshold: 2, cooldown: 30s}\n  fallback: {version: 1}\n';
    await writeFakeModel(repo, 'pair', 1, { ...io, fail_on_value: FAIL }, base + routing);
    await writeFakeModel(repo, 'pair', 2, { ...io, fail_on_value: FAIL }, base + routing);
    const server = await startTestServer(t, repo);
    const last = 'the circuit breaker is open after 2 consecutive failures \\(last: INFERENCE_FAILED: .*\\)';

    // Version 1, the fallback, opens: a request for it is not sent to itself.
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'pair', FAIL, '1')).status, 500);
    const self = await call(server, 'pair', 1, '1');
    assert.equal(self.status, 503);
    assert.match(self.error!, new RegExp(`^model 'pair' version 1: ${last}; the fallback is the same version$`));
    assert.match(self.retryAfter ?? '', /^\d+$/);

    // Version 2 (the default) opens too: its fallback, version 1, is open, so 503 rather than a request to version 1.
    assert.equal((await call(server, 'pair', 1)).version, '2');
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'pair', FAIL)).status, 500);
    const both = await call(server, 'pair', 1);
    assert.equal(both.status, 503, `answered by version ${both.version}`);
    assert.match(both.error!, new RegExp(`^model 'pair' version 2: ${last}; the fallback pair version 1 is open too$`));

    const rollout = (await getJson(`http://127.0.0.1:${server.managementPort}/models/pair/rollout`)).body as { circuitBreakers: { version: string; state: string; rejected: number }[] };
    assert.deepEqual(rollout.circuitBreakers.map((b) => [b.version, b.state, b.rejected]).sort(), [['1', 'open', 1], ['2', 'open', 1]]);
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    assert.doesNotMatch(metrics, /tessera_routing_fallbacks_total\{model="pair"/, 'nothing was sent to a fallback');
  });

  test('the fallback is not taken while its own breaker is half-open either', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const routing = 'routing:\n  circuit_breaker: {failure_threshold: 2, cooldown: 1s}\n  fallback: {version: 1}\n';
    await writeFakeModel(repo, 'pair', 1, { ...io, fail_on_value: FAIL }, base + routing);
    await writeFakeModel(repo, 'pair', 2, { ...io, fail_on_value: FAIL }, base + routing);
    const server = await startTestServer(t, repo);
    const states = async (): Promise<string[][]> =>
      ((await getJson(`http://127.0.0.1:${server.managementPort}/models/pair/rollout`)).body as { circuitBreakers: { version: string; state: string }[] }).circuitBreakers.map((b) => [b.version, b.state]).sort();
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'pair', FAIL, '1')).status, 500);
    await sleep(1100); // version 1 half-open, its probe slot unused
    for (let i = 0; i < 2; i++) assert.equal((await call(server, 'pair', FAIL)).status, 500);
    assert.deepEqual(await states(), [['1', 'half_open'], ['2', 'open']]);
    const refused = await call(server, 'pair', 1);
    assert.equal(refused.status, 503, `answered by version ${refused.version}`);
    assert.match(refused.error!, /^model 'pair' version 2: .*; the fallback pair version 1 is open too$/);
    assert.deepEqual(await states(), [['1', 'half_open'], ['2', 'open']], 'the probe slot of version 1 is still unused');
  });
});

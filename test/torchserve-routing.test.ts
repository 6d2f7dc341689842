import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { makeTempRepository, mlpModel, mlpReference, mulberry32, seededMlpWeights, writeModel } from './support/fixtures.js';
import { getJson, postJson, startTestServer } from './support/server.js';
import { pool } from './support/pool.js';

/**
 * Version routing of TorchServe's `/predictions` end to end: requests go through the model's
 * handler (`handler: tabular`) and through the same routing as the V2 endpoint (split, sticky
 * key, override header, aliases, canary, shadow). Two MLP versions whose answers differ
 * measurably: the version that served a request is read from the probabilities it answered
 * (and checked against X-Model-Version).
 */

const weights = { '1': seededMlpWeights([4, 8, 3], 1), '2': seededMlpWeights([4, 8, 3], 2) } as const;
const row = [0.5, -1, 2, 0.25];

/** Which version's weights produced `probs` for `input`. */
function versionOf(probs: readonly number[], input: readonly number[] = row): string {
  for (const [version, w] of Object.entries(weights)) {
    const expected = mlpReference(w, input);
    if (probs.length === expected.length && probs.every((p, j) => Math.abs(p - expected[j]!) < 1e-5)) return version;
  }
  return '?';
}

interface Predicted {
  readonly status: number;
  /** The version whose weights answered ('-' when there is no answer). */
  readonly version: string;
  /** The X-Model-Version header. */
  readonly header: string | null;
  readonly body: unknown;
}

/** POST one row to `/predictions/...` (the tabular handler's answer: probabilities per row). */
async function predict(url: string, headers: Record<string, string> = {}): Promise<Predicted> {
  const result = await postJson(url, { instances: [row] }, headers);
  const predictions = (result.body as { predictions?: { probabilities: number[] }[] } | undefined)?.predictions;
  return { status: result.status, version: predictions === undefined ? '-' : versionOf(predictions[0]!.probabilities), header: result.headers.get('x-model-version'), body: result.body };
}

/** Model `mlp` (versions 1 and 2, served through the tabular handler) with `config` appended to its config. */
async function twoVersions(config = ''): Promise<string> {
  const repo = await makeTempRepository();
  await writeModel(repo, 'mlp', 1, mlpModel(weights['1']), { 'config.yaml': `handler: tabular\nversion_policy:\n  all: {}\n${config}` });
  await writeModel(repo, 'mlp', 2, mlpModel(weights['2']));
  return repo;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function metricsOf(port: number | undefined): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

describe('version routing of /predictions (model handlers)', () => {
  test('a 90/10 split over 2,000 requests lands within 4 sigma of 200; every answer names its version; a URL version pins', async (t) => {
    const repo = await twoVersions('routing:\n  split: {"1": 90, "2": 10}\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const results = await pool(2000, 16, () => predict(`${server.httpUrl}/predictions/mlp`));
    for (const r of results) {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.notEqual(r.version, '?', 'the answer is one of the two versions');
      assert.equal(r.header, r.version, 'X-Model-Version names the version whose weights answered');
    }
    const onTwo = results.filter((r) => r.version === '2').length;
    const sigma = Math.sqrt(2000 * 0.1 * 0.9);
    assert.ok(Math.abs(onTwo - 200) <= 4 * sigma, `${onTwo} of 2000 on version 2 (expected 200 +- ${(4 * sigma).toFixed(0)})`);
    assert.equal(results.filter((r) => r.version === '1').length, 2000 - onTwo);

    // A version in the URL pins, whatever the split says; so does an unknown one (404).
    for (const r of await pool(40, 8, () => predict(`${server.httpUrl}/predictions/mlp/2`))) assert.deepEqual([r.status, r.version, r.header], [200, '2', '2']);
    for (const r of await pool(40, 8, () => predict(`${server.httpUrl}/predictions/mlp/1`))) assert.deepEqual([r.status, r.version, r.header], [200, '1', '1']);
    const unknown = await predict(`${server.httpUrl}/predictions/mlp/7`);
    assert.equal(unknown.status, 404);
    assert.equal((unknown.body as { type: string }).type, 'ModelVersionNotFoundException');

    const metrics = await metricsOf(server.metricsPort);
    assert.match(metrics, new RegExp(`tessera_routing_requests_total\\{model="mlp",version="2",reason="split"\\} ${onTwo}\\b`));
    assert.match(metrics, new RegExp(`tessera_routing_requests_total\\{model="mlp",version="1",reason="split"\\} ${2000 - onTwo}\\b`));
    assert.match(metrics, /tessera_routing_requests_total\{model="mlp",version="2",reason="url"\} 40\b/);
    assert.match(metrics, new RegExp(`tessera_requests_total\\{model="mlp",version="2",protocol="torchserve",outcome="success"\\} ${onTwo + 40}\\b`));
  });

  test('sticky keys never flip and spread across versions; the override header and a URL version or alias win', async (t) => {
    const repo = await twoVersions('routing:\n  split: {"1": 50, "2": 50}\n  sticky_key: X-User-Id\n  aliases: {candidate: 2}\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/predictions/mlp`;
    const users = Array.from({ length: 150 }, (_, i) => `user-${i}`);
    const first = await pool(users.length, 8, (i) => predict(url, { 'x-user-id': users[i]! }));
    const again = await pool(users.length * 3, 8, (i) => predict(url, { 'x-user-id': users[i % users.length]! }));
    for (const r of [...first, ...again]) assert.equal(r.header, r.version);
    again.forEach((r, i) => assert.equal(r.version, first[i % users.length]!.version, `${users[i % users.length]} flipped`));
    const onTwo = first.filter((r) => r.version === '2').length;
    assert.ok(onTwo > 40 && onTwo < 110, `${onTwo} of 150 users on version 2`);

    // The V2 endpoint puts every user on the same version as /predictions does.
    const v2 = await pool(users.length, 8, async (i) => (await postJson(`${server.httpUrl}/v2/models/mlp/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row }] }, { 'x-user-id': users[i]! })).headers.get('x-model-version'));
    v2.forEach((version, i) => assert.equal(version, first[i]!.version, `${users[i]} is served by another version over V2`));

    // Precedence: URL (version or alias) > override header > sticky key.
    const stickyTwo = users.find((_, i) => first[i]!.version === '2')!;
    const stickyOne = users.find((_, i) => first[i]!.version === '1')!;
    assert.equal((await predict(url, { 'x-user-id': stickyTwo, 'x-model-version': '1' })).version, '1');
    assert.equal((await predict(url, { 'x-user-id': stickyOne, 'x-model-version': '2' })).version, '2');
    assert.equal((await predict(url, { 'x-user-id': stickyOne, 'x-model-version': 'candidate' })).version, '2', 'the override takes an alias');
    assert.equal((await predict(`${url}/2`, { 'x-user-id': stickyOne, 'x-model-version': '1' })).version, '2');
    assert.equal((await predict(`${url}/1`, { 'x-user-id': stickyTwo })).version, '1');
    const aliased = await predict(`${url}/candidate`, { 'x-user-id': stickyOne });
    assert.deepEqual([aliased.status, aliased.version, aliased.header], [200, '2', '2'], 'an alias in the URL serves like its version');
    const unknown = await predict(url, { 'x-model-version': '7' });
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.body, { code: 404, type: 'ModelVersionNotFoundException', message: "model 'mlp' has no version '7'; its versions are: 1, 2" });

    const metrics = await metricsOf(server.metricsPort);
    assert.match(metrics, /tessera_routing_requests_total\{model="mlp",version="2",reason="override"\} 2\b/);
    assert.match(metrics, /tessera_routing_requests_total\{model="mlp",version="2",reason="alias"\} 1\b/);
  });

  test('a canary counts /predictions requests in its windows and mirrors them through the handler', async (t) => {
    const repo = await twoVersions('routing:\n  default_version: 1\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    // A long hold: no decision is taken while the test runs; every canary request is mirrored on stable.
    const started = await postJson(`${admin}/models/mlp/canary`, { version: '2', stable: '1', steps: [30, 100], hold: '1h', mirror: { share: 1, max_in_flight: 256 } });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const results = await pool(300, 4, () => predict(`${server.httpUrl}/predictions/mlp`));
    for (const r of results) assert.deepEqual([r.status, r.header], [200, r.version]);
    const onCanary = results.filter((r) => r.version === '2').length;
    const sigma = Math.sqrt(300 * 0.3 * 0.7);
    assert.ok(Math.abs(onCanary - 90) <= 4 * sigma, `${onCanary} of 300 on the canary at a 30% share`);

    interface Rollout {
      canary: { phase: string; share: number; current: { canary: { requests: number; failures: number }; stable: { requests: number; failures: number }; comparisons: { requests: number; rows: number; agreement: number | null } } };
      canaryMirror: { inFlight: number; sent: number; dropped: number; failed: number };
    }
    const rollout = async (): Promise<Rollout> => (await getJson(`${admin}/models/mlp/rollout`)).body as Rollout;
    await waitFor('the mirrored requests to finish', async () => (await rollout()).canaryMirror.inFlight === 0);
    const status = await rollout();
    assert.deepEqual([status.canary.phase, status.canary.share], ['running', 30]);
    const current = status.canary.current;
    assert.equal(current.canary.requests, onCanary, 'every /predictions request the canary served is in its window');
    assert.deepEqual([status.canaryMirror.sent, status.canaryMirror.dropped, status.canaryMirror.failed], [onCanary, 0, 0]);
    assert.equal(current.stable.requests, 300 - onCanary + status.canaryMirror.sent, "stable's window: the requests it served and the canary's mirrored on it");
    assert.equal(current.canary.failures + current.stable.failures, 0);
    assert.equal(current.comparisons.requests, onCanary);
    assert.equal(current.comparisons.rows, onCanary);
    const expectedAgreement = argmax(mlpReference(weights['1'], row)) === argmax(mlpReference(weights['2'], row)) ? 1 : 0;
    assert.equal(current.comparisons.agreement, onCanary === 0 ? null : expectedAgreement);

    const metrics = await metricsOf(server.metricsPort);
    assert.match(metrics, new RegExp(`tessera_routing_requests_total\\{model="mlp",version="2",reason="canary"\\} ${onCanary}\\b`));
    assert.match(metrics, new RegExp(`tessera_routing_requests_total\\{model="mlp",version="1",reason="stable"\\} ${300 - onCanary}\\b`));
    assert.match(metrics, new RegExp(`tessera_requests_total\\{model="mlp",version="2",protocol="torchserve",outcome="success"\\} ${onCanary}\\b`));
  });

  test('shadow traffic replays /predictions requests through the shadow version’s handler; the caller gets the primary', async (t) => {
    const ROWS = 16;
    const rng = mulberry32(7);
    const rows = Array.from({ length: ROWS }, () => Array.from({ length: 4 }, () => Math.round((rng() * 6 - 3) * 1000) / 1000));
    const a = mlpReference(weights['1'], rows.flat());
    const b = mlpReference(weights['2'], rows.flat());
    let agreeing = 0;
    for (let r = 0; r < ROWS; r++) if (argmax(a.subarray(r * 3, r * 3 + 3)) === argmax(b.subarray(r * 3, r * 3 + 3))) agreeing++;

    const repo = await twoVersions(`max_batch_size: ${ROWS}\nrouting:\n  default_version: 1\n  shadow: {version: 2, share: 1, max_in_flight: 256}\n`);
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const requests = 100;
    await pool(requests, 4, async () => {
      const r = await postJson(`${server.httpUrl}/predictions/mlp`, { instances: rows });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.headers.get('x-model-version'), '1', 'the caller always gets the primary');
      const predictions = (r.body as { predictions: { probabilities: number[] }[] }).predictions;
      predictions.forEach((p, i) => assert.equal(versionOf(p.probabilities, rows[i]!), '1'));
    });
    // Requests naming a version are not shadowed.
    assert.equal((await predict(`${server.httpUrl}/predictions/mlp/1`)).status, 200);

    interface ShadowView {
      sent: number;
      dropped: number;
      succeeded: number;
      failed: number;
      inFlight: number;
      lastError: string | null;
      comparison: { requests: number; rows: number; agreement: number | null };
    }
    await waitFor('the shadow requests to finish', async () => ((await getJson(`${admin}/models/mlp/shadow`)).body as ShadowView).inFlight === 0);
    const view = (await getJson(`${admin}/models/mlp/shadow`)).body as ShadowView;
    assert.deepEqual([view.sent, view.dropped, view.failed, view.lastError], [requests, 0, 0, null]);
    assert.equal(view.succeeded, requests);
    assert.equal(view.comparison.requests, requests);
    assert.equal(view.comparison.rows, requests * ROWS);
    assert.equal(view.comparison.agreement, agreeing / ROWS);

    const metrics = await metricsOf(server.metricsPort);
    assert.match(metrics, new RegExp(`tessera_requests_total\\{model="mlp",version="1",protocol="torchserve",outcome="success"\\} ${requests + 1}\\b`));
    assert.doesNotMatch(metrics, /tessera_requests_total\{model="mlp",version="2"/, "shadow requests are not the callers' requests");
  });

  test('models without a handler (the default tabular/JSON handler) are routed and name their version too', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'plain', 1, mlpModel(weights['1']), { 'config.yaml': 'version_policy:\n  all: {}\nrouting:\n  split: {"1": 100}\n' });
    await writeModel(repo, 'plain', 2, mlpModel(weights['2']));
    const server = await startTestServer(t, repo);
    const plain = async (url: string, headers: Record<string, string> = {}): Promise<Predicted> => {
      const result = await postJson(url, { data: [row] }, headers);
      const rows = result.body as number[][];
      return { status: result.status, version: versionOf(rows[0]!), header: result.headers.get('x-model-version'), body: result.body };
    };
    for (const r of await pool(20, 4, () => plain(`${server.httpUrl}/predictions/plain`))) assert.deepEqual([r.status, r.version, r.header], [200, '1', '1']);
    const overridden = await plain(`${server.httpUrl}/predictions/plain`, { 'x-model-version': '2' });
    assert.deepEqual([overridden.status, overridden.version, overridden.header], [200, '2', '2']);
    const pinned = await plain(`${server.httpUrl}/predictions/plain/2`);
    assert.deepEqual([pinned.status, pinned.version, pinned.header], [200, '2', '2']);
  });
});

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { makeTempRepository, mlpModel, mlpReference, mulberry32, seededMlpWeights, writeModel, type MlpWeights } from './support/fixtures.js';
import { getJson, postJson, startTestServer, writeFakeModel } from './support/server.js';

/**
 * Shadow traffic end to end: the primary answers, a share of requests is replayed on the
 * shadow version after the answer, the outputs are compared. The expected agreement of the two
 * test models is computed independently with the plain-JS reference implementation.
 */

const primary = seededMlpWeights([4, 8, 3], 11);
const shadow = seededMlpWeights([4, 8, 3], 12);
const ROWS = 64;

function argmax(values: ArrayLike<number>, offset: number, width: number): number {
  let best = 0;
  for (let i = 1; i < width; i++) if (values[offset + i]! > values[offset + best]!) best = i;
  return best;
}

/** Smallest gap between the top two classes of a row: rows closer than float32 noise are left out. */
function margin(weights: MlpWeights, input: number[]): number {
  const p = mlpReference(weights, input);
  const sorted = [...p].sort((a, b) => b - a);
  return sorted[0]! - sorted[1]!;
}

/** ROWS seeded input rows whose top-1 class is clear for both models. */
function inputRows(): number[][] {
  const rng = mulberry32(99);
  const rows: number[][] = [];
  while (rows.length < ROWS) {
    const input = Array.from({ length: 4 }, () => Math.round((rng() * 6 - 3) * 1000) / 1000);
    if (margin(primary, input) > 1e-3 && margin(shadow, input) > 1e-3) rows.push(input);
  }
  return rows;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface ShadowView {
  version: string;
  sent: number;
  dropped: number;
  succeeded: number;
  failed: number;
  inFlight: number;
  comparison: { requests: number; rows: number; agreement: number | null; meanAbsDiff: number | null };
  latency: { p50Ms: number | null };
}

describe('shadow traffic', () => {
  test("at a 10% share, the shadow's measured agreement is the two models' known agreement", async (t) => {
    const rows = inputRows();
    const flat = rows.flat();
    const a = mlpReference(primary, flat);
    const b = mlpReference(shadow, flat);
    let agreeing = 0;
    let absDiff = 0;
    for (let r = 0; r < ROWS; r++) if (argmax(a, r * 3, 3) === argmax(b, r * 3, 3)) agreeing++;
    for (let i = 0; i < a.length; i++) absDiff += Math.abs(a[i]! - b[i]!);
    const expectedAgreement = agreeing / ROWS;
    assert.ok(expectedAgreement > 0.2 && expectedAgreement < 0.9, `the test models should disagree measurably (agreement ${expectedAgreement})`);

    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const config = `max_batch_size: ${ROWS}\nversion_policy:\n  all: {}\nrouting:\n  default_version: 1\n  shadow: {version: 2, share: 0.1, max_in_flight: 64}\n`;
    await writeModel(repo, 'mlp', 1, mlpModel(primary), { 'config.yaml': config });
    await writeModel(repo, 'mlp', 2, mlpModel(shadow));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const requests = 400;
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = next++; i < requests; i = next++) {
          const r = await postJson(`${server.httpUrl}/v2/models/mlp/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [ROWS, 4], data: flat }] });
          assert.equal(r.status, 200);
          assert.equal(r.headers.get('x-model-version'), '1', 'the caller always gets the primary');
          const probs = (r.body as { outputs: { data: number[] }[] }).outputs[0]!.data;
          for (let j = 0; j < probs.length; j += 37) assert.ok(Math.abs(probs[j]! - a[j]!) < 1e-5);
        }
      }),
    );
    await waitFor('the shadow requests to finish', async () => ((await getJson(`${admin}/models/mlp/shadow`)).body as ShadowView).inFlight === 0);
    const view = (await getJson(`${admin}/models/mlp/shadow`)).body as ShadowView;
    const sigma = Math.sqrt(requests * 0.1 * 0.9);
    assert.ok(Math.abs(view.sent + view.dropped - requests * 0.1) <= 4 * sigma, `${view.sent + view.dropped} of ${requests} sampled`);
    assert.equal(view.failed, 0, 'the shadow ran on copies of the inputs (the primary moved its own to a worker)');
    assert.equal(view.dropped, 0);
    assert.equal(view.succeeded, view.sent);
    assert.equal(view.comparison.requests, view.sent);
    assert.equal(view.comparison.rows, view.sent * ROWS);
    assert.equal(view.comparison.agreement, expectedAgreement, `measured ${view.comparison.agreement}, expected ${agreeing}/${ROWS}`);
    assert.ok(Math.abs(view.comparison.meanAbsDiff! - absDiff / a.length) < 1e-5);
    assert.ok(view.latency.p50Ms !== null);

    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const gauge = /tessera_shadow_agreement_ratio\{model="mlp",version="2"\} ([\d.e-]+)/.exec(metrics);
    assert.equal(Number(gauge?.[1]), expectedAgreement);
    assert.match(metrics, new RegExp(`tessera_shadow_requests_total\\{model="mlp",version="2",outcome="success"\\} ${view.succeeded}\\b`));
    assert.match(metrics, new RegExp(`tessera_shadow_duration_seconds_count\\{model="mlp",version="2"\\} ${view.succeeded}\\b`));
    assert.match(metrics, /tessera_requests_total\{model="mlp",version="1",protocol="v2-http",outcome="success"\} 400\b/);
    assert.doesNotMatch(metrics, /tessera_requests_total\{model="mlp",version="2"/, "shadow requests are not the callers' requests");
  });

  test('requests routed by the override header, or already served by the shadow version, are not shadowed', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const io = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }] };
    // share 1: every request that may be shadowed is.
    const config = 'max_batch_size: 8\nversion_policy:\n  all: {}\nrouting:\n  default_version: 1\n  aliases: {candidate: 2}\n  shadow: {version: 2, share: 1, max_in_flight: 64}\n';
    await writeFakeModel(repo, 'fake', 1, io, config);
    await writeFakeModel(repo, 'fake', 2, io, config);
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const payload = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    const shadowView = async (): Promise<ShadowView> => (await getJson(`${admin}/models/fake/shadow`)).body as ShadowView;
    for (const version of ['1', '2']) {
      for (let i = 0; i < 5; i++) {
        const r = await postJson(`${server.httpUrl}/v2/models/fake/infer`, payload, { 'x-model-version': version });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.headers.get('x-model-version'), version, 'the override header chose the version');
      }
    }
    // An alias in the URL is shadowed (docs/rollouts.md), except when it names the shadow version itself.
    for (let i = 0; i < 5; i++) {
      const r = await postJson(`${server.httpUrl}/v2/models/fake/versions/candidate/infer`, payload);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.headers.get('x-model-version'), '2');
    }
    let view = await shadowView();
    assert.equal(view.version, '2');
    assert.deepEqual([view.sent, view.dropped, view.inFlight], [0, 0, 0], JSON.stringify(view));
    // The control: a request that names no version is shadowed (share 1).
    const plain = await postJson(`${server.httpUrl}/v2/models/fake/infer`, payload);
    assert.equal(plain.headers.get('x-model-version'), '1');
    await waitFor('the shadow request to finish', async () => (await shadowView()).succeeded === 1);
    view = await shadowView();
    assert.deepEqual([view.sent, view.dropped, view.succeeded], [1, 0, 1]);
  });

  test('a slow shadow never delays the caller, and its load is bounded: excess shadow requests are dropped, not queued', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const io = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }] };
    const config = 'max_batch_size: 8\nversion_policy:\n  all: {}\nrouting:\n  default_version: 1\n  shadow: {version: 2, share: 1, max_in_flight: 2}\n';
    await writeFakeModel(repo, 'fake', 1, io, config);
    await writeFakeModel(repo, 'fake', 2, { ...io, delay_ms: 400 }, config);
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    // Warm up the server and the client's connections; requests naming a version are not shadowed.
    const payload = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    for (let round = 0; round < 3; round++) await Promise.all(Array.from({ length: 24 }, () => postJson(`${server.httpUrl}/v2/models/fake/versions/1/infer`, payload)));
    assert.equal(((await getJson(`${admin}/models/fake/shadow`)).body as ShadowView).sent, 0);
    const latencies = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const started = performance.now();
        const r = await postJson(`${server.httpUrl}/v2/models/fake/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
        assert.equal(r.status, 200);
        return performance.now() - started;
      }),
    );
    assert.ok(Math.max(...latencies) < 300, `callers waited ${Math.max(...latencies).toFixed(0)} ms; the shadow takes 400 ms`);
    const during = (await getJson(`${admin}/models/fake/shadow`)).body as ShadowView;
    assert.ok(during.inFlight <= 2);
    assert.ok(during.sent <= 4 && during.dropped >= 20, `sent ${during.sent}, dropped ${during.dropped}`);
    assert.equal(during.sent + during.dropped, 24);
    await waitFor('the shadow requests to finish', async () => ((await getJson(`${admin}/models/fake/shadow`)).body as ShadowView).inFlight === 0);
    const after = (await getJson(`${admin}/models/fake/shadow`)).body as ShadowView;
    assert.equal(after.succeeded, after.sent);
    assert.equal(after.comparison.agreement, 1);
    assert.equal(after.comparison.meanAbsDiff, 0);

    // Stopped at run time, and started again with another share.
    assert.equal((await fetch(`${admin}/models/fake/shadow`, { method: 'DELETE' })).status, 200);
    assert.equal((await getJson(`${admin}/models/fake/shadow`)).status, 404);
    const restarted = await fetch(`${admin}/models/fake/shadow`, { method: 'PUT', body: JSON.stringify({ version: 2, share: 0.5 }), headers: { 'content-type': 'application/json' } });
    assert.equal(restarted.status, 200);
    assert.equal(((await getJson(`${admin}/models/fake/shadow`)).body as { share: number }).share, 0.5);
  });
});

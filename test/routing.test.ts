import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Metadata, credentials, loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { makeTempRepository, mlpModel, mlpReference, seededMlpWeights, writeModel } from './support/fixtures.js';
import { PROJECT_PROTO_DIR } from './support/grpc-client.js';
import { getJson, postJson, startTestServer } from './support/server.js';
import { pool } from './support/pool.js';

/**
 * Version routing end to end: two MLP versions whose answers differ measurably, so the version
 * that served a request is read from its output (and checked against X-Model-Version).
 */

const weights = { '1': seededMlpWeights([4, 8, 3], 1), '2': seededMlpWeights([4, 8, 3], 2) } as const;
const row = [0.5, -1, 2, 0.25];
const body = (extra: Record<string, unknown> = {}) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row }], ...extra });

/** Which version's weights produced `probs`. */
function versionOf(probs: readonly number[]): string {
  for (const [version, w] of Object.entries(weights)) {
    const expected = mlpReference(w, row);
    if (probs.every((p, j) => Math.abs(p - expected[j]!) < 1e-5)) return version;
  }
  return '?';
}

async function infer(url: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}): Promise<{ status: number; version: string; header: string | null; body: unknown }> {
  const result = await postJson(url, body(extra), headers);
  const outputs = (result.body as { outputs?: { data: number[] }[] }).outputs;
  return { status: result.status, version: outputs === undefined ? '-' : versionOf(outputs[0]!.data), header: result.headers.get('x-model-version'), body: result.body };
}

async function twoVersions(config = ''): Promise<string> {
  const repo = await makeTempRepository();
  await writeModel(repo, 'mlp', 1, mlpModel(weights['1']), { 'config.yaml': `version_policy:\n  all: {}\n${config}` });
  await writeModel(repo, 'mlp', 2, mlpModel(weights['2']));
  return repo;
}

async function send(url: string, method: string, payload?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method, ...(payload === undefined ? {} : { body: JSON.stringify(payload), headers: { 'content-type': 'application/json' } }) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('version routing', () => {
  test('a 90/10 split over 2,000 requests lands within 4 sigma of 200, and every answer names its version', async (t) => {
    const repo = await twoVersions('routing:\n  split: {"1": 90, "2": 10}\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/v2/models/mlp/infer`;
    const results = await pool(2000, 16, () => infer(url));
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.header, r.version, 'X-Model-Version names the version whose weights answered');
      assert.equal((r.body as { model_version: string }).model_version, r.version);
    }
    const onTwo = results.filter((r) => r.version === '2').length;
    const sigma = Math.sqrt(2000 * 0.1 * 0.9);
    assert.ok(Math.abs(onTwo - 200) <= 4 * sigma, `${onTwo} of 2000 on version 2 (expected 200 +- ${(4 * sigma).toFixed(0)})`);
    assert.equal(results.filter((r) => r.version === '1').length, 2000 - onTwo);
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    assert.match(metrics, new RegExp(`tessera_routing_requests_total\\{model="mlp",version="2",reason="split"\\} ${onTwo}\\b`));
  });

  test('sticky keys never flip and spread across versions; a version in the URL, an override header or parameter win', async (t) => {
    const repo = await twoVersions('routing:\n  split: {"1": 50, "2": 50}\n  sticky_key: X-User-Id\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/v2/models/mlp/infer`;
    const users = Array.from({ length: 150 }, (_, i) => `user-${i}`);
    const first = await pool(users.length, 8, (i) => infer(url, { 'x-user-id': users[i]! }));
    const again = await pool(users.length * 3, 8, (i) => infer(url, { 'x-user-id': users[i % users.length]! }));
    again.forEach((r, i) => assert.equal(r.version, first[i % users.length]!.version, `${users[i % users.length]} flipped`));
    const onTwo = first.filter((r) => r.version === '2').length;
    assert.ok(onTwo > 40 && onTwo < 110, `${onTwo} of 150 users on version 2`);

    // Precedence: URL > override header > override parameter > sticky key.
    const stickyTwo = users.find((_, i) => first[i]!.version === '2')!;
    assert.equal((await infer(url, { 'x-user-id': stickyTwo, 'x-model-version': '1' })).version, '1');
    assert.equal((await infer(url, { 'x-user-id': stickyTwo }, { parameters: { model_version: '1' } })).version, '1');
    assert.equal((await infer(url, { 'x-model-version': '1' }, { parameters: { model_version: '2' } })).version, '1', 'the header wins over the parameter');
    assert.equal((await infer(url, { 'x-model-version': '2' }, { parameters: { model_version: '1' } })).version, '2', 'the header wins over the parameter');
    assert.equal((await infer(`${server.httpUrl}/v2/models/mlp/versions/2/infer`, { 'x-model-version': '1' })).version, '2');
    const unknown = await infer(url, { 'x-model-version': '7' });
    assert.equal(unknown.status, 404);
  });

  test('versions a caller names that the model does not have add no metric series or breakers; a refused traffic change changes nothing', async (t) => {
    const repo = await twoVersions('routing:\n  circuit_breaker: {failure_threshold: 3, cooldown: 10s}\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/v2/models/mlp/infer`;
    const admin = `http://127.0.0.1:${server.managementPort}`;
    assert.equal((await infer(url)).status, 200);
    for (const version of ['zz1', '7', '99999', 'constructor']) assert.equal((await infer(url, { 'x-model-version': version })).status, 404, version);
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const series = metrics.split('\n').filter((line) => /^tessera_(routing_requests_total|circuit_state)\{model="mlp"/.test(line));
    assert.ok(series.length > 0);
    for (const line of series) assert.match(line, /version="[12]"/, line);
    const before = (await getJson(`${admin}/models/mlp/rollout`)).body as { circuitBreakers: { version: string }[]; defaultVersion: string | null; events: unknown[] };
    assert.deepEqual(before.circuitBreakers.map((b) => b.version).filter((v) => v !== '1' && v !== '2'), []);
    // A default version that is fine with a split that is not: refused, and the default is not set either.
    const refused = await send(`${admin}/models/mlp/traffic`, 'PUT', { default_version: '2', split: { '9': 10 } });
    assert.ok(refused.status >= 400 && refused.status < 500, String(refused.status));
    const after = (await getJson(`${admin}/models/mlp/rollout`)).body as typeof before;
    assert.equal(after.defaultVersion, before.defaultVersion);
    assert.equal(after.events.length, before.events.length);
    assert.equal((await infer(url)).version, '2', 'still the highest READY version');
  });

  test('blue-green: aliases serve like versions, switch atomically, roll back in one call', async (t) => {
    const repo = await twoVersions('routing:\n  default_version: stable\n  aliases: {stable: 1, candidate: 2}\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const v2 = `${server.httpUrl}/v2/models/mlp`;
    assert.equal((await infer(`${v2}/infer`)).version, '1', 'the default follows the stable alias');
    assert.equal((await infer(`${v2}/versions/stable/infer`)).version, '1');
    assert.equal((await infer(`${v2}/versions/candidate/infer`)).version, '2');
    assert.equal((await infer(`${v2}/infer`, { 'x-model-version': 'candidate' })).version, '2');
    assert.equal((await getJson(`${v2}/versions/candidate/ready`)).status, 200, 'every version endpoint takes an alias');

    // Switch while traffic flows: every answer is a whole version, and after the switch only the new one.
    const during = pool(200, 8, () => infer(`${v2}/versions/stable/infer`));
    const switched = await send(`${admin}/models/mlp/aliases/stable`, 'PUT', { version: '2' });
    assert.equal(switched.status, 200, JSON.stringify(switched.body));
    assert.deepEqual(switched.body['aliases'], { stable: '2', candidate: '2' });
    for (const r of await during) assert.ok(r.version === '1' || r.version === '2');
    for (const r of await pool(50, 8, () => infer(`${v2}/versions/stable/infer`))) assert.equal(r.version, '2');
    assert.equal((await infer(`${v2}/infer`)).version, '2', 'the default follows the alias');
    assert.equal(((await getJson(`${admin}/models/mlp`)).body as { defaultVersion: string }).defaultVersion, '2', 'describe agrees');

    const rolledBack = await send(`${admin}/models/mlp/aliases/stable/rollback`, 'POST');
    assert.equal(rolledBack.status, 200);
    assert.deepEqual(rolledBack.body['aliases'], { stable: '1', candidate: '2' });
    assert.equal((await infer(`${v2}/versions/stable/infer`)).version, '1');
    assert.equal((await send(`${admin}/models/mlp/aliases/stable/rollback`, 'POST')).status, 404, 'nothing left to roll back to');
    assert.equal((await send(`${admin}/models/mlp/aliases/latest`, 'PUT', { version: '1' })).status, 400);
    assert.equal((await send(`${admin}/models/mlp/aliases/beta`, 'PUT', { version: '9' })).status, 404, 'the model has no version 9');
  });

  test('the gRPC front door routes by metadata', async (t) => {
    const repo = await twoVersions('routing:\n  split: {"1": 100}\n');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const definition = loadPackageDefinition(loadSync('grpc_service.proto', { keepCase: true, longs: String, enums: String, defaults: true, includeDirs: [PROJECT_PROTO_DIR] }));
    const Service = ((definition['inference'] as GrpcObject)['GRPCInferenceService'] as ServiceClientConstructor);
    const client = new Service(`127.0.0.1:${server.grpcPort}`, credentials.createInsecure());
    t.after(() => client.close());
    const call = (metadata: Metadata): Promise<{ model_version: string }> =>
      new Promise((resolve, reject) => {
        const fn = client['ModelInfer'] as (request: object, metadata: Metadata, callback: (error: ServiceError | null, response: { model_version: string }) => void) => void;
        fn.call(client, { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: row } }] }, metadata, (error, response) =>
          error === null ? resolve(response) : reject(error),
        );
      });
    assert.equal((await call(new Metadata())).model_version, '1');
    const override = new Metadata();
    override.set('x-model-version', '2');
    assert.equal((await call(override)).model_version, '2');
  });

  test('run-time routing survives a restart: split, default, aliases, shadow and a canary in progress', async (t) => {
    const repo = await twoVersions();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const first = await startTestServer(undefined, repo);
    let admin = `http://127.0.0.1:${first.managementPort}`;
    assert.equal((await send(`${admin}/models/mlp/traffic`, 'PUT', { split: { '1': 70, '2': 30 } })).status, 200);
    assert.equal((await send(`${admin}/models/mlp/aliases/stable`, 'PUT', { version: '1' })).status, 200);
    assert.equal((await send(`${admin}/models/mlp/aliases/stable`, 'PUT', { version: '2' })).status, 200);
    assert.equal((await send(`${admin}/models/mlp/shadow`, 'PUT', { version: '2', share: 0.25 })).status, 200);
    const started = await send(`${admin}/models/mlp/canary`, 'POST', { version: '2', stable: '1', steps: [10, 60, 100], hold: '1h' });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const before = (await getJson(`${admin}/models/mlp/rollout`)).body as Record<string, unknown>;
    await first.close();
    const file = JSON.parse(await readFile(join(repo, '.tessera-routing.json'), 'utf8')) as { models: Record<string, { canary: { phase: string } }> };
    assert.equal(file.models['mlp']?.canary.phase, 'running');

    const second = await startTestServer(t, repo);
    admin = `http://127.0.0.1:${second.managementPort}`;
    const after = (await getJson(`${admin}/models/mlp/rollout`)).body as Record<string, unknown>;
    for (const key of ['split', 'aliases', 'defaultVersion']) assert.deepEqual(after[key], before[key], key);
    assert.deepEqual(after['split'], { '1': 70, '2': 30 });
    assert.deepEqual(after['aliases'], { stable: '2' });
    const shadow = after['shadow'] as { version: string; share: number };
    assert.deepEqual([shadow.version, shadow.share], ['2', 0.25]);
    const canary = after['canary'] as { phase: string; share: number; stepIndex: number; version: string; stable: string; history: { decision: string }[] };
    assert.deepEqual([canary.phase, canary.version, canary.stable, canary.stepIndex, canary.share], ['running', '2', '1', 0, 10]);
    assert.deepEqual(canary.history.map((d) => d.decision), ['start', 'resume']);
    // The rollback back to the old alias value survives too.
    assert.deepEqual((await send(`${admin}/models/mlp/aliases/stable/rollback`, 'POST')).body['aliases'], { stable: '1' });
    // Abort, restart again: the finished canary's record (and why) is kept, and nothing restarts it.
    assert.equal((await send(`${admin}/models/mlp/canary`, 'DELETE')).status, 200);
    await second.close();
    const third = await startTestServer(t, repo);
    const last = (await getJson(`http://127.0.0.1:${third.managementPort}/models/mlp/rollout`)).body as { canary: { phase: string; reason: string }; aliases: unknown };
    assert.equal(last.canary.phase, 'aborted');
    assert.equal(last.canary.reason, 'aborted by the operator');
    assert.deepEqual(last.aliases, { stable: '1' });
  });
});

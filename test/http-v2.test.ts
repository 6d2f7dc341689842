/**
 * End-to-end tests of the KServe V2 / Open Inference Protocol REST API: a real Tessera server
 * on 127.0.0.1 over a temporary repository of generated ONNX models, spoken to over real HTTP.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Agent, fetch as undiciFetch } from 'undici';

import type { TesseraServer } from '../src/server/server.js';
import {
  addModel,
  calibratedSlowModel,
  defaultMlpWeights,
  identityModel,
  makeTempRepository,
  mlpModel,
  mlpReference,
  seededMlpWeights,
  writeModel,
} from './support/fixtures.js';
import { getJson, startTestServer } from './support/server.js';

// ---------------------------------------------------------------------------
// Wire shapes and helpers
// ---------------------------------------------------------------------------

interface V2Output {
  readonly name: string;
  readonly datatype: string;
  readonly shape: number[];
  readonly data: unknown[];
}

interface V2Response {
  readonly id?: string;
  readonly model_name: string;
  readonly model_version: string;
  readonly outputs: V2Output[];
}

interface TensorMeta {
  readonly name: string;
  readonly datatype: string;
  readonly shape: number[];
}

interface ModelMeta {
  readonly name: string;
  readonly versions: string[];
  readonly platform: string;
  readonly inputs: TensorMeta[];
  readonly outputs: TensorMeta[];
}

interface IndexEntry {
  readonly name: string;
  readonly version?: string;
  readonly state: string;
  readonly reason: string;
}

interface Duration {
  readonly count: number;
  readonly ns: number;
}

interface StatsEntry {
  readonly name: string;
  readonly version: string;
  readonly last_inference: number;
  readonly inference_count: number;
  readonly execution_count: number;
  readonly inference_stats: Readonly<Record<'success' | 'fail' | 'queue' | 'compute_input' | 'compute_infer' | 'compute_output', Duration>>;
  readonly batch_stats: { batch_size: number; compute_infer: Duration }[];
}

function errorOf(body: unknown): string {
  assert.ok(typeof body === 'object' && body !== null && 'error' in body, `expected a V2 error object, got ${JSON.stringify(body)}`);
  const message = (body as { error: unknown }).error;
  assert.equal(typeof message, 'string');
  return message as string;
}

function outputOf(response: V2Response, name: string): V2Output {
  const output = response.outputs.find((o) => o.name === name);
  assert.ok(output !== undefined, `response has no output '${name}': ${JSON.stringify(response.outputs.map((o) => o.name))}`);
  return output;
}

function numbers(data: unknown[]): number[] {
  return data.map((v) => {
    assert.equal(typeof v, 'number', `expected numeric data, got ${JSON.stringify(v)}`);
    return v as number;
  });
}

function assertClose(actual: readonly number[], expected: ArrayLike<number>, tolerance: number): void {
  assert.equal(actual.length, expected.length, `length: got ${actual.length}, expected ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const want = expected[i]!;
    const got = actual[i]!;
    assert.ok(Math.abs(got - want) <= tolerance, `element ${i}: got ${got}, expected ${want} (tolerance ${tolerance})`);
  }
}

/** POST JSON through `dispatcher` (default: the global keep-alive pool) and parse the answer. */
async function postJson(url: string, body: unknown, headers: Record<string, string> = {}, dispatcher?: Agent): Promise<{ status: number; body: unknown }> {
  const init = { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
  const response = dispatcher === undefined ? await fetch(url, init) : await undiciFetch(url, { ...init, dispatcher });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** POST JSON on a fresh connection that closes after the response (node:http, no agent). */
function postWithoutKeepAlive(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = httpRequest(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : (JSON.parse(text) as unknown) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function infer(base: string, model: string, body: unknown, version?: string): Promise<{ status: number; body: unknown }> {
  const url = version === undefined ? `${base}/v2/models/${model}/infer` : `${base}/v2/models/${model}/versions/${version}/infer`;
  const { status, body: parsed } = await postJson(url, body);
  return { status, body: parsed };
}

async function inferOk(base: string, model: string, body: unknown, version?: string): Promise<V2Response> {
  const { status, body: parsed } = await infer(base, model, body, version);
  assert.equal(status, 200, `infer on '${model}' answered ${status}: ${JSON.stringify(parsed)}`);
  return parsed as V2Response;
}

/** Resolves true when something accepts TCP connections on 127.0.0.1:port, false on ECONNREFUSED. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      if (error.code === 'ECONNREFUSED') resolve(false);
      else reject(error);
    });
  });
}

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// The main repository: healthy models of every kind, and three broken ones
// ---------------------------------------------------------------------------

const MLP_WEIGHTS = defaultMlpWeights();
const V1_WEIGHTS = seededMlpWeights([4, 8, 3], 1);
const V2_WEIGHTS = seededMlpWeights([4, 8, 3], 2);

const ADD_CONFIG = `
max_batch_size: 4
input:
  - name: a
    data_type: TYPE_FP32
    dims: [4]
  - name: b
    data_type: TYPE_FP32
    dims: [4]
output:
  - name: sum
    data_type: TYPE_FP32
  - name: diff
    data_type: TYPE_FP32
`;

async function buildMainRepository(): Promise<string> {
  const repo = await makeTempRepository('tessera-http-v2-');
  await writeModel(repo, 'mlp', 1, mlpModel(MLP_WEIGHTS));
  await writeModel(repo, 'stats_mlp', 1, mlpModel(MLP_WEIGHTS));
  await writeModel(repo, 'add', 1, addModel(), { 'config.yaml': ADD_CONFIG });
  await writeModel(repo, 'id_int64', 1, identityModel('INT64', [-1, 3]));
  await writeModel(repo, 'id_bytes', 1, identityModel('BYTES', [-1]));
  await writeModel(repo, 'id_bool', 1, identityModel('BOOL', [-1, 2]));
  await writeModel(repo, 'versioned', 1, mlpModel(V1_WEIGHTS));
  await writeModel(repo, 'versioned', 2, mlpModel(V2_WEIGHTS), { 'config.yaml': 'version_policy:\n  all: {}\n' });
  // Broken models beside the healthy ones.
  await writeModel(repo, 'garbage', 1, new TextEncoder().encode('this is not an ONNX protobuf, just text'));
  await mkdir(path.join(repo, 'no_version'), { recursive: true });
  await writeFile(path.join(repo, 'no_version', 'config.yaml'), 'max_batch_size: 2\n');
  await writeModel(repo, 'bad_config', 1, mlpModel(MLP_WEIGHTS), { 'config.yaml': 'max_batch_size: lots\n' });
  return repo;
}

const HEALTHY = ['add', 'id_bool', 'id_bytes', 'id_int64', 'mlp', 'stats_mlp', 'versioned'];

describe('V2 REST API over a real server', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';

  before(async () => {
    repo = await buildMainRepository();
    server = await startTestServer(undefined, repo);
    base = server.httpUrl;
  });

  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('GET /v2 reports name, version and extensions', async () => {
    const { status, body } = await getJson(`${base}/v2`);
    assert.equal(status, 200);
    const meta = body as { name: string; version: string; extensions: string[] };
    assert.equal(meta.name, 'tessera');
    assert.equal(meta.version, PACKAGE_VERSION);
    assert.ok(Array.isArray(meta.extensions));
    for (const extension of ['model_repository', 'model_configuration', 'statistics']) {
      assert.ok(meta.extensions.includes(extension), `extensions lack '${extension}': ${meta.extensions.join(', ')}`);
    }
  });

  test('GET /v2/health/live is 200 live; /v2/health/ready is 503 while (strict) models are unavailable', async () => {
    assert.deepEqual(await getJson(`${base}/v2/health/live`), { status: 200, body: { live: true } });
    assert.deepEqual(await getJson(`${base}/v2/health/ready`), { status: 503, body: { ready: false } });
  });

  test('GET /v2/models/{m} and /versions/{v}: metadata with -1 batch dims', async () => {
    const { status, body } = await getJson(`${base}/v2/models/mlp`);
    assert.equal(status, 200);
    assert.deepEqual(body, {
      name: 'mlp',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'probs', datatype: 'FP32', shape: [-1, 3] }],
    });
    const versioned = await getJson(`${base}/v2/models/mlp/versions/1`);
    assert.deepEqual(versioned, { status: 200, body });

    const add = (await getJson(`${base}/v2/models/add`)).body as ModelMeta;
    assert.deepEqual(add.inputs, [
      { name: 'a', datatype: 'FP32', shape: [-1, 4] },
      { name: 'b', datatype: 'FP32', shape: [-1, 4] },
    ]);
    assert.deepEqual(add.outputs.map((o) => o.name), ['sum', 'diff']);
    const bytes = (await getJson(`${base}/v2/models/id_bytes`)).body as ModelMeta;
    assert.deepEqual(bytes.inputs, [{ name: 'x', datatype: 'BYTES', shape: [-1] }]);
  });

  test('GET .../ready for models and versions', async () => {
    assert.deepEqual(await getJson(`${base}/v2/models/mlp/ready`), { status: 200, body: { name: 'mlp', ready: true } });
    assert.deepEqual(await getJson(`${base}/v2/models/versioned/versions/1/ready`), { status: 200, body: { name: 'versioned', ready: true } });
    assert.deepEqual(await getJson(`${base}/v2/models/versioned/versions/2/ready`), { status: 200, body: { name: 'versioned', ready: true } });
    assert.deepEqual(await getJson(`${base}/v2/models/garbage/ready`), { status: 503, body: { name: 'garbage', ready: false } });
    assert.equal((await getJson(`${base}/v2/models/versioned/versions/3/ready`)).status, 404);
    assert.equal((await getJson(`${base}/v2/models/nope/ready`)).status, 404);
  });

  test('GET .../config has the Triton ModelConfig JSON shape', async () => {
    const { status, body } = await getJson(`${base}/v2/models/mlp/config`);
    assert.equal(status, 200);
    const config = body as Record<string, unknown>;
    assert.equal(config['name'], 'mlp');
    assert.equal(config['platform'], 'onnxruntime_onnx');
    assert.equal(config['backend'], 'onnxruntime');
    // No config file: a model with variable first dims batches up to the server default (8).
    assert.equal(config['max_batch_size'], 8);
    assert.deepEqual(config['input'], [{ name: 'x', data_type: 'TYPE_FP32', dims: [4] }]);
    assert.deepEqual(config['output'], [{ name: 'probs', data_type: 'TYPE_FP32', dims: [3] }]);
    assert.deepEqual(config['version_policy'], { latest: { num_versions: 1 } });
    // No instance_group: two CPU instances, as Triton's default (one on a single core).
    assert.deepEqual(config['instance_group'], [{ name: 'mlp', kind: 'KIND_CPU', count: Math.min(2, availableParallelism()) }]);
    assert.equal(config['default_model_filename'], 'model.onnx');
    assert.ok(typeof config['dynamic_batching'] === 'object' && config['dynamic_batching'] !== null, 'batching models report dynamic_batching');

    const add = (await getJson(`${base}/v2/models/add/versions/1/config`)).body as Record<string, unknown>;
    assert.equal(add['max_batch_size'], 4);
    assert.deepEqual(add['input'], [
      { name: 'a', data_type: 'TYPE_FP32', dims: [4] },
      { name: 'b', data_type: 'TYPE_FP32', dims: [4] },
    ]);
    assert.deepEqual(add['output'], [
      { name: 'sum', data_type: 'TYPE_FP32', dims: [4] },
      { name: 'diff', data_type: 'TYPE_FP32', dims: [4] },
    ]);
    const bytes = (await getJson(`${base}/v2/models/id_bytes/config`)).body as Record<string, unknown>;
    assert.deepEqual(bytes['input'], [{ name: 'x', data_type: 'TYPE_STRING', dims: [] }]);
    const versioned = (await getJson(`${base}/v2/models/versioned/config`)).body as Record<string, unknown>;
    assert.deepEqual(versioned['version_policy'], { all: {} });
  });

  test('GET .../stats counts requests, rows, executions and batch sizes exactly', async () => {
    const before = await getJson(`${base}/v2/models/stats_mlp/stats`);
    assert.equal(before.status, 200);
    const [initial] = (before.body as { model_stats: StatsEntry[] }).model_stats;
    assert.ok(initial !== undefined);
    assert.equal(initial.name, 'stats_mlp');
    assert.equal(initial.version, '1');
    assert.equal(initial.inference_count, 0, 'warm-up runs are not counted');
    assert.equal(initial.execution_count, 0);
    assert.equal(initial.last_inference, 0);

    await inferOk(base, 'stats_mlp', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    await inferOk(base, 'stats_mlp', { inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], data: new Array<number>(12).fill(0.5) }] });
    const rejected = await infer(base, 'stats_mlp', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], data: [1, 2, 3, 4, 5] }] });
    assert.equal(rejected.status, 400);

    const afterStats = await getJson(`${base}/v2/models/stats_mlp/versions/1/stats`);
    assert.equal(afterStats.status, 200);
    const entries = (afterStats.body as { model_stats: StatsEntry[] }).model_stats;
    assert.equal(entries.length, 1);
    const stats = entries[0]!;
    assert.equal(stats.inference_count, 4, 'rows inferred: 1 + 3');
    assert.equal(stats.execution_count, 2);
    assert.equal(stats.inference_stats.success.count, 2);
    assert.equal(stats.inference_stats.fail.count, 1);
    assert.equal(stats.inference_stats.compute_infer.count, 2);
    assert.ok(stats.inference_stats.success.ns > 0);
    assert.ok(stats.last_inference > 0 && stats.last_inference <= Date.now());
    assert.deepEqual(stats.batch_stats.map((b) => [b.batch_size, b.compute_infer.count]), [
      [1, 1],
      [3, 1],
    ]);

    const all = await getJson(`${base}/v2/models/stats`);
    assert.equal(all.status, 200);
    const names = (all.body as { model_stats: StatsEntry[] }).model_stats.map((e) => `${e.name}:${e.version}`);
    for (const expected of ['mlp:1', 'stats_mlp:1', 'versioned:1', 'versioned:2']) assert.ok(names.includes(expected), `all-model stats lack ${expected}`);
    assert.equal((await getJson(`${base}/v2/models/nope/stats`)).status, 404);
  });

  test('POST .../infer: MLP batch 1 (flat data) matches the reference within 1e-5', async () => {
    const x = [0.5, -1.25, 3.0, 0.125];
    const response = await inferOk(base, 'mlp', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] });
    assert.equal(response.model_name, 'mlp');
    assert.equal(response.model_version, '1');
    assert.equal(response.id, undefined, 'no id is invented when the request has none');
    assert.equal(response.outputs.length, 1);
    const probs = outputOf(response, 'probs');
    assert.equal(probs.datatype, 'FP32');
    assert.deepEqual(probs.shape, [1, 3]);
    assertClose(numbers(probs.data), mlpReference(MLP_WEIGHTS, x), 1e-5);
  });

  test('POST .../infer: MLP batch 3, nested and flat data give the same reference answer; id and parameters', async () => {
    const rows = [
      [0.1, 0.2, 0.3, 0.4],
      [-2, 1.5, 0, 7],
      [10, -10, 0.001, -0.5],
    ];
    const expected = mlpReference(MLP_WEIGHTS, rows.flat());
    const nested = await inferOk(base, 'mlp', {
      id: 'req-nested-42',
      parameters: { custom: 'value', flag: true, priority: 1, timeout: 5_000_000 },
      inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], data: rows, parameters: { note: 'nested' } }],
      outputs: [{ name: 'probs' }],
    });
    assert.equal(nested.id, 'req-nested-42');
    assert.equal(nested.model_version, '1');
    const nestedProbs = outputOf(nested, 'probs');
    assert.deepEqual(nestedProbs.shape, [3, 3]);
    assertClose(numbers(nestedProbs.data), expected, 1e-5);

    const flat = await inferOk(base, 'mlp', { id: 'req-flat', inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], data: rows.flat() }] });
    assert.equal(flat.id, 'req-flat');
    assert.deepEqual(outputOf(flat, 'probs').data, nestedProbs.data);
    // Each row is a probability distribution.
    for (let r = 0; r < 3; r++) {
      const sum = numbers(nestedProbs.data).slice(r * 3, r * 3 + 3).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-5, `row ${r} sums to ${sum}`);
    }
  });

  test('POST .../infer: two inputs, two outputs; requested output subsets and order', async () => {
    const a = [1, 2, 3, 4, 5, 6, 7, 8];
    const b = [0.5, -1, 10, 0, -5, 6.25, 0.125, 100];
    const both = await inferOk(base, 'add', {
      inputs: [
        { name: 'b', datatype: 'FP32', shape: [2, 4], data: b },
        { name: 'a', datatype: 'FP32', shape: [2, 4], data: a },
      ],
    });
    assert.deepEqual(both.outputs.map((o) => o.name), ['sum', 'diff'], 'all outputs, in model order');
    assert.deepEqual(outputOf(both, 'sum').data, a.map((v, i) => Math.fround(v + b[i]!)));
    assert.deepEqual(outputOf(both, 'diff').data, a.map((v, i) => Math.fround(v - b[i]!)));
    assert.deepEqual(outputOf(both, 'sum').shape, [2, 4]);

    const onlyDiff = await inferOk(base, 'add', {
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [2, 4], data: a },
        { name: 'b', datatype: 'FP32', shape: [2, 4], data: b },
      ],
      outputs: [{ name: 'diff' }],
    });
    assert.deepEqual(onlyDiff.outputs.map((o) => o.name), ['diff']);
    assert.deepEqual(outputOf(onlyDiff, 'diff').data, a.map((v, i) => Math.fround(v - b[i]!)));

    const reversed = await inferOk(base, 'add', {
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [2, 4], data: a },
        { name: 'b', datatype: 'FP32', shape: [2, 4], data: b },
      ],
      outputs: [{ name: 'diff' }, { name: 'sum' }],
    });
    assert.deepEqual(reversed.outputs.map((o) => o.name), ['diff', 'sum'], 'outputs in the order requested');
  });

  test('POST .../infer: concurrent requests (batched together or not) each get their own rows', async () => {
    const requests = Array.from({ length: 24 }, (_, r) => {
      const rows = (r % 3) + 1;
      return Array.from({ length: rows * 4 }, (_v, k) => Math.sin(r * 31 + k) * 3);
    });
    const responses = await Promise.all(
      requests.map((x, r) => inferOk(base, 'mlp', { id: `c${r}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [x.length / 4, 4], data: x }] })),
    );
    responses.forEach((response, r) => {
      const x = requests[r]!;
      assert.equal(response.id, `c${r}`);
      const probs = outputOf(response, 'probs');
      assert.deepEqual(probs.shape, [x.length / 4, 3]);
      assertClose(numbers(probs.data), mlpReference(MLP_WEIGHTS, x), 1e-5);
    });
  });

  test('POST .../infer: INT64 identity keeps values beyond 2^31 exactly', async () => {
    const values = [3_000_000_000, -5_000_000_000, 2 ** 53 - 1, -(2 ** 53 - 1), 0, 2 ** 31];
    const response = await inferOk(base, 'id_int64', { inputs: [{ name: 'x', datatype: 'INT64', shape: [2, 3], data: values }] });
    const y = outputOf(response, 'y');
    assert.equal(y.datatype, 'INT64');
    assert.deepEqual(y.shape, [2, 3]);
    assert.deepEqual(y.data, values);
  });

  test('POST .../infer: BYTES identity round-trips utf-8 strings', async () => {
    const strings = ['hello', 'héllo wörld', '日本語テキスト', '🦊 emoji', '', 'quote " and \\ backslash'];
    const response = await inferOk(base, 'id_bytes', { inputs: [{ name: 'x', datatype: 'BYTES', shape: [strings.length], data: strings }] });
    const y = outputOf(response, 'y');
    assert.equal(y.datatype, 'BYTES');
    assert.deepEqual(y.shape, [strings.length]);
    assert.deepEqual(y.data, strings);
  });

  test('POST .../infer: BOOL identity', async () => {
    const values = [true, false, false, true, true, true];
    const response = await inferOk(base, 'id_bool', { inputs: [{ name: 'x', datatype: 'BOOL', shape: [3, 2], data: [[true, false], [false, true], [true, true]] }] });
    const y = outputOf(response, 'y');
    assert.equal(y.datatype, 'BOOL');
    assert.deepEqual(y.shape, [3, 2]);
    assert.deepEqual(y.data, values);
  });

  test('versions: all policy serves 1 and 2 by explicit version; the default is the highest', async () => {
    const meta = await getJson(`${base}/v2/models/versioned`);
    assert.equal(meta.status, 200);
    assert.deepEqual((meta.body as ModelMeta).versions, ['1', '2']);

    const x = [0.3, -0.7, 1.1, 2.2];
    const body = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] };
    const ref1 = mlpReference(V1_WEIGHTS, x);
    const ref2 = mlpReference(V2_WEIGHTS, x);
    // The two versions must be told apart by their answers.
    assert.ok(Math.abs(ref1[0]! - ref2[0]!) > 1e-3);

    const v1 = await inferOk(base, 'versioned', body, '1');
    assert.equal(v1.model_version, '1');
    assertClose(numbers(outputOf(v1, 'probs').data), ref1, 1e-5);
    const v2 = await inferOk(base, 'versioned', body, '2');
    assert.equal(v2.model_version, '2');
    assertClose(numbers(outputOf(v2, 'probs').data), ref2, 1e-5);
    const latest = await inferOk(base, 'versioned', body);
    assert.equal(latest.model_version, '2');
    assertClose(numbers(outputOf(latest, 'probs').data), ref2, 1e-5);

    const missing = await infer(base, 'versioned', body, '3');
    assert.equal(missing.status, 404);
    assert.match(errorOf(missing.body), /no version '3'.*1, 2/);
  });

  test('POST /v2/repository/index lists every model with state and reason; {"ready": true} only ready ones', async () => {
    for (const requestBody of [undefined, {}]) {
      const response = await fetch(`${base}/v2/repository/index`, {
        method: 'POST',
        ...(requestBody === undefined ? {} : { body: JSON.stringify(requestBody), headers: { 'content-type': 'application/json' } }),
      });
      assert.equal(response.status, 200);
      const index = (await response.json()) as IndexEntry[];
      const rows = index.map((e) => `${e.name}:${e.version ?? '-'}:${e.state}`);
      assert.deepEqual(rows, [
        'add:1:READY',
        'bad_config:-:UNAVAILABLE',
        'garbage:1:UNAVAILABLE',
        'id_bool:1:READY',
        'id_bytes:1:READY',
        'id_int64:1:READY',
        'mlp:1:READY',
        'no_version:-:UNAVAILABLE',
        'stats_mlp:1:READY',
        'versioned:1:READY',
        'versioned:2:READY',
      ]);
      for (const entry of index) {
        if (entry.state === 'READY') assert.equal(entry.reason, '');
        else assert.notEqual(entry.reason, '');
      }
    }
    const ready = await postJson(`${base}/v2/repository/index`, { ready: true });
    assert.equal(ready.status, 200);
    const readyIndex = ready.body as IndexEntry[];
    assert.deepEqual(
      readyIndex.map((e) => `${e.name}:${e.version}`),
      ['add:1', 'id_bool:1', 'id_bytes:1', 'id_int64:1', 'mlp:1', 'stats_mlp:1', 'versioned:1', 'versioned:2'],
    );
    assert.ok(readyIndex.every((e) => e.state === 'READY' && e.reason === ''));
  });

  test('unavailable models say why in the index and in a 503 on infer; healthy models still serve', async () => {
    const index = (await postJson(`${base}/v2/repository/index`, {})).body as IndexEntry[];
    const reasonOf = (name: string): string => {
      const entry = index.find((e) => e.name === name);
      assert.ok(entry !== undefined, `index lacks '${name}'`);
      assert.equal(entry.state, 'UNAVAILABLE');
      return entry.reason;
    };
    const garbageReason = reasonOf('garbage');
    assert.match(garbageReason, /onnxruntime could not load .*garbage[/\\]1[/\\]model\.onnx/);
    const noVersionReason = reasonOf('no_version');
    assert.match(noVersionReason, /no version directories/);
    const badConfigReason = reasonOf('bad_config');
    assert.match(badConfigReason, /invalid config\.yaml: max_batch_size/);

    const body = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };
    for (const [model, reason] of [
      ['garbage', garbageReason],
      ['no_version', noVersionReason],
      ['bad_config', badConfigReason],
    ] as const) {
      const answer = await infer(base, model, body);
      assert.equal(answer.status, 503, `${model}: ${JSON.stringify(answer.body)}`);
      const message = errorOf(answer.body);
      assert.ok(message.includes(model), `message names the model: ${message}`);
      assert.ok(message.includes(reason), `message carries the reason '${reason}': ${message}`);
      assert.equal((await getJson(`${base}/v2/models/${model}/ready`)).status, 503);
    }
    const healthy = await inferOk(base, 'mlp', body);
    assertClose(numbers(outputOf(healthy, 'probs').data), mlpReference(MLP_WEIGHTS, [1, 2, 3, 4]), 1e-5);
    for (const name of HEALTHY) assert.equal((await getJson(`${base}/v2/models/${name}/ready`)).status, 200, `${name} is ready`);
  });
});

// ---------------------------------------------------------------------------
// Readiness policy
// ---------------------------------------------------------------------------

describe('server readiness with an unavailable model', () => {
  let repo = '';
  before(async () => {
    repo = await makeTempRepository('tessera-http-ready-');
    await writeModel(repo, 'good', 1, identityModel('FP32', [-1, 4]));
    await writeModel(repo, 'broken', 1, new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]));
  });
  after(async () => {
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('strictReadiness: false → ready 200; default (true) → 503', async (t) => {
    const lenient = await startTestServer(t, repo, { strictReadiness: false });
    assert.deepEqual(await getJson(`${lenient.httpUrl}/v2/health/ready`), { status: 200, body: { ready: true } });
    const strict = await startTestServer(t, repo);
    assert.deepEqual(await getJson(`${strict.httpUrl}/v2/health/ready`), { status: 503, body: { ready: false } });
    // Both still serve the healthy model and refuse the broken one with 503.
    for (const server of [lenient, strict]) {
      const good = await inferOk(server.httpUrl, 'good', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
      assert.deepEqual(outputOf(good, 'y').data, [1, 2, 3, 4]);
      const broken = await infer(server.httpUrl, 'broken', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
      assert.equal(broken.status, 503);
    }
  });

  test('a repository of only healthy models is ready under strict readiness', async (t) => {
    const only = await makeTempRepository('tessera-http-ready-ok-');
    t.after(() => rm(only, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(only, 'good', 1, identityModel('FP32', [-1, 4]));
    const server = await startTestServer(t, only);
    assert.deepEqual(await getJson(`${server.httpUrl}/v2/health/ready`), { status: 200, body: { ready: true } });
  });
});

// ---------------------------------------------------------------------------
// Liveness under load, and clean shutdown, with a slow model
// ---------------------------------------------------------------------------

/** Milliseconds one run of the slow model takes (requested; calibrated on this machine). */
const SLOW_MS = 500;
const SLOW_CONFIG = 'max_batch_size: 8\ninstance_group:\n  count: 1\nwarmup:\n  enabled: false\n';

describe('with a slow model (~500 ms a run)', () => {
  let repo = '';
  before(async () => {
    repo = await makeTempRepository('tessera-http-slow-');
    await writeModel(repo, 'slow', 1, await calibratedSlowModel(SLOW_MS), { 'config.yaml': SLOW_CONFIG });
  });
  after(async () => {
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('GET /v2/health/live answers while an inference runs: inference does not hold the event loop', async (t) => {
    const server = await startTestServer(t, repo);
    const live = `${server.httpUrl}/v2/health/live`;
    // Warm-up, not measured: the first requests open the connection and run the code paths
    // of both routes (and the model's first run) once.
    assert.equal((await fetch(live)).status, 200);
    await inferOk(server.httpUrl, 'slow', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] }] });

    let done = false;
    const started = performance.now();
    const running = inferOk(server.httpUrl, 'slow', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }).then((r) => {
      done = true;
      return r;
    });
    await sleep(30);
    // Liveness, asked again and again until the inference ends. Had the inference run on the
    // server's event loop, the first of them would have waited for it to end.
    const whileRunning: number[] = [];
    while (!done && whileRunning.length < 50) {
      const t0 = performance.now();
      const response = await fetch(live);
      const body = (await response.json()) as unknown;
      assert.equal(response.status, 200);
      assert.deepEqual(body, { live: true });
      if (!done) whileRunning.push(performance.now() - t0);
      await sleep(10);
    }
    const response = await running;
    const elapsed = performance.now() - started;
    t.diagnostic(`inference took ${elapsed.toFixed(0)} ms; live latencies while it ran (ms): ${whileRunning.map((l) => l.toFixed(1)).join(' ')}`);
    assert.deepEqual(outputOf(response, 'y').data, [1, 2, 3, 4]);
    assert.ok(whileRunning.length >= 3, `only ${whileRunning.length} liveness answers arrived during a ${elapsed.toFixed(0)} ms inference`);
    // Each took a small part of the inference's time.
    const slowest = Math.max(...whileRunning);
    assert.ok(slowest < elapsed / 4, `slowest /v2/health/live took ${slowest.toFixed(1)} ms during a ${elapsed.toFixed(0)} ms inference`);
  });

  test('close(): running and queued requests complete, new connections are refused, close is idempotent', async (t) => {
    const server = await startTestServer(t, repo);
    const port = server.httpPort;
    assert.equal(await accepts(port), true);
    const body = (id: string, x: number[]): object => ({ id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] });
    // Clients that do not keep their connection alive (keep-alive is the next test).
    const url = `${server.httpUrl}/v2/models/slow/infer`;
    let settled = 0;
    const running = postWithoutKeepAlive(url, body('running', [4, 3, 2, 1])).finally(() => settled++);
    await sleep(40);
    // The one instance is busy: this one waits in the queue.
    const queued = postWithoutKeepAlive(url, body('queued', [5, 6, 7, 8])).finally(() => settled++);
    await sleep(30);
    const closeStarted = performance.now();
    const closing = server.close();
    const again = server.close();
    assert.equal(server.engine.isReady(), false, 'readiness turns false as soon as close starts');
    await sleep(20);
    const acceptsWhileDraining = await accepts(port);
    const settledWhileChecking = settled;
    await Promise.all([closing, again]);
    const closeMs = performance.now() - closeStarted;
    t.diagnostic(`close took ${closeMs.toFixed(0)} ms`);
    assert.equal(settledWhileChecking, 0, 'both requests were still being served when new connections were tried');
    assert.equal(acceptsWhileDraining, false, 'new connections are refused once close starts');
    for (const [promise, id, x] of [
      [running, 'running', [4, 3, 2, 1]],
      [queued, 'queued', [5, 6, 7, 8]],
    ] as const) {
      const answer = await promise;
      assert.equal(answer.status, 200, `the ${id} request failed: ${JSON.stringify(answer.body)}`);
      const response = answer.body as V2Response;
      assert.equal(response.id, id);
      assert.deepEqual(outputOf(response, 'y').data, x);
    }
    assert.ok(closeMs < 5_000, `close took ${closeMs.toFixed(0)} ms`);
    assert.equal(await accepts(port), false, 'the port still accepts connections after close');
    await server.close();
  });

  test(
    'close() does not wait for the keep-alive timeout of a connection that carried an in-flight request',
    async (t) => {
      const server = await startTestServer(t, repo);
      const agent = new Agent({ keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
      try {
        const inFlight = postJson(`${server.httpUrl}/v2/models/slow/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] }] }, {}, agent);
        await sleep(100);
        const started = performance.now();
        const closed = server.close().then(() => performance.now() - started);
        const answer = await inFlight;
        assert.equal(answer.status, 200);
        const limit = sleep(3_000).then(() => Infinity);
        const closeMs = await Promise.race([closed, limit]);
        assert.ok(closeMs < 3_000, 'close() still waits for the idle keep-alive connection 3 s after the last response');
      } finally {
        // Let the server finish closing whatever the outcome.
        await agent.destroy();
      }
    },
  );
});

/**
 * Managed-cloud container contracts against a real server: SageMaker (/ping, /invocations,
 * /execution-parameters), Vertex AI (AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE, colons included),
 * Azure ML (GET /, POST /score); single-model selection; and how the CLI turns the platforms'
 * environment variables into configuration.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { platformNotes, resolveServerConfig } from '../src/cli/config-sources.js';
import type { TesseraServer } from '../src/server/server.js';
import { addModel, defaultMlpWeights, makeTempRepository, mlpModel, mlpReference, writeModel } from './support/fixtures.js';
import { getJson, postJson, startTestServer } from './support/server.js';

const ROWS = [
  [5.1, 3.5, 1.4, 0.2],
  [-1, 0.5, 2, 3],
];
const EXPECTED = mlpReference(defaultMlpWeights(), ROWS.flat());
const HEALTH = '/v1/endpoints/123/deployedModels/456';
const PREDICT = '/v1/endpoints/123/deployedModels/456:predict';

function assertRowsClose(actual: unknown, expected: ArrayLike<number> = EXPECTED, width = 3): void {
  const rows = actual as number[][];
  assert.equal(rows.length * width, expected.length, JSON.stringify(actual));
  rows.forEach((row, r) => row.forEach((value, c) => assert.ok(Math.abs(value - expected[r * width + c]!) < 1e-5, `row ${r} col ${c}: ${value}`)));
}

function errorOf(answer: { body: unknown }): string {
  const body = answer.body as { error?: unknown };
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(typeof body.error, 'string');
  return body.error as string;
}

describe('SageMaker, Vertex AI and Azure ML adapters (one-model repository)', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';

  before(async () => {
    repo = await makeTempRepository();
    await writeModel(repo, 'mlp', 1, mlpModel());
    server = await startTestServer(undefined, repo, { sagemaker: true, vertex: true, vertexHealthRoute: HEALTH, vertexPredictRoute: PREDICT, azureml: true });
    base = server.httpUrl;
  });
  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('SageMaker: GET /ping 200; POST /invocations {"instances"} → {"predictions"} from the only model', async () => {
    assert.equal((await getJson(`${base}/ping`)).status, 200);
    const answer = await postJson(`${base}/invocations`, { instances: ROWS });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assertRowsClose((answer.body as { predictions: unknown }).predictions);
  });

  test('SageMaker: a V2 request answers a V2 response; columnar {"inputs"} answers {"outputs"}', async () => {
    const v2 = await postJson(`${base}/invocations`, { id: 'sm', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: ROWS.flat() }] });
    assert.equal(v2.status, 200, JSON.stringify(v2.body));
    const response = v2.body as { id: string; model_name: string; outputs: { name: string; shape: number[]; data: number[] }[] };
    assert.equal(response.id, 'sm');
    assert.equal(response.model_name, 'mlp');
    assert.deepEqual(response.outputs[0]!.shape, [2, 3]);
    assertRowsClose([response.outputs[0]!.data], EXPECTED, 6);
    const columnar = await postJson(`${base}/invocations`, { inputs: ROWS });
    assertRowsClose((columnar.body as { outputs: unknown }).outputs);
  });

  test('SageMaker: JSON only (415 naming what is accepted); bad bodies 400 {"error"}; /execution-parameters', async () => {
    const csv = await fetch(`${base}/invocations`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: '1,2,3,4\n' });
    assert.equal(csv.status, 415);
    assert.match(errorOf({ body: await csv.json() }), /text\/csv.*application\/json/);
    const neither = await postJson(`${base}/invocations`, { rows: ROWS });
    assert.equal(neither.status, 400);
    assert.match(errorOf(neither), /neither a V2 inference request nor TF Serving-style/);
    const shape = await postJson(`${base}/invocations`, { instances: [[1, 2, 3]] });
    assert.equal(shape.status, 400);
    assert.match(errorOf(shape), /expected shape \[-1,4\], got \[1,3\]/);
    const parameters = await getJson(`${base}/execution-parameters`);
    assert.deepEqual(parameters, { status: 200, body: { MaxConcurrentTransforms: 1, BatchStrategy: 'MULTI_RECORD', MaxPayloadInMB: 64 } });
  });

  test('Vertex AI: the health route (200 when ready) and the predict route with a colon; parameters ignored', async () => {
    assert.deepEqual(await getJson(`${base}${HEALTH}`), { status: 200, body: { status: 'Healthy' } });
    const answer = await postJson(`${base}${PREDICT}`, { instances: ROWS, parameters: { confidence: 0.5 } });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(Object.keys(answer.body as object), ['predictions']);
    assertRowsClose((answer.body as { predictions: unknown }).predictions);
    const missing = await postJson(`${base}${PREDICT}`, { inputs: ROWS });
    assert.equal(missing.status, 400);
    assert.match(errorOf(missing), /\{"instances": \[\.\.\.\]/);
    assert.equal((await getJson(`${base}${PREDICT}`)).status, 404);
  });

  test('Azure ML: GET / is live; POST /score takes input_data (plain or split), data, instances or V2', async () => {
    assert.deepEqual(await getJson(`${base}/`), { status: 200, body: { status: 'Healthy' } });
    for (const body of [{ input_data: ROWS }, { input_data: { columns: ['a', 'b', 'c', 'd'], index: [0, 1], data: ROWS } }, { data: ROWS }]) {
      const answer = await postJson(`${base}/score`, body);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assertRowsClose(answer.body);
    }
    const single = await postJson(`${base}/score`, { data: ROWS[0] });
    assertRowsClose(single.body, EXPECTED.slice(0, 3));
    const instances = await postJson(`${base}/score`, { instances: ROWS });
    assertRowsClose((instances.body as { predictions: unknown }).predictions);
    const v2 = await postJson(`${base}/score`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: ROWS[0] }] });
    assert.equal((v2.body as { model_name: string }).model_name, 'mlp');
    const bad = await postJson(`${base}/score`, { rows: ROWS });
    assert.equal(bad.status, 400);
    assert.match(errorOf(bad), /neither 'input_data' nor 'data'/);
    const split = await postJson(`${base}/score`, { input_data: { columns: ['a'] } });
    assert.equal(split.status, 400);
    assert.match(errorOf(split), /split form/);
  });
});

describe('Vertex AI health route on a server that is not ready', () => {
  test('503 {"status": "Unhealthy"} while a model is unavailable under strict readiness, so Vertex stops routing to it', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel());
    // A model directory without versions is unavailable; strict readiness makes the server unready.
    await mkdir(path.join(repo, 'broken'), { recursive: true });
    await writeFile(path.join(repo, 'broken', 'config.yaml'), 'max_batch_size: 4\n');
    const server = await startTestServer(t, repo, { vertex: true, vertexHealthRoute: HEALTH, vertexPredictRoute: PREDICT, defaultModel: 'mlp', strictReadiness: true });
    assert.equal((await getJson(`${server.httpUrl}/v2/health/ready`)).status, 503, 'the premise: the server is not ready');
    assert.deepEqual(await getJson(`${server.httpUrl}${HEALTH}`), { status: 503, body: { status: 'Unhealthy' } });
    // The healthy model still answers predictions while the health route reports the server unready.
    const answer = await postJson(`${server.httpUrl}${PREDICT}`, { instances: ROWS });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assertRowsClose((answer.body as { predictions: unknown }).predictions);
  });
});

describe('single-model selection with several models', () => {
  test('without a default model the endpoints say which models exist and how to choose; with one they serve it', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel());
    await writeModel(repo, 'add', 1, addModel());
    const ambiguous = await startTestServer(t, repo, { sagemaker: true, vertex: true, azureml: true });
    for (const url of ['/invocations', '/predict', '/score']) {
      const answer = await postJson(`${ambiguous.httpUrl}${url}`, { instances: ROWS });
      assert.equal(answer.status, 404, url);
      assert.match(errorOf(answer), /holds 2 models \(add, mlp\) and no default model is set.*--default-model/);
    }
    const chosen = await startTestServer(t, repo, { sagemaker: true, vertex: true, defaultModel: 'mlp' });
    assertRowsClose(((await postJson(`${chosen.httpUrl}/invocations`, { instances: ROWS })).body as { predictions: unknown }).predictions);
    assertRowsClose(((await postJson(`${chosen.httpUrl}/predict`, { instances: ROWS })).body as { predictions: unknown }).predictions);
  });

  test('adapters are off by default: /invocations, /score and GET / are 404 in the V2 error shape', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel());
    const server = await startTestServer(t, repo);
    for (const url of ['/invocations', '/score', '/predict']) assert.equal((await postJson(`${server.httpUrl}${url}`, { instances: ROWS })).status, 404);
    const root = await getJson(`${server.httpUrl}/`);
    assert.equal(root.status, 404);
    assert.match(errorOf(root), /no endpoint GET \//);
  });
});

describe('platform environment → configuration (src/cli/config-sources.ts)', () => {
  test('SageMaker: any SAGEMAKER_* enables it, on port 8080 with models in /opt/ml/model', () => {
    const config = resolveServerConfig({}, { SAGEMAKER_REGION: 'eu-west-1' });
    assert.equal(config.sagemaker, true);
    assert.equal(config.httpPort, 8080);
    assert.equal(config.modelRepository, '/opt/ml/model');
    assert.equal(config.defaultModel, undefined);
  });

  test('SageMaker: SAGEMAKER_BIND_TO_PORT and SAGEMAKER_DEFAULT_MODEL; flags and TESSERA_* win', () => {
    const env = { SAGEMAKER_BIND_TO_PORT: '9090', SAGEMAKER_DEFAULT_MODEL: 'iris' };
    const config = resolveServerConfig({}, env);
    assert.equal(config.httpPort, 9090);
    assert.equal(config.defaultModel, 'iris');
    assert.equal(resolveServerConfig({ httpPort: '7000', defaultModel: 'other' }, env).httpPort, 7000);
    assert.equal(resolveServerConfig({ defaultModel: 'other' }, env).defaultModel, 'other');
    const off = resolveServerConfig({}, { ...env, TESSERA_SAGEMAKER: 'false', TESSERA_MODEL_REPOSITORY: '/models' });
    assert.equal(off.sagemaker, false);
    // Turned off, the SageMaker variables are ignored: SAGEMAKER_BIND_TO_PORT included.
    assert.equal(off.httpPort, 8000);
    assert.equal(off.modelRepository, '/models');
  });

  test('--sagemaker (commander gives true) implies port 8080 and /opt/ml/model unless set', () => {
    const config = resolveServerConfig({ sagemaker: true }, {});
    assert.deepEqual([config.sagemaker, config.httpPort, config.modelRepository], [true, 8080, '/opt/ml/model']);
    assert.equal(resolveServerConfig({ sagemaker: true, modelRepository: './repo' }, {}).modelRepository, './repo');
  });

  test('Vertex AI: AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE; AIP_STORAGE_URI is only noted', () => {
    const env = { AIP_MODE: 'PREDICTION', AIP_HTTP_PORT: '7080', AIP_HEALTH_ROUTE: HEALTH, AIP_PREDICT_ROUTE: PREDICT, AIP_STORAGE_URI: 'gs://bucket/model' };
    const config = resolveServerConfig({}, env);
    assert.deepEqual([config.vertex, config.httpPort, config.vertexHealthRoute, config.vertexPredictRoute], [true, 7080, HEALTH, PREDICT]);
    assert.equal(config.sagemaker, false);
    assert.ok(platformNotes(env).some((note) => note.includes('gs://bucket/model') && note.includes('not downloaded')));
    assert.equal(resolveServerConfig({}, { AIP_MODE: 'PREDICTION' }).httpPort, 8080);
    // The routes Vertex sets win over route flags (meant for local runs) and TESSERA_* variables.
    const flagged = resolveServerConfig({ vertexHealthRoute: '/flag-health', vertexPredictRoute: '/flag-predict' }, { ...env, TESSERA_VERTEX_HEALTH_ROUTE: '/env-health' });
    assert.deepEqual([flagged.vertexHealthRoute, flagged.vertexPredictRoute], [HEALTH, PREDICT]);
    assert.equal(resolveServerConfig({ vertex: true, vertexHealthRoute: '/flag-health' }, {}).vertexHealthRoute, '/flag-health', 'without AIP_* the flag holds');
  });

  test('Azure ML: AZUREML_MODEL_DIR enables it and is the repository; no platform, no adapter', () => {
    const config = resolveServerConfig({}, { AZUREML_MODEL_DIR: '/var/azureml-app/azureml-models/m/1' });
    assert.deepEqual([config.azureml, config.modelRepository, config.httpPort], [true, '/var/azureml-app/azureml-models/m/1', 8000]);
    const plain = resolveServerConfig({}, {});
    assert.deepEqual([plain.sagemaker, plain.vertex, plain.azureml, plain.httpPort, plain.tfServing, plain.torchServe], [false, false, false, 8000, true, true]);
  });

  test('protocol switches and compression settings from flags and TESSERA_*; bad routes are refused', () => {
    const config = resolveServerConfig({ tfServing: 'false', compressionThresholdBytes: '4096' }, { TESSERA_TORCH_SERVE: '0', TESSERA_RESPONSE_COMPRESSION: 'false' });
    assert.deepEqual([config.tfServing, config.torchServe, config.responseCompression, config.compressionThresholdBytes], [false, false, false, 4096]);
    assert.throws(() => resolveServerConfig({ vertex: true, vertexPredictRoute: 'predict' }, {}), /vertexPredictRoute/);
  });
});

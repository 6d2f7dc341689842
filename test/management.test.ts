import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as tar from 'tar';
import { packModel } from '../src/repository/archive.js';
import { makeTempRepository, mlpModel, mlpReference, seededMlpWeights, writeModel } from './support/fixtures.js';
import { getJson, postJson, startTestServer, writeFakeModel } from './support/server.js';

const weightsV1 = seededMlpWeights([4, 8, 3], 1);
const weightsV2 = seededMlpWeights([4, 8, 3], 2);
const row = [0.5, -1, 2, 0.25];

async function request(url: string, method: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Which weights answered `row`. */
async function servedBy(url: string): Promise<number> {
  const result = await postJson(url, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row }] });
  assert.equal(result.status, 200, JSON.stringify(result.body));
  const probs = (result.body as { outputs: { data: number[] }[] }).outputs[0]!.data;
  for (const [i, weights] of [weightsV1, weightsV2].entries()) {
    const expected = mlpReference(weights, row);
    if (probs.every((p, j) => Math.abs(p - expected[j]!) < 1e-5)) return i + 1;
  }
  return 0;
}

describe('management API', () => {
  test('describe, set the default version, scale, unregister', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel(weightsV1), { 'config.yaml': 'version_policy:\n  all: {}\n' });
    await writeModel(repo, 'mlp', 2, mlpModel(weightsV2));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const infer = `${server.httpUrl}/v2/models/mlp/infer`;
    // No instance_group: two instances (one on a single core), as Triton gives CPU models.
    const defaultInstances = Math.min(2, availableParallelism());

    assert.deepEqual((await request(`${admin}/models`, 'GET')).body, { models: [{ modelName: 'mlp', modelUrl: join(repo, 'mlp'), loaded: true }] });
    const described = (await request(`${admin}/models/mlp`, 'GET')).body;
    assert.equal(described['defaultVersion'], '2');
    assert.deepEqual(
      (described['versions'] as { version: string; state: string; instances: number; isDefault: boolean; modelFileBytes: number }[]).map((v) => [v.version, v.state, v.instances, v.isDefault, v.modelFileBytes > 0]),
      [['1', 'READY', defaultInstances, false, true], ['2', 'READY', defaultInstances, true, true]],
    );
    assert.equal(await servedBy(infer), 2);

    // instant rollback
    assert.equal((await request(`${admin}/models/mlp/1/set-default`, 'PUT')).status, 200);
    assert.equal(await servedBy(infer), 1);
    assert.equal((await request(`${admin}/models/mlp/latest/set-default`, 'PUT')).status, 200);
    assert.equal(await servedBy(infer), 2);
    const notReady = await request(`${admin}/models/mlp/7/set-default`, 'PUT');
    assert.equal(notReady.status, 404);
    assert.equal(notReady.body['type'], 'ModelVersionNotFoundException');
    const badName = await request(`${admin}/models?url=${encodeURIComponent(repo)}&model_name=..%2Fescape`, 'POST');
    assert.equal(badName.status, 400);

    // scale to three instances: the model reloads beside the serving one
    assert.equal((await request(`${admin}/models/mlp?min_worker=3`, 'PUT')).status, 200);
    const scaled = (await request(`${admin}/models/mlp`, 'GET')).body['versions'] as { instances: number }[];
    assert.deepEqual(scaled.map((v) => v.instances), [3, 3]);
    assert.equal((await request(`${admin}/models/mlp?min_worker=lots`, 'PUT')).status, 400);

    assert.equal((await request(`${admin}/models/mlp`, 'DELETE')).status, 200);
    assert.equal((await postJson(infer, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row }] })).status, 503);
    const missing = await request(`${admin}/models/nope`, 'GET');
    assert.equal(missing.status, 404);
    assert.equal(missing.body['type'], 'ModelNotFoundException');
  });

  test('describing a model while it is unloaded answers 200 (the description as it was), never 503', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'm', 1, { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }] }, 'max_batch_size: 4\n');
    const server = await startTestServer(t, repo, { modelControlMode: 'explicit', loadModel: ['m'] });
    const statuses = new Map<number, number>();
    for (let cycle = 0; cycle < 30; cycle++) {
      const described = Array.from({ length: 8 }, () => fetch(`http://127.0.0.1:${server.managementPort}/models/m`).then((response) => response.status));
      const unloaded = fetch(`${server.httpUrl}/v2/repository/models/m/unload`, { method: 'POST' });
      for (const status of await Promise.all(described)) statuses.set(status, (statuses.get(status) ?? 0) + 1);
      assert.equal((await unloaded).status, 200);
      assert.equal((await fetch(`${server.httpUrl}/v2/repository/models/m/load`, { method: 'POST' })).status, 200);
    }
    assert.deepEqual([...statuses], [[200, 240]]);
  });

  test('a pinned default version stays pinned through a reload that leaves it out for a while', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    // The versions differ in their input width, so metadata says which version it describes.
    for (const v of [1, 2, 3]) {
      await writeFakeModel(repo, 'm', v, { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, v] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, v], copy_of: 'x' }] }, 'max_batch_size: 4\nversion_policy: {all: {}}\n');
    }
    const server = await startTestServer(t, repo, { modelControlMode: 'explicit', loadModel: ['m'] });
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const views = async (): Promise<string[]> => {
      const served = await postJson(`${server.httpUrl}/v2/models/m/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [0] }] });
      const metadata = (await getJson(`${server.httpUrl}/v2/models/m`)).body as { inputs: { shape: number[] }[] };
      const described = (await getJson(`${admin}/models/m`)).body as { defaultVersion: string };
      return [served.status === 200 ? (served.body as { model_version: string }).model_version : String(served.status), String(metadata.inputs[0]!.shape[1]), described.defaultVersion];
    };
    const pinned = await fetch(`${admin}/models/m/traffic`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ default_version: '1' }) });
    assert.equal(pinned.status, 200, await pinned.text());
    assert.deepEqual(await views(), ['1', '1', '1']);
    // A reload without version 1: the highest serves meanwhile.
    const without = { parameters: { config: JSON.stringify({ backend: 'fake', max_batch_size: 4, version_policy: { specific: { versions: [2, 3] } } }) } };
    assert.equal((await postJson(`${server.httpUrl}/v2/repository/models/m/load`, without)).status, 200);
    assert.deepEqual((await views()).slice(1), ['3', '3']);
    // Version 1 back: the pin holds again, and the engine and the router agree on it.
    assert.equal((await postJson(`${server.httpUrl}/v2/repository/models/m/load`, {})).status, 200);
    assert.deepEqual(await views(), ['1', '1', '1']);
  });

  test('register from a verified archive; a tampered archive is refused; archives in the repository are served', async (t) => {
    const work = await mkdtemp(join(tmpdir(), 'tessera-archive-'));
    const repo = await makeTempRepository();
    t.after(() => Promise.all([rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }), rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })]));
    await writeModel(work, 'scorer', 1, mlpModel(weightsV1), { 'labels.txt': 'a\nb\nc\n' });
    const archive = join(work, 'scorer.tar.gz');
    await packModel(join(work, 'scorer'), archive, { tesseraVersion: 'test' });

    // tamper: unpack, change one byte of the model, pack again with the original manifest
    const unpacked = join(work, 'unpacked');
    await import('node:fs/promises').then((fs) => fs.mkdir(unpacked));
    await tar.x({ file: archive, cwd: unpacked });
    const modelFile = join(unpacked, '1', 'model.onnx');
    const bytes = await readFile(modelFile);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(modelFile, bytes);
    const tampered = join(work, 'tampered.tar.gz');
    await tar.c({ file: tampered, cwd: unpacked, gzip: true }, ['MANIFEST.json', '1', 'labels.txt']);

    const server = await startTestServer(t, repo, { strictReadiness: false });
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const refused = await request(`${admin}/models?url=${encodeURIComponent(tampered)}&model_name=bad`, 'POST');
    assert.equal(refused.status, 400);
    assert.match(String(refused.body["message"]), /1\/model\.onnx does not match MANIFEST\.json: its SHA-256 is/);

    const registered = await request(`${admin}/models?url=${encodeURIComponent(archive)}&initial_workers=2`, 'POST');
    assert.equal(registered.status, 200, JSON.stringify(registered.body));
    assert.equal(registered.body['modelName'], 'scorer');
    assert.equal(await servedBy(`${server.httpUrl}/v2/models/scorer/infer`), 1);
    assert.equal(((await request(`${admin}/models/scorer`, 'GET')).body['versions'] as { instances: number }[])[0]!.instances, 2);
    assert.equal((await request(`${admin}/models?url=${encodeURIComponent(archive)}`, 'POST')).status, 409, 'already there');

    // an archive dropped into the repository directory is served under its manifest's name
    await copyFile(archive, join(repo, 'copy.tar.gz'));
    await packModel(join(work, 'scorer'), join(repo, 'other.tar.gz'), { tesseraVersion: 'test', name: 'other' });
    await server.engine.syncRepository();
    assert.deepEqual(server.engine.repositoryIndex().filter((e) => e.name === "other"), [{ name: "other", version: "1", state: "READY", reason: "" }]);
    assert.equal(await servedBy(`${server.httpUrl}/v2/models/other/infer`), 1);
  });
});

describe('V2 repository API', () => {
  test('load with a config and files, unload; refused in poll mode', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel(weightsV1));
    const server = await startTestServer(t, repo, { modelControlMode: 'explicit', loadModel: ['mlp'] });
    const base = `${server.httpUrl}/v2/repository/models`;
    assert.equal((await postJson(`${base}/mlp/unload`, {})).status, 200);
    assert.equal((await getJson(`${server.httpUrl}/v2/models/mlp/ready`)).status, 503);
    assert.equal((await postJson(`${base}/mlp/load`, {})).status, 200);
    assert.equal(await servedBy(`${server.httpUrl}/v2/models/mlp/infer`), 1);
    // A config sent with a load applies to that load; a later load without one uses the model's own again (as in Triton).
    const configOf = async (): Promise<number> => ((await getJson(`${server.httpUrl}/v2/models/mlp/config`)).body as { max_batch_size: number }).max_batch_size;
    const ownBatch = await configOf();
    assert.equal((await postJson(`${base}/mlp/load`, { parameters: { config: JSON.stringify({ max_batch_size: 3 }) } })).status, 200);
    assert.equal(await configOf(), 3);
    assert.equal((await postJson(`${base}/mlp/load`, {})).status, 200);
    assert.equal(await configOf(), ownBatch, 'the override did not stick');

    // a model that exists nowhere on disk, sent as files with its config (Triton's load with files)
    const sent = await postJson(`${base}/sent/load`, {
      parameters: { config: JSON.stringify({ max_batch_size: 2 }), 'file:1/model.onnx': Buffer.from(mlpModel(weightsV2)).toString('base64') },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    assert.equal(await servedBy(`${server.httpUrl}/v2/models/sent/infer`), 2);
    assert.equal(((await getJson(`${server.httpUrl}/v2/models/sent/config`)).body as { max_batch_size: number }).max_batch_size, 2);
    const escape = await postJson(`${base}/evil/load`, { parameters: { config: '{}', 'file:../../etc/x': 'AAAA' } });
    assert.equal(escape.status, 400);
    assert.match((escape.body as { error: string }).error, /must be relative and stay inside the model directory/);
    // A name that would put the files elsewhere is refused before anything is written.
    const overrides = tmpdir();
    const planted = `planted-${process.pid}`;
    const traversal = await postJson(`${base}/${encodeURIComponent(`../../../../../../${overrides.slice(1)}/../${planted}`)}/load`, {
      parameters: { config: '{}', 'file:1/model.onnx': 'AAAA' },
    });
    assert.equal(traversal.status, 400, JSON.stringify(traversal.body));
    assert.match((traversal.body as { error: string }).error, /is not a valid model name/);
    assert.deepEqual((await readdir(tmpdir())).filter((entry) => entry.startsWith(planted)), [], 'nothing written outside the directories made for the files');
    const noConfig = await postJson(`${base}/x/load`, { parameters: { 'file:1/model.onnx': 'AAAA' } });
    assert.equal(noConfig.status, 400);
    const broken = await postJson(`${base}/mlp/load`, { parameters: { config: JSON.stringify({ max_batch_size: -3 }) } });
    assert.equal(broken.status, 400);
    assert.match((broken.body as { error: string }).error, /max_batch_size/);
    assert.equal(await servedBy(`${server.httpUrl}/v2/models/mlp/infer`), 1, 'a refused load leaves the model serving');
    await server.close();

    const polling = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 60 });
    const refused = await postJson(`${polling.httpUrl}/v2/repository/models/mlp/unload`, {});
    assert.equal(refused.status, 400);
    assert.match((refused.body as { error: string }).error, /poll mode/);
  });
});

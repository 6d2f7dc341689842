import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { packModel } from '../src/repository/archive.js';
import { makeTempRepository } from './support/fixtures.js';
import { fakeModelJson, getJson, postJson, startTestServer, writeFakeModel } from './support/server.js';

/**
 * The management API's register and scale (TorchServe's POST /models and PUT /models/{m}): a
 * registration is all or nothing, its parameters are checked before anything changes, concurrent
 * registrations of one archive do not race, and scaling never brings back an unregistered model.
 */

const DEF = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }] };

async function call(url: string, method: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function setUp(t: TestContext): Promise<{ repo: string; work: string; admin: string; http: string; server: Awaited<ReturnType<typeof startTestServer>> }> {
  const repo = await makeTempRepository();
  const work = await mkdtemp(join(tmpdir(), 'tessera-register-'));
  t.after(() => Promise.all([repo, work].map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))));
  await writeFakeModel(repo, 'm', 1, DEF);
  const server = await startTestServer(t, repo);
  return { repo, work, admin: `http://127.0.0.1:${server.managementPort}`, http: server.httpUrl, server };
}

const q = encodeURIComponent;

describe('management API: register and scale', () => {
  test('a failed registration leaves nothing behind: readiness stays up, the archive directory is removed, a retry succeeds', async (t) => {
    const { repo, work, admin, http, server } = await setUp(t);
    // A model directory whose version file is broken (a typo'd upload).
    await mkdir(join(work, 'typo', '1'), { recursive: true });
    await writeFile(join(work, 'typo', '1', 'model.json'), '{not json');
    await writeFile(join(work, 'typo', 'config.yaml'), 'backend: fake\n');
    const failed = await call(`${admin}/models?url=${q(join(work, 'typo'))}`, 'POST');
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.match(String(failed.body['message']), /model 'typo' failed to load: version 1: .*not valid JSON/);
    assert.equal((await getJson(`${http}/ping`)).status, 200, '/ping stays healthy');
    assert.equal((await getJson(`${http}/v2/health/ready`)).status, 200, 'strict readiness is not held down');
    assert.deepEqual(((await call(`${admin}/models`, 'GET')).body['models'] as { modelName: string }[]).map((m) => m.modelName), ['m']);
    assert.equal(server.engine.repositoryIndex().some((entry) => entry.name === 'typo'), false);

    await writeFile(join(work, 'typo', '1', 'model.json'), fakeModelJson(DEF));
    assert.equal((await call(`${admin}/models?url=${q(join(work, 'typo'))}`, 'POST')).status, 200, 'the corrected retry registers');

    // An archive whose model fails to load: the directory unpacked into the repository goes too.
    await mkdir(join(work, 'badarch', '1'), { recursive: true });
    await writeFile(join(work, 'badarch', '1', 'model.json'), fakeModelJson({ ...DEF, outputs: [{ ...DEF.outputs[0]!, copy_of: 'nope' }] }));
    await writeFile(join(work, 'badarch', 'config.yaml'), 'backend: fake\n');
    await packModel(join(work, 'badarch'), join(work, 'badarch.tar.gz'), { tesseraVersion: 'test' });
    assert.equal((await call(`${admin}/models?url=${q(join(work, 'badarch.tar.gz'))}`, 'POST')).status, 503);
    assert.deepEqual((await readdir(repo)).filter((entry) => entry.includes('badarch')), [], 'no unpacked directory is left in the repository');
    assert.equal((await getJson(`${http}/ping`)).status, 200);

    // An unregistered model that fails to register again goes back to unregistered, not away.
    assert.equal((await call(`${admin}/models/typo`, 'DELETE')).status, 200);
    await writeFile(join(work, 'typo', '1', 'model.json'), '{not json');
    assert.equal((await call(`${admin}/models?url=${q(join(work, 'typo'))}`, 'POST')).status, 503);
    assert.deepEqual(server.engine.repositoryIndex().filter((entry) => entry.name === 'typo'), [{ name: 'typo', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    assert.equal((await getJson(`${http}/ping`)).status, 200);
  });

  test('register checks every parameter before registering; initial_workers=0 means the config\'s instances', async (t) => {
    const { work, admin, server } = await setUp(t);
    await writeFakeModel(work, 'ext', 1, DEF, 'instance_group: [{count: 1}]\n');
    for (const [query, message] of [
      ['initial_workers=abc', /'initial_workers' must be an integer from 0 to 64, got 'abc'/],
      ['initial_workers=65', /from 0 to 64, got '65'/],
      ['initial_workers=1.5', /got '1\.5'/],
      ['initial_workers=1&initial_workers=2', /'initial_workers' is given 2 times/],
      ['model_name=a&model_name=b', /'model_name' is given 2 times/],
    ] as const) {
      const refused = await call(`${admin}/models?url=${q(join(work, 'ext'))}&${query}`, 'POST');
      assert.equal(refused.status, 400, query);
      assert.match(String(refused.body['message']), message);
      assert.equal(server.engine.repositoryIndex().some((entry) => entry.name === 'ext'), false, `${query}: nothing registered`);
    }
    const zero = await call(`${admin}/models?url=${q(join(work, 'ext'))}&initial_workers=0`, 'POST');
    assert.equal(zero.status, 200, JSON.stringify(zero.body));
    assert.equal(server.engine.describeModels('ext')[0]!.versions[0]!.instances, 1, "0 workers: the config's instance_group");
    assert.equal((await call(`${admin}/models/ext`, 'DELETE')).status, 200);
    assert.equal((await call(`${admin}/models?url=${q(join(work, 'ext'))}&initial_workers=3`, 'POST')).status, 200);
    assert.equal(server.engine.describeModels('ext')[0]!.versions[0]!.instances, 3);
  });

  test('concurrent registrations of one archive: one registers, the others get 409 MODEL_ALREADY_EXISTS without server paths', async (t) => {
    const { work, admin, repo } = await setUp(t);
    await writeFakeModel(work, 'arch', 1, DEF);
    await packModel(join(work, 'arch'), join(work, 'arch.tar.gz'), { tesseraVersion: 'test' });
    const url = `${admin}/models?url=${q(join(work, 'arch.tar.gz'))}`;
    const answers = await Promise.all([1, 2, 3, 4].map(() => call(url, 'POST')));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 409, 409, 409], JSON.stringify(answers));
    for (const refused of answers.filter((a) => a.status === 409)) {
      assert.match(String(refused.body['message']), /model 'arch' is already loaded; unregister it first/);
      assert.equal(refused.body['type'], 'ConflictStatusException', "TorchServe's exception type for a 409");
      assert.equal(refused.body['code'], 409);
      assert.doesNotMatch(String(refused.body['message']), /extract|ENOTEMPTY/);
    }
    assert.deepEqual((await readdir(repo)).filter((entry) => entry.includes('arch')), ['arch'], 'no staging directory left behind');
  });

  test('in poll mode register is refused (400, poll mode named) and nothing is registered: the repository directory decides', async (t) => {
    const repo = await makeTempRepository();
    const work = await mkdtemp(join(tmpdir(), 'tessera-register-'));
    t.after(() => Promise.all([repo, work].map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))));
    await writeFakeModel(repo, 'm', 1, DEF);
    await writeFakeModel(work, 'ext', 1, DEF);
    await packModel(join(work, 'ext'), join(work, 'ext.tar.gz'), { tesseraVersion: 'test' });
    const server = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 3600 });
    const admin = `http://127.0.0.1:${server.managementPort}`;
    for (const source of [join(work, 'ext'), join(work, 'ext.tar.gz')]) {
      const refused = await call(`${admin}/models?url=${q(source)}`, 'POST');
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      assert.deepEqual(Object.keys(refused.body), ['code', 'type', 'message']);
      assert.equal(refused.body['code'], 400);
      assert.equal(refused.body['type'], 'BadRequestException');
      assert.match(String(refused.body['message']), /^cannot register models through the API in poll mode: the repository directory decides what is loaded/);
    }
    assert.deepEqual(((await call(`${admin}/models`, 'GET')).body['models'] as { modelName: string }[]).map((m) => m.modelName), ['m']);
    assert.equal(server.engine.repositoryIndex().some((entry) => entry.name === 'ext'), false);
    assert.deepEqual((await readdir(repo)).sort(), ['m'], 'no archive unpacked into the polled repository');
  });

  test('scaling an unregistered model is a 404 and does not load it again', async (t) => {
    const { admin, http } = await setUp(t);
    assert.equal((await call(`${admin}/models/m`, 'DELETE')).status, 200);
    const scaled = await call(`${admin}/models/m?min_worker=2`, 'PUT');
    assert.equal(scaled.status, 404, JSON.stringify(scaled.body));
    assert.equal(scaled.body['type'], 'ModelNotFoundException');
    assert.match(String(scaled.body['message']), /model 'm' is not loaded \(never loaded, or unregistered\)/);
    assert.equal((await postJson(`${http}/v1/models/m:predict`, { instances: [[1, 2, 3, 4]] })).status, 503, 'still unloaded');
    assert.equal((await call(`${admin}/models/m`, 'GET')).body['loaded'], false);
  });
});

import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Engine, type EngineOptions } from '../src/engine/engine.js';
import { FakeBackend } from '../src/backends/fake/backend.js';
import { OnnxBackend } from '../src/backends/onnx/backend.js';
import { makeTempRepository, mlpModel, mlpReference, seededMlpWeights, writeModel } from './support/fixtures.js';
import { startTestServer, untilHeld, writeFakeModel } from './support/server.js';
import { GraphBuilder } from './support/onnx-builder.js';
import { GrpcTestClient } from './support/grpc-client.js';

const weightsV1 = seededMlpWeights([4, 8, 3], 1);
const weightsV2 = seededMlpWeights([4, 8, 3], 2);
const weightsV3 = seededMlpWeights([4, 8, 3], 3);
const row = [0.5, -1, 2, 0.25];

/** Which weights produced `probs` for `row`. */
function whichWeights(probs: number[]): number {
  for (const [i, weights] of [weightsV1, weightsV2, weightsV3].entries()) {
    const expected = mlpReference(weights, row);
    if (probs.every((p, j) => Math.abs(p - expected[j]!) < 1e-5)) return i + 1;
  }
  return 0;
}

function engineOptions(repository: string, overrides: Partial<EngineOptions> = {}): EngineOptions {
  return {
    repository,
    backends: [new OnnxBackend(), new FakeBackend()],
    scheduling: { defaultMaxBatchSize: 8, maxQueueSize: 1024, retryAfterSeconds: 1, holdUntilQueued: 0 },
    strictReadiness: true,
    drainGraceMs: 5_000,
    ...overrides,
  };
}

/** Atomically replace a version's model file, as a deployment tool would. */
async function replaceModelFile(repo: string, name: string, version: number, bytes: Uint8Array): Promise<void> {
  const target = join(repo, name, String(version), 'model.onnx');
  await writeFile(`${target}.tmp`, bytes);
  await rename(`${target}.tmp`, target);
}

describe('model lifecycle', () => {
  test('adding a version, replacing a file, rolling back and unloading a version under load fail no request', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel(weightsV1), { 'config.yaml': 'version_policy:\n  all: {}\n' });
    const server = await startTestServer(t, repo);
    const url = `${server.httpUrl}/v2/models/mlp/infer`;
    const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row }] });

    let running = true;
    const failures: string[] = [];
    const seen = new Set<number>();
    let answered = 0;
    const client = async (): Promise<void> => {
      while (running) {
        const response = await fetch(url, { method: 'POST', body });
        const text = await response.text();
        if (response.status !== 200) {
          failures.push(`${response.status} ${text}`);
          continue;
        }
        answered++;
        seen.add(whichWeights((JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0]!.data));
      }
    };
    const clients = Array.from({ length: 8 }, client);
    const settle = () => new Promise((resolve) => setTimeout(resolve, 150));
    const served = async (): Promise<number> => {
      const response = await fetch(url, { method: 'POST', body });
      return whichWeights((JSON.parse(await response.text()) as { outputs: { data: number[] }[] }).outputs[0]!.data);
    };

    await settle();
    // (a) add version 2: requests without a version move to it
    await writeModel(repo, 'mlp', 2, mlpModel(weightsV2));
    await server.engine.syncRepository();
    await settle();
    assert.equal(await served(), 2);
    // (b) replace version 2's file with other weights: it reloads beside the serving one
    await replaceModelFile(repo, 'mlp', 2, mlpModel(weightsV3));
    await server.engine.syncRepository();
    await settle();
    assert.equal(await served(), 3);
    // (c) roll back: pin the default to version 1
    server.engine.setDefaultVersion('mlp', '1');
    await settle();
    assert.equal(await served(), 1);
    // (d) unload version 1 through the version policy: the default moves back to version 2
    await writeFile(join(repo, 'mlp', 'config.yaml'), 'version_policy:\n  specific:\n    versions: [2]\n');
    await server.engine.syncRepository();
    await settle();
    assert.equal(await served(), 3);

    running = false;
    await Promise.all(clients);
    assert.deepEqual(failures, [], 'no request failed');
    assert.ok(answered > 50, `answered ${answered}`);
    assert.deepEqual([...seen].sort(), [1, 2, 3], 'every deployed model answered at some point');
    assert.deepEqual(
      server.engine.repositoryIndex().map((e) => [e.version, e.state]),
      [['2', 'READY']],
    );
  });

  test('a corrupt new file leaves the serving version untouched and reports the failure', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel(weightsV1));
    const engine = await Engine.start(engineOptions(repo));
    t.after(() => engine.close());
    // a corrupt replacement of the serving version
    await replaceModelFile(repo, 'mlp', 1, new Uint8Array([1, 2, 3, 4, 5]));
    await engine.syncRepository();
    const [entry] = engine.repositoryIndex();
    assert.equal(entry!.state, 'READY');
    assert.match(entry!.reason, /serving; the last reload failed: onnxruntime could not load/);
    const response = await engine.infer({ model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }] });
    assert.equal(whichWeights(Array.from(response.outputs[0]!.data as Float32Array)), 1);
    // a corrupt new version: it is UNAVAILABLE with its reason, version 1 keeps serving
    await writeModel(repo, 'mlp', 2, new Uint8Array([9, 9, 9]));
    await writeFile(join(repo, 'mlp', 'config.yaml'), 'version_policy:\n  all: {}\n');
    await assert.rejects(engine.loadModel('mlp'), { code: 'MODEL_LOAD_FAILED' });
    const index = engine.repositoryIndex();
    assert.deepEqual(index.map((e) => [e.version, e.state]), [['1', 'READY'], ['2', 'UNAVAILABLE']]);
    assert.match(index[1]!.reason, /onnxruntime could not load .*2\/model\.onnx/);
    const after = await engine.infer({ model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }] });
    assert.equal(after.version, '1');
  });

  test("a load whose config fails leaves the serving version's config in force: routing and the next load read it", async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel(weightsV1), { 'config.yaml': 'max_batch_size: 4\nrouting:\n  fallback: { model: other }\n' });
    const engine = await Engine.start(engineOptions(repo));
    t.after(() => engine.close());
    const before = engine.modelConfigFile('mlp');
    assert.equal(before?.max_batch_size, 4);
    // A config naming a file the version does not have: the load fails, version 1 keeps serving.
    await assert.rejects(engine.loadModel('mlp', { config: { max_batch_size: 2, default_model_filename: 'missing.onnx' } }), { code: 'MODEL_LOAD_FAILED' });
    assert.equal(engine.repositoryIndex()[0]!.state, 'READY');
    assert.deepEqual(engine.modelConfigFile('mlp'), before, 'the config of the version that serves, routing section and all');
    assert.equal(engine.modelConfig('mlp').max_batch_size, 4);
    await engine.loadModel('mlp');
    assert.deepEqual(engine.modelConfigFile('mlp'), before, 'a plain reload does not bring back the refused config');
    // A load that succeeds does replace it.
    await engine.loadModel('mlp', { config: { max_batch_size: 2 } });
    assert.equal(engine.modelConfigFile('mlp')?.max_batch_size, 2);
    assert.equal(engine.modelConfigFile('mlp')?.routing, undefined);
    assert.equal(engine.modelConfig('mlp').max_batch_size, 2);
  });

  test('explicit mode loads only what it is asked to, and load/unload work through the engine', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'a', 1, mlpModel(weightsV1));
    await writeModel(repo, 'b', 1, mlpModel(weightsV2));
    const engine = await Engine.start(engineOptions(repo, { controlMode: 'explicit', initialModels: ['a'] }));
    t.after(() => engine.close());
    assert.deepEqual(engine.repositoryIndex().map((e) => [e.name, e.state, e.reason]), [
      ['a', 'READY', ''],
      ['b', 'UNAVAILABLE', 'not loaded'],
    ]);
    assert.equal(engine.isReady(), true, 'models not asked for do not hold readiness back');
    await assert.rejects(engine.infer({ model: 'b', inputs: [] }), { code: 'MODEL_UNAVAILABLE', message: "model 'b' is not loaded" });
    await engine.loadModel('b');
    assert.equal(engine.modelReady('b'), true);
    await engine.unloadModel('a');
    assert.deepEqual(engine.repositoryIndex().find((e) => e.name === 'a'), { name: 'a', state: 'UNAVAILABLE', reason: 'unloaded' });
    assert.equal(engine.modelReady('a'), false);
    // a config override replaces the directory's config (Triton's load with config)
    await engine.loadModel('a', { config: { max_batch_size: 2 } });
    assert.equal(engine.modelConfig('a').max_batch_size, 2);
    await assert.rejects(engine.loadModel('a', { config: { max_batch_size: 'lots' } }), {
      code: 'INVALID_MODEL_CONFIG',
      message: /max_batch_size: .*expected number/i,
    });
  });

  test('poll mode picks up new models and versions and drops removed ones by itself', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'a', 1, mlpModel(weightsV1));
    const engine = await Engine.start(engineOptions(repo, { controlMode: 'poll', pollIntervalSeconds: 0.1 }));
    t.after(() => engine.close());
    const until = async (condition: () => boolean): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (!condition()) {
        if (Date.now() > deadline) throw new Error(`timed out; index: ${JSON.stringify(engine.repositoryIndex())}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await writeModel(repo, 'b', 1, mlpModel(weightsV2));
    await until(() => engine.repositoryIndex().some((e) => e.name === 'b' && e.state === 'READY'));
    await writeModel(repo, 'a', 2, mlpModel(weightsV3));
    await until(() => engine.repositoryIndex().some((e) => e.name === 'a' && e.version === '2' && e.state === 'READY'));
    assert.equal(engine.repositoryIndex().some((e) => e.name === 'a' && e.version === '1'), false, 'latest 1 policy drops version 1');
    await rm(join(repo, 'b'), { recursive: true });
    await until(() => !engine.repositoryIndex().some((e) => e.name === 'b'));
  });

  test('poll mode: a broken new version leaves the serving one in place and is not retried until its files change', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'a', 1, mlpModel(weightsV1));
    const errors: string[] = [];
    const logger = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: (object: object) => errors.push(JSON.stringify(object)) };
    const engine = await Engine.start(engineOptions(repo, { controlMode: 'poll', pollIntervalSeconds: 0.1, logger }));
    t.after(() => engine.close());
    const served = async (): Promise<number> => {
      const response = await engine.infer({ model: 'a', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }] });
      return whichWeights([...(response.outputs[0]!.data as Float32Array)]);
    };
    assert.equal(await served(), 1);
    // A half-copied upload of version 2 (latest 1 selects it).
    await mkdir(join(repo, 'a', '2'), { recursive: true });
    await writeFile(join(repo, 'a', '2', 'model.onnx'), Buffer.from('not an onnx model'));
    const deadline = Date.now() + 10_000;
    while (!engine.repositoryIndex().some((e) => e.version === '2' && e.state === 'UNAVAILABLE')) {
      if (Date.now() > deadline) throw new Error(`version 2 never failed; index: ${JSON.stringify(engine.repositoryIndex())}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const failedAfterFirst = errors.length;
    assert.ok(failedAfterFirst >= 1, 'the failed load is logged');
    await new Promise((resolve) => setTimeout(resolve, 600)); // 6 polls
    assert.equal(errors.length, failedAfterFirst, `unchanged files are not loaded (and logged) again: ${errors.slice(failedAfterFirst).join('\n')}`);
    assert.equal(await served(), 1, 'version 1 still serves');
    assert.equal(engine.repositoryIndex().find((e) => e.version === '1')?.state, 'READY');
    // The upload completes: version 2 loads and replaces version 1.
    await replaceModelFile(repo, 'a', 2, mlpModel(weightsV2));
    while (engine.repositoryIndex().some((e) => e.version === '1')) {
      if (Date.now() > deadline + 10_000) throw new Error(`version 1 never retired; index: ${JSON.stringify(engine.repositoryIndex())}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(await served(), 2);
  });

  test('a batch that runs past the drain grace bounds neither a reload, polling of other models, nor shutdown: it fails at the grace', async (t) => {
    const repo = await makeTempRepository('tessera-grace-bound-');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const def = (delay: number) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [1], copy_of: 'x' }], delay_ms: delay });
    // A batch of 'slow' takes 15 s: far past the 300 ms grace.
    await writeFakeModel(repo, 'aaa_slow', 1, def(15_000), 'warmup: {enabled: false}\n');
    await writeFakeModel(repo, 'zzz_other', 1, def(0));
    const server = await startTestServer(undefined, repo, { grpc: false, management: false, metrics: false, shutdownGraceMs: 300, modelControlMode: 'poll', repositoryPollSecs: 0.2 });
    const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] });
    const slow = fetch(`${server.httpUrl}/v2/models/aaa_slow/infer`, { method: 'POST', body }).then(async (response) => ({ status: response.status, text: await response.text() }));
    await untilHeld(server, 'aaa_slow', 1);
    // The slow model is reloaded (a config change) and the other model gets a version 2.
    const started = Date.now();
    await writeFakeModel(repo, 'aaa_slow', 1, def(15_000), 'warmup: {enabled: false}\nmax_batch_size: 0\n');
    await writeFakeModel(repo, 'zzz_other', 2, def(0));
    while (server.engine.servingVersions('zzz_other')?.ready.includes('2') !== true) {
      assert.ok(Date.now() - started < 5_000, 'version 2 of the other model was picked up within 5 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const answer = await slow;
    assert.equal(answer.status, 503, answer.text);
    assert.match(answer.text, /MODEL_UNAVAILABLE|closed while running/);
    // Shutdown with a batch running is bounded by the grace too.
    void fetch(`${server.httpUrl}/v2/models/aaa_slow/infer`, { method: 'POST', body }).catch(() => undefined);
    await untilHeld(server, 'aaa_slow', 1);
    const closing = Date.now();
    await server.close();
    assert.ok(Date.now() - closing < 3_000, `close() took ${Date.now() - closing} ms with a 15 s batch running (grace 300 ms)`);
  });

  test('answers shaped after inference (classification, labels) come from the version that ran them, even once it is unloaded or reloaded', async (t) => {
    const repo = await makeTempRepository('tessera-served-facts-');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const def = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3], copy_of: 'x' }], delay_ms: 150 };
    await writeFakeModel(repo, 'm', 1, def, 'max_batch_size: 4\nwarmup: {enabled: false}\n');
    await writeFile(join(repo, 'm', 'labels.txt'), 'old_a\nold_b\nold_c\n');
    const server = await startTestServer(t, repo, { grpc: true, management: false, metrics: false, modelControlMode: 'explicit', loadModel: ['m'] });
    const grpc = new GrpcTestClient(server.grpcPort!);
    t.after(() => grpc.close());
    const row = [0.1, 0.9, 0.5];
    const rest = async (): Promise<string> => {
      const response = await fetch(`${server.httpUrl}/v2/models/m/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: row }], outputs: [{ name: 'y', parameters: { classification: 2 } }] }),
      });
      const body = (await response.json()) as { error?: string; outputs?: { data: string[] }[] };
      return response.status === 200 ? body.outputs![0]!.data.join(' ') : `${response.status} ${body.error}`;
    };
    const viaGrpc = async (): Promise<string> => {
      const answer = await grpc.call<{ raw_output_contents: Buffer[] }>('ModelInfer', {
        model_name: 'm',
        inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '3'], contents: { fp32_contents: row } }],
        outputs: [{ name: 'y', parameters: { classification: { int64_param: 2 } } }],
      }).catch((error: { details?: string }) => error.details ?? 'failed');
      // BYTES elements, each after its 4-byte length.
      return typeof answer === 'string' ? answer : answer.raw_output_contents[0]!.toString('latin1').replace(/[\x00-\x1f]/g, ' ').trim();
    };
    // In flight while version 1 is unloaded: answered in full, with version 1's labels.
    const inFlight = [rest(), rest(), viaGrpc()];
    await untilHeld(server, 'm', 3);
    const unloaded = fetch(`${server.httpUrl}/v2/repository/models/m/unload`, { method: 'POST' });
    const answers = await Promise.all(inFlight);
    assert.deepEqual(answers.slice(0, 2), ['0.9:1:old_b 0.5:2:old_c', '0.9:1:old_b 0.5:2:old_c']);
    assert.match(answers[2]!, /^0\.9:1:old_b\s+0\.5:2:old_c$/);
    assert.equal((await unloaded).status, 200);
    // In flight while a reload with new labels warms up and replaces version 1: still version 1's.
    assert.equal((await fetch(`${server.httpUrl}/v2/repository/models/m/load`, { method: 'POST' })).status, 200);
    const before = [rest(), rest()];
    await untilHeld(server, 'm', 2);
    await writeFile(join(repo, 'm', 'labels.txt'), 'new_a\nnew_b\nnew_c\n');
    const reloaded = fetch(`${server.httpUrl}/v2/repository/models/m/load`, { method: 'POST' });
    assert.deepEqual(await Promise.all(before), ['0.9:1:old_b 0.5:2:old_c', '0.9:1:old_b 0.5:2:old_c']);
    assert.equal((await reloaded).status, 200);
    assert.equal(await rest(), '0.9:1:new_b 0.5:2:new_c');
  });

  test("Triton's directory layout loads: a model.onnx directory holding the model.onnx file (and its external data)", async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await mkdir(join(repo, 'dirmodel', '1', 'model.onnx'), { recursive: true });
    await writeFile(join(repo, 'dirmodel', '1', 'model.onnx', 'model.onnx'), mlpModel(weightsV2));
    await mkdir(join(repo, 'empty', '1', 'model.onnx'), { recursive: true });
    const engine = await Engine.start(engineOptions(repo, { strictReadiness: false }));
    t.after(() => engine.close());
    const response = await engine.infer({ model: 'dirmodel', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }] });
    assert.equal(whichWeights([...(response.outputs[0]!.data as Float32Array)]), 2);
    const empty = engine.repositoryIndex().find((entry) => entry.name === 'empty');
    assert.equal(empty?.state, 'UNAVAILABLE');
    assert.match(empty?.reason ?? '', /is a directory without a model\.onnx in it/);
  });

  test('warm-up and variable dims: the default warm-up failing does not fail the load; warmup.dims sets the shape; a configured warm-up that fails does', async (t) => {
    // A 3x3 "valid" convolution over images of any size: 1x1 images (the default guess) are too small.
    const g = new GraphBuilder('valid_conv');
    const x = g.input('image', 'FP32', ['N', 1, 'H', 'W']);
    const w = g.initializer('w', 'FP32', [1, 1, 3, 3], new Float32Array([0, 1, 0, 1, -4, 1, 0, 1, 0]));
    g.output(g.node('Conv', [x, w], { kernel_shape: [3, 3] }), 'FP32', ['N', 1, 'H2', 'W2'], 'edges');
    const conv = g.build();
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'plain', 1, conv, { 'config.yaml': 'max_batch_size: 2\n' });
    await writeModel(repo, 'sized', 1, conv, { 'config.yaml': 'max_batch_size: 2\nwarmup:\n  dims: {image: [1, 8, 8]}\n' });
    await writeModel(repo, 'asked', 1, conv, { 'config.yaml': 'max_batch_size: 2\nwarmup:\n  batch_sizes: [1]\n' });
    await writeModel(repo, 'triton', 1, conv, {
      'config.pbtxt': 'max_batch_size: 2\nmodel_warmup [{ name: "w" batch_size: 1 inputs { key: "image" value: { data_type: TYPE_FP32 dims: [1, 5, 5] zero_data: true } } }]\n',
    });
    const warnings: string[] = [];
    const logger = { info: () => undefined, warn: (object: object) => warnings.push(JSON.stringify(object)), debug: () => undefined, error: () => undefined };
    const engine = await Engine.start(engineOptions(repo, { strictReadiness: false, logger }));
    t.after(() => engine.close());
    const state = (name: string) => engine.repositoryIndex().find((entry) => entry.name === name);
    assert.equal(state('plain')?.state, 'READY');
    assert.ok(warnings.some((line) => line.includes('"model":"plain"') && /Conv/.test(line)), warnings.join('\n'));
    assert.equal(state('sized')?.state, 'READY');
    assert.equal(state('triton')?.state, 'READY');
    assert.ok(!warnings.some((line) => line.includes('"model":"sized"') || line.includes('"model":"triton"')), warnings.join('\n'));
    assert.equal(state('asked')?.state, 'UNAVAILABLE');
    assert.match(state('asked')?.reason ?? '', /warm-up failed/);
    const edges = await engine.infer({ model: 'plain', inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 4, 4], data: new Float32Array(16).fill(1) }] });
    assert.deepEqual(edges.outputs[0]!.shape, [1, 1, 2, 2]);
  });

  test('a version policy that selects none of the version directories fails the load, naming the policy', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'spec', 1, mlpModel(weightsV1), { 'config.yaml': 'version_policy: { specific: { versions: [3] } }\n' });
    const engine = await Engine.start(engineOptions(repo, { controlMode: 'explicit' }));
    t.after(() => engine.close());
    await assert.rejects(engine.loadModel('spec'), /at least one version must be available under the version policy .*"versions":\[3\].*found versions 1/);
    const entry = engine.repositoryIndex().find((e) => e.name === 'spec');
    assert.equal(entry?.state, 'UNAVAILABLE');
  });

  test('50 load/unload cycles release sessions and workers (RSS stays within 30 MB)', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel(weightsV1), { 'config.yaml': 'instance_group:\n  - count: 2\n' });
    const engine = await Engine.start(engineOptions(repo, { controlMode: 'explicit' }));
    t.after(() => engine.close());
    const cycle = async (): Promise<void> => {
      await engine.loadModel('mlp');
      await engine.infer({ model: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }] });
      await engine.unloadModel('mlp');
    };
    for (let i = 0; i < 5; i++) await cycle(); // let allocators and JIT settle
    const before = process.memoryUsage.rss();
    for (let i = 0; i < 50; i++) await cycle();
    const grown = (process.memoryUsage.rss() - before) / 2 ** 20;
    t.diagnostic(`RSS grew ${grown.toFixed(1)} MB over 50 load/unload cycles`);
    assert.ok(grown < 30, `RSS grew ${grown.toFixed(1)} MB over 50 cycles`);
  });
});

describe('model directories on disk', () => {
  test('a model directory created after start can be loaded by name', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await mkdir(repo, { recursive: true });
    const engine = await Engine.start(engineOptions(repo, { controlMode: 'explicit' }));
    t.after(() => engine.close());
    await assert.rejects(engine.loadModel('late'), { code: 'MODEL_NOT_FOUND', message: /does not exist/ });
    assert.deepEqual(engine.repositoryIndex(), [], 'a name that is nowhere on disk leaves no record');
    assert.equal(engine.isReady(), true);
    await writeModel(repo, 'late', 1, mlpModel(weightsV1));
    await engine.loadModel('late');
    assert.equal(engine.modelReady('late'), true);
  });
});

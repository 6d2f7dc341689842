/**
 * Both backends pass the one conformance suite (test/support/conformance.ts); the ONNX backend
 * also survives many worker start/stop cycles.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { FakeBackend, type FakeModelDefinition } from '../src/backends/fake/backend.js';
import { OnnxBackend } from '../src/backends/onnx/backend.js';
import { Engine } from '../src/engine/engine.js';
import { addModel, identityModel, makeTempRepository, writeModel } from './support/fixtures.js';
import { backendConformance } from './support/conformance.js';

/** Write `contents` as `<dir>/1/<filename>` (a version directory, as in a repository). */
async function writeVersionFile(dir: string, filename: string, contents: Uint8Array | string): Promise<string> {
  const file = path.join(dir, '1', filename);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, contents);
  return file;
}

/** Active handles of worker threads (each shows as a MessagePort). */
function activeWorkerHandles(): string[] {
  return process.getActiveResourcesInfo().filter((name) => /worker|messageport/i.test(name));
}

backendConformance({
  name: 'OnnxBackend',
  create: () => new OnnxBackend(),
  writeIdentity: (dir, datatype, shape) => writeVersionFile(dir, 'model.onnx', identityModel(datatype, shape)),
  writeTwoInTwoOut: (dir) => writeVersionFile(dir, 'model.onnx', addModel()),
  twoInTwoOut: (a, b) => ({ sum: a + b, diff: a - b }),
});

/** The fake backend's two-input model: outputs copy one input each plus a constant. */
const FAKE_TWO_IN_TWO_OUT: FakeModelDefinition = {
  inputs: [
    { name: 'a', datatype: 'FP32', shape: [-1, 4] },
    { name: 'b', datatype: 'FP32', shape: [-1, 4] },
  ],
  outputs: [
    { name: 'sum', datatype: 'FP32', shape: [-1, 4], copy_of: 'a', add: 10 },
    { name: 'diff', datatype: 'FP32', shape: [-1, 4], copy_of: 'b', add: -1 },
  ],
};

backendConformance({
  name: 'FakeBackend',
  create: () => new FakeBackend(),
  writeIdentity: (dir, datatype, shape) => {
    const definition: FakeModelDefinition = {
      inputs: [{ name: 'x', datatype, shape: [...shape] }],
      outputs: [{ name: 'y', datatype, shape: [...shape], copy_of: 'x' }],
      // Executions take a while, so concurrent ones really overlap.
      delay_ms: 15,
    };
    return writeVersionFile(dir, 'model.json', JSON.stringify(definition));
  },
  writeTwoInTwoOut: (dir) => writeVersionFile(dir, 'model.json', JSON.stringify(FAKE_TWO_IN_TWO_OUT)),
  twoInTwoOut: (a, b) => ({ sum: a + 10, diff: b - 1 }),
});

test('OnnxBackend: 8 load/execute/close cycles of 2 worker instances do not crash or leak', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'tessera-onnx-cycles-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  const modelPath = await writeVersionFile(dir, 'model.onnx', identityModel('FP32', [-1, 2]));
  const backend = new OnnxBackend();
  const started = performance.now();
  for (let cycle = 0; cycle < 8; cycle++) {
    const model = await backend.load({ name: 'cycles', version: '1', modelPath, instanceCount: 2, parameters: {} });
    assert.equal(model.instances.length, 2);
    // Even cycles run both instances before closing; odd ones close straight after loading.
    if (cycle % 2 === 0) {
      const results = await Promise.all(
        model.instances.map((instance, i) =>
          instance.execute([{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([cycle, i]) }], ['y']),
        ),
      );
      results.forEach((result, i) => assert.deepEqual(Array.from(result.outputs[0]!.data as Float32Array), [cycle, i]));
    }
    await model.close();
  }
  // The workers are gone: a live worker shows as an active MessagePort handle.
  const workers = activeWorkerHandles();
  assert.deepEqual(workers, [], `worker handles still active: ${workers.join(', ')}`);
  t.diagnostic(`8 cycles in ${(performance.now() - started).toFixed(0)} ms`);
});

test('OnnxBackend: an instance whose worker dies is refused as unavailable, then replaced and serves again', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'tessera-onnx-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  const modelPath = await writeVersionFile(dir, 'model.onnx', identityModel('FP32', [-1, 2]));
  const model = await new OnnxBackend().load({ name: 'crash', version: '1', modelPath, instanceCount: 1, parameters: {} });
  t.after(() => model.close());
  const instance = model.instances[0]!;
  const run = (value: number) => instance.execute([{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([value, value]) }], ['y']);
  assert.deepEqual(Array.from((await run(1)).outputs[0]!.data as Float32Array), [1, 1]);
  // The worker dies as an uncaught error or an out-of-memory in it would end it.
  await (instance as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
  await assert.rejects(run(2), (error: { code?: string }) => error.code === 'MODEL_UNAVAILABLE');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const outcome = await run(3).then((result) => Array.from(result.outputs[0]!.data as Float32Array), (error: { code?: string; message?: string }) => error);
    if (Array.isArray(outcome)) {
      assert.deepEqual(outcome, [3, 3]);
      break;
    }
    assert.equal(outcome.code, 'MODEL_UNAVAILABLE', outcome.message);
    assert.ok(Date.now() < deadline, 'the instance was replaced within 15 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await model.close();
  assert.deepEqual(activeWorkerHandles(), []);
});

test("Engine: while one instance's worker is replaced, the model's other instance serves every request", async (t) => {
  const repo = await makeTempRepository('tessera-one-dead-instance-');
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'pair', 1, identityModel('FP32', [-1, 2]), { 'config.yaml': 'max_batch_size: 4\ninstance_group: [{count: 2}]\n' });
  const engine = await Engine.start({
    repository: repo,
    backends: [new OnnxBackend()],
    scheduling: { defaultMaxBatchSize: 4, maxQueueSize: 64, retryAfterSeconds: 1, holdUntilQueued: 0 },
    strictReadiness: true,
    drainGraceMs: 1_000,
  });
  t.after(() => engine.close());
  const infer = (value: number) =>
    engine.infer({ model: 'pair', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([value, value]) }] }).then(
      (response) => Array.from(response.outputs[0]!.data as Float32Array)[0],
      (error: { code?: string }) => error.code,
    );
  assert.equal(await infer(1), 1);
  // Instance 0's worker dies (as an abort or out-of-memory in its thread would end it).
  const internals = engine as unknown as { registry: { get(name: string): { versions: Map<string, { backendModel: { instances: { worker: { terminate(): Promise<number> }; available(): boolean }[] } }> } } };
  const instances = internals.registry.get('pair').versions.get('1')!.backendModel.instances;
  await instances[0]!.worker.terminate();
  assert.equal(instances[0]!.available(), false);
  // One after another and several at once: all answered by instance 1, none refused.
  for (let i = 0; i < 10; i++) assert.equal(await infer(i), i);
  assert.deepEqual(await Promise.all([20, 21, 22, 23, 24, 25].map(infer)), [20, 21, 22, 23, 24, 25]);
  // Instance 0 comes back.
  for (const deadline = Date.now() + 15_000; !instances[0]!.available(); ) {
    assert.ok(Date.now() < deadline, 'instance 0 was replaced within 15 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

test('OnnxBackend: a failed multi-instance load stops every worker it started', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'tessera-onnx-fail-'));
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  const modelPath = await writeVersionFile(dir, 'model.onnx', new TextEncoder().encode('not onnx'));
  for (let i = 0; i < 3; i++) {
    await assert.rejects(new OnnxBackend().load({ name: 'bad', version: '1', modelPath, instanceCount: 2, parameters: {} }), /could not load/);
  }
  assert.deepEqual(activeWorkerHandles(), []);
});

test('Engine: close() during an explicit model load leaves no worker running', async (t) => {
  const repo = await makeTempRepository('tessera-close-while-loading-');
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'late', 1, identityModel('FP32', [-1, 4]));
  const engine = await Engine.start({
    repository: repo,
    backends: [new OnnxBackend()],
    scheduling: { defaultMaxBatchSize: 8, maxQueueSize: 16, retryAfterSeconds: 1, holdUntilQueued: 0 },
    strictReadiness: true,
    drainGraceMs: 1_000,
    controlMode: 'explicit',
  });
  const loading = engine.loadModel('late').then(
    () => 'loaded',
    (error: unknown) => (error as Error).message,
  );
  // The worker is starting: close now.
  await new Promise((resolve) => setTimeout(resolve, 20));
  await engine.close();
  assert.deepEqual(activeWorkerHandles(), [], 'a worker outlived close()');
  await loading;
  assert.ok(engine.repositoryIndex().every((entry) => entry.state !== 'READY'), JSON.stringify(engine.repositoryIndex()));
  assert.deepEqual(activeWorkerHandles(), []);
});

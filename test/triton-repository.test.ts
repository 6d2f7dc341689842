import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';
import { makeTempRepository, mlpModel, mlpReference, defaultMlpWeights, writeModel } from './support/fixtures.js';
import { getJson, postJson, startTestServer } from './support/server.js';

const TRITON_CONFIG = `
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [
  {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "probs"
    data_type: TYPE_FP32
    dims: [ 3 ]
  }
]
instance_group [ { count: 2, kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 100
}
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "openvino" } ] } }
version_policy: { all { } }
`;

test('a Triton model repository with config.pbtxt is served as it is', async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'mlp', 1, mlpModel(), { 'config.pbtxt': TRITON_CONFIG });
  await writeModel(repo, 'mlp', 2, mlpModel());
  await writeModel(repo, 'broken', 1, mlpModel(), { 'config.pbtxt': 'max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] \n' });
  const server = await startTestServer(t, repo, { strictReadiness: false });

  const config = (await getJson(`${server.httpUrl}/v2/models/mlp/config`)).body as Record<string, unknown>;
  assert.equal(config['max_batch_size'], 4);
  assert.deepEqual(config['instance_group'], [{ name: 'mlp', kind: 'KIND_CPU', count: 2 }]);
  assert.deepEqual((config['dynamic_batching'] as { preferred_batch_size: number[] }).preferred_batch_size, [2, 4]);
  assert.deepEqual(config['parameters'], { intra_op_thread_count: { string_value: '1' } });
  assert.deepEqual(((await getJson(`${server.httpUrl}/v2/models/mlp`)).body as { versions: string[] }).versions, ['1', '2']);

  const row = [0.5, -1, 2, 0.25];
  const result = await postJson(`${server.httpUrl}/v2/models/mlp/versions/1/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: row }] });
  assert.equal(result.status, 200);
  const expected = mlpReference(defaultMlpWeights(), row);
  (result.body as { outputs: { data: number[] }[] }).outputs[0]!.data.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-5));

  const index = (await postJson(`${server.httpUrl}/v2/repository/index`, {})).body as { name: string; state: string; reason: string }[];
  const broken = index.find((entry) => entry.name === 'broken')!;
  assert.equal(broken.state, 'UNAVAILABLE');
  assert.match(broken.reason, /broken\/config\.pbtxt:\d+:\d+/, broken.reason);
});

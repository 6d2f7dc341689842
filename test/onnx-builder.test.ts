/**
 * Tests of the ONNX graph builder and the test-model fixtures: every fixture is loaded
 * directly in onnxruntime-node and its outputs are checked against plain-JS references.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

import {
  addModel,
  calibratedSlowModel,
  defaultMlpWeights,
  identityModel,
  makeTempRepository,
  mlpBenchModel,
  mlpBenchWeights,
  mlpModel,
  mlpReference,
  mulberry32,
  resnet18Model,
  writeModel,
} from './support/fixtures.js';
import { type Datatype, GraphBuilder, type TensorArray, float, floats } from './support/onnx-builder.js';

const { onnx } = onnxProto;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function session(bytes: Uint8Array | string): Promise<ort.InferenceSession> {
  return typeof bytes === 'string' ? ort.InferenceSession.create(bytes) : ort.InferenceSession.create(bytes);
}

async function runOnce(
  bytes: Uint8Array | string,
  feeds: Record<string, ort.Tensor>,
): Promise<Record<string, ort.Tensor>> {
  const s = await session(bytes);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

function output(result: Record<string, ort.Tensor>, name: string): ort.Tensor {
  const t = result[name];
  assert.ok(t !== undefined, `missing output '${name}'`);
  return t;
}

function float32Data(t: ort.Tensor): Float32Array {
  assert.ok(t.data instanceof Float32Array, `expected float32 data, got ${t.type}`);
  return t.data;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): void {
  assert.equal(actual.length, expected.length, 'length');
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] ?? NaN;
    const e = expected[i] ?? NaN;
    assert.ok(Math.abs(a - e) <= tol, `element ${i}: ${a} vs ${e} (tol ${tol})`);
  }
}

function seededInput(n: number, seed: number, scale = 2): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
}

/** Sample data (6 elements, shape [2, 3]) as an ort.Tensor of each datatype. */
function sampleTensor(datatype: Datatype): ort.Tensor {
  const dims = [2, 3];
  switch (datatype) {
    case 'BOOL':
      return new ort.Tensor('bool', new Uint8Array([1, 0, 1, 1, 0, 0]), dims);
    case 'UINT8':
      return new ort.Tensor('uint8', new Uint8Array([0, 1, 2, 127, 128, 255]), dims);
    case 'UINT16':
      return new ort.Tensor('uint16', new Uint16Array([0, 1, 2, 300, 40000, 65535]), dims);
    case 'UINT32':
      return new ort.Tensor('uint32', new Uint32Array([0, 1, 2, 70000, 2 ** 31, 2 ** 32 - 1]), dims);
    case 'UINT64':
      return new ort.Tensor('uint64', new BigUint64Array([0n, 1n, 2n, 2n ** 40n, 2n ** 63n, 2n ** 64n - 1n]), dims);
    case 'INT8':
      return new ort.Tensor('int8', new Int8Array([-128, -1, 0, 1, 2, 127]), dims);
    case 'INT16':
      return new ort.Tensor('int16', new Int16Array([-32768, -1, 0, 1, 300, 32767]), dims);
    case 'INT32':
      return new ort.Tensor('int32', new Int32Array([-(2 ** 31), -1, 0, 1, 70000, 2 ** 31 - 1]), dims);
    case 'INT64':
      return new ort.Tensor('int64', new BigInt64Array([-(2n ** 63n), -1n, 0n, 1n, 2n ** 40n, 2n ** 63n - 1n]), dims);
    case 'FP16':
      // 0, 1, -2, 0.5, 65504 (max), +Infinity as IEEE half bits.
      return new ort.Tensor('float16', new Uint16Array([0x0000, 0x3c00, 0xc000, 0x3800, 0x7bff, 0x7c00]), dims);
    case 'FP32':
      return new ort.Tensor('float32', new Float32Array([-1.5, 0, 1, 3.25, 1e30, -1e-30]), dims);
    case 'FP64':
      return new ort.Tensor('float64', new Float64Array([-1.5, 0, 1, Math.PI, 1e300, -1e-300]), dims);
    case 'BYTES':
      return new ort.Tensor('string', ['a', '', 'héllo', 'with space', '日本', 'x'.repeat(100)], dims);
  }
}

for (const datatype of ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const) {
  test(`identity model round-trips ${datatype}`, async () => {
    const input = sampleTensor(datatype);
    const y = output(await runOnce(identityModel(datatype, [-1, 3]), { x: input }), 'y');
    assert.equal(y.type, input.type);
    assert.deepEqual(y.dims, [2, 3]);
    assert.deepEqual(Array.from(y.data as ArrayLike<unknown>), Array.from(input.data as ArrayLike<unknown>));
  });
}

test('identity model: INT64 [-1, 3] returns BigInt64Array, BYTES [-1] returns strings', async () => {
  const ints = output(
    await runOnce(identityModel('INT64', [-1, 3]), {
      x: new ort.Tensor('int64', new BigInt64Array([1n, -2n, 3n]), [1, 3]),
    }),
    'y',
  );
  assert.ok(ints.data instanceof BigInt64Array);
  assert.deepEqual(Array.from(ints.data), [1n, -2n, 3n]);

  const strings = output(
    await runOnce(identityModel('BYTES', [-1]), { x: new ort.Tensor('string', ['cat', 'dog', ''], [3]) }),
    'y',
  );
  assert.deepEqual(strings.data, ['cat', 'dog', '']);
  assert.deepEqual(strings.dims, [3]);
});

test('identity model metadata: dynamic batch is symbolic, fixed shape is fixed', async () => {
  const dynamic = await session(identityModel('FP32', [-1, 4]));
  const fixed = await session(identityModel('FP32', [2, 4]));
  try {
    assert.deepEqual(dynamic.inputNames, ['x']);
    assert.deepEqual(dynamic.outputNames, ['y']);
    const dynIn = dynamic.inputMetadata[0];
    const fixIn = fixed.inputMetadata[0];
    assert.ok(dynIn?.isTensor === true && fixIn?.isTensor === true);
    assert.deepEqual(dynIn.shape, ['batch', 4]);
    assert.equal(dynIn.type, 'float32');
    assert.deepEqual(fixIn.shape, [2, 4]);
    const y = output(
      await fixed.run({ x: new ort.Tensor('float32', new Float32Array(8).fill(7), [2, 4]) }),
      'y',
    );
    assert.deepEqual(Array.from(float32Data(y)), new Array<number>(8).fill(7));
    await assert.rejects(fixed.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4]) }));
  } finally {
    await dynamic.release();
    await fixed.release();
  }
});

test('add model: two inputs, two outputs', async () => {
  const a = seededInput(12, 1);
  const b = seededInput(12, 2);
  const result = await runOnce(addModel(), {
    a: new ort.Tensor('float32', a, [3, 4]),
    b: new ort.Tensor('float32', b, [3, 4]),
  });
  assert.deepEqual(Object.keys(result).sort(), ['diff', 'sum']);
  const sum = output(result, 'sum');
  const diff = output(result, 'diff');
  assert.deepEqual(sum.dims, [3, 4]);
  assert.deepEqual(Array.from(float32Data(sum)), Array.from(a, (v, i) => Math.fround(v + (b[i] ?? NaN))));
  assert.deepEqual(Array.from(float32Data(diff)), Array.from(a, (v, i) => Math.fround(v - (b[i] ?? NaN))));
});

test('MLP model matches the plain-JS reference', async () => {
  const weights = defaultMlpWeights();
  const input = seededInput(5 * 4, 3);
  const probs = output(await runOnce(mlpModel(weights), { x: new ort.Tensor('float32', input, [5, 4]) }), 'probs');
  assert.deepEqual(probs.dims, [5, 3]);
  const data = float32Data(probs);
  assertClose(data, mlpReference(weights, input), 1e-5);
  for (let r = 0; r < 5; r++) {
    const row = data.subarray(r * 3, r * 3 + 3);
    assert.ok(Math.abs(row.reduce((s, v) => s + v, 0) - 1) < 1e-5);
  }
  // The reference is not trivially uniform: the weights make distinct predictions.
  const ref = mlpReference(weights, input);
  assert.ok(Math.max(...ref) - Math.min(...ref) > 0.1);
});

test('MLP bench model: 64 -> 256 -> 256 -> 10, matches the reference', async () => {
  const batch = 7;
  const input = seededInput(batch * 64, 4);
  const probs = output(await runOnce(mlpBenchModel(), { x: new ort.Tensor('float32', input, [batch, 64]) }), 'probs');
  assert.deepEqual(probs.dims, [batch, 10]);
  assertClose(float32Data(probs), mlpReference(mlpBenchWeights(), input), 1e-5);
});

test('slow model: y equals x, and a run takes roughly the requested time', async (t) => {
  const targetMs = 300;
  const s = await session(await calibratedSlowModel(targetMs));
  try {
    const x = new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, -5, 6, 7.5, 8]), [2, 4]);
    await s.run({ x });
    const start = performance.now();
    const y = output(await s.run({ x }), 'y');
    const elapsed = performance.now() - start;
    t.diagnostic(`slow model (${targetMs} ms requested) ran in ${elapsed.toFixed(0)} ms`);
    assert.deepEqual(Array.from(float32Data(y)), [1, 2, 3, 4, -5, 6, 7.5, 8]);
    // Loose bounds: calibrated on this machine, but CI machines are noisy.
    assert.ok(elapsed > targetMs * 0.3 && elapsed < targetMs * 5, `elapsed ${elapsed} ms`);
  } finally {
    await s.release();
  }
});

test('ResNet-18 model: batch 1 gives finite logits of shape [1, 1000]', async (t) => {
  let start = performance.now();
  const bytes = resnet18Model();
  t.diagnostic(`resnet18 built in ${(performance.now() - start).toFixed(0)} ms, ${(bytes.length / 1e6).toFixed(1)} MB`);
  const decoded = onnx.ModelProto.decode(bytes);
  const ops = decoded.graph?.node?.map((n) => n.opType) ?? [];
  assert.equal(ops.filter((op) => op === 'Conv').length, 20); // 1 + 16 + 3 downsample
  assert.equal(ops.filter((op) => op === 'Add').length, 8);
  const s = await session(bytes);
  try {
    assert.deepEqual(s.inputNames, ['input']);
    assert.deepEqual(s.outputNames, ['logits']);
    const input = seededInput(3 * 224 * 224, 5, 1);
    const feeds = { input: new ort.Tensor('float32', input, [1, 3, 224, 224]) };
    await s.run(feeds);
    start = performance.now();
    const logits = output(await s.run(feeds), 'logits');
    t.diagnostic(`resnet18 batch-1 inference: ${(performance.now() - start).toFixed(0)} ms`);
    assert.deepEqual(logits.dims, [1, 1000]);
    const data = float32Data(logits);
    assert.ok(data.every((v) => Number.isFinite(v)));
    assert.ok(Math.max(...data) - Math.min(...data) > 1e-3, 'logits should not be constant');
  } finally {
    await s.release();
  }
});

test('iris example model classifies known rows', async () => {
  const modelPath = path.join(repoRoot, 'examples/models/iris/1/model.onnx');
  const labels = (await readFile(path.join(repoRoot, 'examples/models/iris/labels.txt'), 'utf8')).trim().split('\n');
  assert.deepEqual(labels, ['setosa', 'versicolor', 'virginica']);
  const rows = [
    [5.1, 3.5, 1.4, 0.2], // setosa (row 1)
    [7.0, 3.2, 4.7, 1.4], // versicolor (row 51)
    [6.7, 3.0, 5.2, 2.3], // virginica (row 146)
    [5.7, 2.8, 4.1, 1.3], // versicolor (row 100)
  ];
  const expected = ['setosa', 'versicolor', 'virginica', 'versicolor'];
  const probs = output(
    await runOnce(modelPath, { features: new ort.Tensor('float32', Float32Array.from(rows.flat()), [4, 4]) }),
    'probabilities',
  );
  assert.deepEqual(probs.dims, [4, 3]);
  const data = float32Data(probs);
  rows.forEach((_, r) => {
    const row = Array.from(data.subarray(r * 3, r * 3 + 3));
    assert.ok(Math.abs(row.reduce((s, v) => s + v, 0) - 1) < 1e-5);
    assert.equal(labels[row.indexOf(Math.max(...row))], expected[r], `row ${r}: ${row.join(', ')}`);
  });
});

test('writeModel lays out a Triton-style repository', async () => {
  const repo = await makeTempRepository();
  try {
    const modelPath = await writeModel(repo, 'mlp', 3, mlpModel(), {
      'config.yaml': 'name: mlp\n',
      'labels.txt': 'a\nb\nc\n',
    });
    assert.equal(modelPath, path.join(repo, 'mlp', '3', 'model.onnx'));
    assert.equal(await readFile(path.join(repo, 'mlp', 'config.yaml'), 'utf8'), 'name: mlp\n');
    assert.equal(await readFile(path.join(repo, 'mlp', 'labels.txt'), 'utf8'), 'a\nb\nc\n');
    const probs = output(
      await runOnce(modelPath, { x: new ort.Tensor('float32', new Float32Array(4), [1, 4]) }),
      'probs',
    );
    assert.deepEqual(probs.dims, [1, 3]);
  } finally {
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  }
});

test('builder: attributes are encoded with the right types', () => {
  const g = new GraphBuilder('attrs');
  const x = g.input('x', 'FP32', [-1, 'n']);
  const y = g.node('Custom', [x], {
    i: 3,
    f: 0.5,
    forced: float(1),
    ints: [1, 2],
    fs: [0.5, 1],
    forcedFloats: floats([1, 2]),
    s: 'héllo',
  }, { domain: 'test.domain' });
  g.output(y, 'FP32');
  const model = onnx.ModelProto.decode(g.build({ opset: 17, metadata: { k: 'v' } }));
  const T = onnx.AttributeProto.AttributeType;
  const attrs = new Map(model.graph?.node?.[0]?.attribute?.map((a) => [a.name, a]) ?? []);
  assert.equal(attrs.get('i')?.type, T.INT);
  assert.equal(Number(attrs.get('i')?.i), 3);
  assert.equal(attrs.get('f')?.type, T.FLOAT);
  assert.equal(attrs.get('forced')?.type, T.FLOAT);
  assert.equal(attrs.get('forced')?.f, 1);
  assert.equal(attrs.get('ints')?.type, T.INTS);
  assert.equal(attrs.get('fs')?.type, T.FLOATS);
  assert.equal(attrs.get('forcedFloats')?.type, T.FLOATS);
  assert.equal(attrs.get('s')?.type, T.STRING);
  assert.equal(new TextDecoder().decode(attrs.get('s')?.s ?? new Uint8Array()), 'héllo');
  assert.equal(Number(model.irVersion), 8);
  assert.deepEqual(
    model.opsetImport.map((o) => [o.domain, Number(o.version)]),
    [['', 17], ['test.domain', 1]],
  );
  assert.deepEqual(model.metadataProps.map((p) => [p.key, p.value]), [['k', 'v']]);
  const dims = model.graph?.input?.[0]?.type?.tensorType?.shape?.dim?.map((d) => d.dimParam || Number(d.dimValue));
  assert.deepEqual(dims, ['batch', 'n']);
});

test('builder: rejects undefined inputs, duplicate names and mismatched data', () => {
  const g = new GraphBuilder('bad');
  const x = g.input('x', 'FP32', [2]);
  assert.throws(() => g.node('Relu', ['nope']), /not defined/);
  assert.throws(() => g.input('x', 'FP32', [2]), /already defined/);
  assert.throws(() => g.initializer('w', 'FP32', [3], new Float32Array(2)), /2 elements/);
  assert.throws(() => g.initializer('w', 'FP32', [2], new Float64Array(2) as unknown as Float32Array), /Float32Array/);
  assert.throws(() => g.initializer('b', 'BOOL', [1], new Uint8Array([2])), /0 or 1/);
  assert.throws(() => new GraphBuilder('empty').build(), /no outputs/);
  g.output(g.node('Relu', [x]), 'FP32', [2], 'y');
  assert.throws(() => g.output('y', 'FP32'), /declared twice/);
});

test('builder: initializers of every datatype load and come out unchanged', async () => {
  const g = new GraphBuilder('consts');
  const cases: [Datatype, ort.Tensor][] = (
    ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const
  ).map((d) => [d, sampleTensor(d)]);
  for (const [datatype, tensor] of cases) {
    const name = `c_${datatype.toLowerCase()}`;
    const c = g.initializer(name, datatype, [2, 3], tensor.data as TensorArray<Datatype>);
    g.output(g.node('Identity', [c]), datatype, [2, 3], `out_${datatype.toLowerCase()}`);
  }
  g.input('unused', 'FP32', [1]);
  const result = await runOnce(g.build(), { unused: new ort.Tensor('float32', new Float32Array(1), [1]) });
  for (const [datatype, tensor] of cases) {
    const out = output(result, `out_${datatype.toLowerCase()}`);
    assert.equal(out.type, tensor.type, datatype);
    assert.deepEqual(Array.from(out.data as ArrayLike<unknown>), Array.from(tensor.data as ArrayLike<unknown>), datatype);
  }
});

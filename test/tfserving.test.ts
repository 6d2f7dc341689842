/**
 * TensorFlow Serving's REST API (tensorflow_serving/g3doc/api_rest.md) against a real server:
 * model status, metadata (signature_def), predict in row and columnar format with datatypes from
 * the model's metadata, and `{"error": ...}` failures with TF Serving's statuses.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { TesseraServer } from '../src/server/server.js';
import { addModel, defaultMlpWeights, makeTempRepository, mlpModel, mlpReference, seededMlpWeights, writeModel } from './support/fixtures.js';
import { fakeModelJson, getJson, postJson, startTestServer } from './support/server.js';

async function writeFake(repo: string, name: string, definition: Parameters<typeof fakeModelJson>[0], configYaml = ''): Promise<void> {
  await mkdir(path.join(repo, name, '1'), { recursive: true });
  await writeFile(path.join(repo, name, '1', 'model.json'), fakeModelJson(definition));
  await writeFile(path.join(repo, name, 'config.yaml'), `backend: fake\n${configYaml}`);
}

function assertClose(actual: unknown, expected: ArrayLike<number>, tolerance = 1e-5): void {
  const flat = (actual as unknown[]).flat(Infinity) as number[];
  assert.equal(flat.length, expected.length);
  flat.forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) < tolerance, `element ${i}: ${value} vs ${expected[i]}`));
}

function rowsOf(flat: ArrayLike<number>, width: number): number[][] {
  return Array.from({ length: flat.length / width }, (_, r) => Array.from(flat).slice(r * width, (r + 1) * width));
}

const V1 = seededMlpWeights([4, 8, 3], 1);
const V2 = defaultMlpWeights();
const X = [0.5, -1, 2, 0.25, 1, 1, -1, 3, 0, 0, 0, 0];

describe('TF Serving REST API', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';

  before(async () => {
    repo = await makeTempRepository();
    await writeModel(repo, 'mlp', 1, mlpModel(V1), { 'config.yaml': 'version_policy:\n  all: {}\n' });
    await writeModel(repo, 'mlp', 2, mlpModel(V2));
    await writeModel(repo, 'add', 1, addModel());
    await writeFake(repo, 'typed', {
      inputs: [
        { name: 'ids', datatype: 'INT64', shape: [-1, 2] },
        { name: 'flag', datatype: 'BOOL', shape: [-1] },
        { name: 'blob', datatype: 'BYTES', shape: [-1] },
      ],
      outputs: [
        { name: 'ids_out', datatype: 'INT64', shape: [-1, 2], copy_of: 'ids', add: 1 },
        { name: 'flag_out', datatype: 'BOOL', shape: [-1], copy_of: 'flag' },
        { name: 'blob_bytes', datatype: 'BYTES', shape: [-1], copy_of: 'blob' },
      ],
    });
    await writeFake(repo, 'half', { inputs: [{ name: 'h', datatype: 'FP16', shape: [-1, 2] }], outputs: [{ name: 'h2', datatype: 'FP16', shape: [-1, 2], copy_of: 'h' }] });
    server = await startTestServer(undefined, repo);
    base = server.httpUrl;
  });
  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('GET /v1/models/{m}: every version AVAILABLE with status OK; /versions/{v} just that one', async () => {
    assert.deepEqual(await getJson(`${base}/v1/models/mlp`), {
      status: 200,
      body: {
        model_version_status: [
          { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
          { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
        ],
      },
    });
    assert.deepEqual((await getJson(`${base}/v1/models/mlp/versions/2`)).body, {
      model_version_status: [{ version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }],
    });
  });

  test('GET .../metadata: model_spec and a serving_default signature_def in TF Serving JSON', async () => {
    const { status, body } = await getJson(`${base}/v1/models/add/metadata`);
    assert.equal(status, 200);
    const dims = (...sizes: number[]): object => ({ dim: sizes.map((size) => ({ size: String(size), name: '' })), unknown_rank: false });
    assert.deepEqual(body, {
      model_spec: { name: 'add', signature_name: '', version: '1' },
      metadata: {
        signature_def: {
          signature_def: {
            serving_default: {
              inputs: { a: { dtype: 'DT_FLOAT', tensor_shape: dims(-1, 4), name: 'a' }, b: { dtype: 'DT_FLOAT', tensor_shape: dims(-1, 4), name: 'b' } },
              outputs: { sum: { dtype: 'DT_FLOAT', tensor_shape: dims(-1, 4), name: 'sum' }, diff: { dtype: 'DT_FLOAT', tensor_shape: dims(-1, 4), name: 'diff' } },
              method_name: 'tensorflow/serving/predict',
            },
          },
        },
      },
    });
    const typed = (await getJson(`${base}/v1/models/typed/versions/1/metadata`)).body as { metadata: { signature_def: { signature_def: { serving_default: { inputs: Record<string, { dtype: string }> } } } } };
    const inputs = typed.metadata.signature_def.signature_def.serving_default.inputs;
    assert.deepEqual([inputs['ids']!.dtype, inputs['flag']!.dtype, inputs['blob']!.dtype], ['DT_INT64', 'DT_BOOL', 'DT_STRING']);
    assert.equal(((await getJson(`${base}/v1/models/mlp/metadata`)).body as { model_spec: { version: string } }).model_spec.version, '2');
    // A pinned default version is the one requests naming none get, and the one metadata names.
    server.engine.setDefaultVersion('mlp', '1');
    try {
      assert.equal(((await getJson(`${base}/v1/models/mlp/metadata`)).body as { model_spec: { version: string } }).model_spec.version, '1');
    } finally {
      server.engine.setDefaultVersion('mlp', undefined);
    }
  });

  test(':predict row format, single input: instances are rows; predictions are the rows of the one output', async () => {
    const { status, body } = await postJson(`${base}/v1/models/mlp:predict`, { instances: rowsOf(X, 4) });
    assert.equal(status, 200);
    const predictions = (body as { predictions: number[][] }).predictions;
    assert.equal(predictions.length, 3);
    assert.equal(predictions[0]!.length, 3);
    assertClose(predictions, mlpReference(V2, X));
    // The version path, and the same row in object form with signature_name serving_default.
    const v1 = await postJson(`${base}/v1/models/mlp/versions/1:predict`, { signature_name: 'serving_default', instances: rowsOf(X, 4).map((x) => ({ x })) });
    assert.equal(v1.status, 200);
    assertClose((v1.body as { predictions: unknown }).predictions, mlpReference(V1, X));
  });

  test(':predict row format, named inputs and several outputs: one object per row', async () => {
    const { status, body } = await postJson(`${base}/v1/models/add:predict`, {
      instances: [
        { a: [1, 2, 3, 4], b: [1, 1, 1, 1] },
        { a: [0, 0, 0, 0], b: [2, 2, 2, 2] },
      ],
    });
    assert.equal(status, 200);
    assert.deepEqual(body, {
      predictions: [
        { sum: [2, 3, 4, 5], diff: [0, 1, 2, 3] },
        { sum: [2, 2, 2, 2], diff: [-2, -2, -2, -2] },
      ],
    });
  });

  test(':predict columnar format: one tensor or named tensors; outputs whole', async () => {
    const single = await postJson(`${base}/v1/models/mlp:predict`, { inputs: rowsOf(X, 4) });
    assert.equal(single.status, 200);
    const outputs = (single.body as { outputs: number[][] }).outputs;
    assert.equal(outputs.length, 3);
    assertClose(outputs, mlpReference(V2, X));
    const named = await postJson(`${base}/v1/models/add:predict`, { inputs: { a: [[1, 2, 3, 4]], b: [[4, 3, 2, 1]] } });
    assert.deepEqual(named, { status: 200, headers: named.headers, body: { outputs: { sum: [[5, 5, 5, 5]], diff: [[-3, -1, 1, 3]] } } });
  });

  test('datatypes come from the model: JSON numbers to INT64, booleans, strings and {"b64"} to BYTES; *_bytes outputs as b64', async () => {
    const { status, body } = await postJson(`${base}/v1/models/typed:predict`, {
      instances: [
        { ids: [2 ** 40, -7], flag: true, blob: 'hello' },
        { ids: [0, 1], flag: false, blob: { b64: Buffer.from([0, 255, 1]).toString('base64') } },
      ],
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body, {
      predictions: [
        { ids_out: [2 ** 40 + 1, -6], flag_out: true, blob_bytes: { b64: Buffer.from('hello').toString('base64') } },
        { ids_out: [1, 2], flag_out: false, blob_bytes: { b64: 'AP8B' } },
      ],
    });
    const half = await postJson(`${base}/v1/models/half:predict`, { inputs: [[0.5, 1.5]] });
    assert.deepEqual(half.body, { outputs: [[0.5, 1.5]] });
  });

  test(':predict with an empty signature_name is the default signature; /versions/{v} ignores leading zeros', async () => {
    const empty = await postJson(`${base}/v1/models/mlp:predict`, { signature_name: '', instances: rowsOf(X, 4) });
    assert.equal(empty.status, 200, JSON.stringify(empty.body));
    assertClose((empty.body as { predictions: unknown }).predictions, mlpReference(V2, X));
    const padded = await postJson(`${base}/v1/models/mlp/versions/001:predict`, { instances: rowsOf(X, 4) });
    assert.equal(padded.status, 200, JSON.stringify(padded.body));
    assertClose((padded.body as { predictions: unknown }).predictions, mlpReference(V1, X));
  });

  const failures: [string, string, unknown, number, RegExp][] = [
    ['an unknown model', '/v1/models/nope:predict', { instances: [[1]] }, 404, /model 'nope' is not in the repository/],
    ['an unknown version', '/v1/models/mlp/versions/7:predict', { instances: [[1, 2, 3, 4]] }, 404, /no version '7'/],
    ['a version label that is no alias of the model', '/v1/models/mlp/labels/stable:predict', { instances: [[1, 2, 3, 4]] }, 404, /no version labelled 'stable'.*\/versions\/\{n\}/],
    ['another signature', '/v1/models/mlp:predict', { signature_name: 'classify', instances: [[1, 2, 3, 4]] }, 400, /signature_name "classify" is not served.*serving_default/],
    ['both instances and inputs', '/v1/models/mlp:predict', { instances: [[1, 2, 3, 4]], inputs: [[1, 2, 3, 4]] }, 400, /both 'instances'.*and 'inputs'/],
    ['neither instances nor inputs', '/v1/models/mlp:predict', { rows: [] }, 400, /needs 'instances'.*or 'inputs'/],
    ['a body that is not JSON', '/v1/models/mlp:predict', '{"instances": [1,', 400, /not valid JSON/],
    ['a fraction for an INT64 input', '/v1/models/typed:predict', { inputs: { ids: [[1.5, 2]], flag: [true], blob: ['a'] } }, 400, /input 'ids': element 0 is 1.5/],
    ['ragged rows', '/v1/models/mlp:predict', { instances: [[1, 2, 3, 4], [1, 2, 3]] }, 400, /ragged value: value\[1\] has 3 elements where the first has 4/],
    ['the wrong row width', '/v1/models/mlp:predict', { instances: [[1, 2, 3]] }, 400, /expected shape \[-1,4\], got \[1,3\]/],
    ['plain values for a two-input model', '/v1/models/add:predict', { instances: [[1, 2, 3, 4]] }, 400, /has 2 inputs \(a, b\)/],
    ['an instance lacking an input', '/v1/models/add:predict', { instances: [{ a: [1, 2, 3, 4], b: [1, 1, 1, 1] }, { a: [1, 2, 3, 4] }] }, 400, /instances'\[1\] lacks input 'b'/],
    ['an unknown input name', '/v1/models/add:predict', { inputs: { a: [[1, 2, 3, 4]], c: [[1, 2, 3, 4]] } }, 400, /has no input 'c'; its inputs are: a, b/],
    [':classify (not supported)', '/v1/models/mlp:classify', { examples: [] }, 400, /':classify' is not supported/],
    ['version 0 (a number no version has, not the latest)', '/v1/models/mlp/versions/0:predict', { instances: [[1, 2, 3, 4]] }, 404, /no version '0'/],
    ['a version of more than 18 digits', '/v1/models/mlp/versions/1234567890123456789:predict', { instances: [[1, 2, 3, 4]] }, 400, /version '1234567890123456789' in \/versions\/\{version\} is not a version number/],
    ['a verb with no model name', '/v1/models/:predict', { instances: [[1, 2, 3, 4]] }, 404, /no endpoint POST \/v1\/models\/:predict/],
  ];
  for (const [name, url, body, status, message] of failures) {
    test(`{"error": ...} ${status} for ${name}`, async () => {
      const answer = await postJson(`${base}${url}`, body);
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.match(answer.headers.get('content-type') ?? '', /^application\/json/);
      const keys = Object.keys(answer.body as object);
      assert.deepEqual(keys, ['error']);
      assert.match((answer.body as { error: string }).error, message);
    });
  }

  test('status and metadata errors: unknown model and version 404, labels 404; POST without a verb 404', async () => {
    assert.equal((await getJson(`${base}/v1/models/nope`)).status, 404);
    const version = await getJson(`${base}/v1/models/mlp/versions/9`);
    assert.equal(version.status, 404);
    assert.match((version.body as { error: string }).error, /no version '9'; its versions are: 1, 2/);
    assert.equal((await getJson(`${base}/v1/models/mlp/labels/canary/metadata`)).status, 404);
    assert.equal((await getJson(`${base}/v1/models/nope/metadata`)).status, 404);
    const noVerb = await postJson(`${base}/v1/models/mlp`, { instances: [[1, 2, 3, 4]] });
    assert.equal(noVerb.status, 404);
    assert.match((noVerb.body as { error: string }).error, /:predict/);
  });
});

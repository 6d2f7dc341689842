/**
 * Every bad input to the V2 REST API is refused with a 4xx (never a 5xx) and a message that
 * names what is wrong: the input, what the model expects and what the request gave. After all
 * of them the server still answers good requests.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import type { TesseraServer } from '../src/server/server.js';
import { addModel, defaultMlpWeights, identityModel, makeTempRepository, mlpModel, mlpReference, writeModel } from './support/fixtures.js';
import { startTestServer } from './support/server.js';

interface Case {
  /** Test title. */
  readonly title: string;
  /** Request path below the server URL; default `/v2/models/<model>/infer`. */
  readonly path?: string;
  readonly method?: 'GET' | 'POST';
  readonly model?: string;
  /** A JSON value (serialized) or raw body text. */
  readonly body?: unknown;
  readonly raw?: string;
  readonly status: number;
  /** What the error message must say. */
  readonly message: RegExp;
}

const FP32_ROW = [1, 2, 3, 4];

/** An inference body with one input. */
function one(name: string, datatype: string, shape: unknown, data: unknown): object {
  return { inputs: [{ name, datatype, shape, data }] };
}

const x = (shape: unknown, data: unknown, datatype = 'FP32'): object => one('x', datatype, shape, data);

function deeplyNested(depth: number): unknown {
  let value: unknown = [1];
  for (let i = 1; i < depth; i++) value = [value];
  return value;
}

const CASES: readonly Case[] = [
  // --- the model's inputs and outputs
  { title: 'unknown input name', model: 'mlp', body: one('z', 'FP32', [1, 4], FP32_ROW), status: 400, message: /model 'mlp' version 1 has no input 'z'; its inputs are: x$/ },
  {
    title: 'missing input',
    model: 'add',
    body: one('a', 'FP32', [1, 4], FP32_ROW),
    status: 400,
    message: /model 'add' version 1 needs input 'b', which the request lacks/,
  },
  {
    title: 'duplicate input name',
    model: 'mlp',
    body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: FP32_ROW }, { name: 'x', datatype: 'FP32', shape: [1, 4], data: FP32_ROW }] },
    status: 400,
    message: /input 'x' is given more than once/,
  },
  {
    title: 'FP32 number beyond its range',
    model: 'mlp',
    raw: '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,-1e39,4]}]}',
    status: 400,
    message: /^input 'x': element 2: -1e\+39 is outside the FP32 range \(finite values of magnitude up to 3\.4028234663852886e\+38; larger ones would become -Infinity\)$/,
  },
  { title: 'datatype mismatch', model: 'mlp', body: x([1, 4], FP32_ROW, 'INT32'), status: 400, message: /input 'x': expected datatype FP32, got INT32/ },
  {
    title: 'wrong rank',
    model: 'mlp',
    body: x([4], FP32_ROW),
    status: 400,
    message: /input 'x': expected shape \[-1,4\], got \[4\] \(rank 2 expected, got 1\)/,
  },
  {
    title: 'wrong rank (too many dims)',
    model: 'mlp',
    body: x([1, 1, 4], FP32_ROW),
    status: 400,
    message: /input 'x': expected shape \[-1,4\], got \[1,1,4\] \(rank 2 expected, got 3\)/,
  },
  { title: 'wrong fixed dim', model: 'mlp', body: x([1, 5], [1, 2, 3, 4, 5]), status: 400, message: /input 'x': expected shape \[-1,4\], got \[1,5\]/ },
  {
    title: 'wrong fixed dim of a model without batching',
    model: 'fixed',
    body: x([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]),
    status: 400,
    message: /input 'x': expected shape \[2,3\], got \[2,4\]/,
  },
  {
    title: 'data shorter than the shape',
    model: 'mlp',
    body: x([2, 4], [1, 2, 3, 4, 5, 6, 7]),
    status: 400,
    message: /input 'x': shape \[2,4\] needs 8 elements, but the data has 7/,
  },
  {
    title: 'data longer than the shape',
    model: 'mlp',
    body: x([2, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9]),
    status: 400,
    message: /input 'x': shape \[2,4\] needs 8 elements, but the data has 9/,
  },
  {
    title: 'batch larger than max_batch_size',
    model: 'mlp',
    body: x([5, 4], new Array<number>(20).fill(0.5)),
    status: 400,
    message: /input 'x': batch size 5 exceeds the model's max_batch_size 4/,
  },
  { title: 'batch of 0', model: 'mlp', body: x([0, 4], []), status: 400, message: /input 'x': the batch dimension is 0; send at least one row/ },
  {
    title: 'inputs disagreeing on batch size',
    model: 'add',
    body: { inputs: [{ name: 'a', datatype: 'FP32', shape: [2, 4], data: new Array<number>(8).fill(1) }, { name: 'b', datatype: 'FP32', shape: [3, 4], data: new Array<number>(12).fill(1) }] },
    status: 400,
    message: /inputs disagree on the batch size: 'a' has 2 rows, 'b' has 3/,
  },
  {
    title: 'unknown requested output',
    model: 'add',
    body: { inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4], data: FP32_ROW }, { name: 'b', datatype: 'FP32', shape: [1, 4], data: FP32_ROW }], outputs: [{ name: 'prod' }] },
    status: 400,
    message: /model 'add' version 1 has no output 'prod'; its outputs are: sum, diff/,
  },

  // --- the body
  { title: 'malformed JSON', model: 'mlp', raw: '{"inputs": [{"name": "x",', status: 400, message: /the request body is not valid JSON/ },
  { title: 'empty body', model: 'mlp', raw: '', status: 400, message: /the request body is empty; expected a JSON object/ },
  { title: 'body is an array, not an object', model: 'mlp', raw: '[1, 2, 3]', status: 400, message: /the request body must be a JSON object, got an array/ },
  { title: 'body is a number, not an object', model: 'mlp', raw: '42', status: 400, message: /the request body must be a JSON object, got 42/ },
  { title: 'body is null', model: 'mlp', raw: 'null', status: 400, message: /the request body must be a JSON object, got null/ },
  { title: "'inputs' not an array", model: 'mlp', body: { inputs: { x: FP32_ROW } }, status: 400, message: /'inputs' must be an array of tensors, got an object/ },
  { title: "'inputs' missing", model: 'mlp', body: { outputs: [] }, status: 400, message: /'inputs' must be an array of tensors, got undefined/ },
  { title: "'inputs' empty", model: 'mlp', body: { inputs: [] }, status: 400, message: /'inputs' is empty/ },
  { title: 'an input that is not an object', model: 'mlp', body: { inputs: [7] }, status: 400, message: /inputs\[0\] must be an object, got 7/ },
  { title: 'an input without a name', model: 'mlp', body: { inputs: [{ datatype: 'FP32', shape: [1, 4], data: FP32_ROW }] }, status: 400, message: /inputs\[0\]\.name must be a non-empty string, got undefined/ },
  { title: "an input without 'data'", model: 'mlp', body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }] }, status: 400, message: /input 'x': 'data' is missing/ },
  { title: "'data' not an array", model: 'mlp', body: x([1, 4], 'abcd'), status: 400, message: /input 'x': 'data' must be an array, got "abcd"/ },
  { title: "'id' not a string", model: 'mlp', body: { id: 5, ...x([1, 4], FP32_ROW) }, status: 400, message: /'id' must be a string, got 5/ },
  { title: "'outputs' not an array", model: 'mlp', body: { ...x([1, 4], FP32_ROW), outputs: 'probs' }, status: 400, message: /'outputs' must be an array, got "probs"/ },
  {
    title: "request 'parameters' not an object",
    model: 'mlp',
    body: { ...x([1, 4], FP32_ROW), parameters: [1] },
    status: 400,
    message: /request 'parameters' must be an object, got an array/,
  },
  {
    title: 'a negative priority parameter',
    model: 'mlp',
    body: { ...x([1, 4], FP32_ROW), parameters: { priority: -1 } },
    status: 400,
    message: /request parameter 'priority' must be a non-negative integer, got -1/,
  },

  // --- shapes
  {
    title: 'shape with a negative dim',
    model: 'mlp',
    body: x([-1, 4], FP32_ROW),
    status: 400,
    message: /input 'x': 'shape' must be an array of non-negative integers, got \[-1,4\]/,
  },
  {
    title: 'shape with a fractional dim',
    model: 'mlp',
    body: x([1.5, 4], FP32_ROW),
    status: 400,
    message: /input 'x': 'shape' must be an array of non-negative integers, got \[1\.5,4\]/,
  },
  { title: 'shape not an array', model: 'mlp', body: x('1x4', FP32_ROW), status: 400, message: /input 'x': 'shape' must be an array of non-negative integers, got "1x4"/ },
  {
    title: 'shape whose element count overflows',
    model: 'mlp',
    body: x([2147483647, 2147483647], FP32_ROW),
    status: 400,
    message: /input 'x': shape \[2147483647,2147483647\] has more than \d+ elements/,
  },

  // --- element values
  { title: 'non-numeric element for FP32', model: 'mlp', body: x([1, 4], [1, 'two', 3, 4]), status: 400, message: /input 'x': element 1 is "two"; expected a number for FP32/ },
  { title: 'null element for FP32', model: 'mlp', body: x([1, 4], [1, 2, null, 4]), status: 400, message: /input 'x': element 2 is null; expected a number for FP32/ },
  { title: 'INT8 element above 127', model: 'id_int8', body: x([1, 2], [1, 128], 'INT8'), status: 400, message: /input 'x': element 1 is 128; expected an integer from -128 to 127 for INT8/ },
  { title: 'INT8 element below -128', model: 'id_int8', body: x([1, 2], [-129, 0], 'INT8'), status: 400, message: /input 'x': element 0 is -129; expected an integer from -128 to 127 for INT8/ },
  { title: 'fractional INT8 element', model: 'id_int8', body: x([1, 2], [0.5, 0], 'INT8'), status: 400, message: /input 'x': element 0 is 0\.5; expected an integer from -128 to 127 for INT8/ },
  { title: 'UINT8 element below 0', model: 'id_uint8', body: x([1, 2], [-1, 0], 'UINT8'), status: 400, message: /input 'x': element 0 is -1; expected an integer from 0 to 255 for UINT8/ },
  { title: 'UINT8 element above 255', model: 'id_uint8', body: x([1, 2], [0, 256], 'UINT8'), status: 400, message: /input 'x': element 1 is 256; expected an integer from 0 to 255 for UINT8/ },
  {
    title: 'INT64 element beyond 2^53',
    model: 'id_int64',
    body: x([1, 2], [1, 2 ** 60], 'INT64'),
    status: 400,
    message: /input 'x': element 1 is 1152921504606847000; expected an integer within ±2\^53 for INT64/,
  },
  { title: 'non-boolean element for BOOL', model: 'id_bool', body: x([1, 2], [1, 0], 'BOOL'), status: 400, message: /input 'x': element 0 is 1; BOOL elements are true or false/ },
  { title: 'non-string element for BYTES', model: 'id_bytes', body: x([2], ['ok', 5], 'BYTES'), status: 400, message: /input 'x': element 1 is 5; BYTES elements are strings/ },
  {
    title: 'nested data with rows of different lengths',
    model: 'mlp',
    body: x([2, 4], [[1, 2, 3, 4], [5, 6, 7]]),
    status: 400,
    message: /input 'x': shape \[2,4\] needs 8 elements, but the data has 7/,
  },
  {
    title: 'nested data with values at different depths',
    model: 'mlp',
    body: x([2, 4], [[1, 2, 3, 4], [5, 6, 7, [8]]]),
    status: 400,
    message: /input 'x': 'data' is ragged: values appear at nesting depths 2 and 3/,
  },
  { title: 'nested data deeper than 32 levels', model: 'mlp', body: x([1, 4], deeplyNested(40)), status: 400, message: /input 'x': 'data' is nested deeper than 32 levels/ },
  {
    title: 'unknown datatype string',
    model: 'mlp',
    body: x([1, 4], FP32_ROW, 'FLOAT32'),
    status: 400,
    message: /input 'x': datatype "FLOAT32" is not a V2 datatype \(BOOL, UINT8\.\.UINT64, INT8\.\.INT64, FP16, FP32, FP64, BYTES\)/,
  },

  // --- what the request is addressed to
  { title: 'unknown model', model: 'nope', body: x([1, 4], FP32_ROW), status: 404, message: /model 'nope' is not in the repository/ },
  {
    title: 'unknown version',
    path: '/v2/models/mlp/versions/9/infer',
    body: x([1, 4], FP32_ROW),
    status: 404,
    message: /model 'mlp' has no version '9'; its versions are: 1/,
  },
  { title: 'unknown model metadata', path: '/v2/models/nope', method: 'GET', status: 404, message: /model 'nope' is not in the repository/ },
  { title: 'wrong route (GET)', path: '/v2/modelz/mlp', method: 'GET', status: 404, message: /no endpoint GET \/v2\/modelz\/mlp/ },
  { title: 'wrong route (POST)', path: '/v2/models/mlp/predict', body: x([1, 4], FP32_ROW), status: 404, message: /no endpoint POST \/v2\/models\/mlp\/predict/ },
  { title: 'wrong method on infer', path: '/v2/models/mlp/infer', method: 'GET', status: 404, message: /no endpoint GET \/v2\/models\/mlp\/infer/ },
  {
    title: 'request to an UNAVAILABLE model',
    model: 'broken',
    body: x([1, 4], FP32_ROW),
    status: 503,
    message: /model 'broken' has no ready version: version 1 is UNAVAILABLE \(onnxruntime could not load .*broken[/\\]1[/\\]model\.onnx/,
  },
];

const MLP_WEIGHTS = defaultMlpWeights();

describe('bad input gets a 4xx with a message that says what is wrong', () => {
  let repo = '';
  let server: TesseraServer;

  before(async () => {
    repo = await makeTempRepository('tessera-bad-input-');
    await writeModel(repo, 'mlp', 1, mlpModel(MLP_WEIGHTS), { 'config.yaml': 'max_batch_size: 4\n' });
    await writeModel(repo, 'add', 1, addModel());
    await writeModel(repo, 'fixed', 1, identityModel('FP32', [2, 3]));
    await writeModel(repo, 'id_int8', 1, identityModel('INT8', [-1, 2]));
    await writeModel(repo, 'id_uint8', 1, identityModel('UINT8', [-1, 2]));
    await writeModel(repo, 'id_int64', 1, identityModel('INT64', [-1, 2]));
    await writeModel(repo, 'id_bool', 1, identityModel('BOOL', [-1, 2]));
    await writeModel(repo, 'id_bytes', 1, identityModel('BYTES', [-1]));
    // Requests wait up to 200 ms to be batched together.
    await writeModel(repo, 'id_bytes_batched', 1, identityModel('BYTES', [-1, 1]), { 'config.yaml': 'max_batch_size: 8\ndynamic_batching:\n  max_queue_delay_microseconds: 200000\n' });
    await writeModel(repo, 'broken', 1, new TextEncoder().encode('garbage, not a model'));
    server = await startTestServer(undefined, repo, { bodyLimitBytes: 64 * 1024 });
  });

  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  for (const c of CASES) {
    test(`${c.title} → ${c.status}`, async () => {
      const path = c.path ?? `/v2/models/${c.model ?? 'mlp'}/infer`;
      const method = c.method ?? 'POST';
      const body = method === 'GET' ? undefined : (c.raw ?? JSON.stringify(c.body));
      const response = await fetch(`${server.httpUrl}${path}`, {
        method,
        ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
      });
      const text = await response.text();
      assert.equal(response.status, c.status, `status: ${text}`);
      assert.ok(response.status >= 400 && response.status !== 500, 'a client error, never a server error');
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
      const parsed = JSON.parse(text) as { error?: unknown };
      assert.equal(typeof parsed.error, 'string', `a V2 error object: ${text}`);
      assert.match(parsed.error as string, c.message);
    });
  }

  test('a body larger than the limit → 413', async () => {
    const big = JSON.stringify(x([1, 4], FP32_ROW)).padEnd(100 * 1024, ' ');
    const response = await fetch(`${server.httpUrl}/v2/models/mlp/infer`, { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
    assert.equal(response.status, 413);
    const parsed = (await response.json()) as { error: string };
    assert.match(parsed.error, /the request body exceeds the limit of 65536 bytes/);
  });

  test('nested rows of different lengths are refused even when the element count matches the shape → 400', async () => {
    const response = await fetch(`${server.httpUrl}/v2/models/mlp/infer`, {
      method: 'POST',
      body: JSON.stringify(x([2, 4], [[1, 2, 3, 4, 5], [6, 7, 8]])),
    });
    const text = await response.text();
    assert.equal(response.status, 400, text);
    assert.match((JSON.parse(text) as { error: string }).error, /^input 'x': 'data' is ragged: .*\b5\b.*\b3\b/);
  });

  test('BYTES elements that are not UTF-8 (binary extension) are refused for an onnxruntime string input → 400, not changed', async () => {
    const element = Buffer.from([0xff, 0xfe, 0x80, 0x41]);
    const length = Buffer.alloc(4);
    length.writeUInt32LE(element.length);
    const valid = Buffer.from('ok');
    const validLength = Buffer.alloc(4);
    validLength.writeUInt32LE(valid.length);
    const data = Buffer.concat([validLength, valid, length, element]);
    const header = JSON.stringify({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: data.length } }] });
    const response = await fetch(`${server.httpUrl}/v2/models/id_bytes/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(Buffer.byteLength(header)) },
      body: Buffer.concat([Buffer.from(header), data]),
    });
    const text = await response.text();
    assert.equal(response.status, 400, text);
    assert.match((JSON.parse(text) as { error: string }).error, /^input 'x': element 1 is not valid UTF-8/);
  });

  test('a BYTES element onnxruntime cannot carry fails its own request, not the requests batched with it', async () => {
    const send = (text: string) =>
      fetch(`${server.httpUrl}/v2/models/id_bytes_batched/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1, 1], data: [text] }] }),
      }).then(async (response) => ({ status: response.status, body: (await response.json()) as { error?: string; outputs?: { data: string[] }[] } }));
    const [alice, bad, carol] = await Promise.all([send('alice'), send('bad\u0000byte'), send('carol')]);
    assert.equal(bad.status, 400);
    assert.match(bad.body.error!, /^input 'x': element 0 contains a NUL byte/);
    assert.equal(alice.status, 200, JSON.stringify(alice.body));
    assert.deepEqual(alice.body.outputs![0]!.data, ['alice']);
    assert.equal(carol.status, 200, JSON.stringify(carol.body));
    assert.deepEqual(carol.body.outputs![0]!.data, ['carol']);
  });

  test('after all of these, the server still answers a good request correctly', async () => {
    const input = [0.25, -0.5, 1, 2];
    const response = await fetch(`${server.httpUrl}/v2/models/mlp/infer`, { method: 'POST', body: JSON.stringify(x([1, 4], input)) });
    assert.equal(response.status, 200);
    const parsed = (await response.json()) as { outputs: { name: string; data: number[] }[] };
    const expected = mlpReference(MLP_WEIGHTS, input);
    const probs = parsed.outputs[0]!;
    assert.equal(probs.name, 'probs');
    probs.data.forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) < 1e-5, `element ${i}: ${value} vs ${expected[i]}`));
    const live = await fetch(`${server.httpUrl}/v2/health/live`);
    assert.equal(live.status, 200);
    // The refused requests that reached the model were counted as failures and never executed.
    const stats = (await (await fetch(`${server.httpUrl}/v2/models/mlp/stats`)).json()) as {
      model_stats: { execution_count: number; inference_stats: { success: { count: number }; fail: { count: number } } }[];
    };
    const entry = stats.model_stats[0]!;
    assert.ok(entry.inference_stats.success.count >= 1);
    assert.equal(entry.execution_count, entry.inference_stats.success.count, 'only successful requests were executed');
    assert.ok(entry.inference_stats.fail.count >= 8, `fail count ${entry.inference_stats.fail.count}`);
  });
});

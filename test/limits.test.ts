/**
 * Request limits over real HTTP and gRPC: number of inputs, tensor elements (BYTES apart),
 * batch rows, BYTES element length and JSON nesting (checked on the raw body before parsing).
 * Each refusal is 413 LIMIT_EXCEEDED (gRPC RESOURCE_EXHAUSTED) naming the limit, its value and
 * its flag; the defaults stop a body of millions of empty BYTES elements before it is decoded.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { status } from '@grpc/grpc-js';

import { checkJsonDepth, jsonNestingDepth, DEFAULT_REQUEST_LIMITS } from '../src/security/limits.js';
import type { TesseraServer } from '../src/server/server.js';
import { serializeBytes } from './support/grpc-client.js';
import { SecureGrpcClient, grpcError, grpcInferRequest, http, inferBody, securityRepository, streamAll } from './support/security.js';
import { startTestServer, writeFakeModel } from './support/server.js';

const LIMITS = { maxInputs: 2, maxTensorElements: 10, maxBytesTensorElements: 3, maxBatchRows: 4, maxBytesElementLength: 5, maxJsonDepth: 16 };

function nested(depth: number): string {
  return '['.repeat(depth) + '1' + ']'.repeat(depth);
}

/** A binary-extension body: JSON header then raw bytes. */
function binaryBody(header: object, tail: Buffer): { body: Buffer; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([json, tail]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) } };
}

describe('request limits', () => {
  let server: TesseraServer;
  let grpc: SecureGrpcClient;
  const infer = (model: string): string => `${server.httpUrl}/v2/models/${model}/infer`;

  async function refused(url: string, options: Parameters<typeof http>[1], message: RegExp): Promise<void> {
    const answer = await http(url, options);
    assert.equal(answer.status, 413, answer.text);
    assert.match(String(answer.json?.['error']), message);
  }

  before(async () => {
    const repo = await securityRepository(undefined);
    server = await startTestServer(undefined, repo, { ...LIMITS, management: false });
    grpc = new SecureGrpcClient(server.grpcPort!);
  });
  after(async () => {
    grpc.close();
    await server.close();
  });

  test('within the limits, requests are served', async () => {
    assert.equal((await http(infer('alpha'), { body: inferBody(4) })).status, 200);
    assert.equal((await http(infer('text'), { body: { inputs: [{ name: 's', datatype: 'BYTES', shape: [3], data: ['a', 'bb', 'ccccc'] }] } })).status, 200);
  });

  test('tensor elements', async () => {
    // One row of 12: within the row limit, beyond the element limit.
    const body = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 12], data: Array.from({ length: 12 }, () => 1) }] };
    await refused(infer('alpha'), { body }, /^input 'x' has 12 elements; the limit is 10 \(--max-tensor-elements\)$/);
    // Data longer than its shape says is counted too.
    const lying = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Array.from({ length: 11 }, () => 1) }] };
    await refused(infer('alpha'), { body: lying }, /^input 'x' has 11 elements; the limit is 10 \(--max-tensor-elements\)$/);
  });

  test('BYTES elements and their length, as JSON and as binary data', async () => {
    await refused(infer('text'), { body: { inputs: [{ name: 's', datatype: 'BYTES', shape: [4], data: ['a', 'b', 'c', 'd'] }] } }, /^input 's' has 4 BYTES elements; the limit is 3 \(--max-bytes-tensor-elements\)$/);
    await refused(infer('text'), { body: { inputs: [{ name: 's', datatype: 'BYTES', shape: [2], data: ['ok', 'toolong'] }] } }, /^input 's': BYTES element 1 is 7 bytes long; the limit is 5 \(--max-bytes-element-length\)$/);
    const long = serializeBytes(['abc', 'abcdef']);
    const binary = binaryBody({ inputs: [{ name: 's', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: long.length } }] }, long);
    await refused(infer('text'), binary, /^input 's': BYTES element 1 is 6 bytes long; the limit is 5 \(--max-bytes-element-length\)$/);
  });

  test('batch rows (first dimension), whichever protocol built the tensor', async () => {
    await refused(infer('alpha'), { body: inferBody(5) }, /^input 'x' has 5 rows \(its first dimension\); the limit is 4 \(--max-batch-rows\)$/);
    // TF Serving rows become a batch tensor: the engine-side check refuses it.
    const rows = Array.from({ length: 5 }, () => [1, 2]);
    await refused(`${server.httpUrl}/v1/models/alpha:predict`, { body: { instances: rows } }, /has 5 rows \(its first dimension\); the limit is 4 \(--max-batch-rows\)/);
  });

  test("batch rows of the tensors a model's handler makes (TorchServe /predictions), as of any request", async (t) => {
    const repo = await mkdtemp(path.join(tmpdir(), 'tessera-limits-handler-'));
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const spec = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }] };
    await writeFakeModel(repo, 'tab', 1, spec, 'max_batch_size: 0\nhandler: tabular\nhandler_options: { task: regression }\n');
    const limited = await startTestServer(t, repo, { maxBatchRows: 2, grpc: false, management: false });
    const within = await http(`${limited.httpUrl}/predictions/tab`, { body: { instances: [[1, 2], [3, 4]] } });
    assert.equal(within.status, 200, within.text);
    const over = await http(`${limited.httpUrl}/predictions/tab`, { body: { instances: Array.from({ length: 50 }, (_, i) => [i, i]) } });
    assert.equal(over.status, 413, over.text);
    // TorchServe's error body: {code, type, message}.
    assert.match(String(over.json?.['message']), /has 50 rows \(its first dimension\); the limit is 2 \(--max-batch-rows\)/);
  });

  test('number of inputs', async () => {
    const input = { name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] };
    await refused(infer('alpha'), { body: { inputs: [input, { ...input, name: 'y' }, { ...input, name: 'z' }] } }, /^the request has 3 inputs; the limit is 2 \(--max-inputs\)$/);
  });

  test('JSON nesting is refused before parsing, even 10,000 levels deep', async () => {
    const deep = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":${nested(10_000)}}]}`;
    await refused(infer('alpha'), { body: deep }, /^the request body nests JSON arrays and objects more than 16 levels deep; the limit is 16 \(--max-json-depth\)$/);
    // Whatever the route and content type: TF Serving, no content type at all.
    await refused(`${server.httpUrl}/v1/models/alpha:predict`, { body: `{"instances":${nested(50)}}` }, /more than 16 levels deep/);
    await refused(infer('alpha'), { body: nested(100_000), headers: { 'content-type': 'text/plain' } }, /more than 16 levels deep/);
    // Brackets inside strings do not count.
    const ok = await http(infer('alpha'), { body: { id: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', ...inferBody() } });
    assert.equal(ok.status, 200, ok.text);
  });

  test('gRPC: the same limits on ModelInfer and on each stream message', async () => {
    const many = await grpcError(grpc.call('ModelInfer', grpcInferRequest('alpha', 6)));
    assert.equal(many.code, status.RESOURCE_EXHAUSTED);
    assert.deepEqual(many.metadata.get('tessera-error-code'), ['LIMIT_EXCEEDED']);
    assert.match(many.details, /^input 'x' has 6 rows \(its first dimension\); the limit is 4 \(--max-batch-rows\)$/);

    const bytes = await grpcError(
      grpc.call('ModelInfer', { model_name: 'text', inputs: [{ name: 's', datatype: 'BYTES', shape: [2] }], raw_input_contents: [serializeBytes(['abc', 'abcdefgh'])] }),
    );
    assert.match(bytes.details, /^input 's': BYTES element 1 is 8 bytes long; the limit is 5 \(--max-bytes-element-length\)$/);
    const count = await grpcError(grpc.call('ModelInfer', { model_name: 'text', inputs: [{ name: 's', datatype: 'BYTES', shape: [4] }], raw_input_contents: [serializeBytes(['a', 'b', 'c', 'd'])] }));
    assert.match(count.details, /^input 's' has 4 BYTES elements; the limit is 3 \(--max-bytes-tensor-elements\)$/);

    const responses = await streamAll(grpc.stream(), [
      { ...grpcInferRequest('alpha', 1), id: 'small' },
      { ...grpcInferRequest('alpha', 6), id: 'big' },
      { ...grpcInferRequest('alpha', 2), id: 'after' },
    ]);
    const byId = new Map(responses.map((response) => [response.infer_response?.id, response.error_message]));
    assert.equal(byId.get('small'), '');
    assert.match(String(byId.get('big')), /--max-batch-rows/);
    assert.equal(byId.get('after'), '');
  });
});

describe('default limits', () => {
  test('millions of empty BYTES elements are refused before they are decoded', async (t) => {
    assert.equal(DEFAULT_REQUEST_LIMITS.maxBytesTensorElements, 1_048_576);
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { grpc: false, management: false });
    const count = 4_000_000;
    const refusal = /^input 's' has 4000000 BYTES elements; the limit is 1048576 \(--max-bytes-tensor-elements\)$/;
    const tail = Buffer.alloc(count * 4); // 4 million zero-length elements
    const answer = await http(`${server.httpUrl}/v2/models/text/infer`, binaryBody({ inputs: [{ name: 's', datatype: 'BYTES', shape: [count], parameters: { binary_data_size: tail.length } }] }, tail));
    assert.equal(answer.status, 413, answer.text);
    assert.match(String(answer.json?.['error']), refusal);
    // The same shape with only two elements of data: decoding them first would answer 400 (the
    // data holds 2 elements, the shape needs 4000000); only the shape, checked before any data
    // is decoded, answers 413.
    const short = Buffer.alloc(2 * 4);
    const early = await http(`${server.httpUrl}/v2/models/text/infer`, binaryBody({ inputs: [{ name: 's', datatype: 'BYTES', shape: [count], parameters: { binary_data_size: short.length } }] }, short));
    assert.equal(early.status, 413, early.text);
    assert.match(String(early.json?.['error']), refusal);
  });

  test('an existing deep-data case keeps its 400 (nesting within the JSON limit)', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { grpc: false, management: false });
    const answer = await http(`${server.httpUrl}/v2/models/alpha/infer`, { body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":${nested(40)}}]}` });
    assert.equal(answer.status, 400);
    assert.match(String(answer.json?.['error']), /nested deeper than 32 levels/);
  });
});

describe('the JSON nesting scan', () => {
  const depth = (text: string, max = 100): number => jsonNestingDepth(Buffer.from(text), max);

  test('counts arrays and objects outside strings', () => {
    assert.equal(depth('{"a":[1,{"b":[]}]}'), 4);
    assert.equal(depth('"[[[[["'), 0, 'a string is not nested');
    assert.equal(depth('{"a":"\\"[[[[","b":[["\\\\"]]}'), 3);
    assert.equal(depth('[1,2,3]'), 1);
  });

  test('stops early: past the limit, when the value closes, at non-JSON bytes', () => {
    assert.equal(depth(nested(1_000_000), 64), 65);
    assert.equal(depth(`[1]${nested(1000)}`), 1, 'after the top-level value, nothing is JSON');
    assert.equal(depth(`--boundary\r\n${nested(1000)}`), 0, 'a multipart body is not JSON');
    assert.equal(depth(`\x89PNG${nested(1000)}`), 0);
  });

  test('long runs without structure are jumped over, without missing what follows', () => {
    const run = Array.from({ length: 20_000 }, (_, i) => i / 7).join(',');
    assert.equal(depth(`[${run},${nested(70)}]`, 64), 65);
    assert.equal(depth(`[${run},"]]]]]]]]",{"a":[${run}]}]`), 3);
    assert.equal(depth(`{"a":"${'x'.repeat(5000)}\\"[[[[","b":[${run}]}`), 2);
    assert.equal(depth(`[${run}]${nested(1000)}`), 1);
  });

  test('checkJsonDepth names the limit', () => {
    assert.throws(() => checkJsonDepth(Buffer.from(nested(10)), { ...DEFAULT_REQUEST_LIMITS, maxJsonDepth: 5 }), /more than 5 levels deep; the limit is 5 \(--max-json-depth\)/);
    assert.doesNotThrow(() => checkJsonDepth(Buffer.from(nested(10)), { ...DEFAULT_REQUEST_LIMITS, maxJsonDepth: 0 }));
  });
});

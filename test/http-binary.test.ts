/**
 * Triton's binary tensor data and classification extensions over V2 REST, end to end against a
 * real server: every datatype's binary form round-trips exactly, JSON and binary mix freely,
 * misaligned data still decodes, lying lengths get clear 400s, and classification answers
 * top-k "score:index:label" strings.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';

import { toHalfBits } from '../src/core/float16.js';
import { BinaryTail, tensorDataFromBinary } from '../src/protocols/http/v2/binary.js';
import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { fakeModelJson, getJson, startTestServer } from './support/server.js';

type FakeDefinition = Parameters<typeof fakeModelJson>[0];

async function writeFake(repo: string, name: string, definition: FakeDefinition, extra: Record<string, string> = {}): Promise<void> {
  await mkdir(path.join(repo, name, '1'), { recursive: true });
  await writeFile(path.join(repo, name, '1', 'model.json'), fakeModelJson(definition));
  await writeFile(path.join(repo, name, 'config.yaml'), `backend: fake\n${extra['config.yaml'] ?? ''}`);
  for (const [file, text] of Object.entries(extra)) if (file !== 'config.yaml') await writeFile(path.join(repo, name, file), text);
}

/** The binary wire form of each datatype's sample values. */
const SAMPLES = {
  FP32: { json: [1.5, -2.25, 33554432, 0, -0.5, 7], bytes: Buffer.from(new Float32Array([1.5, -2.25, 33554432, 0, -0.5, 7]).buffer) },
  FP64: { json: [Math.PI, -1e-300, 2, 3, 4, 5], bytes: Buffer.from(new Float64Array([Math.PI, -1e-300, 2, 3, 4, 5]).buffer) },
  FP16: { json: [1, -2, 0.5, 65504, 0, 0.25], bytes: Buffer.from(new Uint16Array([1, -2, 0.5, 65504, 0, 0.25].map(toHalfBits)).buffer) },
  INT8: { json: [-128, 127, 0, 1, -1, 5], bytes: Buffer.from(new Int8Array([-128, 127, 0, 1, -1, 5]).buffer) },
  UINT8: { json: [0, 255, 1, 2, 3, 4], bytes: Buffer.from([0, 255, 1, 2, 3, 4]) },
  INT16: { json: [-32768, 32767, 0, 1, 2, 3], bytes: Buffer.from(new Int16Array([-32768, 32767, 0, 1, 2, 3]).buffer) },
  UINT16: { json: [65535, 0, 1, 2, 3, 4], bytes: Buffer.from(new Uint16Array([65535, 0, 1, 2, 3, 4]).buffer) },
  INT32: { json: [-2147483648, 2147483647, 0, 1, 2, 3], bytes: Buffer.from(new Int32Array([-2147483648, 2147483647, 0, 1, 2, 3]).buffer) },
  UINT32: { json: [4294967295, 0, 1, 2, 3, 4], bytes: Buffer.from(new Uint32Array([4294967295, 0, 1, 2, 3, 4]).buffer) },
  INT64: { json: [-(2 ** 53) + 1, 2 ** 53 - 1, 0, 1, 2, 3], bytes: Buffer.from(new BigInt64Array([-(2n ** 53n) + 1n, 2n ** 53n - 1n, 0n, 1n, 2n, 3n]).buffer) },
  UINT64: { json: [2 ** 53 - 1, 0, 1, 2, 3, 4], bytes: Buffer.from(new BigUint64Array([2n ** 53n - 1n, 0n, 1n, 2n, 3n, 4n]).buffer) },
  BOOL: { json: [true, false, true, true, false, false], bytes: Buffer.from([1, 0, 1, 1, 0, 0]) },
  BYTES: { json: ['a', '', 'héllo', 'x'.repeat(300), '\u0000', 'z'], bytes: bytesWire(['a', '', 'héllo', 'x'.repeat(300), '\u0000', 'z']) },
} as const;
type Sample = keyof typeof SAMPLES;
const DATATYPES = Object.keys(SAMPLES) as Sample[];

function bytesWire(values: readonly string[]): Buffer {
  return Buffer.concat(
    values.flatMap((v) => {
      const bytes = Buffer.from(v, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.length);
      return [length, bytes];
    }),
  );
}

const inputName = (d: Sample): string => `x_${d.toLowerCase()}`;
const outputName = (d: Sample): string => `y_${d.toLowerCase()}`;

/** A body of JSON header plus binary tail, with the header length. */
function binaryBody(header: unknown, tail: readonly Buffer[], pad = ''): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header) + pad, 'utf8');
  return { body: Buffer.concat([json, ...tail]), headerLength: json.length };
}

interface BinaryAnswer {
  readonly status: number;
  readonly contentType: string | null;
  readonly json: Record<string, unknown> & { outputs?: { name: string; datatype: string; shape: number[]; data?: unknown[]; parameters?: { binary_data_size?: number } }[]; error?: string };
  /** Binary data per output name. */
  readonly binary: Map<string, Buffer>;
}

async function inferBinary(base: string, model: string, body: Buffer, headerLength: number | string | undefined, extraHeaders: Record<string, string> = {}): Promise<BinaryAnswer> {
  const response = await fetch(`${base}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: {
      'content-type': 'application/octet-stream',
      ...(headerLength === undefined ? {} : { 'inference-header-content-length': String(headerLength) }),
      ...extraHeaders,
    },
    body,
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const jsonLength = Number(response.headers.get('inference-header-content-length') ?? bytes.length);
  const json = JSON.parse(bytes.subarray(0, jsonLength).toString('utf8')) as BinaryAnswer['json'];
  const binary = new Map<string, Buffer>();
  let offset = jsonLength;
  for (const output of json.outputs ?? []) {
    const size = output.parameters?.binary_data_size;
    if (size === undefined) continue;
    binary.set(output.name, bytes.subarray(offset, offset + size));
    offset += size;
  }
  assert.equal(offset, bytes.length, 'binary outputs account for every byte after the JSON header');
  return { status: response.status, contentType: response.headers.get('content-type'), json, binary };
}

describe('V2 binary tensor data and classification', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';

  before(async () => {
    repo = await makeTempRepository();
    await writeFake(repo, 'all_types', {
      inputs: DATATYPES.map((d) => ({ name: inputName(d), datatype: d, shape: [-1, 3] })),
      outputs: DATATYPES.map((d) => ({ name: outputName(d), datatype: d, shape: [-1, 3], copy_of: inputName(d) })),
    });
    // A "classifier": its scores are its inputs; labels for 3 of its 4 classes (index 2's is blank).
    await writeFake(repo, 'scores', {
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [-1, 4] },
        { name: 'n', datatype: 'INT32', shape: [-1, 4] },
      ],
      outputs: [
        { name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' },
        { name: 'z', datatype: 'INT32', shape: [-1, 4], copy_of: 'n' },
      ],
    }, { 'labels.txt': 'cat\ndog\n\nbird\n' });
    await writeFake(repo, 'unbatched', {
      inputs: [{ name: 'x', datatype: 'FP16', shape: [5] }],
      outputs: [{ name: 'y', datatype: 'FP16', shape: [5], copy_of: 'x' }],
    }, { 'config.yaml': 'max_batch_size: 0\n' });
    server = await startTestServer(undefined, repo);
    base = server.httpUrl;
  });
  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('GET /v2 lists binary_tensor_data and classification', async () => {
    const { body } = await getJson(`${base}/v2`);
    const extensions = (body as { extensions: string[] }).extensions;
    assert.ok(extensions.includes('binary_tensor_data'));
    assert.ok(extensions.includes('classification'));
  });

  test('every datatype: binary inputs and binary outputs round-trip byte for byte', async () => {
    const header = {
      inputs: DATATYPES.map((d) => ({ name: inputName(d), datatype: d, shape: [2, 3], parameters: { binary_data_size: SAMPLES[d].bytes.length } })),
      parameters: { binary_data_output: true },
    };
    const { body, headerLength } = binaryBody(header, DATATYPES.map((d) => SAMPLES[d].bytes));
    const answer = await inferBinary(base, 'all_types', body, headerLength);
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.equal(answer.contentType, 'application/octet-stream');
    for (const d of DATATYPES) {
      const output = answer.json.outputs!.find((o) => o.name === outputName(d))!;
      assert.equal(output.datatype, d);
      assert.deepEqual(output.shape, [2, 3]);
      assert.equal(output.data, undefined, `${d}: a binary output has no 'data'`);
      assert.deepEqual(answer.binary.get(outputName(d)), SAMPLES[d].bytes, d);
    }
  });

  test('every datatype: binary inputs answer the same JSON as JSON inputs', async () => {
    const { body, headerLength } = binaryBody(
      { inputs: DATATYPES.map((d) => ({ name: inputName(d), datatype: d, shape: [2, 3], parameters: { binary_data_size: SAMPLES[d].bytes.length } })) },
      DATATYPES.map((d) => SAMPLES[d].bytes),
    );
    const answer = await inferBinary(base, 'all_types', body, headerLength);
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.match(answer.contentType ?? '', /^application\/json/);
    for (const d of DATATYPES) assert.deepEqual(answer.json.outputs!.find((o) => o.name === outputName(d))!.data, SAMPLES[d].json, d);
  });

  test('mixed: JSON and binary inputs; binary_data_output with a per-output binary_data: false override', async () => {
    const { body, headerLength } = binaryBody(
      {
        id: 'mixed',
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } },
          { name: 'n', datatype: 'INT32', shape: [1, 4], data: [4, 3, 2, 1] },
        ],
        outputs: [{ name: 'y' }, { name: 'z', parameters: { binary_data: false } }],
        parameters: { binary_data_output: true },
      },
      [Buffer.from(new Float32Array([0.1, 0.2, 0.3, 0.4]).buffer)],
    );
    const answer = await inferBinary(base, 'scores', body, headerLength);
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.equal(answer.json['id'], 'mixed');
    assert.deepEqual(new Float32Array(new Uint8Array(answer.binary.get('y')!).buffer), new Float32Array([0.1, 0.2, 0.3, 0.4]));
    const z = answer.json.outputs!.find((o) => o.name === 'z')!;
    assert.deepEqual(z.data, [4, 3, 2, 1]);
    assert.equal(z.parameters, undefined);
  });

  test('binary outputs on request from a plain JSON request; only the outputs asked for', async () => {
    const response = await fetch(`${base}/v2/models/scores/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] },
          { name: 'n', datatype: 'INT32', shape: [1, 4], data: [5, 6, 7, 8] },
        ],
        outputs: [{ name: 'z', parameters: { binary_data: true } }, { name: 'y' }],
      }),
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'application/octet-stream');
    const bytes = Buffer.from(await response.arrayBuffer());
    const headerLength = Number(response.headers.get('inference-header-content-length'));
    const json = JSON.parse(bytes.subarray(0, headerLength).toString()) as { outputs: { name: string; data?: number[]; parameters?: object }[] };
    assert.deepEqual(json.outputs.map((o) => o.name), ['z', 'y']);
    assert.deepEqual(json.outputs[0]!.parameters, { binary_data_size: 16 });
    assert.deepEqual(json.outputs[1]!.data, [1, 2, 3, 4]);
    assert.deepEqual([...new Int32Array(new Uint8Array(bytes.subarray(headerLength)).buffer)], [5, 6, 7, 8]);
  });

  test('misaligned binary data (odd JSON header length) decodes correctly', async () => {
    const header = {
      inputs: DATATYPES.map((d) => ({ name: inputName(d), datatype: d, shape: [2, 3], parameters: { binary_data_size: SAMPLES[d].bytes.length } })),
      parameters: { binary_data_output: true },
    };
    // UINT8 data (6 bytes) before INT16 leaves everything after it misaligned by 2 (and INT8 before it by 6).
    for (const pad of [' ', '  ', '   ']) {
      const { body, headerLength } = binaryBody(header, DATATYPES.map((d) => SAMPLES[d].bytes), pad);
      const answer = await inferBinary(base, 'all_types', body, headerLength);
      assert.equal(answer.status, 200);
      for (const d of DATATYPES) assert.deepEqual(answer.binary.get(outputName(d)), SAMPLES[d].bytes, `${d} with ${pad.length} bytes of padding`);
    }
  });

  test('aligned numeric data is a view of the body (no copy); misaligned data is copied', () => {
    const body = Buffer.alloc(64);
    const aligned = tensorDataFromBinary('FP32', [4], body.subarray(16, 32), 'x') as Float32Array;
    assert.equal(aligned.buffer, body.buffer);
    assert.equal(aligned.byteOffset, body.byteOffset + 16);
    const misaligned = tensorDataFromBinary('FP32', [4], body.subarray(17, 33), 'x') as Float32Array;
    assert.notEqual(misaligned.buffer, body.buffer);
    const tail = new BinaryTail(Buffer.alloc(18), 10);
    assert.equal(tail.take(8, 'x').length, 8);
    tail.finish();
  });

  test('a misaligned first input is moved down over the parsed JSON header onto an 8-byte boundary and viewed in place', () => {
    // A 13-byte header, then two FP32 inputs of 4 values each, contiguous.
    const values = [1.5, -2, 3.25, 4, 5, 6.5, -7, 8];
    const body = Buffer.alloc(13 + 32);
    body.write('{"inputs":[]}', 0, 'latin1');
    Buffer.from(new Float32Array(values).buffer).copy(body, 13);
    const tail = new BinaryTail(body, 13);
    const first = tail.take(16, 'x');
    assert.equal(first.buffer, body.buffer, 'a view of the body, not a copy');
    assert.equal(first.byteOffset % 8, 0, 'on an 8-byte boundary');
    assert.deepEqual(Array.from(tensorDataFromBinary('FP32', [4], first, 'x') as Float32Array), values.slice(0, 4));
    assert.equal((tensorDataFromBinary('FP32', [4], first, 'x') as Float32Array).buffer, body.buffer, 'viewed without a copy');
    // The second input follows the first in the body; the first's move left the bytes it
    // moved out of free, so the second moves down by as much and is aligned too.
    const second = tail.take(16, 'y');
    assert.equal(second.byteOffset % 8, 0);
    assert.equal(second.buffer, body.buffer);
    assert.deepEqual(Array.from(tensorDataFromBinary('FP32', [4], second, 'y') as Float32Array), values.slice(4));
    assert.deepEqual(Array.from(tensorDataFromBinary('FP32', [4], first, 'x') as Float32Array), values.slice(0, 4), 'the first view was not disturbed');
    tail.finish();

    // An input right after an aligned one that did not move has no free bytes before it: it stays.
    const packed = Buffer.alloc(16 + 8 + 3 + 4);
    const tight = new BinaryTail(packed, 16);
    assert.equal(tight.take(11, 'a').byteOffset, packed.byteOffset + 16);
    assert.equal(tight.take(4, 'b').byteOffset, packed.byteOffset + 27, 'misaligned and left where it is');
    tight.finish();
  });

  test('FP16 raw half bits of a model without a batch dimension', async () => {
    const halves = Buffer.from(new Uint16Array([1, 2, 3, 0.5, -1].map(toHalfBits)).buffer);
    const { body, headerLength } = binaryBody({ inputs: [{ name: 'x', datatype: 'FP16', shape: [5], parameters: { binary_data_size: 10 } }] }, [halves]);
    const answer = await inferBinary(base, 'unbatched', body, headerLength);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json.outputs![0]!.data, [1, 2, 3, 0.5, -1]);
  });

  test('gzip-compressed binary requests (tritonclient request_compression_algorithm) decode', async () => {
    const { body, headerLength } = binaryBody(
      { inputs: DATATYPES.map((d) => ({ name: inputName(d), datatype: d, shape: [2, 3], parameters: { binary_data_size: SAMPLES[d].bytes.length } })), parameters: { binary_data_output: true } },
      DATATYPES.map((d) => SAMPLES[d].bytes),
    );
    const answer = await inferBinary(base, 'all_types', gzipSync(body), headerLength, { 'content-encoding': 'gzip' });
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.deepEqual(answer.binary.get(outputName('BYTES')), SAMPLES.BYTES.bytes);
  });

  const x4 = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
  const n4 = Buffer.from(new Int32Array([1, 2, 3, 4]).buffer);
  const two = (xSize: number, nSize: number): object => ({
    inputs: [
      { name: 'x', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: xSize } },
      { name: 'n', datatype: 'INT32', shape: [1, 4], parameters: { binary_data_size: nSize } },
    ],
  });
  const lies: [string, () => { body: Buffer; header: number | string | undefined }, RegExp][] = [
    ['a size beyond the remaining bytes', () => ({ ...header(binaryBody(two(16, 24), [x4, n4])) }), /binary_data_size 24 exceeds the 16 bytes of binary data left/],
    ['sizes undershooting the body (bytes left over)', () => header(binaryBody(two(16, 16), [x4, n4, Buffer.alloc(8)])), /40 bytes after the JSON header, but the inputs' binary_data_size add up to 32/],
    ['a size disagreeing with the shape', () => header(binaryBody(two(12, 20), [x4, n4])), /binary_data_size is 12 bytes but shape \[1,4\] of FP32 needs 16/],
    ['a header length beyond the body', () => ({ body: binaryBody(two(16, 16), [x4, n4]).body, header: 100_000 }), /Inference-Header-Content-Length is 100000 but the request body has only \d+ bytes/],
    ['a header length cutting the JSON short', () => ({ body: binaryBody(two(16, 16), [x4, n4]).body, header: 20 }), /JSON inference header \(the first 20 bytes.*not valid JSON/],
    ['a header length that is not a number', () => ({ body: binaryBody(two(16, 16), [x4, n4]).body, header: 'abc' }), /must be a non-negative integer, got 'abc'/],
    ['binary_data_size without the header', () => ({ body: binaryBody(two(16, 16), [x4, n4]).body, header: undefined }), /not valid JSON|binary_data_size' is set but the request has no binary data/],
    ['binary_data_size and data both', () => header(binaryBody({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4], parameters: { binary_data_size: 16 } }] }, [x4])), /both 'data' and parameter 'binary_data_size'/],
    ['a negative binary_data_size', () => header(binaryBody(two(-1, 16), [x4, n4])), /binary_data_size' must be a non-negative integer/],
    ['BOOL bytes other than 0 and 1', () => header(binaryBody({ inputs: [{ name: inputName('BOOL'), datatype: 'BOOL', shape: [2, 3], parameters: { binary_data_size: 6 } }] }, [Buffer.from([0, 1, 2, 0, 1, 0])])), /BOOL element 2 is the byte 2/],
    ['a truncated BYTES length prefix', () => header(binaryBody({ inputs: [{ name: inputName('BYTES'), datatype: 'BYTES', shape: [1, 3], parameters: { binary_data_size: 7 } }] }, [Buffer.from([1, 0, 0, 0, 65, 2, 0])])), /truncated 4-byte length prefix/],
    ['a BYTES length beyond its data', () => header(binaryBody({ inputs: [{ name: inputName('BYTES'), datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: 6 } }] }, [Buffer.from([9, 0, 0, 0, 65, 66])])), /claims 9 bytes but only 2 remain/],
    ['a negative header length', () => ({ body: binaryBody(two(16, 16), [x4, n4]).body, header: '-1' }), /must be a non-negative integer, got '-1'/],
    ['a header length of 0', () => ({ body: binaryBody(two(16, 16), [x4, n4]).body, header: 0 }), /Inference-Header-Content-Length is 0: the JSON inference header is empty/],
    ['more BYTES elements than the shape holds', () => header(binaryBody({ inputs: [{ name: inputName('BYTES'), datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: 10 } }] }, [Buffer.from([1, 0, 0, 0, 65, 1, 0, 0, 0, 66])])), /holds more than 1 BYTES elements but the shape needs 1/],
    ['BYTES element count disagreeing with the shape', () => header(binaryBody({ inputs: [{ name: inputName('BYTES'), datatype: 'BYTES', shape: [1, 3], parameters: { binary_data_size: 5 } }] }, [Buffer.from([1, 0, 0, 0, 65])])), /holds 1 BYTES elements but the shape needs 3/],
  ];
  for (const [name, make, message] of lies) {
    test(`400, not 5xx, for ${name}`, async () => {
      const { body, header: length } = make();
      const model = name.includes('BOOL') || name.includes('BYTES') ? 'all_types' : 'scores';
      const response = await fetch(`${base}/v2/models/${model}/infer`, {
        method: 'POST',
        headers: length === undefined ? {} : { 'inference-header-content-length': String(length) },
        body,
      });
      const answer = (await response.json()) as { error: string };
      assert.equal(response.status, 400, answer.error);
      assert.match(answer.error, message);
    });
  }

  test('classification: top-k "score:index:label" per row, shape [batch, k], labels where known', async () => {
    const response = await fetch(`${base}/v2/models/scores/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [2, 4], data: [0.1, 0.7, 0.15, 0.05, 0.3, 0.2, 0.4, 0.1] },
          { name: 'n', datatype: 'INT32', shape: [2, 4], data: [5, 1, 9, 9, -3, 0, 2, 1] },
        ],
        outputs: [{ name: 'y', parameters: { classification: 3 } }, { name: 'z', parameters: { classification: 10 } }],
      }),
    });
    assert.equal(response.status, 200);
    const json = (await response.json()) as { outputs: { name: string; datatype: string; shape: number[]; data: string[] }[] };
    const [y, z] = json.outputs;
    assert.equal(y!.datatype, 'BYTES');
    assert.deepEqual(y!.shape, [2, 3]);
    // Labels: cat, dog, (blank), bird: index 2 has no label, so that part is omitted.
    assert.deepEqual(y!.data, ['0.7:1:dog', '0.15:2', '0.1:0:cat', '0.4:2', '0.3:0:cat', '0.2:1:dog']);
    // k beyond the class count gives every class; ties keep the lower index first.
    assert.deepEqual(z!.shape, [2, 4]);
    assert.deepEqual(z!.data, ['9:2', '9:3:bird', '5:0:cat', '1:1:dog', '2:2', '1:3:bird', '0:1:dog', '-3:0:cat']);
  });

  test('classification of a model without a batch dimension has shape [k]; it can be binary', async () => {
    const response = await fetch(`${base}/v2/models/unbatched/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP16', shape: [5], data: [0.1, 3, -1, 2, 0.5] }],
        outputs: [{ name: 'y', parameters: { classification: 2, binary_data: true } }],
      }),
    });
    assert.equal(response.status, 200);
    const bytes = Buffer.from(await response.arrayBuffer());
    const headerLength = Number(response.headers.get('inference-header-content-length'));
    const json = JSON.parse(bytes.subarray(0, headerLength).toString()) as { outputs: { shape: number[]; datatype: string }[] };
    assert.deepEqual(json.outputs[0]!.shape, [2]);
    assert.equal(json.outputs[0]!.datatype, 'BYTES');
    assert.deepEqual(bytes.subarray(headerLength), bytesWire(['3:1', '2:3']));
  });

  test('classification: a count that is not a positive integer, or a BYTES output, is a 400', async () => {
    for (const [model, inputs, output, message] of [
      ['scores', [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }, { name: 'n', datatype: 'INT32', shape: [1, 4], data: [1, 2, 3, 4] }], { name: 'y', parameters: { classification: 0 } }, /'classification' must be a positive integer/],
      ['scores', [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }, { name: 'n', datatype: 'INT32', shape: [1, 4], data: [1, 2, 3, 4] }], { name: 'y', parameters: { classification: 'two' } }, /'classification' must be a positive integer/],
      ['scores', [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }, { name: 'n', datatype: 'INT32', shape: [1, 4], data: [1, 2, 3, 4] }], { name: 'y', parameters: { binary_data: 'yes' } }, /'binary_data' must be true or false/],
      ['all_types', DATATYPES.map((d) => ({ name: inputName(d), datatype: d, shape: [2, 3], data: SAMPLES[d].json })), { name: outputName('BYTES'), parameters: { classification: 1 } }, /is BYTES; classification needs a numeric output/],
    ] as const) {
      const response = await fetch(`${base}/v2/models/${model}/infer`, { method: 'POST', body: JSON.stringify({ inputs, outputs: [output] }) });
      const answer = (await response.json()) as { error: string };
      assert.equal(response.status, 400, answer.error);
      assert.match(answer.error, message);
    }
  });
});

function header(split: { body: Buffer; headerLength: number }): { body: Buffer; header: number } {
  return { body: split.body, header: split.headerLength };
}

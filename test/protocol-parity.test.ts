/**
 * Protocol parity: the same rows sent over every HTTP protocol Tessera speaks give the same
 * outputs (bit for bit, as FP32) from the MLP fixture with known weights, matching the plain-JS
 * reference; and the same mistake (rows one feature short) is answered in each protocol's own
 * error shape with a 400. The protocols are thin adapters over one engine.infer().
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';

import { defaultMlpWeights, makeTempRepository, mlpModel, mlpReference, writeModel } from './support/fixtures.js';
import { startTestServer } from './support/server.js';

type Rows = number[][];

interface Reply {
  readonly status: number;
  readonly contentType: string;
  readonly bytes: Buffer;
  readonly headers: Headers;
}

interface Protocol {
  readonly name: string;
  /** Send `rows` to the MLP. */
  readonly send: (base: string, rows: Rows) => Promise<Reply>;
  /** Per-row probabilities from a successful reply. */
  readonly outputs: (reply: Reply) => Rows;
  /** The message of an error reply, after checking the protocol's error shape. */
  readonly error: (reply: Reply) => string;
}

async function call(url: string, init: RequestInit): Promise<Reply> {
  const response = await fetch(url, init);
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', bytes: Buffer.from(await response.arrayBuffer()), headers: response.headers };
}
const postJson = (url: string, body: unknown): Promise<Reply> => call(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const json = (reply: Reply): unknown => JSON.parse(reply.bytes.toString('utf8'));
const width = (rows: Rows): number => rows[0]?.length ?? 0;
const split = (flat: readonly number[], size: number): Rows => Array.from({ length: flat.length / size }, (_, r) => flat.slice(r * size, (r + 1) * size));

/** `{"error": "..."}` and nothing else: V2, TF Serving, SageMaker, Vertex AI, Azure ML. */
function errorObject(reply: Reply): string {
  const body = json(reply) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body), ['error']);
  return body['error'] as string;
}

/** V2 response outputs[0] → rows of 3. */
function v2Outputs(reply: Reply): Rows {
  const output = (json(reply) as { outputs: { name: string; shape: number[]; data: number[] }[] }).outputs[0]!;
  assert.equal(output.name, 'probs');
  return split(output.data, output.shape[1]!);
}

const PROTOCOLS: Protocol[] = [
  {
    name: 'V2 JSON',
    send: (base, rows) => postJson(`${base}/v2/models/mlp/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [rows.length, width(rows)], data: rows }] }),
    outputs: v2Outputs,
    error: errorObject,
  },
  {
    name: 'V2 binary tensor data',
    send: (base, rows) => {
      const data = Buffer.from(new Float32Array(rows.flat()).buffer);
      const header = Buffer.from(
        JSON.stringify({
          inputs: [{ name: 'x', datatype: 'FP32', shape: [rows.length, width(rows)], parameters: { binary_data_size: data.length } }],
          outputs: [{ name: 'probs', parameters: { binary_data: true } }],
        }),
      );
      return call(`${base}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
        body: Buffer.concat([header, data]),
      });
    },
    outputs: (reply) => {
      assert.equal(reply.contentType, 'application/octet-stream');
      const headerLength = Number(reply.headers.get('inference-header-content-length'));
      const header = JSON.parse(reply.bytes.subarray(0, headerLength).toString()) as { outputs: { shape: number[]; parameters: { binary_data_size: number } }[] };
      const output = header.outputs[0]!;
      assert.equal(output.parameters.binary_data_size, reply.bytes.length - headerLength);
      const values = Array.from(new Float32Array(new Uint8Array(reply.bytes.subarray(headerLength)).buffer));
      return split(values, output.shape[1]!);
    },
    error: errorObject,
  },
  {
    name: 'TF Serving row format',
    send: (base, rows) => postJson(`${base}/v1/models/mlp:predict`, { instances: rows }),
    outputs: (reply) => (json(reply) as { predictions: Rows }).predictions,
    error: errorObject,
  },
  {
    name: 'TF Serving columnar format',
    send: (base, rows) => postJson(`${base}/v1/models/mlp/versions/1:predict`, { signature_name: 'serving_default', inputs: { x: rows } }),
    outputs: (reply) => (json(reply) as { outputs: Rows }).outputs,
    error: errorObject,
  },
  {
    name: 'TorchServe /predictions (multipart upload)',
    send: (base, rows) => {
      const form = new FormData();
      form.append('data', new Blob([JSON.stringify({ data: rows })], { type: 'application/json' }), 'rows.json');
      return call(`${base}/predictions/mlp`, { method: 'POST', body: form });
    },
    outputs: (reply) => json(reply) as Rows,
    error: (reply) => {
      const body = json(reply) as { code: number; type: string; message: string };
      assert.deepEqual(Object.keys(body), ['code', 'type', 'message']);
      assert.equal(body.code, reply.status);
      assert.equal(body.type, 'BadRequestException');
      return body.message;
    },
  },
  {
    name: 'SageMaker /invocations',
    send: (base, rows) => postJson(`${base}/invocations`, { instances: rows }),
    outputs: (reply) => (json(reply) as { predictions: Rows }).predictions,
    error: errorObject,
  },
  {
    name: 'Vertex AI predict route',
    send: (base, rows) => postJson(`${base}/v1/endpoints/e1/deployedModels/m1:predict`, { instances: rows, parameters: {} }),
    outputs: (reply) => (json(reply) as { predictions: Rows }).predictions,
    error: errorObject,
  },
  {
    name: 'Azure ML /score',
    send: (base, rows) => postJson(`${base}/score`, { input_data: rows }),
    outputs: (reply) => json(reply) as Rows,
    error: errorObject,
  },
];

test('every HTTP protocol gives the same MLP outputs for the same rows, and its own error shape for bad rows', async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'mlp', 1, mlpModel());
  const server = await startTestServer(t, repo, {
    sagemaker: true,
    vertex: true,
    vertexHealthRoute: '/v1/endpoints/e1/deployedModels/m1',
    vertexPredictRoute: '/v1/endpoints/e1/deployedModels/m1:predict',
    azureml: true,
  });
  const rows: Rows = [
    [5.1, 3.5, 1.4, 0.2],
    [-1.25, 0.5, 2, 3],
    [0, 0, 0, 0],
  ];
  const reference = mlpReference(defaultMlpWeights(), rows.flat());
  const badRows: Rows = [[1, 2, 3]];

  let first: { name: string; outputs: Rows } | undefined;
  for (const protocol of PROTOCOLS) {
    const reply = await protocol.send(server.httpUrl, rows);
    assert.equal(reply.status, 200, `${protocol.name}: ${reply.bytes.toString().slice(0, 300)}`);
    const outputs = protocol.outputs(reply);
    assert.equal(outputs.length, rows.length, protocol.name);
    outputs.flat().forEach((p, i) => assert.ok(Math.abs(p - reference[i]!) < 1e-5, `${protocol.name}: element ${i} is ${p}, reference ${reference[i]}`));
    // Same FP32 bits whatever the protocol (JSON carries FP32 values as their exact doubles).
    const bits = outputs.map((row) => row.map(Math.fround));
    if (first === undefined) first = { name: protocol.name, outputs: bits };
    else assert.deepEqual(bits, first.outputs, `${protocol.name} differs from ${first.name}`);

    const error = await protocol.send(server.httpUrl, badRows);
    assert.equal(error.status, 400, `${protocol.name}: ${error.bytes.toString().slice(0, 300)}`);
    assert.match(error.contentType, /^application\/json/, protocol.name);
    assert.match(protocol.error(error), /expected shape \[-1,4\], got \[1,3\]/, protocol.name);
  }
  t.diagnostic(`${PROTOCOLS.length} protocols agree: ${PROTOCOLS.map((p) => p.name).join('; ')}`);
});

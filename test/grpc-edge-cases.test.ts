/**
 * gRPC front door edge cases, over real gRPC against a real server: answers larger than the
 * message limit (refused alone, on ModelInfer and on a ModelStreamInfer stream that goes on),
 * health of a model that leaves the repository, and BOOL raw bytes other than 0 and 1.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import { status, type ServiceError } from '@grpc/grpc-js';

import { decodeRaw } from '../src/protocols/grpc/raw.js';
import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { GrpcTestClient, grpcError, type InferResponse, type StreamInferResponse } from './support/grpc-client.js';
import { startTestServer, writeFakeModel } from './support/server.js';

/** The gRPC message limit the servers below run with (the smallest allowed is 1024). */
const LIMIT = 100_000;
/** FP32 elements whose answer (two copies of the input) is over LIMIT while the request is under it. */
const BIG = 15_000;


function grpcPort(server: TesseraServer): number {
  assert.ok(server.grpcPort !== undefined, 'the server serves gRPC');
  return server.grpcPort;
}

/** Resolve once `check` holds, polling; fail after `timeoutMs`. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function dupRequest(id: string, elements: number): object {
  return {
    model_name: 'dup',
    id,
    inputs: [{ name: 'a', datatype: 'FP32', shape: [String(elements)] }],
    raw_input_contents: [Buffer.alloc(elements * 4)],
  };
}

const OVERSIZED = new RegExp(`^the response is (\\d+) bytes, larger than a gRPC message may be; the limit is ${LIMIT} bytes \\(--grpc-max-message-bytes\\)`);

describe('gRPC answers larger than the message limit', () => {
  let repo: string;
  let server: TesseraServer;
  let client: GrpcTestClient;

  before(async () => {
    repo = await makeTempRepository('tessera-grpc-edge-');
    // Two outputs, each a copy of the input: the answer is twice the request.
    await writeFakeModel(
      repo,
      'dup',
      1,
      {
        inputs: [{ name: 'a', datatype: 'FP32', shape: [-1] }],
        outputs: [
          { name: 'o1', datatype: 'FP32', shape: [-1], copy_of: 'a' },
          { name: 'o2', datatype: 'FP32', shape: [-1], copy_of: 'a' },
        ],
      },
      'max_batch_size: 0\n',
    );
    server = await startTestServer(undefined, repo, { grpcMaxMessageBytes: LIMIT });
    client = new GrpcTestClient(grpcPort(server));
  });

  after(async () => {
    client.close();
    await server.close();
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('ModelInfer: RESOURCE_EXHAUSTED naming the size, the limit and the setting', async () => {
    const error = await grpcError(client.call('ModelInfer', dupRequest('u', BIG)));
    assert.equal(error.code, status.RESOURCE_EXHAUSTED);
    const size = Number(OVERSIZED.exec(error.details)?.[1]);
    assert.ok(size > LIMIT && size < LIMIT * 2, error.details);
    assert.equal(error.metadata.get('tessera-error-code')[0], 'LIMIT_EXCEEDED');
    const fits = await client.call<InferResponse>('ModelInfer', dupRequest('v', 4));
    assert.equal(fits.raw_output_contents.length, 2, 'the next call is answered');
  });

  test('ModelStreamInfer: the oversized request gets error_message, the stream goes on', async () => {
    const call = client.stream();
    const answers: StreamInferResponse[] = [];
    let bigAnswered: () => void = () => undefined;
    const bigSeen = new Promise<void>((resolve) => (bigAnswered = resolve));
    const ended = new Promise<number>((resolve, reject) => {
      call.on('data', (answer: StreamInferResponse) => {
        answers.push(answer);
        if (answer.infer_response?.id === 'big') bigAnswered();
      });
      call.on('status', (s: { code: number }) => resolve(s.code));
      call.on('error', reject);
    });
    // One request in flight alongside the oversized one, one sent after its answer.
    call.write(dupRequest('big', BIG));
    call.write(dupRequest('alongside', 8));
    await Promise.race([bigSeen, ended.then(() => assert.fail("the stream ended before answering 'big'"))]);
    call.write(dupRequest('after', 4));
    call.end();
    assert.equal(await ended, status.OK, 'the stream ends OK after the client half-closes');

    const byId = new Map(answers.map((answer) => [answer.infer_response?.id, answer]));
    assert.deepEqual([...byId.keys()].sort(), ['after', 'alongside', 'big']);
    const big = byId.get('big')!;
    const size = Number(OVERSIZED.exec(big.error_message)?.[1]);
    assert.ok(size > LIMIT && size < LIMIT * 2, big.error_message);
    assert.equal(big.infer_response?.model_name, 'dup');
    assert.deepEqual(big.infer_response?.raw_output_contents, [], 'no outputs with the error');
    for (const id of ['alongside', 'after']) {
      const answer = byId.get(id)!;
      assert.equal(answer.error_message, '', id);
      assert.equal(answer.infer_response?.raw_output_contents.length, 2, id);
    }
  });
});

describe('gRPC health of a model removed from the repository', () => {
  test('turns NOT_SERVING (Check and Watch), and SERVING again when it comes back', async (t) => {
    const repo = await makeTempRepository('tessera-grpc-health-');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const model = {
      inputs: [{ name: 'a', datatype: 'FP32', shape: [-1, 3] }],
      outputs: [{ name: 'o', datatype: 'FP32', shape: [-1, 3], copy_of: 'a' }],
    };
    for (const name of ['gone', 'stays']) await writeFakeModel(repo, name, 1, model, 'max_batch_size: 4\n');
    const server = await startTestServer(t, repo, { modelControlMode: 'poll', repositoryPollSecs: 0.2 });
    const client = new GrpcTestClient(grpcPort(server));
    t.after(() => client.close());
    assert.deepEqual(await client.healthCheck('gone'), { status: 'SERVING' });

    const watch = client.healthWatch('gone');
    const watched: string[] = [];
    watch.on('data', (update: { status: string }) => watched.push(update.status));
    watch.on('error', () => undefined); // cancelled below
    t.after(() => watch.cancel());

    await rm(`${repo}/gone`, { recursive: true });
    await eventually('the model leaves the repository index', async () => !server.engine.repositoryIndex().some((entry) => entry.name === 'gone'));
    assert.deepEqual(await client.healthCheck('gone'), { status: 'NOT_SERVING' });
    assert.deepEqual(await client.healthCheck('stays'), { status: 'SERVING' });
    assert.deepEqual(await client.healthCheck(''), { status: 'SERVING' });
    await eventually('Watch is told', async () => watched.at(-1) === 'NOT_SERVING');
    assert.equal((await grpcError(client.healthCheck('never-there'))).code, status.NOT_FOUND);

    await writeFakeModel(repo, 'gone', 1, model, 'max_batch_size: 4\n');
    await eventually('the model is back and ready', async () => (await client.healthCheck('gone')).status === 'SERVING');
    await eventually('Watch is told again', async () => watched.at(-1) === 'SERVING');
    assert.deepEqual(watched, ['SERVING', 'NOT_SERVING', 'SERVING']);
  });
});

describe('gRPC BOOL raw contents', () => {
  test('bytes other than 0 and 1 are refused as over HTTP; typed bool_contents are booleans', async (t) => {
    const repo = await makeTempRepository('tessera-grpc-bool-');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(
      repo,
      'b',
      1,
      { inputs: [{ name: 'x', datatype: 'BOOL', shape: [-1] }], outputs: [{ name: 'y', datatype: 'BOOL', shape: [-1], copy_of: 'x' }] },
      'max_batch_size: 0\n',
    );
    const server = await startTestServer(t, repo);
    const client = new GrpcTestClient(grpcPort(server));
    t.after(() => client.close());
    const raw = (bytes: number[]): object => ({ model_name: 'b', inputs: [{ name: 'x', datatype: 'BOOL', shape: [String(bytes.length)] }], raw_input_contents: [Buffer.from(bytes)] });

    const error = await grpcError(client.call('ModelInfer', raw([1, 0, 2, 255])));
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.equal(error.details, "input 'x': BOOL element 2 is the byte 2; BOOL bytes are 0 or 1");
    assert.equal(error.metadata.get('tessera-error-code')[0], 'INVALID_INPUT_DATA');

    // The same message as HTTP's binary extension gives for the same bytes.
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'BOOL', shape: [4], parameters: { binary_data_size: 4 } }] }));
    const http = await fetch(`${server.httpUrl}/v2/models/b/infer`, {
      method: 'POST',
      headers: { 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, Buffer.from([1, 0, 2, 255])]),
    });
    assert.equal(http.status, 400);
    assert.deepEqual(await http.json(), { error: error.details });

    const ok = await client.call<InferResponse>('ModelInfer', raw([1, 0, 0, 1]));
    assert.deepEqual([...ok.raw_output_contents[0]!], [1, 0, 0, 1]);
    const typed = await client.call<InferResponse>('ModelInfer', {
      model_name: 'b',
      inputs: [{ name: 'x', datatype: 'BOOL', shape: ['3'], contents: { bool_contents: [true, false, true] } }],
    });
    assert.deepEqual([...typed.raw_output_contents[0]!], [1, 0, 1]);
  });

  test('decodeRaw checks every byte', () => {
    assert.deepEqual([...(decodeRaw('BOOL', Buffer.from([0, 1, 1]), "input 'x'") as Uint8Array)], [0, 1, 1]);
    assert.throws(() => decodeRaw('BOOL', Buffer.from([0, 1, 0, 0, 0, 0, 0, 0, 3]), "input 'x'"), {
      message: "input 'x': BOOL element 8 is the byte 3; BOOL bytes are 0 or 1",
    });
  });
});

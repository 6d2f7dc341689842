/**
 * The batch job's remote executor (KServe V2 REST) against a scripted HTTP server on an
 * ephemeral port: tests that a mutation audit showed missing. A 500 is retried at most twice
 * (never while isolating a guilty row) and then handed back for row-by-row isolation; other
 * retryable statuses give up with UPSTREAM_UNAVAILABLE after --retries; 413 and 4xx are not
 * retried and keep their own codes; Retry-After is honoured; max_batch_size comes from /config.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';

import { TesseraError } from '../src/core/errors.js';
import { RemoteExecutor } from '../src/batch/remote-executor.js';
import type { Tensor } from '../src/core/tensor.js';

interface Scripted {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: unknown;
}

const METADATA = {
  name: 'm',
  versions: ['1'],
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
};
const OK: Scripted = { status: 200, body: { model_name: 'm', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 2], data: [3, 4] }] } };
const INPUT: Tensor[] = [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([1, 2]) } as Tensor];

describe('batch remote executor: retries and status codes', () => {
  let server: Server;
  let url = '';
  /** Answers to POST .../infer, in order; the last one repeats. */
  let script: Scripted[] = [];
  let posts = 0;
  let config: Scripted = { status: 404, body: { error: 'no config' } };

  before(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        let answer: Scripted;
        if (req.method === 'GET' && req.url === '/v2/models/m') answer = { status: 200, body: METADATA };
        else if (req.method === 'GET' && req.url === '/v2/models/m/config') answer = config;
        else if (req.method === 'POST' && req.url === '/v2/models/m/infer') answer = script[Math.min(posts++, script.length - 1)]!;
        else answer = { status: 404, body: { error: 'no route' } };
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      });
    });
    server.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    posts = 0;
    config = { status: 404, body: { error: 'no config' } };
  });

  const start = (retries: number): Promise<RemoteExecutor> =>
    RemoteExecutor.start({ url, model: 'm', version: undefined, connections: 1, retries, timeoutMs: 5000, backoffMs: 1, labels: undefined });

  const rejects = async (executor: RemoteExecutor, isolating: boolean, code: string, message: RegExp): Promise<void> => {
    await assert.rejects(executor.infer(INPUT, ['y'], { isolating }), (error: unknown) => {
      assert.ok(error instanceof TesseraError, String(error));
      assert.equal(error.code, code, error.message);
      assert.match(error.message, message);
      return true;
    });
  };

  test('a 500 is retried twice, then handed back as INFERENCE_FAILED (not UPSTREAM_UNAVAILABLE), whatever --retries allows', async (t) => {
    const executor = await start(10);
    t.after(() => executor.close());
    script = [{ status: 500, body: { error: 'boom' } }];
    await rejects(executor, false, 'INFERENCE_FAILED', /answered 500: boom/);
    assert.equal(posts, 3, 'the first attempt and two retries');
    assert.equal(executor.retried, 2);
  });

  test('a 500 while isolating a guilty row is not retried', async (t) => {
    const executor = await start(10);
    t.after(() => executor.close());
    script = [{ status: 500, body: { error: 'boom' } }];
    await rejects(executor, true, 'INFERENCE_FAILED', /answered 500: boom/);
    assert.equal(posts, 1);
  });

  test('a 500 with --retries 0 is handed back at once for isolation, not turned into UPSTREAM_UNAVAILABLE', async (t) => {
    const executor = await start(0);
    t.after(() => executor.close());
    script = [{ status: 500, body: { error: 'boom' } }];
    await rejects(executor, false, 'INFERENCE_FAILED', /answered 500: boom/);
    assert.equal(posts, 1);
  });

  test('a 500 then success: the retry answers', async (t) => {
    const executor = await start(10);
    t.after(() => executor.close());
    script = [{ status: 500, body: { error: 'boom' } }, OK];
    const outputs = await executor.infer(INPUT, ['y']);
    assert.deepEqual(Array.from(outputs[0]!.data as Float32Array), [3, 4]);
    assert.equal(posts, 2);
  });

  test('502 and 429 are retried up to --retries, then UPSTREAM_UNAVAILABLE naming the retries', async (t) => {
    const executor = await start(3);
    t.after(() => executor.close());
    script = [{ status: 502, body: { error: 'bad gateway' } }];
    await rejects(executor, false, 'UPSTREAM_UNAVAILABLE', /answered 502: bad gateway; gave up after 3 retries/);
    assert.equal(posts, 4);
    posts = 0;
    script = [{ status: 429, body: { error: 'slow down' } }, { status: 429, body: { error: 'slow down' } }, OK];
    await executor.infer(INPUT, ['y']);
    assert.equal(posts, 3);
  });

  test('413 is PAYLOAD_TOO_LARGE and other 4xx INVALID_INPUT_DATA, neither retried', async (t) => {
    const executor = await start(5);
    t.after(() => executor.close());
    script = [{ status: 413, body: { error: 'too big' } }];
    await rejects(executor, false, 'PAYLOAD_TOO_LARGE', /answered 413: too big/);
    assert.equal(posts, 1);
    posts = 0;
    script = [{ status: 400, body: { error: 'bad shape' } }];
    await rejects(executor, false, 'INVALID_INPUT_DATA', /answered 400: bad shape/);
    assert.equal(posts, 1);
  });

  test('Retry-After (seconds) is waited out before the retry, even with a 1 ms backoff', async (t) => {
    const executor = await start(2);
    t.after(() => executor.close());
    script = [{ status: 503, headers: { 'retry-after': '1' }, body: { error: 'busy' } }, OK];
    const started = Date.now();
    await executor.infer(INPUT, ['y']);
    const waited = Date.now() - started;
    assert.equal(posts, 2);
    assert.ok(waited >= 950, `waited ${waited} ms`);
  });

  test('max_batch_size comes from /config when the server has one, else from the shapes', async () => {
    const fromShapes = await start(0);
    await fromShapes.close();
    assert.equal(fromShapes.model.maxBatchSize, Number.MAX_SAFE_INTEGER);
    config = { status: 200, body: { max_batch_size: 16 } };
    const fromConfig = await start(0);
    await fromConfig.close();
    assert.equal(fromConfig.model.maxBatchSize, 16);
    config = { status: 200, body: { config: { max_batch_size: 0 } } };
    const nested = await start(0);
    await nested.close();
    assert.equal(nested.model.maxBatchSize, 0);
    assert.deepEqual(nested.model.identity, { version: null, versions: ['1'], files: null });
  });
});

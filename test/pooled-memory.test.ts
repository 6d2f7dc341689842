/**
 * Received requests in pooled memory (core/buffer-pool.ts; gRPC: src/protocols/grpc/
 * message-framing.ts, received-messages.ts; HTTP: src/protocols/http/body-reader.ts): the gRPC
 * framing gives what grpc-js's own decoder gives, the pool lends and takes back only what it
 * should, and end to end, concurrent requests whose memory is lent again each get their own
 * tensors back, over ModelInfer, ModelStreamInfer and the V2 binary extension, with a shadow
 * replay comparing identical outputs; a pooled-size body over the limit is still a 413.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, test, type TestContext } from 'node:test';

import { BufferPool, receivedRequestPool, type BufferPoolCounts } from '../src/core/buffer-pool.js';
import type { TesseraServer } from '../src/server/server.js';
import { channels, type RequestStartEvent } from '../src/core/events.js';
import type { Tensor } from '../src/core/tensor.js';
import { MessageFramer } from '../src/protocols/grpc/message-framing.js';
import { identityModel, makeTempRepository, mulberry32, writeModel } from './support/fixtures.js';
import { GrpcTestClient, rawOf, rawToFloat32, type InferResponse, type StreamInferResponse } from './support/grpc-client.js';
import { getJson, startTestServer, writeFakeModel } from './support/server.js';
import { Pool } from 'undici';

interface GrpcJsStreamDecoder {
  write(data: Buffer): Buffer[];
}
/** grpc-js's decoder as shipped, taken before any server of this process replaces its write. */
const GrpcJsDecoder = (createRequire(import.meta.url)('@grpc/grpc-js/build/src/stream-decoder.js') as { StreamDecoder: new (max: number) => GrpcJsStreamDecoder }).StreamDecoder;
const grpcJsWrite = GrpcJsDecoder.prototype.write;

function frame(body: Buffer, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

function randomBytes(rng: () => number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

/** `bytes` cut into chunks of random lengths in [1, maxChunk]. */
function chunked(bytes: Buffer, rng: () => number, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < bytes.length; ) {
    const n = 1 + Math.floor(rng() * maxChunk);
    chunks.push(bytes.subarray(pos, pos + n));
    pos += n;
  }
  return chunks;
}


interface ShadowView {
  sent: number;
  succeeded: number;
  failed: number;
  inFlight: number;
  comparison: { requests: number; meanAbsDiff: number | null };
}

/** The shadow lane of `model` once every replay sent has finished. */
async function settledShadow(managementPort: number, model: string): Promise<ShadowView> {
  const url = `http://127.0.0.1:${managementPort}/models/${model}/shadow`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const view = (await getJson(url)).body as ShadowView;
    if (view.inFlight === 0 && view.succeeded + view.failed >= view.sent) return view;
    assert.ok(Date.now() < deadline, `the shadow requests of '${model}' finish`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Run `send(seed)` for seeds first..first+count-1, 8 at a time. */
async function eightAtATime(first: number, count: number, send: (seed: number) => Promise<void>): Promise<void> {
  let next = first;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let seed = next++; seed < first + count; seed = next++) await send(seed);
    }),
  );
}

/** A repository with an FP32 identity model in two identical versions, every request replayed on version 2. */
async function identityWithShadow(): Promise<string> {
  const repo = await makeTempRepository();
  const config = 'max_batch_size: 8\nversion_policy:\n  all: {}\nrouting:\n  default_version: 1\n  shadow: {version: 2, share: 1, max_in_flight: 256}\n';
  await writeModel(repo, 'identity', 1, identityModel('FP32', [-1, -1]), { 'config.yaml': config });
  await writeModel(repo, 'identity', 2, identityModel('FP32', [-1, -1]));
  return repo;
}

/** {@link identityWithShadow} served for test `t`, an 8-connection HTTP pool to it, and the received-request pool's counts before. */
async function servedIdentity(t: TestContext): Promise<{ server: TesseraServer; http: Pool; before: BufferPoolCounts }> {
  const repo = await identityWithShadow();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  const server = await startTestServer(t, repo);
  const http = new Pool(server.httpUrl, { connections: 8 });
  t.after(() => http.close());
  return { server, http, before: { ...receivedRequestPool.counts } };
}

/** 160 KB of seeded values (above the pools' 64 KiB minimum), each seed its own. */
const WIDTH = 40_000;
function tensorOf(seed: number): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: WIDTH }, () => rng() * 2 - 1);
}

describe('received requests in pooled memory', () => {
  test('gives the messages grpc-js gives, whatever the chunks they arrive in', () => {
    const rng = mulberry32(7);
    const sizes = [0, 1, 4, 100, 16_384, 65_531, 65_536, 70_000, 250_000, 0, 3];
    const bodies = sizes.map((size) => randomBytes(rng, size));
    const wire = Buffer.concat(bodies.map((body, i) => frame(body, i % 3 === 1)));
    for (const maxChunk of [1, 7, 4096, 16_384, 100_000, wire.length]) {
      const pool = new BufferPool();
      const framer = new MessageFramer(-1, pool);
      const reference = new GrpcJsDecoder(-1);
      const ours: Buffer[] = [];
      const theirs: Buffer[] = [];
      for (const chunk of chunked(wire, rng, maxChunk)) {
        ours.push(...framer.write(chunk));
        theirs.push(...grpcJsWrite.call(reference, chunk));
      }
      assert.equal(ours.length, bodies.length, `chunks of up to ${maxChunk} bytes`);
      assert.deepEqual(ours, theirs, `chunks of up to ${maxChunk} bytes`);
      ours.forEach((message, i) => assert.ok(message.subarray(5).equals(bodies[i]!)));
      // The messages of 64 KiB and more (with their prefix) are in lent memory: 65_531 + 5 and up.
      assert.equal(pool.counts.lent, 4, `chunks of up to ${maxChunk} bytes`);
    }
  });

  test('refuses a message over the size limit with the error grpc-js raises', () => {
    const wire = frame(Buffer.alloc(1000));
    const ours = (): Buffer[] => new MessageFramer(999, new BufferPool()).write(wire);
    const theirs = (): Buffer[] => grpcJsWrite.call(new GrpcJsDecoder(999), wire);
    assert.throws(theirs, { message: 'Received message larger than max (1000 vs 999)' });
    assert.throws(ours, { message: 'Received message larger than max (1000 vs 999)' });
    assert.equal(new MessageFramer(1000, new BufferPool()).write(wire).length, 1);
  });

  test('the pool lends memory, takes back only its own and only once, and lends it again for a similar size', () => {
    const pool = new BufferPool({ minBytes: 1024, maxBytes: 1 << 20, maxIdleBytes: 256 * 1024 });
    assert.equal(pool.serves(1023), false);
    assert.equal(pool.serves(1024), true);
    assert.equal(pool.serves((1 << 20) + 1), false);
    const a = pool.lend(100_000);
    assert.equal(a.length, 100_000);
    assert.equal(pool.giveBack(Buffer.alloc(100_000)), false, 'not lent by this pool');
    assert.equal(pool.giveBack(a.subarray(5)), true, 'any view of lent memory gives it back');
    assert.equal(pool.giveBack(a), false, 'already given back');
    assert.equal(pool.idleByteCount, 128 * 1024);
    const b = pool.lend(90_000);
    assert.equal(b.buffer, a.buffer, 'lent again for a similar size');
    assert.equal(pool.idleByteCount, 0);
    const small = pool.lend(2000);
    assert.notEqual(small.buffer, a.buffer);
    pool.giveBack(b);
    const c = pool.lend(30_000);
    assert.notEqual(c.buffer, a.buffer, 'not lent for a size less than half its capacity');
    // Idle memory is bounded: what does not fit is left to the collector.
    const big = [pool.lend(120_000), pool.lend(120_000), pool.lend(120_000)];
    assert.equal(big[0]!.buffer, a.buffer, 'the idle 128 KiB serves 120 KB');
    for (const buffer of big) assert.equal(pool.giveBack(buffer), true);
    assert.ok(pool.idleByteCount <= 256 * 1024, `idle ${pool.idleByteCount}`);
    assert.equal(pool.idleByteCount, 256 * 1024, 'two of the three given back are kept');
    const moved = pool.lend(5000);
    structuredClone(moved.buffer, { transfer: [moved.buffer as ArrayBuffer] });
    assert.equal(pool.giveBack(moved), true);
    assert.equal(pool.idleByteCount, 256 * 1024, 'memory transferred away is not kept');
    assert.deepEqual(pool.counts, { lent: 8, reused: 2, returned: 6 });
  });

  test('gRPC: concurrent requests in lent memory each get their own tensors back; a shadow replay sees the same inputs', async (t) => {
    const repo = await identityWithShadow();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const client = new GrpcTestClient(server.grpcPort!);
    t.after(() => client.close());
    const requestOf = (seed: number): object => ({
      model_name: 'identity',
      id: String(seed),
      inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', String(WIDTH)] }],
      raw_input_contents: [rawOf(tensorOf(seed))],
    });
    const check = (response: InferResponse, seed: number, how: string): void => {
      assert.equal(response.id, String(seed), how);
      // Compared as bytes: a failing deepEqual of 40,000 floats takes minutes to describe.
      const got = Buffer.from(rawToFloat32(response.raw_output_contents[0]!).buffer);
      assert.ok(got.equals(rawOf(tensorOf(seed))), `${how}: request ${seed} got other values than it sent`);
    };
    const before = { ...receivedRequestPool.counts };

    const UNARY = 96;
    await eightAtATime(0, UNARY, async (seed) => check(await client.call<InferResponse>('ModelInfer', requestOf(seed)), seed, 'ModelInfer'));

    const STREAMED = 48;
    const stream = client.stream();
    const answers: StreamInferResponse[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('data', (answer: StreamInferResponse) => answers.push(answer));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    for (let seed = 1000; seed < 1000 + STREAMED; seed++) stream.write(requestOf(seed));
    stream.end();
    await ended;
    assert.equal(answers.length, STREAMED);
    for (const answer of answers) {
      assert.equal(answer.error_message, '');
      check(answer.infer_response!, Number(answer.infer_response!.id), 'ModelStreamInfer');
    }

    const counts = receivedRequestPool.counts;
    assert.ok(counts.returned - before.returned >= UNARY + STREAMED, `every answered request's memory is given back (${counts.returned - before.returned})`);
    assert.ok(counts.reused - before.reused > 0, 'memory was lent again');

    // The shadow version ran on copies taken before the memory was given back: identical outputs.
    const view = await settledShadow(server.managementPort!, 'identity');
    assert.equal(view.sent, UNARY + STREAMED);
    assert.equal(view.failed, 0);
    assert.equal(view.comparison.requests, UNARY + STREAMED);
    assert.equal(view.comparison.meanAbsDiff, 0, 'the shadow saw the inputs the primary saw');
  });

  test('V2 binary: concurrent bodies in lent memory each get their own tensors back; a shadow replay sees the same inputs', async (t) => {
    const { server, http, before } = await servedIdentity(t);
    const REQUESTS = 96;
    await eightAtATime(0, REQUESTS, async (seed) => {
      const header = Buffer.from(
        JSON.stringify({ id: String(seed), inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], parameters: { binary_data_size: WIDTH * 4 } }], parameters: { binary_data_output: true } }),
      );
      const response = await http.request({
        method: 'POST',
        path: '/v2/models/identity/infer',
        headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
        body: Buffer.concat([header, rawOf(tensorOf(seed))]),
      });
      const body = Buffer.from(await response.body.arrayBuffer());
      assert.equal(response.statusCode, 200, body.subarray(0, 300).toString());
      const headerLength = Number(response.headers['inference-header-content-length']);
      assert.equal((JSON.parse(body.subarray(0, headerLength).toString()) as { id: string }).id, String(seed));
      assert.ok(body.subarray(headerLength).equals(rawOf(tensorOf(seed))), `request ${seed} got other values than it sent`);
    });
    const counts = receivedRequestPool.counts;
    assert.ok(counts.returned - before.returned >= REQUESTS, `every answered body is given back (${counts.returned - before.returned})`);
    assert.ok(counts.reused - before.reused > 0, 'memory was lent again');
    const view = await settledShadow(server.managementPort!, 'identity');
    assert.equal(view.sent, REQUESTS);
    assert.equal(view.failed, 0);
    assert.equal(view.comparison.meanAbsDiff, 0, 'the shadow saw the inputs the primary saw');
  });

  test('V2 binary BYTES: a shadow replay still queued keeps its own bytes while the body memory serves the next request', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const io = { inputs: [{ name: 'x', datatype: 'BYTES', shape: [1] }], outputs: [{ name: 'y', datatype: 'BYTES', shape: [1], copy_of: 'x' }] };
    const config = 'max_batch_size: 0\nversion_policy:\n  all: {}\nrouting:\n  default_version: 1\n  shadow: {version: 2, share: 1, max_in_flight: 4}\n';
    await writeFakeModel(repo, 'bytes', 1, io, config);
    await writeFakeModel(repo, 'bytes', 2, { ...io, delay_ms: 300 }, config); // the shadow version is slow
    const replays: { fill: string; inputs: readonly Tensor[] }[] = [];
    const onStart = (message: unknown): void => {
      const event = message as RequestStartEvent;
      if (event.protocol === 'shadow') replays.push({ fill: String.fromCharCode((event.inputs[0]!.data as Buffer[])[0]![0]!), inputs: event.inputs });
    };
    subscribe(channels.requestStart.name, onStart);
    t.after(() => unsubscribe(channels.requestStart.name, onStart));
    const server = await startTestServer(t, repo);
    const SIZE = 100_000;
    const send = async (fill: string): Promise<void> => {
      const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 4 + SIZE } }] }));
      const length = Buffer.alloc(4);
      length.writeUInt32LE(SIZE);
      const response = await fetch(`${server.httpUrl}/v2/models/bytes/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
        body: Buffer.concat([header, length, Buffer.alloc(SIZE, fill)]),
      });
      assert.equal(response.status, 200, await response.text());
    };
    const before = receivedRequestPool.counts.reused;
    await send('P');
    await new Promise((resolve) => setTimeout(resolve, 20)); // P's replay is queued on the slow version
    await send('Q'); // a body of the same size: P's memory serves it
    assert.ok(receivedRequestPool.counts.reused > before, 'the memory of the first body was lent again');
    await settledShadow(server.managementPort!, 'bytes');
    assert.deepEqual(replays.map((replay) => replay.fill), ['P', 'Q']);
    for (const replay of replays) {
      const bytes = (replay.inputs[0]!.data as Buffer[])[0]!;
      assert.ok(bytes.every((byte) => byte === replay.fill.charCodeAt(0)), `the replay of '${replay.fill}' reads '${String.fromCharCode(bytes[0]!)}...'`);
    }
  });

  test('TF Serving: JSON bodies in lent memory are given back once parsed, and each request gets its own values back', async (t) => {
    const { server, http, before } = await servedIdentity(t);
    const REQUESTS = 48;
    await eightAtATime(0, REQUESTS, async (seed) => {
      const values = tensorOf(2000 + seed);
      const response = await http.request({
        method: 'POST',
        path: '/v1/models/identity:predict',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ instances: [Array.from(values)] }),
      });
      const text = await response.body.text();
      assert.equal(response.statusCode, 200, text.slice(0, 300));
      const got = Float32Array.from((JSON.parse(text) as { predictions: number[][] }).predictions[0]!);
      assert.ok(Buffer.from(got.buffer).equals(rawOf(values)), `request ${seed} got other values than it sent`);
    });
    const counts = receivedRequestPool.counts;
    assert.ok(counts.returned - before.returned >= REQUESTS, `every parsed body is given back (${counts.returned - before.returned})`);
    assert.ok(counts.reused - before.reused > 0, 'memory was lent again');
  });

  test('nothing is lent for a body still arriving: a declared Content-Length costs only what was sent', async (t) => {
    const repo = await identityWithShadow();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], parameters: { binary_data_size: WIDTH * 4 } }] }));
    const body = Buffer.concat([header, rawOf(tensorOf(5))]);
    const socket = connect(Number(new URL(server.httpUrl).port), '127.0.0.1');
    t.after(() => socket.destroy());
    await once(socket, 'connect');
    const lentBefore = receivedRequestPool.counts.lent;
    socket.write(
      `POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n` +
        `Inference-Header-Content-Length: ${header.length}\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    socket.write(body.subarray(0, 1000));
    // Long enough for the server to have read the headers and the first bytes.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(receivedRequestPool.counts.lent, lentBefore, 'memory lent before the body was complete');
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.write(body.subarray(1000));
    await once(socket, 'end');
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.equal(receivedRequestPool.counts.lent, lentBefore + 1, 'the complete body is in lent memory');
  });

  test('a body the pool would serve is still refused 413 above the body limit, and the connection closed', async (t) => {
    const repo = await identityWithShadow();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo, { bodyLimitBytes: 100_000 });
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], parameters: { binary_data_size: WIDTH * 4 } }] }));
    const response = await fetch(`${server.httpUrl}/v2/models/identity/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, rawOf(tensorOf(1))]),
    });
    const text = await response.text();
    assert.equal(response.status, 413, text);
    assert.match(text, /exceeds the limit of 100000 bytes/);
    assert.equal(response.headers.get('connection'), 'close');
  });
});

/**
 * Graceful shutdown, end to end: `tessera serve` runs as a child process, a load of 2,000
 * requests at concurrency 32 hits a model whose batches take a few milliseconds (so requests
 * queue), and SIGTERM arrives in the middle. Every request the server accepted must be
 * answered 200; later ones are refused (connection refused, or 503 on a connection that was
 * closing); readiness turns 503 at once; audit records of every answered request reach disk;
 * the process exits 0. A second test checks the preStop-style --shutdown-delay-ms; a third,
 * in process, checks that close() drains keep-alive HTTP and gRPC streams with no delay.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { performance } from 'node:perf_hooks';
import { once } from 'node:events';
import { connect } from 'node:net';

import { Client, Pool } from 'undici';

import { GrpcTestClient, type StreamInferResponse } from './support/grpc-client.js';
import { makeTempRepository } from './support/fixtures.js';
import { logMessages, spawnServe, type ServeChild } from './support/hostile-process.js';
import { startTestServer, writeFakeModel } from './support/server.js';

const MODEL = {
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x', add: 1 }],
};

/** What one request ended with. */
interface Outcome {
  readonly id: string;
  readonly sentAt: number;
  readonly doneAt: number;
  readonly status?: number;
  readonly body?: string;
  /** Error code of a request that got no HTTP response (ECONNREFUSED, UND_ERR_SOCKET, ...). */
  readonly error?: string;
  /** The response's Connection header. */
  readonly connection?: string;
}

function errorCode(error: unknown): string {
  const e = error as { code?: string; cause?: { code?: string }; message?: string };
  return e.code ?? e.cause?.code ?? e.message ?? String(error);
}

function inferBody(i: number): string {
  return JSON.stringify({ id: `r${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [i, 1, 2, 3] }] });
}

/** One V2 inference over `dispatcher`; never throws. */
async function infer(dispatcher: Pool | Client, i: number): Promise<Outcome> {
  const sentAt = performance.now();
  try {
    const response = await dispatcher.request({ path: '/v2/models/slow/infer', method: 'POST', headers: { 'content-type': 'application/json' }, body: inferBody(i) });
    const body = await response.body.text();
    const connection = response.headers['connection'];
    return { id: `r${i}`, sentAt, doneAt: performance.now(), status: response.statusCode, body, ...(typeof connection === 'string' ? { connection } : {}) };
  } catch (error) {
    return { id: `r${i}`, sentAt, doneAt: performance.now(), error: errorCode(error) };
  }
}

/** Probe readiness every `everyMs` on fresh connections until stopped. */
function pollReadiness(url: string, everyMs: number): { readonly probes: { sentAt: number; status?: number; error?: string }[]; stop(): Promise<void> } {
  const probes: { sentAt: number; status?: number; error?: string }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const sentAt = performance.now();
      const client = new Client(url);
      try {
        const response = await client.request({ path: '/v2/health/ready', method: 'GET' });
        await response.body.text();
        probes.push({ sentAt, status: response.statusCode });
      } catch (error) {
        probes.push({ sentAt, error: errorCode(error) });
      } finally {
        void client.destroy().catch(() => undefined);
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    probes,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Audit records (request_id, outcome) of every file in `dir`. */
async function auditRecords(dir: string): Promise<{ request_id: string; outcome: string }[]> {
  const records: { request_id: string; outcome: string }[] = [];
  for (const file of (await readdir(dir)).filter((name) => name.endsWith('.jsonl')).sort()) {
    for (const line of (await readFile(path.join(dir, file), 'utf8')).split('\n')) {
      if (line !== '') records.push(JSON.parse(line) as { request_id: string; outcome: string });
    }
  }
  return records;
}

/** A 200's output must be the input plus 1 (the fake model's `add`). */
function assertAnswer(outcome: Outcome): void {
  const parsed = JSON.parse(outcome.body ?? '') as { id?: string; outputs: { data: number[] }[] };
  const i = Number(outcome.id.slice(1));
  assert.equal(parsed.id, outcome.id);
  assert.deepEqual(parsed.outputs[0]!.data, [i + 1, 2, 3, 4], `answer of ${outcome.id}`);
}

describe('graceful shutdown of tessera serve', () => {
  let repo = '';
  const scratch: string[] = [];
  const children: ServeChild[] = [];

  before(async () => {
    repo = await makeTempRepository('tessera-shutdown-');
    // Batches of up to 4 take 4 ms on one instance: at concurrency 32 about 28 requests queue.
    await writeFakeModel(repo, 'slow', 1, { ...MODEL, delay_ms: 4 }, 'max_batch_size: 4\ninstance_group:\n  - count: 1\n');
  });

  after(async () => {
    for (const child of children) child.kill();
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    for (const dir of scratch) await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('SIGTERM under load: accepted requests are answered 200, later ones refused, readiness 503 at once, audit flushed, exit 0', async (t) => {
    const auditDir = await mkdtemp(path.join(tmpdir(), 'tessera-shutdown-audit-'));
    scratch.push(auditDir);
    const server = await spawnServe(repo, {
      args: ['--shutdown-delay-ms', '150', '--audit-dir', auditDir, '--audit-sample-rate', '1', '--management', 'false', '--metrics', 'false'],
    });
    children.push(server);
    const started = performance.now();
    const readiness = pollReadiness(server.httpUrl, 5);
    const pool = new Pool(server.httpUrl, { connections: 32, pipelining: 1 });
    const TOTAL = 2000;
    const CONCURRENCY = 32;
    const SIGTERM_AFTER = 800;
    const outcomes: Outcome[] = [];
    let next = 0;
    let completed = 0;
    let sigtermAt = 0;
    let exitedAt = 0;
    void server.exited.then(() => (exitedAt = performance.now()));
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < TOTAL) {
          const outcome = await infer(pool, next++);
          outcomes.push(outcome);
          if (++completed === SIGTERM_AFTER) {
            sigtermAt = performance.now();
            server.child.kill('SIGTERM');
          }
        }
      }),
    );
    const exit = await server.exited;
    await readiness.stop();
    await pool.destroy().catch(() => undefined);

    assert.deepEqual(exit, { code: 0, signal: null }, server.logs.slice(-20).join('\n'));
    assert.equal(outcomes.length, TOTAL);

    const ok = outcomes.filter((o) => o.status === 200);
    const refused503 = outcomes.filter((o) => o.status === 503);
    const refusedConnection = outcomes.filter((o) => o.status === undefined);
    const otherStatus = outcomes.filter((o) => o.status !== undefined && o.status !== 200 && o.status !== 503);
    const inFlightAtSigterm = outcomes.filter((o) => o.sentAt < sigtermAt && o.doneAt > sigtermAt);
    t.diagnostic(
      `${TOTAL} requests: ${ok.length} answered 200 (${inFlightAtSigterm.length} in flight or queued at SIGTERM, ` +
        `${ok.filter((o) => o.sentAt >= sigtermAt).length} sent after it), ${refused503.length} refused 503, ` +
        `${refusedConnection.length} refused at the connection (${[...new Set(refusedConnection.map((o) => o.error))].join(', ')}); ` +
        `exit ${Math.round(exitedAt - sigtermAt)} ms after SIGTERM (shutdown delay 150 ms); run ${Math.round(performance.now() - started)} ms`,
    );

    assert.deepEqual(otherStatus.map((o) => `${o.id}: ${o.status} ${o.body}`), [], 'no status other than 200 and 503');
    for (const outcome of ok) assertAnswer(outcome);
    // Everything sent before SIGTERM was accepted, so it must have been answered 200 — the
    // requests in flight and queued when the signal came included.
    assert.deepEqual(
      outcomes.filter((o) => o.sentAt < sigtermAt && o.status !== 200).map((o) => `${o.id}: ${o.status ?? o.error}`),
      [],
      'every request sent before SIGTERM was answered 200',
    );
    assert.ok(inFlightAtSigterm.length >= 16, `requests were in flight at SIGTERM (${inFlightAtSigterm.length})`);
    for (const refusal of refused503) assert.match(refusal.body ?? '', /Service Unavailable|shutting down/, `a shutdown refusal: ${refusal.body}`);
    assert.ok(ok.length > SIGTERM_AFTER, 'requests were still served during the shutdown delay');
    assert.ok(refused503.length + refusedConnection.length > 0, 'requests after the listeners closed were refused');
    assert.ok(ok.length + refused503.length + refusedConnection.length === TOTAL);

    // Readiness: 200 before the signal, never 200 from right after it, 503 while still listening.
    const probesAfter = readiness.probes.filter((p) => p.sentAt >= sigtermAt + 20);
    assert.ok(readiness.probes.some((p) => p.sentAt < sigtermAt && p.status === 200), 'ready before SIGTERM');
    assert.deepEqual(probesAfter.filter((p) => p.status === 200), [], 'never ready again after SIGTERM');
    // The first probe after the signal (the poller runs every 5 ms, later when this process is busy) says 503.
    const firstAfter = probesAfter[0];
    const timeline = readiness.probes.filter((p) => Math.abs(p.sentAt - sigtermAt) < 200).map((p) => `${Math.round(p.sentAt - sigtermAt)} ms: ${p.status ?? p.error}`);
    assert.equal(firstAfter?.status, 503, `readiness right after SIGTERM: ${timeline.join(', ')}`);
    assert.ok(firstAfter.sentAt - sigtermAt < 150, `probed within the shutdown delay: ${timeline.join(', ')}`);

    // Audit records are flushed before exit: exactly the requests answered 200 were recorded as successes.
    const records = await auditRecords(auditDir);
    const successes = new Set(records.filter((r) => r.outcome === 'success').map((r) => r.request_id));
    assert.deepEqual([...successes].sort(), ok.map((o) => o.id).sort(), 'audit successes = 200 answers');
    const answered = new Set([...ok, ...refused503].map((o) => o.id));
    assert.deepEqual(records.filter((r) => !answered.has(r.request_id)).map((r) => `${r.request_id} ${r.outcome}`), [], 'no request the engine answered was lost on the way back');

    const messages = logMessages(server.logs).map((m) => m.msg);
    const order = ['signal received', 'shutting down: not ready; serving until the shutdown delay ends', 'shutting down: closing listeners, draining requests', 'stopped'];
    const positions = order.map((msg) => messages.indexOf(msg));
    assert.ok(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1]!)), `shutdown log lines in order: ${JSON.stringify(positions)}`);
  });

  test('--shutdown-delay-ms: after SIGTERM new connections are still served while readiness says 503; listeners close after the delay; exit 0', async (t) => {
    const DELAY = 1500;
    const server = await spawnServe(repo, { args: ['--shutdown-delay-ms', String(DELAY), '--management', 'false', '--metrics', 'false', '--grpc', 'false'] });
    children.push(server);
    const readiness = pollReadiness(server.httpUrl, 20);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sigtermAt = performance.now();
    server.child.kill('SIGTERM');
    const outcomes: Outcome[] = [];
    let exited = false;
    void server.exited.then(() => (exited = true));
    // One request at a time, each on a new connection: the listener must still accept them.
    for (let i = 0; !exited; i++) {
      const client = new Client(server.httpUrl);
      outcomes.push(await infer(client, i));
      await client.destroy().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const exit = await server.exited;
    const exitedAt = performance.now();
    await readiness.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, server.logs.slice(-20).join('\n'));

    const served = outcomes.filter((o) => o.status === 200);
    const firstRefusal = outcomes.find((o) => o.status !== 200);
    const lastServed = served.at(-1);
    t.diagnostic(
      `${served.length} requests on new connections served after SIGTERM, the last sent ${Math.round((lastServed?.sentAt ?? sigtermAt) - sigtermAt)} ms after it; ` +
        `first refusal (${firstRefusal?.error ?? firstRefusal?.status}) at ${Math.round((firstRefusal?.sentAt ?? NaN) - sigtermAt)} ms; exit at ${Math.round(exitedAt - sigtermAt)} ms`,
    );
    // Served throughout the delay (allowing for the time the child takes to act on the signal) ...
    assert.deepEqual(
      outcomes.filter((o) => o.sentAt - sigtermAt < DELAY - 200 && o.status !== 200).map((o) => `${Math.round(o.sentAt - sigtermAt)} ms: ${o.status ?? o.error}`),
      [],
      'every request during the delay was served',
    );
    assert.ok(served.length >= 20, `served during the delay (${served.length})`);
    // Keep-alive clients are told to reconnect (through the load balancer, elsewhere).
    assert.deepEqual([...new Set(served.filter((o) => o.sentAt - sigtermAt > 50).map((o) => o.connection))], ['close'], 'Connection: close during the delay');
    // ... and refused only after it.
    assert.ok(firstRefusal !== undefined && firstRefusal.sentAt - sigtermAt >= DELAY - 50, 'the listener closed only after the delay');
    assert.ok(exitedAt - sigtermAt >= DELAY, 'the process outlived the delay');
    const during = readiness.probes.filter((p) => p.sentAt >= sigtermAt + 20 && p.sentAt < sigtermAt + DELAY - 100);
    assert.ok(during.length >= 10, `readiness was probed during the delay (${during.length})`);
    assert.deepEqual(during.filter((p) => p.status !== 503).map((p) => p.status ?? p.error), [], 'readiness 503 throughout the delay');
  });

  test('close() without a delay drains queued requests of keep-alive HTTP connections, unary gRPC calls and gRPC streams', async (t) => {
    const inProcessRepo = await makeTempRepository('tessera-drain-');
    scratch.push(inProcessRepo);
    // One request per batch, 25 ms each: 20 requests queue for half a second.
    await writeFakeModel(inProcessRepo, 'slow', 1, { ...MODEL, delay_ms: 25 }, 'max_batch_size: 4\ndynamic_batching: false\n');
    // The scheduler holds the first batch until all 20 requests are queued (Triton's delay-scheduler hook).
    const server = await startTestServer(undefined, inProcessRepo, { grpc: true, management: false, metrics: false, delaySchedulerUntil: 20 });
    t.after(() => server.close());
    const pool = new Pool(server.httpUrl, { connections: 12, pipelining: 1 });
    const grpc = new GrpcTestClient(server.grpcPort!);
    t.after(() => grpc.close());
    const http = Array.from({ length: 12 }, (_, i) => infer(pool, i));
    const message = (i: number): object => ({ model_name: 'slow', id: `g${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [i, 1, 2, 3] } }] });
    const unary = Array.from({ length: 4 }, (_, i) => grpc.call<{ id: string }>('ModelInfer', message(100 + i)));
    const stream = grpc.stream();
    const streamAnswers: StreamInferResponse[] = [];
    const streamEnded = new Promise<string>((resolve) => {
      stream.on('data', (answer: StreamInferResponse) => streamAnswers.push(answer));
      stream.on('status', (status: { code: number }) => resolve(`status ${status.code}`));
      stream.on('error', (error: Error) => resolve(`error ${error.message}`));
    });
    for (let i = 0; i < 4; i++) stream.write(message(200 + i));
    // Close once all 20 requests have reached the engine: one runs, the others queue behind it.
    const version = (): { queueDepth: number; inFlight: number } => server.engine.describeModels('slow')[0]!.versions[0]!;
    for (let waited = 0; version().queueDepth + version().inFlight < 20 && waited < 2000; waited += 2) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const queued = version().queueDepth;
    const closing = server.close();
    assert.equal(server.engine.isReady(), false, 'not ready as soon as close() starts');
    const answers = await Promise.all(http);
    const unaryAnswers = await Promise.all(unary);
    const streamStatus = await streamEnded;
    await closing;
    t.diagnostic(`${queued} requests queued when close() started`);
    assert.ok(queued >= 18, `requests were queued (${queued})`);
    assert.deepEqual(answers.map((a) => a.status ?? a.error), new Array<number>(12).fill(200));
    answers.forEach(assertAnswer);
    assert.deepEqual(unaryAnswers.map((a) => a.id), ['g100', 'g101', 'g102', 'g103']);
    // The client never half-closed: the server ended the stream, so the status says so (a
    // request still on its way would not have been answered), after answering every request it read.
    assert.match(streamStatus, /^error 14 UNAVAILABLE: the server is shutting down/, 'the stream ended UNAVAILABLE once its requests were answered');
    assert.deepEqual(streamAnswers.map((a) => [a.infer_response?.id, a.error_message]).sort(), [['g200', ''], ['g201', ''], ['g202', ''], ['g203', '']]);
    // Closed: connections are refused.
    const late = await infer(new Client(server.httpUrl), 999);
    assert.equal(late.error, 'ECONNREFUSED');
    await pool.destroy().catch(() => undefined);
  });

  test('requests a client pipelined on one connection are all answered when close() starts, the last with Connection: close', async (t) => {
    const inProcessRepo = await makeTempRepository('tessera-drain-pipelined-');
    scratch.push(inProcessRepo);
    await writeFakeModel(inProcessRepo, 'slow', 1, { ...MODEL, delay_ms: 100 }, 'max_batch_size: 4\ndynamic_batching: false\n');
    const server = await startTestServer(undefined, inProcessRepo, { grpc: false, management: false, metrics: false });
    const socket = connect(server.httpPort, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
    socket.on('error', () => undefined);
    const socketClosed = once(socket, 'close');
    const request = (i: number): string => {
      const body = inferBody(i);
      return `POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    };
    // Three requests in one write: the server reads all three while the first runs.
    socket.write(request(1) + request(2) + request(3));
    await new Promise((resolve) => setTimeout(resolve, 30));
    await Promise.all([server.close(), socketClosed]);
    const heads = [...received.matchAll(/HTTP\/1\.1 [^\r]*\r\n(?:[^\r]+\r\n)*\r\n/g)].map((match) => match[0]);
    assert.deepEqual(heads.map((head) => head.split('\r\n')[0]), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'], received);
    for (const i of [1, 2, 3]) assert.match(received, new RegExp(`"id":"r${i}"`), `request r${i} was answered`);
    assert.deepEqual(heads.map((head) => /^connection: (.*)$/im.exec(head)?.[1]), ['keep-alive', 'keep-alive', 'close'], 'only the last answer closes the connection');
  });

  test('a client that never finishes its request does not hold shutdown beyond the grace period', async (t) => {
    const inProcessRepo = await makeTempRepository('tessera-drain-slow-');
    scratch.push(inProcessRepo);
    await writeFakeModel(inProcessRepo, 'slow', 1, MODEL);
    // No request timeout: only the grace period can end this connection.
    const server = await startTestServer(undefined, inProcessRepo, { grpc: false, management: false, metrics: false, requestTimeoutMs: 0, shutdownGraceMs: 300 });
    const socket = connect(server.httpPort, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"inputs":');
    const socketClosed = once(socket, 'close');
    socket.on('error', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    await server.close();
    await socketClosed;
    const took = performance.now() - started;
    t.diagnostic(`close() took ${Math.round(took)} ms with a stalled upload open (grace 300 ms)`);
    assert.ok(took >= 280 && took < 2000, `close() waited for the grace period, then closed the connection (${Math.round(took)} ms)`);
  });
});

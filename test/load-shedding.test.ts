/**
 * Load shedding beyond the bounded queues: while event-loop delay or memory is above its
 * configured limit, new requests are refused at the door — 503 OVERLOADED + Retry-After over
 * HTTP (in each protocol's error shape, before the body is read), UNAVAILABLE over gRPC —
 * health checks still answer, and tessera_shed_requests_total{reason} counts the refusals.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import type { ServiceError } from '@grpc/grpc-js';

import { resolveServerConfig } from '../src/cli/config-sources.js';
import { LoadShedder, SHED_REASONS, type LoadSample } from '../src/security/load-shedding.js';
import { isHealthCheck } from '../src/security/load-shedding-http.js';
import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { GrpcTestClient } from './support/grpc-client.js';
import { startTestServer, writeFakeModel } from './support/server.js';

const MODEL = {
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }],
};
const BODY = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
const GRPC_REQUEST = { model_name: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [1, 2, 3, 4] } }] };

/** A probe that returns whatever the test sets. */
function fakeProbe(initial: LoadSample): { sample: LoadSample; probe: { sample(): LoadSample; close(): void } } {
  const state = { sample: initial, probe: { sample: () => state.sample, close: () => undefined } };
  return state;
}

async function post(url: string, body = BODY, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; retryAfter: string | null; text: string }> {
  const response = await fetch(url, { method: 'POST', body, headers });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), text: await response.text() };
}

async function metricValue(server: TesseraServer, line: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const match = text.split('\n').find((l) => line.test(l));
  return match === undefined ? Number.NaN : Number(match.split(' ').at(-1));
}

describe('LoadShedder', () => {
  test('is off, and checks nothing, when no limit is set', () => {
    const shedder = new LoadShedder({ maxEventLoopDelayMs: 0, maxRssBytes: 0, maxHeapUsedBytes: 0, sampleIntervalMs: 100, retryAfterSeconds: 1 });
    assert.equal(shedder.enabled, false);
    assert.equal(shedder.sampleNow(), undefined);
    assert.equal(shedder.check(), undefined);
    shedder.close();
  });

  test('sheds while a sample is above a limit, by reason, and stops when it is not', () => {
    const fake = fakeProbe({ eventLoopDelayMs: 5, rssBytes: 100, heapUsedBytes: 10 });
    const changes: (string | undefined)[] = [];
    const shedder = new LoadShedder({
      maxEventLoopDelayMs: 50,
      maxRssBytes: 1000,
      maxHeapUsedBytes: 500,
      sampleIntervalMs: 60_000,
      retryAfterSeconds: 3,
      probe: fake.probe,
      onChange: (reason) => changes.push(reason),
    });
    assert.equal(shedder.enabled, true);
    shedder.sampleNow();
    assert.equal(shedder.check(), undefined, 'below every limit');
    fake.sample = { eventLoopDelayMs: 80, rssBytes: 100, heapUsedBytes: 10 };
    shedder.sampleNow();
    const refusal = shedder.check();
    assert.equal(refusal?.code, 'OVERLOADED');
    assert.equal(refusal?.category, 'unavailable');
    assert.equal(refusal?.retryAfterSeconds, 3);
    assert.match(refusal?.message ?? '', /event-loop delay 80 ms > limit 50 ms/);
    // Memory outranks delay when both are over.
    fake.sample = { eventLoopDelayMs: 80, rssBytes: 2 * 1048576, heapUsedBytes: 10 };
    shedder.sampleNow();
    assert.match(shedder.check()?.message ?? '', /resident memory 2 MiB > limit 0 MiB/);
    fake.sample = { eventLoopDelayMs: 1, rssBytes: 100, heapUsedBytes: 501 };
    shedder.sampleNow();
    assert.match(shedder.check()?.message ?? '', /V8 heap in use/);
    fake.sample = { eventLoopDelayMs: 1, rssBytes: 100, heapUsedBytes: 10 };
    shedder.sampleNow();
    assert.equal(shedder.check(), undefined);
    assert.deepEqual(shedder.stats().shed, { event_loop_delay: 1, rss: 1, heap_used: 1 });
    assert.deepEqual(changes, ['event_loop_delay', 'rss', 'heap_used', undefined]);
    assert.deepEqual([...SHED_REASONS].sort(), Object.keys(shedder.stats().shed).sort());
    shedder.close();
  });

  test('the heap limit judges live objects: garbage made since the last mark-compact is not load', async () => {
    // A child with room for garbage in its old generation (as the server's headroom leaves):
    // objects that outlive two scavenges and then die, then as many kept alive.
    const script = `
      const { getHeapStatistics } = require('node:v8');
      (async () => {
        const { processProbe, LoadShedder } = await import(${JSON.stringify(new URL('../src/security/load-shedding.ts', import.meta.url).pathname)});
        const probe = processProbe(true);
        const shedder = new LoadShedder({ maxEventLoopDelayMs: 0, maxRssBytes: 0, maxHeapUsedBytes: 40 * 1048576, sampleIntervalMs: 60000, retryAfterSeconds: 1, probe });
        const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
        const objects = () => Array.from({ length: 16384 }, (_, j) => ({ j }));
        globalThis.gc();
        await settle();
        let doomed = [];
        for (let i = 0; i < 120; i++) doomed.push(objects());
        await settle();
        doomed = null;
        await settle();
        const used = getHeapStatistics().used_heap_size;
        const garbage = shedder.sampleNow().heapUsedBytes;
        const shedOnGarbage = shedder.check() !== undefined;
        const kept = [];
        for (let i = 0; i < 120; i++) kept.push(objects());
        globalThis.gc();
        await settle();
        const live = shedder.sampleNow().heapUsedBytes;
        const shedOnLive = shedder.check() !== undefined;
        console.log(JSON.stringify({ used, garbage, shedOnGarbage, live, shedOnLive, kept: kept.length }));
        shedder.close();
      })();`;
    const { execFile } = await import('node:child_process');
    const output = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', '--expose-gc', '--initial-old-space-size=1024', '-e', script], { timeout: 60_000 }, (error, stdout, stderr) =>
        error === null ? resolve(stdout) : reject(new Error(`${error.message}\n${stderr}`)),
      ),
    );
    const result = JSON.parse(output.trim().split('\n').at(-1)!) as { used: number; garbage: number; shedOnGarbage: boolean; live: number; shedOnLive: boolean };
    const mib = 1048576;
    assert.ok(result.used > 60 * mib, `the garbage is in the heap: ${result.used} bytes in use`);
    assert.ok(result.garbage < 30 * mib, `garbage is not counted: ${result.garbage} bytes judged of ${result.used} in use`);
    assert.equal(result.shedOnGarbage, false, 'no shedding for garbage');
    assert.ok(result.live > 60 * mib, `live objects are counted after a mark-compact: ${result.live} bytes`);
    assert.equal(result.shedOnLive, true, 'shedding for live objects over the limit');
  });

  test('health endpoints are exempt, everything else is not', () => {
    const extra = new Set(['/healthz']);
    for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/health/ready?x=1', '/ping', '/metrics', '/healthz', '/v2/models/m/ready', '/v2/models/m/versions/2/ready']) {
      assert.equal(isHealthCheck('GET', path, extra), true, path);
    }
    assert.equal(isHealthCheck('HEAD', '/ping', extra), true);
    for (const [method, path] of [['POST', '/v2/health/ready'], ['GET', '/v2/models/m'], ['POST', '/v2/models/m/infer'], ['GET', '/v2/models/ready/infer'], ['POST', '/predictions/m']] as const) {
      assert.equal(isHealthCheck(method, path, extra), false, `${method} ${path}`);
    }
  });

  test('configuration: flags and TESSERA_* variables, off by default', () => {
    const defaults = resolveServerConfig({}, {});
    assert.deepEqual(
      [defaults.shedEventLoopDelayMs, defaults.shedMaxRssBytes, defaults.shedMaxHeapUsedBytes, defaults.shedSampleIntervalMs, defaults.shutdownDelayMs, defaults.requestTimeoutMs],
      [0, 0, 0, 500, 0, 60_000],
    );
    const set = resolveServerConfig(
      { shedEventLoopDelayMs: '200', shutdownDelayMs: '5000', requestTimeoutMs: '30000' },
      { TESSERA_SHED_MAX_RSS_BYTES: '1073741824', TESSERA_SHED_SAMPLE_INTERVAL_MS: '250' },
    );
    assert.deepEqual([set.shedEventLoopDelayMs, set.shedMaxRssBytes, set.shedSampleIntervalMs, set.shutdownDelayMs, set.requestTimeoutMs], [200, 1073741824, 250, 5000, 30000]);
    assert.throws(() => resolveServerConfig({ shedSampleIntervalMs: '1' }, {}), /shedSampleIntervalMs/);
  });
});

describe('load shedding in the server', () => {
  let repo = '';

  before(async () => {
    repo = await makeTempRepository('tessera-shed-');
    await writeFakeModel(repo, 'm', 1, MODEL);
  });

  after(async () => {
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('over the memory limit: 503 OVERLOADED + Retry-After on every protocol before the body is read; health answers; counted by reason', async (t) => {
    const server = await startTestServer(t, repo, { shedMaxRssBytes: 1024 * 1024, shedSampleIntervalMs: 20, retryAfterSeconds: 2 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const v2 = await post(`${server.httpUrl}/v2/models/m/infer`);
    assert.equal(v2.status, 503, v2.text);
    assert.equal(v2.retryAfter, '2');
    assert.match(JSON.parse(v2.text).error, /^the server is overloaded \(resident memory \d+ MiB > limit 1 MiB\) and sheds new requests; retry after 2 s$/);
    // TorchServe's error shape, from its route's own error handler.
    const torch = await post(`${server.httpUrl}/predictions/m`, '[[1,2,3,4]]');
    assert.equal(torch.status, 503);
    assert.deepEqual(Object.keys(JSON.parse(torch.text)).sort(), ['code', 'message', 'type']);
    // Refused before the body is read: a body over the limit still gets 503, not 413.
    const big = await post(`${server.httpUrl}/v2/models/m/infer`, ' '.repeat(70 * 1024 * 1024));
    assert.equal(big.status, 503);
    // Metadata is work too; health and readiness are not.
    assert.equal((await fetch(`${server.httpUrl}/v2/models/m`)).status, 503);
    for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/models/m/ready', '/ping']) {
      assert.equal((await fetch(`${server.httpUrl}${path}`)).status, 200, path);
    }
    // gRPC: UNAVAILABLE with the code and retry delay in trailing metadata; health rpcs answer.
    const grpc = new GrpcTestClient(server.grpcPort!);
    t.after(() => grpc.close());
    const error = await grpc.call('ModelInfer', GRPC_REQUEST).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    assert.equal(error?.code, 14);
    assert.deepEqual(error?.metadata.get('tessera-error-code'), ['OVERLOADED']);
    assert.deepEqual(error?.metadata.get('retry-after'), ['2']);
    assert.deepEqual(await grpc.call('ServerReady'), { ready: true });
    assert.equal((await grpc.healthCheck()).status, 'SERVING');
    const stream = grpc.stream();
    const answer = await new Promise<{ error_message: string }>((resolve) => {
      stream.once('data', resolve);
      stream.write({ ...GRPC_REQUEST, id: 's1' });
    });
    stream.end();
    assert.match(answer.error_message, /overloaded/);
    const shed = await metricValue(server, /^tessera_shed_requests_total\{reason="rss"\}/);
    t.diagnostic(`tessera_shed_requests_total{reason="rss"} ${shed}`);
    assert.equal(shed, 6, 'v2, torchserve, big body, metadata, gRPC unary, gRPC stream');
    assert.equal(await metricValue(server, /^tessera_shed_requests_total\{reason="event_loop_delay"\}/), 0);
    assert.equal(await metricValue(server, /^tessera_load_shedding\{reason="rss"\}/), 1);
  });

  test('event-loop delay: a blocked loop sheds the next window, then service resumes', async (t) => {
    const server = await startTestServer(t, repo, { shedEventLoopDelayMs: 200, shedSampleIntervalMs: 400, grpc: false });
    // Not shedding while the loop is free (start-up work in this process may lag one window).
    let before = 0;
    for (let waited = 0; before !== 200 && waited < 3000; waited += 100) {
      before = (await post(`${server.httpUrl}/v2/models/m/infer`)).status;
      if (before !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(before, 200, 'not shedding while the loop is free');
    // The server runs in this process: block its event loop for 600 ms.
    const until = performance.now() + 600;
    while (performance.now() < until) {
      // busy
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    const during = await post(`${server.httpUrl}/v2/models/m/infer`);
    assert.equal(during.status, 503, during.text);
    assert.match(JSON.parse(during.text).error, /event-loop delay \d+ ms > limit 200 ms/);
    assert.equal((await fetch(`${server.httpUrl}/v2/health/ready`)).status, 200);
    // The next window is quiet: served again.
    let status = 503;
    for (let waited = 0; status === 503 && waited < 3000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = (await post(`${server.httpUrl}/v2/models/m/infer`)).status;
    }
    assert.equal(status, 200, 'served again once the delay is gone');
    assert.ok((await metricValue(server, /^tessera_shed_requests_total\{reason="event_loop_delay"\}/)) >= 1);
  });

  test('off by default: nothing is shed and no shedding metrics are registered', async (t) => {
    const server = await startTestServer(t, repo, { grpc: false });
    assert.equal((await post(`${server.httpUrl}/v2/models/m/infer`)).status, 200);
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    assert.doesNotMatch(text, /tessera_shed_requests_total/);
  });
});

/**
 * OpenTelemetry tracing on a real server: the span tree of a request (tessera.infer with
 * tessera.queue and tessera.compute children), attributes, propagation of the caller's
 * traceparent, the response traceparent, errors, batching, the OTLP/HTTP exporter, and no
 * subscription at all when tracing is off.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';

import { SpanKind, SpanStatusCode, type HrTime } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';

import { channels } from '../src/core/events.js';
import type { InferenceRequest } from '../src/core/inference.js';
import {
  ATTR,
  SPAN_COMPUTE,
  SPAN_INFER,
  SPAN_QUEUE,
  TracingService,
  createTracing,
  formatTraceparent,
  parseTraceparent,
  tracingConfigSchema,
} from '../src/observability/tracing/index.js';
import type { TesseraServer } from '../src/server/server.js';
import { identityModel, makeTempRepository, writeModel } from './support/fixtures.js';
import { startTestServer } from './support/server.js';

const ms = (t: HrTime): number => t[0] * 1000 + t[1] / 1e6;

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';

function identityRequest(rows: number, extra: Partial<InferenceRequest> = {}): InferenceRequest {
  return {
    model: 'ident',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 4], data: new Float32Array(rows * 4).fill(1) }],
    protocol: 'internal',
    ...extra,
  };
}

/** The spans of one trace: the server span and its children by name. */
function tree(spans: readonly ReadableSpan[], traceId?: string): { infer: ReadableSpan; queue?: ReadableSpan; compute?: ReadableSpan } {
  const inTrace = traceId === undefined ? spans : spans.filter((s) => s.spanContext().traceId === traceId);
  const infer = inTrace.filter((s) => s.name === SPAN_INFER);
  assert.equal(infer.length, 1, `one ${SPAN_INFER} span in ${inTrace.map((s) => s.name).join(', ')}`);
  const root = infer[0]!;
  const children = inTrace.filter((s) => s.parentSpanContext?.spanId === root.spanContext().spanId);
  return { infer: root, queue: children.find((s) => s.name === SPAN_QUEUE), compute: children.find((s) => s.name === SPAN_COMPUTE) };
}

describe('traceparent', () => {
  test('parse and format W3C traceparent values', () => {
    const parsed = parseTraceparent(`00-${TRACE_ID}-${PARENT_SPAN_ID}-01`);
    assert.deepEqual(parsed, { traceId: TRACE_ID, spanId: PARENT_SPAN_ID, traceFlags: 1, isRemote: true });
    assert.equal(formatTraceparent(parsed!), `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`);
    assert.equal(parseTraceparent(` 00-${TRACE_ID}-${PARENT_SPAN_ID}-00 `)?.traceFlags, 0);
    // Later versions may carry more fields.
    assert.equal(parseTraceparent(`01-${TRACE_ID}-${PARENT_SPAN_ID}-01-extra`)?.traceId, TRACE_ID);
    for (const bad of [
      undefined,
      '',
      'garbage',
      `00-${TRACE_ID}-${PARENT_SPAN_ID}-01-extra`,
      `ff-${TRACE_ID}-${PARENT_SPAN_ID}-01`,
      `00-${'0'.repeat(32)}-${PARENT_SPAN_ID}-01`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
      `00-${TRACE_ID.toUpperCase()}-${PARENT_SPAN_ID}-01`,
    ]) {
      assert.equal(parseTraceparent(bad), undefined, String(bad));
    }
  });

  test('tracing is off by default: no service and no subscription', () => {
    assert.equal(tracingConfigSchema.parse({}).enabled, false);
    assert.equal(createTracing({}), undefined);
    assert.equal(createTracing({ enabled: false, exporter: new InMemorySpanExporter() }), undefined);
    assert.equal(channels.requestEnd.hasSubscribers, false);
    assert.equal(channels.requestScheduled.hasSubscribers, false);
  });
});

describe('tracing a served model', () => {
  let repo: string;
  let server: TesseraServer;
  let exporter: InMemorySpanExporter;
  let tracing: TracingService;

  before(async () => {
    repo = await makeTempRepository();
    await writeModel(repo, 'ident', 1, identityModel('FP32', [-1, 4]), { 'config.yaml': 'max_batch_size: 16\n' });
    server = await startTestServer(undefined, repo);
    exporter = new InMemorySpanExporter();
    tracing = createTracing({ enabled: true, exporter, processor: 'simple', serviceName: 'tessera-test' })!;
    assert.ok(tracing instanceof TracingService);
    assert.equal(channels.requestEnd.hasSubscribers, true);
  });

  after(async () => {
    await tracing.close();
    await server.close();
  });

  test('an HTTP request yields tessera.infer with queue and compute children, attributes and times', async () => {
    exporter.reset();
    const before = Date.now();
    const response = await fetch(`${server.httpUrl}/v2/models/ident/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'req-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 4], data: new Array(12).fill(2) }] }),
    });
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 3, spans.map((s) => s.name).join(', '));
    const { infer, queue, compute } = tree(spans);
    assert.ok(queue !== undefined && compute !== undefined);
    assert.equal(infer.kind, SpanKind.SERVER);
    assert.equal(infer.parentSpanContext, undefined, 'a new trace: no parent');
    assert.equal(queue.kind, SpanKind.INTERNAL);
    for (const child of [queue, compute]) {
      assert.equal(child.spanContext().traceId, infer.spanContext().traceId);
      assert.equal(child.parentSpanContext?.spanId, infer.spanContext().spanId);
    }
    assert.deepEqual(infer.attributes, {
      [ATTR.model]: 'ident',
      [ATTR.version]: '1',
      [ATTR.protocol]: 'v2-http',
      [ATTR.outcome]: 'success',
      [ATTR.requestId]: 'req-1',
    });
    assert.equal(compute.attributes[ATTR.batchSize], 3);
    assert.equal(compute.attributes[ATTR.model], 'ident');
    assert.equal(infer.status.code, SpanStatusCode.UNSET);
    assert.equal(infer.resource.attributes['service.name'], 'tessera-test');
    // Times: children inside the server span, queue then compute.
    const [s, e] = [ms(infer.startTime), ms(infer.endTime)];
    assert.ok(s >= before - 2 && e <= Date.now() + 2, `${s}..${e}`);
    assert.ok(ms(queue.startTime) >= s && ms(queue.endTime) <= ms(compute.startTime) + 1e-6);
    assert.ok(ms(compute.endTime) <= e + 1e-6 && ms(compute.endTime) >= ms(compute.startTime));
  });

  test("the caller's traceparent is the parent: the trace id propagates; the response traceparent names the server span", async () => {
    exporter.reset();
    const request = identityRequest(2, { id: 'prop', traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` });
    await server.engine.infer(request);
    const { infer, queue, compute } = tree(exporter.getFinishedSpans(), TRACE_ID);
    assert.equal(infer.spanContext().traceId, TRACE_ID);
    assert.equal(infer.parentSpanContext?.spanId, PARENT_SPAN_ID);
    assert.equal(infer.parentSpanContext?.isRemote, true);
    assert.equal(queue?.spanContext().traceId, TRACE_ID);
    assert.equal(compute?.spanContext().traceId, TRACE_ID);
    assert.equal(tracing.traceparentFor(request), `00-${TRACE_ID}-${infer.spanContext().spanId}-01`);
    assert.equal(tracing.traceIdFor(request), TRACE_ID);
    assert.equal(tracing.traceparentFor(identityRequest(1)), undefined, 'unknown request');
  });

  test('over HTTP, the traceparent header propagates the same way (the adapter copies it into the request)', async () => {
    exporter.reset();
    const response = await fetch(`${server.httpUrl}/v2/models/ident/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
    });
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    const { infer, compute } = tree(exporter.getFinishedSpans(), TRACE_ID);
    assert.equal(infer.parentSpanContext?.spanId, PARENT_SPAN_ID);
    assert.equal(infer.attributes[ATTR.protocol], 'v2-http');
    assert.equal(compute?.attributes[ATTR.batchSize], 1);
  });

  test('a caller that did not sample: nothing exported, the trace id still answered', async () => {
    exporter.reset();
    const request = identityRequest(1, { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-00` });
    await server.engine.infer(request);
    assert.equal(exporter.getFinishedSpans().length, 0);
    const answer = parseTraceparent(tracing.traceparentFor(request));
    assert.equal(answer?.traceId, TRACE_ID);
    assert.equal(answer?.traceFlags, 0);
  });

  test('an invalid traceparent starts a new trace', async () => {
    exporter.reset();
    const request = identityRequest(1, { traceparent: 'not-a-traceparent' });
    await server.engine.infer(request);
    const { infer } = tree(exporter.getFinishedSpans());
    assert.equal(infer.parentSpanContext, undefined);
    assert.notEqual(infer.spanContext().traceId, TRACE_ID);
    assert.equal(tracing.traceparentFor(request), formatTraceparent(infer.spanContext()));
  });

  test('a failed request: an error server span with the error code, no children', async () => {
    exporter.reset();
    const request = identityRequest(1, { model: 'missing', id: 'lost' });
    await assert.rejects(server.engine.infer(request), /not in the repository/);
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 1);
    const infer = spans[0]!;
    assert.equal(infer.name, SPAN_INFER);
    assert.deepEqual(infer.status, { code: SpanStatusCode.ERROR, message: 'MODEL_NOT_FOUND' });
    assert.equal(infer.attributes[ATTR.outcome], 'MODEL_NOT_FOUND');
    assert.equal(infer.attributes[ATTR.version], undefined);
    assert.ok(tracing.traceparentFor(request) !== undefined, 'failed requests get a traceparent too');
  });
});

describe('tracing batched requests', () => {
  test('requests batched together have compute spans with the batch size and the same interval', async (t) => {
    const repo = await makeTempRepository();
    await writeModel(repo, 'ident', 1, identityModel('FP32', [-1, 4]), { 'config.yaml': 'max_batch_size: 16\nwarmup:\n  enabled: false\n' });
    const server = await startTestServer(t, repo, { delaySchedulerUntil: 2 });
    const exporter = new InMemorySpanExporter();
    const tracing = createTracing({ enabled: true, exporter, processor: 'simple' })!;
    t.after(() => tracing.close());
    const first = identityRequest(2, { traceparent: `00-${'1'.repeat(32)}-${PARENT_SPAN_ID}-01` });
    const second = identityRequest(3, { traceparent: `00-${'2'.repeat(32)}-${PARENT_SPAN_ID}-01` });
    await Promise.all([server.engine.infer(first), server.engine.infer(second)]);
    const spans = exporter.getFinishedSpans();
    const a = tree(spans, '1'.repeat(32));
    const b = tree(spans, '2'.repeat(32));
    assert.equal(a.compute?.attributes[ATTR.batchSize], 5);
    assert.equal(b.compute?.attributes[ATTR.batchSize], 5);
    assert.ok(Math.abs(ms(a.compute!.endTime) - ms(b.compute!.endTime)) < 1);
  });
});

describe('OTLP/HTTP export', () => {
  test('spans reach an OTLP/HTTP endpoint', async (t) => {
    const received: { url: string | undefined; contentType: string | undefined; apiKey: string | string[] | undefined; body: Buffer }[] = [];
    const collector = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ url: req.url, contentType: req.headers['content-type'], apiKey: req.headers['x-api-key'], body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => collector.close(() => resolve())));
    const port = (collector.address() as AddressInfo).port;

    const repo = await makeTempRepository();
    await writeModel(repo, 'ident', 1, identityModel('FP32', [-1, 4]), { 'config.yaml': 'max_batch_size: 16\n' });
    const server = await startTestServer(t, repo);
    const tracing = createTracing({ enabled: true, endpoint: `http://127.0.0.1:${port}/v1/traces`, headers: { 'x-api-key': 'k' } })!;
    await server.engine.infer(identityRequest(1, { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` }));
    await tracing.forceFlush();
    await tracing.close();
    assert.ok(received.length >= 1, 'the collector got an export');
    assert.equal(received[0]!.url, '/v1/traces');
    assert.deepEqual(received.map((r) => r.apiKey), received.map(() => 'k'), 'every export carries the configured headers');
    const all = Buffer.concat(received.map((r) => r.body));
    // OTLP carries trace ids as bytes (protobuf) or hex (JSON): look for either.
    assert.ok(all.includes(Buffer.from(TRACE_ID, 'hex')) || all.includes(TRACE_ID), 'the trace id was exported');
    assert.ok(all.includes('tessera.infer'));
  });
});

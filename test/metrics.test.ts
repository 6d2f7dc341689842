import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';
import { channels, publish } from '../src/core/events.js';
import { MetricsExporter } from '../src/observability/metrics.js';
import { makeTempRepository, mlpModel, writeModel } from './support/fixtures.js';
import { postJson, startTestServer } from './support/server.js';
import { samples } from './support/prometheus.js';

const row = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] };

test('after known traffic, /metrics has exact counts with bounded label sets', async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'mlp', 1, mlpModel(), { 'config.yaml': 'max_batch_size: 4\n' });
  const server = await startTestServer(t, repo, { delaySchedulerUntil: 3 });
  const infer = `${server.httpUrl}/v2/models/mlp/infer`;
  // three requests held into one batch, then one TF Serving request, one bad shape, one unknown model
  const batch = await Promise.all([1, 2, 3].map(() => postJson(infer, row)));
  for (const result of batch) assert.equal(result.status, 200);
  assert.equal((await postJson(`${server.httpUrl}/v1/models/mlp:predict`, { instances: [[1, 2, 3, 4]] })).status, 200);
  assert.equal((await postJson(infer, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], data: [1, 2, 3, 4, 5] }] })).status, 400);
  assert.equal((await postJson(`${server.httpUrl}/v2/models/nope/infer`, row)).status, 404);

  assert.ok(server.metricsPort !== undefined);
  const response = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /text\/plain/);
  const all = samples(await response.text());
  const find = (name: string, labels: Record<string, string>): number | undefined =>
    all.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value;

  const requests = all.filter((s) => s.name === 'tessera_requests_total');
  assert.deepEqual(
    requests.map((s) => [s.labels['model'], s.labels['version'], s.labels['protocol'], s.labels['outcome'], s.value]).sort(),
    [
      ['_unknown', '', 'v2-http', 'MODEL_NOT_FOUND', 1],
      ['mlp', '1', 'tfserving', 'success', 1],
      ['mlp', '1', 'v2-http', 'INVALID_INPUT_SHAPE', 1],
      ['mlp', '1', 'v2-http', 'success', 3],
    ],
  );
  for (const sample of requests) assert.deepEqual(Object.keys(sample.labels).sort(), ['model', 'outcome', 'protocol', 'version']);
  assert.equal(find('tessera_request_duration_seconds_count', { model: 'mlp', version: '1', protocol: 'v2-http' }), 4);
  assert.equal(find('tessera_inferences_total', { model: 'mlp', version: '1' }), 4);
  assert.equal(find('tessera_executions_total', { model: 'mlp', version: '1' }), 2, 'the three held requests ran as one batch');
  assert.equal(find('tessera_batch_size_count', { model: 'mlp', version: '1' }), 2);
  assert.equal(find('tessera_batch_size_bucket', { model: 'mlp', version: '1', le: '2' }), 1);
  assert.equal(find('tessera_batch_size_bucket', { model: 'mlp', version: '1', le: '4' }), 2);
  assert.equal(find('tessera_queue_duration_seconds_count', { model: 'mlp', version: '1' }), 4);
  assert.equal(find('tessera_compute_duration_seconds_count', { model: 'mlp', version: '1' }), 4);
  assert.equal(find('tessera_model_loads_total', { model: 'mlp', version: '1', outcome: 'success' }), 1);
  assert.equal(find('tessera_model_ready', { model: 'mlp', version: '1' }), 1);
  assert.equal(find('tessera_queue_depth', { model: 'mlp', version: '1' }), 0);
  assert.equal(find('tessera_inflight_requests', { model: 'mlp', version: '1' }), 0);
  assert.ok((find('tessera_process_resident_memory_bytes', {}) ?? 0) > 0);
  assert.ok(all.some((s) => s.name.startsWith('tessera_nodejs_eventloop_lag')));
  // no sample carries a request id or anything else unbounded
  for (const sample of all) for (const key of Object.keys(sample.labels)) assert.ok(!/id$/.test(key), `${sample.name} has label ${key}`);

  const missing = await fetch(`http://127.0.0.1:${server.metricsPort}/other`);
  assert.equal(missing.status, 404);
});

test('metrics can share the HTTP port, and can be turned off', async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'mlp', 1, mlpModel());
  const shared = await startTestServer(t, repo, { metricsOnHttpPort: true });
  assert.equal(shared.metricsPort, undefined);
  const text = await (await fetch(`${shared.httpUrl}/metrics`)).text();
  assert.match(text, /^tessera_model_ready\{model="mlp",version="1"\} 1$/m);
  await shared.close();
  const off = await startTestServer(t, repo, { metrics: false });
  assert.equal(off.metricsPort, undefined);
  assert.equal((await fetch(`${off.httpUrl}/metrics`)).status, 404);
});

test('the exporter counts per-request series itself and renders prom-client histograms at scrape', async () => {
  const exporter = new MetricsExporter({ describeModels: () => [] }, { processMetrics: false, latencyBuckets: [0.001, 0.01] });
  try {
    const request = { model: 'm', inputs: [] };
    const end = (model: string, outcome: 'success' | 'MODEL_NOT_FOUND', durationSeconds: number): void =>
      publish(channels.requestEnd, () => ({ startedAtMs: 0, model, version: outcome === 'success' ? '1' : undefined, protocol: 'v2-http', outcome, durationSeconds, request, response: undefined }));
    end('m', 'success', 0.0005);
    end('m', 'success', 0.005);
    end('m', 'success', 5); // above the last bound: only in +Inf
    end('m', 'success', Number.NaN); // counted as a request, not observed (prom-client would throw)
    end('caller-chosen', 'MODEL_NOT_FOUND', 0.0001);
    publish(channels.batchExecuted, () => ({ model: 'm', version: '1', rows: 3, requests: 3, ok: true, computeSeconds: 0.001 }));
    publish(channels.batchExecuted, () => ({ model: 'm', version: '1', rows: 2, requests: 2, ok: false, computeSeconds: 0.001 }));
    const all = samples(await exporter.render());
    const find = (name: string, labels: Record<string, string>): number | undefined =>
      all.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value;
    const series = { model: 'm', version: '1', protocol: 'v2-http' };
    assert.equal(find('tessera_requests_total', { ...series, outcome: 'success' }), 4);
    assert.equal(find('tessera_requests_total', { model: '_unknown', version: '', protocol: 'v2-http', outcome: 'MODEL_NOT_FOUND' }), 1);
    assert.ok(!all.some((s) => s.labels['model'] === 'caller-chosen'));
    assert.equal(find('tessera_request_duration_seconds_bucket', { ...series, le: '0.001' }), 1);
    assert.equal(find('tessera_request_duration_seconds_bucket', { ...series, le: '0.01' }), 2);
    assert.equal(find('tessera_request_duration_seconds_bucket', { ...series, le: '+Inf' }), 3);
    assert.equal(find('tessera_request_duration_seconds_count', series), 3);
    assert.equal(find('tessera_request_duration_seconds_sum', series), 5.0055);
    assert.equal(find('tessera_executions_total', { model: 'm', version: '1' }), 2);
    assert.equal(find('tessera_inferences_total', { model: 'm', version: '1' }), 3);
    assert.equal(find('tessera_batch_size_count', { model: 'm', version: '1' }), 1);
    // No request was scheduled: no queue or compute series.
    assert.ok(!all.some((s) => s.name.startsWith('tessera_queue_duration_seconds') || s.name.startsWith('tessera_compute_duration_seconds')));
  } finally {
    exporter.close();
  }
});

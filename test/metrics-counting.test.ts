/**
 * Prometheus exposition tests that a mutation audit showed missing: bucket bounds are
 * inclusive (Prometheus `le`), a version that is not READY reports tessera_model_ready 0, load
 * failures and unloads are counted, and close() stops the exporter counting.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { channels, publish } from '../src/core/events.js';
import { MetricsExporter } from '../src/observability/metrics.js';
import { samples } from './support/prometheus.js';

async function scrape(exporter: MetricsExporter): Promise<(name: string, labels: Record<string, string>) => number | undefined> {
  const all = samples(await exporter.render());
  return (name, labels) =>
    all.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value;
}

const request = { model: 'm', inputs: [] };
const end = (durationSeconds: number): void =>
  publish(channels.requestEnd, () => ({ startedAtMs: 0, model: 'm', version: '1', protocol: 'v2-http', outcome: 'success', durationSeconds, request, response: undefined }));

test('a value equal to a bucket bound is counted in that bucket (le is inclusive)', async () => {
  const exporter = new MetricsExporter({ describeModels: () => [] }, { processMetrics: false, latencyBuckets: [0.25, 0.5] });
  try {
    end(0.25);
    end(0.5);
    publish(channels.batchExecuted, () => ({ model: 'm', version: '1', rows: 4, requests: 1, ok: true, computeSeconds: 0.001 }));
    const find = await scrape(exporter);
    const series = { model: 'm', version: '1', protocol: 'v2-http' };
    assert.equal(find('tessera_request_duration_seconds_bucket', { ...series, le: '0.25' }), 1);
    assert.equal(find('tessera_request_duration_seconds_bucket', { ...series, le: '0.5' }), 2);
    assert.equal(find('tessera_batch_size_bucket', { model: 'm', version: '1', le: '2' }), 0);
    assert.equal(find('tessera_batch_size_bucket', { model: 'm', version: '1', le: '4' }), 1);
  } finally {
    exporter.close();
  }
});

test('tessera_model_ready is 0 for a version that is not READY; queue depth and in-flight come from the source', async () => {
  const source = {
    describeModels: () => [
      {
        name: 'm',
        versions: [
          { version: '1', state: 'READY', queueDepth: 3, inFlight: 2 },
          { version: '2', state: 'UNAVAILABLE', queueDepth: 0, inFlight: 0 },
          { version: '3', state: 'LOADING', queueDepth: 0, inFlight: 0 },
        ],
      },
    ],
  };
  const exporter = new MetricsExporter(source, { processMetrics: false });
  try {
    const find = await scrape(exporter);
    assert.equal(find('tessera_model_ready', { model: 'm', version: '1' }), 1);
    assert.equal(find('tessera_model_ready', { model: 'm', version: '2' }), 0);
    assert.equal(find('tessera_model_ready', { model: 'm', version: '3' }), 0);
    assert.equal(find('tessera_queue_depth', { model: 'm', version: '1' }), 3);
    assert.equal(find('tessera_inflight_requests', { model: 'm', version: '1' }), 2);
  } finally {
    exporter.close();
  }
});

test('load failures and unloads are counted; close() stops counting', async () => {
  const exporter = new MetricsExporter({ describeModels: () => [] }, { processMetrics: false });
  const loaded = (ok: boolean): void => publish(channels.modelLoaded, () => ({ model: 'm', version: '1', ok, durationSeconds: 0.02, reason: ok ? '' : 'bad file' }));
  const unloaded = (): void => publish(channels.modelUnloaded, () => ({ model: 'm', version: '1', replaced: false }));
  loaded(true);
  loaded(false);
  loaded(false);
  unloaded();
  end(0.001);
  let find = await scrape(exporter);
  assert.equal(find('tessera_model_loads_total', { model: 'm', version: '1', outcome: 'success' }), 1);
  assert.equal(find('tessera_model_loads_total', { model: 'm', version: '1', outcome: 'failure' }), 2);
  assert.equal(find('tessera_model_unloads_total', { model: 'm', version: '1' }), 1);
  assert.equal(find('tessera_model_load_duration_seconds_count', { model: 'm' }), 3);
  exporter.close();
  loaded(false);
  unloaded();
  end(0.001);
  find = await scrape(exporter);
  assert.equal(find('tessera_model_loads_total', { model: 'm', version: '1', outcome: 'failure' }), 2, 'a closed exporter counts nothing');
  assert.equal(find('tessera_model_unloads_total', { model: 'm', version: '1' }), 1);
  assert.equal(find('tessera_requests_total', { model: 'm', version: '1', protocol: 'v2-http', outcome: 'success' }), 1);
});

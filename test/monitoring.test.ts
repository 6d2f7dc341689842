/**
 * Model-quality monitoring: baseline computation and files, PSI over a sliding window, value
 * sketches (unit tests), and drift alerts, class distributions and metrics on a real server
 * driven over HTTP.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { Logger } from '../src/core/logger.js';
import { MetricsExporter } from '../src/observability/metrics.js';
import {
  DriftWindow,
  MonitoringService,
  QuantileSketch,
  ValueSummarizer,
  binIndex,
  computeBaseline,
  createBaselineFromFile,
  monitoringConfigSchema,
  monitoringSourceFromEngine,
  psi,
  quantileEdges,
  readBaseline,
  readRowFile,
  registerMonitoringMetrics,
  type MonitoringConfig,
  type VersionMonitoringSnapshot,
} from '../src/observability/monitoring/index.js';
import type { TesseraServer } from '../src/server/server.js';
import { defaultMlpWeights, identityModel, makeTempRepository, mlpModel, mlpReference, mulberry32, writeModel } from './support/fixtures.js';
import { GrpcTestClient } from './support/grpc-client.js';
import { startTestServer, untilHeld, writeFakeModel } from './support/server.js';

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** Seeded standard normal (Box-Muller). */
function normal(seed: number): () => number {
  const rng = mulberry32(seed);
  return () => {
    const u = Math.max(rng(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  };
}

function normalRows(n: number, features: number, mean: number, seed: number): number[][] {
  const z = normal(seed);
  return Array.from({ length: n }, () => Array.from({ length: features }, () => mean + z()));
}

interface LogLine {
  readonly level: 'error' | 'warn' | 'info' | 'debug';
  readonly object: object;
  readonly message: string | undefined;
}

function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = (level: LogLine['level']) => (object: object, message?: string) => {
    lines.push({ level, object, message });
  };
  return { logger: { error: log('error'), warn: log('warn'), info: log('info'), debug: log('debug') }, lines };
}

// ---------------------------------------------------------------------------
// Unit tests
// ---------------------------------------------------------------------------

describe('PSI and bins', () => {
  test('binIndex counts the edges at or below a value (open-ended outer bins)', () => {
    const edges = [-1, 0, 1];
    assert.equal(binIndex(edges, -5), 0);
    assert.equal(binIndex(edges, -1), 1);
    assert.equal(binIndex(edges, -0.5), 1);
    assert.equal(binIndex(edges, 0), 2);
    assert.equal(binIndex(edges, 0.99), 2);
    assert.equal(binIndex(edges, 1), 3);
    assert.equal(binIndex(edges, 1e9), 3);
    assert.equal(binIndex([], 3), 0);
  });

  test('psi is ~0 for matching proportions, large for a shift, NaN for no data', () => {
    const expected = [0.25, 0.25, 0.25, 0.25];
    assert.ok(psi(expected, [250, 250, 250, 250]) < 1e-6);
    const shifted = psi(expected, [25, 75, 300, 600]);
    assert.ok(shifted > 0.5, `shifted PSI ${shifted}`);
    assert.ok(Number.isNaN(psi(expected, [0, 0, 0, 0])));
    // Offsets read a slice of a larger count array.
    assert.ok(psi(expected, [9, 9, 250, 250, 250, 250], 2) < 1e-6);
  });

  test('quantileEdges drops duplicate edges and edges at the minimum', () => {
    assert.deepEqual(quantileEdges([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5), [2, 4, 6, 8]);
    assert.deepEqual(quantileEdges([5, 5, 5, 5], 10), []);
    const binary = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1];
    assert.deepEqual(quantileEdges(binary, 10), [1]);
  });
});

describe('baselines', () => {
  test('computeBaseline: quantile bins of equal mass, exact statistics, names', () => {
    const rows = normalRows(20_000, 2, 0, 1).map(([a, b]) => [a!, 3 + 2 * b!]);
    const baseline = computeBaseline(rows, { bins: 10, featureNames: ['a', 'b'] });
    assert.equal(baseline.rows, 20_000);
    assert.equal(baseline.features.length, 2);
    const [a, b] = baseline.features;
    assert.equal(a!.name, 'a');
    assert.equal(a!.edges.length, 9);
    for (const p of a!.proportions) assert.ok(Math.abs(p - 0.1) < 0.002, `proportion ${p}`);
    assert.ok(Math.abs(a!.mean) < 0.03 && Math.abs(a!.std - 1) < 0.03);
    assert.ok(Math.abs(b!.mean - 3) < 0.06 && Math.abs(b!.std - 2) < 0.06);
    assert.ok(Math.abs(a!.edges[4]!) < 0.05, 'the median edge is near 0');
  });

  test('computeBaseline: NaN is missing, constant features get one bin, ragged rows throw', () => {
    const baseline = computeBaseline([
      [1, Number.NaN],
      [1, 2],
      [1, 4],
    ]);
    assert.deepEqual(baseline.features[0]!.edges, []);
    assert.deepEqual(baseline.features[0]!.proportions, [1]);
    assert.equal(baseline.features[1]!.count, 2);
    assert.equal(baseline.features[1]!.mean, 3);
    assert.throws(() => computeBaseline([[1, 2], [3]]), /row 2 has 1 values; expected 2/);
    assert.throws(() => computeBaseline([]), /no rows/);
  });

  test('the reservoir bounds memory: a sample of maxSampleRows rows, statistics over all', () => {
    const rows = normalRows(5000, 1, 0, 2);
    const baseline = computeBaseline(rows, { maxSampleRows: 500 });
    assert.equal(baseline.rows, 5000);
    assert.equal(baseline.sample_rows, 500);
    assert.equal(baseline.features[0]!.count, 5000);
  });

  test('readRowFile: CSV with and without header, TSV, JSONL arrays and objects; errors name the line', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tessera-rows-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const collect = async (file: string) => {
      const opened = await readRowFile(file);
      const rows: number[][] = [];
      for await (const row of opened.rows) rows.push(row);
      return { names: opened.featureNames, rows };
    };
    await writeFile(path.join(dir, 'h.csv'), 'a,b\n1,2\n\n3,\n-inf,1e3\n');
    const h = await collect(path.join(dir, 'h.csv'));
    assert.deepEqual(h.names, ['a', 'b']);
    assert.deepEqual(h.rows, [[1, 2], [3, Number.NaN], [-Infinity, 1000]]);
    await writeFile(path.join(dir, 'n.csv'), '1,2\r\n3,4\r\n');
    assert.deepEqual(await collect(path.join(dir, 'n.csv')), { names: undefined, rows: [[1, 2], [3, 4]] });
    await writeFile(path.join(dir, 't.tsv'), 'x\ty\n1\t2\n');
    assert.deepEqual(await collect(path.join(dir, 't.tsv')), { names: ['x', 'y'], rows: [[1, 2]] });
    await writeFile(path.join(dir, 'a.jsonl'), '[1,2]\n[3,null]\n');
    assert.deepEqual(await collect(path.join(dir, 'a.jsonl')), { names: undefined, rows: [[1, 2], [3, Number.NaN]] });
    await writeFile(path.join(dir, 'o.jsonl'), '{"p":1,"q":2}\n{"q":4}\n');
    assert.deepEqual(await collect(path.join(dir, 'o.jsonl')), { names: ['p', 'q'], rows: [[1, 2], [Number.NaN, 4]] });
    await writeFile(path.join(dir, 'bad.csv'), 'a,b\n1,2\n3,x\n');
    await assert.rejects(collect(path.join(dir, 'bad.csv')), /bad\.csv:3: 'x' is not a number/);
    await writeFile(path.join(dir, 'bad.jsonl'), '[1,2]\n[1,"x"]\n');
    await assert.rejects(collect(path.join(dir, 'bad.jsonl')), /bad\.jsonl:2: "x" is not a number/);
  });

  test('createBaselineFromFile writes <model dir>/baseline.json that readBaseline accepts; bad files are refused', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tessera-baseline-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const lines = ['f,g', ...normalRows(1000, 2, 0, 3).map((r) => r.join(','))];
    await writeFile(path.join(dir, 'data.csv'), `${lines.join('\n')}\n`);
    const { path: written, baseline } = await createBaselineFromFile(path.join(dir, 'data.csv'), dir, { bins: 5 });
    assert.equal(written, path.join(dir, 'baseline.json'));
    assert.deepEqual(baseline.features.map((f) => f.name), ['f', 'g']);
    const read = await readBaseline(written);
    assert.deepEqual(read, baseline);
    assert.equal(read.bins, 5);
    assert.equal(read.source, path.join(dir, 'data.csv'));
    await writeFile(path.join(dir, 'broken.json'), JSON.stringify({ ...baseline, features: [{ ...baseline.features[0], proportions: [1] }] }));
    await assert.rejects(readBaseline(path.join(dir, 'broken.json')), /not a Tessera baseline: features\.0.*one entry more than edges/);
    // Header names win over defaults (for headerless files); explicit names win over both.
    const headed = await createBaselineFromFile(path.join(dir, 'data.csv'), path.join(dir, 'headed.json'), { defaultFeatureNames: ['p', 'q'] });
    assert.deepEqual(headed.baseline.features.map((f) => f.name), ['f', 'g']);
    await writeFile(path.join(dir, 'bare.csv'), '1,2\n3,4\n');
    const bare = await createBaselineFromFile(path.join(dir, 'bare.csv'), path.join(dir, 'bare.json'), { defaultFeatureNames: ['p', 'q'] });
    assert.deepEqual(bare.baseline.features.map((f) => f.name), ['p', 'q']);
    const explicit = await createBaselineFromFile(path.join(dir, 'data.csv'), path.join(dir, 'other.json'), { featureNames: ['x', 'y'] });
    assert.equal(explicit.path, path.join(dir, 'other.json'));
    assert.deepEqual(JSON.parse(await readFile(explicit.path, 'utf8')).features.map((f: { name: string }) => f.name), ['x', 'y']);
  });
});

describe('sketches and windows', () => {
  test('QuantileSketch quantiles are within ~1% relative; negatives and zeros handled', () => {
    const sketch = new QuantileSketch();
    for (let i = 1; i <= 10_000; i++) sketch.add(i);
    for (const q of [0.01, 0.25, 0.5, 0.9, 0.99]) {
      const exact = q * 9999 + 1;
      assert.ok(Math.abs(sketch.quantile(q) - exact) / exact < 0.02, `q${q}: ${sketch.quantile(q)} vs ${exact}`);
    }
    const mixed = new QuantileSketch();
    for (const v of [-100, -10, 0, 0, 10, 100]) mixed.add(v);
    assert.ok(Math.abs(mixed.quantile(0) + 100) < 2);
    assert.equal(mixed.quantile(0.5), 0);
    assert.ok(Math.abs(mixed.quantile(1) - 100) < 2);
  });

  test('QuantileSketch memory is bounded by maxBuckets', () => {
    const sketch = new QuantileSketch(0.01, 64);
    // ln values 0..100 at 1% relative accuracy span ~5000 buckets: 64 may be kept.
    for (let i = 0; i < 100_000; i++) sketch.add(Math.exp(i / 1000));
    // Each bucket answers one value: a fine grid of quantiles sees every bucket kept, and no more
    // than maxBuckets of them (unbounded, it would see thousands).
    const grid = sketch.quantiles(Array.from({ length: 10_001 }, (_, i) => i / 10_000));
    const distinct = new Set(grid).size;
    assert.ok(distinct <= 64, `${distinct} distinct quantile values from at most 64 buckets`);
    assert.ok(distinct >= 60, `${distinct}: the top buckets are all kept`);
    // The lowest buckets were merged upwards, into one near the top: p01 and p50 are that bucket,
    // not exp(1) and exp(50) (an unbounded sketch answers those within 1%).
    assert.equal(sketch.quantile(0.01), sketch.quantile(0.5));
    assert.ok(sketch.quantile(0.01) > Math.exp(98), `p01 ${sketch.quantile(0.01)} is the merged bucket`);
    // The top quantiles stay accurate.
    const p99 = sketch.quantile(0.99);
    assert.ok(Math.abs(p99 - Math.exp(99)) / Math.exp(99) < 0.03);
    assert.ok(Math.abs(sketch.quantile(1) - Math.exp(99.999)) / Math.exp(99.999) < 0.02);
  });

  test('ValueSummarizer: exact count/mean/std/min/max, non-finite counted apart', () => {
    const s = new ValueSummarizer();
    for (const v of [1, 2, 3, 4, Number.NaN, Infinity]) s.add(v);
    const summary = s.summary();
    assert.equal(summary.count, 4);
    assert.equal(summary.non_finite, 2);
    assert.equal(summary.mean, 2.5);
    assert.ok(Math.abs(summary.std! - Math.sqrt(5 / 3)) < 1e-12);
    assert.equal(summary.min, 1);
    assert.equal(summary.max, 4);
    assert.ok(summary.quantiles !== null && summary.quantiles['p50']! >= 1.97 && summary.quantiles['p50']! <= 3.03, `p50 ${summary.quantiles?.['p50']}`);
  });

  test('a row window forgets the oldest bucket: PSI falls back after the traffic returns to the baseline', () => {
    const baseline = computeBaseline(normalRows(5000, 1, 0, 10), { bins: 10 });
    const feature = baseline.features[0]!;
    const window = new DriftWindow([{ edges: feature.edges, expected: feature.proportions }], { kind: 'rows', rows: 1000, buckets: 10 }, 0);
    const feed = (rows: number[][]) => {
      for (const row of rows) {
        window.add(0, row[0]!);
        if (window.endRow()) window.rotate();
      }
    };
    feed(normalRows(1000, 1, 2, 11));
    assert.ok(window.psi(0) > 1, `shifted ${window.psi(0)}`);
    assert.ok(window.rowCount <= 1000);
    feed(normalRows(1000, 1, 0, 12));
    assert.ok(window.psi(0) < 0.05, `recovered ${window.psi(0)}`);
    assert.ok(Math.abs(window.mean(0)) < 0.15);
    assert.ok(Math.abs(window.std(0) - 1) < 0.15);
    window.add(0, Number.NaN);
    assert.equal(window.nonFiniteCount(0), 1);
  });

  test('a time window slides with the clock', () => {
    const window = new DriftWindow([{ edges: [0], expected: [0.5, 0.5] }], { kind: 'time', seconds: 10, buckets: 5 }, 0);
    for (let i = 0; i < 100; i++) {
      window.add(0, 1);
      window.endRow();
    }
    assert.equal(window.rowCount, 100);
    assert.equal(window.due(1999), false);
    assert.equal(window.due(2000), true);
    window.advance(5000);
    assert.equal(window.rowCount, 100, 'still inside 10 s');
    window.advance(10_000);
    assert.equal(window.rowCount, 0, 'older than the window');
    assert.equal(window.count(0), 0);
  });

  test('monitoringConfigSchema defaults and checks', () => {
    const config = monitoringConfigSchema.parse({});
    assert.equal(config.enabled, true);
    assert.equal(config.psi_threshold, 0.2);
    assert.equal(config.bins, 10);
    assert.equal(config.window_rows, 1000);
    assert.equal(config.baseline_requests, 100);
    assert.equal(config.task, 'auto');
    assert.throws(() => monitoringConfigSchema.parse({ psi_threshold: 0.1, psi_clear_threshold: 0.2 }), /psi_clear_threshold/);
    assert.throws(() => monitoringConfigSchema.parse({ bins: 1 }));
    assert.throws(() => monitoringConfigSchema.parse({ window: 5 }));
  });
});

// ---------------------------------------------------------------------------
// On a real server
// ---------------------------------------------------------------------------

const ROWS_PER_REQUEST = 25;
const IDENTITY_CONFIG = 'max_batch_size: 32\n';
const FEATURES = ['a', 'b', 'c', 'd'];

describe('monitoring a served model', () => {
  let repo: string;
  let server: TesseraServer;
  let service: MonitoringService;
  let exporter: MetricsExporter;
  const log = captureLogger();
  const configs: Record<string, MonitoringConfig> = {
    shift: monitoringConfigSchema.parse({ window_rows: 1000, features: FEATURES }),
    steady: monitoringConfigSchema.parse({ window_rows: 1000, features: FEATURES }),
    boot: monitoringConfigSchema.parse({ window_rows: 500, baseline_requests: 20 }),
    mlp: monitoringConfigSchema.parse({}),
    timed: monitoringConfigSchema.parse({ window_seconds: 60, window_buckets: 6, min_rows: 100, features: FEATURES }),
  };
  /** Added to the wall clock the monitoring service reads (time windows). */
  let clockOffsetMs = 0;

  before(async () => {
    repo = await makeTempRepository();
    const baselineCsv = ['a,b,c,d', ...normalRows(5000, 4, 0, 100).map((row) => row.join(','))].join('\n');
    await writeFile(path.join(repo, 'baseline-data.csv'), baselineCsv);
    for (const name of ['shift', 'steady', 'timed']) {
      await writeModel(repo, name, 1, identityModel('FP32', [-1, 4]), { 'config.yaml': IDENTITY_CONFIG });
      await createBaselineFromFile(path.join(repo, 'baseline-data.csv'), path.join(repo, name), { bins: 10 });
    }
    await writeModel(repo, 'boot', 1, identityModel('FP32', [-1, 4]), { 'config.yaml': IDENTITY_CONFIG });
    await writeModel(repo, 'mlp', 1, mlpModel(defaultMlpWeights()), { 'config.yaml': IDENTITY_CONFIG, 'labels.txt': 'setosa\nversicolor\nvirginica\n' });
    await writeModel(repo, 'unmonitored', 1, identityModel('FP32', [-1, 4]), { 'config.yaml': IDENTITY_CONFIG });
    server = await startTestServer(undefined, repo);
    service = new MonitoringService({
      source: monitoringSourceFromEngine(server.engine, (model) => configs[model]),
      logger: log.logger,
      now: () => Date.now() + clockOffsetMs,
    });
    exporter = new MetricsExporter(server.engine, { processMetrics: false });
    registerMonitoringMetrics(exporter.registry, service);
  });

  after(async () => {
    service.close();
    exporter.close();
    await server.close();
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  async function infer(model: string, rows: number[][]): Promise<unknown> {
    const response = await fetch(`${server.httpUrl}/v2/models/${model}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [rows.length, rows[0]!.length], data: rows.flat() }] }),
    });
    const body = (await response.json()) as unknown;
    assert.equal(response.status, 200, JSON.stringify(body));
    return body;
  }

  /** `requests` requests of N(mean, 1) rows, 8 at a time. */
  async function traffic(model: string, requests: number, mean: number, seed: number): Promise<void> {
    const z = normal(seed);
    for (let sent = 0; sent < requests; sent += 8) {
      const batch = Array.from({ length: Math.min(8, requests - sent) }, () =>
        infer(model, Array.from({ length: ROWS_PER_REQUEST }, () => Array.from({ length: 4 }, () => mean + z()))),
      );
      await Promise.all(batch);
    }
  }

  function only(model: string): VersionMonitoringSnapshot {
    const snapshot = service.snapshot(model);
    assert.equal(snapshot.enabled, true);
    assert.equal(snapshot.versions.length, 1);
    return snapshot.versions[0]!;
  }

  const driftWarnings = (model: string) => log.lines.filter((l) => l.level === 'warn' && (l.object as { model?: string }).model === model && /input drift/.test(l.message ?? ''));

  async function metric(line: RegExp): Promise<number | undefined> {
    const text = await exporter.render();
    for (const row of text.split('\n')) {
      const match = line.exec(row);
      if (match !== null) return Number(row.slice(row.lastIndexOf(' ') + 1));
    }
    return undefined;
  }

  test('shifted traffic (N(1.5,1) vs a N(0,1) baseline file) crosses the PSI threshold: one warning, alert gauge 1', async () => {
    await traffic('shift', 48, 1.5, 1);
    await service.settled();
    const snapshot = only('shift');
    assert.equal(snapshot.drift.status, 'monitoring');
    assert.equal(snapshot.drift.baseline?.source, 'file');
    assert.equal(snapshot.drift.baseline?.file, path.join(repo, 'shift', 'baseline.json'));
    assert.deepEqual(snapshot.drift.features.map((f) => f.name), FEATURES);
    for (const feature of snapshot.drift.features) {
      assert.ok(feature.psi !== null && feature.psi > 0.2, `${feature.name} PSI ${feature.psi}`);
      assert.equal(feature.drifted, true);
      assert.ok(Math.abs(feature.window.mean! - 1.5) < 0.2, `window mean ${feature.window.mean}`);
      assert.ok(Math.abs(feature.baseline.mean) < 0.1);
    }
    assert.equal(snapshot.drift.alert, true);
    assert.equal(snapshot.drift.alerts, 1);
    assert.equal(snapshot.requests, 48);
    assert.equal(snapshot.rows, 48 * ROWS_PER_REQUEST);
    assert.ok(snapshot.drift.window.rows <= 1000);
    assert.equal(driftWarnings('shift').length, 1, 'one warning per crossing, not per request');
    assert.equal(await metric(/^tessera_drift_alert\{model="shift",version="1"\} /), 1);
    const psiA = await metric(/^tessera_drift_psi\{model="shift",version="1",feature="a"\} /);
    assert.ok(psiA !== undefined && psiA > 0.2);
  });

  test('unshifted traffic stays under the threshold: no warning, alert gauge 0', async () => {
    await traffic('steady', 48, 0, 2);
    await service.settled();
    const snapshot = only('steady');
    assert.equal(snapshot.drift.status, 'monitoring');
    for (const feature of snapshot.drift.features) assert.ok(feature.psi !== null && feature.psi < 0.1, `${feature.name} PSI ${feature.psi}`);
    assert.equal(snapshot.drift.alert, false);
    assert.equal(snapshot.drift.alerts, 0);
    assert.equal(driftWarnings('steady').length, 0);
    assert.equal(await metric(/^tessera_drift_alert\{model="steady",version="1"\} /), 0);
  });

  test('the alert clears when traffic returns to the baseline and is raised again (second warning) on the next shift', async () => {
    await traffic('shift', 48, 0, 3);
    let snapshot = only('shift');
    assert.equal(snapshot.drift.alert, false, `max PSI ${snapshot.drift.max_psi}`);
    assert.ok(log.lines.some((l) => l.level === 'info' && /input drift cleared: model 'shift'/.test(l.message ?? '')));
    assert.equal(await metric(/^tessera_drift_alert\{model="shift",version="1"\} /), 0);
    await traffic('shift', 48, -1.5, 4);
    snapshot = only('shift');
    assert.equal(snapshot.drift.alert, true);
    assert.equal(snapshot.drift.alerts, 2);
    assert.equal(driftWarnings('shift').length, 2);
  });

  test('a time window that traffic stops filling clears its alert once too few rows are left to judge', async () => {
    await traffic('timed', 48, 1.5, 6);
    await service.settled();
    // The window's current slice is judged when it ends: 10 s later.
    clockOffsetMs += 11_000;
    service.refresh();
    assert.equal(only('timed').drift.alert, true, 'shifted traffic raised the alert');
    assert.equal(await metric(/^tessera_drift_alert\{model="timed",version="1"\} /), 1);
    // No traffic for longer than the window: nothing is left in it.
    clockOffsetMs += 70_000;
    assert.equal(await metric(/^tessera_drift_alert\{model="timed",version="1"\} /), 0, 'a scrape slides the window and clears the alert');
    const snapshot = only('timed');
    assert.equal(snapshot.drift.alert, false);
    assert.equal(snapshot.drift.alerts, 1);
    assert.ok(log.lines.some((l) => l.level === 'info' && /input drift cleared: model 'timed' version 1: too little traffic in the last 60 s to judge/.test(l.message ?? '')));
  });

  test('without a baseline file, the first baseline_requests requests are the baseline', async () => {
    await traffic('boot', 10, 0, 5);
    await service.settled();
    let snapshot = only('boot');
    assert.equal(snapshot.drift.status, 'collecting_baseline');
    assert.deepEqual(snapshot.drift.collecting, { requests_needed: 20, requests_seen: 10 });
    assert.equal(await metric(/^tessera_drift_alert\{model="boot"/), undefined, 'no alert series before a baseline');
    await traffic('boot', 10, 0, 6);
    snapshot = only('boot');
    assert.equal(snapshot.drift.status, 'monitoring');
    assert.equal(snapshot.drift.baseline?.source, 'traffic');
    assert.equal(snapshot.drift.baseline?.rows, 20 * ROWS_PER_REQUEST);
    assert.deepEqual(snapshot.drift.features.map((f) => f.name), ['x[0]', 'x[1]', 'x[2]', 'x[3]']);
    await traffic('boot', 24, 0, 7);
    snapshot = only('boot');
    assert.equal(snapshot.drift.alert, false, `max PSI ${snapshot.drift.max_psi}`);
    await traffic('boot', 24, 1.5, 8);
    snapshot = only('boot');
    assert.equal(snapshot.drift.alert, true, `max PSI ${snapshot.drift.max_psi}`);
    assert.equal(driftWarnings('boot').length, 1);
  });

  test('regression outputs: count, mean, std and quantiles of the output values', () => {
    const output = only('steady').outputs.find((o) => o.name === 'y');
    assert.ok(output !== undefined && output.task === 'regressor');
    const values = output.values;
    assert.equal(values.count, 48 * ROWS_PER_REQUEST * 4);
    assert.ok(Math.abs(values.mean!) < 0.1 && Math.abs(values.std! - 1) < 0.1);
    const q = values.quantiles!;
    assert.ok(Math.abs(q['p50']!) < 0.1, `p50 ${q['p50']}`);
    assert.ok(Math.abs(q['p95']! - 1.645) < 0.15, `p95 ${q['p95']}`);
    assert.ok(values.min! <= q['p01']! && q['p99']! <= values.max!);
  });

  test('classifier outputs: predicted class counts (by label) and the confidence histogram, in JSON and metrics', async () => {
    const weights = defaultMlpWeights();
    const rng = mulberry32(9);
    const expected = [0, 0, 0];
    let confidenceSum = 0;
    for (let i = 0; i < 20; i++) {
      const rows = Array.from({ length: 10 }, () => Array.from({ length: 4 }, () => rng() * 4 - 2));
      await infer('mlp', rows);
      const probs = mlpReference(weights, rows.flat());
      for (let r = 0; r < 10; r++) {
        const row = [probs[r * 3]!, probs[r * 3 + 1]!, probs[r * 3 + 2]!];
        const best = row.indexOf(Math.max(...row));
        expected[best]! += 1;
        confidenceSum += Math.max(...row);
      }
    }
    const output = only('mlp').outputs.find((o) => o.name === 'probs');
    assert.ok(output !== undefined && output.task === 'classifier');
    assert.equal(output.classes, 3);
    assert.equal(output.rows, 200);
    const labels = ['setosa', 'versicolor', 'virginica'];
    assert.deepEqual(
      output.predicted,
      expected.flatMap((count, index) => (count > 0 ? [{ index, class: labels[index], count }] : [])),
    );
    assert.ok(Math.abs(output.confidence.mean! - confidenceSum / 200) < 1e-4);
    assert.equal(output.confidence.buckets[output.confidence.buckets.length - 1]!.count, 200);
    for (const [index, count] of expected.entries()) {
      if (count === 0) continue;
      assert.equal(await metric(new RegExp(`^tessera_prediction_class_total\\{model="mlp",version="1",class="${labels[index]}"\\} `)), count);
    }
    assert.equal(await metric(/^tessera_prediction_confidence_count\{model="mlp",version="1"\} /), 200);
    assert.equal(await metric(/^tessera_prediction_confidence_bucket\{.*le="\+Inf",model="mlp"|^tessera_prediction_confidence_bucket\{model="mlp",version="1",le="\+Inf"\} /), 200);
    const sum = await metric(/^tessera_prediction_confidence_sum\{model="mlp",version="1"\} /);
    assert.ok(sum !== undefined && Math.abs(sum - confidenceSum) < 1e-3);
    // The MLP's drift baseline is still being collected (100 requests): status says so.
    assert.equal(only('mlp').drift.status, 'collecting_baseline');
  });

  test('a model without monitoring config is not monitored', async () => {
    await infer('unmonitored', normalRows(5, 4, 0, 1));
    assert.deepEqual(service.snapshot('unmonitored'), { model: 'unmonitored', enabled: false, versions: [] });
    assert.equal(await metric(/^tessera_(drift|prediction)_.*model="unmonitored"/), undefined);
  });
});

describe('classifier outputs with non-finite scores', () => {
  test('a row holding a NaN is left out of the confidence, which stays a number', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(
      repo,
      'cls',
      1,
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }], outputs: [{ name: 'p', datatype: 'FP32', shape: [-1, 3], copy_of: 'x' }] },
      'max_batch_size: 8\nmonitoring:\n  task: classifier\n  baseline_requests: 1\n',
    );
    const server = await startTestServer(t, repo);
    const grpc = new GrpcTestClient(server.grpcPort!);
    t.after(() => grpc.close());
    const send = (values: number[]) => grpc.call('ModelInfer', { model_name: 'cls', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], contents: { fp32_contents: values } }] });
    await send([0.1, 0.2, 0.7]);
    await send([Number.NaN, 0.5, 0.5]);
    await send([0.9, 0.05, 0.05]);
    const snapshot = (await (await fetch(`${server.httpUrl}/v2/models/cls/monitoring`)).json()) as { versions: { outputs: { rows: number; confidence: { mean: number | null } }[] }[] };
    const output = snapshot.versions[0]!.outputs[0]!;
    assert.equal(output.rows, 2);
    assert.ok(output.confidence.mean !== null && Math.abs(output.confidence.mean - 0.8) < 1e-6, String(output.confidence.mean));
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const sum = Number(/^tessera_prediction_confidence_sum\{model="cls",version="1"\} (\S+)$/m.exec(metrics)?.[1]);
    assert.ok(Math.abs(sum - 1.6) < 1e-6, `confidence sum ${sum}`);
    assert.match(metrics, /^tessera_prediction_confidence_count\{model="cls",version="1"\} 2$/m);
  });
});

describe('monitoring across a reload', () => {
  test("a copy a reload replaced, unloading once it drained, leaves the new copy's monitoring alone", async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const definition = (delayMs: number) => ({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }],
      outputs: [{ name: 'p', datatype: 'FP32', shape: [-1, 3], copy_of: 'x' }],
      delay_ms: delayMs,
    });
    const config = 'max_batch_size: 8\nmonitoring:\n  task: classifier\n  baseline_requests: 1\n';
    await writeFakeModel(repo, 'cls', 1, definition(1500), config);
    const server = await startTestServer(t, repo);
    const send = async (values: number[]): Promise<void> => {
      const response = await fetch(`${server.httpUrl}/v2/models/cls/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: values }] }),
      });
      assert.equal(response.status, 200, await response.text());
    };
    const rows = async (): Promise<number> => {
      const snapshot = (await (await fetch(`${server.httpUrl}/v2/models/cls/monitoring`)).json()) as { versions: { outputs: { rows: number }[] }[] };
      return snapshot.versions[0]?.outputs[0]?.rows ?? 0;
    };
    // The old copy holds a request while a reload (a changed file) replaces it.
    const held = send([0.1, 0.2, 0.7]);
    await untilHeld(server, 'cls', 1);
    await writeFakeModel(repo, 'cls', 1, definition(0), config);
    const reloading = server.engine.loadModel('cls');
    // The new copy serves (nothing held in it) while the old one still drains.
    const deadline = Date.now() + 10_000;
    while (server.engine.describeModels('cls')[0]!.versions[0]!.inFlight !== 0 || (await Promise.race([held.then(() => true), Promise.resolve(false)]))) {
      assert.ok(Date.now() < deadline, 'the new copy never took over');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (let i = 0; i < 4; i++) await send([0.9, 0.05, 0.05]);
    assert.equal(await rows(), 4, "the new copy's answers are monitored");
    await held;
    await reloading;
    assert.ok((await rows()) >= 4, `rows after the old copy unloaded: ${await rows()}`);
  });
});

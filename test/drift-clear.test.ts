/**
 * Drift alert hysteresis on a real server (src/observability/monitoring/service.ts): the alert is
 * raised when a feature's PSI reaches psi_threshold and clears only once every feature's PSI is
 * below psi_clear_threshold, so traffic that settles between the two keeps the alert raised.
 * The window's contents are exact (whole buckets of chosen rows), so each PSI is known in advance.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';

import type { VersionMonitoringSnapshot } from '../src/observability/monitoring/index.js';
import { makeTempRepository } from './support/fixtures.js';
import { getJson, postJson, startTestServer, writeFakeModel } from './support/server.js';

const THRESHOLD = 0.5;
const CLEAR = 0.05;
/** Rows per request = rows per window bucket (window_rows / window_buckets): one request fills one bucket. */
const BUCKET_ROWS = 10;
const WINDOW_ROWS = 100;
/**
 * Rows the window holds when read between requests: a bucket that fills is judged, then the ring
 * turns and drops the oldest one, so the current (empty) bucket leaves WINDOW_ROWS - BUCKET_ROWS.
 */
const HELD = WINDOW_ROWS - BUCKET_ROWS;

/**
 * The PSI the server should report for a window of `ones` ones among `rows` rows against a
 * 50/50 baseline of two bins (edge 1): Laplace-smoothed actual proportions, as documented in
 * src/observability/monitoring/psi.ts.
 */
function expectedPsi(ones: number, rows: number): number {
  let total = 0;
  for (const count of [rows - ones, ones]) {
    const actual = (count + 0.5) / (rows + 1);
    total += (actual - 0.5) * Math.log(actual / 0.5);
  }
  return total;
}

test('an alert raised at psi_threshold stays raised between the two thresholds and clears below psi_clear_threshold', async (t) => {
  // The premise: the middle level lies strictly between the clear threshold and the threshold.
  // Windows on the way from one level to the next mix the two, so their PSI lies between the two levels too.
  for (const rows of [HELD, WINDOW_ROWS]) {
    const middle = expectedPsi((rows * 7) / 10, rows);
    assert.ok(middle > CLEAR && middle < THRESHOLD, String(middle));
    assert.ok(expectedPsi(rows, rows) > THRESHOLD && expectedPsi(rows / 2, rows) < CLEAR);
  }

  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeFakeModel(
    repo,
    'ident',
    1,
    { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1], copy_of: 'x' }] },
    [
      `max_batch_size: ${BUCKET_ROWS}`,
      'monitoring:',
      '  baseline_requests: 1',
      '  bins: 2',
      `  window_rows: ${WINDOW_ROWS}`,
      `  window_buckets: ${WINDOW_ROWS / BUCKET_ROWS}`,
      `  psi_threshold: ${THRESHOLD}`,
      `  psi_clear_threshold: ${CLEAR}`,
      '',
    ].join('\n'),
  );
  const server = await startTestServer(t, repo);

  /** One request of BUCKET_ROWS rows, the first `ones` of them 1, the rest 0. */
  const send = async (ones: number): Promise<void> => {
    const data = Array.from({ length: BUCKET_ROWS }, (_, i) => (i < ones ? 1 : 0));
    const answer = await postJson(`${server.httpUrl}/v2/models/ident/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [BUCKET_ROWS, 1], data }] });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
  };
  /** Fill the whole window with buckets of `ones` ones each, one request at a time (in order). */
  const fill = async (ones: number): Promise<void> => {
    for (let i = 0; i < WINDOW_ROWS / BUCKET_ROWS; i++) await send(ones);
  };
  const snapshot = async (): Promise<VersionMonitoringSnapshot> => {
    const answer = await getJson(`${server.httpUrl}/v2/models/ident/monitoring`);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const versions = (answer.body as { versions: VersionMonitoringSnapshot[] }).versions;
    assert.equal(versions.length, 1);
    return versions[0]!;
  };
  const alertGauge = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const match = /^tessera_drift_alert\{model="ident",version="1"\} (\S+)$/m.exec(text);
    assert.ok(match !== null, 'the alert gauge is exported');
    return Number(match[1]);
  };

  // The baseline: the first request, half 0 and half 1 (two bins of equal mass, edge at 1).
  await send(BUCKET_ROWS / 2);
  const deadline = Date.now() + 10_000;
  while ((await snapshot()).drift.status !== 'monitoring') {
    assert.ok(Date.now() < deadline, 'the baseline was never taken from traffic');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  let view = await snapshot();
  assert.deepEqual(view.drift.features[0]!.bins.edges, [1]);
  assert.deepEqual(view.drift.features[0]!.bins.expected, [0.5, 0.5]);
  assert.deepEqual([view.drift.psi_threshold, view.drift.psi_clear_threshold], [THRESHOLD, CLEAR]);

  // Every row 1: far above the threshold, the alert is raised.
  await fill(BUCKET_ROWS);
  view = await snapshot();
  assert.equal(view.drift.window.rows, HELD);
  assert.ok(Math.abs(view.drift.max_psi! - expectedPsi(HELD, HELD)) < 1e-9, `max PSI ${view.drift.max_psi}`);
  assert.equal(view.drift.alert, true);
  assert.equal(view.drift.alerts, 1);
  assert.equal(await alertGauge(), 1);

  // 70% ones: below the threshold but above the clear threshold. The alert stays raised.
  await fill(7);
  view = await snapshot();
  assert.ok(Math.abs(view.drift.max_psi! - expectedPsi((HELD * 7) / 10, HELD)) < 1e-9, `max PSI ${view.drift.max_psi}`);
  assert.equal(view.drift.features[0]!.drifted, false, 'under psi_threshold the feature no longer counts as drifted');
  assert.equal(view.drift.alert, true, `PSI ${view.drift.max_psi} is not below psi_clear_threshold ${CLEAR}: the alert must hold`);
  assert.equal(view.drift.alerts, 1);
  assert.equal(await alertGauge(), 1);

  // Back to the baseline's 50%: below the clear threshold, the alert clears (and was raised once).
  await fill(5);
  view = await snapshot();
  assert.ok(view.drift.max_psi! < CLEAR, `max PSI ${view.drift.max_psi}`);
  assert.equal(view.drift.alert, false);
  assert.equal(view.drift.alert_since, null);
  assert.equal(view.drift.alerts, 1);
  assert.equal(await alertGauge(), 0);
});

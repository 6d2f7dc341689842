import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { makeTempRepository } from './support/fixtures.js';
import { getJson, postJson, startTestServer, writeFakeModel } from './support/server.js';

/**
 * Canaries end to end on the deterministic fake backend: a canary that fails 20% of its
 * requests rolls back by itself at the first step; a healthy one (started from the model's
 * config) steps up and is promoted to default. Holds are 200 ms-2 s, so the steps run fast.
 */

const FAIL = 7;
const io = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }] };

/** Stable version 1, and version `canary` that fails on inputs starting with FAIL (or not). */
async function repository(canary: number, failing: boolean, config: string): Promise<string> {
  const repo = await makeTempRepository();
  const yaml = `max_batch_size: 8\ndynamic_batching: false\nversion_policy:\n  all: {}\n${config}`;
  await writeFakeModel(repo, 'fake', 1, io, yaml);
  await writeFakeModel(repo, 'fake', canary, failing ? { ...io, fail_on_value: FAIL } : io, yaml);
  return repo;
}

/** Send requests (every fifth one starting with FAIL) until `until` says stop; returns what served each. */
async function drive(url: string, until: () => Promise<boolean>, timeoutMs: number): Promise<{ status: number; version: string | null; failing: boolean }[]> {
  const results: { status: number; version: string | null; failing: boolean }[] = [];
  const deadline = Date.now() + timeoutMs;
  let i = 0;
  let done = false;
  const worker = async (): Promise<void> => {
    while (!done && Date.now() < deadline) {
      const failing = i++ % 5 === 0;
      const r = await postJson(url, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [failing ? FAIL : 1, 2, 3, 4] }] });
      results.push({ status: r.status, version: r.headers.get('x-model-version'), failing });
    }
  };
  const watcher = async (): Promise<void> => {
    while (!done && Date.now() < deadline) {
      if (await until()) done = true;
      else await new Promise((resolve) => setTimeout(resolve, 25));
    }
    done = true;
  };
  await Promise.all([worker(), worker(), worker(), worker(), watcher()]);
  return results;
}

interface CanaryView {
  phase: string;
  stepIndex: number;
  share: number;
  reason: string | null;
  history: { decision: string; share: number; reason: string }[];
}

describe('canary', () => {
  test('a canary failing 20% of its requests rolls back at the first step; stable then carries all traffic', async (t) => {
    const repo = await repository(2, true, '');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const url = `${server.httpUrl}/v2/models/fake/infer`;
    // Version 2 is the highest: pin 1 as the default, then canary 2 against it.
    assert.equal((await (await fetch(`${admin}/models/fake/1/set-default`, { method: 'PUT' })).json() as { status: string }).status, 'Default version of model "fake" is 1');
    const started = await postJson(`${admin}/models/fake/canary`, { version: 2, steps: [20, 50, 100], hold: '2s', gates: { min_requests: 20 } });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const canary = async (): Promise<CanaryView> => ((await getJson(`${admin}/models/fake/rollout`)).body as { canary: CanaryView }).canary;

    const during = await drive(url, async () => (await canary()).phase !== 'running', 10_000);
    const finished = await canary();
    assert.equal(finished.phase, 'rolled_back', JSON.stringify(finished));
    assert.equal(finished.stepIndex, 0, 'at the first step');
    assert.equal(finished.share, 0);
    assert.match(finished.reason!, /^gate failed at step 1 \(20%\): error rate \d+\.\d% \(\d+\/\d+\) exceeds the stable version's 0\.0%/);
    assert.deepEqual(finished.history.map((d) => d.decision), ['start', 'rollback']);
    assert.ok(during.some((r) => r.version === '2'), 'the canary did get traffic');
    assert.ok(during.some((r) => r.status === 500), 'and failed some of it');

    const after = await drive(url, async () => false, 400);
    assert.ok(after.length > 20);
    for (const r of after) assert.deepEqual([r.status, r.version], [200, '1'], 'stable serves everything, failing inputs included');

    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    assert.match(metrics, /tessera_rollout_decisions_total\{model="fake",version="2",decision="rollback"\} 1/);
    assert.match(metrics, /tessera_rollout_canary_share\{model="fake",version="2"\} 0/);
    assert.match(metrics, /tessera_rollout_canary_phase\{model="fake",version="2",phase="rolled_back"\} 1/);
    assert.equal((await postJson(`${admin}/models/fake/canary`, {})).status, 400, 'a canary needs a version');
    const aborted = await fetch(`${admin}/models/fake/canary`, { method: 'DELETE' });
    assert.equal(aborted.status, 404, 'nothing is running');
  });

  test('a healthy canary from the model config steps up while its gates hold and is promoted to default', async (t) => {
    const config = [
      'routing:',
      '  canary:',
      '    version: 3',
      '    stable: 1',
      '    steps: [20, 60, 100]',
      '    hold: 200ms',
      '    gates: {min_requests: 5, min_comparisons: 5, p99_floor_ms: 50}',
      '',
    ].join('\n');
    const repo = await repository(3, false, config);
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const server = await startTestServer(t, repo);
    const admin = `http://127.0.0.1:${server.managementPort}`;
    const url = `${server.httpUrl}/v2/models/fake/infer`;
    const rollout = async (): Promise<{ canary: CanaryView; servingDefault: string; canaryMirror: unknown }> =>
      (await getJson(`${admin}/models/fake/rollout`)).body as { canary: CanaryView; servingDefault: string; canaryMirror: unknown };
    assert.equal((await rollout()).canary.phase, 'running', 'the config canary started with the server');

    const during = await drive(url, async () => (await rollout()).canary.phase !== 'running', 15_000);
    const done = await rollout();
    assert.equal(done.canary.phase, 'promoted', JSON.stringify(done.canary));
    // A step that held before enough traffic came records one `wait` and is judged later.
    const decisions = done.canary.history.map((d) => `${d.decision}:${d.share}`).filter((d) => !d.startsWith('wait:'));
    assert.deepEqual(decisions, ['start:20', 'step:60', 'step:100', 'promote:100']);
    assert.equal(done.servingDefault, '3');
    assert.ok(during.every((r) => r.status === 200));
    const onCanary = during.filter((r) => r.version === '3').length;
    assert.ok(onCanary > 0 && onCanary < during.length, `${onCanary} of ${during.length} on the canary while it stepped up`);
    for (const r of await drive(url, async () => false, 300)) assert.equal(r.version, '3', 'the promoted version serves requests naming none');
    const described = (await getJson(`${admin}/models/fake`)).body as { defaultVersion: string };
    assert.equal(described.defaultVersion, '3');
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    assert.match(metrics, /tessera_rollout_decisions_total\{model="fake",version="3",decision="promote"\} 1/);
    assert.match(metrics, /tessera_rollout_decisions_total\{model="fake",version="3",decision="step"\} 2/);

    // A restart does not start the config's canary again: the state file says it was done.
    await server.close();
    const again = await startTestServer(t, repo);
    const view = (await getJson(`http://127.0.0.1:${again.managementPort}/models/fake/rollout`)).body as { canary: CanaryView; servingDefault: string };
    assert.equal(view.canary.phase, 'promoted');
    assert.equal(view.servingDefault, '3');
  });
});

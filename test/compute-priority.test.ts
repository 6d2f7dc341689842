import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';
import { makeTempRepository, mlpBenchModel, writeModel } from './support/fixtures.js';
import { getJson, postJson, startTestServer } from './support/server.js';

/**
 * Compute threads (each instance's worker thread and the intra-op threads onnxruntime starts
 * from it) run at a lower priority than the event loop, so that requests are received,
 * refused and health-checked on time while inference has every core busy.
 */

/** Nice value of every thread of this process (the server runs in it), by thread id. */
function threadNiceValues(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      // Fields after the command name: state is field 3; nice is field 19.
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), Number(fields[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

test('compute threads run below the event loop by default; compute_thread_nice sets or disables it', { skip: process.platform !== 'linux' && 'thread priorities are read from /proc' }, async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  const before = threadNiceValues();
  await writeModel(repo, 'mlp', 1, mlpBenchModel(), { 'config.yaml': 'max_batch_size: 8\nparameters:\n  intra_op_thread_count: 2\n' });
  await writeModel(repo, 'mlp-nice-12', 1, mlpBenchModel(), { 'config.yaml': 'max_batch_size: 8\nparameters:\n  compute_thread_nice: 12\n' });
  await writeModel(repo, 'mlp-nice-0', 1, mlpBenchModel(), { 'config.yaml': 'max_batch_size: 8\nparameters:\n  compute_thread_nice: 0\n' });
  await writeModel(repo, 'mlp-bad', 1, mlpBenchModel(), { 'config.yaml': 'max_batch_size: 8\nparameters:\n  compute_thread_nice: 25\n' });
  const server = await startTestServer(t, repo);
  const row = Array.from({ length: 64 }, (_, i) => i / 64);
  for (const model of ['mlp', 'mlp-nice-12', 'mlp-nice-0']) {
    const answer = await postJson(`${server.httpUrl}/v2/models/${model}/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 64], data: row }] });
    assert.equal(answer.status, 200, model);
  }
  const started = [...threadNiceValues()].filter(([tid]) => !before.has(tid));
  const byNice = new Map<number, number>();
  for (const [, nice] of started) byNice.set(nice, (byNice.get(nice) ?? 0) + 1);
  assert.equal(threadNiceValues().get(process.pid), 0, 'the event loop keeps its priority');
  // mlp: its worker thread and at least one intra-op thread (2 threads) at the default 5.
  assert.ok((byNice.get(5) ?? 0) >= 2, `threads at nice 5: ${JSON.stringify([...byNice])}`);
  assert.ok((byNice.get(12) ?? 0) >= 1, `threads at nice 12: ${JSON.stringify([...byNice])}`);
  assert.ok((byNice.get(0) ?? 0) >= 1, 'compute_thread_nice 0 leaves the instance at the process priority');
  assert.notEqual((await getJson(`${server.httpUrl}/v2/models/mlp-bad/ready`)).status, 200, 'an out-of-range nice value makes the model unavailable');
  const index = await postJson(`${server.httpUrl}/v2/repository/index`, {});
  const entry = (index.body as { name: string; state: string; reason: string }[]).find((model) => model.name === 'mlp-bad');
  assert.equal(entry?.state, 'UNAVAILABLE');
  assert.match(entry?.reason ?? '', /parameters\.compute_thread_nice: expected 0 to 19, got 25/);
});

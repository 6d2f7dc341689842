/**
 * ModelStreamInfer tests that a mutation audit showed missing: a request that arrives on an open
 * stream after shutdown has started is answered with a shutting-down error (not run), and a
 * client cancelling a stream drops the requests still queued on it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';

import { makeTempRepository } from './support/fixtures.js';
import { GrpcTestClient, type StreamInferResponse } from './support/grpc-client.js';
import { startTestServer, untilHeld, writeFakeModel } from './support/server.js';

/** Milliseconds one execution of the fake `slow` model takes. */
const SLOW_MS = 300;

async function slowServer(t: Parameters<typeof startTestServer>[0]): Promise<Awaited<ReturnType<typeof startTestServer>>> {
  const repo = await makeTempRepository('tessera-grpc-stream-');
  await writeFakeModel(
    repo,
    'slow',
    1,
    {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }],
      delay_ms: SLOW_MS,
    },
    'dynamic_batching: false\ninstance_group:\n  count: 1\nwarmup:\n  enabled: false\n',
  );
  return startTestServer(t, repo, { grpc: true, management: false, metrics: false });
}

const slowRequest = (id: string): object => ({
  model_name: 'slow',
  id,
  inputs: [{ name: 'x', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [1, 2, 3, 4] } }],
});

describe('ModelStreamInfer during shutdown and cancellation', () => {
  test('a request arriving on an open stream after shutdown started is answered "shutting down", not run', async (t) => {
    const server = await slowServer(t);
    const client = new GrpcTestClient(server.grpcPort!);
    t.after(() => client.close());
    const call = client.stream();
    const result = new Promise<{ responses: StreamInferResponse[]; code: status }>((resolve) => {
      const responses: StreamInferResponse[] = [];
      call.on('data', (response: StreamInferResponse) => responses.push(response));
      call.on('status', (s: { code: status }) => resolve({ responses, code: s.code }));
      call.on('error', () => undefined);
    });
    call.write(slowRequest('in-flight'));
    await untilHeld(server, 'slow', 1);
    const closing = server.close();
    // The in-flight request keeps the stream open for SLOW_MS; this one arrives meanwhile.
    call.write(slowRequest('late'));
    const { responses, code } = await result;
    await closing;
    assert.equal(code, status.UNAVAILABLE);
    const byId = new Map(responses.map((r) => [r.infer_response?.id, r.error_message]));
    assert.deepEqual([...byId.keys()].sort(), ['in-flight', 'late']);
    assert.equal(byId.get('in-flight'), '');
    assert.match(byId.get('late') ?? '', /shutting down and takes no new requests/);
  });

  test('cancelling a stream drops the requests still queued on it', async (t) => {
    const server = await slowServer(t);
    const client = new GrpcTestClient(server.grpcPort!);
    t.after(() => client.close());
    const executions = async (): Promise<number> => {
      const stats = await client.call<{ model_stats: { execution_count: string }[] }>('ModelStatistics', { name: 'slow', version: '1' });
      return Number(stats.model_stats[0]!.execution_count);
    };
    const before = await executions();
    const call = client.stream();
    const cancelled = new Promise<number>((resolve) => call.on('error', (error: { code: number }) => resolve(error.code)));
    call.on('data', () => undefined);
    // One runs on the single instance; two queue behind it.
    for (const id of ['a', 'b', 'c']) call.write(slowRequest(id));
    await untilHeld(server, 'slow', 3);
    call.cancel();
    assert.equal(await cancelled, status.CANCELLED);
    // Give wrongly kept requests the time to run, then check that only the first did.
    await new Promise((resolve) => setTimeout(resolve, 3 * SLOW_MS + 150));
    assert.equal((await executions()) - before, 1);
    const held = server.engine.describeModels('slow')[0]!.versions[0]!;
    assert.equal(held.queueDepth + held.inFlight, 0);
  });
});

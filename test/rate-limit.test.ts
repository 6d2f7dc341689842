/**
 * Rate limits and query budgets over real HTTP and gRPC: a burst passes exactly the bucket's
 * size and the rest get 429 + Retry-After; limits are per key (per address without one), per
 * model where a quota is set, shared by HTTP and gRPC; health checks are never limited; the
 * query budget counts inference requests per period.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { status } from '@grpc/grpc-js';

import { anonymousPrincipal } from '../src/security/principal.js';
import { QueryBudgets, RequestMeter, TokenBuckets } from '../src/security/rate-limit.js';
import { SecureGrpcClient, apiKey, grpcError, grpcInferRequest, http, inferBody, securityRepository, type HttpAnswer } from './support/security.js';
import { startTestServer } from './support/server.js';

const KEY_A = 'rate-key-a-0123456789abcdef';
const KEY_B = 'rate-key-b-0123456789abcdef';

function counts(answers: readonly HttpAnswer[]): { ok: number; limited: number; other: number } {
  return {
    ok: answers.filter((a) => a.status === 200).length,
    limited: answers.filter((a) => a.status === 429).length,
    other: answers.filter((a) => a.status !== 200 && a.status !== 429).length,
  };
}

describe('rate limits', () => {
  test('a burst: exactly the limit passes, the rest get 429 with Retry-After; per key; health exempt', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { apiKeys: [`${KEY_A}:infer+read`, `${KEY_B}:infer+read`], rateLimit: 5, rateLimitWindowSeconds: 60, management: false });
    const url = `${server.httpUrl}/v2/models/alpha/infer`;
    const burst = await Promise.all(Array.from({ length: 12 }, () => http(url, { headers: apiKey(KEY_A), body: inferBody() })));
    assert.deepEqual(counts(burst), { ok: 5, limited: 7, other: 0 });
    for (const answer of burst.filter((a) => a.status === 429)) {
      // One token comes back every 60/5 = 12 s.
      const retryAfter = Number(answer.headers['retry-after']);
      assert.ok(retryAfter >= 1 && retryAfter <= 12, `Retry-After ${retryAfter}`);
      assert.match(String(answer.json?.['error']), /^API key '[0-9a-f]{12}' exceeded its rate of 5 requests per 60 s; retry in \d+ s$/);
    }
    // Metadata requests count too; another key has its own bucket; health checks are not limited.
    assert.equal((await http(`${server.httpUrl}/v2/models/alpha`, { headers: apiKey(KEY_A) })).status, 429);
    assert.equal((await http(url, { headers: apiKey(KEY_B), body: inferBody() })).status, 200);
    for (let i = 0; i < 10; i++) assert.equal((await http(`${server.httpUrl}/v2/health/ready`)).status, 200);

    // gRPC shares the key's bucket: key A is exhausted there too, with retry-after metadata.
    const grpc = new SecureGrpcClient(server.grpcPort!);
    t.after(() => grpc.close());
    const limited = await grpcError(grpc.call('ModelInfer', grpcInferRequest('alpha'), { 'x-api-key': KEY_A }));
    assert.equal(limited.code, status.RESOURCE_EXHAUSTED);
    assert.deepEqual(limited.metadata.get('tessera-error-code'), ['RATE_LIMITED']);
    assert.ok(Number(limited.metadata.get('retry-after')[0]) >= 1);
    let grpcOk = 0;
    for (let i = 0; i < 6; i++) {
      try {
        await grpc.call('ModelInfer', grpcInferRequest('alpha'), { 'x-api-key': KEY_B });
        grpcOk++;
      } catch (error) {
        assert.equal((error as { code: number }).code, status.RESOURCE_EXHAUSTED);
      }
    }
    assert.equal(grpcOk, 4, 'key B had used one of its five tokens over HTTP');
    assert.equal((await grpc.health()).status, 'SERVING');
  });

  test('anonymous callers are limited by address when authentication is off', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { rateLimit: 3, grpc: false, management: false });
    const answers = await Promise.all(Array.from({ length: 6 }, () => http(`${server.httpUrl}/v2/models/alpha/infer`, { body: inferBody() })));
    assert.deepEqual(counts(answers), { ok: 3, limited: 3, other: 0 });
    assert.match(String(answers.find((a) => a.status === 429)?.json?.['error']), /^client 127\.0\.0\.1 exceeded its rate of 3 requests per 60 s/);
  });

  test('per-model quotas, and a key with its own rate', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, {
      apiKeys: [`${KEY_A}:infer`, { key: KEY_B, scopes: ['infer'], name: 'slow', rateLimit: 1 }],
      rateLimitModel: ['alpha=2'],
      grpc: false,
      management: false,
    });
    const infer = (model: string, key: string): Promise<HttpAnswer> => http(`${server.httpUrl}/v2/models/${model}/infer`, { headers: apiKey(key), body: inferBody() });
    const alpha = await Promise.all(Array.from({ length: 4 }, () => infer('alpha', KEY_A)));
    assert.deepEqual(counts(alpha), { ok: 2, limited: 2, other: 0 });
    assert.match(String(alpha.find((a) => a.status === 429)?.json?.['error']), /exceeded its quota of 2 requests per 60 s on model 'alpha'/);
    assert.deepEqual(counts(await Promise.all(Array.from({ length: 4 }, () => infer('beta', KEY_A)))), { ok: 4, limited: 0, other: 0 });
    const slow = await Promise.all([infer('beta', KEY_B), infer('beta', KEY_B), infer('beta', KEY_B)]);
    assert.deepEqual(counts(slow), { ok: 1, limited: 2, other: 0 });
    assert.match(String(slow.find((a) => a.status === 429)?.json?.['error']), /^API key 'slow' exceeded its rate of 1 requests per 60 s/);
    assert.equal(slow.find((a) => a.status === 429)?.headers['retry-after'], '60');
  });
});

describe('the management API', () => {
  test('is not rate-limited, and spends no token of the key', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { apiKeys: [`${KEY_A}:admin+read`], rateLimit: 1, rateLimitWindowSeconds: 60, grpc: false });
    const management = `http://127.0.0.1:${server.managementPort}`;
    for (let i = 0; i < 3; i++) {
      const listed = await http(`${management}/models`, { headers: apiKey(KEY_A) });
      assert.equal(listed.status, 200, `request ${i + 1}: ${listed.text}`);
    }
    // The limit is on: the key's one token is still there for the HTTP port, then it is spent.
    assert.equal((await http(`${server.httpUrl}/v2`, { headers: apiKey(KEY_A) })).status, 200);
    assert.equal((await http(`${server.httpUrl}/v2`, { headers: apiKey(KEY_A) })).status, 429);
    assert.equal((await http(`${management}/models`, { headers: apiKey(KEY_A) })).status, 200);
  });
});

describe('query budgets', () => {
  test('inference requests per key per period, over HTTP and gRPC together', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { apiKeys: [`${KEY_A}:infer+read`], queryBudget: 4, queryBudgetPeriodSeconds: 3600, management: false });
    const grpc = new SecureGrpcClient(server.grpcPort!);
    t.after(() => grpc.close());
    const infer = (): Promise<HttpAnswer> => http(`${server.httpUrl}/v2/models/alpha/infer`, { headers: apiKey(KEY_A), body: inferBody() });
    assert.equal((await infer()).status, 200);
    assert.equal((await infer()).status, 200);
    await grpc.call('ModelInfer', grpcInferRequest('beta'), { 'x-api-key': KEY_A });
    // Metadata does not spend the budget.
    for (let i = 0; i < 3; i++) assert.equal((await http(`${server.httpUrl}/v2/models/alpha`, { headers: apiKey(KEY_A) })).status, 200);
    assert.equal((await infer()).status, 200);
    const exhausted = await infer();
    assert.equal(exhausted.status, 429);
    assert.match(String(exhausted.json?.['error']), /used its budget of 4 inference requests per 3600 s; it renews in \d+ s/);
    const retryAfter = Number(exhausted.headers['retry-after']);
    assert.ok(retryAfter > 3590 && retryAfter <= 3600, `Retry-After ${retryAfter}`);
    const overGrpc = await grpcError(grpc.call('ModelInfer', grpcInferRequest('alpha'), { 'x-api-key': KEY_A }));
    assert.equal(overGrpc.code, status.RESOURCE_EXHAUSTED);
    assert.deepEqual(overGrpc.metadata.get('tessera-error-code'), ['QUERY_BUDGET_EXHAUSTED']);
  });
});

describe('the meter', () => {
  test('token buckets refill at capacity per window', () => {
    const buckets = new TokenBuckets(60_000);
    for (let i = 0; i < 3; i++) {
      assert.equal(buckets.waitMs('k', 3, 0), 0);
      buckets.take('k', 3, 0);
    }
    assert.equal(buckets.waitMs('k', 3, 0), 20_000);
    assert.equal(buckets.waitMs('k', 3, 19_999), 1);
    assert.equal(buckets.waitMs('k', 3, 20_000), 0);
  });

  test('past the tracking limit, buckets are dropped in bulk (down to 90%), so new clients do not each cost a scan', () => {
    const buckets = new TokenBuckets(60_000, 100);
    for (let i = 0; i < 100; i++) buckets.take(`client-${i}`, 1, 0);
    assert.equal(buckets.size, 100);
    buckets.take('client-100', 1, 0);
    assert.equal(buckets.size, 90, 'one eviction makes room for the next 10 new clients');
    for (let i = 101; i < 111; i++) buckets.take(`client-${i}`, 1, 0);
    assert.equal(buckets.size, 100, 'no eviction until the limit is passed again');
    // The most recent clients are kept, with what they spent.
    assert.ok(buckets.waitMs('client-110', 1, 0) > 0, 'client-110 has spent its one token');
    assert.equal(buckets.waitMs('client-0', 1, 0), 0, 'client-0 was dropped (least recently used): a fresh bucket');
  });

  test('a refused request takes nothing', () => {
    const meter = new RequestMeter({ requests: 2, windowSeconds: 60, perModel: new Map([['m', 1]]) }, { requests: 0, periodSeconds: 60 });
    const principal = anonymousPrincipal('10.0.0.1');
    meter.admit({ principal, model: 'm', inference: true }, 0);
    assert.throws(() => meter.admit({ principal, model: 'm', inference: true }, 0), /quota of 1 requests per 60 s on model 'm'/);
    // The refusal above did not spend the overall token: one is left for another model.
    meter.admit({ principal, model: 'other', inference: true }, 0);
    assert.throws(() => meter.admit({ principal, model: 'other', inference: true }, 0), /rate of 2 requests per 60 s/);
  });

  test('budgets renew with the period, and stale entries are dropped past the cap', () => {
    const budgets = new QueryBudgets(1000, 2);
    budgets.take('a', 0);
    assert.equal(budgets.waitMs('a', 1, 500), 500);
    assert.equal(budgets.waitMs('a', 1, 1000), 0);
    budgets.take('b', 1500);
    budgets.take('c', 1600);
    budgets.take('d', 1700);
    assert.equal(budgets.usage('b', 1800).used, 0, 'the oldest window went when the cap was passed');
    assert.equal(budgets.usage('d', 1800).used, 1);
  });
});

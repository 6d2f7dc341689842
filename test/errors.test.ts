import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ERROR_CATALOG, TesseraError, toTesseraError } from '../src/core/errors.js';
import { HTTP_STATUS, httpStatusOf } from '../src/protocols/http/errors.js';

test('docs/errors.md lists every error code, and only those', async () => {
  const doc = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const documented = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual([...documented].sort(), Object.keys(ERROR_CATALOG).sort());
  for (const [code, entry] of Object.entries(ERROR_CATALOG)) {
    assert.match(doc, new RegExp(`^\\| \`${code}\` \\| ${entry.category} \\|`, 'm'), `${code} is documented with its category`);
  }
});

test('client mistakes map to 4xx, and only internal errors to 500', () => {
  for (const [code, entry] of Object.entries(ERROR_CATALOG)) {
    const status = httpStatusOf(new TesseraError(code as keyof typeof ERROR_CATALOG, 'x'), { queueFullStatus: 503 });
    if (entry.category === 'invalid_argument' || entry.category === 'not_found' || entry.category === 'unsupported') {
      assert.ok(status >= 400 && status < 500, `${code} -> ${status}`);
    }
    if (status === 500) assert.equal(entry.category, 'internal', code);
  }
  assert.equal(HTTP_STATUS.internal, 500);
  assert.equal(httpStatusOf(new TesseraError('QUEUE_FULL', 'x'), { queueFullStatus: 429 }), 429);
});

test('foreign errors become INTERNAL and keep their cause', () => {
  const original = new RangeError('boom');
  const wrapped = toTesseraError(original);
  assert.equal(wrapped.code, 'INTERNAL');
  assert.equal(wrapped.cause, original);
  const kept = new TesseraError('MODEL_NOT_FOUND', 'nope');
  assert.equal(toTesseraError(kept), kept);
});

test('refusals under load are logged once a second per code; internal errors every time, with their stack', async () => {
  const { default: Fastify } = await import('fastify');
  const { pino } = await import('pino');
  const { Writable } = await import('node:stream');
  const { guarded } = await import('../src/protocols/http/errors.js');
  const lines: { level: number; msg: string; code?: string; suppressed_since_last?: number; err?: { stack?: string } }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as (typeof lines)[number]);
      done();
    },
  });
  const app = Fastify({ loggerInstance: pino({ level: 'debug' }, sink) });
  const handle = guarded({ queueFullStatus: 503 });
  app.get('/full', handle(() => {
    throw new TesseraError('QUEUE_FULL', 'the queue is full', { retryAfterSeconds: 1 });
  }));
  app.get('/broken', handle(() => {
    throw new Error('a bug');
  }));
  for (let i = 0; i < 50; i++) assert.equal((await app.inject({ method: 'GET', url: '/full' })).statusCode, 503);
  for (let i = 0; i < 2; i++) assert.equal((await app.inject({ method: 'GET', url: '/broken' })).statusCode, 500);
  const full = lines.filter((line) => line.code === 'QUEUE_FULL');
  assert.equal(full.length, 1, '50 refusals within a second: one line');
  assert.equal(full[0]!.level, 40, 'at warn');
  const internal = lines.filter((line) => line.level === 50);
  assert.equal(internal.length, 2, 'each internal error is logged');
  assert.match(internal[0]!.err?.stack ?? '', /a bug/);
  await new Promise((resolve) => setTimeout(resolve, 1050));
  assert.equal((await app.inject({ method: 'GET', url: '/full' })).statusCode, 503);
  const after = lines.filter((line) => line.code === 'QUEUE_FULL');
  assert.equal(after.length, 2, 'a second later the next refusal is logged');
  assert.equal(after[1]!.suppressed_since_last, 49, 'with the count of those left out');
  await app.close();
});

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import { parseServerConfig } from '../src/config/server-config.js';
import { DeferredRequestLogger, deferredChildLogger } from '../src/protocols/http/request-logger.js';
import { startServer } from '../src/server/server.js';
import { postJson, writeFakeModel } from './support/server.js';

/** A real pino logger writing JSON lines into `lines`, counting the child loggers made. */
function capturingLogger(level: string): { logger: pino.Logger; lines: Record<string, unknown>[]; children: () => number } {
  const lines: Record<string, unknown>[] = [];
  let children = 0;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level, onChild: () => void children++ }, stream);
  return { logger, lines, children: () => children };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('the deferred child makes no pino child until a line is written at an enabled level, then writes it with the bindings', async () => {
  const { logger, lines, children } = capturingLogger('info');
  const child = new DeferredRequestLogger(logger as unknown as FastifyBaseLogger, { reqId: 'r-1' });
  child.debug('below the level');
  child.trace({ a: 1 }, 'below the level');
  assert.equal(child.level, 'info');
  assert.equal(child.isLevelEnabled('debug'), false);
  await flush();
  assert.equal(children(), 0);
  assert.equal(lines.length, 0);
  child.warn({ code: 'QUEUE_FULL' }, 'refused');
  child.info('second');
  await flush();
  assert.equal(children(), 1);
  assert.deepEqual(
    lines.map((line) => [line['reqId'], line['code'], line['msg']]),
    [
      ['r-1', 'QUEUE_FULL', 'refused'],
      ['r-1', undefined, 'second'],
    ],
  );
  // The level can be changed per request, as on pino's child.
  child.level = 'debug';
  child.debug('now written');
  await flush();
  assert.equal(lines.at(-1)?.['msg'], 'now written');
  assert.equal(logger.level, 'info');
});

test('a route-specific level or serializers get pino\'s child at once', () => {
  const { logger, children } = capturingLogger('info');
  const plain = deferredChildLogger(logger as unknown as FastifyBaseLogger, { reqId: 'a' }, {});
  assert.ok(plain instanceof DeferredRequestLogger);
  const levelled = deferredChildLogger(logger as unknown as FastifyBaseLogger, { reqId: 'b' }, { level: 'debug' });
  assert.ok(!(levelled instanceof DeferredRequestLogger));
  assert.equal(levelled.level, 'debug');
  assert.equal(children(), 1);
});

test('over HTTP: answered requests make no child logger; a refused one logs with its request id', async (t) => {
  const repository = await mkdtemp(join(tmpdir(), 'tessera-reqlog-'));
  t.after(() => rm(repository, { recursive: true, force: true }));
  await writeFakeModel(repository, 'echo', 1, {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }],
  });
  const { logger, lines, children } = capturingLogger('debug');
  const server = await startServer(
    parseServerConfig({ modelRepository: repository, host: '127.0.0.1', httpPort: 0, grpcPort: 0, metricsPort: 0, managementPort: 0 }),
    { logger },
  );
  t.after(() => server.close());
  const url = `${server.httpUrl}/v2/models/echo/infer`;
  const before = children();
  for (let i = 0; i < 20; i++) {
    const answer = await postJson(url, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [i, 1] }] });
    assert.equal(answer.status, 200);
  }
  assert.equal(children() - before, 0);
  const refused = await postJson(url, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1] }] }, { 'x-request-id': 'client-42' });
  assert.equal(refused.status, 400);
  await flush();
  assert.equal(children() - before, 1);
  const line = lines.find((entry) => entry['reqId'] === 'client-42');
  assert.ok(line, `no log line carries the request id; lines: ${JSON.stringify(lines.slice(-3))}`);
  assert.equal(line['level'], 20);
  assert.match(String(line['msg']), /x/);
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { identityModel, makeTempRepository, writeModel } from './support/fixtures.js';
import { getJson, postJson, startTestServer } from './support/server.js';

const execFileAsync = promisify(execFile);
const rowsRequest = (rows: number[][]) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [rows.length, 4], data: rows.flat() }] });

test('monitoring: the served endpoint and metrics report drift once traffic shifts from the baseline', async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'id', 1, identityModel('FP32', [-1, 4]), {
    'config.yaml': 'max_batch_size: 64\nmonitoring:\n  enabled: true\n  window_rows: 400\n  min_rows: 100\n',
  });
  // A baseline from N(0,1)-ish data, written by the CLI as an operator would.
  const csv = ['a,b,c,d', ...Array.from({ length: 2000 }, (_, i) => [0, 1, 2, 3].map((j) => Math.sin(i * 12.9898 + j * 78.233) * 1.7).join(','))].join('\n');
  await writeFile(join(repo, 'data.csv'), csv);
  const cli = await execFileAsync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'baseline', 'id', '--data', join(repo, 'data.csv'), '--model-repository', repo], { cwd: new URL('..', import.meta.url) });
  assert.match(cli.stdout, /wrote .*baseline\.json: 4 features from 2000 rows/);

  const server = await startTestServer(t, repo);
  const url = `${server.httpUrl}/v2/models/id/infer`;
  const shifted = Array.from({ length: 500 }, (_, i) => [0, 1, 2, 3].map((j) => 3 + Math.sin(i * 7.1 + j) * 0.5));
  for (let i = 0; i < shifted.length; i += 50) assert.equal((await postJson(url, rowsRequest(shifted.slice(i, i + 50)))).status, 200);

  const snapshot = (await getJson(`${server.httpUrl}/v2/models/id/monitoring`)).body as {
    enabled: boolean;
    versions: { version: string; rows: number; drift: { alert: boolean; baseline: { source: string } | null } }[];
  };
  assert.equal(snapshot.enabled, true);
  assert.equal(snapshot.versions[0]!.rows, 500);
  assert.equal(snapshot.versions[0]!.drift.baseline?.source, 'file');
  assert.equal(snapshot.versions[0]!.drift.alert, true);
  const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  assert.match(metrics, /^tessera_drift_alert\{model="id",version="1"\} 1$/m);
  assert.equal((await getJson(`${server.httpUrl}/v2/models/id/versions/9/monitoring`)).status, 404);
  assert.equal((await getJson(`${server.httpUrl}/v2/models/nope/monitoring`)).status, 404);
});

test('tracing and the audit log, configured on the server, see real requests', async (t) => {
  const repo = await makeTempRepository();
  const auditDir = await mkdtemp(join(tmpdir(), 'tessera-audit-'));
  t.after(() => Promise.all([rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }), rm(auditDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })]));
  await writeModel(repo, 'id', 1, identityModel('FP32', [-1, 4]));

  // A local OTLP/HTTP receiver.
  const received: string[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push(Buffer.concat(chunks).toString('latin1'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => collector.close(() => resolve())));
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;

  const server = await startTestServer(t, repo, { tracingEndpoint: endpoint, auditDir, auditSampleRate: 1 });
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const response = await fetch(`${server.httpUrl}/v2/models/id/infer`, {
    method: 'POST',
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    body: JSON.stringify(rowsRequest([[1, 2, 3, 4]])),
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('traceparent') ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  assert.notEqual(response.headers.get('traceparent'), `00-${traceId}-00f067aa0ba902b7-01`, 'the server answers with its own span');
  assert.equal((await postJson(`${server.httpUrl}/v2/models/id/infer`, rowsRequest([[5, 6, 7, 8]]))).status, 200);
  // Refused by the engine (3 values a row where the model takes 4): the error answer names its span too.
  const refused = await fetch(`${server.httpUrl}/v2/models/id/infer`, {
    method: 'POST',
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
  });
  assert.equal(refused.status, 400);
  assert.match(refused.headers.get('traceparent') ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  // Refused while decoding, before the engine: no span, no traceparent.
  const malformed = await fetch(`${server.httpUrl}/v2/models/id/infer`, { method: 'POST', headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }, body: '{"inputs": 3}' });
  assert.equal(malformed.status, 400);
  assert.equal(malformed.headers.get('traceparent'), null);

  await server.close(); // flushes the audit log and exports spans
  assert.ok(received.some((body) => body.includes(traceId) || body.includes(Buffer.from(traceId, 'hex').toString('latin1'))), 'spans reached the collector');
  const files = await readdir(auditDir);
  const lines = (await Promise.all(files.map((f) => readFile(join(auditDir, f), 'utf8')))).join('').trim().split('\n');
  const records = lines.map((line) => JSON.parse(line) as { model: string; version: string; outcome: string; protocol: string });
  // The request refused while decoding never reached the engine: it is not audited.
  assert.deepEqual(records.map((r) => [r.model, r.version, r.outcome, r.protocol]), [
    ['id', '1', 'success', 'v2-http'],
    ['id', '1', 'success', 'v2-http'],
    ['id', '1', 'INVALID_INPUT_SHAPE', 'v2-http'],
  ]);
});

test('tracing: false keeps tracing off even with an endpoint set (a flag beats the environment)', async (t) => {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeModel(repo, 'id', 1, identityModel('FP32', [-1, 4]));
  const server = await startTestServer(t, repo, { tracing: false, tracingEndpoint: 'http://127.0.0.1:9/v1/traces' });
  const response = await fetch(`${server.httpUrl}/v2/models/id/infer`, {
    method: 'POST',
    headers: { traceparent: `00-${'4'.repeat(32)}-00f067aa0ba902b7-01` },
    body: JSON.stringify(rowsRequest([[1, 2, 3, 4]])),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('traceparent'), null, 'no span, so no traceparent');
});

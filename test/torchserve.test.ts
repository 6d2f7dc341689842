/**
 * TorchServe's inference API (pytorch/serve docs/inference_api.md) against a real server:
 * /ping, /predictions with the default tabular/JSON handler (JSON bodies in several forms,
 * multipart uploads, PUT as `curl -T` sends), label maps for classifiers, and TorchServe's
 * `{"code", "type", "message"}` errors.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { TesseraServer } from '../src/server/server.js';
import { addModel, defaultMlpWeights, makeTempRepository, mlpModel, mlpReference, seededMlpWeights, writeModel } from './support/fixtures.js';
import { startTestServer } from './support/server.js';

interface Answer {
  readonly status: number;
  readonly contentType: string | null;
  readonly text: string;
  readonly body: unknown;
}

async function send(url: string, init: RequestInit): Promise<Answer> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: response.status, contentType: response.headers.get('content-type'), text, body };
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

function assertRowsClose(actual: unknown, expected: ArrayLike<number>, width: number): void {
  const rows = actual as number[][];
  assert.equal(rows.length * width, expected.length);
  rows.forEach((row, r) => row.forEach((value, c) => assert.ok(Math.abs(value - expected[r * width + c]!) < 1e-5, `row ${r} col ${c}: ${value}`)));
}

const SEVEN = seededMlpWeights([4, 8, 7], 3);
const LABELS = ['setosa', '2', 'versicolor', '10', 'virginica', 'x', 'y'];
const ROWS = [
  [5.1, 3.5, 1.4, 0.2],
  [-1, 0.5, 2, 3],
];

describe('TorchServe inference API', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';

  before(async () => {
    repo = await makeTempRepository();
    await writeModel(repo, 'mlp', 1, mlpModel());
    await writeModel(repo, 'classifier', 1, mlpModel(SEVEN), { 'labels.txt': `${LABELS.join('\n')}\n` });
    await writeModel(repo, 'add', 1, addModel());
    server = await startTestServer(undefined, repo);
    base = server.httpUrl;
  });
  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('GET /ping → 200 {"status": "Healthy"}', async () => {
    const answer = await send(`${base}/ping`, {});
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body, { status: 'Healthy' });
    assert.match(answer.contentType ?? '', /^application\/json/);
  });

  test('JSON bodies: {"data": rows}, {"instances": rows}, a plain list of rows, one plain row → a list of per-row outputs', async () => {
    const expected = mlpReference(defaultMlpWeights(), ROWS.flat());
    for (const body of [{ data: ROWS }, { instances: ROWS }, ROWS]) {
      const answer = await send(`${base}/predictions/mlp`, json(body));
      assert.equal(answer.status, 200, answer.text);
      assert.match(answer.contentType ?? '', /^application\/json/);
      assertRowsClose(answer.body, expected, 3);
    }
    const one = await send(`${base}/predictions/mlp`, json(ROWS[0]));
    assertRowsClose(one.body, expected.slice(0, 3), 3);
    const oneInData = await send(`${base}/predictions/mlp/1`, json({ data: ROWS[1] }));
    assertRowsClose(oneInData.body, expected.slice(3), 3);
  });

  test('unlabelled bodies are sniffed: PUT without a content type (curl -T), form-encoded (curl -d), text/plain', async () => {
    const expected = mlpReference(defaultMlpWeights(), ROWS.flat());
    for (const init of [
      { method: 'PUT', body: new TextEncoder().encode(JSON.stringify(ROWS)) },
      { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: JSON.stringify({ data: ROWS }) },
      { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(ROWS) },
    ] as RequestInit[]) {
      const answer = await send(`${base}/predictions/mlp`, init);
      assert.equal(answer.status, 200, answer.text);
      assertRowsClose(answer.body, expected, 3);
    }
  });

  test('multipart uploads (curl -F data=@rows.json): each part is JSON; rows of the parts in order', async () => {
    const form = new FormData();
    form.append('data', new Blob([JSON.stringify({ data: [ROWS[0]] })], { type: 'application/json' }), 'first.json');
    form.append('data', new Blob([JSON.stringify(ROWS[1])]), 'second.json');
    const answer = await send(`${base}/predictions/mlp`, { method: 'POST', body: form });
    assert.equal(answer.status, 200, answer.text);
    assertRowsClose(answer.body, mlpReference(defaultMlpWeights(), ROWS.flat()), 3);
  });

  test('classifiers with labels.txt: a {label: probability} map of the top 5 per row, highest first', async () => {
    const probabilities = mlpReference(SEVEN, ROWS.flat());
    const answer = await send(`${base}/predictions/classifier`, json({ data: ROWS }));
    assert.equal(answer.status, 200, answer.text);
    const maps = answer.body as Record<string, number>[];
    assert.equal(maps.length, 2);
    // Keys in the order of the text (JSON.parse would move the numeric-looking labels first).
    const keyOrder = [...answer.text.matchAll(/"([^"]+)":/g)].map((m) => m[1]);
    ROWS.forEach((_, r) => {
      const row = Array.from(probabilities.slice(r * 7, (r + 1) * 7));
      const top = row.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 5);
      assert.deepEqual(keyOrder.slice(r * 5, (r + 1) * 5), top.map(([, i]) => LABELS[i]));
      for (const [p, i] of top) assert.ok(Math.abs(maps[r]![LABELS[i]!]! - p) < 1e-5);
      assert.equal(Object.keys(maps[r]!).length, 5);
    });
  });

  test('a V2 inference request body works too (any number of inputs); several outputs give an object per row', async () => {
    const answer = await send(
      `${base}/predictions/add`,
      json({
        inputs: [
          { name: 'a', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 0, 0, 0, 0] },
          { name: 'b', datatype: 'FP32', shape: [2, 4], data: [1, 1, 1, 1, 5, 5, 5, 5] },
        ],
      }),
    );
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(answer.body, [
      { sum: [2, 3, 4, 5], diff: [0, 1, 2, 3] },
      { sum: [5, 5, 5, 5], diff: [-5, -5, -5, -5] },
    ]);
  });

  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
  const failures: [string, string, RequestInit, number, string, RegExp][] = [
    ['an unknown model', '/predictions/nope', json({ data: ROWS }), 404, 'ModelNotFoundException', /model 'nope' is not in the repository/],
    ['an unknown version', '/predictions/mlp/9', json({ data: ROWS }), 404, 'ModelVersionNotFoundException', /no version '9'/],
    ['an image (curl -T kitten.jpg)', '/predictions/mlp', { method: 'PUT', body: png }, 415, 'UnsupportedMediaTypeException', /image inputs are not handled yet.*application\/json/],
    ['an image/jpeg upload', '/predictions/mlp', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: 'not really' }, 415, 'UnsupportedMediaTypeException', /image.*application\/json/],
    ['text/csv', '/predictions/mlp', { method: 'POST', headers: { 'content-type': 'text/csv' }, body: '1,2,3,4\n' }, 415, 'UnsupportedMediaTypeException', /content type 'text\/csv'.*application\/json/],
    ['an unlabelled body that is not JSON', '/predictions/mlp', { method: 'PUT', body: new TextEncoder().encode('1,2,3,4') }, 415, 'UnsupportedMediaTypeException', /not JSON.*application\/json/],
    ['invalid JSON labelled application/json', '/predictions/mlp', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"data": [' }, 400, 'BadRequestException', /not valid JSON/],
    ['an empty body', '/predictions/mlp', { method: 'POST', headers: { 'content-type': 'application/json' } }, 400, 'BadRequestException', /empty/],
    ['rows for a two-input model', '/predictions/add', json({ data: [[1, 2, 3, 4]] }), 400, 'BadRequestException', /2 inputs \(a, b\).*name each input/],
    ['rows nested too deep', '/predictions/mlp', json({ data: [[[1, 2, 3, 4]]] }), 400, 'BadRequestException', /takes rows of shape \[4\]/],
    ['an object without data or instances', '/predictions/mlp', json({ rows: ROWS }), 400, 'BadRequestException', /without 'data' or 'instances'/],
    ['the wrong row width', '/predictions/mlp', json({ data: [[1, 2, 3]] }), 400, 'BadRequestException', /expected shape \[-1,4\], got \[1,3\]/],
  ];
  for (const [name, url, init, status, type, message] of failures) {
    test(`{"code", "type", "message"} ${status} ${type} for ${name}`, async () => {
      const answer = await send(`${base}${url}`, init);
      assert.equal(answer.status, status, answer.text);
      assert.match(answer.contentType ?? '', /^application\/json/);
      const error = answer.body as { code: number; type: string; message: string };
      assert.deepEqual(Object.keys(error), ['code', 'type', 'message']);
      assert.equal(error.code, status);
      assert.equal(error.type, type);
      assert.match(error.message, message);
    });
  }
});

describe('TorchServe API on a server that is not ready', () => {
  test('/ping is 503 {"status": "Unhealthy"}; a body over the limit is 413 in TorchServe shape', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeModel(repo, 'mlp', 1, mlpModel());
    // A model directory without versions is unavailable; strict readiness makes the server unready.
    await mkdir(path.join(repo, 'broken'), { recursive: true });
    await writeFile(path.join(repo, 'broken', 'config.yaml'), 'max_batch_size: 4\n');
    const server = await startTestServer(t, repo, { bodyLimitBytes: 2048 });
    const ping = await send(`${server.httpUrl}/ping`, {});
    assert.equal(ping.status, 503);
    assert.deepEqual(ping.body, { status: 'Unhealthy' });
    const big = await send(`${server.httpUrl}/predictions/mlp`, json({ data: Array.from({ length: 600 }, () => [1, 2, 3, 4]) }));
    assert.equal(big.status, 413);
    assert.deepEqual(Object.keys(big.body as object), ['code', 'type', 'message']);
    assert.match((big.body as { message: string }).message, /exceeds the limit of 2048 bytes/);
    // Healthy models still answer while another is broken.
    const ok = await send(`${server.httpUrl}/predictions/mlp`, json({ data: ROWS }));
    assert.equal(ok.status, 200);
  });
});

import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import sharp from 'sharp';
import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { startTestServer, writeFakeModel } from './support/server.js';

/**
 * TorchServe's /predictions through a model's handler: what reaches the handler from a multipart
 * upload (text fields in `fields`, files with their names), requests that are being preprocessed
 * while their model is unregistered or reloaded, and custom handlers that throw odd values.
 */

const ONE = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1], copy_of: 'x' }] };

/** Preprocessing waits on a gate the test opens (handlers run on the server's thread, so globalThis is shared). */
const GATED = `
export async function preprocess() {
  const gate = globalThis.__tesseraTestGate;
  if (gate !== undefined) {
    gate.entered();
    await gate.opened;
  }
  return { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [1] }] };
}
export function postprocess(outputs) { return { y: Array.from(outputs[0].data) }; }
`;

/** Echoes what preprocess received, or throws what `?throw=` names. */
const ECHO = `
export function preprocess(request) {
  const kind = request.fields.throw;
  if (kind === 'nullproto') throw Object.create(null);
  if (kind === 'getter') { const e = new Error('x'); Object.defineProperty(e, 'message', { get() { throw new Error('getter boom'); } }); throw e; }
  const seen = { fields: request.fields, files: request.files.map((f) => ({ fieldName: f.fieldName, filename: f.filename ?? null, contentType: f.contentType ?? null, text: f.data.toString('utf8') })) };
  return { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [1] }], context: seen };
}
export function postprocess(outputs, model, context) { return context; }
`;

interface Gate {
  readonly entered: () => void;
  readonly opened: Promise<void>;
}

/** Install a gate; resolves `inside` once a preprocess waits on it. */
function installGate(t: TestContext): { inside: Promise<void>; open: () => void } {
  let entered!: () => void;
  let open!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  const opened = new Promise<void>((resolve) => (open = resolve));
  (globalThis as { __tesseraTestGate?: Gate }).__tesseraTestGate = { entered, opened };
  t.after(() => {
    open();
    delete (globalThis as { __tesseraTestGate?: Gate }).__tesseraTestGate;
  });
  return { inside, open };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function gatedServer(t: TestContext, shutdownGraceMs?: number): Promise<{ server: TesseraServer; admin: string }> {
  const repo = await makeTempRepository();
  t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  await writeFakeModel(repo, 'm', 1, ONE, 'max_batch_size: 4\ninstance_group: [{count: 1}]\n');
  await writeFile(join(repo, 'm', 'handler.mjs'), GATED);
  const server = await startTestServer(t, repo, { strictReadiness: false, ...(shutdownGraceMs === undefined ? {} : { shutdownGraceMs }) });
  return { server, admin: `http://127.0.0.1:${server.managementPort}` };
}

async function answerOf(response: Promise<Response>): Promise<{ status: number; body: Record<string, unknown>; version: string | null }> {
  const r = await response;
  return { status: r.status, body: (await r.json()) as Record<string, unknown>, version: r.headers.get('x-model-version') };
}

describe('TorchServe handler requests', () => {
  test('a request being preprocessed when its model is unregistered is served by the version that admitted it; the unregister waits for it', async (t) => {
    const { server, admin } = await gatedServer(t);
    const gate = installGate(t);
    const pending = answerOf(fetch(`${server.httpUrl}/predictions/m`, { method: 'POST', body: '{}' }));
    await gate.inside;
    let unregistered = false;
    const deleted = fetch(`${admin}/models/m`, { method: 'DELETE' }).then((r) => {
      unregistered = true;
      return r.status;
    });
    await until(() => server.engine.describeModels('m')[0]!.loaded === false, 'the unregister started');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(unregistered, false, 'the unregister waits for the admitted request');
    gate.open();
    const answer = await pending;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(answer.body, { y: [1] });
    assert.equal(answer.version, '1');
    assert.equal(await deleted, 200);
    const after = await answerOf(fetch(`${server.httpUrl}/predictions/m`, { method: 'POST', body: '{}' }));
    assert.equal(after.status, 503, 'new requests find the model unloaded');
  });

  test('a request still preprocessing after the drain grace gets 503 MODEL_UNAVAILABLE, not 404', async (t) => {
    const { server, admin } = await gatedServer(t, 200);
    const gate = installGate(t);
    const pending = answerOf(fetch(`${server.httpUrl}/predictions/m`, { method: 'POST', body: '{}' }));
    await gate.inside;
    assert.equal((await fetch(`${admin}/models/m`, { method: 'DELETE' })).status, 200, 'the unregister ends after the grace');
    gate.open();
    const answer = await pending;
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.equal(answer.body['type'], 'ServiceUnavailableException');
    assert.match(String(answer.body['message']), /model 'm' version 1 is (UNLOADING|UNAVAILABLE)/);
  });

  test('a request being preprocessed during a reload (scale) is served by the version that preprocessed it', async (t) => {
    const { server, admin } = await gatedServer(t);
    const gate = installGate(t);
    const pending = answerOf(fetch(`${server.httpUrl}/predictions/m`, { method: 'POST', body: '{}' }));
    await gate.inside;
    const scaled = fetch(`${admin}/models/m?min_worker=2`, { method: 'PUT' }).then((r) => r.status);
    await until(() => server.engine.describeModels('m')[0]!.versions[0]!.instances === 2, 'the new version serves');
    gate.open();
    const answer = await pending;
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(await scaled, 200);
  });

  test('multipart: text fields reach the handler as fields, files keep their names; the image handler ignores text fields', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'echo', 1, ONE, 'max_batch_size: 4\n');
    await writeFile(join(repo, 'echo', 'handler.mjs'), ECHO);
    const image = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3, 4, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3, 4, 4], copy_of: 'x' }] };
    await writeFakeModel(repo, 'img', 1, image, 'max_batch_size: 4\nhandler: image\nhandler_options:\n  top_k: 2\n');
    await writeFakeModel(repo, 'tab', 1, { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }] }, 'max_batch_size: 4\nhandler: tabular\nhandler_options:\n  feature_order: [a, b]\n  task: regression\n');
    await writeFakeModel(repo, 'rows', 1, { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }] }, 'max_batch_size: 4\n');
    const server = await startTestServer(t, repo);
    const url = (model: string, query = ''): string => `${server.httpUrl}/predictions/${model}${query}`;

    const echo = new FormData();
    echo.append('data', new Blob(['{"a":1}'], { type: 'application/json' }), 'in.json');
    echo.append('mode', 'fast');
    echo.append('q', 'from the form');
    const echoed = await answerOf(fetch(url('echo', '?q=1&k=2'), { method: 'POST', body: echo }));
    assert.equal(echoed.status, 200, JSON.stringify(echoed.body));
    assert.deepEqual(echoed.body, {
      fields: { q: 'from the form', k: '2', mode: 'fast' },
      files: [{ fieldName: 'data', filename: 'in.json', contentType: 'application/json', text: '{"a":1}' }],
    });

    const png = await sharp(Buffer.alloc(8 * 8 * 3, 100), { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();
    const withText = new FormData();
    withText.append('data', new Blob([png], { type: 'image/png' }), 'kitten.png');
    withText.append('topk', '3');
    const classified = await answerOf(fetch(url('img'), { method: 'POST', body: withText }));
    assert.equal(classified.status, 200, JSON.stringify(classified.body));
    assert.equal(Object.keys(classified.body).length, 2, 'one image: one top-2 map');
    const broken = new FormData();
    broken.append('data', new Blob(['not an image'], { type: 'image/png' }), 'kitten.png');
    const refused = await answerOf(fetch(url('img'), { method: 'POST', body: broken }));
    assert.equal(refused.status, 400);
    assert.match(String(refused.body['message']), /^image 0 \('kitten\.png'\) cannot be decoded/);

    // -F data='<json>' (a text field named data) is the input, for handlers and the default path alike.
    const typed = new FormData();
    typed.append('data', JSON.stringify({ instances: [{ a: 1, b: 2 }] }));
    typed.append('note', 'ignored by the tabular handler');
    const tabular = await answerOf(fetch(url('tab'), { method: 'POST', body: typed }));
    assert.equal(tabular.status, 200, JSON.stringify(tabular.body));
    assert.deepEqual(tabular.body, { predictions: [[1, 2]] });
    const rows = new FormData();
    rows.append('data', '[[1, 2], [3, 4]]');
    const plain = await fetch(url('rows'), { method: 'POST', body: rows });
    assert.equal(plain.status, 200);
    assert.deepEqual(await plain.json(), [[1, 2], [3, 4]]);
  });

  test('a custom handler throwing an object without a prototype, or an Error whose message getter throws, is a 400 saying so', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'echo', 1, ONE, 'max_batch_size: 4\n');
    await writeFile(join(repo, 'echo', 'handler.mjs'), ECHO);
    const server = await startTestServer(t, repo);
    for (const [kind, message] of [
      ['nullproto', 'handler preprocess failed: a value that cannot be shown as text (an object without a prototype)'],
      ['getter', 'handler preprocess failed: an instance of Error whose message cannot be read'],
    ] as const) {
      const answer = await answerOf(fetch(`${server.httpUrl}/predictions/echo?throw=${kind}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }));
      assert.equal(answer.status, 400, `${kind}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body['message'], message);
    }
  });
  test("a postprocess answer made of a tensor's own values (typed arrays, INT64 BigInts) is written as JSON; one that refers to itself is HANDLER_FAILED naming where", async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(repo, 'raw', 1, ONE, 'max_batch_size: 4\n');
    await writeFile(
      join(repo, 'raw', 'handler.mjs'),
      `export function preprocess(request) {
  return { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 1], data: [0.5, 2] }], context: request.fields.kind };
}
export function postprocess(outputs, model, kind) {
  if (kind === 'cycle') { const answer = { scores: [] }; answer.scores.push({ parent: answer }); return answer; }
  const shared = { unit: 'ms' };
  return { y: outputs[0].data, ids: BigInt64Array.of(-3n, 9007199254740993n), total: 2n ** 64n, nan: Float32Array.of(NaN), a: shared, b: shared };
}
`,
    );
    const server = await startTestServer(t, repo);
    const url = (kind: string): string => `${server.httpUrl}/predictions/raw?kind=${kind}`;
    const plain = await fetch(url('plain'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const text = await plain.text();
    assert.equal(plain.status, 200, text);
    assert.equal(text, '{"y":[0.5,2],"ids":[-3,9007199254740993],"total":18446744073709551616,"nan":[null],"a":{"unit":"ms"},"b":{"unit":"ms"}}');
    const cycle = await answerOf(fetch(url('cycle'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }));
    assert.equal(cycle.status, 500, JSON.stringify(cycle.body));
    assert.equal(cycle.body['message'], 'handler postprocess returned an answer that refers to itself at $.scores[0].parent, which JSON cannot hold');
    const after = await fetch(url('plain'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(after.status, 200, 'the server goes on serving');
  });
});

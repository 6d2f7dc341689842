/**
 * Request and response encodings against a real server: gzip/deflate request bodies (bounded:
 * the body limit applies after decompression, so a zip bomb is a 413), unknown encodings 415,
 * gzip/deflate responses above the threshold when the client accepts them, the body-size 413,
 * and content types. undici's request() is used where raw (undecoded) bytes matter.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deflateRawSync, deflateSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import { request } from 'undici';

import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { fakeModelJson, startTestServer } from './support/server.js';

const WIDTH = 300;
const LIMIT = 256 * 1024;

async function writeIdentity(repo: string): Promise<void> {
  await mkdir(path.join(repo, 'wide', '1'), { recursive: true });
  await writeFile(
    path.join(repo, 'wide', '1', 'model.json'),
    fakeModelJson({ inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, WIDTH] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, WIDTH], copy_of: 'x' }] }),
  );
  await writeFile(path.join(repo, 'wide', 'config.yaml'), 'backend: fake\n');
}

const row = Array.from({ length: WIDTH }, (_, i) => i / 7);
const v2Body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: row }] });
const expectedY = Array.from(new Float32Array(row));

interface Raw {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly bytes: Buffer;
}

async function raw(url: string, options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Raw> {
  const response = await request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, body: options.body ?? null });
  return { status: response.statusCode, headers: response.headers, bytes: Buffer.from(await response.body.arrayBuffer()) };
}

function errorOf(answer: Raw): string {
  assert.match(String(answer.headers['content-type']), /^application\/json/);
  const body = JSON.parse(answer.bytes.toString()) as { error: string };
  assert.deepEqual(Object.keys(body), ['error']);
  return body.error;
}

describe('HTTP compression, body limits and content types', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';

  before(async () => {
    repo = await makeTempRepository();
    await writeIdentity(repo);
    server = await startTestServer(undefined, repo, { bodyLimitBytes: LIMIT });
    base = server.httpUrl;
  });
  after(async () => {
    await server?.close();
    if (repo !== '') await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('gzip, x-gzip, deflate (zlib) and raw deflate request bodies are decompressed', async () => {
    for (const [encoding, body] of [
      ['gzip', gzipSync(v2Body)],
      ['x-gzip', gzipSync(v2Body)],
      ['deflate', deflateSync(v2Body)],
      ['deflate', deflateRawSync(v2Body)],
      ['gzip, identity', gzipSync(v2Body)],
    ] as const) {
      const answer = await raw(`${base}/v2/models/wide/infer`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body });
      assert.equal(answer.status, 200, `${encoding}: ${answer.bytes.toString()}`);
      assert.deepEqual((JSON.parse(answer.bytes.toString()) as { outputs: { data: number[] }[] }).outputs[0]!.data, expectedY);
    }
    // The other protocols read the same decoded body.
    const tf = await raw(`${base}/v1/models/wide:predict`, { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify({ instances: [row] })) });
    assert.equal(tf.status, 200);
  });

  test('an unknown Content-Encoding is 415; corrupt gzip is 400', async () => {
    const br = await raw(`${base}/v2/models/wide/infer`, { method: 'POST', headers: { 'content-encoding': 'br' }, body: v2Body });
    assert.equal(br.status, 415);
    assert.match(errorOf(br), /Content-Encoding 'br' is not supported; send gzip, deflate or identity/);
    const corrupt = await raw(`${base}/v2/models/wide/infer`, { method: 'POST', headers: { 'content-encoding': 'gzip' }, body: Buffer.from('definitely not gzip') });
    assert.equal(corrupt.status, 400);
    assert.match(errorOf(corrupt), /not valid gzip data/);
  });

  test('a zip bomb stops at the body limit: 413 after decompression, for every protocol', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * LIMIT));
    assert.ok(bomb.length < LIMIT / 8, 'the compressed bomb itself is well under the limit');
    // The same bomb with a corrupt gzip trailer (CRC-32 and length, its last 8 bytes): zlib finds
    // that only at the end of the stream, after inflating all 64 × the limit. Decompression that
    // stops at the limit never gets there (413); decompressing the whole body and then checking
    // its size would answer 400 "not valid gzip data".
    const corruptEnd = Buffer.from(bomb);
    for (let i = corruptEnd.length - 8; i < corruptEnd.length; i++) corruptEnd[i] = corruptEnd[i]! ^ 0xff;
    assert.throws(() => gunzipSync(corruptEnd), /incorrect data check|incorrect length check/, 'decompressed whole, the corrupt bomb is refused as gzip');
    for (const url of ['/v2/models/wide/infer', '/v1/models/wide:predict', '/predictions/wide']) {
      for (const [what, body] of [
        ['bomb', bomb],
        ['bomb with a corrupt trailer', corruptEnd],
      ] as const) {
        const answer = await raw(`${base}${url}`, { method: 'POST', headers: { 'content-encoding': 'gzip' }, body });
        assert.equal(answer.status, 413, `${url}, ${what}: ${answer.bytes.toString()}`);
        const error = JSON.parse(answer.bytes.toString()) as { error?: string; message?: string };
        assert.match(error.error ?? error.message ?? '', new RegExp(`gzip-decompressed request body exceeds the limit of ${LIMIT} bytes`), `${url}, ${what}`);
      }
    }
  });

  test('a plain body over the limit is 413 {"error": ...}', async () => {
    const answer = await raw(`${base}/v2/models/wide/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.alloc(LIMIT + 1, 0x20) });
    assert.equal(answer.status, 413);
    assert.match(errorOf(answer), new RegExp(`exceeds the limit of ${LIMIT} bytes`));
  });

  test('responses are gzip/deflate compressed above the threshold when accepted, with Vary', async () => {
    const plain = await raw(`${base}/v2/models/wide/infer`, { method: 'POST', body: v2Body });
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(plain.bytes.length > 1024);
    for (const [encoding, decode] of [
      ['gzip', gunzipSync],
      ['deflate', inflateSync],
    ] as const) {
      const answer = await raw(`${base}/v2/models/wide/infer`, { method: 'POST', headers: { 'accept-encoding': encoding }, body: v2Body });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers['content-encoding'], encoding);
      assert.match(String(answer.headers['vary']), /accept-encoding/i);
      assert.match(String(answer.headers['content-type']), /^application\/json/);
      assert.ok(answer.bytes.length < plain.bytes.length);
      assert.deepEqual(decode(answer.bytes), plain.bytes);
    }
  });

  test('small responses are not compressed; binary responses are, and their header length is of the uncompressed JSON', async () => {
    const live = await raw(`${base}/v2/health/live`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(live.headers['content-encoding'], undefined);
    assert.deepEqual(JSON.parse(live.bytes.toString()), { live: true });
    const binary = await raw(`${base}/v2/models/wide/infer`, {
      method: 'POST',
      headers: { 'accept-encoding': 'gzip' },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, WIDTH], data: row }], parameters: { binary_data_output: true } }),
    });
    assert.equal(binary.headers['content-type'], 'application/octet-stream');
    assert.equal(binary.headers['content-encoding'], 'gzip');
    const body = gunzipSync(binary.bytes);
    const headerLength = Number(binary.headers['inference-header-content-length']);
    assert.equal(body.length, headerLength + WIDTH * 4);
    assert.deepEqual(Array.from(new Float32Array(new Uint8Array(body.subarray(headerLength)).buffer)), expectedY);
  });

  test('content types: JSON for answers and every error, including 404 and TF Serving and TorchServe errors', async () => {
    for (const [method, url, body] of [
      ['GET', '/v2', undefined],
      ['GET', '/v2/models/wide', undefined],
      ['GET', '/no/such/path', undefined],
      ['POST', '/v2/models/wide/infer', '{'],
      ['POST', '/v1/models/wide:predict', '{'],
      ['GET', '/v1/models/wide', undefined],
      ['POST', '/predictions/wide', '[[1]]'],
      ['GET', '/ping', undefined],
    ] as const) {
      const answer = await raw(`${base}${url}`, { method, ...(body === undefined ? {} : { body }) });
      assert.match(String(answer.headers['content-type']), /^application\/json/, `${method} ${url} → ${answer.status}`);
      JSON.parse(answer.bytes.toString());
    }
  });
});

describe('compression settings', () => {
  test('responseCompression: false never compresses; compressionThresholdBytes lowers the threshold', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeIdentity(repo);
    const off = await startTestServer(t, repo, { responseCompression: false });
    const big = await raw(`${off.httpUrl}/v2/models/wide/infer`, { method: 'POST', headers: { 'accept-encoding': 'gzip' }, body: v2Body });
    assert.equal(big.status, 200);
    assert.equal(big.headers['content-encoding'], undefined);
    const low = await startTestServer(t, repo, { compressionThresholdBytes: 8 });
    const small = await raw(`${low.httpUrl}/v2/health/live`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(small.headers['content-encoding'], 'gzip');
    assert.deepEqual(JSON.parse(gunzipSync(small.bytes).toString()), { live: true });
  });
});

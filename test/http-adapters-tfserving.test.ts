import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { TesseraServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';
import { getJson, postJson, startTestServer, writeFakeModel } from './support/server.js';

/**
 * JSON values the TF Serving and TorchServe adapters convert: `{"b64"}` strings decoded strictly,
 * numbers beyond FP32 / FP16 refused instead of stored as ±Infinity; and TF Serving's version
 * addressing: `/labels/{l}` resolves the model's aliases, `/versions/{v}` is a number, and status
 * and metadata report the version number served.
 */

const copy = (datatype: string, shape: number[]): Parameters<typeof writeFakeModel>[3] => ({
  inputs: [{ name: 'x', datatype, shape }],
  outputs: [{ name: 'y', datatype, shape, copy_of: 'x' }],
});

describe('TF Serving and TorchServe JSON values', () => {
  let repo = '';
  let server: TesseraServer;
  let base = '';
  let admin = '';

  before(async () => {
    repo = await makeTempRepository();
    await writeFakeModel(repo, 'f32', 1, copy('FP32', [-1, 2]));
    await writeFakeModel(repo, 'f16', 1, copy('FP16', [-1, 2]));
    await writeFakeModel(repo, 'blob', 1, { inputs: [{ name: 'blob', datatype: 'BYTES', shape: [-1] }], outputs: [{ name: 'out_bytes', datatype: 'BYTES', shape: [-1], copy_of: 'blob' }] });
    await writeFakeModel(repo, 'tab16', 1, copy('FP16', [-1, 2]), 'max_batch_size: 4\nhandler: tabular\nhandler_options:\n  feature_order: [a, b]\n');
    for (const version of [1, 2]) {
      await writeFakeModel(repo, 'multi', version, { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1], copy_of: 'x', add: version * 100 }] }, 'version_policy:\n  all: {}\n');
    }
    server = await startTestServer(undefined, repo);
    base = server.httpUrl;
    admin = `http://127.0.0.1:${server.managementPort}`;
  });

  after(async () => {
    await server.close();
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('{"b64"} strings: standard and URL-safe alphabets, padding optional; anything else is a 400 naming the element', async () => {
    const bytes = Buffer.from([0xfb, 0xff, 0xbf, 0x68, 0x69]); // both alphabets' last two characters appear
    for (const b64 of [bytes.toString('base64'), bytes.toString('base64url'), bytes.toString('base64').replace(/=+$/, '')]) {
      const answer = await postJson(`${base}/v1/models/blob:predict`, { instances: [{ b64 }] });
      assert.equal(answer.status, 200, `${b64}: ${JSON.stringify(answer.body)}`);
      assert.deepEqual(answer.body, { predictions: [{ b64: bytes.toString('base64') }] });
    }
    const refusals: [unknown, RegExp][] = [
      [{ instances: [{ b64: '!!!not base64***' }] }, /input 'blob': element 0, \{"b64": "!!!not base64\*\*\*"\}, is not valid base64: character "!" at offset 0 is not in the base64 alphabet/],
      [{ instances: ['ok', { b64: 'aGVsbG8=garbage' }] }, /element 1, .* character "=" at offset 7/],
      [{ inputs: [{ b64: '%%%%' }] }, /element 0, .* character "%" at offset 0/],
      [{ instances: [{ b64: 'aGVsbG8==' }] }, /its padding is wrong: 9 characters/],
      [{ instances: [{ b64: 'aGVsb' }] }, /5 base64 characters cannot encode whole bytes/],
      [{ instances: [{ b64: 'a+b_' }] }, /mixes the standard .* and URL-safe .* alphabets/],
    ];
    for (const [body, message] of refusals) {
      const answer = await postJson(`${base}/v1/models/blob:predict`, body);
      assert.equal(answer.status, 400, JSON.stringify(body));
      assert.match((answer.body as { error: string }).error, message);
    }
  });

  test('numbers beyond FP32 / FP16 are a 400 naming the input, element, value and range (TF Serving, TorchServe, the tabular handler)', async () => {
    const refusals: [string, unknown, RegExp][] = [
      ['/v1/models/f32:predict', { instances: [[1, 2], [3, 1e39]] }, /^input 'x': element 3: 1e\+39 is outside the FP32 range \(finite values of magnitude up to 3\.4028234663852886e\+38/],
      ['/v1/models/f32:predict', { inputs: [[-3.5e38, 1]] }, /element 0: -3\.5e\+38 is outside the FP32 range.*-Infinity/],
      ['/v1/models/f16:predict', { instances: [[70000, 1]] }, /^input 'x': element 0: 70000 is outside the FP16 range \(finite values of magnitude up to 65504/],
      ['/v1/models/f16:predict', { instances: [[1, -65520]] }, /element 1: -65520 is outside the FP16 range/],
    ];
    for (const [url, body, message] of refusals) {
      const answer = await postJson(`${base}${url}`, body);
      assert.equal(answer.status, 400, `${url} ${JSON.stringify(body)}`);
      assert.match((answer.body as { error: string }).error, message);
    }
    const torch = await postJson(`${base}/predictions/f32`, '[[1e39, 1]]');
    assert.equal(torch.status, 400);
    assert.match((torch.body as { message: string }).message, /input 'x': element 0: 1e\+39 is outside the FP32 range/);
    const tabular = await postJson(`${base}/predictions/tab16`, { instances: [{ a: 1, b: 70000 }] });
    assert.equal(tabular.status, 400);
    assert.match((tabular.body as { message: string }).message, /record 0, feature 'b': 70000 is outside the FP16 range .*\(input 'x' is FP16\)/);
    // The largest finite values (and those that round down to them) still pass.
    const edge = await postJson(`${base}/v1/models/f16:predict`, { instances: [[65504, -65519]] });
    assert.deepEqual(edge.body, { predictions: [[65504, -65504]] });
    const edge32 = await postJson(`${base}/v1/models/f32:predict`, { instances: [[3.4028234663852886e38, 1]] });
    assert.deepEqual(edge32.body, { predictions: [[3.4028234663852886e38, 1]] });
  });

  test('/labels/{l} resolves the model\'s aliases; /versions/{v} takes a number; status and metadata report the version number', async () => {
    const alias = await fetch(`${admin}/models/multi/aliases/stable`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"version":"1"}' });
    assert.equal(alias.status, 200, await alias.text());
    const predicted = await postJson(`${base}/v1/models/multi/labels/stable:predict`, { instances: [[1]] });
    assert.deepEqual(predicted.body, { predictions: [[101]] }, 'served by version 1');
    const status = await getJson(`${base}/v1/models/multi/labels/stable`);
    assert.deepEqual(status.body, { model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }] });
    const metadata = await getJson(`${base}/v1/models/multi/labels/stable/metadata`);
    assert.deepEqual((metadata.body as { model_spec: unknown }).model_spec, { name: 'multi', signature_name: '', version: '1' });
    // A version number with leading zeros is that version (TF Serving parses an int64).
    assert.deepEqual((await getJson(`${base}/v1/models/multi/versions/002/metadata`)).body, { ...(metadata.body as object), model_spec: { name: 'multi', signature_name: '', version: '2' } });
    assert.deepEqual((await postJson(`${base}/v1/models/multi/versions/01:predict`, { instances: [[1]] })).body, { predictions: [[101]] });

    for (const path of ['/versions/stable:predict', '/versions/stable', '/versions/stable/metadata', '/versions/-1:predict']) {
      const answer = path.endsWith(':predict') ? await postJson(`${base}/v1/models/multi${path}`, { instances: [[1]] }) : await getJson(`${base}/v1/models/multi${path}`);
      assert.equal(answer.status, 400, path);
      assert.match((answer.body as { error: string }).error, /version '.*' in \/versions\/\{version\} is not a version number.*\/labels\/\{label\}/);
    }
    const unknown = await postJson(`${base}/v1/models/multi/labels/canary:predict`, { instances: [[1]] });
    assert.equal(unknown.status, 404);
    assert.match((unknown.body as { error: string }).error, /model 'multi' has no version labelled 'canary'; labels are the model's aliases/);
    assert.equal((await getJson(`${base}/v1/models/nope/labels/stable`)).status, 404);
  });
});

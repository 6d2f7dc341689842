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

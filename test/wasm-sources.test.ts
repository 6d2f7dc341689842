import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { generatedModule, WASM_SOURCES } from '../scripts/build-wasm.js';

test('each generated WebAssembly module is assembled from its current .wat source (npm run build:wasm)', async () => {
  for (const source of WASM_SOURCES) {
    assert.equal(await readFile(source.module, 'utf8'), await generatedModule(source.wat), `${source.module} is out of date: run npm run build:wasm`);
  }
});

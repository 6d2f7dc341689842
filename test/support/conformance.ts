/**
 * The backend conformance suite: what every {@link Backend} must do for the engine to rely on
 * it. `backendConformance(subject)` registers the suite with node:test for one backend; the
 * subject says how to create the backend and how to write its test models into a directory.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { Backend, BackendModel, BackendModelSpec } from '../../src/backends/backend.js';
import { TesseraError } from '../../src/core/errors.js';
import type { Tensor } from '../../src/core/tensor.js';

/** Datatypes the identity models of the suite carry. */
export type ConformanceDatatype = 'FP32' | 'INT64' | 'BYTES';

export interface ConformanceSubject {
  /** Suite title, e.g. "OnnxBackend". */
  readonly name: string;
  /** A fresh backend. */
  create(): Backend;
  /**
   * Write an identity model (input `x` → output `y`, both `datatype` with declared `shape`,
   * -1 for a variable dim) into `dir`; returns the model file's path.
   */
  writeIdentity(dir: string, datatype: ConformanceDatatype, shape: readonly number[]): Promise<string>;
  /**
   * Write the two-input, two-output model into `dir`: inputs `a`, `b` FP32 [-1, 4], outputs
   * `sum`, `diff` FP32 [-1, 4], element-wise as {@link ConformanceSubject.twoInTwoOut} computes them.
   */
  writeTwoInTwoOut(dir: string): Promise<string>;
  /** The reference of the two-input model for one element. */
  twoInTwoOut(a: number, b: number): { readonly sum: number; readonly diff: number };
}

function spec(modelPath: string, instanceCount = 1): BackendModelSpec {
  return { name: 'conformance', version: '1', modelPath, instanceCount, parameters: {} };
}

function fp32(name: string, shape: number[], values: readonly number[]): Tensor {
  return { name, datatype: 'FP32', shape, data: Float32Array.from(values) };
}

function tensorOf(tensors: readonly Tensor[], name: string): Tensor {
  const found = tensors.find((t) => t.name === name);
  assert.ok(found !== undefined, `no output '${name}' among ${tensors.map((t) => t.name).join(', ')}`);
  return found;
}

/** Plain values of a tensor's data, for deepEqual (bigints stay bigints, bytes become strings). */
function valuesOf(tensor: Tensor): unknown[] {
  if (tensor.datatype === 'BYTES') return tensor.data.map((b) => Buffer.from(b).toString('utf8'));
  return Array.from(tensor.data as ArrayLike<number | bigint>);
}

async function assertLoadFailure(promise: Promise<BackendModel>, file: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof TesseraError, `expected a TesseraError, got ${String(error)}`);
    assert.equal(error.code, 'MODEL_LOAD_FAILED');
    assert.ok(error.message.includes(file), `the message names the file ${file}: ${error.message}`);
    return true;
  });
}

/** Register the conformance suite for one backend. */
export function backendConformance(subject: ConformanceSubject): void {
  describe(`backend conformance: ${subject.name}`, () => {
    let root = '';
    let counter = 0;
    /** A fresh directory for one model. */
    const dir = (): string => path.join(root, `m${counter++}`);
    const open: BackendModel[] = [];
    const load = async (backend: Backend, modelPath: string, instances = 1): Promise<BackendModel> => {
      const model = await backend.load(spec(modelPath, instances));
      open.push(model);
      return model;
    };

    before(async () => {
      root = await mkdtemp(path.join(tmpdir(), 'tessera-conformance-'));
    });
    after(async () => {
      await Promise.all(open.map((model) => model.close()));
      if (root !== '') await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    });

    test('load reports inputs and outputs, -1 for variable dims, and the instances asked for', async () => {
      const backend = subject.create();
      assert.equal(typeof backend.name, 'string');
      assert.ok(backend.defaultModelFilename.length > 0);
      const dynamic = await load(backend, await subject.writeIdentity(dir(), 'FP32', [-1, 3]), 2);
      assert.deepEqual(dynamic.inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }]);
      assert.deepEqual(dynamic.outputs, [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }]);
      assert.deepEqual(dynamic.instances.map((i) => i.index), [0, 1]);

      const fixed = await load(backend, await subject.writeIdentity(dir(), 'INT64', [2, 3]));
      assert.deepEqual(fixed.inputs, [{ name: 'x', datatype: 'INT64', shape: [2, 3] }]);
      assert.deepEqual(fixed.outputs, [{ name: 'y', datatype: 'INT64', shape: [2, 3] }]);

      const bytes = await load(backend, await subject.writeIdentity(dir(), 'BYTES', [-1]));
      assert.deepEqual(bytes.inputs, [{ name: 'x', datatype: 'BYTES', shape: [-1] }]);

      const two = await load(backend, await subject.writeTwoInTwoOut(dir()));
      assert.deepEqual(two.inputs, [
        { name: 'a', datatype: 'FP32', shape: [-1, 4] },
        { name: 'b', datatype: 'FP32', shape: [-1, 4] },
      ]);
      assert.deepEqual(two.outputs.map((o) => o.name).sort(), ['diff', 'sum']);
    });

    test('execute: FP32 identity returns the input, with timings', async () => {
      const model = await load(subject.create(), await subject.writeIdentity(dir(), 'FP32', [-1, 3]));
      const values = [1.5, -2.25, 0, 3.125, 1e-7, -1e7];
      const result = await model.instances[0]!.execute([fp32('x', [2, 3], values)], ['y']);
      assert.equal(result.outputs.length, 1);
      const y = result.outputs[0]!;
      assert.equal(y.name, 'y');
      assert.equal(y.datatype, 'FP32');
      assert.deepEqual([...y.shape], [2, 3]);
      assert.ok(y.data instanceof Float32Array);
      assert.deepEqual(valuesOf(y), values.map(Math.fround));
      for (const key of ['inputNs', 'inferNs', 'outputNs'] as const) {
        assert.ok(Number.isFinite(result.timings[key]) && result.timings[key] >= 0, `${key} = ${result.timings[key]}`);
      }
    });

    test('execute: INT64 identity keeps 64-bit values exactly', async () => {
      const model = await load(subject.create(), await subject.writeIdentity(dir(), 'INT64', [-1, 2]));
      const values = [2n ** 62n, -(2n ** 62n), 3_000_000_000n, -1n];
      const result = await model.instances[0]!.execute([{ name: 'x', datatype: 'INT64', shape: [2, 2], data: BigInt64Array.from(values) }], ['y']);
      const y = tensorOf(result.outputs, 'y');
      assert.equal(y.datatype, 'INT64');
      assert.ok(y.data instanceof BigInt64Array);
      assert.deepEqual([...y.shape], [2, 2]);
      assert.deepEqual(valuesOf(y), values);
    });

    test('execute: BYTES identity returns the same utf-8 bytes', async () => {
      const model = await load(subject.create(), await subject.writeIdentity(dir(), 'BYTES', [-1]));
      const strings = ['alpha', 'ünïcödé', '漢字', '🦊', ''];
      const result = await model.instances[0]!.execute(
        [{ name: 'x', datatype: 'BYTES', shape: [strings.length], data: strings.map((s) => Buffer.from(s, 'utf8')) }],
        ['y'],
      );
      const y = tensorOf(result.outputs, 'y');
      assert.equal(y.datatype, 'BYTES');
      assert.deepEqual([...y.shape], [strings.length]);
      assert.ok(y.data.every((b) => Buffer.isBuffer(b)), 'BYTES elements are Buffers');
      assert.deepEqual(valuesOf(y), strings);
    });

    test('execute: two inputs, outputs in the order asked, and subsets', async () => {
      const model = await load(subject.create(), await subject.writeTwoInTwoOut(dir()));
      const a = [1, 2, 3, 4, 5, 6, 7, 8];
      const b = [8, 7, 6, 5, 4, 3, 2, 1.5];
      const sum = a.map((v, i) => Math.fround(subject.twoInTwoOut(v, b[i]!).sum));
      const diff = a.map((v, i) => Math.fround(subject.twoInTwoOut(v, b[i]!).diff));
      const instance = model.instances[0]!;
      const both = await instance.execute([fp32('a', [2, 4], a), fp32('b', [2, 4], b)], ['diff', 'sum']);
      assert.deepEqual(both.outputs.map((o) => o.name), ['diff', 'sum']);
      assert.deepEqual(valuesOf(both.outputs[0]!), diff);
      assert.deepEqual(valuesOf(both.outputs[1]!), sum);
      const only = await instance.execute([fp32('a', [2, 4], a), fp32('b', [2, 4], b)], ['sum']);
      assert.deepEqual(only.outputs.map((o) => o.name), ['sum']);
      assert.deepEqual([...only.outputs[0]!.shape], [2, 4]);
      assert.deepEqual(valuesOf(only.outputs[0]!), sum);
    });

    test('several instances execute at once, each returning its own result', async () => {
      const count = 3;
      const model = await load(subject.create(), await subject.writeIdentity(dir(), 'FP32', [-1, 4]), count);
      assert.equal(model.instances.length, count);
      for (let round = 0; round < 3; round++) {
        const inputs = model.instances.map((_, i) => Array.from({ length: 8 * (i + 1) }, (_v, k) => round * 1000 + i * 100 + k));
        const results = await Promise.all(
          model.instances.map((instance, i) => instance.execute([fp32('x', [2 * (i + 1), 4], inputs[i]!)], ['y'])),
        );
        results.forEach((result, i) => {
          const y = tensorOf(result.outputs, 'y');
          assert.deepEqual([...y.shape], [2 * (i + 1), 4], `instance ${i} shape`);
          assert.deepEqual(valuesOf(y), inputs[i], `instance ${i} returned another instance's data`);
        });
      }
    });

    test('a missing model file rejects with MODEL_LOAD_FAILED naming the file', async () => {
      const missing = path.join(dir(), '1', subject.create().defaultModelFilename);
      await assertLoadFailure(subject.create().load(spec(missing)), missing);
    });

    test('a corrupt model file rejects with MODEL_LOAD_FAILED naming the file', async () => {
      const file = path.join(root, `corrupt-${counter++}-${subject.create().defaultModelFilename}`);
      await writeFile(file, Buffer.from('\x08\x07garbage: this is neither a model nor valid JSON {{{', 'latin1'));
      await assertLoadFailure(subject.create().load(spec(file, 2)), file);
      // A failed load leaves the backend usable.
      const model = await load(subject.create(), await subject.writeIdentity(dir(), 'FP32', [-1, 2]));
      const result = await model.instances[0]!.execute([fp32('x', [1, 2], [7, 8])], ['y']);
      assert.deepEqual(valuesOf(result.outputs[0]!), [7, 8]);
    });

    test('close() while executions are pending: each settles, close resolves, nothing crashes', async () => {
      for (let round = 0; round < 8; round++) {
        const model = await subject.create().load(spec(await subject.writeIdentity(dir(), 'FP32', [-1, 2]), 2));
        const pending = model.instances.map((instance, i) =>
          instance.execute([fp32('x', [1, 2], [round, i])], ['y']).then(
            (result) => ({ ok: true as const, values: valuesOf(result.outputs[0]!) }),
            (error: unknown) => ({ ok: false as const, error }),
          ),
        );
        await model.close();
        const settled = await Promise.race([Promise.all(pending), new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000).unref())]);
        assert.ok(settled !== undefined, 'an execution pending at close() never settled');
        settled.forEach((outcome, i) => {
          // Either it ran to completion with the right answer, or it was refused with a TesseraError.
          if (outcome.ok) assert.deepEqual(outcome.values, [round, i]);
          else assert.ok(outcome.error instanceof TesseraError, `rejected with ${String(outcome.error)}`);
        });
      }
    });

    test('close() is idempotent and execute after close rejects', async () => {
      const backend = subject.create();
      const model = await backend.load(spec(await subject.writeIdentity(dir(), 'FP32', [-1, 2]), 2));
      const before = await model.instances[1]!.execute([fp32('x', [1, 2], [1, 2])], ['y']);
      assert.deepEqual(valuesOf(before.outputs[0]!), [1, 2]);
      await Promise.all([model.close(), model.close()]);
      await model.close();
      for (const instance of model.instances) {
        await assert.rejects(instance.execute([fp32('x', [1, 2], [1, 2])], ['y']), (error: unknown) => {
          assert.ok(error instanceof TesseraError, `expected a TesseraError, got ${String(error)}`);
          assert.equal(error.code, 'MODEL_UNAVAILABLE');
          return true;
        });
      }
    });
  });
}

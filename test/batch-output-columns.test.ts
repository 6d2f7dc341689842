/**
 * The batch job's output columns (prediction / label / confidence / error), on ChunkAssembler
 * itself: tests that a mutation audit showed missing. A prediction past the end of the labels
 * file has a null label; a failed row has null prediction, label and confidence and its error;
 * a row that fails twice keeps the last message and counts once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { valueAt, type ColumnSpec } from '../src/batch/columns.js';
import { ChunkAssembler, type OutputPlan } from '../src/batch/outputs.js';
import type { Tensor } from '../src/core/tensor.js';

const COLUMNS: ColumnSpec[] = [
  { name: 'prediction', kind: 'int32' },
  { name: 'label', kind: 'string' },
  { name: 'confidence', kind: 'float32' },
  { name: 'error', kind: 'string' },
];

function assemble(datatype: 'FP32' | 'FP64'): ChunkAssembler {
  const plan: OutputPlan = {
    passthrough: [],
    raw: [],
    classify: { output: 'p', datatype, perRow: 3 },
    // Fewer labels than classes: class 2 has none.
    labels: ['cat', 'dog'],
    columns: COLUMNS,
    requestedOutputs: ['p'],
  };
  return new ChunkAssembler(plan, 0, { start: 0, rows: 4, column: () => [], rowErrors: new Map() });
}

function rows(assembler: ChunkAssembler): { rows: unknown[][]; errors: number } {
  const result = assembler.finish();
  const byName = new Map(result.columns.map((column) => [column.spec.name, column]));
  assert.deepEqual([...byName.keys()], ['prediction', 'label', 'confidence', 'error']);
  return {
    rows: Array.from({ length: result.rows }, (_, r) => COLUMNS.map((spec) => valueAt(byName.get(spec.name)!, r))),
    errors: result.errors,
  };
}

for (const datatype of ['FP32', 'FP64'] as const) {
  test(`${datatype}: label null past the labels; failed rows null in prediction, label and confidence, counted once`, () => {
    const assembler = assemble(datatype);
    const values = [0.25, 0.5, 0.25, 0.125, 0.125, 0.75, 1, 0, 0, 0.5, 0.25, 0.25];
    const data = datatype === 'FP32' ? Float32Array.from(values) : Float64Array.from(values);
    // Rows in the request are block rows 3, 0, 1, 2 (a request's rows need not be in block order).
    const tensor = { name: 'p', datatype, shape: [4, 3], data } as Tensor;
    assembler.setOutputs(Int32Array.from([3, 0, 1, 2]), 4, [tensor]);
    assembler.fail(2, 'first problem');
    assembler.fail(2, 'second problem');
    const { rows: got, errors } = rows(assembler);
    assert.deepEqual(got, [
      [2, null, 0.75, null], // class 2: no label
      [0, 'cat', 1, null],
      [null, null, null, 'second problem'],
      [1, 'dog', 0.5, null],
    ]);
    assert.equal(errors, 1, 'a row that failed twice is one error');
  });
}

import { TesseraError } from '../../core/errors.js';
import { formatShape } from '../../core/shape.js';
import type { TensorSpec } from '../../core/tensor.js';
import { describe, inferJsonShape } from '../../core/json-tensor.js';
import { isNamedObject, singleInput, stackRows, tensorFromJsonValue, type RowInputs } from './rows.js';

/**
 * The default tabular/JSON handler's input side, shared by TorchServe's /predictions and Azure
 * ML's /score: a single-input model fed rows of features. Each payload is one row or a list of
 * rows, told apart by nesting depth against the input's shape: for an input [-1, 4], `[1,2,3,4]`
 * is one row and `[[1,2,3,4], [5,6,7,8]]` two. Rows of every payload are stacked in order.
 */

/** The rows value of a payload: `{"data": v}`, `{"instances": v}`, `{"input_data": v}` (`key`s given) or the value itself. */
export function rowsValue(json: unknown, keys: readonly string[], where: string): unknown {
  if (!isNamedObject(json)) return json;
  for (const key of keys) if (key in json) return json[key];
  throw new TesseraError('INVALID_REQUEST', `${where} is an object without ${keys.map((k) => `'${k}'`).join(' or ')}; send rows as ${keys.map((k) => `{"${k}": [...]}`).join(', ')} or a plain JSON list`);
}

/** Stack the rows of `values` (one per payload) into the single input of the model. */
export function tabularInputs(values: readonly unknown[], specs: readonly TensorSpec[], model: string): RowInputs {
  const spec = singleInput(specs, model, 'a tabular (rows of features) body');
  const where = `input '${spec.name}'`;
  const batched = spec.shape[0] === -1;
  const rows: unknown[] = [];
  for (const value of values) {
    const depth = inferJsonShape(value, where).length;
    if (!batched) {
      // No batch dimension: the one payload is the whole tensor.
      if (values.length !== 1) throw new TesseraError('INVALID_REQUEST', `model '${model}' has no batch dimension (input shape ${formatShape(spec.shape)}); send one payload`);
      return { inputs: [tensorFromJsonValue(spec, value, where)], rows: 1, stacked: false };
    }
    const rowRank = spec.shape.length - 1;
    if (depth === rowRank) rows.push(value);
    // A loop, not push(...value): spreading 200,000 rows as arguments overflows the stack.
    else if (depth === rowRank + 1) for (const row of value as unknown[]) rows.push(row);
    else {
      throw new TesseraError(
        'INVALID_INPUT_SHAPE',
        `${where} takes rows of shape ${formatShape(spec.shape.slice(1))} (model shape ${formatShape(spec.shape)}): send one row or a list of rows, ` +
          `got ${describe(value)} nested ${depth} deep`,
      );
    }
  }
  if (rows.length === 0) throw new TesseraError('INVALID_REQUEST', 'the request has no rows');
  return { inputs: [stackRows(spec, rows, where)], rows: rows.length, stacked: true };
}

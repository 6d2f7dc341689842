import { allocate, type NumericArray, type NumericDataType } from '../core/datatype.js';
import { TesseraError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';

/**
 * Batch assembly: each input of the batched requests is copied once into one contiguous
 * typed array; each output is split back into per-request views (subarray), with no copy.
 */

/** Where a batch input of `length` elements is assembled, when not in a new array (see BackendInstance.inputStaging). */
export type InputStaging = (name: string, datatype: NumericDataType, length: number) => NumericArray | undefined;

/**
 * Concatenate the requests' inputs along dim 0, in `names` order. `inputsPerRequest[r]` is
 * request r's inputs. Numeric inputs are copied into `staging`'s array when it gives one.
 */
export function concatInputs(inputsPerRequest: readonly (readonly Tensor[])[], names: readonly string[], staging?: InputStaging): Tensor[] {
  if (inputsPerRequest.length === 1) return names.map((name) => byName(inputsPerRequest[0]!, name));
  return names.map((name) => {
    const parts = inputsPerRequest.map((inputs) => byName(inputs, name));
    const first = parts[0]!;
    const rows = parts.reduce((sum, part) => sum + (part.shape[0] ?? 0), 0);
    const shape = [rows, ...first.shape.slice(1)];
    if (first.datatype === 'BYTES') {
      return { name, datatype: 'BYTES', shape, data: parts.flatMap((part) => part.data as Buffer[]) };
    }
    const total = parts.reduce((sum, part) => sum + part.data.length, 0);
    const data = staging?.(name, first.datatype, total) ?? (allocate(first.datatype, total) as NumericArray);
    let offset = 0;
    for (const part of parts) {
      (data as Float32Array).set(part.data as Float32Array, offset);
      offset += part.data.length;
    }
    return { name, datatype: first.datatype, shape, data } as Tensor;
  });
}

/**
 * Split batch outputs back per request: request r gets rows [start, start + rowsPerRequest[r])
 * of every output, as views of the batch's arrays.
 */
export function splitOutputs(outputs: readonly Tensor[], rowsPerRequest: readonly number[]): Tensor[][] {
  if (rowsPerRequest.length === 1) return [outputs.slice()];
  const totalRows = rowsPerRequest.reduce((a, b) => a + b, 0);
  const perRequest: Tensor[][] = rowsPerRequest.map(() => []);
  for (const output of outputs) {
    if (output.shape[0] !== totalRows) {
      throw new TesseraError(
        'INFERENCE_FAILED',
        `output '${output.name}' has ${output.shape[0] ?? 'no'} rows for a batch of ${totalRows}: the model does not keep the batch dimension`,
      );
    }
    const rowSize = totalRows === 0 ? 0 : output.data.length / totalRows;
    let row = 0;
    rowsPerRequest.forEach((rows, r) => {
      const shape = [rows, ...output.shape.slice(1)];
      const start = row * rowSize;
      const end = (row + rows) * rowSize;
      const data = output.datatype === 'BYTES' ? output.data.slice(start, end) : output.data.subarray(start, end);
      perRequest[r]!.push({ name: output.name, datatype: output.datatype, shape, data } as Tensor);
      row += rows;
    });
  }
  return perRequest;
}

function byName(inputs: readonly Tensor[], name: string): Tensor {
  const tensor = inputs.find((input) => input.name === name);
  if (tensor === undefined) throw new TesseraError('MISSING_INPUT', `input '${name}' is missing`);
  return tensor;
}

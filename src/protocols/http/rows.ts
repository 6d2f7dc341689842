import { TesseraError } from '../../core/errors.js';
import { formatShape } from '../../core/shape.js';
import type { Tensor, TensorSpec } from '../../core/tensor.js';
import {
  describe,
  inferJsonShape,
  isBase64Object,
  nestJsonValues,
  tensorDataFromJson,
  tensorDataToJsonValues,
  type JsonTensorOptions,
} from '../../core/json-tensor.js';

/**
 * Tensors from the untyped JSON that TF Serving, TorchServe, SageMaker, Vertex AI and Azure ML
 * clients send: nested lists in row form (one entry per batch row) or columnar form (whole
 * tensors), their datatype taken from the model's metadata (JSON numbers are converted to the
 * model's dtype), their shape from the nesting. And back: outputs as per-row JSON values.
 */

/** Inputs built from rows, and whether outputs split back into the same rows. */
export interface RowInputs {
  readonly inputs: Tensor[];
  readonly rows: number;
  /**
   * True: the rows were stacked along a new dim 0, so outputs split along dim 0 into `rows`.
   * False: a model without a batch dimension got its one row as is (outputs are that row).
   */
  readonly stacked: boolean;
}

const TF_OPTIONS: JsonTensorOptions = { base64Objects: true };

/** A plain JSON object that is not TF Serving's `{"b64": ...}` value. */
export function isNamedObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isBase64Object(value);
}

/** A tensor of `spec`'s datatype from a nested JSON value, its shape inferred from the nesting. */
export function tensorFromJsonValue(spec: TensorSpec, value: unknown, where: string): Tensor {
  const shape = inferJsonShape(value, where);
  const data = tensorDataFromJson(spec.datatype, shape.length === 0 ? [value] : value, where, TF_OPTIONS);
  return { name: spec.name, datatype: spec.datatype, shape, data } as Tensor;
}

/** Stack per-row values of input `spec` into one tensor of shape [rows, ...row shape]. */
export function stackRows(spec: TensorSpec, rows: readonly unknown[], where: string): Tensor {
  return tensorFromJsonValue(spec, rows, where);
}

/** The model input named `name`, or UNKNOWN_INPUT listing the model's inputs. */
export function inputSpec(specs: readonly TensorSpec[], name: string, model: string): TensorSpec {
  const spec = specs.find((s) => s.name === name);
  if (spec === undefined) {
    throw new TesseraError('UNKNOWN_INPUT', `model '${model}' has no input '${name}'; its inputs are: ${specs.map((s) => s.name).join(', ')}`);
  }
  return spec;
}

/**
 * TF Serving's row format (api_rest.md, "Specifying input tensors in row format"): a list of
 * instances, each the value of the one input, or an object of named input values. Instances
 * are stacked along a new dim 0; a model whose inputs have no variable first dimension takes a
 * single instance as is.
 */
export function inputsFromInstances(instances: unknown, specs: readonly TensorSpec[], model: string, where = "'instances'"): RowInputs {
  if (!Array.isArray(instances)) throw invalid(`${where} must be a list with one entry per row, got ${describe(instances)}`);
  if (instances.length === 0) throw invalid(`${where} is empty; send at least one instance`);
  const named = instances.every(isNamedObject);
  if (!named && instances.some(isNamedObject)) throw invalid(`${where} mixes objects of named inputs with plain values; use one form`);
  let columns: Map<string, unknown[]>;
  if (named) {
    const names = Object.keys(instances[0] as Record<string, unknown>);
    columns = new Map(names.map((name) => [name, [] as unknown[]]));
    instances.forEach((instance, i) => {
      const record = instance as Record<string, unknown>;
      for (const name of Object.keys(record)) {
        if (!columns.has(name)) throw invalid(`${where}[${i}] has input '${name}', which ${where}[0] lacks; every instance names the same inputs`);
      }
      for (const [name, column] of columns) {
        if (!(name in record)) throw invalid(`${where}[${i}] lacks input '${name}'; every instance names the same inputs`);
        column.push(record[name]);
      }
    });
  } else {
    const only = singleInput(specs, model, 'a list of plain values');
    columns = new Map([[only.name, instances]]);
  }
  const rows = instances.length;
  const specsByName = [...columns.keys()].map((name) => inputSpec(specs, name, model));
  // One instance as is only for models whose inputs cannot take a batch dimension.
  const unstacked =
    rows === 1 &&
    specsByName.every((spec) => spec.shape[0] !== -1 && spec.shape.length === inferJsonShape(columns.get(spec.name)![0], `input '${spec.name}'`).length);
  const inputs = specsByName.map((spec) => {
    const column = columns.get(spec.name)!;
    return unstacked ? tensorFromJsonValue(spec, column[0], `input '${spec.name}'`) : stackRows(spec, column, `input '${spec.name}'`);
  });
  return { inputs, rows, stacked: !unstacked };
}

/**
 * TF Serving's columnar format ("Specifying input tensors in column format"): one tensor for a
 * single-input model, or an object of named tensors.
 */
export function inputsFromColumns(columns: unknown, specs: readonly TensorSpec[], model: string, where = "'inputs'"): Tensor[] {
  if (isNamedObject(columns)) {
    const names = Object.keys(columns);
    if (names.length === 0) throw invalid(`${where} is an empty object; name at least one input`);
    return names.map((name) => tensorFromJsonValue(inputSpec(specs, name, model), columns[name], `input '${name}'`));
  }
  const only = singleInput(specs, model, `${where} as one tensor`);
  return [tensorFromJsonValue(only, columns, `input '${only.name}'`)];
}

/** The one input of a single-input model; several inputs need named values. */
export function singleInput(specs: readonly TensorSpec[], model: string, form: string): TensorSpec {
  if (specs.length !== 1) {
    throw invalid(`model '${model}' has ${specs.length} inputs (${specs.map((s) => s.name).join(', ')}); ${form} can only feed a single-input model: name each input`);
  }
  return specs[0]!;
}

/** Output values of one row: the row's nested value for each output, by name. */
export type RowValues = ReadonlyMap<string, unknown>;

/**
 * Split outputs into per-row values. Stacked rows split along dim 0 (each output's first
 * dimension must be the row count); an unstacked single row is each output whole.
 */
export function outputRows(outputs: readonly Tensor[], batch: Pick<RowInputs, 'rows' | 'stacked'>): RowValues[] {
  const rows: Map<string, unknown>[] = Array.from({ length: batch.rows }, () => new Map());
  for (const output of outputs) {
    const values = outputValues(output);
    if (!batch.stacked) {
      rows[0]!.set(output.name, nestJsonValues(values, output.shape));
      continue;
    }
    if (output.shape.length === 0 || output.shape[0] !== batch.rows) {
      throw invalid(
        `output '${output.name}' has shape ${formatShape(output.shape)}, whose first dimension is not the ${batch.rows} rows of the request, ` +
          'so it cannot be split into per-row predictions; use the columnar format or the V2 protocol',
      );
    }
    const rowShape = output.shape.slice(1);
    const size = batch.rows === 0 ? 0 : values.length / batch.rows;
    for (let r = 0; r < batch.rows; r++) rows[r]!.set(output.name, nestJsonValues(values.slice(r * size, (r + 1) * size), rowShape));
  }
  return rows;
}

/** Each output whole, nested to its shape, by name. */
export function outputColumns(outputs: readonly Tensor[]): Map<string, unknown> {
  return new Map(outputs.map((output) => [output.name, nestJsonValues(outputValues(output), output.shape)]));
}

/**
 * Per-row predictions in TF Serving's shape: the row's value when the model answers one
 * output, else an object of named values per row.
 */
export function predictionsOf(rows: readonly RowValues[]): unknown[] {
  return rows.map((row) => (row.size === 1 ? row.values().next().value : Object.fromEntries(row)));
}

/**
 * Element values of an output as JSON: numbers (non-finite floats become null, which JSON can
 * carry), booleans, UTF-8 strings; BYTES outputs named `*_bytes` as `{"b64": ...}` (TF
 * Serving's "Output of binary values").
 */
function outputValues(output: Tensor): unknown[] {
  if (output.datatype === 'BYTES' && output.name.endsWith('_bytes')) return output.data.map((b) => ({ b64: b.toString('base64') }));
  return tensorDataToJsonValues(output.datatype, output.data);
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_REQUEST', message);
}

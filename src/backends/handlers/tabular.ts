import { z } from 'zod';
import { allocate, type DataType } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import { toHalfBits } from '../../core/float16.js';
import { FLOAT_LIMITS, floatRangeProblem } from '../../core/json-tensor.js';
import type { Tensor, TensorSpec } from '../../core/tensor.js';
import type { HandlerInputs, HandlerModelInfo, HandlerRequest, ModelHandler } from './handler.js';
import {
  argmax,
  bodyJson,
  cachedPlan,
  configError,
  isDistribution,
  jsonNumber,
  numericValues,
  parseOptions,
  pickInput,
  rowsOf,
  softmax,
} from './common.js';

/**
 * The tabular handler: JSON records keyed by feature name become one [rows, features] input
 * tensor in the configured feature order; the answer is one prediction per row, with the class
 * label and probabilities for classifiers.
 *
 * Request bodies: `{"instances": [record, ...]}`, `[record, ...]` or a single `record`, where a
 * record is `{"feature": value, ...}` or an array of values in feature order.
 * Answer: `{"predictions": [...]}`, one entry per record:
 * classifiers `{prediction, label?, probabilities | scores}`, regressors the raw value(s).
 */

export const tabularOptionsSchema = z.strictObject({
  /** Feature names in the order of the input tensor's columns. */
  feature_order: z.array(z.string().min(1)).min(1).optional(),
  /** Model input to fill; default the model's only input. */
  input: z.string().min(1).optional(),
  /** Output with the scores / probabilities (classifiers) or values (regressors); default: see `task`. */
  output: z.string().min(1).optional(),
  /** Output holding predicted class indices (e.g. skl2onnx's `label`), when the model has one. */
  label_output: z.string().min(1).optional(),
  /** Default: classification when the model has labels, a class-index output or several scores per row. */
  task: z.enum(['classification', 'regression']).optional(),
  /** Softmax classifier scores: true always, false never; default never (raw scores are reported as `scores`). */
  apply_softmax: z.boolean().optional(),
});

export type TabularHandlerOptions = z.output<typeof tabularOptionsSchema>;

const NUMERIC_INPUTS: ReadonlySet<DataType> = new Set(['FP16', 'FP32', 'FP64', 'INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'BOOL']);
const INTEGER_RANGE: Partial<Record<DataType, readonly [number, number]>> = {
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff],
  INT64: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
  BOOL: [0, 1],
};

interface TabularPlan {
  readonly options: TabularHandlerOptions;
  readonly input: TensorSpec;
  /** Columns of the input, or -1 when the model leaves it open. */
  readonly width: number;
  /** The input has no row dimension: one record only, shape [features]. */
  readonly flat: boolean;
}

interface TabularContext {
  readonly rows: number;
}

const plans = new WeakMap<HandlerModelInfo, TabularPlan>();
const parsedOptions = new WeakMap<HandlerModelInfo, TabularHandlerOptions>();

function tabularOptions(model: HandlerModelInfo): TabularHandlerOptions {
  return cachedPlan(parsedOptions, model, () => parseOptions(tabularOptionsSchema, model.options, 'tabular'));
}

/** Check the options against the model; INVALID_MODEL_CONFIG when they cannot work. */
export function planTabular(model: HandlerModelInfo): TabularPlan {
  return cachedPlan(plans, model, () => {
    const options = tabularOptions(model);
    const input = pickInput(model, options.input, 'tabular');
    const where = `tabular handler: input '${input.name}'`;
    if (!NUMERIC_INPUTS.has(input.datatype)) throw configError(`${where} is ${input.datatype}; the tabular handler fills numeric inputs`);
    const shape = input.shape;
    const flat = shape.length === 1 && model.maxBatchSize === 0;
    if (!flat && shape.length !== 2) throw configError(`${where} has shape [${shape.join(',')}]; the tabular handler fills [rows, features] inputs`);
    const width = shape[shape.length - 1]!;
    const features = options.feature_order;
    if (features !== undefined) {
      if (width !== -1 && features.length !== width) {
        throw configError(`${where} takes ${width} features per row but handler_options.feature_order names ${features.length}`);
      }
      const duplicate = features.find((f, i) => features.indexOf(f) !== i);
      if (duplicate !== undefined) throw configError(`tabular handler: handler_options.feature_order names '${duplicate}' twice`);
    }
    return { options, input, width, flat };
  });
}

type JsonRecord = Record<string, unknown>;

function isRecordObject(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

function listNames(names: readonly string[]): string {
  return names.map((n) => `'${n}'`).join(', ');
}

/** The records of a request body, and whether it was a single record. */
function recordsOf(body: unknown): unknown[] {
  if (Array.isArray(body)) return body;
  if (isRecordObject(body)) {
    if (Array.isArray(body['instances'])) return body['instances'];
    return [body];
  }
  throw new TesseraError('INVALID_REQUEST', `the request body is ${describe(body)}; send {"instances": [records]}, a list of records or one record`);
}

export class TabularHandler implements ModelHandler {
  preprocess(request: HandlerRequest, model: HandlerModelInfo): HandlerInputs {
    const plan = planTabular(model);
    const records = recordsOf(bodyJson(request));
    const rows = records.length;
    if (rows === 0) throw new TesseraError('INVALID_INPUT_DATA', 'the request holds no records');
    if (model.maxBatchSize > 0 && rows > model.maxBatchSize) {
      throw new TesseraError('BATCH_TOO_LARGE', `the request holds ${rows} records; model '${model.name}' takes at most ${model.maxBatchSize} at once (max_batch_size)`);
    }
    if (plan.flat && rows !== 1) throw new TesseraError('BATCH_TOO_LARGE', `the request holds ${rows} records; model '${model.name}' takes one at a time`);
    if (!plan.flat && model.maxBatchSize === 0) {
      const fixedRows = plan.input.shape[0]!;
      if (fixedRows !== -1 && fixedRows !== rows) throw new TesseraError('BATCH_TOO_LARGE', `the request holds ${rows} records; model '${model.name}' takes exactly ${fixedRows}`);
    }

    const byName = records.every(isRecordObject);
    const positional = records.every(Array.isArray);
    if (!byName && !positional) {
      const bad = records.findIndex((r) => !isRecordObject(r) && !Array.isArray(r));
      throw new TesseraError(
        'INVALID_INPUT_DATA',
        bad === -1 ? 'records must all be objects (by feature name) or all arrays (in feature order), not a mix' : `record ${bad} is ${describe(records[bad])}; a record is an object of features or an array of values`,
      );
    }
    const features = plan.options.feature_order;
    let width: number;
    let valueAt: (row: number, column: number) => unknown;
    if (byName) {
      if (features === undefined) {
        throw configError(
          `tabular handler: records by feature name need handler_options.feature_order, the order of the ${plan.width === -1 ? '' : `${plan.width} `}columns of input '${plan.input.name}' (e.g. feature_order: [${Object.keys(records[0] as JsonRecord).join(', ')}]), or send each record as an array`,
        );
      }
      const expected = new Set(features);
      for (const [i, record] of (records as JsonRecord[]).entries()) {
        const missing = features.filter((f) => !Object.hasOwn(record, f));
        const extra = Object.keys(record).filter((k) => !expected.has(k));
        if (missing.length > 0 || extra.length > 0) {
          const parts = [
            ...(missing.length > 0 ? [`missing feature${missing.length > 1 ? 's' : ''} ${listNames(missing)}`] : []),
            ...(extra.length > 0 ? [`unknown feature${extra.length > 1 ? 's' : ''} ${listNames(extra)}`] : []),
          ];
          throw new TesseraError('INVALID_INPUT_DATA', `record ${i}: ${parts.join('; ')} (the model takes ${listNames(features)})`);
        }
      }
      width = features.length;
      valueAt = (row, column) => (records[row] as JsonRecord)[features[column]!];
    } else {
      width = features?.length ?? (plan.width !== -1 ? plan.width : (records[0] as unknown[]).length);
      for (const [i, record] of (records as unknown[][]).entries()) {
        if (record.length !== width) {
          throw new TesseraError('INVALID_INPUT_DATA', `record ${i} has ${record.length} values; the model takes ${width} per record${features === undefined ? '' : ` (${listNames(features)})`}`);
        }
      }
      valueAt = (row, column) => (records[row] as unknown[])[column];
    }

    const datatype = plan.input.datatype;
    const data = allocate(datatype as Exclude<DataType, 'BYTES'>, rows * width);
    const range = INTEGER_RANGE[datatype];
    // FP32 / FP16: finite numbers their storage would turn into ±Infinity are refused.
    const overflow = FLOAT_LIMITS[datatype]?.overflow ?? Infinity;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < width; c++) {
        let value = valueAt(r, c);
        if (typeof value === 'boolean') value = value ? 1 : 0;
        const feature = features === undefined ? `column ${c}` : `feature '${features[c]}'`;
        if (typeof value !== 'number' || !Number.isFinite(value)) {
          throw new TesseraError('INVALID_INPUT_DATA', `record ${r}, ${feature}: expected a number, got ${describe(value)}`);
        }
        if (Math.abs(value) >= overflow) {
          throw new TesseraError('INVALID_INPUT_DATA', `record ${r}, ${feature}: ${floatRangeProblem(datatype, value)} (input '${plan.input.name}' is ${datatype})`);
        }
        if (range !== undefined && (!Number.isInteger(value) || value < range[0] || value > range[1])) {
          throw new TesseraError('INVALID_INPUT_DATA', `record ${r}, ${feature}: ${value} is not an integer from ${range[0]} to ${range[1]} (input '${plan.input.name}' is ${datatype})`);
        }
        const index = r * width + c;
        if (datatype === 'INT64' || datatype === 'UINT64') (data as BigInt64Array)[index] = BigInt(value);
        else if (datatype === 'FP16') (data as Uint16Array)[index] = toHalfBits(value);
        else (data as Float64Array)[index] = value;
      }
    }
    const shape = plan.flat ? [width] : [rows, width];
    const tensor = { name: plan.input.name, datatype, shape, data } as Tensor;
    const context: TabularContext = { rows };
    return { inputs: [tensor], context };
  }

  postprocess(outputs: readonly Tensor[], model: HandlerModelInfo, context: unknown): unknown {
    const options = tabularOptions(model);
    const rows = (context as TabularContext | undefined)?.rows ?? 1;
    const find = (name: string): Tensor => {
      const tensor = outputs.find((t) => t.name === name);
      if (tensor === undefined) throw new TesseraError('HANDLER_FAILED', `tabular handler: no output '${name}' among ${outputs.map((t) => t.name).join(', ')}`);
      return tensor;
    };
    const isInteger = (t: Tensor): boolean => /^U?INT/.test(t.datatype);
    // Class indices: named, or (by default) an integer output with one value per row.
    const labelTensor =
      options.label_output !== undefined
        ? find(options.label_output)
        : options.output === undefined && outputs.length > 1
          ? outputs.find((t) => isInteger(t) && t.data.length === rows)
          : undefined;
    const scoreTensor = options.output !== undefined ? find(options.output) : outputs.find((t) => t !== labelTensor && t.datatype !== 'BYTES');
    if (scoreTensor === undefined && labelTensor === undefined) throw new TesseraError('HANDLER_FAILED', 'tabular handler: the model returned no numeric output');
    const scores = scoreTensor === undefined ? undefined : rowsOf(numericValues(scoreTensor, 'tabular'), rows, scoreTensor, 'tabular');
    const classIds = labelTensor === undefined ? undefined : rowsOf(numericValues(labelTensor, 'tabular'), rows, labelTensor, 'tabular');
    const width = scores?.[0]?.length ?? 0;
    const task = options.task ?? (model.labels !== undefined || labelTensor !== undefined || width > 1 ? 'classification' : 'regression');

    if (task === 'regression') {
      return { predictions: scores!.map((row) => (row.length === 1 ? jsonNumber(row[0]!) : Array.from(row, jsonNumber))) };
    }
    const predictions = Array.from({ length: rows }, (_, r) => {
      const row = scores?.[r];
      let probabilities: number[] | undefined;
      let rawScores: number[] | undefined;
      if (row !== undefined) {
        if (row.length === 1 && options.apply_softmax !== true && isDistribution([row[0]!, 1 - row[0]!])) {
          probabilities = [1 - row[0]!, row[0]!]; // one sigmoid output: P(class 1)
        } else if (options.apply_softmax === true) {
          probabilities = softmax(row);
        } else if (options.apply_softmax !== false && isDistribution(row)) {
          probabilities = Array.from(row);
        } else {
          rawScores = Array.from(row, (v) => v);
        }
      }
      const prediction = classIds !== undefined ? classIds[r]![0]! : argmax(probabilities ?? rawScores ?? []);
      const label = model.labels?.[prediction];
      return {
        prediction,
        ...(label === undefined ? {} : { label }),
        ...(probabilities === undefined ? {} : { probabilities: probabilities.map(jsonNumber) }),
        ...(rawScores === undefined ? {} : { scores: rawScores.map(jsonNumber) }),
      };
    });
    return { predictions };
  }
}

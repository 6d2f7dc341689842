import type { DataType } from '../core/datatype.js';
import { TesseraError } from '../core/errors.js';
import { fromHalfBits } from '../core/float16.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';
import type { ChunkResult, ColumnKind, ColumnSpec, ColumnValues, ColumnVector } from './columns.js';
import { describeValue } from './columns.js';
import { inputError, type ColumnInfo, type InputBlock, type InputFormat } from './input/source.js';

/** One model output written raw: flattened into `<name>_<i>` columns, or one JSON column when its size varies. */
export interface RawOutputPlan {
  readonly output: string;
  readonly datatype: DataType;
  /** Values per row, or undefined when the model's shape leaves it variable. */
  readonly perRow: number | undefined;
  readonly columns: readonly ColumnSpec[];
}

export interface PassthroughPlan {
  readonly column: string;
  readonly kind: ColumnKind;
}

export interface ClassifyPlan {
  readonly output: string;
  readonly datatype: DataType;
  readonly perRow: number | undefined;
}

export interface OutputPlan {
  readonly passthrough: readonly PassthroughPlan[];
  readonly raw: readonly RawOutputPlan[];
  readonly classify: ClassifyPlan | undefined;
  readonly labels: readonly string[] | undefined;
  /** Every output column, in file order. */
  readonly columns: readonly ColumnSpec[];
  /** Model outputs to ask for. */
  readonly requestedOutputs: readonly string[];
}

export interface OutputPlanOptions {
  /** Model outputs written raw: undefined = all, [] = none. */
  readonly rawOutputs: readonly string[] | undefined;
  /** Output classified into prediction/label/confidence: undefined = automatic, null = none. */
  readonly classify: string | null | undefined;
  readonly passthrough: readonly string[];
  readonly labels: readonly string[] | undefined;
}

export function kindOfDatatype(datatype: DataType): ColumnKind {
  switch (datatype) {
    case 'FP32':
    case 'FP16':
      return 'float32';
    case 'FP64':
      return 'float64';
    case 'INT8':
    case 'INT16':
    case 'INT32':
    case 'UINT8':
    case 'UINT16':
      return 'int32';
    case 'UINT32':
    case 'INT64':
    case 'UINT64':
      return 'int64';
    case 'BOOL':
      return 'bool';
    case 'BYTES':
      return 'string';
  }
}

/** Values per row of an output (undefined when variable); `batching` drops the batch dim. */
function perRowOf(spec: TensorSpec, batching: boolean): number | undefined {
  const dims = batching ? spec.shape.slice(1) : spec.shape;
  if (dims.some((dim) => dim < 0)) return undefined;
  return dims.reduce((a, b) => a * b, 1);
}

/**
 * Decide the output columns: passthrough columns, raw outputs, prediction / label / confidence
 * from the classified output, and `error`. Fails on unknown outputs and on column name clashes.
 */
export function planOutputs(
  modelOutputs: readonly TensorSpec[],
  batching: boolean,
  inputColumns: readonly ColumnInfo[],
  inputFormat: InputFormat,
  head: InputBlock | undefined,
  options: OutputPlanOptions,
  modelLabel: string,
): OutputPlan {
  const outputNames = modelOutputs.map((spec) => spec.name);
  const unknown = (name: string, flag: string): never => {
    throw new TesseraError('INVALID_PARAMETER', `${flag}: ${modelLabel} has no output '${name}'; its outputs are: ${outputNames.join(', ')}`);
  };
  const names = inputColumns.map((column) => column.name);
  const missing = options.passthrough.filter((name) => !names.includes(name));
  if (missing.length > 0) {
    throw inputError(`--passthrough: the input has no column${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')}; its columns are: ${names.slice(0, 20).join(', ')}`);
  }
  const passthrough = options.passthrough.map((column): PassthroughPlan => ({
    column,
    kind: passthroughKind(inputColumns.find((info) => info.name === column)!, inputFormat, head),
  }));
  const rawNames = options.rawOutputs ?? outputNames;
  for (const name of rawNames) if (!outputNames.includes(name)) unknown(name, '--outputs');
  const raw = rawNames.map((name): RawOutputPlan => {
    const spec = modelOutputs.find((s) => s.name === name)!;
    const perRow = perRowOf(spec, batching);
    const kind = kindOfDatatype(spec.datatype);
    const columns: ColumnSpec[] =
      perRow === undefined
        ? [{ name, kind: 'string' }]
        : perRow === 1
          ? [{ name, kind }]
          : Array.from({ length: perRow }, (_, i) => ({ name: `${name}_${i}`, kind }));
    return { output: name, datatype: spec.datatype, perRow, columns };
  });
  let classify: ClassifyPlan | undefined;
  if (options.classify !== null) {
    const chosen =
      options.classify === undefined
        ? modelOutputs.find((spec) => spec.datatype !== 'BYTES' && spec.datatype !== 'BOOL' && (perRowOf(spec, batching) ?? 0) >= 2)
        : (modelOutputs.find((spec) => spec.name === options.classify) ?? unknown(options.classify, '--classify'));
    if (chosen !== undefined) {
      if (chosen.datatype === 'BYTES' || chosen.datatype === 'BOOL') {
        throw new TesseraError('INVALID_PARAMETER', `--classify: output '${chosen.name}' is ${chosen.datatype}; classification takes a numeric output`);
      }
      classify = { output: chosen.name, datatype: chosen.datatype, perRow: perRowOf(chosen, batching) };
    }
  }
  const labels = classify === undefined ? undefined : options.labels;
  const columns: ColumnSpec[] = [
    ...passthrough.map((p) => ({ name: p.column, kind: p.kind })),
    ...raw.flatMap((r) => r.columns),
    ...(classify === undefined
      ? []
      : [
          { name: 'prediction', kind: 'int32' as const },
          ...(labels === undefined ? [] : [{ name: 'label', kind: 'string' as const }]),
          { name: 'confidence', kind: classify.datatype === 'FP64' ? ('float64' as const) : ('float32' as const) },
        ]),
    { name: 'error', kind: 'string' },
  ];
  const seen = new Set<string>();
  for (const column of columns) {
    if (seen.has(column.name)) {
      throw new TesseraError('INVALID_PARAMETER', `output column '${column.name}' would appear twice (a passthrough column clashes with a model output or prediction/label/confidence/error); drop it from --passthrough`);
    }
    seen.add(column.name);
  }
  const requested = [...new Set([...raw.map((r) => r.output), ...(classify === undefined ? [] : [classify.output])])];
  return { passthrough, raw, classify, labels, columns, requestedOutputs: requested };
}

function passthroughKind(info: ColumnInfo, format: InputFormat, head: InputBlock | undefined): ColumnKind {
  if (format === 'csv') return 'string';
  if (format === 'parquet') {
    if (info.nested === true) return 'string';
    const converted = info.convertedType;
    const logical = info.logicalType;
    if (converted === 'DATE' || converted?.startsWith('TIMESTAMP') === true || converted?.startsWith('TIME') === true || logical === 'TIMESTAMP' || logical === 'DATE' || logical === 'TIME') return 'string';
    if (converted === 'DECIMAL') return 'float64';
    switch (info.parquetType) {
      case 'BOOLEAN':
        return 'bool';
      case 'INT32':
        return converted === 'UINT_32' ? 'int64' : 'int32';
      case 'INT64':
        return 'int64';
      case 'FLOAT':
        return 'float32';
      case 'DOUBLE':
        return 'float64';
      default:
        return 'string';
    }
  }
  // JSONL: typed from the first rows' values.
  const values = head?.column(info.name);
  let kind: ColumnKind | undefined;
  for (let r = 0; values !== undefined && r < values.length; r++) {
    const value = values[r];
    if (value === null || value === undefined) continue;
    const seen: ColumnKind = typeof value === 'number' ? 'float64' : typeof value === 'boolean' ? 'bool' : 'string';
    if (typeof value === 'object') return 'string';
    if (kind !== undefined && kind !== seen) return 'string';
    kind = seen;
  }
  return kind ?? 'string';
}

/** A passthrough value converted to its column's kind, or a problem. */
function coerce(kind: ColumnKind, value: unknown): { value: number | bigint | boolean | string | null } | { problem: string } {
  if (value === null || value === undefined) return { value: null };
  switch (kind) {
    case 'string':
      if (typeof value === 'string') return { value };
      if (value instanceof Date) return { value: Number.isNaN(value.getTime()) ? null : value.toISOString() };
      if (value instanceof Uint8Array) return { value: Buffer.from(value).toString('base64') };
      if (typeof value === 'object') return { value: JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)) };
      return { value: String(value) };
    case 'float32':
    case 'float64': {
      const n = typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
      return Number.isNaN(n) && typeof value !== 'number' ? { problem: `${describeValue(value)} is not a number` } : { value: n };
    }
    case 'int32':
      if (typeof value === 'number' && Number.isInteger(value)) return { value };
      if (typeof value === 'bigint') return { value: Number(value) };
      return { problem: `${describeValue(value)} is not an integer` };
    case 'int64':
      if (typeof value === 'bigint') return { value };
      if (typeof value === 'number' && Number.isSafeInteger(value)) return { value: BigInt(value) };
      return { problem: `${describeValue(value)} is not an integer` };
    case 'bool':
      if (typeof value === 'boolean') return { value };
      return { problem: `${describeValue(value)} is not true or false` };
  }
}

/** Copy a typed column straight into typed storage of a matching kind; false when it does not apply. */
function copyTyped(values: ArrayLike<unknown>, target: ColumnValues, kind: ColumnKind, rows: number): boolean {
  if (!ArrayBuffer.isView(values) || values.length < rows) return false;
  if (kind === 'int64' && values instanceof BigInt64Array) {
    (target as BigInt64Array).set(values.subarray(0, rows));
    return true;
  }
  const numeric = values instanceof Float32Array || values instanceof Float64Array || values instanceof Int32Array || values instanceof Int16Array || values instanceof Int8Array || values instanceof Uint8Array || values instanceof Uint16Array;
  if (!numeric) return false;
  if (kind === 'float32' || kind === 'float64') {
    (target as Float64Array).set((values as Float64Array).subarray(0, rows));
    return true;
  }
  if (kind === 'int32' && !(values instanceof Float32Array || values instanceof Float64Array)) {
    (target as Int32Array).set((values as Int32Array).subarray(0, rows));
    return true;
  }
  return false;
}

/**
 * Typed column storage kept for reuse: a chunk's output columns are taken from here and given
 * back once its part is written, so that later chunks write into memory already in use.
 */
export class ColumnPool {
  private readonly free = new Map<string, ColumnValues[]>();
  private count = 0;

  constructor(private readonly limit = 128) {}

  take(kind: ColumnKind, rows: number): ColumnValues {
    if (kind !== 'string') {
      const reused = this.free.get(`${kind}:${rows}`)?.pop();
      if (reused !== undefined) {
        this.count--;
        return reused;
      }
    }
    return storageFor(kind, rows);
  }

  /** Give back the typed columns of a written chunk. */
  giveBack(chunk: ChunkResult): void {
    for (const column of chunk.columns) {
      const values = column.values;
      if (Array.isArray(values) || this.count >= this.limit) continue;
      const key = `${column.spec.kind}:${chunk.rows}`;
      let list = this.free.get(key);
      if (list === undefined) this.free.set(key, (list = []));
      if (list.includes(values)) continue;
      list.push(values);
      this.count++;
    }
  }
}

function storageFor(kind: ColumnKind, rows: number): ColumnValues {
  switch (kind) {
    case 'float32':
      return new Float32Array(rows);
    case 'float64':
      return new Float64Array(rows);
    case 'int32':
      return new Int32Array(rows);
    case 'int64':
      return new BigInt64Array(rows);
    case 'bool':
      return new Uint8Array(rows);
    case 'string':
      return new Array<string | null>(rows).fill(null);
  }
}

class Column {
  nulls: Uint8Array | undefined;
  /** Smallest and largest value set so far, NaN before the first (see noteRange). */
  private lo = NaN;
  private hi = NaN;
  /** Whether every value set so far was noted in lo/hi (undefined: none set yet). */
  private noted: boolean | undefined;

  constructor(
    readonly spec: ColumnSpec,
    readonly values: ColumnValues,
    private readonly rows: number,
  ) {}

  setNull(r: number): void {
    this.nulls ??= new Uint8Array(this.rows);
    this.nulls[r] = 1;
  }

  /** Values were set and `lo`/`hi` (NaN when none but NaN) are their smallest and largest. */
  noteRange(lo: number, hi: number): void {
    if (this.noted === false) return;
    this.noted = true;
    if (lo < this.lo || this.lo !== this.lo) this.lo = lo;
    if (hi > this.hi || this.hi !== this.hi) this.hi = hi;
  }

  /** Values were set without noting their range: the writer finds it. */
  unnoted(): void {
    this.noted = false;
  }

  vector(): ColumnVector {
    const range = this.noted === true && this.lo === this.lo ? { min: this.lo, max: this.hi } : undefined;
    return { spec: this.spec, values: this.values, nulls: this.nulls, range };
  }
}

/**
 * Gathers one chunk's output columns as its requests answer, then hands the chunk to a writer.
 * Passthrough columns are copied (and typed) at once; outputs arrive request by request.
 */
export class ChunkAssembler {
  private readonly passthrough: Column[];
  private readonly raw: Column[][];
  private readonly prediction: Column | undefined;
  private readonly label: Column | undefined;
  private readonly confidence: Column | undefined;
  /** The `error` column: empty (every row null) until a row fails. */
  private error: (string | null)[] = NO_ERRORS;
  private errorCount = 0;

  constructor(
    private readonly plan: OutputPlan,
    readonly index: number,
    readonly block: InputBlock,
    pool?: ColumnPool,
  ) {
    const rows = block.rows;
    const column = (spec: ColumnSpec): Column => new Column(spec, pool?.take(spec.kind, rows) ?? storageFor(spec.kind, rows), rows);
    this.passthrough = plan.passthrough.map((p) => column({ name: p.column, kind: p.kind }));
    this.raw = plan.raw.map((r) => r.columns.map(column));
    const byName = (name: string): ColumnSpec | undefined => plan.columns.find((c) => c.name === name);
    this.prediction = plan.classify === undefined ? undefined : column(byName('prediction')!);
    this.label = plan.labels === undefined || plan.classify === undefined ? undefined : column(byName('label')!);
    this.confidence = plan.classify === undefined ? undefined : column(byName('confidence')!);
    this.copyPassthrough();
  }

  get errors(): number {
    return this.errorCount;
  }

  private copyPassthrough(): void {
    this.plan.passthrough.forEach((p, i) => {
      const target = this.passthrough[i]!;
      const values = this.block.column(p.column);
      if (copyTyped(values, target.values, p.kind, this.block.rows)) return;
      const out = target.values as unknown as { [r: number]: unknown };
      for (let r = 0; r < this.block.rows; r++) {
        const converted = coerce(p.kind, values[r]);
        if ('problem' in converted) {
          target.setNull(r);
          this.fail(r, `passthrough column '${p.column}': ${converted.problem} (its column type, ${p.kind}, was set from the first rows)`);
        } else if (converted.value === null) {
          target.setNull(r);
        } else {
          out[r] = p.kind === 'bool' ? (converted.value === true ? 1 : 0) : converted.value;
        }
      }
    });
  }

  /** Whether row `r` already has an error. */
  hasFailed(r: number): boolean {
    return this.error[r] != null;
  }

  /** Mark row `r` as failed with `message` (its outputs are null). */
  fail(r: number, message: string): void {
    if (this.error === NO_ERRORS) this.error = new Array<string | null>(this.block.rows).fill(null);
    if (this.error[r] === null) this.errorCount++;
    this.error[r] = message;
    for (const columns of this.raw) for (const column of columns) column.setNull(r);
    this.prediction?.setNull(r);
    this.label?.setNull(r);
    this.confidence?.setNull(r);
  }

  /** Scatter a request's outputs to its rows (`rowIndex[i]` is the block row of request row i). */
  setOutputs(rowIndex: Int32Array, rows: number, outputs: readonly Tensor[]): void {
    const find = (name: string): Tensor => {
      const tensor = outputs.find((output) => output.name === name);
      if (tensor === undefined) throw new TesseraError('INFERENCE_FAILED', `the model returned no output '${name}'`);
      return tensor;
    };
    this.plan.raw.forEach((plan, p) => {
      const tensor = find(plan.output);
      const columns = this.raw[p]!;
      const width = tensor.data.length / Math.max(1, rows);
      if (!Number.isInteger(width)) throw new TesseraError('INFERENCE_FAILED', `output '${plan.output}' has ${tensor.data.length} values for ${rows} rows`);
      if (plan.perRow === undefined) {
        const column = columns[0]!.values as (string | null)[];
        for (let i = 0; i < rows; i++) column[rowIndex[i]!] = JSON.stringify(jsonValues(tensor, i * width, (i + 1) * width));
        columns[0]!.unnoted();
        return;
      }
      if (width !== plan.perRow) throw new TesseraError('INFERENCE_FAILED', `output '${plan.output}' has ${width} values per row; its shape says ${plan.perRow}`);
      scatter(tensor, columns, rowIndex, rows, width);
    });
    if (this.plan.classify !== undefined) {
      const tensor = find(this.plan.classify.output);
      const width = tensor.data.length / Math.max(1, rows);
      const prediction = this.prediction!.values as Int32Array;
      const confidence = this.confidence!.values as Float32Array | Float64Array;
      const labels = this.plan.labels;
      const label = this.label?.values as (string | null)[] | undefined;
      const data = tensor.data;
      const half = tensor.datatype === 'FP16';
      if (data instanceof Float32Array && label === undefined) {
        argmax32(data, rowIndex, rows, width, prediction, confidence);
        this.prediction!.noteRange(noted[0]!, noted[1]!);
        this.confidence!.noteRange(noted[2]!, noted[3]!);
        return;
      }
      this.prediction!.unnoted();
      this.confidence!.unnoted();
      for (let i = 0; i < rows; i++) {
        const r = rowIndex[i]!;
        let best = 0;
        let max = -Infinity;
        for (let j = 0; j < width; j++) {
          const raw = data[i * width + j] as number | bigint;
          const value = half ? fromHalfBits(raw as number) : Number(raw);
          // As in argmax32: the first NaN wins (NumPy's and PyTorch's rule).
          if (j === 0 || !(value <= max)) {
            max = value;
            best = j;
            if (value !== value) break;
          }
        }
        prediction[r] = best;
        confidence[r] = max;
        if (label !== undefined && labels !== undefined) {
          const text = labels[best];
          if (text === undefined) this.label!.setNull(r);
          else label[r] = text;
        }
      }
    }
  }

  finish(): ChunkResult {
    const columns: ColumnVector[] = [
      ...this.passthrough.map((c) => c.vector()),
      ...this.raw.flatMap((columns) => columns.map((c) => c.vector())),
      ...(this.prediction === undefined ? [] : [this.prediction.vector()]),
      ...(this.label === undefined ? [] : [this.label.vector()]),
      ...(this.confidence === undefined ? [] : [this.confidence.vector()]),
      { spec: ERROR_COLUMN, values: this.error, nulls: undefined },
    ];
    return { index: this.index, start: this.block.start, rows: this.block.rows, errors: this.errorCount, columns };
  }
}

/**
 * What the last argmax32 or scatterColumn call saw, for the statistics the writer needs (see
 * ColumnVector.range): [smallest, largest] set, and for argmax32 then [smallest, largest]
 * confidence. Noted in the loops that write the values, while they are at hand: a second pass
 * over the columns would cost as much again. NaN is skipped (NaN when nothing else was set).
 */
const noted = new Float64Array(4);

/**
 * prediction / confidence of FP32 outputs (the common case), in a loop of its own that stays
 * monomorphic. A row holding a NaN predicts its first NaN, with confidence NaN, as NumPy's and
 * PyTorch's argmax do: `!(value <= max)` is true for a larger value and for a NaN, in the one
 * comparison the loop makes per value, and a NaN ends the row's search.
 */
function argmax32(data: Float32Array, rowIndex: Int32Array, rows: number, width: number, prediction: Int32Array, confidence: Float32Array | Float64Array): void {
  let bestLo = width;
  let bestHi = -1;
  let maxLo = NaN;
  let maxHi = NaN;
  for (let i = 0, at = 0; i < rows; i++, at += width) {
    let best = 0;
    let max = data[at]!;
    // A NaN first is the prediction: nothing after it is looked at.
    for (let j = max === max ? 1 : width; j < width; j++) {
      const value = data[at + j]!;
      if (!(value <= max)) {
        max = value;
        best = j;
        if (value !== value) break;
      }
    }
    const r = rowIndex[i]!;
    prediction[r] = best;
    confidence[r] = max;
    if (best < bestLo) bestLo = best;
    if (best > bestHi) bestHi = best;
    if (max < maxLo || maxLo !== maxLo) maxLo = max;
    if (max > maxHi || maxHi !== maxHi) maxHi = max;
  }
  noted[0] = rows > 0 ? bestLo : NaN;
  noted[1] = rows > 0 ? bestHi : NaN;
  // The maxima come from a Float32Array: the confidence column holds them exactly.
  noted[2] = maxLo;
  noted[3] = maxHi;
}

/** The `error` column of a chunk without errors: no values (every row null). */
const NO_ERRORS: (string | null)[] = [];
const ERROR_COLUMN: ColumnSpec = { name: 'error', kind: 'string' };

function scatter(tensor: Tensor, columns: readonly Column[], rowIndex: Int32Array, rows: number, width: number): void {
  const data = tensor.data;
  switch (tensor.datatype) {
    case 'FP16':
      for (let j = 0; j < width; j++) {
        const out = columns[j]!.values as Float32Array;
        for (let i = 0; i < rows; i++) out[rowIndex[i]!] = fromHalfBits((data as Uint16Array)[i * width + j]!);
        columns[j]!.unnoted();
      }
      return;
    case 'UINT32':
      for (let j = 0; j < width; j++) {
        const out = columns[j]!.values as BigInt64Array;
        for (let i = 0; i < rows; i++) out[rowIndex[i]!] = BigInt((data as Uint32Array)[i * width + j]!);
        columns[j]!.unnoted();
      }
      return;
    case 'UINT64':
      for (let j = 0; j < width; j++) {
        const out = columns[j]!.values as BigInt64Array;
        for (let i = 0; i < rows; i++) out[rowIndex[i]!] = BigInt.asIntN(64, (data as BigUint64Array)[i * width + j]!);
        columns[j]!.unnoted();
      }
      return;
    case 'BYTES':
      for (let j = 0; j < width; j++) {
        const out = columns[j]!.values as (string | null)[];
        for (let i = 0; i < rows; i++) out[rowIndex[i]!] = (data as Buffer[])[i * width + j]!.toString('utf8');
        columns[j]!.unnoted();
      }
      return;
    default: {
      const values = data as Float32Array;
      for (let j = 0; j < width; j++) {
        const column = columns[j]!;
        const kind = column.spec.kind;
        if (kind === 'float32' || kind === 'float64' || kind === 'int32') {
          scatterColumn(values, column.values as Float32Array, rowIndex, rows, width, j);
          column.noteRange(noted[0]!, noted[1]!);
          continue;
        }
        // INT64 outputs (BigInts) and BOOL (flags): copied, their statistics left to the writer.
        const out = column.values as Float32Array;
        for (let i = 0; i < rows; i++) out[rowIndex[i]!] = values[i * width + j]!;
        column.unnoted();
      }
    }
  }
}

/**
 * Values j, j + width, ... of `values` (a request's output, row-major) into `out` at the
 * request's rows, noting the smallest and largest (NaN skipped) in `noted`.
 */
function scatterColumn(values: Float32Array, out: Float32Array, rowIndex: Int32Array, rows: number, width: number, j: number): void {
  let lo = NaN;
  let hi = NaN;
  for (let i = 0, at = j; i < rows; i++, at += width) {
    const v = values[at]!;
    out[rowIndex[i]!] = v;
    if (v < lo || lo !== lo) lo = v;
    if (v > hi || hi !== hi) hi = v;
  }
  noted[0] = lo;
  noted[1] = hi;
}

function jsonValues(tensor: Tensor, from: number, to: number): unknown[] {
  const out: unknown[] = [];
  for (let k = from; k < to; k++) {
    const value = tensor.data[k];
    if (tensor.datatype === 'BYTES') out.push((value as Buffer).toString('utf8'));
    else if (tensor.datatype === 'FP16') out.push(fromHalfBits(value as number));
    else if (typeof value === 'bigint') out.push(Number.isSafeInteger(Number(value)) ? Number(value) : value.toString());
    else out.push(value);
  }
  return out;
}

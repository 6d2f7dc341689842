import { allocate, type DataType, type NumericArray, type NumericDataType } from '../core/datatype.js';
import { TesseraError } from '../core/errors.js';
import { toHalfBits } from '../core/float16.js';
import { formatShape } from '../core/shape.js';
import type { Tensor, TensorSpec } from '../core/tensor.js';
import { describeValue } from './columns.js';
import { inputError, type ColumnInfo, type InputBlock } from './input/source.js';
import { floatProblem, type PackedFeatures, type PackSpec } from './pack.js';

/** Where one model input's values come from. */
export type InputSourceSpec =
  | { readonly kind: 'features'; readonly columns: readonly string[] }
  | { readonly kind: 'column'; readonly column: string };

/** One model input bound to input columns, with its per-row shape settled. */
export interface InputBinding {
  readonly input: string;
  readonly datatype: DataType;
  /** Shape of one row's values: the non-batch dims (batching models) or the full shape. */
  readonly rowShape: readonly number[];
  readonly perRow: number;
  readonly source: InputSourceSpec;
}

export interface Mapping {
  readonly bindings: readonly InputBinding[];
  /** The model batches along dim 0: requests carry many rows. Otherwise one row per request. */
  readonly batching: boolean;
  /** Input columns the bindings read. */
  readonly columns: readonly string[];
}

export interface MappingOptions {
  /** `--features` values: `[input=]c1,c2,...` (ranges `f0..f63`, wildcards `f*`). */
  readonly features: readonly string[];
  /** `--input-column` values: `input=column`. */
  readonly inputColumns: readonly string[];
}

/**
 * Bind every model input to input columns. Fails (fatally) on unknown inputs or columns and on
 * feature counts that do not fit the model's shape; `head` (the first rows) settles variable
 * per-row dims of whole-column inputs.
 */
export function resolveMapping(
  modelInputs: readonly TensorSpec[],
  maxBatchSize: number,
  columns: readonly ColumnInfo[],
  options: MappingOptions,
  head: InputBlock | undefined,
  modelLabel: string,
): Mapping {
  const names = columns.map((column) => column.name);
  const sources = new Map<string, InputSourceSpec>();
  const inputNames = modelInputs.map((spec) => spec.name);
  const describeInputs = (): string => modelInputs.map((spec) => `${spec.name} ${spec.datatype} ${formatShape(spec.shape)}`).join(', ');
  const bind = (input: string, source: InputSourceSpec, flag: string): void => {
    if (!inputNames.includes(input)) {
      throw new TesseraError('INVALID_PARAMETER', `${flag}: ${modelLabel} has no input '${input}'; its inputs are: ${describeInputs()}`);
    }
    if (sources.has(input)) throw new TesseraError('INVALID_PARAMETER', `${flag}: input '${input}' is mapped more than once`);
    sources.set(input, source);
  };
  for (const spec of options.inputColumns) {
    const at = spec.indexOf('=');
    if (at <= 0 || at === spec.length - 1) throw new TesseraError('INVALID_PARAMETER', `--input-column: expected input=column, got '${spec}'`);
    const input = spec.slice(0, at);
    const column = spec.slice(at + 1);
    requireColumns([column], names, '--input-column');
    bind(input, { kind: 'column', column }, '--input-column');
  }
  for (const spec of options.features) {
    const at = spec.indexOf('=');
    let input: string;
    let list = spec;
    if (at > 0 && !spec.slice(0, at).includes(',')) {
      input = spec.slice(0, at);
      list = spec.slice(at + 1);
    } else {
      const free = inputNames.filter((name) => !sources.has(name));
      if (modelInputs.length !== 1 && free.length !== 1) {
        throw new TesseraError('INVALID_PARAMETER', `--features: ${modelLabel} has ${modelInputs.length} inputs; name the one these features feed, as --features <input>=${spec}`);
      }
      input = free[0] ?? inputNames[0]!;
    }
    const expanded = expandFeatures(list, names);
    requireColumns(expanded, names, '--features');
    bind(input, { kind: 'features', columns: expanded }, '--features');
  }
  for (const spec of modelInputs) {
    if (sources.has(spec.name)) continue;
    if (names.includes(spec.name)) {
      sources.set(spec.name, { kind: 'column', column: spec.name });
      continue;
    }
    throw new TesseraError(
      'INVALID_PARAMETER',
      `${modelLabel} input '${spec.name}' is not mapped: pass --features ${modelInputs.length > 1 ? `${spec.name}=` : ''}<columns> or --input-column ${spec.name}=<column>` +
        ` (the model's inputs: ${describeInputs()}; the input's columns: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', ...' : ''})`,
    );
  }
  const batching = maxBatchSize > 0;
  const bindings = modelInputs.map((spec): InputBinding => {
    const source = sources.get(spec.name)!;
    const dims = batching ? spec.shape.slice(1) : spec.shape;
    const rowShape = settleShape(spec, dims, source, head);
    const perRow = rowShape.reduce((a, b) => a * b, 1);
    return { input: spec.name, datatype: spec.datatype, rowShape, perRow, source };
  });
  const read = new Set<string>();
  for (const binding of bindings) {
    if (binding.source.kind === 'features') for (const column of binding.source.columns) read.add(column);
    else read.add(binding.source.column);
  }
  return { bindings, batching, columns: [...read] };
}

function requireColumns(wanted: readonly string[], names: readonly string[], flag: string): void {
  const missing = wanted.filter((name) => !names.includes(name));
  if (missing.length > 0) {
    throw inputError(
      `${flag}: the input has no column${missing.length > 1 ? 's' : ''} ${missing.slice(0, 5).map((m) => `'${m}'`).join(', ')}${missing.length > 5 ? ', ...' : ''}; ` +
        `its columns are: ${names.slice(0, 20).join(', ')}${names.length > 20 ? `, ... (${names.length} in all)` : ''}`,
    );
  }
}

/** `f0..f3,x,y*` -> f0,f1,f2,f3,x, then every column starting with `y` in file order. */
export function expandFeatures(list: string, names: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of list.split(',')) {
    const token = raw.trim();
    if (token === '') continue;
    const range = /^(.*?)(\d+)\.\.(.*?)(\d+)$/.exec(token);
    if (range !== null && range[1] === range[3]) {
      const prefix = range[1]!;
      const from = Number(range[2]);
      const to = Number(range[4]);
      const width = range[2]!.length > 1 && range[2]!.startsWith('0') ? range[2]!.length : 0;
      if (to < from) throw new TesseraError('INVALID_PARAMETER', `--features: range '${token}' runs backwards`);
      for (let i = from; i <= to; i++) out.push(`${prefix}${width > 0 ? String(i).padStart(width, '0') : i}`);
      continue;
    }
    if (token.endsWith('*')) {
      const prefix = token.slice(0, -1);
      const matched = names.filter((name) => name.startsWith(prefix));
      if (matched.length === 0) throw inputError(`--features: no input column starts with '${prefix}'`);
      out.push(...matched);
      continue;
    }
    out.push(token);
  }
  if (out.length === 0) throw new TesseraError('INVALID_PARAMETER', `--features: no columns in '${list}'`);
  const duplicate = out.find((name, i) => out.indexOf(name) !== i);
  if (duplicate !== undefined) throw new TesseraError('INVALID_PARAMETER', `--features: column '${duplicate}' is listed twice`);
  return out;
}

function settleShape(spec: TensorSpec, dims: readonly number[], source: InputSourceSpec, head: InputBlock | undefined): number[] {
  const where = `input '${spec.name}' (shape ${formatShape(spec.shape)})`;
  const fixed = dims.filter((dim) => dim !== -1).reduce((a, b) => a * b, 1);
  const unknown = dims.filter((dim) => dim === -1).length;
  let count: number;
  if (source.kind === 'features') {
    count = source.columns.length;
  } else {
    if (unknown === 0) return [...dims];
    count = -1;
    const values = head?.column(source.column);
    for (let r = 0; values !== undefined && r < values.length && count === -1; r++) {
      const flat = flattenValue(values[r]);
      if (flat !== undefined && flat.length > 0) count = flat.length;
    }
    if (count === -1) {
      throw inputError(`${where} has a variable per-row size, and no row among the first ones of column '${source.column}' holds an array to take it from`);
    }
  }
  if (unknown === 0) {
    if (count !== fixed) {
      throw new TesseraError('INVALID_PARAMETER', `${where} takes ${fixed} values per row, but --features names ${count} column${count === 1 ? '' : 's'}`);
    }
    return [...dims];
  }
  if (unknown > 1) {
    throw new TesseraError('INVALID_PARAMETER', `${where} has ${unknown} variable per-row dims; pin them in the model config (input dims) so rows can be shaped`);
  }
  if (count % fixed !== 0) throw new TesseraError('INVALID_PARAMETER', `${where}: ${count} values per row do not fill its shape`);
  return dims.map((dim) => (dim === -1 ? count / fixed : dim));
}

/** A column value as a flat list of elements: arrays (nested too), JSON array text, or a scalar. */
export function flattenValue(value: unknown): unknown[] | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') {
    const text = value.trim();
    if (text.startsWith('[')) {
      try {
        return flattenValue(JSON.parse(text) as unknown);
      } catch {
        return undefined;
      }
    }
    return [value];
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<unknown>);
  if (!Array.isArray(value)) return [value];
  if (!value.some(Array.isArray)) return value;
  const out: unknown[] = [];
  const stack: unknown[][] = [value];
  const positions: number[] = [0];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const at = positions[positions.length - 1]!;
    if (at >= top.length) {
      stack.pop();
      positions.pop();
      continue;
    }
    positions[positions.length - 1] = at + 1;
    const item = top[at];
    if (Array.isArray(item)) {
      if (stack.length > 32) return undefined;
      stack.push(item);
      positions.push(0);
    } else {
      out.push(item);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Encoding rows into request tensors
// ---------------------------------------------------------------------------

type Store = (value: unknown, at: number) => string | undefined;

const INTEGER_RANGE: Partial<Record<DataType, readonly [number, number]>> = {
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff],
};

/** A number from a cell: numbers, bigints and numeric text; undefined when it is none of those. */
function numeric(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string') {
    const text = value.trim();
    if (text === '') return undefined;
    const n = Number(text);
    return Number.isNaN(n) && !/^[+-]?nan$/i.test(text) ? undefined : n;
  }
  return undefined;
}

function isMissing(value: unknown): boolean {
  return value === null || value === undefined || (typeof value === 'string' && value.trim() === '');
}

/** A function that writes one element of `datatype` into `target`, or says why it cannot. */
function storeFor(datatype: DataType, target: NumericArray | Buffer[]): Store {
  switch (datatype) {
    case 'FP32':
    case 'FP64': {
      const out = target as Float32Array | Float64Array;
      return (value, at) => {
        const n = typeof value === 'number' ? value : numeric(value);
        if (n === undefined) return `expected a number, got ${describeValue(value)}`;
        // Finite, and within FP32's range: 1e39 would be an infinity in the tensor.
        const problem = floatProblem(n, datatype);
        if (problem !== undefined) return problem;
        out[at] = n;
        return undefined;
      };
    }
    case 'FP16': {
      const out = target as Uint16Array;
      return (value, at) => {
        const n = numeric(value);
        if (n === undefined) return `expected a number, got ${describeValue(value)}`;
        const problem = floatProblem(n, 'FP16');
        if (problem !== undefined) return problem;
        out[at] = toHalfBits(n);
        return undefined;
      };
    }
    case 'INT64':
    case 'UINT64': {
      const out = target as BigInt64Array | BigUint64Array;
      const min = datatype === 'INT64' ? -(2n ** 63n) : 0n;
      const max = datatype === 'INT64' ? 2n ** 63n - 1n : 2n ** 64n - 1n;
      return (value, at) => {
        let n: bigint | undefined;
        if (typeof value === 'bigint') n = value;
        else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
        else if (typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value)) n = BigInt(value.trim());
        else if (typeof value === 'boolean') n = value ? 1n : 0n;
        if (n === undefined) return `expected an integer, got ${describeValue(value)}`;
        if (n < min || n > max) return `${n} is out of range for ${datatype}`;
        out[at] = n;
        return undefined;
      };
    }
    case 'BOOL': {
      const out = target as Uint8Array;
      return (value, at) => {
        if (value === true || value === 1 || value === 1n || value === 'true' || value === '1' || value === 'True' || value === 'TRUE') out[at] = 1;
        else if (value === false || value === 0 || value === 0n || value === 'false' || value === '0' || value === 'False' || value === 'FALSE') out[at] = 0;
        else return `expected true or false, got ${describeValue(value)}`;
        return undefined;
      };
    }
    case 'BYTES': {
      const out = target as Buffer[];
      return (value, at) => {
        if (typeof value === 'string') out[at] = Buffer.from(value, 'utf8');
        else if (value instanceof Uint8Array) out[at] = Buffer.from(value);
        else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') out[at] = Buffer.from(String(value), 'utf8');
        else return `expected a string, got ${describeValue(value)}`;
        return undefined;
      };
    }
    default: {
      const out = target as Int8Array;
      const [min, max] = INTEGER_RANGE[datatype]!;
      return (value, at) => {
        const n = typeof value === 'boolean' ? (value ? 1 : 0) : numeric(value);
        if (n === undefined || !Number.isInteger(n)) return `expected an integer, got ${describeValue(value)}`;
        if (n < min || n > max) return `${n} is out of range for ${datatype}`;
        out[at] = n;
        return undefined;
      };
    }
  }
}

/** Rows being gathered into one request: each binding's values, and which block rows they are. */
export class RequestBuilder {
  rows = 0;
  readonly rowIndex: Int32Array;
  /** Each binding's own buffer, allocated when first written (requests of packed rows need none). */
  private readonly owned: (NumericArray | Buffer[] | undefined)[];
  private readonly stores: (Store | undefined)[];
  /** Views of packed chunk memory standing for a binding's values (all `rows` rows). */
  private readonly adopted: (Float32Array | Float64Array | undefined)[];

  constructor(
    readonly mapping: Mapping,
    readonly capacity: number,
  ) {
    this.rowIndex = new Int32Array(capacity);
    const count = mapping.bindings.length;
    this.owned = new Array<undefined>(count);
    this.stores = new Array<undefined>(count);
    this.adopted = new Array<undefined>(count);
  }

  get full(): boolean {
    return this.rows >= this.capacity;
  }

  /** Binding `b`'s own buffer (capacity rows). */
  buffer(b: number): NumericArray | Buffer[] {
    let buffer = this.owned[b];
    if (buffer === undefined) {
      const binding = this.mapping.bindings[b]!;
      buffer =
        binding.datatype === 'BYTES' ? new Array<Buffer>(this.capacity * binding.perRow) : allocate(binding.datatype as NumericDataType, this.capacity * binding.perRow);
      this.owned[b] = buffer;
    }
    return buffer;
  }

  /** A function writing one element of binding `b` into its buffer. */
  store(b: number): Store {
    let store = this.stores[b];
    if (store === undefined) {
      store = storeFor(this.mapping.bindings[b]!.datatype, this.buffer(b));
      this.stores[b] = store;
    }
    return store;
  }

  /** Let `view` (the request's rows of packed memory, row-major) stand for binding `b`'s values. */
  adopt(b: number, view: Float32Array | Float64Array): void {
    this.adopted[b] = view;
  }

  /**
   * The request's tensors. Own buffers go as they are (they may be transferred to a worker);
   * adopted views of packed shared memory are passed without a copy.
   */
  tensors(): Tensor[] {
    return this.mapping.bindings.map((binding, i) => {
      const length = this.rows * binding.perRow;
      const shape = this.mapping.batching ? [this.rows, ...binding.rowShape] : [...binding.rowShape];
      const adopted = this.adopted[i];
      if (adopted !== undefined) {
        return { name: binding.input, datatype: binding.datatype, shape, data: adopted.length === length ? adopted : adopted.subarray(0, length) } as Tensor;
      }
      const buffer = this.buffer(i);
      if (binding.datatype === 'BYTES') {
        return { name: binding.input, datatype: 'BYTES', shape, data: (buffer as Buffer[]).slice(0, length) };
      }
      const numeric = buffer as NumericArray;
      const data = numeric.length === length ? numeric : (numeric.slice(0, length) as NumericArray);
      return { name: binding.input, datatype: binding.datatype, shape, data } as Tensor;
    });
  }
}

interface BindingSource {
  readonly columns: readonly ArrayLike<unknown>[];
  readonly typed: boolean;
  readonly single?: ArrayLike<unknown>;
  /** The binding's values packed row-major for the whole block (see pack.ts). */
  readonly packed?: PackedFeatures;
}

/** Per-block accessors of a mapping's columns, looked up once per block. */
export class BlockEncoder {
  private readonly sources: BindingSource[];
  private readonly allPacked: boolean;
  /** Rows of the block's packed inputs that have a non-finite value (when every input is packed). */
  private readonly packedProblems: readonly ReadonlyMap<number, string>[];

  constructor(
    readonly mapping: Mapping,
    readonly block: InputBlock,
  ) {
    this.sources = mapping.bindings.map((binding): BindingSource => {
      if (binding.source.kind === 'column') return { columns: [], typed: false, single: block.column(binding.source.column) };
      const packed = block.packed?.get(binding.input);
      if (packed !== undefined && packed.perRow === binding.perRow) return { columns: [], typed: false, packed };
      const columns = binding.source.columns.map((name) => block.column(name));
      const typed =
        (binding.datatype === 'FP32' || binding.datatype === 'FP64') &&
        columns.every((values) => values instanceof Float32Array || values instanceof Float64Array);
      return { columns, typed };
    });
    this.allPacked = this.sources.every((source) => source.packed !== undefined) && block.rowErrors.size === 0;
    this.packedProblems = this.allPacked ? this.sources.map((source) => source.packed!.problems).filter((problems) => problems.size > 0) : [];
  }

  /**
   * Encode rows [from, to) into an empty `builder` (capacity >= to - from), skipping rows for
   * which `skip(r)` is true (without `skip`, none) and reporting bad ones to `bad`. Packed
   * inputs are taken as views when every row of the range goes (no copy); feature columns that
   * are all typed float arrays are copied column by column (sequential reads); anything else
   * row by row.
   */
  encodeRange(from: number, to: number, builder: RequestBuilder, skip: ((r: number) => boolean) | undefined, bad: (r: number, problem: string) => void): void {
    if (this.allPacked) {
      this.encodePacked(from, to, builder, skip, bad);
      return;
    }
    if (!this.sources.every((source) => source.typed) || this.block.rowErrors.size > 0) {
      for (let r = from; r < to; r++) {
        if (skip?.(r) === true) continue;
        const problem = this.encodeRow(r, builder);
        if (problem !== undefined) bad(r, problem);
      }
      return;
    }
    const n = to - from;
    let problems: Map<number, string> | undefined;
    const bindings = this.mapping.bindings;
    for (let b = 0; b < bindings.length; b++) {
      const binding = bindings[b]!;
      const per = binding.perRow;
      const out = builder.buffer(b) as Float32Array;
      const columns = this.sources[b]!.columns;
      for (let j = 0; j < columns.length; j++) {
        const column = columns[j] as Float32Array;
        for (let i = 0, at = j; i < n; i++, at += per) {
          const value = column[from + i]!;
          out[at] = value;
          // What was stored is tested: a double beyond FP32's range is an infinity there.
          const stored = out[at]!;
          if (stored - stored !== 0) {
            problems ??= new Map();
            if (!problems.has(i)) problems.set(i, `feature '${featureName(binding, j)}': ${floatProblem(value, binding.datatype as 'FP32' | 'FP64') ?? `${value} is not a finite number`}`);
          }
        }
      }
    }
    let rows = 0;
    for (let i = 0; i < n; i++) {
      const r = from + i;
      if (skip?.(r) === true) continue;
      const problem = problems?.get(i);
      if (problem !== undefined) {
        bad(r, problem);
        continue;
      }
      if (rows !== i) {
        for (let b = 0; b < bindings.length; b++) {
          const per = bindings[b]!.perRow;
          const out = builder.buffer(b) as Float32Array;
          out.copyWithin(rows * per, i * per, (i + 1) * per);
        }
      }
      builder.rowIndex[rows] = r;
      rows++;
    }
    builder.rows = rows;
  }

  /** Every input packed: views of the packed rows when all of them go, else the good rows copied. */
  private encodePacked(from: number, to: number, builder: RequestBuilder, skip: ((r: number) => boolean) | undefined, bad: (r: number, problem: string) => void): void {
    const sources = this.sources;
    const problems = this.packedProblems;
    let clean = true;
    if (skip !== undefined || problems.length > 0) {
      for (let r = from; r < to && clean; r++) {
        if (skip?.(r) === true) clean = false;
        for (let p = 0; p < problems.length && clean; p++) if (problems[p]!.has(r)) clean = false;
      }
    }
    if (!clean) {
      for (let r = from; r < to; r++) {
        if (skip?.(r) === true) continue;
        const problem = this.encodeRow(r, builder);
        if (problem !== undefined) bad(r, problem);
      }
      return;
    }
    for (let b = 0; b < sources.length; b++) {
      const { data, perRow } = sources[b]!.packed!;
      builder.adopt(b, data.subarray(from * perRow, to * perRow));
    }
    const n = to - from;
    for (let i = 0; i < n; i++) builder.rowIndex[i] = from + i;
    builder.rows = n;
  }

  /**
   * Validate row `r` of the block and append it to `builder`. Returns why the row is bad (and
   * leaves the builder as it was) or undefined when the row was added.
   */
  encodeRow(r: number, builder: RequestBuilder): string | undefined {
    const parseError = this.block.rowErrors.get(r);
    if (parseError !== undefined) return parseError;
    const row = builder.rows;
    const bindings = this.mapping.bindings;
    for (let b = 0; b < bindings.length; b++) {
      const binding = bindings[b]!;
      const source = this.sources[b]!;
      const base = row * binding.perRow;
      if (source.packed !== undefined) {
        const problem = source.packed.problems.get(r);
        if (problem !== undefined) return problem;
        const per = binding.perRow;
        (builder.buffer(b) as Float32Array).set(source.packed.data.subarray(r * per, (r + 1) * per), base);
        continue;
      }
      if (source.single !== undefined) {
        const problem = this.encodeColumn(binding, source.single[r], builder.store(b), base);
        if (problem !== undefined) return problem;
        continue;
      }
      const columns = source.columns;
      if (source.typed) {
        const out = builder.buffer(b) as Float32Array;
        for (let j = 0; j < columns.length; j++) {
          const value = (columns[j] as Float32Array)[r]!;
          const problem = floatProblem(value, binding.datatype as 'FP32' | 'FP64');
          if (problem !== undefined) return `feature '${featureName(binding, j)}': ${problem}`;
          out[base + j] = value;
        }
        continue;
      }
      const store = builder.store(b);
      for (let j = 0; j < columns.length; j++) {
        const value = columns[j]![r];
        if (value === null || value === undefined || (binding.datatype !== 'BYTES' && isMissing(value))) return `feature '${featureName(binding, j)}' is missing`;
        const problem = store(value, base + j);
        if (problem !== undefined) return `feature '${featureName(binding, j)}': ${problem}`;
      }
    }
    builder.rowIndex[row] = r;
    builder.rows = row + 1;
    return undefined;
  }

  private encodeColumn(binding: InputBinding, value: unknown, store: Store, base: number): string | undefined {
    const source = binding.source as { column: string };
    const where = source.column === binding.input ? `column '${source.column}'` : `column '${source.column}' (input '${binding.input}')`;
    if (value === null || value === undefined) return `${where} is missing`;
    // One BYTES value a row: text (or binary) is the value itself, even when it starts with
    // '[' ("[Spoiler] great movie"); JSON array text is read only where a row takes several
    // values or numbers.
    const flat = binding.datatype === 'BYTES' && binding.perRow === 1 && (typeof value === 'string' || value instanceof Uint8Array) ? [value] : flattenValue(value);
    if (flat === undefined) return `${where}: expected ${binding.perRow === 1 ? 'a value' : `an array of ${binding.perRow} values`}, got ${describeValue(value)}`;
    if (flat.length !== binding.perRow) {
      return `${where}: expected ${binding.perRow} value${binding.perRow === 1 ? '' : 's'} (shape ${formatShape(binding.rowShape)}), got ${flat.length}`;
    }
    for (let j = 0; j < flat.length; j++) {
      const element = flat[j];
      if (element === null || element === undefined) return `${where}: element ${j} is missing`;
      const problem = store(element, base + j);
      if (problem !== undefined) return `${where}: element ${j}: ${problem}`;
    }
    return undefined;
  }
}

/**
 * The feature inputs of a mapping that can be packed row-major (pack.ts): FP32/FP64 inputs fed
 * by feature columns, read from a typed input (Parquet; text formats are parsed row by row).
 */
export function packSpecs(mapping: Mapping): PackSpec[] {
  if (!mapping.batching) return [];
  const specs: PackSpec[] = [];
  for (const binding of mapping.bindings) {
    if (binding.source.kind !== 'features') continue;
    if (binding.datatype !== 'FP32' && binding.datatype !== 'FP64') continue;
    specs.push({ input: binding.input, columns: binding.source.columns, datatype: binding.datatype });
  }
  return specs;
}

function featureName(binding: InputBinding, j: number): string {
  return binding.source.kind === 'features' ? (binding.source.columns[j] ?? String(j)) : String(j);
}

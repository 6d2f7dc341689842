import { allocate, type DataType, type NumericArray, type TensorData } from './datatype.js';
import { TesseraError } from './errors.js';
import { fromHalfBits, toHalfBits } from './float16.js';

/**
 * Tensor data as JSON, for every JSON protocol: values go straight from the parsed JSON into
 * the datatype's typed array, once, with no intermediate per-element objects. Nested arrays
 * (row-major) and flat arrays are both accepted.
 */

/** Deepest nesting accepted for tensor data: deeper input is refused, not recursed into. */
export const MAX_JSON_TENSOR_RANK = 32;

const INTEGER_RANGE: Partial<Record<DataType, readonly [number, number]>> = {
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff],
};

/**
 * Per float datatype narrower than a double: `overflow`, the smallest magnitude its storage
 * rounds to infinity (half way from the largest finite value to the next power of two, a tie
 * that rounds to even: the infinity), and `max`, its largest finite value. A finite JSON number
 * at or beyond `overflow` is refused, as TF Serving refuses it ("without loss of precision"),
 * rather than stored as ±Infinity.
 */
export const FLOAT_LIMITS: Readonly<Partial<Record<DataType, { readonly overflow: number; readonly max: number }>>> = {
  FP32: { overflow: 2 ** 128 - 2 ** 103, max: 3.4028234663852886e38 },
  FP16: { overflow: 65520, max: 65504 },
};

const FP32_OVERFLOW = FLOAT_LIMITS.FP32!.overflow;
const FP16_OVERFLOW = FLOAT_LIMITS.FP16!.overflow;

/** Why `value` cannot be stored as float `datatype` (FP32, FP16), as the end of a message: "1e+39 is outside ...". */
export function floatRangeProblem(datatype: DataType, value: number): string {
  const max = FLOAT_LIMITS[datatype]?.max ?? Number.MAX_VALUE;
  return `${value} is outside the ${datatype} range (finite values of magnitude up to ${max}; larger ones would become ${value < 0 ? '-' : ''}Infinity)`;
}

/** Characters of the standard (RFC 4648 §4) and URL-safe (§5) base64 alphabets, without padding. */
const BASE64_STANDARD = /^[A-Za-z0-9+/]*$/;
const BASE64_URL_SAFE = /^[A-Za-z0-9_-]*$/;

/**
 * Why `text` is not base64, or undefined when it is: the standard or the URL-safe alphabet (not
 * mixed), padding optional but, when present, complete (`=` or `==` up to a multiple of 4). TF
 * Serving (absl::Base64Unescape) refuses invalid characters, where Buffer.from(text, 'base64')
 * skips them and decodes what is left.
 */
export function base64Problem(text: string): string | undefined {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const body = text.slice(0, text.length - padding);
  if (!BASE64_STANDARD.test(body) && !BASE64_URL_SAFE.test(body)) {
    const bad = [...body].findIndex((c) => !/[A-Za-z0-9+/_-]/.test(c));
    if (bad === -1) return "it mixes the standard ('+', '/') and URL-safe ('-', '_') alphabets";
    return `character ${JSON.stringify(body[bad])} at offset ${bad} is not in the base64 alphabet (A-Z, a-z, 0-9, '+' and '/', or '-' and '_'; '=' only as padding at the end)`;
  }
  if (body.length % 4 === 1) return `${body.length} base64 characters cannot encode whole bytes (a multiple of 4, less 1 or 2 with the padding left out)`;
  if (padding > 0 && text.length % 4 !== 0) return `its padding is wrong: ${text.length} characters with '=' padding, which must make a multiple of 4`;
  return undefined;
}

/**
 * A JSON array of numbers that a protocol's parser read straight into doubles (nested
 * rectangular arrays flattened row-major), in place of the array `JSON.parse` would build.
 * Tensor data accepts it wherever it accepts an array.
 */
export class JsonNumberArray {
  /** Doubles, or float32 values when the parser knew the input is FP32 (each rounded as a Float32Array store rounds). */
  constructor(readonly values: Float64Array | Float32Array) {}
}

/** Options of {@link tensorDataFromJson}. */
export interface JsonTensorOptions {
  /**
   * Accept `{"b64": "<base64>"}` for BYTES elements: TF Serving's encoding of binary strings
   * (api_rest.md, "Encoding binary values").
   */
  readonly base64Objects?: boolean;
  /** Refuse data with more elements than this before converting any (LIMIT_EXCEEDED naming `setting`). */
  readonly maxElements?: JsonTensorLimit | undefined;
  /** Refuse BYTES elements longer than this many bytes (LIMIT_EXCEEDED naming `setting`). */
  readonly maxBytesElementLength?: JsonTensorLimit | undefined;
}

/** A limit on tensor data and the setting that changes it, named in refusals. */
export interface JsonTensorLimit {
  readonly limit: number;
  readonly setting: string;
}

/** Convert JSON `data` of an input named in `where` to the typed array of `datatype`. */
export function tensorDataFromJson(datatype: DataType, data: unknown, where: string, options: JsonTensorOptions = {}): TensorData {
  if (data instanceof JsonNumberArray) return tensorDataFromNumbers(datatype, data.values, where, options);
  if (!Array.isArray(data)) throw invalid(`${where}: 'data' must be an array, got ${describe(data)}`);
  const flat = isFlat(data) ? data : flatten(data, where);
  const maxElements = options.maxElements;
  if (maxElements !== undefined && flat.length > maxElements.limit) {
    throw new TesseraError('LIMIT_EXCEEDED', `${where} has ${flat.length} ${datatype === 'BYTES' ? 'BYTES ' : ''}elements; the limit is ${maxElements.limit} (${maxElements.setting})`);
  }
  if (datatype === 'BYTES') {
    const maxLength = options.maxBytesElementLength;
    const checked = (element: Buffer, i: number): Buffer => {
      if (maxLength !== undefined && element.length > maxLength.limit) {
        throw new TesseraError('LIMIT_EXCEEDED', `${where}: BYTES element ${i} is ${element.length} bytes long; the limit is ${maxLength.limit} (${maxLength.setting})`);
      }
      return element;
    };
    return flat.map((value, i) => {
      if (typeof value === 'string') return checked(Buffer.from(value, 'utf8'), i);
      if (options.base64Objects === true && isBase64Object(value)) {
        const problem = base64Problem(value.b64);
        if (problem !== undefined) throw invalid(`${where}: element ${i}, {"b64": ${describe(value.b64)}}, is not valid base64: ${problem}`);
        return checked(Buffer.from(value.b64, 'base64'), i);
      }
      throw invalid(`${where}: element ${i} is ${describe(value)}; BYTES elements are strings${options.base64Objects === true ? ' or {"b64": "..."} objects' : ''}`);
    });
  }
  const out = allocate(datatype, flat.length);
  switch (datatype) {
    case 'BOOL':
      for (let i = 0; i < flat.length; i++) {
        const value = flat[i];
        if (typeof value !== 'boolean') throw invalid(`${where}: element ${i} is ${describe(value)}; BOOL elements are true or false`);
        (out as Uint8Array)[i] = value ? 1 : 0;
      }
      return out;
    case 'FP64':
      for (let i = 0; i < flat.length; i++) {
        const value = flat[i];
        if (typeof value !== 'number') throw invalid(`${where}: element ${i} is ${describe(value)}; expected a number for FP64`);
        (out as Float64Array)[i] = value;
      }
      return out;
    case 'FP32':
      for (let i = 0; i < flat.length; i++) {
        const value = flat[i];
        // One test on the common path; the message sorts out which check failed.
        if (typeof value !== 'number' || Math.abs(value) >= FP32_OVERFLOW) throw floatElementError(where, i, value, 'FP32');
        (out as Float32Array)[i] = value;
      }
      return out;
    case 'FP16':
      for (let i = 0; i < flat.length; i++) {
        const value = flat[i];
        if (typeof value !== 'number' || Math.abs(value) >= FP16_OVERFLOW) throw floatElementError(where, i, value, 'FP16');
        (out as Uint16Array)[i] = toHalfBits(value);
      }
      return out;
    case 'INT64':
    case 'UINT64': {
      const min = datatype === 'UINT64' ? 0 : -Number.MAX_SAFE_INTEGER;
      const big = out as BigInt64Array;
      for (let i = 0; i < flat.length; i++) {
        const value = flat[i];
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
          throw invalid(`${where}: element ${i} is ${describe(value)}; expected ${datatype === 'UINT64' ? 'a non-negative' : 'an'} integer within ±2^53 for ${datatype}`);
        }
        big[i] = BigInt(value);
      }
      return out;
    }
    default: {
      const [min, max] = INTEGER_RANGE[datatype]!;
      for (let i = 0; i < flat.length; i++) {
        const value = flat[i];
        if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
          throw invalid(`${where}: element ${i} is ${describe(value)}; expected an integer from ${min} to ${max} for ${datatype}`);
        }
        (out as Int32Array)[i] = value;
      }
      return out;
    }
  }
}

/** Tensor data from numbers already read into doubles: the same checks as for a JSON array of numbers. */
function tensorDataFromNumbers(datatype: DataType, values: Float64Array | Float32Array, where: string, options: JsonTensorOptions): TensorData {
  const maxElements = options.maxElements;
  if (maxElements !== undefined && values.length > maxElements.limit) {
    throw new TesseraError('LIMIT_EXCEEDED', `${where} has ${values.length} ${datatype === 'BYTES' ? 'BYTES ' : ''}elements; the limit is ${maxElements.limit} (${maxElements.setting})`);
  }
  switch (datatype) {
    case 'FP64':
      return values instanceof Float64Array ? values : Float64Array.from(values);
    case 'FP32': {
      // One native conversion pass, then one look for infinities: a finite JSON number beyond
      // FP32's range is refused, as on the per-element path. V2's parser (v2/json-body.ts) hands
      // over float32 only when none became infinite, else the doubles, so the message can give
      // the number as sent.
      const out = values instanceof Float32Array ? values : new Float32Array(values);
      if (!allFinite(out)) {
        const i = out.findIndex((value) => !Number.isFinite(value));
        throw invalid(`${where}: element ${i}: ${floatRangeProblem('FP32', values instanceof Float64Array ? values[i]! : out[i]!)}`);
      }
      return out;
    }
    case 'BYTES':
    case 'BOOL':
    case 'FP16':
    case 'INT64':
    case 'UINT64':
      // Rare as numbers, or refused: the per-element path gives the same values and messages.
      return tensorDataFromJson(datatype, Array.from(values), where, options);
    default: {
      const [min, max] = INTEGER_RANGE[datatype]!;
      const out = allocate(datatype, values.length) as Int32Array;
      for (let i = 0; i < values.length; i++) {
        const value = values[i]!;
        if (!Number.isInteger(value) || value < min || value > max) {
          throw invalid(`${where}: element ${i} is ${describe(value)}; expected an integer from ${min} to ${max} for ${datatype}`);
        }
        out[i] = value;
      }
      return out;
    }
  }
}

/**
 * JSON text of a tensor's data as a flat array. Typed arrays are joined directly; non-finite
 * floats (which JSON cannot carry) become null.
 */
export function tensorDataToJsonText(datatype: DataType, data: TensorData): string {
  if (datatype === 'BYTES') return JSON.stringify((data as Buffer[]).map((b) => b.toString('utf8')));
  if (datatype === 'BOOL') return `[${Array.from(data as Uint8Array, (v) => (v !== 0 ? 'true' : 'false')).join(',')}]`;
  if (datatype === 'FP16') return `[${Array.from(data as Uint16Array, (v) => finiteOrNull(fromHalfBits(v))).join(',')}]`;
  const numeric = data as NumericArray;
  if ((datatype === 'FP32' || datatype === 'FP64') && !allFinite(numeric as Float32Array)) {
    return `[${Array.from(numeric as Float32Array, finiteOrNull).join(',')}]`;
  }
  return `[${(numeric as Float32Array).join(',')}]`;
}

/** Tensor data as plain JSON values (for protocols that nest or reshape them). */
export function tensorDataToJsonValues(datatype: DataType, data: TensorData): (number | boolean | string | null)[] {
  if (datatype === 'BYTES') return (data as Buffer[]).map((b) => b.toString('utf8'));
  if (datatype === 'BOOL') return Array.from(data as Uint8Array, (v) => v !== 0);
  if (datatype === 'FP16') return Array.from(data as Uint16Array, (v) => finiteOrNullValue(fromHalfBits(v)));
  if (datatype === 'INT64' || datatype === 'UINT64') return Array.from(data as BigInt64Array, (v) => Number(v));
  return Array.from(data as Float32Array, finiteOrNullValue);
}

/** TF Serving's binary string value: an object whose only key is `b64`. */
export function isBase64Object(value: unknown): value is { b64: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === 'b64' && typeof (value as { b64: unknown }).b64 === 'string';
}

/**
 * The shape of nested JSON arrays (`[[1,2],[3,4]]` → [2,2]; a scalar → []), refusing ragged
 * nesting with the path where it breaks. Non-array values (numbers, strings, booleans,
 * `{"b64"}` objects) are elements.
 */
export function inferJsonShape(value: unknown, where: string): number[] {
  const shape: number[] = [];
  for (let node = value; Array.isArray(node); node = node[0]) {
    shape.push(node.length);
    if (shape.length > MAX_JSON_TENSOR_RANK) throw invalid(`${where}: the value is nested deeper than ${MAX_JSON_TENSOR_RANK} levels`);
    if (node.length === 0) break;
  }
  const check = (node: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(node)) throw invalid(`${where}: ragged value: ${path} is an array where the first element's nesting has a scalar`);
      return;
    }
    if (!Array.isArray(node)) throw invalid(`${where}: ragged value: ${path} is ${describe(node)} where an array of ${shape[depth]} is expected`);
    if (node.length !== shape[depth]) {
      throw invalid(`${where}: ragged value: ${path} has ${node.length} elements where the first has ${shape[depth]}`);
    }
    for (let i = 0; i < node.length; i++) check(node[i], depth + 1, `${path}[${i}]`);
  };
  check(value, 0, 'value');
  return shape;
}

/**
 * Why nested `data` is not rectangular (sibling arrays of different lengths, e.g.
 * [[1,2,3,4,5],[6,7,8]]), or undefined when it is. Flat data is always rectangular.
 */
export function nestingProblem(data: unknown): string | undefined {
  const lengths: number[] = [];
  const walk = (node: unknown, depth: number): string | undefined => {
    if (!Array.isArray(node)) return undefined;
    if (depth > MAX_JSON_TENSOR_RANK) return `the value is nested deeper than ${MAX_JSON_TENSOR_RANK} levels`;
    const seen = lengths[depth];
    if (seen === undefined) lengths[depth] = node.length;
    else if (seen !== node.length) return `arrays at nesting depth ${depth + 1} have ${seen} and ${node.length} elements`;
    for (const item of node) {
      const problem = walk(item, depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
  return walk(data, 0);
}

/** Flat row-major values nested to `shape` (rank 0 → the one value). */
export function nestJsonValues<T>(flat: readonly T[], shape: readonly number[]): unknown {
  if (shape.length === 0) return flat[0];
  const build = (offset: number, depth: number): unknown[] => {
    const size = shape[depth]!;
    if (depth === shape.length - 1) return flat.slice(offset, offset + size);
    let stride = 1;
    for (let d = depth + 1; d < shape.length; d++) stride *= shape[d]!;
    const out: unknown[] = new Array(size);
    for (let i = 0; i < size; i++) out[i] = build(offset + i * stride, depth + 1);
    return out;
  };
  return build(0, 0);
}

/** Whether every element of `data` is finite (JSON cannot carry NaN or infinities). */
export function allFinite(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return false;
  return true;
}

function finiteOrNull(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

function finiteOrNullValue(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

function isFlat(data: unknown[]): boolean {
  return data.length === 0 || !Array.isArray(data[0]);
}

/** Row-major leaves of nested arrays, refusing ragged or over-deep nesting. */
function flatten(data: unknown[], where: string): unknown[] {
  const out: unknown[] = [];
  let leafDepth = -1;
  const walk = (node: unknown[], depth: number): void => {
    if (depth > MAX_JSON_TENSOR_RANK) throw invalid(`${where}: 'data' is nested deeper than ${MAX_JSON_TENSOR_RANK} levels`);
    for (const item of node) {
      if (Array.isArray(item)) {
        walk(item, depth + 1);
      } else {
        if (leafDepth === -1) leafDepth = depth;
        else if (leafDepth !== depth) throw invalid(`${where}: 'data' is ragged: values appear at nesting depths ${leafDepth} and ${depth}`);
        out.push(item);
      }
    }
  };
  walk(data, 1);
  return out;
}

function floatElementError(where: string, i: number, value: unknown, datatype: 'FP32' | 'FP16'): TesseraError {
  if (typeof value !== 'number') return invalid(`${where}: element ${i} is ${describe(value)}; expected a number for ${datatype}`);
  return invalid(`${where}: element ${i}: ${floatRangeProblem(datatype, value)}`);
}

function invalid(message: string): TesseraError {
  return new TesseraError('INVALID_INPUT_DATA', message);
}

/** Short description of a JSON value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value) || value instanceof JsonNumberArray) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 20 ? `${value.slice(0, 20)}...` : value);
  if (typeof value === 'object') return 'an object';
  return String(value);
}

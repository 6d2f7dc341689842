import type { z } from 'zod';
import { describeIssues } from '../../config/model-config.js';
import { TesseraError } from '../../core/errors.js';
import { fromHalfBits } from '../../core/float16.js';
import type { Tensor, TensorSpec } from '../../core/tensor.js';
import type { HandlerFile, HandlerModelInfo, HandlerRequest } from './handler.js';

/** Helpers shared by the built-in handlers. */

/**
 * Options parsed once per model: the parsed value is cached on the HandlerModelInfo object,
 * so pass the same object for every request of a model version.
 */
export function cachedPlan<T>(cache: WeakMap<HandlerModelInfo, T>, model: HandlerModelInfo, make: () => T): T {
  let plan = cache.get(model);
  if (plan === undefined) {
    plan = make();
    cache.set(model, plan);
  }
  return plan;
}

/** Parse `handler_options` with a handler's schema; INVALID_MODEL_CONFIG naming the option on failure. */
export function parseOptions<S extends z.ZodType>(schema: S, options: Readonly<Record<string, unknown>>, handler: string): z.output<S> {
  const parsed = schema.safeParse(options);
  if (!parsed.success) throw configError(`${handler} handler: invalid handler_options: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

export function configError(message: string): TesseraError {
  return new TesseraError('INVALID_MODEL_CONFIG', message);
}

/** The model input a handler fills: the named one, or the model's only input. */
export function pickInput(model: HandlerModelInfo, name: string | undefined, handler: string): TensorSpec {
  if (name !== undefined) {
    const spec = model.inputs.find((s) => s.name === name);
    if (spec === undefined) throw configError(`${handler} handler: handler_options.input '${name}' is not an input of model '${model.name}' (inputs: ${model.inputs.map((s) => s.name).join(', ')})`);
    return spec;
  }
  const [only, other] = model.inputs;
  if (only === undefined) throw configError(`${handler} handler: model '${model.name}' has no inputs`);
  if (other !== undefined) {
    throw configError(`${handler} handler: model '${model.name}' has several inputs (${model.inputs.map((s) => s.name).join(', ')}); set handler_options.input`);
  }
  return only;
}

/** Field names TorchServe's handlers read their input from (`row.get("data") or row.get("body")`). */
const INPUT_FIELD_NAMES: ReadonlySet<string> = new Set(['data', 'body']);

/**
 * The files that hold a request's input: those named `data` or `body` (TorchServe's names; the
 * whole body of a request that is not multipart is `body`) when there are any, else every file.
 * Other parts (a metadata file beside `-F data=@image.png`) are left to custom handlers.
 */
export function inputFiles(request: HandlerRequest): readonly HandlerFile[] {
  const named = request.files.filter((file) => INPUT_FIELD_NAMES.has(file.fieldName));
  return named.length > 0 ? named : request.files;
}

/** The request body parsed as JSON (the first input file: see {@link inputFiles}). */
export function bodyJson(request: HandlerRequest): unknown {
  const file = inputFiles(request)[0];
  if (file === undefined || file.data.length === 0) throw new TesseraError('INVALID_REQUEST', 'the request has no body; send JSON');
  try {
    return JSON.parse(file.data.toString('utf8'));
  } catch (error) {
    throw new TesseraError('INVALID_REQUEST', `the request body is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

/** A tensor's elements as doubles (FP16 decoded, 64-bit integers converted). */
export function numericValues(tensor: Tensor, handler: string): Float64Array {
  const data = tensor.data;
  switch (tensor.datatype) {
    case 'BYTES':
      throw new TesseraError('HANDLER_FAILED', `${handler} handler: output '${tensor.name}' is BYTES; expected numbers`);
    case 'FP16':
      return Float64Array.from(data as Uint16Array, fromHalfBits);
    case 'INT64':
    case 'UINT64':
      return Float64Array.from(data as BigInt64Array, (v) => Number(v));
    default:
      return Float64Array.from(data as Float32Array);
  }
}

/** Softmax of `values` into a new array (numerically stable). */
export function softmax(values: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]!);
  const out = Array.from(values, (v) => Math.exp(v - max));
  const sum = out.reduce((a, b) => a + b, 0);
  return out.map((v) => v / sum);
}

/** True when `values` already look like a probability distribution (in [0, 1], summing to 1). */
export function isDistribution(values: ArrayLike<number>, tolerance = 1e-3): boolean {
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(v >= -tolerance && v <= 1 + tolerance)) return false;
    sum += v;
  }
  return Math.abs(sum - 1) <= tolerance;
}

/** Index of the largest value (the first one on ties). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** The output tensor to read: the named one, or the first. */
export function pickOutput(outputs: readonly Tensor[], name: string | undefined, handler: string): Tensor {
  const tensor = name === undefined ? outputs[0] : outputs.find((t) => t.name === name);
  if (tensor === undefined) {
    throw new TesseraError('HANDLER_FAILED', `${handler} handler: ${name === undefined ? 'the model returned no outputs' : `no output '${name}' among ${outputs.map((t) => t.name).join(', ')}`}`);
  }
  return tensor;
}

/** Split `values` into `rows` equal rows. */
export function rowsOf(values: Float64Array, rows: number, tensor: Tensor, handler: string): Float64Array[] {
  if (rows <= 0 || values.length % rows !== 0) {
    throw new TesseraError('HANDLER_FAILED', `${handler} handler: output '${tensor.name}' has ${values.length} values, not divisible into ${rows} row(s)`);
  }
  const width = values.length / rows;
  return Array.from({ length: rows }, (_, r) => values.subarray(r * width, (r + 1) * width));
}

/** JSON-safe number (JSON has no NaN or Infinity). */
export function jsonNumber(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

/**
 * An object whose keys keep their order in JSON text even when they look like numbers (plain JS
 * objects list integer-like keys first, ascending, so `{"281": 0.9, "3": 0.1}` would come out
 * reversed). Write answers with {@link handlerAnswerJson} to keep the order; `JSON.stringify`
 * still works through `toJSON`, without the order guarantee.
 */
export class OrderedObject {
  constructor(readonly entries: readonly (readonly [string, unknown])[]) {}

  get(key: string): unknown {
    return this.entries.find(([k]) => k === key)?.[1];
  }

  keys(): string[] {
    return this.entries.map(([k]) => k);
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, value] of this.entries) Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    return out;
  }
}

/**
 * JSON text of a handler's answer, keeping the key order of {@link OrderedObject}s anywhere in it.
 * What a handler naturally hands back from tensors is written as JSON too: typed arrays (a
 * tensor's `data`) as arrays, and BigInts (INT64/UINT64 values) as exact integers. A value that
 * has no JSON form (a cycle) is HANDLER_FAILED, naming where it is.
 */
export function handlerAnswerJson(value: unknown): string {
  return write(value, '$', new Set()) ?? 'null';
}

function write(value: unknown, at: string, open: Set<object>): string | undefined {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object' || value === null) return JSON.stringify(value); // undefined, functions and symbols give undefined, as in JSON.stringify
  if (open.has(value)) throw new TesseraError('HANDLER_FAILED', `handler postprocess returned an answer that refers to itself at ${at}, which JSON cannot hold`);
  open.add(value);
  try {
    if (value instanceof OrderedObject) return objectJson(value.entries, at, open);
    if (Array.isArray(value)) return `[${value.map((item, i) => write(item, `${at}[${i}]`, open) ?? 'null').join(',')}]`;
    const withToJson = value as { toJSON?: () => unknown };
    if (typeof withToJson.toJSON === 'function') return write(withToJson.toJSON(), at, open);
    if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
      const items = value as unknown as ArrayLike<number | bigint>;
      const parts = new Array<string>(items.length);
      for (let i = 0; i < items.length; i++) parts[i] = write(items[i], at, open)!;
      return `[${parts.join(',')}]`;
    }
    return objectJson(Object.entries(value), at, open);
  } finally {
    open.delete(value);
  }
}

function objectJson(entries: readonly (readonly [string, unknown])[], at: string, open: Set<object>): string {
  const parts: string[] = [];
  for (const [key, item] of entries) {
    const text = write(item, `${at}.${key}`, open);
    if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

import { TesseraError } from '../core/errors.js';
import type { InferenceRequest } from '../core/inference.js';
import { elementCount } from '../core/shape.js';

/**
 * Request limits beyond the body size: how many inputs a request may carry, how many elements
 * a tensor may hold (BYTES tensors separately: each element costs an object), how many rows
 * (first dimension), how long one BYTES element may be, and how deeply the request's JSON may
 * nest. Each refusal is LIMIT_EXCEEDED (413; gRPC RESOURCE_EXHAUSTED) naming the limit, its
 * value and the setting that changes it.
 *
 * They are checked at three points: while decoding (V2 REST and gRPC, before tensor data is
 * materialised, so a 64 MiB body of empty BYTES elements never becomes 16 million Buffers),
 * before JSON.parse (nesting, by a byte scan), and on every InferenceRequest the engine
 * receives, whatever protocol built it (TF Serving rows, CSV, cloud adapters).
 */
export interface RequestLimits {
  /** Most input tensors in one request; 0 = no limit. */
  readonly maxInputs: number;
  /** Most elements in one input tensor (non-BYTES); 0 = no limit. */
  readonly maxTensorElements: number;
  /** Most elements in one BYTES input tensor; 0 = no limit. */
  readonly maxBytesTensorElements: number;
  /** Largest first dimension (rows) of an input tensor; 0 = no limit. */
  readonly maxBatchRows: number;
  /** Longest BYTES element, in bytes; 0 = no limit. */
  readonly maxBytesElementLength: number;
  /** Deepest nesting of arrays and objects in a JSON request body; 0 = no limit. */
  readonly maxJsonDepth: number;
}

/** The command-line flag of each limit, named in refusals. */
export const LIMIT_SETTINGS: Readonly<Record<keyof RequestLimits, string>> = {
  maxInputs: '--max-inputs',
  maxTensorElements: '--max-tensor-elements',
  maxBytesTensorElements: '--max-bytes-tensor-elements',
  maxBatchRows: '--max-batch-rows',
  maxBytesElementLength: '--max-bytes-element-length',
  maxJsonDepth: '--max-json-depth',
};

/** Defaults: generous for real workloads, small enough that no single request can exhaust memory. */
export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  maxInputs: 1024,
  /** 2^24: 64 MiB of FP32, the default body limit's worth. */
  maxTensorElements: 16_777_216,
  /** 2^20: each BYTES element is an object (~100 bytes of heap), so far fewer than numeric elements. */
  maxBytesTensorElements: 1_048_576,
  maxBatchRows: 0,
  maxBytesElementLength: 16 * 1024 * 1024,
  maxJsonDepth: 64,
};

/** A limit and the setting naming it, as core/json-tensor.ts takes them. */
export interface NamedLimit {
  readonly limit: number;
  readonly setting: string;
}

function exceeded(message: string): TesseraError {
  return new TesseraError('LIMIT_EXCEEDED', message);
}

function the(limits: RequestLimits, key: keyof RequestLimits): string {
  return `the limit is ${limits[key]} (${LIMIT_SETTINGS[key]})`;
}

/** Refuse a request with more inputs than allowed. */
export function checkInputCount(count: number, limits: RequestLimits): void {
  if (limits.maxInputs > 0 && count > limits.maxInputs) throw exceeded(`the request has ${count} inputs; ${the(limits, 'maxInputs')}`);
}

/** The element limit that applies to a datatype (BYTES has its own), or undefined when unlimited. */
export function elementLimit(datatype: string, limits: RequestLimits): NamedLimit | undefined {
  const key = datatype === 'BYTES' ? 'maxBytesTensorElements' : 'maxTensorElements';
  return limits[key] > 0 ? { limit: limits[key], setting: LIMIT_SETTINGS[key] } : undefined;
}

/** The BYTES element length limit, or undefined when unlimited. */
export function bytesLengthLimit(limits: RequestLimits): NamedLimit | undefined {
  return limits.maxBytesElementLength > 0 ? { limit: limits.maxBytesElementLength, setting: LIMIT_SETTINGS.maxBytesElementLength } : undefined;
}

/** The limits core/json-tensor.ts checks while converting JSON data of `datatype`. */
export function jsonTensorLimits(datatype: string, limits: RequestLimits): { maxElements?: NamedLimit; maxBytesElementLength?: NamedLimit } {
  const maxElements = elementLimit(datatype, limits);
  const maxBytesElementLength = bytesLengthLimit(limits);
  return { ...(maxElements === undefined ? {} : { maxElements }), ...(maxBytesElementLength === undefined ? {} : { maxBytesElementLength }) };
}

/**
 * Refuse a tensor whose declared shape exceeds the element or row limits, before its data is
 * decoded. `where` names it (`input 'x'`). Dimensions that are not non-negative integers are
 * left to the decoder's own message.
 */
export function checkShape(where: string, datatype: string, shape: readonly number[], limits: RequestLimits): void {
  const rows = shape[0];
  if (limits.maxBatchRows > 0 && rows !== undefined && shape.length >= 1 && rows > limits.maxBatchRows) {
    throw exceeded(`${where} has ${rows} rows (its first dimension); ${the(limits, 'maxBatchRows')}`);
  }
  const named = elementLimit(datatype, limits);
  if (named === undefined) return;
  // Invalid or overflowing shapes are the decoder's to refuse, with its own message.
  const count = elementCount(shape);
  if (typeof count === 'number' && count > named.limit) throw elementsExceeded(where, datatype, count, named);
}

/** Refuse a tensor with more elements (`count`, from its shape or its data) than allowed. */
export function checkElementCount(where: string, datatype: string, count: number, limits: RequestLimits): void {
  const named = elementLimit(datatype, limits);
  if (named !== undefined && count > named.limit) throw elementsExceeded(where, datatype, count, named);
}

function elementsExceeded(where: string, datatype: string, count: number, named: NamedLimit): TesseraError {
  return exceeded(`${where} has ${count} ${datatype === 'BYTES' ? 'BYTES ' : ''}elements; the limit is ${named.limit} (${named.setting})`);
}

/** Refuse a BYTES element longer than allowed. */
export function checkBytesElementLength(where: string, index: number, length: number, limits: RequestLimits): void {
  if (limits.maxBytesElementLength > 0 && length > limits.maxBytesElementLength) {
    throw exceeded(`${where}: BYTES element ${index} is ${length} bytes long; ${the(limits, 'maxBytesElementLength')}`);
  }
}

/**
 * Every limit on a decoded request: inputs, each tensor's shape and data length, rows and
 * BYTES element lengths. The engine runs it on every request (see {@link enforceRequestLimits}).
 */
export function checkInferenceRequest(request: InferenceRequest, limits: RequestLimits): void {
  checkInputCount(request.inputs.length, limits);
  for (const tensor of request.inputs) {
    const where = `input '${tensor.name}'`;
    checkShape(where, tensor.datatype, tensor.shape, limits);
    checkElementCount(where, tensor.datatype, tensor.data.length, limits);
    if (tensor.datatype === 'BYTES' && limits.maxBytesElementLength > 0) {
      const data = tensor.data;
      for (let i = 0; i < data.length; i++) checkBytesElementLength(where, i, data[i]!.length, limits);
    }
  }
}

/**
 * Check every request the engine runs, whatever protocol decoded it, the tensors a model's
 * handler makes from a TorchServe-style request included.
 */
export function enforceRequestLimits(engine: { checkEveryRequest(check: (tensors: InferenceRequest) => void): void }, limits: RequestLimits): void {
  engine.checkEveryRequest((tensors) => checkInferenceRequest(tensors, limits));
}

// ---------------------------------------------------------------------------
// JSON nesting, checked on the raw bytes before JSON.parse
// ---------------------------------------------------------------------------

/** Byte classes of the scan: 0 other JSON text, 1 opens, 2 closes, 3 a quote, 4 cannot be JSON outside a string. */
const BYTE_CLASS = (() => {
  const table = new Uint8Array(256).fill(4);
  for (const c of ' \t\r\n:,0123456789+-.eEtrufalsn') table[c.charCodeAt(0)] = 0;
  table[0x5b] = 1;
  table[0x7b] = 1;
  table[0x5d] = 2;
  table[0x7d] = 2;
  table[0x22] = 3;
  return table;
})();

/** The structural bytes, for jumping over long runs without any: [ { ] } ". */
const STRUCTURAL = [0x5b, 0x7b, 0x5d, 0x7d, 0x22] as const;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Bytes scanned one by one before deciding whether to jump (few structural bytes: flat number arrays). */
const WINDOW = 1024;
const SPARSE = 8;

/**
 * How deep the JSON text in `bytes` nests arrays and objects, scanning no further than needed:
 * it stops once it has seen more than `maxDepth` levels (returning maxDepth + 1), when the
 * top-level value closes, at the first byte that cannot be JSON outside a string (the parser
 * refuses the text there, so nothing after it matters), and at once for text that does not
 * start with `[` or `{`. Strings are skipped whole; long runs without brackets or quotes (flat
 * arrays of numbers) are jumped over with Buffer.indexOf. No allocation, no recursion: a
 * 10,000-deep array is refused after its 65th byte, before the parser or any recursive code
 * of ours sees it.
 */
export function jsonNestingDepth(bytes: Uint8Array, maxDepth: number): number {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = buffer.length;
  let i = 0;
  while (i < n && (buffer[i] === 0x20 || buffer[i] === 0x0a || buffer[i] === 0x0d || buffer[i] === 0x09)) i++;
  if (i >= n || BYTE_CLASS[buffer[i]!] !== 1) return 0;
  /** Where each structural byte next occurs at or after the last jump (-1: not looked up yet). */
  const next = [-1, -1, -1, -1, -1];
  let depth = 0;
  let deepest = 0;
  while (i < n) {
    const end = Math.min(n, i + WINDOW);
    let structural = 0;
    while (i < end) {
      const kind = BYTE_CLASS[buffer[i]!]!;
      if (kind === 0) {
        i++;
        continue;
      }
      structural++;
      if (kind === 1) {
        depth++;
        if (depth > deepest) {
          deepest = depth;
          if (deepest > maxDepth) return deepest;
        }
      } else if (kind === 2) {
        depth--;
        if (depth <= 0) return deepest;
      } else if (kind === 3) {
        i = endOfString(buffer, i + 1);
        if (i < 0) return deepest;
        continue;
      } else {
        return deepest;
      }
      i++;
    }
    if (structural >= SPARSE || i >= n) continue;
    // Sparse: jump to the nearest structural byte (positions are cached, so each kind's
    // indexOf scans every byte at most once).
    let nearest = Infinity;
    for (let k = 0; k < STRUCTURAL.length; k++) {
      if (next[k]! !== Infinity && next[k]! < i) next[k] = buffer.indexOf(STRUCTURAL[k]!, i);
      if (next[k] === -1) next[k] = Infinity;
      if (next[k]! < nearest) nearest = next[k]!;
    }
    if (nearest === Infinity) return deepest;
    i = nearest;
  }
  return deepest;
}

/** Index just past the string whose contents start at `from`, or -1 when it never ends. */
function endOfString(buffer: Buffer, from: number): number {
  let start = from;
  for (;;) {
    const quote = buffer.indexOf(QUOTE, start);
    if (quote === -1) return -1;
    let slashes = 0;
    for (let b = quote - 1; b >= start && buffer[b] === BACKSLASH; b--) slashes++;
    if (slashes % 2 === 0) return quote + 1;
    start = quote + 1;
  }
}

/** Refuse JSON text nested deeper than the limit; `what` names it (`the request body`). */
export function checkJsonDepth(bytes: Uint8Array, limits: RequestLimits, what = 'the request body'): void {
  if (limits.maxJsonDepth <= 0) return;
  if (jsonNestingDepth(bytes, limits.maxJsonDepth) > limits.maxJsonDepth) {
    throw exceeded(`${what} nests JSON arrays and objects more than ${limits.maxJsonDepth} levels deep; ${the(limits, 'maxJsonDepth')}`);
  }
}

// ---------------------------------------------------------------------------
// Limits as HTTP requests carry them to the decoders
// ---------------------------------------------------------------------------

/** The Fastify decoration holding the app's limits (installed by src/security/http.ts). */
export const LIMITS_DECORATION = 'tesseraRequestLimits';

/** The request limits of the app serving `request`, when security is installed on it. */
export function requestLimitsOf(request: { readonly server: object }): RequestLimits | undefined {
  return (request.server as Record<string, RequestLimits | undefined>)[LIMITS_DECORATION] ?? undefined;
}

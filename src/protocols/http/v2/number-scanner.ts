import { WASM_BINARY } from './number-scanner-wasm.js';

/**
 * The WebAssembly number scanner of the V2 JSON body parser (number-scanner.wat): runs of
 * JSON numbers read into doubles at about twice the speed of the parser's JavaScript loop,
 * with exactly its results. Bodies are copied into the module's memory once (a memcpy, small
 * beside the scan), so only bodies large enough to pay for that use it.
 */

/**
 * Bodies from this size up to the maximum are scanned in WebAssembly. Above it the JavaScript
 * loop reads them: the module's memory, once grown, stays that size for the process's life.
 */
export const WASM_SCAN_MIN_BYTES = 16 * 1024;
export const WASM_SCAN_MAX_BYTES = 16 * 1024 * 1024;

/** Where the body goes in the module's memory: after the tables of powers of ten (23 doubles at 0, 9 int64 at 184). */
const BODY_AT = 256;
const INT_POWERS_AT = 184;
/** Numbers one scan call writes at most (512 KiB of doubles); longer runs take several calls. */
const SCAN_CAP = 64 * 1024;
const PAGE = 64 * 1024;

/** The parts of the WebAssembly API used here (the project's Node typings do not declare it). */
interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object) => { readonly exports: unknown };
}

interface ScannerExports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  readonly end: { readonly value: number };
  readonly full: { readonly value: number };
  readonly scan: (at: number, out: number, cap: number) => number;
}

/** The result of one scan call. */
export interface ScanResult {
  /** Numbers read (-1: the run holds something else; read it in JavaScript). */
  readonly count: number;
  /** Offset in the body where the scan stopped. */
  readonly end: number;
  /** True when the scan stopped at `SCAN_CAP` numbers: scan again from `end`. */
  readonly full: boolean;
}

/** One body loaded into the scanner's memory; valid until the next {@link loadBody}. */
export class LoadedBody {
  constructor(
    private readonly scanner: ScannerExports,
    private readonly outAt: number,
  ) {}

  /** Read the run of numbers starting at body offset `offset`; the doubles are in {@link values}. */
  scan(offset: number): ScanResult {
    const count = this.scanner.scan(BODY_AT + offset, this.outAt, SCAN_CAP);
    return { count, end: this.scanner.end.value - BODY_AT, full: this.scanner.full.value === 1 };
  }

  /** The doubles the last scan wrote (a view of the module's memory: copy them before the next scan). */
  values(count: number): Float64Array {
    return new Float64Array(this.scanner.memory.buffer, this.outAt, count);
  }
}

let scanner: ScannerExports | undefined;

function instance(): ScannerExports {
  if (scanner !== undefined) return scanner;
  // Small enough to compile synchronously, once per thread.
  const { WebAssembly } = globalThis as unknown as { WebAssembly: WasmApi };
  const exports = new WebAssembly.Instance(new WebAssembly.Module(WASM_BINARY)).exports as ScannerExports;
  const powers = new Float64Array(exports.memory.buffer, 0, 23);
  for (let i = 0; i < powers.length; i++) powers[i] = 10 ** i;
  const intPowers = new BigInt64Array(exports.memory.buffer, INT_POWERS_AT, 9);
  for (let i = 0; i < intPowers.length; i++) intPowers[i] = 10n ** BigInt(i);
  scanner = exports;
  return exports;
}

/**
 * Copy `bytes` into the scanner's memory (grown as needed), followed by a byte no number
 * contains (the scanner reads digits eight bytes at a time: the output area after it keeps
 * those reads inside memory).
 */
export function loadBody(bytes: Uint8Array): LoadedBody {
  const exports = instance();
  const outAt = Math.ceil((BODY_AT + bytes.length + 1) / 8) * 8;
  const needed = outAt + SCAN_CAP * 8;
  const { memory } = exports;
  if (memory.buffer.byteLength < needed) memory.grow(Math.ceil((needed - memory.buffer.byteLength) / PAGE));
  const heap = new Uint8Array(memory.buffer);
  heap.set(bytes, BODY_AT);
  heap[BODY_AT + bytes.length] = 0;
  return new LoadedBody(exports, outAt);
}

/**
 * Compile the scanner and run it over a few synthetic bodies, once per thread, so that V8's
 * optimizing compile of it (a background job at normal priority) happens at start-up rather
 * than beside the first large request's inference, whose compute threads run at a lower
 * priority (compute_thread_nice) and lose their cores to it.
 */
export function warmNumberScanner(): void {
  if (warmed) return;
  warmed = true;
  const numbers = Array.from({ length: 4096 }, (_, i) => ((i % 7) - 3 + (i % 13) / 17).toFixed(1 + (i % 5)));
  const body = Buffer.from(`[${numbers.join(',')}]`);
  for (let round = 0; round < 50; round++) loadBody(body).scan(1);
}

let warmed = false;

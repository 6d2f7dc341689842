import { isUtf8 } from 'node:buffer';
import { TesseraError } from '../../../core/errors.js';
import { allFinite, JsonNumberArray, MAX_JSON_TENSOR_RANK } from '../../../core/json-tensor.js';
import { loadBody, WASM_SCAN_MAX_BYTES, WASM_SCAN_MIN_BYTES, type LoadedBody } from './number-scanner.js';

/**
 * The V2 inference request body parser. It accepts exactly what `JSON.parse` accepts and
 * returns the same values, with one difference: the `data` of each entry of the top-level
 * `inputs` array, when it is a rectangular (possibly nested) array of numbers, comes back as
 * a {@link JsonNumberArray}: the numbers read straight from the bytes into one Float64Array.
 *
 * Why: `JSON.parse` turns a 224x224x3 image into 150,528 heap numbers in nested JS arrays,
 * ~10 ms of main-thread time per request plus the garbage collection after it. Read from the
 * bytes into a typed array the same body takes a small fraction of that. Values are the
 * same doubles `JSON.parse` gives: short decimals are converted exactly (Clinger's fast path:
 * at most 15 significant digits and a power of ten up to 1e22 are both exact doubles, so one
 * IEEE multiply or divide rounds correctly), anything longer goes through `Number()`.
 *
 * Anything else (strings, objects, mixed or ragged arrays) is parsed generically, so error
 * messages downstream stay those of the plain JSON path.
 */

/** Deepest nesting of objects and arrays accepted in a request body. */
export const MAX_JSON_DEPTH = 512;

/** Parse bytes as a V2 inference request; `what` names them in error messages. */
export function parseV2RequestJson(bytes: Buffer, what: string): unknown {
  // JSON text is UTF-8 (RFC 8259 §8.1): refuse other bytes rather than turn them into U+FFFD.
  if (!isUtf8(bytes)) {
    throw new TesseraError('INVALID_REQUEST', `${what} is not valid JSON: it is not UTF-8 text (send arbitrary bytes as BYTES through the binary tensor data extension)`);
  }
  try {
    return new V2BodyReader(bytes).document();
  } catch (error) {
    if (error instanceof JsonSyntaxError) throw new TesseraError('INVALID_REQUEST', `${what} is not valid JSON: ${error.message}`);
    throw error;
  }
}

class JsonSyntaxError extends Error {}

/** Where a value sits in the V2 request: only `inputs[i].data` is read as packed numbers. */
const enum Place {
  Other,
  Root,
  InputList,
  Input,
  InputData,
  /** `data` of an input whose `datatype` came first and is FP32: numbers go to a Float32Array. */
  InputDataFloat32,
}

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/** Scratch space for numbers while an array is read; grown as needed, copied out exactly. */
let scratch = new Float64Array(4096);
/**
 * Elements of scratch kept from one body to the next (8 MB): a body with more numbers grows it
 * for its own parse only, or one large request would pin that memory for the process's life
 * (and could hold resident memory over a load-shedding limit).
 */
const SCRATCH_KEPT = 1 << 20;

/** Elements of number scratch space held between bodies (for tests: at most SCRATCH_KEPT). */
export function retainedScratchElements(): number {
  return scratch.length;
}

class V2BodyReader {
  private pos = 0;
  private depth = 0;
  private view: DataView | undefined;
  /** The body in the WebAssembly scanner's memory (null: too small or too large for it; undefined: not loaded yet). */
  private wasm: LoadedBody | null | undefined;

  constructor(private readonly bytes: Buffer) {}

  document(): unknown {
    try {
      return this.whole();
    } finally {
      if (scratch.length > SCRATCH_KEPT) scratch = new Float64Array(4096);
    }
  }

  private whole(): unknown {
    const value = this.value(Place.Root);
    this.skipWhitespace();
    if (this.pos < this.bytes.length) this.fail('unexpected data after the JSON value');
    return value;
  }

  private value(place: Place): unknown {
    this.skipWhitespace();
    const bytes = this.bytes;
    if (this.pos >= bytes.length) this.fail('unexpected end of data');
    const c = bytes[this.pos]!;
    switch (c) {
      case 0x7b: // {
        return this.object(place);
      case 0x5b: // [
        if (place === Place.InputData || place === Place.InputDataFloat32) {
          const packed = this.numberArray(place === Place.InputDataFloat32);
          if (packed !== undefined) return packed;
        }
        return this.array(place === Place.Root ? Place.Other : place);
      case 0x22: // "
        return this.string();
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail(`unexpected ${this.describeByte(c)}`);
    }
  }

  private object(place: Place): Record<string, unknown> {
    this.enter();
    this.pos++; // {
    const out: Record<string, unknown> = {};
    this.skipWhitespace();
    if (this.bytes[this.pos] === 0x7d) {
      this.pos++;
      this.depth--;
      return out;
    }
    // In an input: where its `data` was read as float32 (because `datatype` FP32 came first).
    let float32DataAt = -1;
    for (;;) {
      this.skipWhitespace();
      if (this.bytes[this.pos] !== 0x22) this.fail(`expected a property name in double quotes, found ${this.describeHere()}`);
      const key = this.string();
      this.skipWhitespace();
      if (this.bytes[this.pos] !== 0x3a) this.fail(`expected ':' after property name, found ${this.describeHere()}`);
      this.pos++;
      let childPlace = Place.Other;
      if (place === Place.Root && key === 'inputs') childPlace = Place.InputList;
      else if (place === Place.Input && key === 'data') {
        childPlace = out['datatype'] === 'FP32' ? Place.InputDataFloat32 : Place.InputData;
        this.skipWhitespace();
        float32DataAt = childPlace === Place.InputDataFloat32 ? this.pos : -1;
      }
      const value = this.value(childPlace);
      // Same semantics as JSON.parse: a later duplicate key wins; "__proto__" is an own property.
      if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      else out[key] = value;
      this.skipWhitespace();
      const next = this.bytes[this.pos];
      if (next === 0x2c) {
        this.pos++;
        continue;
      }
      if (next === 0x7d) {
        this.pos++;
        this.depth--;
        if (float32DataAt >= 0 && out['datatype'] !== 'FP32' && out['data'] instanceof JsonNumberArray) {
          // A later `datatype` changed it: read the numbers again as doubles.
          const end = this.pos;
          this.pos = float32DataAt;
          out['data'] = this.numberArray(false);
          this.pos = end;
        }
        return out;
      }
      this.fail(`expected ',' or '}' after a property value, found ${this.describeHere()}`);
    }
  }

  private array(place: Place): unknown[] {
    this.enter();
    this.pos++; // [
    const out: unknown[] = [];
    const childPlace = place === Place.InputList ? Place.Input : Place.Other;
    this.skipWhitespace();
    if (this.bytes[this.pos] === 0x5d) {
      this.pos++;
      this.depth--;
      return out;
    }
    for (;;) {
      out.push(this.value(childPlace));
      this.skipWhitespace();
      const next = this.bytes[this.pos];
      if (next === 0x2c) {
        this.pos++;
        continue;
      }
      if (next === 0x5d) {
        this.pos++;
        this.depth--;
        return out;
      }
      this.fail(`expected ',' or ']' after an array element, found ${this.describeHere()}`);
    }
  }

  /**
   * A non-empty rectangular array of numbers (nested up to the tensor rank limit), read into
   * doubles (or float32, for FP32 inputs) in row-major order; undefined (position restored) when the array is anything
   * else, for the generic parser to read and report.
   */
  private numberArray(float32: boolean): JsonNumberArray | undefined {
    const bytes = this.bytes;
    const start = this.pos;
    let values = scratch;
    let pos = start;
    const end = bytes.length;
    const view = (this.view ??= new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    let count = 0;
    let depth = 0;
    let leafDepth = -1;
    // Length of the arrays at each depth (the first completed one sets it) and the current count.
    const lengths: number[] = [];
    const counts: number[] = [];
    for (;;) {
      // At the start of an element: skip whitespace, then '[' opens a level, else numbers.
      let c = bytes[pos]!;
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = bytes[++pos]!;
      if (c === 0x5b) {
        if (leafDepth !== -1 && depth >= leafDepth) return this.restore(start);
        depth++;
        if (depth > MAX_JSON_TENSOR_RANK) return this.restore(start);
        counts[depth - 1] = 0;
        pos++;
        continue;
      }
      if (leafDepth === -1) leafDepth = depth;
      else if (depth !== leafDepth) return this.restore(start);
      // The numbers of one innermost array, up to its ']': in WebAssembly when the body is
      // loaded there, which gives the same doubles or declines (-1) and leaves the run to the
      // loop below.
      const first = count;
      let scanned = false;
      if (this.wasm === undefined) this.wasm = end >= WASM_SCAN_MIN_BYTES && end <= WASM_SCAN_MAX_BYTES ? loadBody(bytes) : null;
      if (this.wasm !== null) {
        let result = this.wasm.scan(pos);
        while (result.count >= 0) {
          if (count + result.count > values.length) {
            const grown = new Float64Array(Math.max(values.length * 2, count + result.count));
            grown.set(values.subarray(0, count));
            scratch = values = grown;
          }
          values.set(this.wasm.values(result.count), count);
          count += result.count;
          if (!result.full) break;
          result = this.wasm.scan(result.end);
        }
        if (result.count >= 0) {
          pos = result.end;
          c = bytes[pos]!;
          scanned = true;
        } else {
          count = first;
        }
      }
      if (!scanned) for (;;) {
        // A number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
        const numberStart = pos;
        let negative = false;
        if (c === 0x2d) {
          negative = true;
          c = bytes[++pos]!;
        }
        let mantissa = 0;
        let digits = 0;
        let exponent = 0;
        let exact = true;
        if (c === 0x30) {
          c = bytes[++pos]!;
          if (c >= 0x30 && c <= 0x39) return this.restore(start); // leading zero
        } else if (c >= 0x31 && c <= 0x39) {
          do {
            if (digits < 15) {
              mantissa = mantissa * 10 + (c - 0x30);
              digits++;
            } else {
              exponent++;
              exact = false;
            }
            c = bytes[++pos]!;
          } while (c >= 0x30 && c <= 0x39);
        } else {
          return this.restore(start);
        }
        if (c === 0x2e) {
          c = bytes[++pos]!;
          if (!(c >= 0x30 && c <= 0x39)) return this.restore(start);
          // Four fraction digits per step while they all are digits and stay exact (SWAR on
          // one little-endian 32-bit load): a third less time on typical 4-6 decimal values.
          while (digits <= 11 && pos + 4 <= end) {
            const quad = view.getUint32(pos, true);
            if ((quad & 0xf0f0f0f0) !== 0x30303030 || ((quad + 0x06060606) & 0xf0f0f0f0) !== 0x30303030) break;
            const d = quad - 0x30303030; // digits d0..d3 in bytes 0..3, d0 first
            const pairs = (d & 0x000f000f) * 10 + ((d >>> 8) & 0x000f000f); // d0d1 in byte 0, d2d3 in byte 2
            const four = (pairs & 0xff) * 100 + (pairs >>> 16);
            // Leading zeros of a fraction (0.0001) are not significant digits.
            digits += digits > 0 ? 4 : four >= 1000 ? 4 : four >= 100 ? 3 : four >= 10 ? 2 : four > 0 ? 1 : 0;
            mantissa = mantissa * 10000 + four;
            exponent -= 4;
            pos += 4;
          }
          c = bytes[pos]!;
          if (c >= 0x30 && c <= 0x39) do {
            if (digits < 15) {
              if (digits > 0 || c !== 0x30) {
                mantissa = mantissa * 10 + (c - 0x30);
                digits++;
              }
              exponent--;
            } else if (c !== 0x30) {
              exact = false;
            }
            c = bytes[++pos]!;
          } while (c >= 0x30 && c <= 0x39);
        }
        if (c === 0x65 || c === 0x45) {
          c = bytes[++pos]!;
          let expNegative = false;
          if (c === 0x2b || c === 0x2d) {
            expNegative = c === 0x2d;
            c = bytes[++pos]!;
          }
          if (!(c >= 0x30 && c <= 0x39)) return this.restore(start);
          let written = 0;
          do {
            if (written < 100000) written = written * 10 + (c - 0x30);
            c = bytes[++pos]!;
          } while (c >= 0x30 && c <= 0x39);
          exponent += expNegative ? -written : written;
        }
        let value: number;
        if (exact && exponent >= -22 && exponent <= 22) {
          value = exponent < 0 ? mantissa / POWERS_OF_TEN[-exponent]! : mantissa * POWERS_OF_TEN[exponent]!;
          if (negative) value = -value;
        } else {
          value = Number(bytes.toString('latin1', numberStart, pos));
        }
        if (count === values.length) {
          const grown = new Float64Array(values.length * 2);
          grown.set(values);
          scratch = values = grown;
        }
        values[count++] = value;
        while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = bytes[++pos]!;
        if (c !== 0x2c) break;
        c = bytes[++pos]!;
        while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = bytes[++pos]!;
        if (c === 0x5b) return this.restore(start); // an array among numbers
      }
      counts[depth - 1] = count - first;
      // After the innermost array's last number: ']' closes levels; ',' starts the next element.
      for (;;) {
        if (c !== 0x5d) return this.restore(start);
        const level = depth - 1;
        const length = counts[level]!;
        const expected = lengths[level];
        if (expected === undefined) lengths[level] = length;
        else if (expected !== length) return this.restore(start);
        depth--;
        pos++;
        if (depth === 0) {
          this.pos = pos;
          // One native pass into the result; float32 conversion rounds as a Float32Array store of the double does.
          return new JsonNumberArray(float32 ? toFloat32OrDoubles(values.subarray(0, count)) : values.slice(0, count));
        }
        counts[depth - 1]!++;
        c = bytes[pos]!;
        while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = bytes[++pos]!;
        if (c === 0x2c) {
          pos++;
          break;
        }
      }
    }
  }

  private restore(start: number): undefined {
    this.pos = start;
    return undefined;
  }

  private string(): string {
    const bytes = this.bytes;
    const start = ++this.pos; // after the opening quote
    let escaped = false;
    let ascii = true;
    let pos = start;
    for (;;) {
      if (pos >= bytes.length) this.fail('unterminated string');
      const c = bytes[pos]!;
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        pos += 2;
        continue;
      }
      if (c < 0x20) {
        this.pos = pos;
        this.fail('a control character inside a string (escape it)');
      }
      if (c >= 0x80) ascii = false;
      pos++;
    }
    this.pos = pos + 1;
    if (!escaped) return bytes.toString(ascii ? 'latin1' : 'utf8', start, pos);
    // Escapes are rare in V2 bodies: JSON.parse reads (and checks) them.
    try {
      return JSON.parse(bytes.toString('utf8', start - 1, pos + 1)) as string;
    } catch (error) {
      this.pos = start;
      return this.fail(`a bad escape in a string (${(error as Error).message})`);
    }
  }

  private number(): number {
    const bytes = this.bytes;
    const start = this.pos;
    let pos = start;
    if (bytes[pos] === 0x2d) pos++;
    const first = bytes[pos];
    if (first === 0x30) pos++;
    else if (first !== undefined && first >= 0x31 && first <= 0x39) pos = this.digits(pos);
    else return this.fail('a minus sign without digits');
    if (bytes[pos] === 0x2e) {
      const after = this.digits(pos + 1);
      if (after === pos + 1) {
        this.pos = pos + 1;
        this.fail('no digits after a decimal point');
      }
      pos = after;
    }
    const e = bytes[pos];
    if (e === 0x65 || e === 0x45) {
      pos++;
      if (bytes[pos] === 0x2b || bytes[pos] === 0x2d) pos++;
      const after = this.digits(pos);
      if (after === pos) {
        this.pos = pos;
        this.fail('no digits in an exponent');
      }
      pos = after;
    }
    const next = bytes[pos];
    if (next !== undefined && next >= 0x30 && next <= 0x39) {
      this.pos = pos;
      this.fail('a number with a leading zero');
    }
    this.pos = pos;
    return Number(bytes.toString('latin1', start, pos));
  }

  private digits(from: number): number {
    const bytes = this.bytes;
    let pos = from;
    for (let c = bytes[pos]; c !== undefined && c >= 0x30 && c <= 0x39; c = bytes[++pos]);
    return pos;
  }

  private literal<T>(word: string, value: T): T {
    if (this.bytes.toString('latin1', this.pos, this.pos + word.length) !== word) this.fail(`unexpected ${this.describeHere()}`);
    this.pos += word.length;
    return value;
  }

  private skipWhitespace(): void {
    const bytes = this.bytes;
    let pos = this.pos;
    let c = bytes[pos];
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = bytes[++pos];
    this.pos = pos;
  }

  private enter(): void {
    if (++this.depth > MAX_JSON_DEPTH) this.fail(`objects and arrays are nested deeper than ${MAX_JSON_DEPTH} levels`);
  }

  private describeHere(): string {
    const c = this.bytes[this.pos];
    return c === undefined ? 'the end of the data' : this.describeByte(c);
  }

  private describeByte(c: number): string {
    return c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
  }

  private fail(reason: string): never {
    throw new JsonSyntaxError(`${reason} at position ${this.pos}`);
  }
}

/**
 * `doubles` as float32, or, when one of them is beyond FP32's range (an infinity once stored),
 * a copy of the doubles: the tensor conversion then refuses the input naming the number sent.
 */
function toFloat32OrDoubles(doubles: Float64Array): Float32Array | Float64Array {
  const narrowed = new Float32Array(doubles);
  return allFinite(narrowed) ? narrowed : doubles.slice();
}

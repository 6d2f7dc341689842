/**
 * A small, schema-less parser of the protocol buffers TEXT format (what Triton's `config.pbtxt`
 * is written in). It follows protobuf's text-format language specification:
 *
 * - messages in `{ ... }` or `< ... >`; fields `name: value`, `name { ... }`, `name: { ... }`;
 * - repeated fields either written several times or as lists `name: [a, b]` / `name [{..}, {..}]`;
 * - strings in single or double quotes with C escapes (`\n`, `\x41`, `\101`, `\u00e9`, ...),
 *   adjacent strings concatenated; numbers decimal, octal, hex, floats with exponent and `f`
 *   suffix, `-` signs, `inf` / `nan`; identifiers (enum values, `true`, `false`);
 * - `#` comments; optional `,` or `;` after each field.
 *
 * Without a schema the parser cannot know which identifiers are booleans or enums, or which
 * fields are repeated: it returns every field in order, each value tagged with its kind and
 * position, and the caller (e.g. triton-config.ts) interprets them. Errors carry line:column.
 */

/** 1-based line and column (columns count UTF-16 code units; a tab is one column). */
export interface PbPosition {
  readonly line: number;
  readonly column: number;
}

export interface PbString {
  readonly kind: 'string';
  readonly value: string;
  readonly pos: PbPosition;
}

export interface PbNumber {
  readonly kind: 'number';
  /** The value; integers beyond ±2^53 are approximate (see `text`). */
  readonly value: number;
  /** Written without a fraction, exponent or `f` suffix (also for hex and octal). */
  readonly integer: boolean;
  /** The literal as written, sign included. */
  readonly text: string;
  readonly pos: PbPosition;
}

/** An enum value or a boolean (`TYPE_FP32`, `KIND_CPU`, `true`, `False`, `t`). */
export interface PbIdentifier {
  readonly kind: 'identifier';
  readonly value: string;
  readonly pos: PbPosition;
}

export interface PbMessage {
  readonly kind: 'message';
  readonly fields: readonly PbField[];
  /** Position of the opening brace; 1:1 for the top-level message. */
  readonly pos: PbPosition;
}

export type PbValue = PbString | PbNumber | PbIdentifier | PbMessage;

export interface PbField {
  /** The field name; `[pkg.ext]` for extension and Any names, brackets included. */
  readonly name: string;
  readonly value: PbValue;
  /** Position of the field name. */
  readonly pos: PbPosition;
  /** The value came from a `[ ... ]` list (so the field is certainly repeated). */
  readonly inList: boolean;
}

/** A syntax error, with the line and column where it was found. */
export class PbtxtSyntaxError extends Error {
  override readonly name = 'PbtxtSyntaxError';
  readonly line: number;
  readonly column: number;
  /** The message without the `source:line:column:` prefix. */
  readonly reason: string;

  constructor(reason: string, pos: PbPosition, source: string | undefined) {
    super(`${source === undefined ? '' : `${source}:`}${pos.line}:${pos.column}: ${reason}`);
    this.line = pos.line;
    this.column = pos.column;
    this.reason = reason;
  }
}

export interface PbtxtParseOptions {
  /** Prefixed to error messages (`config.pbtxt:3:7: ...`). */
  readonly source?: string;
  /** Deepest message nesting accepted (default 100, as protobuf's own parser). */
  readonly maxDepth?: number;
}

/** Parse protobuf text format into its top-level message. Throws {@link PbtxtSyntaxError}. */
export function parsePbtxt(text: string, options: PbtxtParseOptions = {}): PbMessage {
  return new Parser(text, options.source, options.maxDepth ?? 100).parseDocument();
}

/**
 * A plain-object view of a message, for logging and debugging: a field becomes an array when
 * it appears more than once or was written as a list; identifiers `true`/`false` become
 * booleans, other identifiers stay strings. Lossy (integer precision, enum vs string).
 */
export function pbtxtToObject(message: PbMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // defineProperty: a field named __proto__ is data, not the prototype.
  const set = (name: string, value: unknown): void => {
    Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  };
  const repeated = new Set<string>();
  const seen = new Set<string>();
  for (const field of message.fields) {
    const value = plainValue(field.value);
    if (!seen.has(field.name) && !field.inList) {
      set(field.name, value);
    } else if (repeated.has(field.name)) {
      (out[field.name] as unknown[]).push(value);
    } else {
      set(field.name, seen.has(field.name) ? [out[field.name], value] : [value]);
      repeated.add(field.name);
    }
    seen.add(field.name);
  }
  return out;
}

function plainValue(value: PbValue): unknown {
  switch (value.kind) {
    case 'message':
      return pbtxtToObject(value);
    case 'identifier':
      return value.value === 'true' || value.value === 'True' ? true : value.value === 'false' || value.value === 'False' ? false : value.value;
    default:
      return value.value;
  }
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

type Token =
  | { readonly type: 'identifier'; readonly text: string; readonly pos: PbPosition }
  | { readonly type: 'string'; readonly value: string; readonly pos: PbPosition }
  | { readonly type: 'number'; readonly text: string; readonly value: number; readonly integer: boolean; readonly pos: PbPosition }
  | { readonly type: 'symbol'; readonly text: string; readonly pos: PbPosition }
  | { readonly type: 'end'; readonly pos: PbPosition };

const SYMBOLS = new Set(['{', '}', '<', '>', '[', ']', ':', ',', ';', '-', '.', '/']);
const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  a: 0x07,
  b: 0x08,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
  '\\': 0x5c,
  "'": 0x27,
  '"': 0x22,
  '?': 0x3f,
};
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

function isIdentStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
}
function isIdentPart(c: string): boolean {
  return isIdentStart(c) || (c >= '0' && c <= '9');
}
function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}
function isHexDigit(c: string): boolean {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

class Lexer {
  private offset = 0;
  private line = 1;
  private lineStart = 0;

  constructor(
    private readonly text: string,
    private readonly source: string | undefined,
  ) {}

  private position(): PbPosition {
    return { line: this.line, column: this.offset - this.lineStart + 1 };
  }

  private error(reason: string, pos: PbPosition = this.position()): PbtxtSyntaxError {
    return new PbtxtSyntaxError(reason, pos, this.source);
  }

  private char(at = this.offset): string {
    return this.text[at] ?? '';
  }

  private skipSpaceAndComments(): void {
    for (;;) {
      const c = this.char();
      if (c === '\n') {
        this.offset++;
        this.line++;
        this.lineStart = this.offset;
      } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
        this.offset++;
      } else if (c === '#') {
        while (this.offset < this.text.length && this.char() !== '\n') this.offset++;
      } else {
        return;
      }
    }
  }

  next(): Token {
    this.skipSpaceAndComments();
    const pos = this.position();
    if (this.offset >= this.text.length) return { type: 'end', pos };
    const c = this.char();
    if (isIdentStart(c)) {
      const start = this.offset;
      while (isIdentPart(this.char())) this.offset++;
      return { type: 'identifier', text: this.text.slice(start, this.offset), pos };
    }
    if (isDigit(c) || (c === '.' && isDigit(this.char(this.offset + 1)))) return this.number(pos);
    if (c === '"' || c === "'") return { type: 'string', value: this.string(pos), pos };
    if (SYMBOLS.has(c)) {
      this.offset++;
      return { type: 'symbol', text: c, pos };
    }
    throw this.error(`unexpected character ${JSON.stringify(c)}`, pos);
  }

  private number(pos: PbPosition): Token {
    const text = this.text;
    const start = this.offset;
    let integer = true;
    let value: number;
    if (this.char() === '0' && (this.char(start + 1) === 'x' || this.char(start + 1) === 'X')) {
      this.offset += 2;
      const digits = this.offset;
      while (isHexDigit(this.char())) this.offset++;
      if (this.offset === digits) throw this.error('hex number has no digits', pos);
      value = Number.parseInt(text.slice(digits, this.offset), 16);
    } else if (this.char() === '0' && isDigit(this.char(start + 1))) {
      this.offset++;
      const digits = this.offset;
      while (isDigit(this.char())) this.offset++;
      const octal = text.slice(digits, this.offset);
      if (!/^[0-7]+$/.test(octal)) throw this.error(`invalid octal number '0${octal}'`, pos);
      value = Number.parseInt(octal, 8);
    } else {
      while (isDigit(this.char())) this.offset++;
      if (this.char() === '.') {
        integer = false;
        this.offset++;
        while (isDigit(this.char())) this.offset++;
      }
      if (this.char() === 'e' || this.char() === 'E') {
        integer = false;
        this.offset++;
        if (this.char() === '+' || this.char() === '-') this.offset++;
        const digits = this.offset;
        while (isDigit(this.char())) this.offset++;
        if (this.offset === digits) throw this.error('exponent has no digits', pos);
      }
      value = Number(text.slice(start, this.offset));
      if (this.char() === 'f' || this.char() === 'F') {
        integer = false;
        this.offset++;
      }
    }
    if (isIdentPart(this.char()) || this.char() === '.') {
      throw this.error(`invalid number '${text.slice(start, this.offset + 1)}'`, pos);
    }
    return { type: 'number', text: text.slice(start, this.offset), value, integer, pos };
  }

  /** A quoted string; escapes decode to bytes, the whole decoded as UTF-8. */
  private string(pos: PbPosition): string {
    const quote = this.char();
    this.offset++;
    const bytes: number[] = [];
    let plainStart = this.offset;
    const flushPlain = (end: number): void => {
      if (end > plainStart) for (const b of utf8.encode(this.text.slice(plainStart, end))) bytes.push(b);
    };
    for (;;) {
      const c = this.char();
      if (c === '' || c === '\n') throw this.error('unterminated string', pos);
      if (c === quote) {
        flushPlain(this.offset);
        this.offset++;
        break;
      }
      if (c !== '\\') {
        this.offset++;
        continue;
      }
      flushPlain(this.offset);
      const escapePos = this.position();
      this.offset++;
      const e = this.char();
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined) {
        bytes.push(simple);
        this.offset++;
      } else if (e >= '0' && e <= '7') {
        let digits = '';
        while (digits.length < 3 && this.char() >= '0' && this.char() <= '7') digits += this.text[this.offset++];
        const byte = Number.parseInt(digits, 8);
        if (byte > 0xff) throw this.error(`octal escape \\${digits} is above \\377`, escapePos);
        bytes.push(byte);
      } else if (e === 'x' || e === 'X') {
        this.offset++;
        let digits = '';
        while (digits.length < 2 && isHexDigit(this.char())) digits += this.text[this.offset++];
        if (digits === '') throw this.error('\\x escape has no hex digits', escapePos);
        bytes.push(Number.parseInt(digits, 16));
      } else if (e === 'u' || e === 'U') {
        this.offset++;
        const length = e === 'u' ? 4 : 8;
        const digits = this.text.slice(this.offset, this.offset + length);
        if (digits.length !== length || ![...digits].every(isHexDigit)) {
          throw this.error(`\\${e} escape needs ${length} hex digits`, escapePos);
        }
        this.offset += length;
        const codePoint = Number.parseInt(digits, 16);
        if (codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) {
          throw this.error(`\\${e}${digits} is not a Unicode scalar value`, escapePos);
        }
        for (const b of utf8.encode(String.fromCodePoint(codePoint))) bytes.push(b);
      } else {
        throw this.error(`invalid escape '\\${e === '' ? '' : e}'`, escapePos);
      }
      plainStart = this.offset;
    }
    return utf8Decoder.decode(Uint8Array.from(bytes));
  }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

const NON_FINITE = new Map<string, number>([
  ['inf', Infinity],
  ['infinity', Infinity],
  ['nan', NaN],
]);

class Parser {
  private readonly lexer: Lexer;
  private token: Token;

  constructor(
    text: string,
    private readonly source: string | undefined,
    private readonly maxDepth: number,
  ) {
    this.lexer = new Lexer(text, source);
    this.token = this.lexer.next();
  }

  parseDocument(): PbMessage {
    const fields = this.parseFields(undefined, 0);
    return { kind: 'message', fields, pos: { line: 1, column: 1 } };
  }

  private advance(): Token {
    const current = this.token;
    this.token = this.lexer.next();
    return current;
  }

  private error(reason: string, pos: PbPosition = this.token.pos): PbtxtSyntaxError {
    return new PbtxtSyntaxError(reason, pos, this.source);
  }

  private isSymbol(text: string): boolean {
    return this.token.type === 'symbol' && this.token.text === text;
  }

  private describe(token: Token = this.token): string {
    switch (token.type) {
      case 'end':
        return 'end of input';
      case 'identifier':
        return `'${token.text}'`;
      case 'number':
        return `number ${token.text}`;
      case 'string':
        return `string ${JSON.stringify(token.value)}`;
      case 'symbol':
        return `'${token.text}'`;
    }
  }

  /** Fields up to `close` (or the end of input for the top level). */
  private parseFields(close: { readonly text: string; readonly opened: PbPosition } | undefined, depth: number): PbField[] {
    const fields: PbField[] = [];
    for (;;) {
      if (close === undefined && this.token.type === 'end') return fields;
      if (close !== undefined && this.isSymbol(close.text)) {
        this.advance();
        return fields;
      }
      if (this.token.type === 'end') {
        throw this.error(`expected '${close!.text}' to close the message opened at ${close!.opened.line}:${close!.opened.column}, found end of input`);
      }
      this.parseField(fields, depth);
      if (this.isSymbol(',') || this.isSymbol(';')) this.advance();
    }
  }

  private parseFieldName(): { name: string; pos: PbPosition } {
    const token = this.token;
    if (token.type === 'identifier') {
      this.advance();
      return { name: token.text, pos: token.pos };
    }
    if (token.type === 'symbol' && token.text === '[') {
      // Extension or Any type URL: [pkg.Ext] or [type.googleapis.com/pkg.Msg]
      this.advance();
      let name = '';
      for (;;) {
        const part = this.token;
        if (part.type === 'identifier') name += part.text;
        else if (part.type === 'symbol' && (part.text === '.' || part.text === '/')) name += part.text;
        else if (part.type === 'symbol' && part.text === ']') break;
        else throw this.error(`expected an extension name or ']', found ${this.describe()}`);
        this.advance();
      }
      if (name === '') throw this.error('empty extension name');
      this.advance();
      return { name: `[${name}]`, pos: token.pos };
    }
    throw this.error(`expected a field name, found ${this.describe()}`);
  }

  private parseField(out: PbField[], depth: number): void {
    const { name, pos } = this.parseFieldName();
    const colon = this.isSymbol(':');
    if (colon) this.advance();
    if (this.isSymbol('[')) {
      const open = this.advance();
      if (this.isSymbol(']')) {
        this.advance();
        return; // an empty list sets nothing
      }
      for (;;) {
        const value = colon ? this.parseValue(depth, name) : this.parseMessageValue(depth, name);
        out.push({ name, value, pos, inList: true });
        if (this.isSymbol(',')) {
          this.advance();
          continue;
        }
        if (this.isSymbol(']')) {
          this.advance();
          return;
        }
        throw this.error(`expected ',' or ']' in the list opened at ${open.pos.line}:${open.pos.column}, found ${this.describe()}`);
      }
    }
    const value = colon ? this.parseValue(depth, name) : this.parseMessageValue(depth, name);
    out.push({ name, value, pos, inList: false });
  }

  private parseMessageValue(depth: number, field: string): PbMessage {
    if (!this.isSymbol('{') && !this.isSymbol('<')) {
      throw this.error(`expected ':' or '{' after field name '${field}', found ${this.describe()}`);
    }
    return this.parseValue(depth, field) as PbMessage;
  }

  private parseValue(depth: number, field: string): PbValue {
    const token = this.token;
    if (token.type === 'symbol' && (token.text === '{' || token.text === '<')) {
      if (depth + 1 > this.maxDepth) throw this.error(`messages nested deeper than ${this.maxDepth} levels`);
      this.advance();
      const fields = this.parseFields({ text: token.text === '{' ? '}' : '>', opened: token.pos }, depth + 1);
      return { kind: 'message', fields, pos: token.pos };
    }
    if (token.type === 'string') {
      // Adjacent strings concatenate: "abc" 'def' is "abcdef".
      let value = '';
      while (this.token.type === 'string') {
        value += this.token.value;
        this.advance();
      }
      return { kind: 'string', value, pos: token.pos };
    }
    if (token.type === 'number') {
      this.advance();
      return { kind: 'number', value: token.value, integer: token.integer, text: token.text, pos: token.pos };
    }
    if (token.type === 'identifier') {
      this.advance();
      return { kind: 'identifier', value: token.text, pos: token.pos };
    }
    if (token.type === 'symbol' && token.text === '-') {
      this.advance();
      const operand = this.token;
      if (operand.type === 'number') {
        this.advance();
        return { kind: 'number', value: -operand.value, integer: operand.integer, text: `-${operand.text}`, pos: token.pos };
      }
      if (operand.type === 'identifier') {
        const special = NON_FINITE.get(operand.text.toLowerCase());
        if (special !== undefined) {
          this.advance();
          return { kind: 'number', value: -special, integer: false, text: `-${operand.text}`, pos: token.pos };
        }
      }
      throw this.error(`expected a number after '-', found ${this.describe()}`);
    }
    throw this.error(`expected a value for field '${field}', found ${this.describe()}`);
  }

}

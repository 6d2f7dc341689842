import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonNumberArray, tensorDataFromJson } from '../src/core/json-tensor.js';
import { TesseraError } from '../src/core/errors.js';
import { parseV2RequestJson, retainedScratchElements } from '../src/protocols/http/v2/json-body.js';
import { loadBody, WASM_SCAN_MIN_BYTES } from '../src/protocols/http/v2/number-scanner.js';
import { mulberry32 as seededRandom } from './support/fixtures.js';

/**
 * The V2 body parser must give what JSON.parse gives, except that inputs[i].data arrays of
 * numbers come back as packed doubles; and refuse exactly what JSON.parse refuses.
 */

const parse = (text: string): unknown => parseV2RequestJson(Buffer.from(text, 'utf8'), 'the request body');

/**
 * `text` as it is and padded past WASM_SCAN_MIN_BYTES with trailing whitespace (valid JSON
 * either way): bodies that size have their numbers read by the WebAssembly scanner, smaller
 * ones by the JavaScript loop, and both must give (and refuse) the same.
 */
const bothPaths = (text: string): string[] => [text, text + ' '.repeat(WASM_SCAN_MIN_BYTES)];

/** The parse result with packed arrays turned back into plain numbers (flat). */
function unpacked(value: unknown): unknown {
  if (value instanceof JsonNumberArray) return Array.from(value.values);
  if (Array.isArray(value)) return value.map(unpacked);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) Object.defineProperty(out, key, { value: unpacked(item), enumerable: true });
    return out;
  }
  return value;
}

/** JSON.parse's result with each inputs[i].data flattened, for comparison with the packed form. */
function flattenedData(value: unknown): unknown {
  const body = value as { inputs?: { data?: unknown }[] };
  if (!Array.isArray(body?.inputs)) return value;
  return { ...body, inputs: body.inputs.map((input) => (Array.isArray(input?.data) && isNumberTree(input.data) ? { ...input, data: (input.data as unknown[]).flat(64) } : input)) };
}

/** A non-empty array of numbers, or of such arrays all of one length and depth (rectangular). */
function isNumberTree(value: unknown[]): boolean {
  if (value.length === 0) return false;
  if (value.every((item) => typeof item === 'number')) return true;
  if (!value.every((item) => Array.isArray(item) && isNumberTree(item))) return false;
  const signature = (item: unknown): string => (Array.isArray(item) ? `${item.length}:${signature(item[0])}` : 'n');
  const first = signature(value[0]);
  return value.every((item) => signature(item) === first && (item as unknown[]).every((inner) => signature(inner) === signature((item as unknown[])[0])));
}

/** deepEqual that tells -0 from 0, as Object.is does. */
function assertSameValues(actual: unknown, expected: unknown, path = 'value'): void {
  if (typeof expected === 'number') {
    assert.ok(Object.is(actual, expected), `${path}: ${String(actual)} !== ${String(expected)}`);
    return;
  }
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path} is an array`);
    assert.equal((actual as unknown[]).length, expected.length, `${path} length`);
    expected.forEach((item, i) => assertSameValues((actual as unknown[])[i], item, `${path}[${i}]`));
    return;
  }
  if (typeof expected === 'object' && expected !== null) {
    assert.deepEqual(Object.keys(actual as object), Object.keys(expected), `${path} keys`);
    for (const [key, item] of Object.entries(expected)) assertSameValues((actual as Record<string, unknown>)[key], item, `${path}.${key}`);
    return;
  }
  assert.equal(actual, expected, path);
}

test('numbers in every notation read to the same doubles as JSON.parse', () => {
  const random = seededRandom(7);
  const texts: string[] = ['0', '-0', '1', '-1', '0.0', '1e0', '1E+2', '1e-2', '-0.0e-0', '123456789012345', '1234567890123456', '12345678901234567890',
    '0.1', '0.2', '0.30000000000000004', '9007199254740993', '1.7976931348623157e308', '1.8e308', '5e-324', '2e-324', '4.9406564584124654e-324',
    '2.2250738585072014e-308', '0.000001', '1e22', '1e23', '123e-22', '123e-23', '0.0000000000000000000000001', '100000000000000000000000',
    '3.141592653589793238462643383279', '-2.5e-3', '7.0e+10', '1e400', '-1e400', '0.1e-400', '1.00000000000000011102230246251565',
    // Fractions read four digits at a time: leading zeros, exactly 15 significant digits, runs that cross it.
    '-0.4821', '0.0000', '0.00001234', '1.00001', '0.123456789012345678', '12345678901.2345', '123456789012.3456', '0.000000000000001234',
    '9.99999999999999999', '0.10000000000000000555', '1.2345e-7', '0.12345678e3', '99999999999.9999', '0.0001000100010001'];
  for (let i = 0; i < 20000; i++) {
    const value = (random() - 0.5) * 10 ** Math.floor(random() * 40 - 20);
    const pick = i % 5;
    texts.push(pick === 0 ? String(value) : pick === 1 ? value.toFixed(i % 9) : pick === 2 ? value.toExponential(i % 17) : pick === 3 ? value.toPrecision(1 + (i % 21)) : String(Math.fround(value)));
  }
  const expected = texts.map((text) => JSON.parse(text) as number);
  // One large body (the WebAssembly scanner), then bodies of 300 numbers (the JavaScript loop).
  const runs = [{ from: 0, texts }, ...Array.from({ length: Math.ceil(texts.length / 300) }, (_, k) => ({ from: k * 300, texts: texts.slice(k * 300, k * 300 + 300) }))];
  for (const run of runs) {
    const body = `{"inputs":[{"name":"x","datatype":"FP64","shape":[${run.texts.length}],"data":[${run.texts.join(',')}]}]}`;
    assert.equal(body.length >= WASM_SCAN_MIN_BYTES, run.texts === texts, 'the large body is scanned in WebAssembly, the others are not');
    const packed = (parse(body) as { inputs: { data: unknown }[] }).inputs[0]!.data;
    assert.ok(packed instanceof JsonNumberArray, 'the data came back packed');
    run.texts.forEach((text, i) => assert.ok(Object.is(packed.values[i], expected[run.from + i]), `${text}: got ${packed.values[i]}, JSON.parse gives ${expected[run.from + i]}`));
  }
  // Elsewhere in the document numbers are plain numbers, with the same values.
  const loose = parse(`{"parameters":{"values":[${texts.join(',')}]}}`) as { parameters: { values: number[] } };
  texts.forEach((text, i) => assert.ok(Object.is(loose.parameters.values[i], expected[i]), text));
});

test('documents parse to what JSON.parse gives, data packed only under inputs[i].data', () => {
  const documents = [
    '{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}]}',
    '{"id":"r-1","parameters":{"priority":2,"binary_data_output":true,"note":"caf\\u00e9 \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\t \\ud83d\\ude00"},"inputs":[{"name":"a","datatype":"INT64","shape":[3],"data":[1,-2,3]},{"name":"b","datatype":"BYTES","shape":[2],"data":["x","é😀"]}],"outputs":[{"name":"y","parameters":{"classification":3}}]}',
    ' \n\t{ "inputs" : [ { "data" : [ [ [ 1 , 2 ] ] , [ [ 3 , 4 ] ] ] , "name" : "x" } ] } \r\n',
    '{"inputs":[{"name":"x","data":[1,null,3]}]}',
    '{"inputs":[{"name":"x","data":[[1,2],[3]]}]}',
    '{"inputs":[{"name":"x","data":[[1,2],3]}]}',
    '{"inputs":[{"name":"x","data":[1,[2]]}]}',
    '{"inputs":[{"name":"x","data":[]}]}',
    '{"inputs":[{"name":"x","data":[[],[]]}]}',
    '{"inputs":[{"name":"x","data":[true,false]}]}',
    '{"inputs":[{"name":"x","data":7}]}',
    '{"data":[1,2,3],"inputs":[{"name":"x","parameters":{"data":[1,2]},"data":[1.5,2.5]}]}',
    '{"inputs":[{"name":"x","data":[1,2]},{"name":"y","data":[[5,6,7]]}],"inputs2":[{"data":[1]}]}',
    '{"inputs":{"data":[1,2]}}',
    '[{"inputs":[{"data":[1,2]}]}]',
    '{"a":{"b":{"c":[{},[],"",0,-0,1e5,null,true,false]}},"a":"later duplicate wins","__proto__":{"x":1}}',
    '"just a string"',
    '12',
    'null',
  ];
  for (const text of documents.flatMap(bothPaths)) {
    const expected = JSON.parse(text) as unknown;
    const actual = parse(text);
    assertSameValues(unpacked(actual), flattenedData(expected), text.trimEnd());
  }
  // __proto__ is an own property, as with JSON.parse, and does not change the prototype.
  const withProto = parse('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(withProto), Object.prototype);
  assert.deepEqual(Object.keys(withProto), ['__proto__']);
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
});

test('whatever JSON.parse refuses is refused, as INVALID_REQUEST naming the position', () => {
  const invalid = [
    '', ' ', '{', '}', '{"inputs":', '{"inputs":[', '{"inputs":[{"name":"x","data":[1,2', '{"inputs":[{"name":"x","data":[1,2,]}]}',
    '{"inputs":[{"name":"x","data":[1 2]}]}', '{"inputs":[{"name":"x","data":[01]}]}', '{"inputs":[{"name":"x","data":[1.]}]}', '{"inputs":[{"name":"x","data":[.5]}]}',
    '{"inputs":[{"name":"x","data":[+1]}]}', '{"inputs":[{"name":"x","data":[1e]}]}', '{"inputs":[{"name":"x","data":[1e+]}]}', '{"inputs":[{"name":"x","data":[-]}]}',
    '{"inputs":[{"name":"x","data":[NaN]}]}', '{"inputs":[{"name":"x","data":[Infinity]}]}', '{"inputs":[{"name":"x","data":[0x10]}]}', '{"inputs":[{"name":"x","data":[[1,2]]]}]}',
    '{"inputs":[{"name":"x","data":[1,2]]}', '{"a":01}', '{"a":1.}', '{"a":-}', '{"a":tru}', '{"a":nul}', '{"a":True}', "{'a':1}", '{a:1}', '{"a" 1}', '{"a":1,}',
    '{"a":1 "b":2}', '[1,2', '[1,,2]', '[,1]', '"abc', '"a\\x"', '"a\\u12"', '"tab\there"', '"line\nbreak"', '{"a":1}x', '{"a":1}{"b":2}', '\u00a0{}',
    '{"a":"\\"}', '[1]]',
    // Bytes next to the digits' range right after fraction digits (the scanner classifies eight at a time).
    '{"inputs":[{"name":"x","data":[1.5:2]}]}', '{"inputs":[{"name":"x","data":[1.5/2]}]}', '{"inputs":[{"name":"x","data":[0.1234567:1]}]}',
    '{"inputs":[{"name":"x","data":[0.12345678/1]}]}', '{"inputs":[{"name":"x","data":[1.5\u0000]}]}',
  ];
  for (const text of invalid.flatMap((text) => (text.trim() === '' ? [text] : bothPaths(text)))) {
    assert.throws(() => JSON.parse(text), `JSON.parse refuses ${JSON.stringify(text)}`);
    assert.throws(
      () => parse(text),
      (error: unknown) => error instanceof TesseraError && error.code === 'INVALID_REQUEST' && /^the request body is not valid JSON: .+ at position \d+$/.test(error.message),
      `refused: ${JSON.stringify(text)}`,
    );
  }
  assert.throws(() => parseV2RequestJson(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 'the body'), /not UTF-8/);
});

test('nesting is bounded: a deep document is refused, not a stack overflow', () => {
  const deep = `${'['.repeat(100000)}${']'.repeat(100000)}`;
  assert.throws(() => parse(deep), /nested deeper than 512 levels/);
  const deepData = `{"inputs":[{"name":"x","data":${'['.repeat(40)}1${']'.repeat(40)}}]}`;
  const parsed = parse(deepData) as { inputs: { data: unknown }[] };
  assert.ok(Array.isArray(parsed.inputs[0]!.data), 'over-deep tensor data is left to the generic path (which refuses it by rank)');
});

test('packed data becomes the same tensor data as the plain array, with the same checks', () => {
  const cases: [string, string][] = [
    ['FP32', '[[0.1,-2.5],[3e-3,4]]'],
    ['FP64', '[0.1,-0,1e308]'],
    ['FP16', '[0.5,-1,65504,1e-8]'],
    ['INT8', '[-128,0,127]'],
    ['UINT8', '[0,255]'],
    ['INT32', '[-2147483648,2147483647]'],
    ['UINT32', '[0,4294967295]'],
    ['INT64', '[-9007199254740991,9007199254740991]'],
    ['UINT64', '[0,9007199254740991]'],
    ['BOOL', '[1,0]'],
    ['BYTES', '[1,2]'],
    ['INT8', '[1,128]'],
    ['UINT8', '[-1]'],
    ['INT32', '[1.5]'],
    ['UINT64', '[-1]'],
    ['INT64', '[9007199254740993]'],
  ];
  for (const [datatype, data] of cases) {
    const packed = (parse(`{"inputs":[{"name":"x","data":${data}}]}`) as { inputs: { data: unknown }[] }).inputs[0]!.data;
    assert.ok(packed instanceof JsonNumberArray, `${datatype} ${data} is packed`);
    const plain = JSON.parse(data) as unknown;
    let expected: unknown;
    try {
      expected = tensorDataFromJson(datatype as 'FP32', plain, "input 'x'");
    } catch (error) {
      assert.throws(() => tensorDataFromJson(datatype as 'FP32', packed, "input 'x'"), (got: unknown) => (got as Error).message === (error as Error).message, `${datatype} ${data}: the same refusal`);
      continue;
    }
    assert.deepEqual(tensorDataFromJson(datatype as 'FP32', packed, "input 'x'"), expected, `${datatype} ${data}`);
  }
  const limited = (parse('{"inputs":[{"name":"x","data":[1,2,3]}]}') as { inputs: { data: unknown }[] }).inputs[0]!.data;
  assert.throws(() => tensorDataFromJson('FP32', limited, "input 'x'", { maxElements: { limit: 2, setting: 'limits.max_elements' } }), /has 3 elements; the limit is 2 \(limits\.max_elements\)/);
});

test('an FP32 input whose datatype comes first is read straight to float32, rounded as a Float32Array store rounds', () => {
  // 3.4028235e38 is past FP32's largest finite value but rounds down to it.
  const texts = ['0.1', '-2.5e-3', '3.4028235e38', '1e-46', '16777217', '0.30000001192092896', '-0'];
  const expected = Float32Array.from(texts.map((text) => JSON.parse(text) as number));
  const dataOf = (text: string): JsonNumberArray => {
    const data = (parse(text) as { inputs: { data: unknown }[] }).inputs[0]!.data;
    assert.ok(data instanceof JsonNumberArray);
    return data;
  };
  const first = dataOf(`{"inputs":[{"name":"x","datatype":"FP32","shape":[7],"data":[${texts.join(',')}]}]}`);
  assert.equal(first.values[2], 3.4028234663852886e38);
  assert.ok(first.values instanceof Float32Array, 'datatype before data: float32');
  texts.forEach((text, i) => assert.ok(Object.is(first.values[i], expected[i]), text));
  assert.equal(tensorDataFromJson('FP32', first, "input 'x'"), first.values, 'the tensor data is the parsed array itself, not a copy');
  const after = dataOf(`{"inputs":[{"name":"x","data":[${texts.join(',')}],"datatype":"FP32"}]}`);
  assert.ok(after.values instanceof Float64Array, 'datatype after data: doubles');
  assert.deepEqual(tensorDataFromJson('FP32', after, "input 'x'"), expected);
  // A later duplicate datatype wins (as with JSON.parse): the numbers are read again as doubles.
  const changed = dataOf(`{"inputs":[{"name":"x","datatype":"FP32","data":[${texts.join(',')}],"datatype":"FP64"}]}`);
  assert.ok(changed.values instanceof Float64Array);
  texts.forEach((text, i) => assert.ok(Object.is(changed.values[i], JSON.parse(text)), text));
});

test('FP32 numbers beyond its range are refused, naming the element and the number sent, wherever datatype stands', () => {
  // 2^128 - 2^103 is where a float32 store turns to infinity; anything below rounds to the largest finite value.
  for (const big of ['3.4028235677973366e38', '-1e39', '1.8e308']) {
    const numbers = ['0.5', '1', big, '2'];
    for (const body of [
      `{"inputs":[{"name":"x","datatype":"FP32","shape":[4],"data":[${numbers.join(',')}]}]}`,
      `{"inputs":[{"name":"x","shape":[2,2],"data":[[${numbers.slice(0, 2).join(',')}],[${numbers.slice(2).join(',')}]],"datatype":"FP32"}]}`,
    ]) {
      const data = (parse(body) as { inputs: { data: unknown }[] }).inputs[0]!.data;
      assert.ok(data instanceof JsonNumberArray);
      const sent = JSON.parse(big) as number;
      assert.throws(
        () => tensorDataFromJson('FP32', data, "input 'x'"),
        (error: Error) => error.message === `input 'x': element 2: ${sent} is outside the FP32 range (finite values of magnitude up to 3.4028234663852886e+38; larger ones would become ${sent < 0 ? '-' : ''}Infinity)`,
        body,
      );
    }
  }
  // Beyond FP32 but not FP64: FP64 keeps it.
  const wide = (parse('{"inputs":[{"name":"x","datatype":"FP64","data":[1e39]}]}') as { inputs: { data: unknown }[] }).inputs[0]!.data;
  assert.deepEqual(tensorDataFromJson('FP64', wide, "input 'x'"), new Float64Array([1e39]));
});

test('the WebAssembly scanner: long runs in several calls, whitespace, and the runs it leaves to JavaScript', () => {
  const random = seededRandom(11);
  // 150,000 numbers in one flat run (more than one scan call holds), Python's ', ' separators,
  // and in one copy an exponent near the end: the scanner declines that run after full calls
  // and the JavaScript loop reads it all again.
  const values = Array.from({ length: 150_000 }, () => ((random() - 0.5) * 8).toFixed(1 + Math.floor(random() * 6)));
  const withExponent = values.slice();
  withExponent[140_000] = '1.5e-3';
  for (const [numbers, separator] of [[values, ','], [values, ', '], [withExponent, ',']] as const) {
    const body = `{"inputs":[{"name":"x","datatype":"FP32","shape":[${numbers.length}],"data":[ ${numbers.join(separator)} ]}]}`;
    const packed = (parse(body) as { inputs: { data: unknown }[] }).inputs[0]!.data;
    assert.ok(packed instanceof JsonNumberArray);
    assert.equal(packed.values.length, numbers.length);
    numbers.forEach((text, i) => assert.ok(Object.is(packed.values[i], Math.fround(JSON.parse(text) as number)), `${text} at ${i}: got ${packed.values[i]}`));
  }

  const scanOf = (run: string): { count: number; end: string; values: number[] } => {
    const body = Buffer.from(`[${run}]`);
    const loaded = loadBody(body);
    const result = loaded.scan(1);
    return { count: result.count, end: body.toString('latin1', result.end, result.end + 1), values: result.count > 0 ? Array.from(loaded.values(result.count)) : [] };
  };
  assert.deepEqual(scanOf('-1.25, 0 ,\t3.5\n'), { count: 3, end: ']', values: [-1.25, 0, 3.5] });
  assert.ok(Object.is(scanOf('-0.0').values[0], -0));
  assert.deepEqual(scanOf('0.000000000000001,123456789012345,1234567.12345678,0.1234567890123,0.12345678,-0.102'), {
    count: 6, end: ']', values: [1e-15, 123456789012345, 1234567.12345678, 0.1234567890123, 0.12345678, -0.102],
  }, 'up to 15 digits, fraction runs of 8 and more');
  for (const declined of ['1e5', '2E-1', '0.0000000000000001', '1234567890123456', '0.1234567890123456', '1.1234567890123456', '00', '01', '-', '-.5', '1.', '.5', '1,[2]', '+1', 'x', '-x']) {
    assert.equal(scanOf(declined).count, -1, `${declined} is left to JavaScript`);
  }
});

test('a body with millions of numbers does not leave its working memory behind for later bodies', () => {
  const many = `{"inputs":[{"name":"x","datatype":"FP64","shape":[3000000],"data":[${'1,'.repeat(2_999_999)}1]}]}`;
  const parsed = parseV2RequestJson(Buffer.from(many), 'request') as { inputs: { data: JsonNumberArray }[] };
  assert.equal(parsed.inputs[0]!.data.values.length, 3_000_000);
  assert.ok(retainedScratchElements() <= 1 << 20, `${retainedScratchElements()} elements kept`);
  // And a refused one (trailing garbage after millions of numbers) neither.
  assert.throws(() => parseV2RequestJson(Buffer.from(`${many}x`), 'request'));
  assert.ok(retainedScratchElements() <= 1 << 20, `${retainedScratchElements()} elements kept after a refusal`);
});

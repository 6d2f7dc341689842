/**
 * Hostile inputs for every HTTP endpoint of Tessera: malformed and truncated JSON, wrong types
 * in every field, NaN and Infinity, absurd shapes, lying lengths, deep nesting, bombs, wrong
 * content types. Each case says which status class it must get: `4xx` (refused, the caller's
 * fault) or `not5xx` (the protocol tolerates it — e.g. unknown fields are ignored — but it
 * must not fail the server). test/hostile.test.ts runs them.
 */
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';

export type Expectation = '4xx' | 'not5xx';

export interface HttpCase {
  readonly group: string;
  readonly name: string;
  readonly method: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  /** Which listener: the main HTTP port (default) or the management API. */
  readonly listener?: 'http' | 'management';
  readonly expect: Expectation;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** 64 MiB of zeros, compressed once (each bomb is ~64 KiB on the wire). */
const BOMBS = (() => {
  let made: { gzip: Buffer; deflate: Buffer; deflateRaw: Buffer; gzipGzip: Buffer } | undefined;
  return () => {
    if (made === undefined) {
      const zeros = Buffer.alloc(64 * 1024 * 1024);
      const gzip = gzipSync(zeros);
      made = { gzip, deflate: deflateSync(zeros), deflateRaw: deflateRawSync(zeros), gzipGzip: gzipSync(gzip) };
    }
    return made;
  };
})();

const JSON_HEADERS = { 'content-type': 'application/json' };

/** A deep copy of `value` with the node at `path` replaced (or deleted when `replacement` is undefined). */
export function replaced(value: Json, path: readonly (string | number)[], replacement: Json | undefined): Json {
  const copy = structuredClone(value);
  if (path.length === 0) return replacement ?? null;
  let node: Json = copy;
  for (const key of path.slice(0, -1)) node = (node as Record<string, Json>)[key as string]!;
  const last = path[path.length - 1]!;
  if (replacement === undefined) {
    if (Array.isArray(node)) node.splice(last as number, 1);
    else delete (node as Record<string, Json>)[last as string];
  } else {
    (node as Record<string, Json>)[last as string] = replacement;
  }
  return copy;
}

/** `[[[...[leaf]...]]]`, `depth` arrays deep, as JSON text (built as text: no recursion). */
export function nestedText(depth: number, leaf = '1'): string {
  return '['.repeat(depth) + leaf + ']'.repeat(depth);
}

/** Values of the wrong type for most fields. */
const WRONG_VALUES: readonly Json[] = [null, true, false, 0, -1, 1.5, 1e308, '', 'x', [], {}, [null], [[]], [{}]];

/** The valid V2 request every mutation starts from (model `mlp`: x FP32 [-1,4] → probs FP32 [-1,3]). */
export const VALID_V2: Json = {
  id: 'hostile',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }],
  outputs: [{ name: 'probs' }],
};

/** Every V2 REST JSON case against `path` (an infer endpoint of model `mlp`). */
export function v2JsonCases(path: string): HttpCase[] {
  const group = 'v2 json';
  const cases: HttpCase[] = [];
  const add = (name: string, body: string | Buffer, expect: Expectation = '4xx', headers: Record<string, string> = JSON_HEADERS): void => {
    cases.push({ group, name, method: 'POST', path, headers, body, expect });
  };
  const json = (name: string, value: Json, expect: Expectation = '4xx'): void => add(name, JSON.stringify(value), expect);
  const valid = JSON.stringify(VALID_V2);

  // Malformed and truncated JSON.
  for (const text of ['{', '}', '[', '{"inputs":', '{"inputs":[{"name":"x",}]}', '{inputs: []}', "{'inputs': []}", '{"inputs":[]}}', `${valid}x`, `${valid}{}`, '"', '\u0000', 'nul', 'tru', '{"a":"\\u12"}', '{"a":"\\x41"}', '{"a":01}', '{"a":1.}', '{"a":.5}', '{"a":+1}', '{"a":0x10}', '\uFEFF' + valid]) {
    add(`malformed: ${JSON.stringify(text.slice(0, 30))}`, text);
  }
  for (let cut = 1; cut < valid.length; cut++) add(`truncated at ${cut}`, valid.slice(0, cut));

  // Not an object.
  for (const text of ['', ' ', '\n\n', 'null', 'true', '0', '-1', '"text"', '[]', '[{}]', '1e999']) add(`body ${JSON.stringify(text)}`, text);

  // Wrong types everywhere.
  const fields: { path: (string | number)[]; wrong: Json[] }[] = [
    { path: ['id'], wrong: [null, true, 0, 1.5, [], {}, ['x']] },
    { path: ['inputs'], wrong: [...WRONG_VALUES, [1], ['x'], [[1, 2, 3, 4]]] },
    { path: ['inputs', 0], wrong: [...WRONG_VALUES, [VALID_V2 as Json]] },
    { path: ['inputs', 0, 'name'], wrong: [null, true, 0, 1.5, [], {}, ['x'], '', 'nope', 'x\u0000', 'X', ' x', 'x'.repeat(10_000)] },
    { path: ['inputs', 0, 'datatype'], wrong: [null, true, 0, [], {}, '', 'fp32', 'FP33', 'FLOAT', 'INT32', 'BYTES', 'BOOL', 'FP16', 'FP64', 'UINT64', 'TYPE_FP32', 'FP32 '] },
    {
      path: ['inputs', 0, 'shape'],
      wrong: [
        null, true, 0, 4, '1,4', '[1,4]', {}, [], [4], [1, 4, 1], [1, 1, 4], [-1, 4], [1, -4], [-1, -1], [1.5, 4], [1, 4.000001], ['1', '4'], [null, 4], [true, 4], [[1], 4], [{}, 4],
        [1e20, 4], [2 ** 53, 4], [2 ** 53 + 2, 4], [0, 4], [2, 4], [2147483647, 2147483647], [4294967296, 4294967296], [65536, 65536, 4], [1, 4, 0],
        new Array<number>(100).fill(2), new Array<number>(10_000).fill(1), [1e308, 1e308], [-0.5, 4],
      ],
    },
    {
      path: ['inputs', 0, 'data'],
      wrong: [
        null, true, 0, 'abcd', {}, [], [1, 2, 3], [1, 2, 3, 4, 5], new Array<number>(10_000).fill(1), ['1', '2', '3', '4'], [null, 2, 3, 4], [true, 2, 3, 4], [{}, 2, 3, 4], [[], 2, 3, 4],
        ['NaN', 2, 3, 4], ['Infinity', 2, 3, 4], ['-Infinity', 2, 3, 4], ['nan', 2, 3, 4], ['inf', 2, 3, 4], [1, 2, 3, '4'], [[1, 2, 3, 4], [5]], [[1, 2], [3, 4, 5]], [[1, 2, 3, 4, 5], [6, 7, 8]],
        [1, [2], 3, 4], [{ b64: 'AAAA' }, 2, 3, 4],
      ],
    },
    {
      path: ['inputs', 0, 'parameters'],
      wrong: [
        null, 0, 'x', [], [1], { binary_data_size: -1 }, { binary_data_size: '16' }, { binary_data_size: 16 }, { binary_data_size: 1.5 }, { binary_data_size: 1e300 }, { binary_data_size: null },
        { a: {} }, { a: [1] }, { a: null },
      ],
    },
    {
      path: ['parameters'],
      wrong: [
        null, 0, 'x', [], [1], { priority: -1 }, { priority: 1.5 }, { priority: '1' }, { priority: 1e300 }, { timeout: -5 }, { timeout: 1e30 }, { timeout: '100' }, { timeout: 0.5 },
        { binary_data_output: 'yes' }, { binary_data_output: 1 }, { a: {} }, { a: [] }, { a: null },
      ],
    },
    {
      path: ['outputs'],
      wrong: [
        null, 0, 'probs', {}, [null], [0], ['probs'], [{}], [{ name: '' }], [{ name: 5 }], [{ name: null }], [{ name: 'nope' }], [{ name: 'probs' }, { name: 'nope' }],
        [{ name: 'probs', parameters: [] }], [{ name: 'probs', parameters: 'x' }], [{ name: 'probs', parameters: { classification: -1 } }], [{ name: 'probs', parameters: { classification: 'x' } }],
        [{ name: 'probs', parameters: { classification: 1.5 } }], [{ name: 'probs', parameters: { classification: true } }], [{ name: 'probs', parameters: { binary_data: 'x' } }],
        [{ name: 'probs', parameters: { binary_data: 1 } }], [{ name: 'probs', parameters: { a: {} } }],
      ],
    },
  ];
  for (const { path: at, wrong } of fields) {
    for (const value of wrong) json(`${at.join('.')} = ${JSON.stringify(value).slice(0, 40)}`, replaced(VALID_V2, at, value));
  }
  for (const at of [['inputs', 0, 'name'], ['inputs', 0, 'datatype'], ['inputs', 0, 'shape'], ['inputs', 0, 'data'], ['inputs']] as const) {
    json(`${at.join('.')} missing`, replaced(VALID_V2, at, undefined));
  }

  // NaN and Infinity as bare tokens (not JSON) and as strings.
  for (const token of ['NaN', 'Infinity', '-Infinity', 'undefined', '1e309', '-1e309']) {
    add(`bare ${token} in data`, valid.replace('[1,2,3,4]', `[${token},2,3,4]`));
    add(`bare ${token} in shape`, valid.replace('[1,4]', `[${token},4]`));
  }
  // 1e309 is valid JSON but beyond FP32 (and FP64): refused as out of range, like 1e39.
  add('1e39 in FP32 data', valid.replace('[1,2,3,4]', '[1,2,1e39,4]'));

  // Deep nesting.
  for (const depth of [33, 1000, 10_000, 100_000, 1_000_000]) {
    add(`data nested ${depth} deep`, valid.replace('[1,2,3,4]', nestedText(depth)));
    add(`shape nested ${depth} deep`, valid.replace('[1,4]', nestedText(depth)));
    if (depth <= 100_000) {
      add(`id nested ${depth} deep`, valid.replace('"hostile"', nestedText(depth)));
      add(`parameter nested ${depth} deep`, valid.replace('"id":"hostile"', `"id":"h","parameters":{"a":${nestedText(depth)}}`));
      add(`body nested ${depth} deep`, nestedText(depth));
      add(`object nested ${depth} deep`, '{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
    }
  }

  // Duplicates, unknown fields, many inputs.
  json('duplicate input names', { inputs: [VALID_V2_INPUT, VALID_V2_INPUT] });
  add('duplicate JSON keys (the last, invalid, wins)', valid.replace('"inputs":', '"inputs":[],"inputs":5,"ignored":'));
  json('unknown top-level field', { ...(VALID_V2 as Record<string, Json>), extra: { deep: [1, 2, 3] } }, 'not5xx');
  json('unknown input field', replaced(VALID_V2, ['inputs', 0, 'contents'], { fp32_contents: [1] }), 'not5xx');
  json('20,000 inputs', { inputs: Array.from({ length: 20_000 }, (_, i) => ({ name: `x${i}`, datatype: 'FP32', shape: [1], data: [i] })) });
  json('20,000 copies of the same input', { inputs: Array.from({ length: 20_000 }, () => VALID_V2_INPUT) });
  json('20,000 unknown outputs', { inputs: [VALID_V2_INPUT], outputs: Array.from({ length: 20_000 }, (_, i) => ({ name: `o${i}` })) });
  json('20,000 parameters of which one is bad', { inputs: [VALID_V2_INPUT], parameters: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`p${i}`, i === 19_999 ? { x: 1 } : i])) });
  json('a 4 MB string name', replaced(VALID_V2, ['inputs', 0, 'name'], 'n'.repeat(4_000_000)));

  // Wrong content types and encodings with bodies that are not what the endpoint takes.
  add('text/plain garbage', 'hello there', '4xx', { 'content-type': 'text/plain' });
  add('form-urlencoded', 'inputs=1&x=2', '4xx', { 'content-type': 'application/x-www-form-urlencoded' });
  add('multipart garbage', '--b\r\ncontent-disposition: form-data; name="x"\r\n\r\n1\r\n--b--', '4xx', { 'content-type': 'multipart/form-data; boundary=b' });
  add('an image', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), '4xx', { 'content-type': 'image/png' });
  add('UTF-16 JSON', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(valid, 'utf16le')]), '4xx', { 'content-type': 'application/json; charset=utf-16' });
  add('UTF-32-ish JSON', Buffer.from(valid.split('').map((c) => `${c}\u0000\u0000\u0000`).join(''), 'latin1'));
  add('invalid UTF-8 in a BYTES element', Buffer.concat([Buffer.from('{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"]}]}')]));
  add('invalid UTF-8 in a name', Buffer.concat([Buffer.from('{"inputs":[{"name":"'), Buffer.from([0xc0, 0x80]), Buffer.from('","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}')]));
  add('lone surrogate escape in a name', '{"inputs":[{"name":"\\ud800","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}');
  add('NUL bytes', Buffer.alloc(1024));

  // Compression: bombs and broken streams.
  const bombs = BOMBS();
  add('gzip bomb (64 MiB of zeros)', bombs.gzip, '4xx', { ...JSON_HEADERS, 'content-encoding': 'gzip' });
  add('deflate bomb', bombs.deflate, '4xx', { ...JSON_HEADERS, 'content-encoding': 'deflate' });
  add('raw deflate bomb', bombs.deflateRaw, '4xx', { ...JSON_HEADERS, 'content-encoding': 'deflate' });
  add('gzip bomb in gzip', bombs.gzipGzip, '4xx', { ...JSON_HEADERS, 'content-encoding': 'gzip, gzip' });
  add('gzip of an invalid body', gzipSync('{"inputs":'), '4xx', { ...JSON_HEADERS, 'content-encoding': 'gzip' });
  add('not gzip', 'plain text', '4xx', { ...JSON_HEADERS, 'content-encoding': 'gzip' });
  add('truncated gzip', gzipSync(valid).subarray(0, 20), '4xx', { ...JSON_HEADERS, 'content-encoding': 'gzip' });
  add('brotli', 'x', '4xx', { ...JSON_HEADERS, 'content-encoding': 'br' });
  add('unknown coding', valid, '4xx', { ...JSON_HEADERS, 'content-encoding': 'zstd, gzip' });
  add('empty gzip body', '', '4xx', { ...JSON_HEADERS, 'content-encoding': 'gzip' });
  return cases;
}

const VALID_V2_INPUT: Json = { name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] };

/** A binary-extension body: the JSON header, then `tail`; the header length is `headerLength` (default: true). */
function binaryBody(header: Json, tail: Buffer, headerLength?: string): { body: Buffer; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify(header));
  return {
    body: Buffer.concat([json, tail]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': headerLength ?? String(json.length) },
  };
}

function binaryInput(name: string, datatype: string, shape: Json[], size: Json): Json {
  return { name, datatype, shape, parameters: { binary_data_size: size } };
}

/** Length-prefixed BYTES elements with the prefixes given (they may lie). */
function bytesTail(elements: readonly [number, Buffer][]): Buffer {
  return Buffer.concat(
    elements.flatMap(([length, bytes]) => {
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32LE(length >>> 0);
      return [prefix, bytes];
    }),
  );
}

/** The binary tensor data extension with lengths that lie. */
export function v2BinaryCases(): HttpCase[] {
  const group = 'v2 binary';
  const cases: HttpCase[] = [];
  const fp32 = Buffer.alloc(16);
  const add = (name: string, model: string, built: { body: Buffer; headers: Record<string, string> }, expect: Expectation = '4xx'): void => {
    cases.push({ group, name, method: 'POST', path: `/v2/models/${model}/infer`, headers: built.headers, body: built.body, expect });
  };
  const header = (size: Json, shape: Json[] = [1, 4], datatype = 'FP32'): Json => ({ inputs: [binaryInput('x', datatype, shape, size)] });

  for (const value of ['abc', '-1', '1e3', '', ' ', '0x10', '1.5', '+5', '99999999999999999999999', '0', '9007199254740993']) {
    add(`Inference-Header-Content-Length ${JSON.stringify(value)}`, 'mlp', binaryBody(header(16), fp32, value));
  }
  add('Inference-Header-Content-Length beyond the body', 'mlp', binaryBody(header(16), fp32, '100000'));
  add('Inference-Header-Content-Length inside the JSON', 'mlp', binaryBody(header(16), fp32, '10'));
  add('Inference-Header-Content-Length covering the tail', 'mlp', binaryBody(header(16), fp32, String(JSON.stringify(header(16)).length + 16)));
  add('header length with the tail empty', 'mlp', binaryBody(header(16), Buffer.alloc(0)));
  for (const size of [17, 15, 0, 32, 1e15, 2 ** 53, -16, 16.5, '16', null, true]) {
    add(`binary_data_size ${JSON.stringify(size)} for 16 bytes`, 'mlp', binaryBody(header(size), fp32));
  }
  add('binary_data_size and data both', 'mlp', binaryBody({ inputs: [{ ...(binaryInput('x', 'FP32', [1, 4], 16) as Record<string, Json>), data: [1, 2, 3, 4] }] }, fp32));
  add('binary_data_size without the header', 'mlp', { body: Buffer.concat([Buffer.from(JSON.stringify(header(16))), fp32]), headers: JSON_HEADERS });
  add('tail longer than the inputs take', 'mlp', binaryBody(header(16), Buffer.alloc(64)));
  add('two inputs sharing bytes', 'add', binaryBody({ inputs: [binaryInput('a', 'FP32', [1, 4], 16), binaryInput('b', 'FP32', [1, 4], 16)] }, fp32));
  add('element-count overflow', 'mlp', binaryBody(header(0, [2147483647, 2147483647]), Buffer.alloc(0)));
  add('element-count overflow that wraps to 16 bytes', 'mlp', binaryBody(header(16, [4294967296, 4294967296, 4]), fp32));
  add('negative dim', 'mlp', binaryBody(header(16, [-1, 4]), fp32));
  add('batch of 0', 'mlp', binaryBody(header(0, [0, 4]), Buffer.alloc(0)));
  add('datatype mismatch with the right byte count', 'mlp', binaryBody(header(16, [1, 4], 'INT32'), fp32));
  add('BOOL byte 2', 'id_bool', binaryBody(header(2, [1, 2], 'BOOL'), Buffer.from([1, 2])));
  add('BOOL byte 255', 'id_bool', binaryBody(header(2, [1, 2], 'BOOL'), Buffer.from([0, 255])));
  const b = (name: string, shape: Json[], tail: Buffer, expect: Expectation = '4xx'): void => add(name, 'id_bytes', binaryBody(header(tail.length, shape, 'BYTES'), tail), expect);
  b('BYTES length prefix 0xFFFFFFFF', [1], bytesTail([[0xffffffff, Buffer.from('abc')]]));
  b('BYTES length prefix beyond the data', [1], bytesTail([[100, Buffer.from('abc')]]));
  b('BYTES length prefix shorter than the data', [1], bytesTail([[1, Buffer.from('abc')]]));
  b('BYTES truncated length prefix', [1], Buffer.from([3, 0]));
  b('BYTES more elements than the shape', [1], bytesTail([[1, Buffer.from('a')], [1, Buffer.from('b')]]));
  b('BYTES fewer elements than the shape', [3], bytesTail([[1, Buffer.from('a')]]));
  b('BYTES no elements for shape [0]', [0], Buffer.alloc(0));
  b('BYTES 100,000 empty elements for shape [1]', [1], Buffer.alloc(400_000));
  // BYTES are bytes: invalid UTF-8 is data, not an error (the model decides what to make of it).
  b('BYTES element of invalid UTF-8', [1], bytesTail([[3, Buffer.from([0xff, 0xfe, 0xc3])]]), 'not5xx');
  b('BYTES element of NUL bytes', [1], bytesTail([[4, Buffer.alloc(4)]]), 'not5xx');
  return cases;
}

/** Bodies every "JSON rows" endpoint (TF Serving, TorchServe, SageMaker, Vertex, Azure ML) must refuse. */
function rowsBodies(): { name: string; body: string | Buffer; contentType?: string; expect?: Expectation }[] {
  const valid = '{"instances":[[1,2,3,4]]}';
  const out: { name: string; body: string | Buffer; contentType?: string; expect?: Expectation }[] = [];
  for (let cut = 1; cut < valid.length; cut += 3) out.push({ name: `truncated at ${cut}`, body: valid.slice(0, cut) });
  for (const text of ['{', '[', '{"instances":', '{"instances":[[1,2,3,4]],}', 'NaN', '{"instances":[[NaN,2,3,4]]}', '{"instances":[[Infinity,2,3,4]]}', '\uFEFF{}']) {
    out.push({ name: `malformed ${JSON.stringify(text)}`, body: text });
  }
  for (const value of ['null', '0', '"x"', '{}', '{"instances":null}', '{"instances":{}}', '{"instances":[]}', '{"instances":"x"}', '{"instances":[null]}', '{"instances":[[]]}', '{"instances":[["1","2","3","4"]]}']) {
    out.push({ name: `wrong type ${value}`, body: value });
  }
  for (const value of ['{"instances":[[1,2,3]]}', '{"instances":[[1,2,3,4,5]]}', '{"instances":[[1,2,3,4],[5,6]]}', '{"instances":[[[1,2,3,4]]]}', '{"instances":[[1,2,3,[4]]]}', '{"instances":[{"x":[1,2,3,4]},[1,2,3,4]]}']) {
    out.push({ name: `bad rows ${value}`, body: value });
  }
  out.push({ name: 'instances: 5 rows (above max_batch_size 4)', body: JSON.stringify({ instances: Array.from({ length: 5 }, () => [1, 2, 3, 4]) }) });
  out.push({ name: 'instances: 200,000 rows', body: JSON.stringify({ instances: Array.from({ length: 200_000 }, () => [1, 2, 3, 4]) }) });
  out.push({ name: 'plain list: 200,000 rows', body: JSON.stringify(Array.from({ length: 200_000 }, () => [1, 2, 3, 4])) });
  out.push({ name: 'instances: "NaN" strings', body: '{"instances":[["NaN","Infinity","-Infinity",1]]}' });
  out.push({ name: 'instances: b64 objects for FP32', body: '{"instances":[[{"b64":"AAAA"},2,3,4]]}' });
  out.push({ name: 'instances: named unknown input', body: '{"instances":[{"nope":[1,2,3,4]}]}' });
  out.push({ name: 'instances: named, mismatched', body: '{"instances":[{"x":[1,2,3,4]},{"y":[1,2,3,4]}]}' });
  for (const depth of [33, 10_000, 1_000_000]) {
    out.push({ name: `instances nested ${depth} deep`, body: `{"instances":${nestedText(depth)}}` });
    out.push({ name: `body nested ${depth} deep`, body: nestedText(depth) });
  }
  out.push({ name: 'empty body', body: '' });
  out.push({ name: 'text/plain garbage', body: 'hello', contentType: 'text/plain' });
  out.push({ name: 'image/png', body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), contentType: 'image/png' });
  out.push({ name: 'JPEG bytes unlabelled', body: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]), contentType: 'application/octet-stream' });
  out.push({ name: 'multipart without a boundary', body: 'x', contentType: 'multipart/form-data' });
  out.push({ name: 'multipart with a broken body', body: '--b\r\nnot a part', contentType: 'multipart/form-data; boundary=b' });
  out.push({ name: 'multipart with no parts', body: '--b--\r\n', contentType: 'multipart/form-data; boundary=b' });
  out.push({ name: 'invalid UTF-8 JSON', body: Buffer.concat([Buffer.from('{"instances":[["'), Buffer.from([0xff, 0xfe]), Buffer.from('",2,3,4]]}')]) });
  out.push({ name: 'gzip bomb', body: BOMBS().gzip, contentType: 'application/json+gzip' });
  return out;
}

/** TF Serving, TorchServe, SageMaker, Vertex AI and Azure ML endpoints of the default model `mlp`. */
export function rowsCases(): HttpCase[] {
  const cases: HttpCase[] = [];
  const endpoints: { group: string; method: string; path: string }[] = [
    { group: 'tf serving', method: 'POST', path: '/v1/models/mlp:predict' },
    { group: 'tf serving', method: 'POST', path: '/v1/models/mlp/versions/1:predict' },
    { group: 'torchserve', method: 'POST', path: '/predictions/mlp' },
    { group: 'torchserve', method: 'PUT', path: '/predictions/mlp/1' },
    { group: 'sagemaker', method: 'POST', path: '/invocations' },
    { group: 'vertex', method: 'POST', path: '/predict' },
    { group: 'azureml', method: 'POST', path: '/score' },
  ];
  for (const endpoint of endpoints) {
    for (const { name, body, contentType, expect } of rowsBodies()) {
      const gzipped = contentType === 'application/json+gzip';
      cases.push({
        group: endpoint.group,
        name: `${endpoint.method} ${endpoint.path}: ${name}`,
        method: endpoint.method,
        path: endpoint.path,
        headers: gzipped ? { 'content-type': 'application/json', 'content-encoding': 'gzip' } : { 'content-type': contentType ?? 'application/json' },
        body,
        expect: expect ?? '4xx',
      });
    }
  }
  const extra = (group: string, method: string, path: string, body?: string): void => {
    cases.push({ group, name: `${method} ${path}`, method, path, ...(body === undefined ? {} : { body, headers: JSON_HEADERS }), expect: '4xx' });
  };
  extra('tf serving', 'POST', '/v1/models/mlp:classify', '{"examples":[]}');
  extra('tf serving', 'POST', '/v1/models/mlp:regress', '{}');
  extra('tf serving', 'POST', '/v1/models/mlp', '{"instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/:predict', '{"instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/mlp:', '{}');
  extra('tf serving', 'POST', '/v1/models/mlp/versions/x:predict', '{"instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/mlp/versions/-1:predict', '{"instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/mlp/labels/stable:predict', '{"instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/nope:predict', '{"instances":[[1,2,3,4]]}');
  extra('tf serving', 'GET', '/v1/models/nope');
  extra('tf serving', 'GET', '/v1/models/mlp/versions/99/metadata');
  extra('tf serving', 'GET', '/v1/models/mlp/labels/x');
  extra('tf serving', 'POST', '/v1/models/mlp:predict', '{"signature_name":"other","instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/mlp:predict', '{"signature_name":5,"instances":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/mlp:predict', '{"instances":[[1,2,3,4]],"inputs":[[1,2,3,4]]}');
  extra('tf serving', 'POST', '/v1/models/mlp:predict', '{"inputs":{"nope":[[1,2,3,4]]}}');
  extra('tf serving', 'POST', '/v1/models/mlp:predict', '{"inputs":{}}');
  extra('tf serving', 'POST', '/v1/models/add:predict', '{"instances":[[1,2,3,4]]}');
  extra('torchserve', 'POST', '/predictions/nope', '[[1,2,3,4]]');
  extra('torchserve', 'POST', '/predictions/mlp/9', '[[1,2,3,4]]');
  extra('torchserve', 'POST', '/predictions/add', '[[1,2,3,4]]');
  extra('torchserve', 'POST', '/predictions/mlp', '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,5],"data":[1,2,3,4,5]}]}');
  extra('torchserve', 'DELETE', '/predictions/mlp');
  extra('sagemaker', 'POST', '/invocations', '{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4],"data":[1,2,3,4]}]}');
  extra('sagemaker', 'POST', '/invocations', '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4],"parameters":{"binary_data_size":16}}]}');
  extra('azureml', 'POST', '/score', '{"input_data":{"columns":["a"]}}');
  extra('azureml', 'POST', '/score', '{"input_data":{"data":[[1,2,3]]}}');
  extra('azureml', 'POST', '/score', '{"other":1}');
  extra('azureml', 'POST', '/score', JSON.stringify({ data: Array.from({ length: 200_000 }, () => [1, 2, 3, 4]) }));
  extra('azureml', 'POST', '/score', JSON.stringify({ input_data: { columns: ['a'], data: Array.from({ length: 200_000 }, () => [1, 2, 3, 4]) } }));
  extra('vertex', 'POST', '/predict', '{"inputs":[[1,2,3,4]]}');
  return cases;
}

/** Other V2 endpoints: metadata, readiness, config, statistics, repository index/load/unload, routing. */
export function v2OtherCases(): HttpCase[] {
  const group = 'v2 other';
  const cases: HttpCase[] = [];
  const add = (name: string, method: string, path: string, body?: string | Buffer, expect: Expectation = '4xx'): void => {
    cases.push({ group, name: `${name}: ${method} ${path.slice(0, 60)}`, method, path, ...(body === undefined ? {} : { body, headers: JSON_HEADERS }), expect });
  };
  for (const suffix of ['', '/ready', '/config', '/stats', '/monitoring']) {
    add('unknown model', 'GET', `/v2/models/nope${suffix}`);
    add('unknown version', 'GET', `/v2/models/mlp/versions/99${suffix}`);
    add('non-numeric version', 'GET', `/v2/models/mlp/versions/abc${suffix}`);
    add('huge version', 'GET', `/v2/models/mlp/versions/99999999999999999999999${suffix}`);
  }
  add('unknown model infer', 'POST', '/v2/models/nope/infer', JSON.stringify(VALID_V2));
  add('negative version infer', 'POST', '/v2/models/mlp/versions/-1/infer', JSON.stringify(VALID_V2));
  add('bad percent-encoding', 'GET', '/v2/models/%E0%A4%A');
  add('bad percent-encoding infer', 'POST', '/v2/models/%ZZ/infer', JSON.stringify(VALID_V2));
  add('encoded slash', 'GET', '/v2/models/..%2F..%2Fetc%2Fpasswd');
  add('dot-dot path', 'GET', '/v2/models/../../etc/passwd');
  add('NUL in the name', 'GET', '/v2/models/mlp%00');
  add('long model name', 'GET', `/v2/models/${'m'.repeat(5000)}`);
  add('long model name infer', 'POST', `/v2/models/${'m'.repeat(5000)}/infer`, JSON.stringify(VALID_V2));
  add('query junk', 'POST', '/v2/models/mlp/infer?a=%ZZ&&&==&b[]=1&__proto__=x', '{');
  add('unknown route', 'GET', '/v2/nowhere');
  add('wrong method', 'DELETE', '/v2/models/mlp');
  add('wrong method', 'PATCH', '/v2/models/mlp/infer', JSON.stringify(VALID_V2));
  add('GET infer', 'GET', '/v2/models/mlp/infer');
  // Repository API: bodies, parameters, names. (Loads that would change what is served are not hostile input.)
  for (const body of ['{', '[]', '5', '"x"', '{"parameters":5}', '{"parameters":[]}', '{"parameters":{"a":{}}}', '{"parameters":{"a":[1]}}', '{"parameters":{"a":null}}']) {
    add('repository load', 'POST', '/v2/repository/models/mlp/load', body);
    add('repository unload', 'POST', '/v2/repository/models/mlp/unload', body);
  }
  for (const config of ['5', '"x"', '[]', 'null', '{', '{"max_batch_size":"x"}', '{"max_batch_size":-1}', '{"no_such_key":1}', '{"instance_group":[{"count":-1}]}', '{"instance_group":[{"count":1000000}]}', '{"backend":"nope","max_batch_size":1.5}']) {
    add(`repository load config ${config}`, 'POST', '/v2/repository/models/mlp/load', JSON.stringify({ parameters: { config } }));
  }
  add('repository load config not a string', 'POST', '/v2/repository/models/mlp/load', JSON.stringify({ parameters: { config: 5 } }));
  add('repository load file without config', 'POST', '/v2/repository/models/mlp/load', JSON.stringify({ parameters: { 'file:1/model.onnx': 'AAAA' } }));
  for (const file of ['file:../../evil', 'file:/etc/evil', 'file:', 'file:1/../../evil']) {
    add(`repository load ${file}`, 'POST', '/v2/repository/models/mlp/load', JSON.stringify({ parameters: { config: '{}', [file]: 'AAAA' } }));
  }
  add('repository load file not base64 text', 'POST', '/v2/repository/models/mlp/load', JSON.stringify({ parameters: { config: '{}', 'file:1/model.onnx': 5 } }));
  add('repository load invalid name', 'POST', '/v2/repository/models/..%2F..%2Fevil/load');
  add('repository load dot name', 'POST', '/v2/repository/models/.hidden/load');
  add('repository unload unknown', 'POST', '/v2/repository/models/nope/unload');
  add('repository unload invalid name', 'POST', '/v2/repository/models/..%2Fx/unload');
  for (const body of ['{', '\u0000', '[1,', '{"ready":']) add('repository index', 'POST', '/v2/repository/index', body);
  // Any JSON value is taken (only {"ready": true} filters); tolerated, never a failure.
  for (const body of ['"x"', '[]', '{"ready":"yes"}']) add('repository index', 'POST', '/v2/repository/index', body, 'not5xx');
  // JSON text must be UTF-8; invalid bytes in a BYTES element are not silently replaced.
  add('invalid UTF-8 in a BYTES element (JSON)', 'POST', '/v2/models/id_bytes/infer', Buffer.concat([Buffer.from('{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"]}]}')]));
  add('overlong UTF-8 in a BYTES element (JSON)', 'POST', '/v2/models/id_bytes/infer', Buffer.concat([Buffer.from('{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["'), Buffer.from([0xc0, 0xaf]), Buffer.from('"]}]}')]));
  add('UTF-8 surrogate bytes in a BYTES element (JSON)', 'POST', '/v2/models/id_bytes/infer', Buffer.concat([Buffer.from('{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"]}]}')]));
  add('handler_options nested 5,000 deep in a load config', 'POST', '/v2/repository/models/mlp/load', JSON.stringify({ parameters: { config: `{"max_batch_size":4,"handler_options":{"a":${nestedText(5000)}}}` } }));
  return cases;
}

/** The management API (its own listener). `garbageArchive` and `plainFile` are paths on the server's disk. */
export function managementCases(garbageArchive: string, plainFile: string): HttpCase[] {
  const group = 'management';
  const cases: HttpCase[] = [];
  const add = (method: string, path: string, body?: string): void => {
    cases.push({ group, name: `${method} ${path.slice(0, 80)}`, method, path, listener: 'management', ...(body === undefined ? {} : { body, headers: JSON_HEADERS }), expect: '4xx' });
  };
  const q = encodeURIComponent;
  add('POST', '/models');
  add('POST', '/models?url=');
  add('POST', '/models?url=/definitely/not/here');
  add('POST', `/models?url=${q(garbageArchive)}`);
  add('POST', `/models?url=${q(garbageArchive)}&model_name=${q('../../escape')}`);
  add('POST', `/models?url=${q(plainFile)}`);
  add('POST', '/models?url=%ZZ');
  add('POST', '/models?url=a&url=b');
  add('POST', '/models', '{"url": 5}');
  for (const count of ['abc', '0', '-1', '1.5', '65', '1e9', '', 'NaN', 'Infinity']) add('PUT', `/models/mlp?min_worker=${q(count)}`);
  add('PUT', '/models/mlp');
  add('PUT', '/models/nope?min_worker=1');
  add('PUT', '/models/nope/1/set-default');
  add('DELETE', '/models/nope');
  add('DELETE', '/models/..%2F..');
  add('GET', '/models/nope');
  add('GET', `/models/${'m'.repeat(5000)}`);
  add('GET', '/nowhere');
  add('PATCH', '/models/mlp', '{}');
  return cases;
}

/** Raw HTTP/1.1 requests that break the protocol itself (answered by Node's parser). */
export function rawProtocolCases(path: string): { name: string; bytes: Buffer; expect: Expectation }[] {
  const raw = (name: string, text: string | Buffer, expect: Expectation = '4xx'): { name: string; bytes: Buffer; expect: Expectation } => ({
    name,
    bytes: typeof text === 'string' ? Buffer.from(text, 'latin1') : text,
    expect,
  });
  return [
    raw('garbage request line', 'GARBAGE\r\n\r\n'),
    raw('HTTP/9.9', `POST ${path} HTTP/9.9\r\nHost: x\r\n\r\n`),
    raw('header without a colon', `POST ${path} HTTP/1.1\r\nHost: x\r\nBroken header\r\n\r\n`),
    raw('NUL in a header value', `POST ${path} HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n`),
    raw('Content-Length not a number', `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`),
    raw('two Content-Lengths', `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`),
    raw('Content-Length and Transfer-Encoding', `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`),
    raw('bad chunk size', `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`),
    raw('chunked body above the limit', Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`), ...Array.from({ length: 10 }, () => Buffer.from(`100000\r\n${' '.repeat(0x100000)}\r\n`)), Buffer.from('0\r\n\r\n')])),
    raw('Content-Length above the limit', `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n{`),
    raw('Content-Length negative', `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`),
    raw('a 100 KB header', `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`),
    raw('a 100 KB URL', `GET /v2/models/${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
    // Within Node's 16 KiB of headers: a valid request (Node keeps the first 2,000 headers).
    raw('2,000 headers', `GET /v2 HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 2000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`, 'not5xx'),
    raw('3,000 headers beyond 16 KiB', `GET /v2 HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-Header-${i}: value`).join('\r\n')}\r\n\r\n`),
    raw('Inference-Header-Content-Length twice', `POST ${path} HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: 2\r\nInference-Header-Content-Length: 3\r\nContent-Length: 2\r\n\r\n{}`),
    raw('Expect: 100-continue with a bad body', `POST ${path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n{`),
    raw('Expect: something else', `POST ${path} HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\n{`),
  ];
}

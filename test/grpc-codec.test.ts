/**
 * The hand-written ModelInfer / ModelStreamInfer codecs (src/protocols/grpc/infer-request-decoder.ts,
 * infer-response-encoder.ts) against protobufjs, as @grpc/proto-loader runs it from the
 * project's proto with the server's loader options: every request decodes to the object
 * protobufjs gives (typed contents of every kind, parameter maps with every oneof member,
 * 64-bit extremes, unknown fields, unpacked repeated fields), every response protobufjs reads
 * back as the message protobufjs itself writes. Plus: raw contents land 8-byte aligned
 * without being copied, malformed bytes are refused, and the server's HTTP/2 windows.
 */
import assert from 'node:assert/strict';
import { connect, type ClientHttp2Session } from 'node:http2';
import { describe, test } from 'node:test';

import type { MethodDefinition } from '@grpc/proto-loader';

import { decodeModelInferRequest } from '../src/protocols/grpc/infer-request-decoder.js';
import { encodeModelInferResponse, encodeModelStreamInferResponse } from '../src/protocols/grpc/infer-response-encoder.js';
import type { InferParameterOut, ModelInferResponseOut, ModelStreamInferResponseOut } from '../src/protocols/grpc/messages.js';
import { loadInferenceProto } from '../src/protocols/grpc/proto.js';
import { ProtobufError } from '../src/protocols/grpc/protobuf-reader.js';
import { DEFAULT_HTTP2_WINDOWS } from '../src/protocols/grpc/flow-control.js';
import { makeTempRepository } from './support/fixtures.js';
import { startTestServer } from './support/server.js';

const service = loadInferenceProto().service;
const infer = service['ModelInfer'] as MethodDefinition<object, object>;
const stream = service['ModelStreamInfer'] as MethodDefinition<object, object>;

/** protobufjs's decoding of a request, on its own copy of the bytes (ours moves raw contents). */
function referenceDecode(bytes: Buffer): object {
  return infer.requestDeserialize(Buffer.from(bytes));
}

function ourDecode(bytes: Buffer): object {
  return decodeModelInferRequest(Buffer.from(bytes));
}

// ------------------------------------------------------------------------------------------
// A hand encoder, for what protobufjs never writes: unknown fields, unpacked repeated fields.

function varint(value: bigint | number): Buffer {
  let rest = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return Buffer.from(out);
}
const tag = (field: number, wire: number): Buffer => varint((field << 3) | wire);
const len = (field: number, payload: Buffer): Buffer => Buffer.concat([tag(field, 2), varint(payload.length), payload]);
const str = (field: number, value: string): Buffer => len(field, Buffer.from(value, 'utf8'));
const vint = (field: number, value: bigint | number): Buffer => Buffer.concat([tag(field, 0), varint(value)]);
const f32 = (field: number, value: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  return Buffer.concat([tag(field, 5), b]);
};
const f64 = (field: number, value: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value);
  return Buffer.concat([tag(field, 1), b]);
};
/** One of every wire type under field numbers the schema does not use, a group included. */
const unknownFields = (): Buffer =>
  Buffer.concat([vint(90, 300), vint(91, -1n), f64(92, 1.5), f32(93, 2.5), str(94, 'ignored'), tag(95, 3), vint(1, 7), str(2, 'in group'), tag(95, 4)]);

// ------------------------------------------------------------------------------------------
// Random messages, seeded: every field kind, empty and extreme values included.

interface Cases {
  request(): object;
  response(): ModelInferResponseOut;
  /** `n` pseudo-random bytes; `again` repeats the previous call's bytes for that length. */
  bytes(n: number, again?: boolean): Buffer;
}

function seeded(seed: number): Cases {
  let state = seed >>> 0;
  const random = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const list = <T>(max: number, item: () => T): T[] => Array.from({ length: int(max + 1) }, item);
  const text = (): string => pick(['', 'x', 'input_0', 'é€😀', 'a'.repeat(200), 'Ünïcödé name', 'with\u0000nul']);
  const int64s = ['0', '1', '-1', '127', '128', '-9223372036854775808', '9223372036854775807', '4294967296', '-4294967297', '9007199254740993', '-9007199254740993'];
  const uint64s = ['0', '1', '18446744073709551615', '9223372036854775808', '4294967295', '9007199254740993'];
  const doubles = [0, -0, 1.5, -2.25e300, 5e-324, Number.NaN, Infinity, -Infinity, 0.1];
  const float32 = (): number => Math.fround(pick([0, -0, 1.5, -3.25, 1e-40, 3.4e38, Number.NaN, Infinity, random() * 100 - 50]));
  let last = new Map<number, Buffer>();
  const bytes = (n: number, again = false): Buffer => {
    if (again && last.has(n)) return Buffer.from(last.get(n)!);
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = int(256);
    last.set(n, out);
    return Buffer.from(out);
  };
  const parameter = (): object =>
    pick([
      () => ({ bool_param: random() < 0.5 }),
      () => ({ int64_param: pick(int64s) }),
      () => ({ string_param: text() }),
      () => ({ double_param: pick(doubles) }),
      () => ({ uint64_param: pick(uint64s) }),
    ])();
  const parameters = (): Record<string, object> => Object.fromEntries(list(3, () => [pick(['priority', 'timeout', 'k', '', 'é', 'binary_data_output']), parameter()]));
  const contents = (): object => ({
    bool_contents: list(4, () => random() < 0.5),
    int_contents: list(4, () => pick([0, 1, -1, 2147483647, -2147483648, int(1000) - 500])),
    int64_contents: list(4, () => pick(int64s)),
    uint_contents: list(4, () => pick([0, 1, 255, 65535, 4294967295])),
    uint64_contents: list(4, () => pick(uint64s)),
    fp32_contents: list(6, float32),
    fp64_contents: list(4, () => pick(doubles)),
    bytes_contents: list(3, () => bytes(int(6))),
  });
  const request = (): object => ({
    model_name: text(),
    model_version: pick(['', '1', '12']),
    id: text(),
    parameters: parameters(),
    inputs: list(3, () => ({
      name: text(),
      datatype: pick(['FP32', 'INT64', 'BYTES', 'BOOL', 'FP16', '']),
      shape: list(4, () => pick(['1', '3', '224', '0', '-1', '9223372036854775807'])),
      parameters: parameters(),
      ...(random() < 0.6 ? { contents: contents() } : {}),
    })),
    outputs: list(2, () => ({ name: text(), parameters: parameters() })),
    raw_input_contents: list(3, () => bytes(pick([0, 1, 3, 4, 7, 8, 13, 64, 200]))),
  });
  const outParameter = (): InferParameterOut =>
    pick<() => InferParameterOut>([
      () => ({ bool_param: random() < 0.5 }),
      () => ({ int64_param: pick<number | string>([0, 1, -1, 2 ** 40, 9007199254740991, '9223372036854775807', '-5']) }),
      () => ({ string_param: text() }),
      () => ({ double_param: pick(doubles) }),
    ])();
  const outParameters = (): Record<string, InferParameterOut> => Object.fromEntries(list(3, () => [pick(['sequence_id', 'k', '', 'é']), outParameter()]));
  const response = (): ModelInferResponseOut => {
    const outputs = list(3, () => ({
      name: text(),
      datatype: pick(['FP32', 'INT64', 'BYTES']),
      shape: list(3, () => pick<number | string>([1, 0, 1000, 2 ** 33, '7'])),
      ...(random() < 0.3 ? { parameters: outParameters() } : {}),
    }));
    return {
      model_name: text(),
      model_version: pick(['', '1']),
      id: text(),
      ...(random() < 0.4 ? { parameters: outParameters() } : {}),
      outputs,
      raw_output_contents: outputs.map(() => bytes(pick([0, 4, 4000, 17]))),
    };
  };
  return { request, response, bytes };
}

describe('ModelInferRequest decoder', () => {
  test('decodes random requests exactly as protobufjs does', () => {
    const cases = seeded(20260501);
    for (let i = 0; i < 300; i++) {
      const message = cases.request();
      const bytes = infer.requestSerialize(message);
      assert.deepStrictEqual(ourDecode(bytes), referenceDecode(bytes), `case ${i}: ${JSON.stringify(message).slice(0, 400)}`);
    }
  });

  test('an empty message is every field at its default', () => {
    const empty = Buffer.alloc(0);
    assert.deepStrictEqual(ourDecode(empty), referenceDecode(empty));
    assert.deepStrictEqual(ourDecode(empty), { model_name: '', model_version: '', id: '', parameters: {}, inputs: [], outputs: [], raw_input_contents: [] });
  });

  test('skips unknown fields of every wire type, at every level', () => {
    const parameter = Buffer.concat([unknownFields(), vint(2, -42), unknownFields()]);
    const entry = Buffer.concat([str(1, 'k'), unknownFields(), len(2, parameter)]);
    const contents = Buffer.concat([unknownFields(), len(6, Buffer.from(new Float32Array([1, 2]).buffer)), unknownFields()]);
    const input = Buffer.concat([str(1, 'x'), unknownFields(), str(2, 'FP32'), len(3, Buffer.concat([varint(1), varint(2)])), len(4, entry), len(5, contents)]);
    const output = Buffer.concat([unknownFields(), str(1, 'y'), len(2, entry)]);
    const message = Buffer.concat([unknownFields(), str(1, 'm'), len(4, entry), len(5, input), unknownFields(), len(6, output), len(7, Buffer.from('raw')), unknownFields()]);
    const decoded = ourDecode(message);
    assert.deepStrictEqual(decoded, referenceDecode(message));
    assert.equal((decoded as { parameters: Record<string, { int64_param: string }> }).parameters['k']?.int64_param, '-42');
  });

  test('reads repeated numeric fields packed or not, mixed within one message', () => {
    const contents = Buffer.concat([
      vint(1, 1), len(1, Buffer.concat([varint(0), varint(2)])), vint(1, 0),
      vint(2, -5), len(2, Buffer.concat([varint(-2147483648n), varint(2147483647)])),
      vint(3, -9223372036854775808n), len(3, Buffer.concat([varint(9223372036854775807n), varint(-1n)])),
      vint(4, 4294967295), len(4, varint(7)),
      vint(5, 18446744073709551615n), len(5, Buffer.concat([varint(2n ** 53n + 1n), varint(0)])),
      f32(6, 0.1), len(6, Buffer.from(new Float32Array([Number.NaN, -0, Infinity]).buffer)),
      f64(7, 0.1), len(7, Buffer.from(new Float64Array([5e-324, -Infinity]).buffer)),
      len(8, Buffer.from('a')), len(8, Buffer.alloc(0)),
    ]);
    const shape = Buffer.concat([vint(3, 2), len(3, Buffer.concat([varint(3), varint(-1n)])), vint(3, 2n ** 60n)]);
    const message = len(5, Buffer.concat([str(1, 'x'), shape, len(5, contents)]));
    const decoded = ourDecode(message) as { inputs: { shape: string[]; contents: Record<string, unknown[]> }[] };
    assert.deepStrictEqual(decoded, referenceDecode(message));
    assert.deepStrictEqual(decoded.inputs[0]?.shape, ['2', '3', '-1', String(2n ** 60n)]);
    assert.deepStrictEqual(decoded.inputs[0]?.contents['uint64_contents'], ['18446744073709551615', String(2n ** 53n + 1n), '0']);
  });

  test('a repeated singular field keeps its last value, as protobufjs', () => {
    const message = Buffer.concat([str(1, 'first'), str(1, 'second'), len(5, Buffer.concat([len(5, vint(1, 1)), len(5, vint(2, 3))]))]);
    assert.deepStrictEqual(ourDecode(message), referenceDecode(message));
  });

  test('moves raw contents onto an aligned boundary, in place, leaving earlier views intact', () => {
    const cases = seeded(7);
    for (let shift = 0; shift < 16; shift++) {
      const tensor = cases.bytes(40 + shift);
      // Above 16 KiB the length takes 3 bytes: with its tag, 4 bytes that can always absorb a move to 4-byte alignment.
      const image = cases.bytes(20_000 + shift);
      const bytesElement = cases.bytes(5);
      const input = Buffer.concat([str(1, 'x'), str(2, 'BYTES'), len(5, len(8, bytesElement))]);
      // The id's length moves where everything after it lands; everything before the first raw entry is free.
      const body = Buffer.concat([str(3, 'p'.repeat(5 + shift)), len(7, tensor), len(7, cases.bytes(3)), len(5, input), len(7, image)]);
      // Decode inside a larger buffer at an odd offset, as grpc-js hands over a slice of the framed message.
      const framed = Buffer.alloc(body.length + 5 + shift);
      body.copy(framed, 5 + shift);
      const decoded = decodeModelInferRequest(framed.subarray(5 + shift));
      const [first, small, last] = decoded.raw_input_contents;
      assert.deepStrictEqual(first, tensor);
      assert.deepStrictEqual(small, cases.bytes(3, true));
      assert.deepStrictEqual(last, image);
      assert.equal(first!.byteOffset % 8, 0, `shift ${shift}: first raw entry at ${first!.byteOffset}`);
      assert.equal(last!.byteOffset % 4, 0, `shift ${shift}: last raw entry at ${last!.byteOffset}`);
      assert.equal(first!.buffer, framed.buffer, 'a view of the received bytes, not a copy');
      assert.equal(last!.buffer, framed.buffer, 'a view of the received bytes, not a copy');
      // The BYTES element decoded before the last raw entry was moved is untouched.
      assert.deepStrictEqual(decoded.inputs[0]?.contents?.bytes_contents[0], bytesElement);
      // Nothing outside the buffer handed to the decoder is written.
      assert.deepStrictEqual(framed.subarray(0, 5 + shift), Buffer.alloc(5 + shift));
    }
  });

  test('refuses malformed messages instead of reading past them', () => {
    const good = infer.requestSerialize({ model_name: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1] }], raw_input_contents: [Buffer.alloc(4)] });
    // 0a 01 6d | 2a 0c (0a 01 78 12 04 46 50 33 32 1a 01 01) | 3a 04 00 00 00 00: a cut after
    // model_name (3) or after the input (17) falls between fields and leaves a valid shorter
    // message; every other cut is inside a field and must throw.
    assert.equal(good.length, 23);
    const between = [3, 17];
    for (let cut = 1; cut < good.length; cut++) {
      const truncated = Buffer.from(good.subarray(0, cut));
      if (between.includes(cut)) {
        assert.doesNotThrow(() => decodeModelInferRequest(truncated), `cut at ${cut}`);
        assert.deepStrictEqual(ourDecode(truncated), referenceDecode(truncated), `cut at ${cut}`);
      } else {
        assert.throws(() => decodeModelInferRequest(truncated), ProtobufError, `cut at ${cut}`);
      }
    }
    assert.throws(() => decodeModelInferRequest(Buffer.from([0x3a, 0x05, 1, 2])), ProtobufError);
    assert.throws(() => decodeModelInferRequest(Buffer.from([0x0f])), ProtobufError, 'wire type 7');
    assert.throws(() => decodeModelInferRequest(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), ProtobufError, 'an 11-byte varint');
  });

  test('a map entry without a value is an empty InferParameter; a __proto__ key is an entry', () => {
    const decoded = ourDecode(Buffer.concat([len(4, str(1, 'novalue')), len(4, Buffer.concat([str(1, '__proto__'), len(2, vint(1, 1))]))])) as {
      parameters: Record<string, unknown>;
    };
    assert.deepStrictEqual(Object.keys(decoded.parameters), ['novalue', '__proto__']);
    assert.deepStrictEqual(decoded.parameters['novalue'], {});
    assert.equal(Object.getPrototypeOf(decoded.parameters), Object.prototype);
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(decoded.parameters, '__proto__')?.value, { bool_param: true, parameter_choice: 'bool_param' });
  });
});

describe('ModelInferResponse encoder', () => {
  test('writes random responses that protobufjs reads as the message it writes itself', () => {
    const cases = seeded(99);
    for (let i = 0; i < 300; i++) {
      const response = cases.response();
      const ours = encodeModelInferResponse(response);
      assert.deepStrictEqual(infer.responseDeserialize(ours), infer.responseDeserialize(infer.responseSerialize(response)), `case ${i}`);
      assert.deepStrictEqual(decodeBack(ours).raw_output_contents, response.raw_output_contents.map((raw) => Buffer.from(raw)));
    }
  });

  test('ModelStreamInferResponse: answers and failures', () => {
    const cases = seeded(5);
    const answers: ModelStreamInferResponseOut[] = [
      { error_message: '', infer_response: cases.response() },
      { error_message: "input 'x': expected FP32, got INT8 — é", infer_response: { model_name: 'm', model_version: '', id: 'req-1' } },
      { error_message: 'x', infer_response: { model_name: '', model_version: '', id: '' } },
    ];
    for (const answer of answers) {
      assert.deepStrictEqual(stream.responseDeserialize(encodeModelStreamInferResponse(answer)), stream.responseDeserialize(stream.responseSerialize(answer)));
    }
  });

  test('keeps an empty raw_output_contents entry, so entries stay aligned with outputs', () => {
    const response: ModelInferResponseOut = {
      model_name: 'm',
      model_version: '1',
      id: '',
      outputs: [
        { name: 'empty', datatype: 'FP32', shape: [0, 3] },
        { name: 'full', datatype: 'INT64', shape: [1] },
      ],
      raw_output_contents: [Buffer.alloc(0), Buffer.from(new BigInt64Array([-1n]).buffer)],
    };
    const decoded = decodeBack(encodeModelInferResponse(response));
    assert.equal(decoded.raw_output_contents.length, 2);
    assert.equal(decoded.raw_output_contents[0]?.length, 0);
    assert.deepStrictEqual(decoded.outputs.map((o) => o.shape), [['0', '3'], ['1']]);
  });

  test('64-bit parameters and dims beyond 2^53, as strings and as numbers', () => {
    const parameters: Record<string, InferParameterOut> = {
      big: { int64_param: '9223372036854775807' },
      min: { int64_param: '-9223372036854775808' },
      negative: { int64_param: -3 },
      zero: { int64_param: 0 },
      no: { bool_param: false },
      empty: { string_param: '' },
      nan: { double_param: Number.NaN },
    };
    const response: ModelInferResponseOut = { model_name: 'm', model_version: '', id: '', parameters, outputs: [{ name: 'o', datatype: 'FP32', shape: ['18446744073709551615', 2 ** 40], parameters }], raw_output_contents: [] };
    assert.deepStrictEqual(infer.responseDeserialize(encodeModelInferResponse(response)), infer.responseDeserialize(infer.responseSerialize(response)));
  });
});

function decodeBack(bytes: Buffer): { outputs: { shape: string[] }[]; raw_output_contents: Buffer[] } {
  return infer.responseDeserialize(bytes) as { outputs: { shape: string[] }[]; raw_output_contents: Buffer[] };
}

describe('HTTP/2 flow control of the gRPC listener', () => {
  test('sessions start with the wide per-stream and connection receive windows', async (t) => {
    const repository = await makeTempRepository();
    const server = await startTestServer(t, repository, { grpcPort: 0 });
    assert.ok(server.grpcPort !== undefined);
    const session: ClientHttp2Session = connect(`http://127.0.0.1:${server.grpcPort}`);
    t.after(() => session.destroy());
    const settings = await new Promise<{ initialWindowSize?: number }>((resolve) => session.once('remoteSettings', resolve));
    // The intended sizes themselves (flow-control.ts): 4 MiB per stream, 32 MiB per connection,
    // not only whatever the constant says (nghttp2's own default is 65,535 for both).
    assert.deepStrictEqual(DEFAULT_HTTP2_WINDOWS, { streamWindowBytes: 4 * 1024 * 1024, connectionWindowBytes: 32 * 1024 * 1024 });
    assert.equal(settings.initialWindowSize, 4 * 1024 * 1024);
    // The connection window is a WINDOW_UPDATE sent as the session starts: wait a round trip.
    await new Promise<void>((resolve, reject) => session.ping((error) => (error === null ? resolve() : reject(error))));
    assert.equal(session.state.remoteWindowSize, 32 * 1024 * 1024);
  });
});

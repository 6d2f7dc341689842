/**
 * Hostile gRPC requests to inference.GRPCInferenceService: every one must end with a status
 * that blames the caller (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, ...), never
 * INTERNAL, UNKNOWN or UNAVAILABLE, and never take the server down.
 */
import { status } from '@grpc/grpc-js';

export interface GrpcCase {
  readonly name: string;
  readonly method: string;
  readonly request: object;
  /** Default: any caller-fault status. `ok-or-caller` also accepts OK (tolerated input). */
  readonly expect?: 'caller' | 'ok-or-caller';
}

/** Statuses that say the request was wrong, not the server. */
export const CALLER_FAULT: ReadonlySet<number> = new Set([
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.RESOURCE_EXHAUSTED,
  status.FAILED_PRECONDITION,
  status.OUT_OF_RANGE,
  status.UNIMPLEMENTED,
]);

const fp32Input = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: 'x',
  datatype: 'FP32',
  shape: ['1', '4'],
  contents: { fp32_contents: [1, 2, 3, 4] },
  ...overrides,
});

function infer(overrides: Record<string, unknown>): Record<string, unknown> {
  return { model_name: 'mlp', id: 'hostile', inputs: [fp32Input()], ...overrides };
}

function lengthPrefixed(length: number, bytes: Buffer): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32LE(length >>> 0);
  return Buffer.concat([prefix, bytes]);
}

export function grpcCases(): GrpcCase[] {
  const cases: GrpcCase[] = [];
  const add = (name: string, request: Record<string, unknown>, method = 'ModelInfer', expect: GrpcCase['expect'] = 'caller'): void => {
    cases.push({ name: `${method}: ${name}`, method, request, expect });
  };
  add('empty model name', infer({ model_name: '' }));
  add('unknown model', infer({ model_name: 'nope' }));
  add('unknown version', infer({ model_version: '99' }));
  add('non-numeric version', infer({ model_version: 'abc' }));
  add('no inputs', infer({ inputs: [] }));
  add('input without a name', infer({ inputs: [fp32Input({ name: '' })] }));
  add('unknown input', infer({ inputs: [fp32Input({ name: 'nope' })] }));
  add('duplicate inputs', infer({ inputs: [fp32Input(), fp32Input()] }));
  add('20,000 inputs', infer({ inputs: Array.from({ length: 20_000 }, (_, i) => fp32Input({ name: `x${i}` })) }));
  for (const datatype of ['', 'FP33', 'fp32', 'INT32', 'BYTES', 'FP16']) add(`datatype ${JSON.stringify(datatype)}`, infer({ inputs: [fp32Input({ datatype })] }));
  for (const shape of [[], ['4'], ['1', '4', '1'], ['-1', '4'], ['0', '4'], ['2', '4'], ['9223372036854775807', '4'], ['-9223372036854775808', '4'], ['4294967296', '4294967296'], ['65536', '65536', '4']]) {
    add(`shape [${shape.join(',')}]`, infer({ inputs: [fp32Input({ shape })] }));
  }
  add('3 values for [1,4]', infer({ inputs: [fp32Input({ contents: { fp32_contents: [1, 2, 3] } })] }));
  add('5 values for [1,4]', infer({ inputs: [fp32Input({ contents: { fp32_contents: [1, 2, 3, 4, 5] } })] }));
  add('no contents', infer({ inputs: [fp32Input({ contents: null })] }));
  add('int_contents for FP32', infer({ inputs: [fp32Input({ contents: { int_contents: [1, 2, 3, 4] } })] }));
  add('two contents fields', infer({ inputs: [fp32Input({ contents: { fp32_contents: [1, 2, 3, 4], int_contents: [1, 2, 3, 4] } })] }));
  add('bytes_contents for FP32', infer({ inputs: [fp32Input({ contents: { bytes_contents: [Buffer.from('abcd')] } })] }));
  add('NaN and Infinity values', infer({ inputs: [fp32Input({ contents: { fp32_contents: [Number.NaN, Infinity, -Infinity, 1] } })] }), 'ModelInfer', 'ok-or-caller');
  for (const size of [0, 15, 17, 1024]) add(`raw contents of ${size} bytes`, infer({ inputs: [fp32Input({ contents: null })], raw_input_contents: [Buffer.alloc(size)] }));
  add('raw contents and typed contents', infer({ raw_input_contents: [Buffer.alloc(16)] }));
  add('two raw entries for one input', infer({ inputs: [fp32Input({ contents: null })], raw_input_contents: [Buffer.alloc(16), Buffer.alloc(16)] }));
  const bytes = (name: string, raw: Buffer, shape = ['1'], expect: GrpcCase['expect'] = 'caller'): void =>
    add(name, { model_name: 'id_bytes', inputs: [{ name: 'x', datatype: 'BYTES', shape }], raw_input_contents: [raw] }, 'ModelInfer', expect);
  bytes('BYTES prefix 0xFFFFFFFF', lengthPrefixed(0xffffffff, Buffer.from('abc')));
  bytes('BYTES prefix beyond the data', lengthPrefixed(100, Buffer.from('abc')));
  bytes('BYTES truncated prefix', Buffer.from([1, 0]));
  bytes('BYTES more elements than the shape', Buffer.concat([lengthPrefixed(1, Buffer.from('a')), lengthPrefixed(1, Buffer.from('b'))]));
  bytes('BYTES invalid UTF-8 element', lengthPrefixed(2, Buffer.from([0xff, 0xfe])), ['1'], 'ok-or-caller');
  add('priority as a string', infer({ parameters: { priority: { string_param: 'high' } } }));
  add('priority negative', infer({ parameters: { priority: { int64_param: '-1' } } }));
  add('priority beyond 2^53', infer({ parameters: { priority: { int64_param: '9223372036854775807' } } }));
  add('timeout negative', infer({ parameters: { timeout: { int64_param: '-5' } } }));
  add('timeout as a double', infer({ parameters: { timeout: { double_param: 1.5 } } }));
  add('timeout NaN', infer({ parameters: { timeout: { double_param: Number.NaN } } }));
  add('a parameter with no value', infer({ parameters: { a: {} } }));
  add('input parameter with no value', infer({ inputs: [fp32Input({ parameters: { a: {} } })] }));
  add('output without a name', infer({ outputs: [{ name: '' }] }));
  add('unknown output', infer({ outputs: [{ name: 'nope' }] }));
  add('classification as a string', infer({ outputs: [{ name: 'probs', parameters: { classification: { string_param: 'x' } } }] }));
  add('classification negative', infer({ outputs: [{ name: 'probs', parameters: { classification: { int64_param: '-1' } } }] }));
  for (const method of ['ModelMetadata', 'ModelConfig', 'ModelReady']) {
    add('empty name', { name: '' }, method);
    add('unknown model', { name: 'nope' }, method);
    add('unknown version', { name: 'mlp', version: '99' }, method);
  }
  add('unknown model', { name: 'nope' }, 'ModelStatistics');
  add('unknown version', { name: 'mlp', version: '99' }, 'ModelStatistics');
  add('empty name', { model_name: '' }, 'RepositoryModelLoad');
  add('invalid name', { model_name: '../../evil' }, 'RepositoryModelLoad');
  add('config not JSON', { model_name: 'mlp', parameters: { config: { string_param: '{' } } }, 'RepositoryModelLoad');
  add('config of the wrong shape', { model_name: 'mlp', parameters: { config: { string_param: '{"max_batch_size":"x"}' } } }, 'RepositoryModelLoad');
  add('config not a string', { model_name: 'mlp', parameters: { config: { int64_param: '5' } } }, 'RepositoryModelLoad');
  add('file without config', { model_name: 'mlp', parameters: { 'file:1/model.onnx': { bytes_param: Buffer.from('x') } } }, 'RepositoryModelLoad');
  add('file escaping the directory', { model_name: 'mlp', parameters: { config: { string_param: '{}' }, 'file:../../evil': { bytes_param: Buffer.from('x') } } }, 'RepositoryModelLoad');
  add('unknown model', { model_name: 'nope' }, 'RepositoryModelUnload');
  add('empty name', { model_name: '' }, 'RepositoryModelUnload');
  return cases;
}

/** Messages sent on one ModelStreamInfer stream: each must be answered with an error_message. */
export function grpcStreamMessages(): object[] {
  return [
    infer({ model_name: '' }),
    infer({ model_name: 'nope' }),
    infer({ inputs: [] }),
    infer({ inputs: [fp32Input({ shape: ['-1', '4'] })] }),
    infer({ inputs: [fp32Input({ shape: ['9223372036854775807', '4'] })] }),
    infer({ inputs: [fp32Input({ contents: { fp32_contents: [1] } })] }),
    infer({ inputs: [fp32Input({ contents: null })], raw_input_contents: [Buffer.alloc(3)] }),
    infer({ parameters: { priority: { string_param: 'x' } } }),
    infer({ outputs: [{ name: 'nope' }] }),
  ].map((message, i) => ({ ...message, id: `s${i}` }));
}

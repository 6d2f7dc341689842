import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { modelConfigSchema } from '../src/config/model-config.js';
import { TesseraError } from '../src/core/errors.js';
import { parsePbtxt, pbtxtToObject, PbtxtSyntaxError, type PbMessage, type PbValue } from '../src/repository/pbtxt.js';
import { readTritonConfig, tritonConfigFromText } from '../src/repository/triton-config.js';

function values(message: PbMessage, name: string): PbValue[] {
  return message.fields.filter((f) => f.name === name).map((f) => f.value);
}

function only(message: PbMessage, name: string): PbValue {
  const [value, extra] = values(message, name);
  assert.ok(value !== undefined && extra === undefined, `exactly one '${name}'`);
  return value;
}

function syntaxError(text: string): PbtxtSyntaxError {
  try {
    parsePbtxt(text, { source: 'config.pbtxt' });
  } catch (error) {
    assert.ok(error instanceof PbtxtSyntaxError, `PbtxtSyntaxError, got ${String(error)}`);
    return error;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

function configError(text: string): TesseraError {
  try {
    readTritonConfig(text, { source: 'm/config.pbtxt' });
  } catch (error) {
    assert.ok(error instanceof TesseraError, `TesseraError, got ${String(error)}`);
    assert.equal(error.code, 'INVALID_MODEL_CONFIG');
    return error;
  }
  assert.fail('no error');
}

describe('protobuf text format parser', () => {
  test('strings: both quotes, every escape, adjacent strings concatenate', () => {
    const m = parsePbtxt(String.raw`
      a: "tab\there\nline"
      b: 'it\'s "quoted"'
      c: "\x41\101\u00e9\U0001F600\\\"\?\a\b\f\v\r"
      d: "abc" 'def'
      e: "# not a comment"
      f: ""
      g: "\303\251"
    `);
    assert.deepEqual(only(m, 'a'), { kind: 'string', value: 'tab\there\nline', pos: { line: 2, column: 10 } });
    assert.equal((only(m, 'b') as { value: string }).value, `it's "quoted"`);
    assert.equal((only(m, 'c') as { value: string }).value, 'AAé😀\\"?\x07\b\f\v\r');
    assert.equal((only(m, 'd') as { value: string }).value, 'abcdef');
    assert.equal((only(m, 'e') as { value: string }).value, '# not a comment');
    assert.equal((only(m, 'f') as { value: string }).value, '');
    assert.equal((only(m, 'g') as { value: string }).value, 'é', 'octal escapes are bytes, decoded as UTF-8');
  });

  test('numbers: decimal, negative, hex, octal, floats, suffixes, inf and nan', () => {
    const text = 'a: 42 b: -7 c: 0x1F d: 017 e: 1.5 f: -2.5e-3 g: .5 h: 1e3 i: 2.0f j: 10F k: -inf l: nan m: 0 n: - 3 o: 9007199254740993';
    const m = parsePbtxt(text);
    const num = (name: string): { value: number; integer: boolean; text: string } => {
      const v = only(m, name);
      assert.equal(v.kind, 'number', name);
      return v as { value: number; integer: boolean; text: string };
    };
    assert.deepEqual([num('a').value, num('a').integer], [42, true]);
    assert.deepEqual([num('b').value, num('b').text], [-7, '-7']);
    assert.deepEqual([num('c').value, num('c').integer], [31, true]);
    assert.equal(num('d').value, 15);
    assert.deepEqual([num('e').value, num('e').integer], [1.5, false]);
    assert.equal(num('f').value, -0.0025);
    assert.equal(num('g').value, 0.5);
    assert.deepEqual([num('h').value, num('h').integer], [1000, false]);
    assert.deepEqual([num('i').value, num('i').integer], [2, false]);
    assert.deepEqual([num('j').value, num('j').integer], [10, false]);
    assert.equal(num('k').value, -Infinity);
    assert.deepEqual(only(m, 'l'), { kind: 'identifier', value: 'nan', pos: { line: 1, column: text.indexOf('nan') + 1 } });
    assert.equal(num('m').value, 0);
    assert.equal(num('n').value, -3, "whitespace may follow '-'");
    assert.equal(num('o').text, '9007199254740993', 'the literal is kept for integers beyond 2^53');
  });

  test('enums and booleans are identifiers', () => {
    const m = parsePbtxt('data_type: TYPE_FP32 kind: KIND_GPU on: true off: False');
    assert.deepEqual(
      m.fields.map((f) => [f.name, f.value.kind, (f.value as { value: unknown }).value]),
      [
        ['data_type', 'identifier', 'TYPE_FP32'],
        ['kind', 'identifier', 'KIND_GPU'],
        ['on', 'identifier', 'true'],
        ['off', 'identifier', 'False'],
      ],
    );
  });

  test('messages: braces and angle brackets, with or without a colon, nested', () => {
    const m = parsePbtxt(`
      version_policy: { specific { versions: 1 versions: 3 } }
      a < b: 1 >
      c: < d { e: "x" } >
    `);
    const policy = only(m, 'version_policy');
    assert.equal(policy.kind, 'message');
    const specific = only(policy as PbMessage, 'specific') as PbMessage;
    assert.deepEqual(values(specific, 'versions').map((v) => (v as { value: number }).value), [1, 3]);
    assert.equal(((only(only(m, 'a') as PbMessage, 'b')) as { value: number }).value, 1);
    const d = only(only(m, 'c') as PbMessage, 'd') as PbMessage;
    assert.equal((only(d, 'e') as { value: string }).value, 'x');
  });

  test('lists of scalars and of messages, empty lists, separators', () => {
    const m = parsePbtxt(`
      dims: [ 3, 224, 224 ];
      input [ { name: "a" }, { name: "b" } ],
      empty: []
      input { name: "c" }
      flags: [true, false]
    `);
    assert.deepEqual(values(m, 'dims').map((v) => (v as { value: number }).value), [3, 224, 224]);
    const inputs = m.fields.filter((f) => f.name === 'input');
    assert.deepEqual(
      inputs.map((f) => [(only(f.value as PbMessage, 'name') as { value: string }).value, f.inList]),
      [
        ['a', true],
        ['b', true],
        ['c', false],
      ],
    );
    assert.equal(values(m, 'empty').length, 0, 'an empty list sets nothing');
    assert.deepEqual(pbtxtToObject(m), {
      dims: [3, 224, 224],
      input: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      flags: [true, false],
    });
  });

  test('comments and positions', () => {
    const m = parsePbtxt('# header comment\nname: "x" # trailing\n\n  max_batch_size: 8\n');
    assert.deepEqual(
      m.fields.map((f) => [f.name, f.pos.line, f.pos.column]),
      [
        ['name', 2, 1],
        ['max_batch_size', 4, 3],
      ],
    );
  });

  test('extension and Any names in brackets', () => {
    const m = parsePbtxt('[my.pkg.ext]: 5 [type.googleapis.com/pkg.Msg] { a: 1 }');
    assert.deepEqual(
      m.fields.map((f) => f.name),
      ['[my.pkg.ext]', '[type.googleapis.com/pkg.Msg]'],
    );
  });

  test('syntax errors name line and column', () => {
    const cases: [string, number, number, RegExp][] = [
      ['name: "unterminated\n', 1, 7, /unterminated string/],
      ['input {\n  dims 4\n}', 2, 8, /expected ':' or '\{' after field name 'dims', found number 4/],
      ['input {\n  name: "a"\n', 3, 1, /expected '\}' to close the message opened at 1:7, found end of input/],
      ['dims: [1, 2 3]', 1, 13, /expected ',' or '\]' in the list opened at 1:7, found number 3/],
      ['name: "bad \\q escape"', 1, 12, /invalid escape '\\q'/],
      ['max_batch_size: 12abc', 1, 17, /invalid number '12a'/],
      ['name: @', 1, 7, /unexpected character "@"/],
      ['x: -TYPE_FP32', 1, 5, /expected a number after '-', found 'TYPE_FP32'/],
      ['x: 09', 1, 4, /invalid octal number '09'/],
      ['x: "\\777"', 1, 5, /octal escape \\777 is above \\377/],
      ['x: "\\ud800"', 1, 5, /not a Unicode scalar value/],
      [': 5', 1, 1, /expected a field name, found ':'/],
      ['a { b: 1 ]', 1, 10, /expected a field name, found '\]'/],
      ['x:', 1, 3, /expected a value for field 'x', found end of input/],
    ];
    for (const [text, line, column, reason] of cases) {
      const error = syntaxError(text);
      assert.deepEqual([error.line, error.column], [line, column], text);
      assert.match(error.reason, reason, text);
      assert.ok(error.message.startsWith(`config.pbtxt:${line}:${column}: `), error.message);
    }
  });

  test('nesting is bounded', () => {
    const deep = 'a { '.repeat(101) + '}'.repeat(101);
    assert.match(syntaxError(deep).reason, /nested deeper than 100 levels/);
    assert.doesNotThrow(() => parsePbtxt('a { '.repeat(100) + '}'.repeat(100)));
  });
});

// A densenet_onnx config as in Triton's quickstart model repository.
const DENSENET = `
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape { shape: [ 1, 3, 224, 224 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape { shape: [ 1, 1000, 1, 1 ] }
    label_filename: "densenet_labels.txt"
  }
]
`;

// Everything Tessera honours, and a few things it does not.
const RESNET = `
# ResNet-50 served by Triton's onnxruntime backend
name: "resnet50"
backend: "onnxruntime"
max_batch_size: 32
version_policy: { specific: { versions: [1, 3] } }
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
instance_group [
  { count: 2, kind: KIND_CPU },
  { count: 1 kind: KIND_GPU gpus: [ 0, 1 ] }
]
dynamic_batching {
  preferred_batch_size: [ 8, 16 ]
  max_queue_delay_microseconds: 2000
  preserve_ordering: true
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy {
    timeout_action: REJECT
    default_timeout_microseconds: 500000
    max_queue_size: 64
  }
  priority_queue_policy { key: 1 value: { max_queue_size: 8 } }
}
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
parameters [
  { key: "execution_mode", value: { string_value: "1" } },
  { key: "enable_mem_pattern" value { string_value: "0" } },
  { key: "compute_thread_nice" value { string_value: "3" } }
]
optimization {
  graph: { level: 1 }
  execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" } ] }
}
model_warmup [
  {
    name: "warm"
    batch_size: 8
    count: 3
    inputs { key: "input" value: { data_type: TYPE_FP32 dims: [3, 224, 224] zero_data: true } }
  },
  {
    name: "warm1"
    batch_size: 1
    inputs { key: "input" value: { data_type: TYPE_FP32 dims: [3, 224, 224] random_data: true } }
  }
]
default_model_filename: "resnet50.onnx"
response_cache { enable: true }
model_transaction_policy { decoupled: false }
`;

describe('Triton config.pbtxt to Tessera config', () => {
  test('densenet_onnx: platform, no batching, labels; reshape dims dropped; no dynamic_batching means one at a time', () => {
    const { config, ignored } = readTritonConfig(DENSENET, { source: 'densenet_onnx/config.pbtxt' });
    assert.equal(config.name, 'densenet_onnx');
    assert.equal(config.platform, 'onnxruntime_onnx');
    assert.equal(config.max_batch_size, 0);
    assert.deepEqual(config.input, [{ name: 'data_0', data_type: 'FP32' }]);
    assert.deepEqual(config.output, [{ name: 'fc6_1', data_type: 'FP32' }]);
    assert.equal(config.label_filename, 'densenet_labels.txt');
    assert.equal(config.dynamic_batching, false);
    assert.deepEqual(ignored, [
      "input[0] 'data_0'.reshape: reshape is not applied; dims [3,224,224] dropped, the model's own shape is served",
      "input[0] 'data_0'.format: FORMAT_NCHW is informational only (the image handler has its own 'layout' option)",
      "output[0] 'fc6_1'.reshape: reshape is not applied; dims [1000] dropped, the model's own shape is served",
    ]);
  });

  test('dynamic batching, instance groups, parameters, version policy, warm-up, optimisation', () => {
    const { config, ignored } = tritonConfigFromText(RESNET);
    assert.deepEqual(config, {
      name: 'resnet50',
      backend: 'onnxruntime',
      max_batch_size: 32,
      input: [{ name: 'input', data_type: 'TYPE_FP32', dims: [3, 224, 224] }],
      output: [{ name: 'logits', data_type: 'TYPE_FP32', dims: [1000] }],
      label_filename: 'labels.txt',
      version_policy: { specific: { versions: [1, 3] } },
      instance_group: [
        { count: 2, kind: 'KIND_CPU' },
        { count: 1, kind: 'KIND_CPU' },
      ],
      dynamic_batching: {
        preferred_batch_size: [8, 16],
        max_queue_delay_microseconds: 2000,
        preserve_ordering: true,
        priority_levels: 3,
        default_priority_level: 2,
        default_queue_policy: { default_timeout_microseconds: 500000, allow_timeout_override: false, max_queue_size: 64 },
      },
      parameters: {
        intra_op_thread_count: '2',
        execution_mode: 'parallel',
        enable_mem_pattern: '0',
        compute_thread_nice: '3',
        graph_optimization_level: 'extended',
      },
      default_model_filename: 'resnet50.onnx',
      warmup: { enabled: true, batch_sizes: [1, 8], iterations: 3, dims: { input: [3, 224, 224] } },
    });
    assert.deepEqual(ignored, [
      'instance_group[1].kind: KIND_GPU runs on the CPU in Tessera (count 1 per GPU becomes 1 CPU instance(s))',
      'instance_group[1].gpus: no GPUs are used',
      'dynamic_batching.priority_queue_policy: per-level queue policies are not supported; default_queue_policy applies to every level',
      "parameters.enable_mem_pattern: not a setting of Tessera's onnxruntime backend (kept in parameters)",
      'optimization.execution_accelerators: GPU and accelerator settings do not apply on the CPU',
      'model_warmup[1].inputs.input: warm-up always runs zero-filled inputs',
      'response_cache.enable: Tessera has no response cache',
    ]);
    // The converted object is what Tessera's own schema takes.
    const parsed = modelConfigSchema.parse(config);
    assert.equal(parsed.input[0]?.data_type, 'FP32');
    assert.equal(parsed.dynamic_batching === false ? undefined : parsed.dynamic_batching?.default_queue_policy?.allow_timeout_override, false);
  });

  test('without dynamic_batching requests run one at a time; autoComplete mirrors Triton auto-complete', () => {
    const text = 'max_batch_size: 8\ninput [{ name: "x" data_type: TYPE_FP32 dims: [4] }]';
    assert.equal(tritonConfigFromText(text).config['dynamic_batching'], false);
    const auto = tritonConfigFromText(text, { autoComplete: true }).config;
    assert.equal('dynamic_batching' in auto, false, 'left to Tessera: batchable models batch with no delay');
    assert.equal(auto['max_batch_size'], 8);
    const zero = tritonConfigFromText('max_batch_size: 0', { autoComplete: true }).config;
    assert.equal('max_batch_size' in zero, false, 'Triton auto-complete replaces 0 for models that can batch');
    assert.equal(tritonConfigFromText('max_batch_size: 0').config['max_batch_size'], 0);
    const missing = tritonConfigFromText('name: "m"').config;
    assert.equal('max_batch_size' in missing, false, 'absent: decided from the model');
    // Inputs and outputs both listed: Triton does not auto-complete; the config is taken as written.
    const complete = tritonConfigFromText(
      'max_batch_size: 0\ninput [{ name: "x" data_type: TYPE_FP32 dims: [-1, 4] }]\noutput [{ name: "y" data_type: TYPE_FP32 dims: [-1, 4] }]',
      { autoComplete: true },
    ).config;
    assert.equal(complete['max_batch_size'], 0);
    assert.equal(complete['dynamic_batching'], false);
  });

  test('sequence batching, ensembles and other backends are reported, not honoured', () => {
    const { config, ignored } = tritonConfigFromText(
      `backend: "python"
       platform: "ensemble"
       max_batch_size: 4
       sequence_batching { max_sequence_idle_microseconds: 5000000 }
       ensemble_scheduling { step [ { model_name: "a" model_version: -1 } ] }
       runtime: "model.py"`,
      { autoComplete: true },
    );
    assert.equal(config['dynamic_batching'], false);
    assert.equal('backend' in config || 'platform' in config, false);
    assert.deepEqual(ignored, [
      "platform: 'ensemble' is not supported; Tessera serves ONNX models with onnxruntime",
      "backend: 'python' is not supported; Tessera serves ONNX models with onnxruntime",
      'runtime: Tessera has no backend libraries to choose',
      'sequence_batching: sequence batching is not supported; requests run one at a time',
      'ensemble_scheduling: ensembles are not supported',
    ]);
  });

  test('version policies', () => {
    const policy = (text: string): unknown => tritonConfigFromText(`version_policy: ${text}`).config['version_policy'];
    assert.deepEqual(policy('{ all { } }'), { all: {} });
    assert.deepEqual(policy('{ all: {}}'), { all: {} });
    assert.deepEqual(policy('{ latest: { num_versions: 2 } }'), { latest: { num_versions: 2 } });
    assert.deepEqual(policy('{ latest { } }'), { latest: { num_versions: 1 } });
    assert.deepEqual(policy('{ specific: { versions: [1,3] } }'), { specific: { versions: [1, 3] } });
    assert.match(configError('version_policy { all {} latest {} }').message, /^m\/config\.pbtxt:1:16: version_policy: choose one of latest, all, specific/);
  });

  test('queue policy: Triton defaults allow_timeout_override to false; DELAY is reported', () => {
    const { config, ignored } = tritonConfigFromText(
      'max_batch_size: 4 dynamic_batching { default_queue_policy { timeout_action: DELAY allow_timeout_override: true } }',
    );
    assert.deepEqual(config['dynamic_batching'], { default_queue_policy: { allow_timeout_override: true } });
    assert.deepEqual(ignored, ['dynamic_batching.default_queue_policy.timeout_action: DELAY is not supported; timed-out requests are rejected']);
  });

  test('syntax errors become INVALID_MODEL_CONFIG with file:line:column', () => {
    const error = configError('name: "m"\nmax_batch_size: 8\ninput [\n  {\n    name: "x"\n    dims [ 4 ]\n  }\n]\n');
    // `dims [ 4 ]` without ':' is a list of messages, so the error is at the element.
    assert.equal(error.message, "m/config.pbtxt:6:12: expected ':' or '{' after field name 'dims', found number 4");
    assert.match(configError('input { name: "x" ').message, /^m\/config\.pbtxt:1:19: expected '\}' to close the message opened at 1:7, found end of input$/);
  });

  test('schema errors name the field, line and column', () => {
    assert.equal(configError('name: "m"\nmax_batch_sizee: 8').message, "m/config.pbtxt:2:1: max_batch_sizee: no field 'max_batch_sizee' in Triton's ModelConfig");
    assert.equal(configError('max_batch_size: 8\nmax_batch_size: 4').message, 'm/config.pbtxt:2:1: max_batch_size: non-repeated field given more than once (first at 1:1)');
    assert.equal(configError('max_batch_size: "8"').message, 'm/config.pbtxt:1:17: max_batch_size: expected an integer, got string "8"');
    assert.equal(configError('max_batch_size: -1').message, 'm/config.pbtxt:1:17: max_batch_size: -1 is out of range (0 to 2147483647)');
    assert.equal(configError('input [{ name: "x" data_type: TYPE_BF16 dims: [1] }]').message, "m/config.pbtxt:1:31: input[0] 'x'.data_type: TYPE_BF16 is not supported by Tessera");
    assert.equal(configError('input [{ name: "x" data_type: FP32 }]').message, "m/config.pbtxt:1:31: input[0] 'x'.data_type: expected a TYPE_* data type, got 'FP32'");
    assert.equal(configError('input [{ data_type: TYPE_FP32 }]').message, "m/config.pbtxt:1:8: input[0]: 'name' is required");
    assert.equal(configError('input [{ name: "x" dims: [3, -2] }]').message, "m/config.pbtxt:1:30: input[0] 'x'.dims: -2 is out of range (-1 to 2^53)");
    assert.equal(configError('instance_group [{ kind: KIND_TPU }]').message, 'm/config.pbtxt:1:25: instance_group[0].kind: expected one of KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL, got \'KIND_TPU\'');
    assert.equal(configError('dynamic_batching { preferred_batch_size: [0] }').message, 'm/config.pbtxt:1:43: dynamic_batching.preferred_batch_size: 0 is out of range (1 to 2^53)');
    assert.equal(configError('parameters { value { string_value: "1" } }').message, "m/config.pbtxt:1:12: parameters[0]: 'key' is required");
    assert.equal(configError('instance_group [{ passive: maybe }]').message, "m/config.pbtxt:1:28: instance_group[0].passive: expected true or false, got 'maybe'");
  });

  test('enums may be given by number, as protobuf allows', () => {
    const { config } = tritonConfigFromText('instance_group [{ kind: 2 count: 3 }]');
    assert.deepEqual(config['instance_group'], [{ kind: 'KIND_CPU', count: 3 }]);
  });

  test('optimisation level follows Triton onnxruntime numbering, unless parameters set it', () => {
    const level = (n: number): unknown => (tritonConfigFromText(`optimization { graph { level: ${n} } }`).config['parameters'] as Record<string, unknown>)['graph_optimization_level'];
    assert.deepEqual([level(-1), level(0), level(1), level(2)], ['basic', 'all', 'extended', 'disabled']);
    const both = tritonConfigFromText('parameters { key: "graph_optimization_level" value { string_value: "basic" } } optimization { graph { level: 2 } }');
    assert.equal((both.config['parameters'] as Record<string, unknown>)['graph_optimization_level'], 'basic');
    assert.deepEqual(both.ignored, ['optimization.graph.level: parameters.graph_optimization_level takes precedence']);
  });
});

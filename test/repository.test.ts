/**
 * Unit tests of the model repository (discovery, config files, version policies, signatures)
 * and of request validation against a model's signature.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { defaultInstanceCount, instanceCountOf, modelConfigSchema, type ModelConfigFile } from '../src/config/model-config.js';
import { TesseraError, type ErrorCode } from '../src/core/errors.js';
import type { InferenceRequest } from '../src/core/inference.js';
import type { Tensor, TensorSpec } from '../src/core/tensor.js';
import { validateRequest } from '../src/engine/validate.js';
import { readModelConfig } from '../src/repository/config-file.js';
import { discoverRepository } from '../src/repository/discovery.js';
import { resolveSignature, type ModelSignature } from '../src/repository/signature.js';
import { selectVersions } from '../src/repository/version-policy.js';

function throwsTessera(fn: () => unknown, code: ErrorCode, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof TesseraError, `expected a TesseraError, got ${String(error)}`);
    assert.equal(error.code, code, `code of: ${error.message}`);
    assert.match(error.message, message);
    return true;
  });
}

/** Write `files` (relative path → contents) under `root`. */
async function layout(root: string, files: Readonly<Record<string, string>>): Promise<void> {
  for (const [relative, contents] of Object.entries(files)) {
    const file = path.join(root, relative);
    await mkdir(path.dirname(file), { recursive: true });
    if (relative.endsWith('/')) await mkdir(file, { recursive: true });
    else await writeFile(file, contents);
  }
}

const config = (raw: unknown): ModelConfigFile => modelConfigSchema.parse(raw);

// ---------------------------------------------------------------------------
// discoverRepository
// ---------------------------------------------------------------------------

describe('discoverRepository', () => {
  let root = '';
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tessera-discovery-'));
    await layout(root, {
      'alpha/1/model.onnx': 'x',
      'alpha/3/model.onnx': 'x',
      'alpha/10/model.onnx': 'x',
      'alpha/config.yaml': 'max_batch_size: 4\ninput:\n  - name: x\n    data_type: TYPE_FP32\n    dims: [4]\n',
      'alpha/labels.txt': 'cat\ndog\r\nbird\n\n\n',
      'beta/2/model.onnx': 'x',
      'beta/latest/model.onnx': 'x',
      'beta/01/model.onnx': 'x',
      'beta/-1/model.onnx': 'x',
      'beta/9007199254740993/model.onnx': 'x',
      'beta/config.json': '{"max_batch_size": 0}',
      '.hidden/1/model.onnx': 'x',
      'bad name!/1/model.onnx': 'x',
      'README.md': 'not a model',
      'empty/': '',
      'only_config/config.yaml': 'max_batch_size: 2\n',
      'broken_yaml/1/model.onnx': 'x',
      'broken_yaml/config.yaml': 'max_batch_size: [1, 2\n',
      'invalid/1/model.onnx': 'x',
      'invalid/config.yaml': 'max_batch_size: -3\nfancy_option: true\n',
      'misnamed/1/model.onnx': 'x',
      'misnamed/config.yaml': 'name: other\n',
      'named/1/model.onnx': 'x',
      'named/config.yaml': 'name: named\n',
      'nolabels/1/model.onnx': 'x',
      'nolabels/config.yaml': 'label_filename: classes.txt\n',
      'custom_labels/1/model.onnx': 'x',
      'custom_labels/config.yaml': 'label_filename: classes.txt\n',
      'custom_labels/classes.txt': 'left\nright\n',
    });
  });
  after(async () => {
    if (root !== '') await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('finds model directories sorted by name, skipping hidden, badly named and plain entries', async () => {
    const models = await discoverRepository(root);
    assert.deepEqual(
      models.map((m) => m.name),
      ['alpha', 'beta', 'broken_yaml', 'custom_labels', 'empty', 'invalid', 'misnamed', 'named', 'nolabels', 'only_config'],
    );
    for (const model of models) assert.equal(model.dir, path.join(root, model.name));
  });

  test('versions are the numeric directories, ascending; config and labels are read', async () => {
    const models = await discoverRepository(root);
    const alpha = models.find((m) => m.name === 'alpha')!;
    assert.deepEqual(alpha.versions, [1, 3, 10]);
    assert.equal(alpha.problem, undefined);
    assert.equal(alpha.config?.max_batch_size, 4);
    assert.deepEqual(alpha.config?.input, [{ name: 'x', data_type: 'FP32', dims: [4] }]);
    assert.deepEqual(alpha.labels, ['cat', 'dog', 'bird']);

    const beta = models.find((m) => m.name === 'beta')!;
    assert.deepEqual(beta.versions, [2], "'latest', '01', '-1' and numbers beyond 2^53 are not version directories");
    assert.equal(beta.config?.max_batch_size, 0, 'config.json is read');
    assert.equal(beta.labels, undefined);

    const custom = models.find((m) => m.name === 'custom_labels')!;
    assert.equal(custom.problem, undefined);
    assert.deepEqual(custom.labels, ['left', 'right']);
    const named = models.find((m) => m.name === 'named')!;
    assert.equal(named.problem, undefined, 'a config name equal to the directory name is fine');
  });

  test('each broken model carries a problem that says why, and no config', async () => {
    const models = await discoverRepository(root);
    const problem = (name: string): string => {
      const model = models.find((m) => m.name === name)!;
      assert.equal(model.config, undefined, `${name} has no config`);
      assert.ok(model.problem !== undefined, `${name} has a problem`);
      return model.problem;
    };
    assert.match(problem('empty'), /no version directories \(expected e\.g\. 1\/model\.onnx\)/);
    assert.match(problem('only_config'), /no version directories/);
    assert.match(problem('broken_yaml'), /^cannot parse config\.yaml: /);
    const invalid = problem('invalid');
    assert.match(invalid, /^invalid config\.yaml: /);
    assert.match(invalid, /max_batch_size/);
    assert.match(invalid, /fancy_option/);
    assert.equal(problem('misnamed'), "config name 'other' differs from the directory name 'misnamed'");
    assert.equal(problem('nolabels'), 'label file classes.txt not found');
  });

  test('an unreadable repository root throws REPOSITORY_UNAVAILABLE naming the path', async () => {
    const missing = path.join(root, 'does-not-exist');
    await assert.rejects(discoverRepository(missing), (error: unknown) => {
      assert.ok(error instanceof TesseraError);
      assert.equal(error.code, 'REPOSITORY_UNAVAILABLE');
      assert.ok(error.message.includes(missing), error.message);
      return true;
    });
  });

  test('symbolic links are followed: linked model dirs, version dirs and config files (Kubernetes volumes)', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'tessera-links-'));
    try {
      const real = path.join(base, 'real');
      const repo = path.join(base, 'repo');
      await layout(real, { 'model/1/model.onnx': 'x', 'model/config.yaml': 'max_batch_size: 2\n', 'v/model.onnx': 'x', 'config.yaml': 'max_batch_size: 3\n' });
      await layout(repo, { 'linked_version/config.yaml': 'max_batch_size: 5\n', 'linked_config/1/model.onnx': 'x', 'dangling/1/model.onnx': 'x' });
      await symlink(path.join(real, 'model'), path.join(repo, 'linked_model'), 'dir');
      await symlink(path.join(real, 'v'), path.join(repo, 'linked_version', '7'), 'dir');
      await symlink(path.join(real, 'config.yaml'), path.join(repo, 'linked_config', 'config.yaml'), 'file');
      await symlink(path.join(real, 'nothing-here'), path.join(repo, 'dangling', '2'), 'dir');
      await symlink(path.join(real, 'nothing-here'), path.join(repo, 'dangling_model'), 'dir');
      const models = await discoverRepository(repo);
      const summary = models.map((m) => ({ name: m.name, versions: m.versions, batch: m.config?.max_batch_size, problem: m.problem }));
      assert.deepEqual(summary, [
        { name: 'dangling', versions: [1], batch: undefined, problem: undefined },
        { name: 'linked_config', versions: [1], batch: 3, problem: undefined },
        { name: 'linked_model', versions: [1], batch: 2, problem: undefined },
        { name: 'linked_version', versions: [7], batch: 5, problem: undefined },
      ]);
    } finally {
      await rm(base, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    }
  });

  test('an empty repository has no models', async () => {
    const empty = await mkdtemp(path.join(tmpdir(), 'tessera-empty-repo-'));
    try {
      assert.deepEqual(await discoverRepository(empty), []);
    } finally {
      await rm(empty, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    }
  });
});

// ---------------------------------------------------------------------------
// readModelConfig
// ---------------------------------------------------------------------------

describe('readModelConfig', () => {
  let root = '';
  let counter = 0;
  /** A model directory holding exactly `files`; returns what readModelConfig says of it. */
  const read = async (files: Readonly<Record<string, string>>): ReturnType<typeof readModelConfig> => {
    const dir = path.join(root, `m${counter++}`);
    await mkdir(dir, { recursive: true });
    await layout(dir, files);
    return readModelConfig(dir, new Set(await readdir(dir)));
  };
  const ok = async (files: Readonly<Record<string, string>>): Promise<ModelConfigFile> => {
    const result = await read(files);
    assert.ok(result.ok, `expected a valid config: ${result.ok ? '' : result.reason}`);
    return result.config;
  };
  const reason = async (files: Readonly<Record<string, string>>): Promise<string> => {
    const result = await read(files);
    assert.ok(!result.ok, 'expected an invalid config');
    return result.reason;
  };

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tessera-config-'));
  });
  after(async () => {
    if (root !== '') await rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('no config file: the defaults, and no file', async () => {
    const result = await read({ 'notes.txt': 'hello' });
    assert.ok(result.ok);
    assert.equal(result.file, undefined);
    assert.deepEqual(result.config.input, []);
    assert.deepEqual(result.config.output, []);
    assert.deepEqual(result.config.parameters, {});
    assert.equal(result.config.max_batch_size, undefined);
    assert.equal(result.config.version_policy, undefined);
  });

  test('an empty config.yaml is the defaults', async () => {
    const parsed = await ok({ 'config.yaml': '' });
    assert.deepEqual(parsed.input, []);
  });

  test('Triton TYPE_* names and V2 names map to V2 datatypes', async () => {
    const parsed = await ok({
      'config.yaml': [
        'input:',
        '  - { name: a, data_type: TYPE_FP32, dims: [3, -1] }',
        '  - { name: b, data_type: TYPE_STRING }',
        '  - { name: c, data_type: TYPE_BOOL }',
        '  - { name: d, data_type: INT64 }',
        '  - { name: e, data_type: type_fp16 }',
        'output:',
        '  - { name: y, data_type: TYPE_UINT8, dims: [] }',
      ].join('\n'),
    });
    assert.deepEqual(
      parsed.input.map((t) => [t.name, t.data_type]),
      [
        ['a', 'FP32'],
        ['b', 'BYTES'],
        ['c', 'BOOL'],
        ['d', 'INT64'],
        ['e', 'FP16'],
      ],
    );
    assert.deepEqual(parsed.input[0]!.dims, [3, -1]);
    assert.deepEqual(parsed.output, [{ name: 'y', data_type: 'UINT8', dims: [] }]);
  });

  test('the full Triton-style config: policies, instance groups, batching, parameters', async () => {
    const result = await read({
      'config.yaml': [
        'name: resnet',
        'backend: onnxruntime',
        'max_batch_size: 16',
        'version_policy: { latest: { num_versions: 2 } }',
        'instance_group: { count: 3 }',
        'dynamic_batching: { max_queue_delay_microseconds: 500, preferred_batch_size: [4, 8] }',
        'parameters:',
        '  intra_op_thread_count: { string_value: "2" }',
        '  allow_spinning: false',
        'warmup: { batch_sizes: [1, 4] }',
      ].join('\n'),
    });
    assert.ok(result.ok, result.ok ? '' : result.reason);
    assert.equal(path.basename(result.file ?? ''), 'config.yaml');
    const parsed = result.config;
    assert.equal(parsed.name, 'resnet');
    assert.equal(parsed.max_batch_size, 16);
    assert.deepEqual(parsed.version_policy, { latest: { num_versions: 2 } });
    assert.deepEqual(parsed.instance_group, [{ count: 3, kind: 'KIND_CPU' }], 'a single group becomes a list, with defaults');
    assert.ok(parsed.dynamic_batching !== false && parsed.dynamic_batching !== undefined);
    assert.equal(parsed.dynamic_batching.max_queue_delay_microseconds, 500);
    assert.deepEqual(parsed.dynamic_batching.preferred_batch_size, [4, 8]);
    assert.deepEqual(parsed.parameters, { intra_op_thread_count: '2', allow_spinning: false });
    assert.deepEqual(parsed.warmup, { enabled: true, batch_sizes: [1, 4], iterations: 1 });
  });

  test('config.yaml is preferred to config.json; config.json alone is read', async () => {
    const both = await read({ 'config.yaml': 'max_batch_size: 3\n', 'config.json': '{"max_batch_size": 5}' });
    assert.ok(both.ok);
    assert.equal(both.config.max_batch_size, 3);
    assert.equal(path.basename(both.file ?? ''), 'config.yaml');
    const json = await read({ 'config.json': '{"max_batch_size": 5, "version_policy": {"all": {}}}' });
    assert.ok(json.ok);
    assert.equal(json.config.max_batch_size, 5);
    assert.deepEqual(json.config.version_policy, { all: {} });
  });

  test('invalid configs are refused with a reason naming the file, the field and the problem', async () => {
    assert.match(await reason({ 'config.yaml': 'input:\n  - name: x\n    data_type: TYPE_FP128\n' }), /^invalid config\.yaml: input\.0\.data_type: unknown data type 'TYPE_FP128'/);
    assert.match(await reason({ 'config.yaml': 'max_batch_size: -1\n' }), /^invalid config\.yaml: max_batch_size: /);
    assert.match(await reason({ 'config.yaml': 'max_batch_size: "8"\n' }), /^invalid config\.yaml: max_batch_size: .*number/);
    assert.match(await reason({ 'config.yaml': 'max_batch_sise: 8\n' }), /^invalid config\.yaml: .*max_batch_sise/);
    assert.match(await reason({ 'config.yaml': 'input:\n  - name: x\n    dims: [4, -2]\n' }), /^invalid config\.yaml: input\.0\.dims\.1: /);
    assert.match(await reason({ 'config.yaml': 'version_policy: { latest: { num_versions: 0 } }\n' }), /^invalid config\.yaml: version_policy/);
    assert.match(await reason({ 'config.yaml': 'backend: tensorflow\n' }), /^invalid config\.yaml: backend: /);
    assert.match(await reason({ 'config.yaml': 'instance_group: [{ count: 0 }]\n' }), /^invalid config\.yaml: instance_group/);
    assert.match(await reason({ 'config.yaml': 'max_batch_size: [1, 2\n' }), /^cannot parse config\.yaml: /);
    assert.match(await reason({ 'config.json': '{"max_batch_size": 4,}' }), /^cannot parse config\.json: /);
    // Two problems are both reported.
    const both = await reason({ 'config.yaml': 'max_batch_size: -1\ninstance_group: [{ count: 0 }]\n' });
    assert.match(both, /max_batch_size/);
    assert.match(both, /instance_group/);
  });
});

// ---------------------------------------------------------------------------
// selectVersions
// ---------------------------------------------------------------------------

describe('instance count', () => {
  test('without instance_group: two instances (as Triton gives CPU models), one on a single core', () => {
    assert.deepEqual([1, 2, 3, 16].map((cores) => defaultInstanceCount(cores)), [1, 2, 2, 2]);
    assert.equal(instanceCountOf(modelConfigSchema.parse({}), 8), 2);
    assert.equal(instanceCountOf(modelConfigSchema.parse({}), 1), 1);
  });

  test('with instance_group: every group counted, a group without count having the default', () => {
    assert.equal(instanceCountOf(modelConfigSchema.parse({ instance_group: { count: 3 } }), 2), 3);
    assert.equal(instanceCountOf(modelConfigSchema.parse({ instance_group: [{ count: 3 }, { kind: 'KIND_CPU' }] }), 2), 5);
    assert.equal(instanceCountOf(modelConfigSchema.parse({ instance_group: [{ kind: 'KIND_CPU' }] }), 1), 1);
    assert.equal(instanceCountOf(modelConfigSchema.parse({ instance_group: [{ count: 1 }] }), 16), 1);
  });
});

describe('selectVersions', () => {
  test('default: the latest version only', () => {
    assert.deepEqual(selectVersions(undefined, [1, 3, 2]), [3]);
    assert.deepEqual(selectVersions(undefined, [9, 10]), [10], 'numeric, not lexical, order');
    assert.deepEqual(selectVersions(undefined, []), []);
  });

  test('latest n', () => {
    assert.deepEqual(selectVersions({ latest: { num_versions: 2 } }, [1, 10, 3, 2]), [3, 10]);
    assert.deepEqual(selectVersions({ latest: { num_versions: 5 } }, [2, 1]), [1, 2]);
  });

  test('all', () => {
    assert.deepEqual(selectVersions({ all: {} }, [3, 1, 2]), [1, 2, 3]);
  });

  test('specific', () => {
    assert.deepEqual(selectVersions({ specific: { versions: [3, 1, 7] } }, [1, 2, 3]), [1, 3]);
    assert.deepEqual(selectVersions({ specific: { versions: [7] } }, [1, 2]), []);
  });

  test('does not modify its input', () => {
    const available = [3, 1, 2];
    selectVersions({ all: {} }, available);
    assert.deepEqual(available, [3, 1, 2]);
  });
});

// ---------------------------------------------------------------------------
// resolveSignature
// ---------------------------------------------------------------------------

describe('resolveSignature', () => {
  const spec = (name: string, datatype: TensorSpec['datatype'], shape: number[]): TensorSpec => ({ name, datatype, shape });
  const batchable = { inputs: [spec('x', 'FP32', [-1, 4])], outputs: [spec('y', 'FP32', [-1, 3])] };

  test('variable first dims everywhere and no max_batch_size: batches up to the default', () => {
    const signature = resolveSignature(batchable, config({}), 8);
    assert.deepEqual(signature, { maxBatchSize: 8, inputs: batchable.inputs, outputs: batchable.outputs });
  });

  test('a fixed first dim anywhere: no batching', () => {
    const declared = { inputs: [spec('x', 'FP32', [-1, 4])], outputs: [spec('y', 'FP32', [1, 3])] };
    assert.equal(resolveSignature(declared, config({}), 8).maxBatchSize, 0);
    const scalar = { inputs: [spec('x', 'FP32', [])], outputs: [spec('y', 'FP32', [])] };
    assert.equal(resolveSignature(scalar, config({}), 8).maxBatchSize, 0);
  });

  test('max_batch_size from the config wins, including 0 (full shapes)', () => {
    assert.equal(resolveSignature(batchable, config({ max_batch_size: 32 }), 8).maxBatchSize, 32);
    const unbatched = resolveSignature(batchable, config({ max_batch_size: 0 }), 8);
    assert.equal(unbatched.maxBatchSize, 0);
    assert.deepEqual(unbatched.inputs, batchable.inputs);
  });

  test('max_batch_size > 0 on a model with a fixed first dim is refused, naming the tensor', () => {
    const declared = { inputs: [spec('image', 'FP32', [1, 3, 224, 224])], outputs: [spec('logits', 'FP32', [1, 1000])] };
    throwsTessera(
      () => resolveSignature(declared, config({ max_batch_size: 4 }), 8),
      'INVALID_MODEL_CONFIG',
      /max_batch_size is 4 but 'image' has shape \[1,3,224,224\]: every input and output needs a variable first dimension/,
    );
  });

  test('config dims (without the batch dim) pin variable dims', () => {
    const declared = { inputs: [spec('x', 'FP32', [-1, -1, 3])], outputs: [spec('y', 'FP32', [-1, -1])] };
    const signature = resolveSignature(
      declared,
      config({ max_batch_size: 2, input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [16, 3] }], output: [{ name: 'y', dims: [7] }] }),
      8,
    );
    assert.deepEqual(signature.inputs, [spec('x', 'FP32', [-1, 16, 3])]);
    assert.deepEqual(signature.outputs, [spec('y', 'FP32', [-1, 7])]);
    const unbatched = resolveSignature(declared, config({ max_batch_size: 0, input: [{ name: 'x', dims: [1, 16, 3] }] }), 8);
    assert.deepEqual(unbatched.inputs, [spec('x', 'FP32', [1, 16, 3])], 'without batching, dims are the full shape');
  });

  test('config entries that contradict the model are refused with the reason', () => {
    throwsTessera(
      () => resolveSignature(batchable, config({ input: [{ name: 'x', dims: [5] }] }), 8),
      'INVALID_MODEL_CONFIG',
      /config input 'x': dims \[5\] do not fit the model's shape \[-1,4\] \(dims exclude the batch dimension\)/,
    );
    throwsTessera(
      () => resolveSignature(batchable, config({ input: [{ name: 'x', dims: [1, 4] }] }), 8),
      'INVALID_MODEL_CONFIG',
      /config input 'x': dims \[1,4\] do not fit/,
    );
    throwsTessera(
      () => resolveSignature(batchable, config({ input: [{ name: 'x', data_type: 'TYPE_INT32' }] }), 8),
      'INVALID_MODEL_CONFIG',
      /config input 'x': data_type INT32 differs from the model's FP32/,
    );
    throwsTessera(
      () => resolveSignature(batchable, config({ output: [{ name: 'probs' }] }), 8),
      'INVALID_MODEL_CONFIG',
      /config output 'probs' is not in the model; its outputs are: y/,
    );
  });
});

// ---------------------------------------------------------------------------
// validateRequest
// ---------------------------------------------------------------------------

describe('validateRequest', () => {
  const LABEL = "model 'm' version 1";
  const batching: ModelSignature = {
    maxBatchSize: 4,
    inputs: [
      { name: 'a', datatype: 'FP32', shape: [-1, 2] },
      { name: 'b', datatype: 'INT64', shape: [-1, -1] },
    ],
    outputs: [
      { name: 'p', datatype: 'FP32', shape: [-1, 2] },
      { name: 'q', datatype: 'FP32', shape: [-1] },
    ],
  };
  const fixed: ModelSignature = {
    maxBatchSize: 0,
    inputs: [{ name: 's', datatype: 'BYTES', shape: [2, -1] }],
    outputs: [{ name: 't', datatype: 'BYTES', shape: [2, -1] }],
  };
  const a = (rows: number, cols = 2): Tensor => ({ name: 'a', datatype: 'FP32', shape: [rows, cols], data: new Float32Array(rows * cols) });
  const b = (rows: number, cols = 3): Tensor => ({ name: 'b', datatype: 'INT64', shape: [rows, cols], data: new BigInt64Array(rows * cols) });
  const request = (inputs: Tensor[], extra: Partial<InferenceRequest> = {}): InferenceRequest => ({ model: 'm', inputs, ...extra });

  test('a good request: inputs in model order, batch size, shape key, all outputs', () => {
    const given = [b(3), a(3)];
    const validated = validateRequest(request(given), batching, LABEL);
    assert.deepEqual(validated.inputs.map((t) => t.name), ['a', 'b']);
    assert.equal(validated.inputs[0], given[1], 'tensors are passed on, not copied');
    assert.equal(validated.batchSize, 3);
    assert.equal(validated.shapeKey, '2|3');
    assert.deepEqual(validated.outputNames, ['p', 'q']);
    assert.notEqual(validateRequest(request([a(1), b(1, 5)]), batching, LABEL).shapeKey, validated.shapeKey, 'different non-batch dims, different keys');
  });

  test('requested outputs: a subset, in the order asked, without repeats', () => {
    const validated = validateRequest(request([a(1), b(1)], { outputs: [{ name: 'q' }, { name: 'p' }, { name: 'q' }] }), batching, LABEL);
    assert.deepEqual(validated.outputNames, ['q', 'p']);
    assert.deepEqual(validateRequest(request([a(1), b(1)], { outputs: [] }), batching, LABEL).outputNames, ['p', 'q']);
  });

  test('a model without batching: batch size 1, no shape key, full shapes', () => {
    const s: Tensor = { name: 's', datatype: 'BYTES', shape: [2, 1], data: [Buffer.from('x'), Buffer.from('y')] };
    const validated = validateRequest(request([s]), fixed, LABEL);
    assert.equal(validated.batchSize, 1);
    assert.equal(validated.shapeKey, '');
    const three: Tensor = { name: 's', datatype: 'BYTES', shape: [3, 1], data: [Buffer.from('x'), Buffer.from('y'), Buffer.from('z')] };
    throwsTessera(() => validateRequest(request([three]), fixed, LABEL), 'INVALID_INPUT_SHAPE', /input 's': expected shape \[2,-1\], got \[3,1\]/);
  });

  test('each mistake has its code and a message naming the input, expected and got', () => {
    throwsTessera(() => validateRequest(request([a(1), a(1), b(1)]), batching, LABEL), 'DUPLICATE_INPUT', /input 'a' is given more than once/);
    throwsTessera(
      () => validateRequest(request([a(1), b(1), { name: 'c', datatype: 'FP32', shape: [1], data: new Float32Array(1) }]), batching, LABEL),
      'UNKNOWN_INPUT',
      /model 'm' version 1 has no input 'c'; its inputs are: a, b/,
    );
    throwsTessera(() => validateRequest(request([a(1)]), batching, LABEL), 'MISSING_INPUT', /model 'm' version 1 needs input 'b', which the request lacks/);
    throwsTessera(
      () => validateRequest(request([{ name: 'x', datatype: 'FP32', shape: [1], data: new Float32Array(1) }]), { ...batching, inputs: [...batching.inputs, { name: 'x', datatype: 'FP32', shape: [-1] }] }, LABEL),
      'MISSING_INPUT',
      /needs inputs 'a', 'b', which the request lacks/,
    );
    throwsTessera(
      () => validateRequest(request([{ name: 'a', datatype: 'FP64', shape: [1, 2], data: new Float64Array(2) }, b(1)]), batching, LABEL),
      'INVALID_DATATYPE',
      /input 'a': expected datatype FP32, got FP64/,
    );
    throwsTessera(
      () => validateRequest(request([{ name: 'a', datatype: 'FP32', shape: [1, 2], data: new Float32Array(3) }, b(1)]), batching, LABEL),
      'INVALID_INPUT_DATA',
      /input 'a': shape \[1,2\] needs 2 elements, but the data has 3/,
    );
    throwsTessera(() => validateRequest(request([a(1, 3), b(1)]), batching, LABEL), 'INVALID_INPUT_SHAPE', /input 'a': expected shape \[-1,2\], got \[1,3\]$/);
    throwsTessera(
      () => validateRequest(request([{ name: 'a', datatype: 'FP32', shape: [2], data: new Float32Array(2) }, b(1)]), batching, LABEL),
      'INVALID_INPUT_SHAPE',
      /input 'a': expected shape \[-1,2\], got \[2\] \(rank 2 expected, got 1\)/,
    );
    throwsTessera(
      () => validateRequest(request([{ name: 'a', datatype: 'FP32', shape: [2 ** 20, 2 ** 20, 2], data: new Float32Array(1) }, b(1)]), batching, LABEL),
      'INVALID_INPUT_SHAPE',
      /input 'a': shape \[1048576,1048576,2\] has more than \d+ elements/,
    );
    throwsTessera(
      () => validateRequest(request([{ name: 'a', datatype: 'FP32', shape: [-2, 2], data: new Float32Array(0) }, b(1)]), batching, LABEL),
      'INVALID_INPUT_SHAPE',
      /input 'a': dimension 0 is -2; dimensions must be non-negative integers/,
    );
    throwsTessera(() => validateRequest(request([a(5), b(5)]), batching, LABEL), 'BATCH_TOO_LARGE', /input 'a': batch size 5 exceeds the model's max_batch_size 4/);
    throwsTessera(() => validateRequest(request([a(0), b(0)]), batching, LABEL), 'INVALID_INPUT_SHAPE', /input 'a': the batch dimension is 0; send at least one row/);
    throwsTessera(() => validateRequest(request([a(2), b(3)]), batching, LABEL), 'INVALID_INPUT_SHAPE', /inputs disagree on the batch size: 'a' has 2 rows, 'b' has 3/);
    throwsTessera(
      () => validateRequest(request([a(1), b(1)], { outputs: [{ name: 'p' }, { name: 'r' }] }), batching, LABEL),
      'UNKNOWN_OUTPUT',
      /model 'm' version 1 has no output 'r'; its outputs are: p, q/,
    );
  });

  test('every refusal is a client error', () => {
    try {
      validateRequest(request([a(9), b(9)]), batching, LABEL);
      assert.fail('expected a refusal');
    } catch (error) {
      assert.ok(error instanceof TesseraError);
      assert.equal(error.category, 'invalid_argument');
    }
  });
});

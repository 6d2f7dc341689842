/**
 * The gRPC front door (KServe V2 / Open Inference Protocol + Triton extensions), tested over
 * real gRPC with a client generated from the project's own proto, against the same engine the
 * real HTTP server runs, so REST and gRPC answers can be compared directly.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MessageTypeDefinition } from '@grpc/proto-loader';

import { toHalfBits } from '../src/core/float16.js';
import { TesseraError, ERROR_CATALOG, type ErrorCategory } from '../src/core/errors.js';
import { decodeContents } from '../src/protocols/grpc/contents.js';
import { GRPC_STATUS, toServiceError } from '../src/protocols/grpc/errors.js';
import { decodeRaw, encodeRaw } from '../src/protocols/grpc/raw.js';
import { mapEntryName } from '../src/protocols/grpc/reflection.js';
import { startGrpcServer, type GrpcServerHandle } from '../src/protocols/grpc/server.js';
import type { TesseraServer } from '../src/server/server.js';
import { addModel, defaultMlpWeights, identityModel, makeTempRepository, mlpModel, mlpReference, writeModel } from './support/fixtures.js';
import {
  GrpcTestClient,
  deserializeBytes,
  rawOf,
  rawToFloat32,
  serializeBytes,
  type InferResponse,
  type StreamInferResponse,
  grpcError,
} from './support/grpc-client.js';
import { fakeModelJson, getJson, postJson, startTestServer, untilHeld } from './support/server.js';

const weights = defaultMlpWeights();
/** Two rows of MLP input. */
const MLP_INPUT = Float32Array.from([0.5, -1.2, 3.3, 0.1, -0.7, 2.2, 0.0, 1.5]);
/** Milliseconds one execution of the fake `slow` model takes. */
const SLOW_MS = 400;

/** The parts of descriptor.proto the reflection test reads (protobufjs's camelCase names). */
interface DescribedMessage {
  name?: string;
  field?: { name?: string; typeName?: string }[];
  nestedType?: DescribedMessage[];
  options?: { mapEntry?: boolean };
}
interface DescribedFile {
  messageType?: DescribedMessage[];
}

const silent = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };

/** Start a gRPC server on the test server's engine; `after` closes it. */
async function extraGrpcServer(engine: TesseraServer['engine'], options: { maxMessageBytes?: number } = {}): Promise<GrpcServerHandle> {
  return startGrpcServer({ engine, host: '127.0.0.1', port: 0, logger: silent, ...options });
}

function mlpRequest(id = '', input: Float32Array = MLP_INPUT): object {
  return {
    model_name: 'mlp',
    id,
    inputs: [{ name: 'x', datatype: 'FP32', shape: [input.length / 4, 4], contents: { fp32_contents: Array.from(input) } }],
  };
}

function assertMatchesReference(raw: Buffer | undefined, input: Float32Array): void {
  assert.ok(raw !== undefined, 'the response has raw_output_contents');
  const got = rawToFloat32(raw);
  const want = mlpReference(weights, input);
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5, `element ${i}: ${got[i]} vs ${want[i]}`);
}


function errorCode(error: ServiceError): string | undefined {
  const value = error.metadata.get('tessera-error-code')[0];
  return typeof value === 'string' ? value : undefined;
}

/** Collect every response of a stream until it ends; resolve with them and the final status. */
function collect(call: ReturnType<GrpcTestClient['stream']>): Promise<{ responses: StreamInferResponse[]; code: status }> {
  return new Promise((resolve, reject) => {
    const responses: StreamInferResponse[] = [];
    let ended = false;
    let code: status | undefined;
    const settle = (): void => {
      if (ended && code !== undefined) resolve({ responses, code });
    };
    call.on('data', (response: StreamInferResponse) => responses.push(response));
    call.on('end', () => {
      ended = true;
      settle();
    });
    call.on('status', (s: { code: status }) => {
      code = s.code;
      settle();
    });
    call.on('error', reject);
  });
}

describe('gRPC inference service', () => {
  let repo: string;
  let server: TesseraServer;
  let grpc: GrpcServerHandle;
  let client: GrpcTestClient;

  before(async () => {
    repo = await makeTempRepository('tessera-grpc-');
    await writeModel(repo, 'mlp', 1, mlpModel(weights));
    await writeModel(repo, 'add', 1, addModel());
    await writeModel(repo, 'identity_fp32', 1, identityModel('FP32', [-1, -1]));
    await writeModel(repo, 'identity_int64', 1, identityModel('INT64', [-1, 3]));
    await writeModel(repo, 'identity_bytes', 1, identityModel('BYTES', [-1]));
    await writeModel(repo, 'identity_bool', 1, identityModel('BOOL', [-1, 2]));
    await writeModel(repo, 'identity_fp16', 1, identityModel('FP16', [-1, 4]));
    // Not an ONNX file: loading fails and the model is UNAVAILABLE.
    await writeModel(repo, 'broken', 1, new Uint8Array([1, 2, 3]));
    // A fake model whose every execution takes SLOW_MS, one instance, no batching.
    await mkdir(path.join(repo, 'slow', '1'), { recursive: true });
    await writeFile(path.join(repo, 'slow', 'config.yaml'), 'backend: fake\ndynamic_batching: false\ninstance_group:\n  count: 1\nwarmup:\n  enabled: false\n');
    await writeFile(
      path.join(repo, 'slow', '1', 'model.json'),
      fakeModelJson({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }],
        delay_ms: SLOW_MS,
      }),
    );
    // Not strict: the broken model must not make the whole server unready.
    server = await startTestServer(undefined, repo, { strictReadiness: false });
    grpc = await startGrpcServer({ engine: server.engine, host: '127.0.0.1', port: 0, logger: silent });
    client = new GrpcTestClient(grpc.port);
  });

  after(async () => {
    client.close();
    await grpc.close();
    await server.close();
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  describe('health and metadata rpcs', () => {
    test('ServerLive and ServerReady', async () => {
      assert.deepEqual(await client.call('ServerLive'), { live: true });
      assert.deepEqual(await client.call('ServerReady'), { ready: true });
    });

    test('ServerMetadata reports the REST name and version, and the extensions gRPC implements', async () => {
      const metadata = await client.call<{ name: string; version: string; extensions: string[] }>('ServerMetadata');
      const rest = (await getJson(`${server.httpUrl}/v2`)).body as { name: string; version: string; extensions: string[] };
      assert.deepEqual([metadata.name, metadata.version], [rest.name, rest.version]);
      assert.ok(metadata.extensions.includes('classification') && metadata.extensions.includes('model_configuration'));
      assert.ok(!metadata.extensions.includes('binary_tensor_data'), 'an HTTP-only extension');
      for (const extension of metadata.extensions) assert.ok(rest.extensions.includes(extension), `${extension} is a server extension REST reports too`);
    });

    test('ModelReady: ready, unavailable, unknown and a given version', async () => {
      assert.deepEqual(await client.call('ModelReady', { name: 'mlp' }), { ready: true });
      assert.deepEqual(await client.call('ModelReady', { name: 'mlp', version: '1' }), { ready: true });
      assert.deepEqual(await client.call('ModelReady', { name: 'broken' }), { ready: false });
      const unknown = await grpcError(client.call('ModelReady', { name: 'nope' }));
      assert.equal(unknown.code, status.NOT_FOUND);
      const noVersion = await grpcError(client.call('ModelReady', { name: 'mlp', version: '7' }));
      assert.equal(noVersion.code, status.NOT_FOUND);
    });

    test('ModelMetadata equals the REST metadata', async () => {
      const metadata = await client.call<{ name: string; versions: string[]; platform: string; inputs: { name: string; datatype: string; shape: string[] }[]; outputs: { name: string; datatype: string; shape: string[] }[] }>(
        'ModelMetadata',
        { name: 'mlp' },
      );
      const rest = (await getJson(`${server.httpUrl}/v2/models/mlp`)).body;
      const numeric = (t: { name: string; datatype: string; shape: string[] }): object => ({ ...t, shape: t.shape.map(Number) });
      assert.deepEqual(
        { name: metadata.name, versions: metadata.versions, platform: metadata.platform, inputs: metadata.inputs.map(numeric), outputs: metadata.outputs.map(numeric) },
        rest,
      );
      assert.deepEqual(metadata.inputs, [{ name: 'x', datatype: 'FP32', shape: ['-1', '4'] }]);
    });

    test('ModelConfig holds a Triton ModelConfig matching the REST config', async () => {
      const { config } = await client.call<{ config: Record<string, unknown> & { input: { name: string; data_type: string; dims: string[] }[] } }>('ModelConfig', { name: 'mlp' });
      const rest = (await getJson(`${server.httpUrl}/v2/models/mlp/config`)).body as Record<string, unknown>;
      for (const key of ['name', 'platform', 'backend', 'max_batch_size', 'default_model_filename', 'instance_group', 'parameters']) {
        assert.deepEqual(config[key], rest[key], key);
      }
      assert.deepEqual(config.input, [{ name: 'x', data_type: 'TYPE_FP32', dims: ['4'] }]);
      assert.deepEqual(config['output'], [{ name: 'probs', data_type: 'TYPE_FP32', dims: ['3'] }]);
      assert.deepEqual(config['version_policy'], { latest: { num_versions: 1 }, policy_choice: 'latest' });
      const batching = config['dynamic_batching'] as Record<string, unknown>;
      assert.equal(batching['max_queue_delay_microseconds'], '0');
      assert.equal(config['scheduling_choice'], 'dynamic_batching');
    });

    test('ModelConfig of a model without dynamic batching leaves it unset', async () => {
      const { config } = await client.call<{ config: Record<string, unknown> }>('ModelConfig', { name: 'slow' });
      assert.equal(config['dynamic_batching'], undefined);
      assert.equal(config['scheduling_choice'], undefined);
      assert.equal(config['backend'], 'fake');
    });

    test('RepositoryIndex lists every model version; ready: true filters', async () => {
      const all = await client.call<{ models: { name: string; version: string; state: string; reason: string }[] }>('RepositoryIndex', {});
      const rest = (await postJson(`${server.httpUrl}/v2/repository/index`, {})).body as { name: string; version?: string; state: string; reason: string }[];
      assert.deepEqual(
        all.models,
        rest.map((entry) => ({ ...entry, version: entry.version ?? '' })),
      );
      const broken = all.models.find((m) => m.name === 'broken');
      assert.equal(broken?.state, 'UNAVAILABLE');
      assert.notEqual(broken?.reason, '');
      const ready = await client.call<{ models: { name: string; state: string }[] }>('RepositoryIndex', { ready: true });
      assert.ok(ready.models.every((m) => m.state === 'READY'));
      assert.ok(!ready.models.some((m) => m.name === 'broken'));
      assert.ok(ready.models.some((m) => m.name === 'mlp'));
    });

    test('RepositoryModelUnload and RepositoryModelLoad unload and reload a model', async () => {
      await client.call('RepositoryModelUnload', { model_name: 'add' });
      const unloaded = await client.call<{ models: { name: string; state: string; reason: string }[] }>('RepositoryIndex', {});
      assert.deepEqual(unloaded.models.find((m) => m.name === 'add'), { name: 'add', version: '', state: 'UNAVAILABLE', reason: 'unloaded' });
      const notReady = await client.call<{ ready: boolean }>('ModelReady', { name: 'add', version: '' });
      assert.equal(notReady.ready, false);
      // a config override travels as a JSON string parameter
      await client.call('RepositoryModelLoad', {
        model_name: 'add',
        parameters: { config: { string_param: JSON.stringify({ max_batch_size: 2 }) } },
      });
      const config = await client.call<{ config: { max_batch_size: number } }>('ModelConfig', { name: 'add', version: '' });
      assert.equal(config.config.max_batch_size, 2);
      const bad = await grpcError(client.call('RepositoryModelLoad', { model_name: 'add', parameters: { config: { string_param: '{not json' } } }));
      assert.equal(bad.code, status.INVALID_ARGUMENT);
      assert.match(bad.details, /parameter 'config' is not valid JSON/);
      const missing = await grpcError(client.call('RepositoryModelUnload', { model_name: 'nope' }));
      assert.equal(missing.code, status.NOT_FOUND);
    });

    test('grpc.health.v1.Health follows the engine, per server and per model', async () => {
      assert.deepEqual(await client.healthCheck(''), { status: 'SERVING' });
      assert.deepEqual(await client.healthCheck('inference.GRPCInferenceService'), { status: 'SERVING' });
      assert.deepEqual(await client.healthCheck('mlp'), { status: 'SERVING' });
      assert.deepEqual(await client.healthCheck('broken'), { status: 'NOT_SERVING' });
      const unknown = await grpcError(client.healthCheck('nope'));
      assert.equal(unknown.code, status.NOT_FOUND);
    });

    test('server reflection lists the inference and health services', async () => {
      const services = await client.listServices();
      assert.ok(services.includes('inference.GRPCInferenceService'), services.join(', '));
      assert.ok(services.includes('grpc.health.v1.Health'), services.join(', '));
    });

    test('reflection serves map fields with spec-named entry messages (grpcurl refuses others)', async () => {
      const codec = loadSync('google/protobuf/descriptor.proto', { defaults: false })['google.protobuf.FileDescriptorProto'] as MessageTypeDefinition<object, DescribedFile>;
      const files = (await client.fileContainingSymbol('inference.GRPCInferenceService')).map((encoded) => codec.deserialize(encoded));
      const mapFields: string[] = [];
      const visit = (message: DescribedMessage, path: string): void => {
        for (const field of message.field ?? []) {
          const entry = message.nestedType?.find((nested) => nested.options?.mapEntry === true && nested.name === field.typeName);
          if (field.typeName !== undefined && entry !== undefined) mapFields.push(`${path}.${field.name}:${field.typeName}`);
        }
        const entries = (message.nestedType ?? []).filter((nested) => nested.options?.mapEntry === true);
        for (const entry of entries) assert.ok(entry.name?.endsWith('Entry'), `${path}.${entry.name} is a map entry without the Entry suffix`);
        for (const nested of message.nestedType ?? []) visit(nested, `${path}.${nested.name}`);
      };
      for (const file of files) for (const message of file.messageType ?? []) visit(message, message.name ?? '');
      assert.ok(mapFields.includes('ModelInferRequest.parameters:ParametersEntry'), mapFields.join(', '));
      assert.ok(mapFields.includes('ModelInferRequest.InferInputTensor.parameters:ParametersEntry'), mapFields.join(', '));
      assert.ok(mapFields.includes('ModelConfig.parameters:ParametersEntry'), mapFields.join(', '));
      assert.equal(mapEntryName('priority_queue_policy'), 'PriorityQueuePolicyEntry');
    });
  });

  describe('ModelInfer', () => {
    test('typed contents in, raw_output_contents out, matching the MLP reference', async () => {
      const response = await client.call<InferResponse>('ModelInfer', mlpRequest('typed-1'));
      assert.equal(response.id, 'typed-1');
      assert.equal(response.model_name, 'mlp');
      assert.equal(response.model_version, '1');
      assert.deepEqual(response.outputs.map((o) => ({ name: o.name, datatype: o.datatype, shape: o.shape })), [{ name: 'probs', datatype: 'FP32', shape: ['2', '3'] }]);
      assert.equal(response.raw_output_contents.length, 1);
      assertMatchesReference(response.raw_output_contents[0], MLP_INPUT);
    });

    test('raw_input_contents in, matching the MLP reference', async () => {
      const response = await client.call<InferResponse>('ModelInfer', {
        model_name: 'mlp',
        model_version: '1',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4] }],
        raw_input_contents: [rawOf(MLP_INPUT)],
      });
      assert.equal(response.id, '');
      assertMatchesReference(response.raw_output_contents[0], MLP_INPUT);
    });

    test('the same input over REST and gRPC gives identical outputs', async () => {
      const rest = await postJson(`${server.httpUrl}/v2/models/mlp/infer`, {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: Array.from(MLP_INPUT) }],
      });
      assert.equal(rest.status, 200);
      const restOutput = (rest.body as { outputs: { name: string; datatype: string; shape: number[]; data: number[] }[] }).outputs[0]!;
      const response = await client.call<InferResponse>('ModelInfer', mlpRequest());
      const output = response.outputs[0]!;
      assert.deepEqual({ name: output.name, datatype: output.datatype, shape: output.shape.map(Number) }, { name: restOutput.name, datatype: restOutput.datatype, shape: restOutput.shape });
      assert.deepEqual(Array.from(rawToFloat32(response.raw_output_contents[0]!)), restOutput.data);
    });

    test('requested outputs select and order the outputs', async () => {
      const a = Float32Array.from([1, 2, 3, 4]);
      const b = Float32Array.from([0.5, 0.5, 0.5, 0.5]);
      const response = await client.call<InferResponse>('ModelInfer', {
        model_name: 'add',
        inputs: [
          { name: 'a', datatype: 'FP32', shape: [1, 4] },
          { name: 'b', datatype: 'FP32', shape: [1, 4] },
        ],
        outputs: [{ name: 'diff' }],
        raw_input_contents: [rawOf(a), rawOf(b)],
      });
      assert.deepEqual(response.outputs.map((o) => o.name), ['diff']);
      assert.deepEqual(Array.from(rawToFloat32(response.raw_output_contents[0]!)), [0.5, 1.5, 2.5, 3.5]);
    });

    test('classification (Triton extension) answers top-k classes, as REST does', async () => {
      const outputs = [{ name: 'probs', parameters: { classification: { int64_param: 2 } } }];
      const response = await client.call<InferResponse>('ModelInfer', { ...mlpRequest('cls'), outputs });
      assert.deepEqual(response.outputs.map((o) => [o.name, o.datatype, o.shape]), [['probs', 'BYTES', ['2', '2']]]);
      const rest = await postJson(`${server.httpUrl}/v2/models/mlp/infer`, {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: Array.from(MLP_INPUT) }],
        outputs: [{ name: 'probs', parameters: { classification: 2 } }],
      });
      const restOutput = (rest.body as { outputs: { data: string[] }[] }).outputs[0]!;
      assert.deepEqual(deserializeBytes(response.raw_output_contents[0]!).map(String), restOutput.data);
      const bad = await grpcError(client.call('ModelInfer', { ...mlpRequest(), outputs: [{ name: 'probs', parameters: { classification: { string_param: 'two' } } }] }));
      assert.equal(bad.code, status.INVALID_ARGUMENT);
    });

    test('INT64 round-trips exactly, typed and raw', async () => {
      const values = ['-9223372036854775808', '9007199254740993', '42', '9223372036854775807', '-1', '0'];
      const typed = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_int64',
        inputs: [{ name: 'x', datatype: 'INT64', shape: [2, 3], contents: { int64_contents: values } }],
      });
      const decode = (raw: Buffer): string[] => Array.from(new BigInt64Array(Uint8Array.from(raw).buffer), String);
      assert.deepEqual(decode(typed.raw_output_contents[0]!), values);
      const raw = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_int64',
        inputs: [{ name: 'x', datatype: 'INT64', shape: [2, 3] }],
        raw_input_contents: [rawOf(BigInt64Array.from(values, BigInt))],
      });
      assert.deepEqual(decode(raw.raw_output_contents[0]!), values);
      assert.equal(raw.outputs[0]!.datatype, 'INT64');
    });

    test('BYTES round-trips with 4-byte length prefixes, typed and raw', async () => {
      const elements = ['hello', '', 'wörld', 'bin\u00ff\u{1F600}'];
      const typed = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_bytes',
        inputs: [{ name: 'x', datatype: 'BYTES', shape: [4], contents: { bytes_contents: elements.map((e) => Buffer.from(e, 'utf8')) } }],
      });
      assert.deepEqual(typed.raw_output_contents[0], serializeBytes(elements));
      assert.deepEqual(deserializeBytes(typed.raw_output_contents[0]!).map((b) => b.toString('utf8')), elements);
      const raw = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_bytes',
        inputs: [{ name: 'x', datatype: 'BYTES', shape: [4] }],
        raw_input_contents: [serializeBytes(elements)],
      });
      assert.deepEqual(raw.raw_output_contents[0], serializeBytes(elements));
    });

    test('BOOL is one byte per element, typed and raw', async () => {
      const typed = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_bool',
        inputs: [{ name: 'x', datatype: 'BOOL', shape: [2, 2], contents: { bool_contents: [true, false, false, true] } }],
      });
      assert.deepEqual([...typed.raw_output_contents[0]!], [1, 0, 0, 1]);
      const raw = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_bool',
        inputs: [{ name: 'x', datatype: 'BOOL', shape: [2, 2] }],
        raw_input_contents: [Buffer.from([0, 1, 1, 0])],
      });
      assert.deepEqual([...raw.raw_output_contents[0]!], [0, 1, 1, 0]);
    });

    test('FP16 travels as raw half bits; typed contents are refused', async () => {
      const half = Uint16Array.from([1.5, -2, 0.25, 65504], toHalfBits);
      const response = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_fp16',
        inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4] }],
        raw_input_contents: [rawOf(half)],
      });
      assert.equal(response.outputs[0]!.datatype, 'FP16');
      assert.deepEqual(response.raw_output_contents[0], rawOf(half));
      const typed = await grpcError(
        client.call('ModelInfer', {
          model_name: 'identity_fp16',
          inputs: [{ name: 'x', datatype: 'FP16', shape: [1, 4], contents: { fp32_contents: [1.5, -2, 0.25, 65504] } }],
        }),
      );
      assert.equal(typed.code, status.INVALID_ARGUMENT);
      assert.match(typed.details, /FP16 data must be sent in raw_input_contents/);
    });

    test('a 20 MB tensor round-trips (above the 4 MiB gRPC default)', async () => {
      const elements = 5 * 1024 * 1024; // 20 MiB of FP32
      const input = new Float32Array(elements);
      for (let i = 0; i < elements; i++) input[i] = (i % 1000) * 0.5 - 7;
      const response = await client.call<InferResponse>('ModelInfer', {
        model_name: 'identity_fp32',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, elements] }],
        raw_input_contents: [rawOf(input)],
      });
      assert.deepEqual(response.outputs[0]!.shape, ['1', String(elements)]);
      assert.ok(response.raw_output_contents[0]!.equals(rawOf(input)), 'the output bytes equal the input bytes');
    });
  });

  describe('errors', () => {
    test('a bad shape is INVALID_ARGUMENT with the same message as REST', async () => {
      const data = [1, 2, 3, 4, 5];
      const rest = await postJson(`${server.httpUrl}/v2/models/mlp/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], data }] });
      assert.equal(rest.status, 400);
      const error = await grpcError(
        client.call('ModelInfer', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], contents: { fp32_contents: data } }] }),
      );
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.details, (rest.body as { error: string }).error);
      assert.equal(errorCode(error), 'INVALID_INPUT_SHAPE');
    });

    test('an unknown model is NOT_FOUND, an unknown version too', async () => {
      const model = await grpcError(client.call('ModelInfer', { ...mlpRequest(), model_name: 'nope' }));
      assert.equal(model.code, status.NOT_FOUND);
      assert.equal(model.details, "model 'nope' is not in the repository");
      const version = await grpcError(client.call('ModelInfer', { ...mlpRequest(), model_version: '9' }));
      assert.equal(version.code, status.NOT_FOUND);
      assert.equal(errorCode(version), 'MODEL_VERSION_NOT_FOUND');
      const metadata = await grpcError(client.call('ModelMetadata', { name: 'nope' }));
      assert.equal(metadata.code, status.NOT_FOUND);
    });

    test('an unavailable model is UNAVAILABLE', async () => {
      const error = await grpcError(client.call('ModelInfer', { ...mlpRequest(), model_name: 'broken' }));
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(errorCode(error), 'MODEL_UNAVAILABLE');
      const rest = await postJson(`${server.httpUrl}/v2/models/broken/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: Array.from(MLP_INPUT) }] });
      assert.equal(rest.status, 503);
      assert.equal(error.details, (rest.body as { error: string }).error);
      assert.match(error.details, /model 'broken' has no ready version/);
    });

    test('malformed requests are INVALID_ARGUMENT with a reason', async () => {
      const cases: [string, object, RegExp][] = [
        ['no model name', { ...mlpRequest(), model_name: '' }, /'model_name' is empty/],
        ['no inputs', { model_name: 'mlp', inputs: [] }, /'inputs' is empty/],
        ['unknown datatype', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP8', shape: [1, 4] }] }, /datatype "FP8" is not a V2 datatype/],
        [
          'raw count differs from inputs',
          { model_name: 'add', inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4] }, { name: 'b', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.alloc(16)] },
          /raw_input_contents has 1 entries but the request has 2 inputs/,
        ],
        [
          'raw and typed contents mixed',
          { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }], raw_input_contents: [Buffer.alloc(16)] },
          /although the request uses raw_input_contents/,
        ],
        [
          'raw size not a whole number of elements',
          { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.alloc(15)] },
          /15 bytes, not a whole number of FP32 elements/,
        ],
        [
          'raw size does not fit the shape',
          { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.alloc(12)] },
          /shape \[1,4\] needs 4 elements, but the data has 3/,
        ],
        [
          'typed contents in the wrong field',
          { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { int_contents: [1, 2, 3, 4] } }] },
          /FP32 data goes in contents.fp32_contents, but the request set contents.int_contents/,
        ],
        ['datatype differs from the model', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP64', shape: [1, 4], contents: { fp64_contents: [1, 2, 3, 4] } }] }, /expected datatype FP32, got FP64/],
        ['invalid priority', { ...mlpRequest(), parameters: { priority: { string_param: 'high' } } }, /request parameter 'priority' must be a non-negative integer, got "high"/],
      ];
      for (const [name, request, message] of cases) {
        const error = await grpcError(client.call('ModelInfer', request));
        assert.equal(error.code, status.INVALID_ARGUMENT, name);
        assert.match(error.details, message, name);
      }
    });

    test('every error category maps to a gRPC status; every catalog code answers through it', () => {
      const categories = new Set(Object.values(ERROR_CATALOG).map((entry) => entry.category as ErrorCategory));
      for (const category of categories) assert.ok(GRPC_STATUS[category] !== undefined, category);
      assert.equal(GRPC_STATUS.unsupported, status.INVALID_ARGUMENT);
      assert.equal(GRPC_STATUS.too_large, status.RESOURCE_EXHAUSTED);
      const queueFull = toServiceError(new TesseraError('QUEUE_FULL', 'full', { retryAfterSeconds: 2 }));
      assert.equal(queueFull.code, status.UNAVAILABLE);
      assert.deepEqual((queueFull.metadata as Metadata).get('retry-after'), ['2']);
      assert.equal(toServiceError(new Error('boom')).code, status.INTERNAL);
    });
  });

  describe('ModelStreamInfer', () => {
    test('several requests on one stream: matched by id, an error does not end the stream', async () => {
      const call = client.stream();
      const result = collect(call);
      const second = Float32Array.from([1, 1, 1, 1]);
      call.write(mlpRequest('a'));
      call.write({ model_name: 'mlp', id: 'bad', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 5], contents: { fp32_contents: [1, 2, 3, 4, 5] } }] });
      call.write({ ...mlpRequest('missing'), model_name: 'nope' });
      call.write({ model_name: 'mlp', id: 'b', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [rawOf(second)] });
      call.write(mlpRequest('c'));
      call.end();
      const { responses, code } = await result;
      assert.equal(code, status.OK);
      assert.equal(responses.length, 5);
      const byId = new Map(responses.map((r) => [r.infer_response?.id, r]));
      assert.deepEqual([...byId.keys()].sort(), ['a', 'b', 'bad', 'c', 'missing']);
      for (const [id, input] of [['a', MLP_INPUT], ['b', second], ['c', MLP_INPUT]] as const) {
        const response = byId.get(id)!;
        assert.equal(response.error_message, '', id);
        assert.equal(response.infer_response?.model_version, '1');
        assertMatchesReference(response.infer_response?.raw_output_contents[0], input);
      }
      assert.equal(byId.get('bad')!.error_message, "input 'x': expected shape [-1,4], got [1,5]");
      assert.equal(byId.get('bad')!.infer_response?.model_name, 'mlp');
      assert.equal(byId.get('missing')!.error_message, "model 'nope' is not in the repository");
    });

    test('a stream the client closes at once ends with OK and no responses', async () => {
      const call = client.stream();
      const result = collect(call);
      call.end();
      assert.deepEqual(await result, { responses: [], code: status.OK });
    });
  });

  describe('scheduling, deadlines and cancellation', () => {
    const slowRequest = (id: string, extra: object = {}): object => ({
      model_name: 'slow',
      id,
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
      ...extra,
    });
    const executions = async (): Promise<number> => {
      const stats = await client.call<{ model_stats: { execution_count: string }[] }>('ModelStatistics', { name: 'slow', version: '1' });
      return Number(stats.model_stats[0]!.execution_count);
    };

    test('the timeout parameter (µs), the gRPC deadline and client cancellation each drop a queued request', async () => {
      const before = await executions();
      // Occupies the one instance for SLOW_MS; everything sent meanwhile queues.
      const running = client.call<InferResponse>('ModelInfer', slowRequest('running'));
      await untilHeld(server, 'slow', 1);

      const timedOut = grpcError(client.call('ModelInfer', slowRequest('timeout', { parameters: { timeout: { int64_param: 50_000 } } })));
      const deadline = grpcError(client.call('ModelInfer', slowRequest('deadline'), { deadline: Date.now() + 80 }));
      const cancelled = client.start('ModelInfer', slowRequest('cancelled'));
      setTimeout(() => cancelled.cancel(), 80);

      const timeoutError = await timedOut;
      assert.equal(timeoutError.code, status.DEADLINE_EXCEEDED);
      assert.equal(errorCode(timeoutError), 'DEADLINE_EXCEEDED');
      assert.match(timeoutError.details, /timed out after 50 ms/);
      assert.equal((await deadline).code, status.DEADLINE_EXCEEDED);
      assert.equal((await grpcError(cancelled.response)).code, status.CANCELLED);

      assert.equal((await running).id, 'running');
      // Give a wrongly kept request the time to run, then check that only one did.
      await new Promise((resolve) => setTimeout(resolve, SLOW_MS + 100));
      assert.equal((await executions()) - before, 1);
    });

    test('ModelStatistics: one model version, or every model', async () => {
      await client.call('ModelInfer', mlpRequest());
      const one = await client.call<{ model_stats: { name: string; version: string; inference_count: string; execution_count: string; inference_stats: { success: { count: string; ns: string } } }[] }>(
        'ModelStatistics',
        { name: 'mlp' },
      );
      assert.equal(one.model_stats.length, 1);
      const stats = one.model_stats[0]!;
      assert.deepEqual([stats.name, stats.version], ['mlp', '1']);
      assert.ok(Number(stats.inference_count) >= 2);
      assert.ok(Number(stats.inference_stats.success.count) >= 1);
      assert.ok(Number(stats.inference_stats.success.ns) > 0);
      const rest = (await getJson(`${server.httpUrl}/v2/models/mlp/stats`)).body as { model_stats: { inference_count: number }[] };
      assert.equal(Number(stats.inference_count), rest.model_stats[0]!.inference_count);
      const all = await client.call<{ model_stats: { name: string }[] }>('ModelStatistics', {});
      assert.ok(['mlp', 'add', 'slow'].every((name) => all.model_stats.some((s) => s.name === name)));
    });
  });

  describe('server lifecycle and limits', () => {
    test('maxMessageBytes bounds received messages (RESOURCE_EXHAUSTED beyond it)', async () => {
      const small = await extraGrpcServer(server.engine, { maxMessageBytes: 1024 * 1024 });
      const smallClient = new GrpcTestClient(small.port);
      try {
        const input = new Float32Array(512 * 1024); // 2 MiB
        const error = await grpcError(
          smallClient.call('ModelInfer', { model_name: 'identity_fp32', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, input.length] }], raw_input_contents: [rawOf(input)] }),
        );
        assert.equal(error.code, status.RESOURCE_EXHAUSTED);
        assert.deepEqual(await smallClient.call('ServerLive'), { live: true });
      } finally {
        smallClient.close();
        await small.close();
      }
    });

    test('close() is idempotent, ends Watch streams, lets an open stream finish its requests, then refuses calls', async () => {
      const extra = await extraGrpcServer(server.engine);
      const extraClient = new GrpcTestClient(extra.port);
      try {
        const watch = extraClient.healthWatch('');
        const statuses: string[] = [];
        let firstStatus: () => void = () => undefined;
        const watching = new Promise<void>((resolve) => (firstStatus = resolve));
        const watchEnded = new Promise<void>((resolve, reject) => {
          watch.on('data', (response: { status: string }) => {
            statuses.push(response.status);
            firstStatus();
          });
          watch.on('end', resolve);
          watch.on('error', reject);
        });
        const call = extraClient.stream();
        // The server ends the stream (the client never half-closes it): an error status, not OK.
        const result = new Promise<{ responses: StreamInferResponse[]; code: status }>((resolve) => {
          const responses: StreamInferResponse[] = [];
          call.on('data', (response: StreamInferResponse) => responses.push(response));
          call.on('status', (s: { code: status }) => resolve({ responses, code: s.code }));
          call.on('error', () => undefined);
        });
        // The slow model keeps the request running while close() starts; wait until it is.
        call.write({ model_name: 'slow', id: 'in-flight', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] });
        await watching;
        await untilHeld(server, 'slow', 1);
        assert.deepEqual(statuses, ['SERVING']);
        const closing = extra.close();
        assert.equal(extra.close(), closing);
        const { responses, code } = await result;
        await closing;
        await watchEnded;
        assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING'], 'Watch is told, then ended');
        assert.equal(code, status.UNAVAILABLE, 'a stream the server ended while the client could still send');
        assert.deepEqual(responses.map((r) => [r.infer_response?.id, r.error_message]), [['in-flight', '']], 'after answering its request');
        const refused = await grpcError(extraClient.call('ServerLive', {}, { deadline: Date.now() + 2000 }));
        assert.equal(refused.code, status.UNAVAILABLE);
        // The engine is untouched: the main server still serves.
        assert.deepEqual(await client.call('ServerReady'), { ready: true });
      } finally {
        extraClient.close();
        await extra.close();
      }
    });
  });
});

describe('gRPC tensor codecs', () => {
  test('raw numeric data is viewed when aligned, copied when not', () => {
    const backing = Buffer.alloc(24);
    new Float32Array(backing.buffer, backing.byteOffset, 6).set([1, 2, 3, 4, 5, 6]);
    const aligned = decodeRaw('FP32', backing.subarray(4, 20), "input 'x'") as Float32Array;
    assert.equal(aligned.buffer, backing.buffer, 'an aligned view shares the message buffer');
    assert.deepEqual(Array.from(aligned), [2, 3, 4, 5]);
    const shifted = Buffer.alloc(17);
    backing.copy(shifted, 1, 4, 20);
    const copied = decodeRaw('FP32', shifted.subarray(1), "input 'x'") as Float32Array;
    assert.notEqual(copied.buffer, shifted.buffer, 'a misaligned view is copied');
    assert.deepEqual(Array.from(copied), [2, 3, 4, 5]);
  });

  test('raw BYTES: elements view the buffer; truncated data is refused', () => {
    const raw = serializeBytes(['ab', '', 'cde']);
    const elements = decodeRaw('BYTES', raw, "input 'x'") as Buffer[];
    assert.deepEqual(elements.map(String), ['ab', '', 'cde']);
    assert.equal(elements[0]!.buffer, raw.buffer);
    assert.deepEqual(encodeRaw('BYTES', elements), raw);
    assert.throws(() => decodeRaw('BYTES', raw.subarray(0, raw.length - 1), "input 'x'"), /element 2 claims 3 bytes but only 2 remain/);
    assert.throws(() => decodeRaw('BYTES', Buffer.from([1, 0]), "input 'x'"), /end inside the 4-byte length of element 0/);
  });

  test('typed contents check the range of narrow integer types', () => {
    const empty = { bool_contents: [], int_contents: [], int64_contents: [], uint_contents: [], uint64_contents: [], fp32_contents: [], fp64_contents: [], bytes_contents: [] };
    assert.deepEqual(Array.from(decodeContents('INT8', { ...empty, int_contents: [-128, 127] }, "input 'x'") as Int8Array), [-128, 127]);
    assert.throws(() => decodeContents('INT8', { ...empty, int_contents: [128] }, "input 'x'"), /element 0 is 128; expected an integer from -128 to 127 for INT8/);
    assert.throws(() => decodeContents('UINT16', { ...empty, uint_contents: [70000] }, "input 'x'"), /for UINT16/);
    assert.deepEqual(Array.from(decodeContents('UINT64', { ...empty, uint64_contents: ['18446744073709551615'] }, "input 'x'") as BigUint64Array), [18446744073709551615n]);
    assert.deepEqual(decodeContents('FP32', null, "input 'x'"), new Float32Array(0));
  });
});

/**
 * What each endpoint needs, method by method: the rule of every inference.GRPCInferenceService
 * method (and of unknown services) as grpcMethodRule states it, those rules enforced over real
 * gRPC, and the HTTP routes of the cloud platforms (SageMaker, Vertex AI, Azure ML), TF
 * Serving's model reads and /metrics on the HTTP port enforced over real HTTP.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { status } from '@grpc/grpc-js';

import { grpcMethodRule } from '../src/security/grpc.js';
import type { TesseraServer } from '../src/server/server.js';
import { PROJECT_PROTO_DIR } from './support/grpc-client.js';
import { SecureGrpcClient, apiKey, bearer, grpcError, http, securityRepository } from './support/security.js';
import { startTestServer } from './support/server.js';

const KEYS = {
  read: 'perm-read-0123456789abcdef',
  readAlpha: 'perm-read-alpha-0123456789ab',
  inferReadAlpha: 'perm-infer-read-alpha-012345',
  infer: 'perm-infer-0123456789abcdef',
} as const;

const API_KEYS = [`${KEYS.read}:read`, `${KEYS.readAlpha}:read:alpha`, `${KEYS.inferReadAlpha}:infer+read:alpha`, `${KEYS.infer}:infer`];

/** What a rule's model function makes of a message naming alpha (in both fields) and of an empty one. */
function ruleOf(rpcPath: string): { access: string; named: unknown; unnamed: unknown; inference: boolean } {
  const rule = grpcMethodRule(rpcPath);
  return { access: rule.access, named: rule.models({ name: 'alpha', model_name: 'alpha' }), unnamed: rule.models({}), inference: rule.inference === true };
}

describe('gRPC method rules', () => {
  const EXPECTED: Record<string, ReturnType<typeof ruleOf>> = {
    ServerLive: { access: 'health', named: 'none', unnamed: 'none', inference: false },
    ServerReady: { access: 'health', named: 'none', unnamed: 'none', inference: false },
    ModelReady: { access: 'read', named: { model: 'alpha' }, unnamed: 'all', inference: false },
    ServerMetadata: { access: 'read', named: 'none', unnamed: 'none', inference: false },
    ModelMetadata: { access: 'read', named: { model: 'alpha' }, unnamed: 'all', inference: false },
    ModelInfer: { access: 'infer', named: { model: 'alpha' }, unnamed: 'all', inference: true },
    ModelStreamInfer: { access: 'infer', named: { model: 'alpha' }, unnamed: 'all', inference: true },
    ModelConfig: { access: 'read', named: { model: 'alpha' }, unnamed: 'all', inference: false },
    ModelStatistics: { access: 'read', named: { model: 'alpha' }, unnamed: 'all', inference: false },
    RepositoryIndex: { access: 'read', named: 'all', unnamed: 'all', inference: false },
    RepositoryModelLoad: { access: 'admin', named: { model: 'alpha' }, unnamed: 'all', inference: false },
    RepositoryModelUnload: { access: 'admin', named: { model: 'alpha' }, unnamed: 'all', inference: false },
  };

  test('the table covers every method of the service in proto/grpc_service.proto', () => {
    const proto = readFileSync(path.join(PROJECT_PROTO_DIR, 'grpc_service.proto'), 'utf8');
    const methods = [...proto.matchAll(/^\s*rpc\s+(\w+)\s*\(/gm)].map((match) => match[1]);
    assert.deepEqual([...methods].sort(), Object.keys(EXPECTED).sort());
  });

  test('each inference method: its scope and the models its messages address', () => {
    for (const [method, expected] of Object.entries(EXPECTED)) {
      assert.deepEqual(ruleOf(`/inference.GRPCInferenceService/${method}`), expected, method);
    }
  });

  test('health open, reflection read, unknown methods and services admin over every model', () => {
    assert.deepEqual(ruleOf('/grpc.health.v1.Health/Check'), { access: 'health', named: 'none', unnamed: 'none', inference: false });
    assert.deepEqual(ruleOf('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'), { access: 'read', named: 'none', unnamed: 'none', inference: false });
    for (const unknown of ['/inference.GRPCInferenceService/NoSuchMethod', '/other.Service/ModelInfer', '/inference.GRPCInferenceServiceX/ServerLive', '/']) {
      assert.deepEqual(ruleOf(unknown), { access: 'admin', named: 'all', unnamed: 'all', inference: false }, unknown);
    }
  });
});

describe('gRPC method rules over real gRPC', () => {
  let server: TesseraServer;
  let grpc: SecureGrpcClient;

  before(async () => {
    const repo = await securityRepository(undefined);
    server = await startTestServer(undefined, repo, { apiKeys: API_KEYS, modelControlMode: 'explicit', loadModel: ['*'], management: false });
    grpc = new SecureGrpcClient(server.grpcPort!);
  });
  after(async () => {
    grpc.close();
    await server.close();
  });

  test('RepositoryModelLoad needs admin: a read key is refused', async () => {
    const denied = await grpcError(grpc.call('RepositoryModelLoad', { model_name: 'beta' }, bearer(KEYS.read)));
    assert.equal(denied.code, status.PERMISSION_DENIED);
    assert.match(denied.details, /lacks the 'admin' scope/);
  });

  test('ModelConfig needs a credential (it is not a health check)', async () => {
    const missing = await grpcError(grpc.call('ModelConfig', { name: 'alpha' }));
    assert.equal(missing.code, status.UNAUTHENTICATED);
    assert.match(missing.details, /needs a credential/);
    const config = await grpc.call<{ config: { name: string } }>('ModelConfig', { name: 'alpha' }, bearer(KEYS.read));
    assert.equal(config.config.name, 'alpha');
  });

  test('ModelStatistics: a key limited to alpha gets alpha\'s statistics only', async () => {
    const key = { 'x-api-key': KEYS.readAlpha };
    const alpha = await grpc.call<{ model_stats: { name: string }[] }>('ModelStatistics', { name: 'alpha' }, key);
    assert.deepEqual(alpha.model_stats.map((stats) => stats.name), ['alpha']);
    const beta = await grpcError(grpc.call('ModelStatistics', { name: 'beta' }, key));
    assert.equal(beta.code, status.PERMISSION_DENIED);
    assert.match(beta.details, /may not use model 'beta'/);
    // Without a name the call spans every model: refused to a key limited to some.
    const every = await grpcError(grpc.call('ModelStatistics', {}, key));
    assert.equal(every.code, status.PERMISSION_DENIED);
    assert.match(every.details, /spans every model/);
    // A key not limited to some models sees them all.
    const all = await grpc.call<{ model_stats: { name: string }[] }>('ModelStatistics', {}, bearer(KEYS.read));
    assert.deepEqual([...new Set(all.model_stats.map((stats) => stats.name))].sort(), ['alpha', 'beta', 'text']);
  });
});

describe('HTTP rules for the cloud platforms, TF Serving reads and /metrics', () => {
  const PREDICT = '/v1/endpoints/1/deployedModels/2:predict';
  let server: TesseraServer;
  let url: string;

  before(async () => {
    const repo = await securityRepository(undefined);
    server = await startTestServer(undefined, repo, {
      apiKeys: API_KEYS,
      sagemaker: true,
      vertex: true,
      vertexHealthRoute: '/v1/endpoints/1/deployedModels/2',
      vertexPredictRoute: PREDICT,
      azureml: true,
      defaultModel: 'beta',
      metricsOnHttpPort: true,
      grpc: false,
      management: false,
    });
    url = server.httpUrl;
  });
  after(async () => {
    await server.close();
  });

  test('/invocations, /score and the Vertex AI predict route check the served model against the allow list', async () => {
    const body = { instances: [[1, 2]] };
    for (const route of ['/invocations', '/score', PREDICT]) {
      const denied = await http(`${url}${route}`, { headers: apiKey(KEYS.inferReadAlpha), body });
      assert.equal(denied.status, 403, `${route}: ${denied.text}`);
      assert.match(String(denied.json?.['error']), /may not use model 'beta' \(it may use model 'alpha'\)/, route);
      const allowed = await http(`${url}${route}`, { headers: apiKey(KEYS.infer), body });
      assert.equal(allowed.status, 200, `${route}: ${allowed.text}`);
      assert.equal((await http(`${url}${route}`, { headers: apiKey(KEYS.read), body })).status, 403, `${route} needs infer`);
    }
  });

  test('TF Serving GET /v1/models/{m}[/metadata]: the model must be allowed', async () => {
    const key = apiKey(KEYS.inferReadAlpha);
    for (const route of ['/v1/models/beta/metadata', '/v1/models/beta']) {
      const denied = await http(`${url}${route}`, { headers: key });
      assert.equal(denied.status, 403, route);
      assert.match(String(denied.json?.['error']), /may not use model 'beta'/, route);
    }
    assert.equal((await http(`${url}/v1/models/alpha/metadata`, { headers: key })).status, 200);
    assert.equal((await http(`${url}/v1/models/alpha`, { headers: key })).status, 200);
  });

  test('/metrics on the HTTP port needs read over every model', async () => {
    const missing = await http(`${url}/metrics`);
    assert.equal(missing.status, 401);
    assert.equal(missing.headers['www-authenticate'], 'Bearer realm="tessera"');
    const metrics = await http(`${url}/metrics`, { headers: bearer(KEYS.read) });
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^# (HELP|TYPE) /m);
    assert.equal((await http(`${url}/metrics`, { headers: bearer(KEYS.infer) })).status, 403, 'infer is not read');
    assert.equal((await http(`${url}/metrics`, { headers: bearer(KEYS.readAlpha) })).status, 403, 'a key limited to some models');
  });
});

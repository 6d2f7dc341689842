/**
 * Authentication and authorization with API keys, over real HTTP (V2, TF Serving, TorchServe,
 * the management API) and real gRPC: each scope, the model allow lists, open health checks,
 * keys from the configuration, the environment and files (text, JSON, sha256 digests), and
 * keys never reaching the logs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';

import { status } from '@grpc/grpc-js';
import { pino } from 'pino';

import { fromEnvironment, fromFlags } from '../src/cli/config-sources.js';
import { parseServerConfig } from '../src/config/server-config.js';
import { ApiKeyStore, parseApiKeySpec, parseApiKeysFile } from '../src/security/api-keys.js';
import { REDACTED_LOG_PATHS, REDACTION_CENSOR } from '../src/security/redact.js';
import { createServerSecurity } from '../src/security/setup.js';
import { silentLogger } from '../src/core/logger.js';
import { startServer, type TesseraServer } from '../src/server/server.js';
import { SecureGrpcClient, apiKey, bearer, grpcError, grpcInferRequest, http, inferBody, securityRepository, streamAll } from './support/security.js';
import { startTestServer } from './support/server.js';

const KEYS = {
  inferAlpha: 'infer-alpha-0123456789abcdef',
  read: 'read-only-0123456789abcdef',
  admin: 'admin-0123456789abcdef0123',
  inferRead: 'infer-read-0123456789abcdef',
} as const;

const API_KEYS = [`${KEYS.inferAlpha}:infer:alpha`, `${KEYS.read}:read`, `${KEYS.admin}:admin`, `${KEYS.inferRead}:infer+read`];

describe('API keys over HTTP and gRPC', () => {
  let server: TesseraServer;
  let url: string;
  let admin: string;
  let grpc: SecureGrpcClient;

  before(async () => {
    const repo = await securityRepository(undefined);
    server = await startTestServer(undefined, repo, { apiKeys: API_KEYS, modelControlMode: 'explicit', loadModel: ['*'] });
    url = server.httpUrl;
    admin = `http://127.0.0.1:${server.managementPort}`;
    grpc = new SecureGrpcClient(server.grpcPort!);
  });
  after(async () => {
    grpc.close();
    await server.close();
  });

  test('health endpoints stay open', async () => {
    assert.equal((await http(`${url}/v2/health/ready`)).status, 200);
    assert.equal((await http(`${url}/v2/health/live`)).status, 200);
    assert.equal((await http(`${url}/ping`)).status, 200);
    assert.equal((await grpc.health()).status, 'SERVING');
    assert.deepEqual(await grpc.call('ServerLive'), { live: true });
  });

  test('no credential → 401 with WWW-Authenticate: Bearer', async () => {
    for (const [method, path, body] of [
      ['GET', '/v2', undefined],
      ['GET', '/v2/models/alpha', undefined],
      ['POST', '/v2/models/alpha/infer', inferBody()],
      ['POST', '/v2/repository/index', {}],
    ] as const) {
      const answer = await http(`${url}${path}`, { method, ...(body === undefined ? {} : { body }) });
      assert.equal(answer.status, 401, `${method} ${path}`);
      assert.equal(answer.headers['www-authenticate'], 'Bearer realm="tessera"');
      assert.match(String(answer.json?.['error']), /needs a credential: send Authorization: Bearer <token> or X-API-Key: <key>/);
    }
  });

  test('a wrong key → 401 invalid_token; the key is not echoed', async () => {
    const answer = await http(`${url}/v2/models/alpha`, { headers: bearer('not-a-key-0123456789abcdef') });
    assert.equal(answer.status, 401);
    assert.match(String(answer.headers['www-authenticate']), /^Bearer realm="tessera", error="invalid_token"/);
    assert.doesNotMatch(answer.text, /not-a-key/);
    assert.equal((await http(`${url}/v2/models/alpha`, { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } })).status, 401);
    const both = await http(`${url}/v2/models/alpha`, { headers: { ...bearer(KEYS.read), ...apiKey(KEYS.read) } });
    assert.equal(both.status, 401);
    assert.match(String(both.json?.['error']), /not both/);
  });

  test('read scope: metadata, config, stats, index; not inference, not load/unload', async () => {
    const read = bearer(KEYS.read);
    assert.equal((await http(`${url}/v2`, { headers: read })).status, 200);
    assert.equal((await http(`${url}/v2/models/alpha`, { headers: read })).status, 200);
    assert.equal((await http(`${url}/v2/models/beta/config`, { headers: read })).status, 200);
    assert.equal((await http(`${url}/v2/models/alpha/stats`, { headers: read })).status, 200);
    assert.equal((await http(`${url}/v2/models/stats`, { headers: read })).status, 200);
    assert.equal((await http(`${url}/v2/repository/index`, { method: 'POST', headers: read, body: {} })).status, 200);
    assert.equal((await http(`${url}/v1/models/alpha/metadata`, { headers: apiKey(KEYS.read) })).status, 200);
    const infer = await http(`${url}/v2/models/alpha/infer`, { headers: read, body: inferBody() });
    assert.equal(infer.status, 403);
    assert.equal(infer.headers['www-authenticate'], 'Bearer realm="tessera", error="insufficient_scope", scope="infer"');
    assert.match(String(infer.json?.['error']), /^API key '[0-9a-f]{12}' lacks the 'infer' scope this endpoint needs \(it has read\)$/);
    assert.equal((await http(`${url}/v2/repository/models/beta/unload`, { method: 'POST', headers: read })).status, 403);
  });

  test('infer scope with an allow list: its model only, and no metadata', async () => {
    const key = apiKey(KEYS.inferAlpha);
    const ok = await http(`${url}/v2/models/alpha/infer`, { headers: key, body: inferBody(2) });
    assert.equal(ok.status, 200, ok.text);
    const beta = await http(`${url}/v2/models/beta/infer`, { headers: key, body: inferBody() });
    assert.equal(beta.status, 403);
    assert.match(String(beta.json?.['error']), /may not use model 'beta' \(it may use model 'alpha'\)/);
    // The other front doors: TF Serving's :predict and TorchServe's /predictions (its own error shape).
    assert.equal((await http(`${url}/v1/models/beta:predict`, { headers: key, body: { instances: [[1, 2]] } })).status, 403);
    assert.equal((await http(`${url}/v1/models/alpha:predict`, { headers: key, body: { instances: [[1, 2]] } })).status, 200);
    const torch = await http(`${url}/predictions/beta`, { headers: key, body: { data: [[1, 2]] } });
    assert.equal(torch.status, 403);
    assert.deepEqual(Object.keys(torch.json ?? {}), ['code', 'type', 'message']);
    // No read scope: metadata is refused; a key limited to some models may not list every model.
    assert.equal((await http(`${url}/v2/models/alpha`, { headers: key })).status, 403);
    const both = bearer(KEYS.inferRead);
    assert.equal((await http(`${url}/v2/models/stats`, { headers: both })).status, 200);
  });

  test('a key limited to some models may not use endpoints that span every model', async (t) => {
    const repo = await securityRepository(t);
    const limited = await startTestServer(t, repo, { apiKeys: ['limited-read-0123456789ab:read:alpha'], grpc: false, management: false });
    const key = apiKey('limited-read-0123456789ab');
    assert.equal((await http(`${limited.httpUrl}/v2/models/alpha`, { headers: key })).status, 200);
    assert.equal((await http(`${limited.httpUrl}/v2/models/beta`, { headers: key })).status, 403);
    const stats = await http(`${limited.httpUrl}/v2/models/stats`, { headers: key });
    assert.equal(stats.status, 403);
    assert.match(String(stats.json?.['error']), /this endpoint spans every model; address a model by name/);
    assert.equal((await http(`${limited.httpUrl}/v2/repository/index`, { method: 'POST', headers: key, body: {} })).status, 403);
  });

  test('admin scope: the repository load/unload API', async () => {
    assert.equal((await http(`${url}/v2/repository/models/beta/unload`, { method: 'POST', headers: bearer(KEYS.inferRead) })).status, 403);
    const unloaded = await http(`${url}/v2/repository/models/beta/unload`, { method: 'POST', headers: bearer(KEYS.admin) });
    assert.equal(unloaded.status, 200, unloaded.text);
    const loaded = await http(`${url}/v2/repository/models/beta/load`, { method: 'POST', headers: bearer(KEYS.admin) });
    assert.equal(loaded.status, 200, loaded.text);
    // admin does not imply read or infer
    assert.equal((await http(`${url}/v2/models/beta`, { headers: bearer(KEYS.admin) })).status, 403);
  });

  test('the whole management API needs admin', async () => {
    const none = await http(`${admin}/models`);
    assert.equal(none.status, 401);
    assert.deepEqual(Object.keys(none.json ?? {}), ['code', 'type', 'message']);
    assert.equal((await http(`${admin}/models`, { headers: bearer(KEYS.inferRead) })).status, 403);
    assert.equal((await http(`${admin}/models/alpha`, { headers: bearer(KEYS.read) })).status, 403);
    const listed = await http(`${admin}/models`, { headers: bearer(KEYS.admin) });
    assert.equal(listed.status, 200);
    assert.equal((listed.json?.['models'] as unknown[]).length, 3);
    assert.equal((await http(`${admin}/models/alpha`, { headers: apiKey(KEYS.admin) })).status, 200);
  });

  test('unknown routes need a credential before they answer 404', async () => {
    assert.equal((await http(`${url}/no/such/route`)).status, 401);
    assert.equal((await http(`${url}/no/such/route`, { headers: bearer(KEYS.read) })).status, 404);
  });

  test('gRPC: the same rules with authorization or x-api-key metadata', async () => {
    const missing = await grpcError(grpc.call('ModelMetadata', { name: 'alpha' }));
    assert.equal(missing.code, status.UNAUTHENTICATED);
    assert.match(missing.details, /needs a credential/);
    assert.equal((await grpcError(grpc.call('ModelMetadata', { name: 'alpha' }, { 'x-api-key': 'wrong-key-0123456789abcdef' }))).code, status.UNAUTHENTICATED);

    const read = bearer(KEYS.read);
    assert.equal((await grpc.call<{ name: string }>('ModelMetadata', { name: 'alpha' }, read)).name, 'alpha');
    const denied = await grpcError(grpc.call('ModelInfer', grpcInferRequest('alpha'), read));
    assert.equal(denied.code, status.PERMISSION_DENIED);
    assert.deepEqual(denied.metadata.get('tessera-error-code'), ['PERMISSION_DENIED']);

    const inferAlpha = { 'x-api-key': KEYS.inferAlpha };
    const answer = await grpc.call<{ model_name: string }>('ModelInfer', grpcInferRequest('alpha'), inferAlpha);
    assert.equal(answer.model_name, 'alpha');
    const beta = await grpcError(grpc.call('ModelInfer', grpcInferRequest('beta'), inferAlpha));
    assert.equal(beta.code, status.PERMISSION_DENIED);
    assert.match(beta.details, /may not use model 'beta'/);
    assert.equal((await grpcError(grpc.call('ModelMetadata', { name: 'alpha' }, inferAlpha))).code, status.PERMISSION_DENIED);

    assert.equal((await grpcError(grpc.call('RepositoryModelUnload', { model_name: 'beta' }, read))).code, status.PERMISSION_DENIED);
    assert.equal((await grpcError(grpc.call('RepositoryIndex', {}, inferAlpha))).code, status.PERMISSION_DENIED);
    assert.ok(Array.isArray((await grpc.call<{ models: unknown[] }>('RepositoryIndex', {}, read)).models));
  });

  test('gRPC streams: a refused message gets an error_message and the stream goes on', async () => {
    const unauthenticated = await new Promise<{ code: number }>((resolve) => {
      const stream = grpc.stream();
      stream.on('error', (error: { code: number }) => resolve(error));
      stream.on('data', () => undefined);
      stream.write(grpcInferRequest('alpha'));
      stream.end();
    });
    assert.equal(unauthenticated.code, status.UNAUTHENTICATED);

    const responses = await streamAll(grpc.stream({ 'x-api-key': KEYS.inferAlpha }), [
      { ...grpcInferRequest('alpha'), id: 'one' },
      { ...grpcInferRequest('beta'), id: 'two' },
      { ...grpcInferRequest('alpha'), id: 'three' },
    ]);
    const byId = new Map(responses.map((response) => [response.infer_response?.id, response.error_message]));
    assert.equal(byId.get('one'), '');
    assert.match(String(byId.get('two')), /may not use model 'beta'/);
    assert.equal(byId.get('three'), '');
  });
});

describe('health checks can require a credential', () => {
  test('authHealthOpen: false', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { apiKeys: API_KEYS, authHealthOpen: false, management: false });
    assert.equal((await http(`${server.httpUrl}/v2/health/ready`)).status, 401);
    // Any valid credential will do, whatever its scopes.
    assert.equal((await http(`${server.httpUrl}/v2/health/ready`, { headers: bearer(KEYS.inferAlpha) })).status, 200);
    const grpc = new SecureGrpcClient(server.grpcPort!);
    t.after(() => grpc.close());
    assert.equal((await grpcError(grpc.health())).code, status.UNAUTHENTICATED);
    assert.equal((await grpc.health('', bearer(KEYS.admin))).status, 'SERVING');
  });
});

describe('where keys come from', () => {
  test('a text keys file, with sha256 digests, names and model lists', async (t) => {
    const repo = await securityRepository(t);
    const digest = createHash('sha256').update('hashed-key-0123456789abcdef').digest('hex');
    const file = path.join(repo, 'keys.txt');
    await writeFile(file, `# key  scopes  models  options\nplain-key-0123456789abcdef  infer,read  alpha  name=ci\nsha256:${digest} read * name=dash\n`);
    const server = await startTestServer(t, repo, { apiKeysFile: file, grpc: false, management: false });
    assert.equal((await http(`${server.httpUrl}/v2/models/alpha/infer`, { headers: bearer('plain-key-0123456789abcdef'), body: inferBody() })).status, 200);
    const beta = await http(`${server.httpUrl}/v2/models/beta/infer`, { headers: bearer('plain-key-0123456789abcdef'), body: inferBody() });
    assert.match(String(beta.json?.['error']), /^API key 'ci' may not use model 'beta'/);
    assert.equal((await http(`${server.httpUrl}/v2/models/beta`, { headers: bearer('hashed-key-0123456789abcdef') })).status, 200);
    assert.equal((await http(`${server.httpUrl}/v2/models/beta`, { headers: bearer(`sha256:${digest}`) })).status, 401, 'a digest is not a key');
  });

  test('a JSON keys file', () => {
    const entries = parseApiKeysFile(JSON.stringify({ keys: [{ key: 'json-key-0123456789abcdef', scopes: ['admin'], name: 'ops', rateLimit: 5 }] }), 'keys.json');
    const store = new ApiKeyStore(entries);
    const principal = store.lookup('json-key-0123456789abcdef');
    assert.equal(principal?.id, 'key:ops');
    assert.deepEqual([...(principal?.scopes ?? [])], ['admin']);
    assert.equal(principal?.rateLimit, 5);
    assert.equal(store.lookup('json-key-0123456789abcdeX'), undefined);
  });

  test('TESSERA_API_KEYS from the environment', () => {
    const config = parseServerConfig({ ...fromEnvironment({ TESSERA_API_KEYS: 'env-key-one-0123456789ab:infer+read:alpha+beta,env-key-two-0123456789ab:admin' }) });
    assert.equal(config.apiKeys.length, 2);
    const security = createServerSecurity(config, silentLogger);
    assert.equal(security.summary['auth'], '2 API keys');
  });

  test('flags and TESSERA_* variables map onto the security settings', () => {
    const config = parseServerConfig({
      ...fromEnvironment({ TESSERA_RATE_LIMIT: '10', TESSERA_CORS_ORIGINS: 'https://a.example,https://b.example', TESSERA_JWT_SECRET: 'x'.repeat(40) }),
      ...fromFlags({ rateLimitModel: ['alpha=2', 'beta=3'], authHealthOpen: 'false', maxJsonDepth: '8', tlsClientCa: undefined }),
    });
    assert.equal(config.rateLimit, 10);
    assert.deepEqual(config.corsOrigins, ['https://a.example', 'https://b.example']);
    assert.deepEqual(config.rateLimitModel, ['alpha=2', 'beta=3']);
    assert.equal(config.authHealthOpen, false);
    assert.equal(config.maxJsonDepth, 8);
    const summary = createServerSecurity(config, silentLogger).summary;
    assert.equal(summary['auth'], 'JWT bearer tokens');
    assert.deepEqual(summary['modelQuotas'], { alpha: 2, beta: 3 });
    assert.equal(JSON.stringify(summary).includes('x'.repeat(40)), false, 'the summary holds no secret');
    assert.throws(() => parseServerConfig({ rateLimitModel: ['alpha'] }), /must be <model>=<requests per window>/);
  });

  test('malformed keys stop the server at start-up, without showing the key', () => {
    assert.throws(() => parseApiKeySpec('short:infer', 'apiKeys entry 1'), /apiKeys entry 1: the key is shorter than 16 characters/);
    assert.throws(() => parseApiKeySpec('long-enough-key-0123456789:write', 'apiKeys entry 2'), /^Error: apiKeys entry 2: unknown scope 'write'; scopes are infer, read, admin$/);
    assert.throws(() => new ApiKeyStore(parseApiKeysFile('dup-key-0123456789abcdef\ndup-key-0123456789abcdef\n', 'k.txt')), /API keys 1 and 2 are the same key/);
    assert.throws(() => parseApiKeysFile('a-key-0123456789abcdefgh infer alpha bogus=1\n', 'k.txt'), /k\.txt:1: unknown option bogus/);
    assert.throws(() => createServerSecurity(parseServerConfig({ apiKeysFile: '/nonexistent/keys' }), silentLogger), /cannot read the API keys file/);
  });
});

describe('credentials never reach the logs', () => {
  test('the logger censors credential headers', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    });
    const logger = pino({ redact: { paths: [...REDACTED_LOG_PATHS], censor: REDACTION_CENSOR } }, sink);
    logger.info({ req: { headers: { authorization: 'Bearer s3cret-token', 'x-api-key': 's3cret-key' } } }, 'request');
    assert.doesNotMatch(lines.join(''), /s3cret/);
    assert.match(lines.join(''), /\[redacted\]/);
  });

  test('a server logging at trace level never writes a key', async (t) => {
    const repo = await securityRepository(t);
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    });
    const logger = pino({ level: 'trace', redact: { paths: [...REDACTED_LOG_PATHS], censor: REDACTION_CENSOR } }, sink);
    const server = await startServer(
      parseServerConfig({ modelRepository: repo, host: '127.0.0.1', httpPort: 0, grpcPort: 0, metricsPort: 0, managementPort: 0, apiKeys: API_KEYS }),
      { logger },
    );
    t.after(() => server.close());
    await http(`${server.httpUrl}/v2/models/alpha/infer`, { headers: bearer(KEYS.inferAlpha), body: inferBody() });
    await http(`${server.httpUrl}/v2/models/beta/infer`, { headers: bearer(KEYS.inferAlpha), body: inferBody() });
    await http(`${server.httpUrl}/v2/models/alpha`, { headers: bearer('wrong-key-for-the-log-0123') });
    const grpc = new SecureGrpcClient(server.grpcPort!);
    t.after(() => grpc.close());
    await grpcError(grpc.call('ModelInfer', grpcInferRequest('beta'), { 'x-api-key': KEYS.inferAlpha }));
    const text = lines.join('');
    assert.ok(text.length > 0);
    for (const secret of [...Object.values(KEYS), 'wrong-key-for-the-log-0123']) assert.ok(!text.includes(secret), `the log contains ${secret}`);
  });
});

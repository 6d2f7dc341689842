/**
 * Bearer tokens as JWTs, over real HTTP and gRPC: HS256 with a shared secret and RS256 with a
 * public key file; issuer, audience and expiry; scopes and model allow lists from claims;
 * algorithm confusion and unsigned tokens refused; JWTs beside API keys.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { status } from '@grpc/grpc-js';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWTPayload } from 'jose';

import type { TesseraServer } from '../src/server/server.js';
import { SecureGrpcClient, apiKey, bearer, grpcError, grpcInferRequest, http, inferBody, securityRepository } from './support/security.js';
import { startTestServer } from './support/server.js';

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
const ISSUER = 'https://issuer.example';
const AUDIENCE = 'tessera';

interface Claims extends JWTPayload {
  scope?: string;
  scopes?: string[];
  /** Any JSON: the tests send claims of the wrong type too. */
  models?: unknown;
}

function hs256(claims: Claims, options: { secret?: string; expiresIn?: string | number; issuer?: string; audience?: string; noExp?: boolean; subject?: unknown } = {}): Promise<string> {
  let jwt = new SignJWT({ ...claims, sub: options.subject ?? 'alice' } as JWTPayload)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE);
  if (options.noExp !== true) jwt = jwt.setExpirationTime(options.expiresIn ?? '5m');
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** A token with `alg: none` (RFC 7519 §6): unsigned. */
function unsigned(claims: Claims): string {
  const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ ...claims, sub: 'mallory', iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300 })}.`;
}

describe('HS256 bearer tokens', () => {
  let server: TesseraServer;
  let grpc: SecureGrpcClient;
  const infer = (model: string): string => `${server.httpUrl}/v2/models/${model}/infer`;

  before(async () => {
    const repo = await securityRepository(undefined);
    server = await startTestServer(undefined, repo, {
      jwtSecret: SECRET,
      jwtIssuer: ISSUER,
      jwtAudience: AUDIENCE,
      jwtClockToleranceSeconds: 0,
      apiKeys: ['an-api-key-beside-jwt-0123:read'],
      management: false,
    });
    grpc = new SecureGrpcClient(server.grpcPort!);
  });
  after(async () => {
    grpc.close();
    await server.close();
  });

  test('a valid token with the infer scope runs inference', async () => {
    const token = await hs256({ scope: 'infer read openid' });
    const answer = await http(infer('alpha'), { headers: bearer(token), body: inferBody() });
    assert.equal(answer.status, 200, answer.text);
    assert.equal((await http(`${server.httpUrl}/v2/models/alpha`, { headers: bearer(token) })).status, 200);
    // `scopes` as an array works too
    assert.equal((await http(infer('beta'), { headers: bearer(await hs256({ scopes: ['infer'] })), body: inferBody() })).status, 200);
  });

  test('wrong scope → 403; models claim limits the models', async () => {
    const reader = await hs256({ scope: 'read' });
    const denied = await http(infer('alpha'), { headers: bearer(reader), body: inferBody() });
    assert.equal(denied.status, 403);
    assert.match(String(denied.json?.['error']), /^token of 'alice' lacks the 'infer' scope/);
    const limited = await hs256({ scope: 'infer', models: ['alpha'] });
    assert.equal((await http(infer('alpha'), { headers: bearer(limited), body: inferBody() })).status, 200);
    const beta = await http(infer('beta'), { headers: bearer(limited), body: inferBody() });
    assert.equal(beta.status, 403);
    assert.match(String(beta.json?.['error']), /may not use model 'beta'/);
    // An empty models list allows no model.
    assert.equal((await http(infer('alpha'), { headers: bearer(await hs256({ scope: 'infer', models: [] })), body: inferBody() })).status, 403);
  });

  test('a models claim of the wrong type allows no model; "*" allows every model', async () => {
    for (const [title, models] of [
      ['a number', 42],
      ['an object', { a: 1 }],
      ['a list holding a number', ['alpha', 7]],
    ] as const) {
      const token = await hs256({ scope: 'infer', models });
      const answer = await http(infer('alpha'), { headers: bearer(token), body: inferBody() });
      assert.equal(answer.status, 403, `${title}: ${answer.text}`);
      assert.match(String(answer.json?.['error']), /may not use model 'alpha'/, title);
    }
    const every = await hs256({ scope: 'infer', models: ['*'] });
    const beta = await http(infer('beta'), { headers: bearer(every), body: inferBody() });
    assert.equal(beta.status, 200, beta.text);
    assert.equal((await http(infer('beta'), { headers: bearer(await hs256({ scope: 'infer', models: '*' })), body: inferBody() })).status, 200);
    // "*" allows endpoints that span every model too.
    assert.equal((await http(`${server.httpUrl}/v2/models/stats`, { headers: bearer(await hs256({ scope: 'read', models: ['*'] })) })).status, 200);
  });

  test('expired, wrong audience, wrong issuer, bad signature, no exp, unsigned → 401', async () => {
    const cases: [string, string, RegExp][] = [
      ['expired', await hs256({ scope: 'infer' }, { expiresIn: Math.floor(Date.now() / 1000) - 60 }), /the bearer token has expired/],
      ['wrong audience', await hs256({ scope: 'infer' }, { audience: 'someone-else' }), /not meant for this server/],
      ['wrong issuer', await hs256({ scope: 'infer' }, { issuer: 'https://evil.example' }), /issuer that is not accepted/],
      ['bad signature', await hs256({ scope: 'infer' }, { secret: 'another-secret-of-at-least-32-bytes!!' }), /signature does not verify/],
      ['no exp', await hs256({ scope: 'infer' }, { noExp: true }), /has no 'exp' claim/],
      ['unsigned', unsigned({ scope: 'infer' }), /not a valid JWT|algorithm is not accepted/],
      // A subject that is not a string would name every such token alike (one rate bucket).
      ['numeric sub', await hs256({ scope: 'infer' }, { subject: 42 }), /^the bearer token's 'sub' claim must be a non-empty string, got 42$/],
      ['empty sub', await hs256({ scope: 'infer' }, { subject: '' }), /^the bearer token's 'sub' claim must be a non-empty string, got ""$/],
      ['object sub', await hs256({ scope: 'infer' }, { subject: { id: 'alice' } }), /got \{"id":"alice"\}$/],
    ];
    for (const [title, token, message] of cases) {
      const answer = await http(infer('alpha'), { headers: bearer(token), body: inferBody() });
      assert.equal(answer.status, 401, title);
      assert.match(String(answer.json?.['error']), message, title);
      assert.match(String(answer.headers['www-authenticate']), /^Bearer realm="tessera", error="invalid_token", error_description="/, title);
    }
  });

  test('API keys work beside JWTs', async () => {
    assert.equal((await http(`${server.httpUrl}/v2/models/alpha`, { headers: apiKey('an-api-key-beside-jwt-0123') })).status, 200);
    assert.equal((await http(`${server.httpUrl}/v2/models/alpha`, { headers: bearer('an-api-key-beside-jwt-0123') })).status, 200);
  });

  test('gRPC: Bearer JWT in metadata', async () => {
    const token = await hs256({ scope: 'infer', models: 'alpha' });
    const answer = await grpc.call<{ model_name: string }>('ModelInfer', grpcInferRequest('alpha'), bearer(token));
    assert.equal(answer.model_name, 'alpha');
    assert.equal((await grpcError(grpc.call('ModelInfer', grpcInferRequest('beta'), bearer(token)))).code, status.PERMISSION_DENIED);
    const expired = await grpcError(grpc.call('ModelInfer', grpcInferRequest('alpha'), bearer(await hs256({ scope: 'infer' }, { expiresIn: Math.floor(Date.now() / 1000) - 60 }))));
    assert.equal(expired.code, status.UNAUTHENTICATED);
    assert.match(expired.details, /expired/);
    const audience = await grpcError(grpc.call('ModelMetadata', { name: 'alpha' }, bearer(await hs256({ scope: 'read' }, { audience: 'other' }))));
    assert.equal(audience.code, status.UNAUTHENTICATED);
  });
});

describe('RS256 bearer tokens', () => {
  test('verified with a PEM public key; HS256 signed with the public key is refused', async (t) => {
    const repo = await securityRepository(t);
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const pem = await exportSPKI(publicKey);
    const keyFile = path.join(repo, 'issuer.pem');
    await writeFile(keyFile, pem);
    const server = await startTestServer(t, repo, { jwtPublicKey: keyFile, jwtAudience: AUDIENCE, management: false });
    const sign = (claims: Claims, expiresIn: string | number = '5m'): Promise<string> =>
      new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).setSubject('svc-batch').setAudience(AUDIENCE).setExpirationTime(expiresIn).sign(privateKey);

    const token = await sign({ scope: 'infer' });
    const ok = await http(`${server.httpUrl}/v2/models/alpha/infer`, { headers: bearer(token), body: inferBody() });
    assert.equal(ok.status, 200, ok.text);
    const expired = await http(`${server.httpUrl}/v2/models/alpha/infer`, { headers: bearer(await sign({ scope: 'infer' }, Math.floor(Date.now() / 1000) - 120)), body: inferBody() });
    assert.equal(expired.status, 401);

    // Algorithm confusion: an HS256 token whose "secret" is the public key's PEM text.
    const confused = await new SignJWT({ scope: 'infer admin' })
      .setProtectedHeader({ alg: 'HS256' })
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(pem));
    const refused = await http(`${server.httpUrl}/v2/models/alpha/infer`, { headers: bearer(confused), body: inferBody() });
    assert.equal(refused.status, 401);
    assert.match(String(refused.json?.['error']), /algorithm is not accepted/);

    const grpc = new SecureGrpcClient(server.grpcPort!);
    t.after(() => grpc.close());
    assert.equal((await grpc.call<{ model_name: string }>('ModelInfer', grpcInferRequest('alpha'), bearer(token))).model_name, 'alpha');
    assert.equal((await grpcError(grpc.call('ModelInfer', grpcInferRequest('alpha'), bearer(confused)))).code, status.UNAUTHENTICATED);
  });

  test('ES256 keys from the issuer\'s JWKS URL', async (t) => {
    const repo = await securityRepository(t);
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'key-1', alg: 'ES256', use: 'sig' };
    // A slow key server: authentication is still running when a gRPC message arrives.
    const issuer = createServer((_req, res) => {
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })), 150);
    });
    await new Promise<void>((resolve) => issuer.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => issuer.close(() => resolve())));
    const jwksUrl = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}/.well-known/jwks.json`;
    const server = await startTestServer(t, repo, { jwtJwksUrl: jwksUrl, jwtAlgorithms: ['ES256'], jwtAudience: AUDIENCE, management: false });
    const sign = (kid: string, claims: Claims = { scope: 'read' }): Promise<string> =>
      new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid }).setSubject('dash').setAudience(AUDIENCE).setExpirationTime('5m').sign(privateKey);
    // gRPC first, while the key set is being fetched: the messages are checked against the
    // token's allow list once its key is known.
    const grpc = new SecureGrpcClient(server.grpcPort!);
    t.after(() => grpc.close());
    const alphaOnly = await sign('key-1', { scope: 'infer', models: ['alpha'] });
    const [beta, alpha] = await Promise.allSettled([
      grpc.call('ModelInfer', grpcInferRequest('beta'), bearer(alphaOnly)),
      grpc.call<{ model_name: string }>('ModelInfer', grpcInferRequest('alpha'), bearer(alphaOnly)),
    ]);
    assert.equal(beta.status, 'rejected');
    assert.equal((beta as PromiseRejectedResult).reason.code, status.PERMISSION_DENIED);
    assert.equal(alpha.status === 'fulfilled' ? alpha.value.model_name : alpha.reason, 'alpha');

    assert.equal((await http(`${server.httpUrl}/v2/models/alpha`, { headers: bearer(await sign('key-1')) })).status, 200);
    const unknownKey = await http(`${server.httpUrl}/v2/models/alpha`, { headers: bearer(await sign('key-2')) });
    assert.equal(unknownKey.status, 401);
    assert.match(String(unknownKey.json?.['error']), /key is not in the issuer's key set/);
  });

  test('a short HS256 secret is refused at start-up', async (t) => {
    const repo = await securityRepository(t);
    await assert.rejects(startTestServer(t, repo, { jwtSecret: 'too-short' }), /the JWT secret is 9 bytes; HS256 needs at least 32/);
  });
});

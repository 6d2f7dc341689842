/**
 * CORS on the HTTP listener: off by default; per-origin when configured (preflight allowed
 * and denied, headers on actual requests); preflights need no credential, and refusals of
 * cross-origin requests stay readable by the page.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { bearer, http, inferBody, securityRepository } from './support/security.js';
import { startTestServer } from './support/server.js';

const APP = 'https://app.example.com';
const EVIL = 'https://evil.example.net';

function preflight(url: string, origin: string): ReturnType<typeof http> {
  return http(url, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
}

describe('CORS', () => {
  test('off by default: no CORS headers, no preflight answer', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { grpc: false, management: false });
    const answer = await http(`${server.httpUrl}/v2/models/alpha`, { headers: { origin: APP } });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['access-control-allow-origin'], undefined);
    const options = await preflight(`${server.httpUrl}/v2/models/alpha/infer`, APP);
    assert.equal(options.headers['access-control-allow-origin'], undefined);
    assert.equal(options.status, 404);
  });

  test('allowed origins get CORS headers; others get none', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { corsOrigins: [APP], apiKeys: ['cors-key-0123456789abcdef:infer+read'], grpc: false, management: false });
    const url = `${server.httpUrl}/v2/models/alpha/infer`;

    // Preflight: allowed without a credential (browsers send none), with the headers a client needs.
    const allowed = await preflight(url, APP);
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers['access-control-allow-origin'], APP);
    assert.match(String(allowed.headers['access-control-allow-methods']), /POST/);
    assert.match(String(allowed.headers['access-control-allow-headers']), /authorization/);
    assert.match(String(allowed.headers['access-control-allow-headers']), /x-api-key/);
    assert.equal(allowed.headers['access-control-max-age'], '600');

    const denied = await preflight(url, EVIL);
    assert.equal(denied.headers['access-control-allow-origin'], undefined);
    assert.notEqual(denied.status, 204);

    // Actual requests.
    const ok = await http(url, { headers: { origin: APP, ...bearer('cors-key-0123456789abcdef') }, body: inferBody() });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], APP);
    assert.match(String(ok.headers['vary']), /Origin/i);
    const other = await http(url, { headers: { origin: EVIL, ...bearer('cors-key-0123456789abcdef') }, body: inferBody() });
    assert.equal(other.headers['access-control-allow-origin'], undefined);

    // A refusal is still readable cross-origin, WWW-Authenticate and Retry-After exposed.
    const unauthenticated = await http(url, { headers: { origin: APP }, body: inferBody() });
    assert.equal(unauthenticated.status, 401);
    assert.equal(unauthenticated.headers['access-control-allow-origin'], APP);
    assert.match(String(unauthenticated.headers['access-control-expose-headers']), /www-authenticate/);
    assert.match(String(unauthenticated.headers['access-control-expose-headers']), /retry-after/);
  });

  test('* allows any origin', async (t) => {
    const repo = await securityRepository(t);
    const server = await startTestServer(t, repo, { corsOrigins: ['*'], grpc: false, management: false });
    const answer = await http(`${server.httpUrl}/v2/health/ready`, { headers: { origin: EVIL } });
    assert.equal(answer.headers['access-control-allow-origin'], '*');
    assert.equal((await preflight(`${server.httpUrl}/v2/models/alpha/infer`, EVIL)).status, 204);
  });
});

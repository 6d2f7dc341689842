import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseServerConfig, type ServerConfigInput } from '../../src/config/server-config.js';
import { startServer, type TesseraServer } from '../../src/server/server.js';

/**
 * Start a real Tessera server on 127.0.0.1 and an ephemeral port, silent, closed after the
 * test. Tests talk to it over real HTTP at `server.httpUrl`.
 */
export async function startTestServer(t: TestContext | undefined, repository: string, overrides: ServerConfigInput = {}): Promise<TesseraServer> {
  const server = await startServer(
    parseServerConfig({ modelRepository: repository, host: '127.0.0.1', httpPort: 0, grpcPort: 0, metricsPort: 0, managementPort: 0, logLevel: 'silent', ...overrides }),
  );
  t?.after(() => server.close());
  return server;
}

/**
 * Resolve once `model` holds at least `count` requests (queued or running). Tests that need one
 * request to be inside the server before they send the next wait on this, not on a sleep that a
 * busy machine can outlast.
 */
export async function untilHeld(server: TesseraServer, model: string, count: number, timeoutMs = 10_000): Promise<void> {
  const held = (): number => server.engine.describeModels(model)[0]!.versions.reduce((sum, v) => sum + v.inFlight + v.queueDepth, 0);
  const deadline = Date.now() + timeoutMs;
  while (held() < count) {
    if (Date.now() > deadline) throw new Error(`model '${model}' held ${held()} requests after ${timeoutMs} ms, expected ${count}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** POST JSON and return status, headers and parsed body. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: unknown }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** GET and return status and parsed JSON body. */
export async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url);
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** A fake-backend model definition file (see src/backends/fake/backend.ts). */
export function fakeModelJson(definition: {
  inputs: { name: string; datatype: string; shape: number[] }[];
  outputs: { name: string; datatype: string; shape: number[]; copy_of: string; add?: number }[];
  delay_ms?: number;
  fail_on_value?: number;
}): string {
  return JSON.stringify(definition);
}

/**
 * Write a fake-backend model: `<repo>/<name>/<version>/model.json` and a config.yaml that
 * selects the fake backend (plus any extra YAML lines).
 */
export async function writeFakeModel(
  repository: string,
  name: string,
  version: number,
  definition: Parameters<typeof fakeModelJson>[0],
  extraConfigYaml = '',
): Promise<void> {
  const dir = join(repository, name, String(version));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.json'), fakeModelJson(definition));
  await writeFile(join(repository, name, 'config.yaml'), `backend: fake\n${extraConfigYaml}`);
}

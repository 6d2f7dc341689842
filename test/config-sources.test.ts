/**
 * Configuration sources (src/cli/config-sources.ts) read into the server schema
 * (src/config/server-config.ts): how strings from flags and TESSERA_* variables are typed, the
 * platforms' variables, config file errors, and limits the schema shares with its consumers.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { fromEnvironment, fromFile, fromFlags, platformNotes, resolveServerConfig } from '../src/cli/config-sources.js';
import { MAX_TIMER_MS, SERVER_DEFAULTS } from '../src/config/server-config.js';

describe('strings from flags and TESSERA_* variables are typed by the schema', () => {
  test('booleans without a default (tracing) work from flags and the environment', () => {
    assert.equal(resolveServerConfig({ tracing: 'false' }, {}).tracing, false);
    assert.equal(resolveServerConfig({ tracing: 'true' }, {}).tracing, true);
    assert.equal(resolveServerConfig({}, { TESSERA_TRACING: 'false' }).tracing, false);
    assert.equal(resolveServerConfig({}, { TESSERA_TRACING: '1' }).tracing, true);
    assert.equal(resolveServerConfig({}, {}).tracing, undefined, 'unset: on exactly when an endpoint is set');
  });

  test('--tracing false beats a TESSERA_TRACING_ENDPOINT in the environment (docs/tracing.md)', () => {
    const endpoint = 'http://otel-collector:4318/v1/traces';
    const config = resolveServerConfig({ tracing: 'false' }, { TESSERA_TRACING_ENDPOINT: endpoint });
    assert.equal(config.tracing, false);
    assert.equal(config.tracingEndpoint, endpoint);
  });

  test('numbers are decimal: hex, exponents and words are refused naming the flag or variable and the value', () => {
    const refused: [Record<string, unknown>, NodeJS.ProcessEnv, string][] = [
      [{ httpPort: '0x1F90' }, {}, "--http-port: expected an integer, got '0x1F90'"],
      [{ httpPort: '1e3' }, {}, "--http-port: expected an integer, got '1e3'"],
      [{ httpPort: 'abc' }, {}, "--http-port: expected an integer, got 'abc'"],
      [{ httpPort: '' }, {}, "--http-port: expected an integer, got ''"],
      [{ maxQueueSize: '8.5' }, {}, "--max-queue-size: expected an integer, got '8.5'"],
      [{}, { TESSERA_HTTP_PORT: 'abc' }, "TESSERA_HTTP_PORT: expected an integer, got 'abc'"],
      [{}, { TESSERA_GRPC_PORT: '0x1F90' }, "TESSERA_GRPC_PORT: expected an integer, got '0x1F90'"],
      [{ tracingSampleRatio: '1e-1' }, {}, "--tracing-sample-ratio: expected a decimal number, got '1e-1'"],
      [{}, { TESSERA_AUDIT_SAMPLE_RATE: 'half' }, "TESSERA_AUDIT_SAMPLE_RATE: expected a decimal number, got 'half'"],
      [{ strictReadiness: 'maybe' }, {}, "--strict-readiness: expected true or false, got 'maybe'"],
      [{}, { TESSERA_TRACING: 'yes' }, "TESSERA_TRACING: expected true or false, got 'yes'"],
      [{}, { AIP_HTTP_PORT: '0x1F90' }, "AIP_HTTP_PORT: expected an integer, got '0x1F90'"],
      [{}, { SAGEMAKER_BIND_TO_PORT: '8e3' }, "SAGEMAKER_BIND_TO_PORT: expected an integer, got '8e3'"],
    ];
    for (const [flags, env, message] of refused) {
      assert.throws(() => resolveServerConfig(flags, env), { message: `invalid server configuration: ${message}` }, JSON.stringify({ flags, env }));
    }
  });

  test('decimal numbers, choices of numbers and lists are read', () => {
    const config = resolveServerConfig(
      { httpPort: ' 8080 ', tracingSampleRatio: '0.25', queueFullStatus: '429', repositoryPollSecs: '.5' },
      { TESSERA_AUDIT_SAMPLE_RATE: '1', TESSERA_CORS_ORIGINS: 'https://a.example, https://b.example' },
    );
    assert.deepEqual(
      [config.httpPort, config.tracingSampleRatio, config.queueFullStatus, config.repositoryPollSecs, config.auditSampleRate, config.corsOrigins],
      [8080, 0.25, 429, 0.5, 1, ['https://a.example', 'https://b.example']],
    );
    // Commander gives variadic options as arrays and bare switches as true: kept as they are.
    assert.deepEqual(fromFlags({ loadModel: ['a', 'b'], sagemaker: true }), { loadModel: ['a', 'b'], sagemaker: true });
    // Out of range is the schema's to say.
    assert.throws(() => resolveServerConfig({}, { TESSERA_HTTP_PORT: '-1' }), /httpPort: /);
  });
});

describe('TESSERA_CONFIG and config files', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tessera-config-files-'));
  });
  after(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('an empty TESSERA_CONFIG is unset, like every other empty TESSERA_* variable', () => {
    const config = resolveServerConfig({}, { TESSERA_CONFIG: '', TESSERA_HTTP_PORT: '' });
    assert.equal(config.httpPort, SERVER_DEFAULTS.httpPort);
    assert.throws(() => resolveServerConfig({ config: '' }, {}), { message: "invalid server configuration: --config: expected a file name, got ''" });
  });

  test('read and parse errors name the file', async () => {
    const json = path.join(dir, 'bad.json');
    await writeFile(json, '{"httpPort": 1, bad}');
    const yaml = path.join(dir, 'bad.yaml');
    await writeFile(yaml, 'http_port: 1\n  bad: [\n');
    const folder = path.join(dir, 'folder.yaml');
    await mkdir(folder);
    assert.throws(() => fromFile(json), (error: Error) => error.message.startsWith(`${json}: `) && /JSON/.test(error.message));
    assert.throws(() => fromFile(yaml), (error: Error) => error.message.startsWith(`${yaml}: `) && !error.message.includes('\n'));
    assert.throws(() => resolveServerConfig({ config: folder }, {}), { message: `${folder}: EISDIR: illegal operation on a directory, read` });
    assert.throws(() => resolveServerConfig({}, { TESSERA_CONFIG: path.join(dir, 'missing.yaml') }), (error: Error) => error.message.startsWith(`${path.join(dir, 'missing.yaml')}: ENOENT`));
  });
});

describe('platform variables and the adapters turned off', () => {
  test('TESSERA_SAGEMAKER=false overrides SAGEMAKER_* detection: SAGEMAKER_BIND_TO_PORT is not used', () => {
    const env = { SAGEMAKER_BIND_TO_PORT: '9090', SAGEMAKER_DEFAULT_MODEL: 'iris', TESSERA_SAGEMAKER: 'false' };
    const config = resolveServerConfig({}, env);
    assert.deepEqual([config.sagemaker, config.httpPort, config.modelRepository, config.defaultModel], [false, SERVER_DEFAULTS.httpPort, SERVER_DEFAULTS.modelRepository, undefined]);
    for (const notes of [platformNotes(env), platformNotes(env, config)]) {
      assert.equal(notes.some((note) => note.includes('SageMaker adapter enabled')), false, notes.join('; '));
      assert.ok(notes.some((note) => note.includes('SAGEMAKER_BIND_TO_PORT, SAGEMAKER_DEFAULT_MODEL ignored')), notes.join('; '));
    }
    // Detected, it still works as before.
    const on = resolveServerConfig({}, { SAGEMAKER_BIND_TO_PORT: '9090' });
    assert.deepEqual([on.sagemaker, on.httpPort], [true, 9090]);
    assert.deepEqual(platformNotes({ SAGEMAKER_BIND_TO_PORT: '9090' }, on), ['SageMaker adapter enabled by SAGEMAKER_BIND_TO_PORT']);
  });

  test('TESSERA_VERTEX=false overrides AIP_* detection: AIP_HTTP_PORT and the AIP routes are not used', () => {
    const env = { AIP_HTTP_PORT: '7080', AIP_HEALTH_ROUTE: '/v1/endpoints/1/deployedModels/2', AIP_STORAGE_URI: 'gs://bucket/model', TESSERA_VERTEX: 'false' };
    const config = resolveServerConfig({}, env);
    assert.deepEqual([config.vertex, config.httpPort, config.vertexHealthRoute], [false, SERVER_DEFAULTS.httpPort, SERVER_DEFAULTS.vertexHealthRoute]);
    const notes = platformNotes(env, config);
    assert.equal(notes.some((note) => note.includes('Vertex AI adapter enabled') || note.includes('AIP_STORAGE_URI (')), false, notes.join('; '));
  });

  test('TESSERA_AZUREML=false: AZUREML_MODEL_DIR is not the repository', () => {
    const config = resolveServerConfig({}, { AZUREML_MODEL_DIR: '/var/azureml-app/m/1', TESSERA_AZUREML: 'false' });
    assert.deepEqual([config.azureml, config.modelRepository], [false, SERVER_DEFAULTS.modelRepository]);
  });
});

describe('limits the server schema enforces at configuration time', () => {
  test('durations that become timers are capped at the longest Node.js timer (2^31 - 1 ms)', () => {
    assert.equal(MAX_TIMER_MS, 2 ** 31 - 1);
    assert.equal(resolveServerConfig({ shutdownDelayMs: String(MAX_TIMER_MS), shutdownGraceMs: '1100000000' }, {}).shutdownDelayMs, MAX_TIMER_MS);
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ shutdownDelayMs: '2147483648' }, /invalid server configuration: shutdownDelayMs: expected at most 2147483647 ms .*, got 2147483648$/],
      [{ shutdownGraceMs: '3000000000' }, /invalid server configuration: shutdownGraceMs: expected at most 2147483647 ms .*, got 3000000000$/],
      [{ requestTimeoutMs: '2147483648' }, /invalid server configuration: requestTimeoutMs: expected at most 2147483647 ms/],
      [{ repositoryPollSecs: '3000000' }, /invalid server configuration: repositoryPollSecs: expected at most 2147483 s .*, got 3000000$/],
    ];
    for (const [flags, message] of refused) assert.throws(() => resolveServerConfig(flags, {}), message);
    assert.equal(resolveServerConfig({ repositoryPollSecs: '2147483' }, {}).repositoryPollSecs, 2_147_483);
  });

  test("the tracing and audit log's own rules: an ftp:// endpoint and 200000 audit files are refused", () => {
    assert.throws(() => resolveServerConfig({ tracingEndpoint: 'ftp://127.0.0.1/x' }, {}), {
      message: 'invalid server configuration: tracingEndpoint: expected an http:// or https:// URL, e.g. http://otel-collector:4318/v1/traces',
    });
    assert.throws(() => resolveServerConfig({ auditKeepFiles: '200000' }, {}), /invalid server configuration: auditKeepFiles: .*100000/);
    assert.throws(() => resolveServerConfig({}, { TESSERA_AUDIT_MAX_FILE_BYTES: '100' }), /invalid server configuration: auditMaxFileBytes: /);
    const config = resolveServerConfig({ tracingEndpoint: 'https://otel.example/v1/traces', auditKeepFiles: '100000' }, {});
    assert.deepEqual([config.tracingEndpoint, config.auditKeepFiles], ['https://otel.example/v1/traces', 100_000]);
  });

  test('fromEnvironment: empty and unknown variables are ignored', () => {
    assert.deepEqual(fromEnvironment({ TESSERA_TRACING: '', TESSERA_CONFIG: '', UNRELATED: 'x' }), {});
  });
});

/**
 * The `tessera` command line, run from source as a child process (`node --import tsx
 * src/cli/main.ts ...`), and the precedence of its configuration sources.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { fromEnvironment, fromFile, resolveServerConfig } from '../src/cli/config-sources.js';
import { SERVER_DEFAULTS } from '../src/config/server-config.js';
import { identityModel, makeTempRepository, writeModel } from './support/fixtures.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');

interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A clean environment for the child: no TESSERA_* settings leak in from the test runner. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('TESSERA_') && !key.startsWith('NODE_TEST')) env[key] = value;
  return { ...env, ...extra };
}

function startCli(args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Collect a child's output until it exits (killed after `timeoutMs`). */
async function finish(child: ChildProcess, timeoutMs: number): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    return { code, signal, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<CliResult> {
  return finish(startCli(args, env), timeoutMs);
}

/** A TCP port that was free a moment ago (listen on 0, read it, close). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  const { port } = address;
  server.close();
  await once(server, 'close');
  return port;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('tessera CLI (child process)', () => {
  let mixed = '';
  let healthy = '';
  let scratch = '';

  before(async () => {
    mixed = await makeTempRepository('tessera-cli-mixed-');
    await writeModel(mixed, 'good', 1, identityModel('FP32', [-1, 4]));
    await writeModel(mixed, 'broken', 1, new TextEncoder().encode('not a model at all'));
    healthy = await makeTempRepository('tessera-cli-healthy-');
    await writeModel(healthy, 'good', 1, identityModel('FP32', [-1, 4]));
    await writeModel(healthy, 'good', 2, identityModel('FP32', [-1, 4]), { 'config.yaml': 'version_policy: { all: {} }\n' });
    scratch = await mkdtemp(path.join(tmpdir(), 'tessera-cli-files-'));
  });
  after(async () => {
    for (const dir of [mixed, healthy, scratch]) if (dir !== '') await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('models <repo>: a table, exit code 1 when a model is unavailable', async () => {
    const result = await runCli(['models', mixed]);
    assert.equal(result.code, 1, `stderr: ${result.stderr}`);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3, result.stdout);
    assert.match(lines[0]!, /^MODEL\s+VERSION\s+STATE\s+REASON$/);
    assert.match(lines[1]!, /^broken\s+1\s+UNAVAILABLE\s+onnxruntime could not load .*broken[/\\]1[/\\]model\.onnx/);
    assert.match(lines[2]!, /^good\s+1\s+READY\s*$/);
    // Columns line up.
    assert.equal(lines[1]!.indexOf('UNAVAILABLE'), lines[0]!.indexOf('STATE'));
    assert.equal(lines[2]!.indexOf('READY'), lines[0]!.indexOf('STATE'));
  });

  test("onnxruntime's usage telemetry is off unless ORT_DISABLE_TELEMETRY says otherwise", async () => {
    // onnxruntime, when its telemetry is on, leaves /tmp/mat-debug-<pid>.log behind for each
    // process that loads it. With the variable at 0 (the user's choice) it is there, which shows
    // the check can see it; unset, Tessera turns telemetry off and the file never appears.
    const traceOf = (pid: number | undefined): string => path.join('/tmp', `mat-debug-${pid}.log`);
    const exists = (file: string): Promise<boolean> => stat(file).then(() => true, () => false);
    const withoutVariable = childEnv();
    delete withoutVariable.ORT_DISABLE_TELEMETRY;
    const run = async (env: NodeJS.ProcessEnv): Promise<{ result: CliResult; trace: string }> => {
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'models', healthy], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      return { result: await finish(child, 20_000), trace: traceOf(child.pid) };
    };
    const [chosen, byDefault] = await Promise.all([run({ ...withoutVariable, ORT_DISABLE_TELEMETRY: '0' }), run(withoutVariable)]);
    try {
      assert.equal(chosen.result.code, 0, chosen.result.stderr);
      assert.equal(byDefault.result.code, 0, byDefault.result.stderr);
      assert.equal(await exists(chosen.trace), true, 'ORT_DISABLE_TELEMETRY=0 leaves onnxruntime telemetry on');
      assert.equal(await exists(byDefault.trace), false, 'telemetry is off by default');
    } finally {
      await rm(chosen.trace, { force: true });
      await rm(byDefault.trace, { force: true });
    }
  });

  test('models <repo> --json: the repository index; exit code 0 only when all are ready', async () => {
    const [result, mixedJson] = await Promise.all([runCli(['models', healthy, '--json']), runCli(['models', mixed, '--json'])]);
    assert.equal(result.code, 0, `stderr: ${result.stderr}`);
    assert.deepEqual(JSON.parse(result.stdout), [
      { name: 'good', version: '1', state: 'READY', reason: '' },
      { name: 'good', version: '2', state: 'READY', reason: '' },
    ]);
    assert.equal(mixedJson.code, 1, 'the exit code does not depend on the output format');
    const index = JSON.parse(mixedJson.stdout) as { name: string; state: string; reason: string }[];
    assert.deepEqual(index.map((e) => `${e.name}:${e.state}`), ['broken:UNAVAILABLE', 'good:READY']);
    assert.match(index[0]!.reason, /could not load/);
  });

  test('infer <model> --input file.json prints a V2 response', async () => {
    const input = path.join(scratch, 'request.json');
    await writeFile(input, JSON.stringify({ id: 'cli-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [[1, 2, 3, 4], [0.5, -0.5, 8, 16]] }] }));
    const [result, v1] = await Promise.all([
      runCli(['infer', 'good', '--input', input, '--model-repository', healthy]),
      runCli(['infer', 'good', '--input', input, '--model-repository', healthy, '--model-version', '1']),
    ]);
    assert.equal(result.code, 0, `stderr: ${result.stderr}`);
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'one JSON line');
    assert.deepEqual(JSON.parse(lines[0]!), {
      id: 'cli-1',
      model_name: 'good',
      model_version: '2',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 4], data: [1, 2, 3, 4, 0.5, -0.5, 8, 16] }],
    });
    assert.equal(v1.code, 0, v1.stderr);
    assert.equal((JSON.parse(v1.stdout) as { model_version: string }).model_version, '1');
  });

  test('infer: failures go to stderr with the error code, exit code 1', async () => {
    const input = path.join(scratch, 'bad-request.json');
    await writeFile(input, JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }));
    const [badShape, unknown] = await Promise.all([
      runCli(['infer', 'good', '--input', input, '--model-repository', healthy]),
      runCli(['infer', 'nope', '--input', input, '--model-repository', healthy]),
    ]);
    assert.equal(badShape.code, 1);
    assert.equal(badShape.stdout, '');
    assert.match(badShape.stderr, /^tessera infer: INVALID_INPUT_SHAPE: input 'x': expected shape \[-1,4\], got \[1,3\]/);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /tessera infer: MODEL_NOT_FOUND: model 'nope' is not in the repository/);
  });

  test('models / infer on a missing repository, serve with an invalid setting: one line on stderr, exit codes 1 and 2', async () => {
    const missing = path.join(scratch, 'no-such-repository');
    const input = path.join(scratch, 'any.json');
    await writeFile(input, '{}');
    const [models, infer, serve] = await Promise.all([
      runCli(['models', missing]),
      runCli(['infer', 'good', '--input', input, '--model-repository', missing]),
      runCli(['serve', '--model-repository', healthy, '--http-port', 'eighty']),
    ]);
    assert.equal(serve.code, 2);
    assert.match(serve.stderr, /invalid server configuration: httpPort: /);
    assert.equal(models.code, 1);
    assert.equal(models.stdout, '');
    assert.equal(models.stderr.trim(), `tessera models: REPOSITORY_UNAVAILABLE: cannot read model repository ${missing}: ENOENT: no such file or directory, scandir '${missing}'`);
    assert.equal(infer.code, 1);
    assert.match(infer.stderr, /^tessera infer: REPOSITORY_UNAVAILABLE: cannot read model repository /);
    assert.equal(infer.stderr.trim().split('\n').length, 1, 'no stack trace');
  });

  test('serve: answers on the port given, then exits 0 on SIGTERM', async (t) => {
    const port = await freePort();
    // The other listeners (gRPC, metrics, management) take any free port: their defaults may be in use.
    const others = ['--grpc-port', '0', '--metrics-port', '0', '--management-port', '0'];
    const child = startCli(['serve', '--model-repository', mixed, '--http-port', String(port), '--host', '127.0.0.1', '--strict-readiness', 'false', ...others], {
      TESSERA_LOG_LEVEL: 'warn',
    });
    const exited = finish(child, 30_000);
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const base = `http://127.0.0.1:${port}`;
    let ready: Response | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        ready = await fetch(`${base}/v2/health/ready`);
        break;
      } catch {
        await sleep(100);
      }
    }
    assert.ok(ready !== undefined, `the server never answered (exit code ${child.exitCode})`);
    // --strict-readiness false: ready although 'broken' is unavailable.
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { ready: true });
    const inferred = await fetch(`${base}/v2/models/good/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [9, 8, 7, 6] }] }),
    });
    assert.equal(inferred.status, 200);
    assert.deepEqual(((await inferred.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, [9, 8, 7, 6]);

    const signalled = performance.now();
    child.kill('SIGTERM');
    const result = await Promise.race([exited, sleep(5_000).then(() => undefined)]);
    assert.ok(result !== undefined, 'serve did not exit within 5 s of SIGTERM');
    t.diagnostic(`exited ${(performance.now() - signalled).toFixed(0)} ms after SIGTERM`);
    assert.equal(result.signal, null);
    assert.equal(result.code, 0, `stderr: ${result.stderr}`);
    // log level warn (from the environment): no info lines.
    assert.doesNotMatch(result.stdout, /"level":30/);
  });

});

// ---------------------------------------------------------------------------
// Configuration sources: flags > TESSERA_* environment > config file > defaults
// ---------------------------------------------------------------------------

describe('resolveServerConfig precedence', () => {
  let dir = '';
  let yamlFile = '';
  let jsonFile = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tessera-config-sources-'));
    yamlFile = path.join(dir, 'tessera.yaml');
    await writeFile(
      yamlFile,
      ['model_repository: /from/file', 'http_port: 1111', 'log_level: debug', 'max_queue_size: 5', 'strict_readiness: false', 'shutdown-grace-ms: 1234'].join('\n'),
    );
    jsonFile = path.join(dir, 'tessera.json');
    await writeFile(jsonFile, JSON.stringify({ modelRepository: '/from/json', httpPort: 4444 }));
  });
  after(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  test('defaults when nothing is given', () => {
    const config = resolveServerConfig({}, {});
    assert.equal(config.modelRepository, SERVER_DEFAULTS.modelRepository);
    assert.equal(config.httpPort, SERVER_DEFAULTS.httpPort);
    assert.equal(config.host, SERVER_DEFAULTS.host);
    assert.equal(config.strictReadiness, true);
    assert.ok(Object.isFrozen(config));
  });

  test('file < environment < flags, key by key', () => {
    const env = { TESSERA_CONFIG: yamlFile, TESSERA_HTTP_PORT: '2222', TESSERA_LOG_LEVEL: 'warn', TESSERA_MODEL_REPOSITORY: '/from/env' };
    const config = resolveServerConfig({ httpPort: '3333', modelRepository: '/from/flag' }, env);
    assert.equal(config.httpPort, 3333, 'flag beats env and file');
    assert.equal(config.modelRepository, '/from/flag');
    assert.equal(config.logLevel, 'warn', 'env beats file');
    assert.equal(config.maxQueueSize, 5, 'file beats default');
    assert.equal(config.strictReadiness, false, 'snake_case file keys');
    assert.equal(config.shutdownGraceMs, 1234, 'kebab-case file keys');
    assert.equal(config.host, SERVER_DEFAULTS.host, 'default where no source says anything');

    const envOnly = resolveServerConfig({}, env);
    assert.equal(envOnly.httpPort, 2222);
    assert.equal(envOnly.modelRepository, '/from/env');
    const fileOnly = resolveServerConfig({}, { TESSERA_CONFIG: yamlFile });
    assert.equal(fileOnly.httpPort, 1111);
    assert.equal(fileOnly.logLevel, 'debug');
    assert.equal(fileOnly.modelRepository, '/from/file');
  });

  test('--config beats TESSERA_CONFIG; JSON files work', () => {
    const config = resolveServerConfig({ config: jsonFile }, { TESSERA_CONFIG: yamlFile });
    assert.equal(config.modelRepository, '/from/json');
    assert.equal(config.httpPort, 4444);
    assert.equal(config.maxQueueSize, SERVER_DEFAULTS.maxQueueSize, 'the YAML file is not read at all');
  });

  test('strings from flags and env are typed by the schema', () => {
    const config = resolveServerConfig(
      { strictReadiness: 'false', maxQueueSize: '17', bodyLimitBytes: '2048' },
      { TESSERA_SHUTDOWN_GRACE_MS: '0', TESSERA_RETRY_AFTER_SECONDS: '3', TESSERA_HOST: '127.0.0.1' },
    );
    assert.equal(config.strictReadiness, false);
    assert.equal(config.maxQueueSize, 17);
    assert.equal(config.bodyLimitBytes, 2048);
    assert.equal(config.shutdownGraceMs, 0);
    assert.equal(config.retryAfterSeconds, 3);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(resolveServerConfig({}, { TESSERA_STRICT_READINESS: '1' }).strictReadiness, true);
    assert.deepEqual(fromEnvironment({ TESSERA_HTTP_PORT: '', UNRELATED: 'x', TESSERA_NOT_A_SETTING: 'y' }), {}, 'empty and unknown variables are ignored');
  });

  test('invalid values from any source are refused, naming the setting', () => {
    assert.throws(() => resolveServerConfig({ httpPort: 'eighty' }, {}), /invalid server configuration: httpPort: /);
    assert.throws(() => resolveServerConfig({}, { TESSERA_HTTP_PORT: '70000' }), /httpPort/);
    assert.throws(() => resolveServerConfig({}, { TESSERA_STRICT_READINESS: 'maybe' }), /strictReadiness/);
    assert.throws(() => resolveServerConfig({}, { TESSERA_LOG_LEVEL: 'loud' }), /logLevel/);
    assert.throws(() => resolveServerConfig({ config: path.join(dir, 'missing.yaml') }, {}), /ENOENT/);
  });

  test('a config file must be a mapping, and its unknown keys are refused', async () => {
    const list = path.join(dir, 'list.yaml');
    await writeFile(list, '- a\n- b\n');
    assert.throws(() => fromFile(list), /expected a mapping of settings/);
    const unknown = path.join(dir, 'unknown.yaml');
    await writeFile(unknown, 'http_prot: 80\n');
    assert.throws(() => resolveServerConfig({ config: unknown }, {}), /httpProt/);
  });
});

/**
 * The `tessera` command line, run from source as a child process (`node --import tsx
 * src/cli/main.ts ...`), and the precedence of its configuration sources.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
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

interface Serving {
  readonly child: ChildProcess;
  /** Its output, once it exited. */
  readonly exited: Promise<CliResult>;
  /** Base URL of its HTTP listener. */
  readonly base: string;
  /** Its first answer from /v2/health/ready. */
  readonly ready: Response;
}

/**
 * `tessera serve` on a free HTTP port (the other listeners on any free port: their defaults may
 * be in use), once /v2/health/ready answers. Killed when the test ends, if still running.
 */
async function serveUntilReady(t: TestContext, args: readonly string[], env: Record<string, string> = {}): Promise<Serving> {
  const port = await freePort();
  const others = ['--grpc-port', '0', '--metrics-port', '0', '--management-port', '0'];
  const child = startCli(['serve', '--http-port', String(port), '--host', '127.0.0.1', ...others, ...args], env);
  const exited = finish(child, 30_000);
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      return { child, exited, base, ready: await fetch(`${base}/v2/health/ready`) };
    } catch {
      await sleep(100);
    }
  }
  const result = await Promise.race([exited, sleep(1_000).then(() => undefined)]);
  assert.fail(`the server never answered (exit code ${child.exitCode}); stderr: ${result?.stderr ?? ''}`);
}

/** SIGTERM, then the exit within `withinMs`. */
async function terminate(serving: Serving, withinMs = 5_000): Promise<CliResult> {
  serving.child.kill('SIGTERM');
  const result = await Promise.race([serving.exited, sleep(withinMs).then(() => undefined)]);
  assert.ok(result !== undefined, `serve did not exit within ${withinMs} ms of SIGTERM`);
  return result;
}

const inferBody = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [9, 8, 7, 6] }] });

/** The variables by which onnxruntime (1.30) tells a CI machine, where it keeps its telemetry off. */
const ONNXRUNTIME_CI_VARIABLES = [
  'CI',
  'TF_BUILD',
  'GITHUB_ACTIONS',
  'GITLAB_CI',
  'CIRCLECI',
  'TRAVIS',
  'JENKINS_URL',
  'CODEBUILD_BUILD_ID',
  'BUILDKITE',
  'TEAMCITY_VERSION',
  'APPVEYOR',
  'BITBUCKET_BUILD_NUMBER',
];

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
    // onnxruntime, when its telemetry is on, leaves mat-debug-<pid>.log in $TMPDIR (or /tmp) for
    // each process that loads it. Each child gets a TMPDIR of its own, so the check does not
    // depend on where the test runner's temporary files go. With the variable at 0 (the user's
    // choice) the trace is there, which shows the check can see it; unset, Tessera turns telemetry
    // off and no trace appears.
    const withoutVariable = childEnv();
    delete withoutVariable.ORT_DISABLE_TELEMETRY;
    // onnxruntime also keeps telemetry off on a CI machine, which it tells by these variables:
    // without them the user's choice of 0 is what decides, wherever the test runs.
    for (const name of ONNXRUNTIME_CI_VARIABLES) delete withoutVariable[name];
    const run = async (name: string, env: NodeJS.ProcessEnv): Promise<{ result: CliResult; traces: string[] }> => {
      const tmp = path.join(scratch, name);
      await mkdir(tmp);
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'models', healthy], { cwd: ROOT, env: { ...env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] });
      const result = await finish(child, 20_000);
      return { result, traces: (await readdir(tmp)).filter((file) => /^mat-debug-\d+\.log$/.test(file)) };
    };
    const [chosen, byDefault] = await Promise.all([
      run('telemetry-chosen', { ...withoutVariable, ORT_DISABLE_TELEMETRY: '0' }),
      run('telemetry-default', withoutVariable),
    ]);
    assert.equal(chosen.result.code, 0, chosen.result.stderr);
    assert.equal(byDefault.result.code, 0, byDefault.result.stderr);
    assert.notDeepEqual(chosen.traces, [], 'ORT_DISABLE_TELEMETRY=0 leaves onnxruntime telemetry on');
    assert.deepEqual(byDefault.traces, [], 'telemetry is off by default');
  });

  test("models <repo>: the same order whatever the server's locale (code units, as Triton's index)", async (t) => {
    const repo = await makeTempRepository('tessera-cli-order-');
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    for (const name of ['zebra', 'aardvark', 'Beta', 'alpha']) await writeModel(repo, name, 1, identityModel('FP32', [-1, 4]));
    // Danish sorts "aa" after "z", and case apart: a locale-aware sort would list them otherwise.
    const [danish, plain] = await Promise.all([runCli(['models', repo, '--json'], { LC_ALL: 'da_DK.UTF-8' }), runCli(['models', repo, '--json'], { LC_ALL: 'C' })]);
    for (const result of [danish, plain]) {
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual((JSON.parse(result.stdout) as { name: string }[]).map((entry) => entry.name), ['Beta', 'aardvark', 'alpha', 'zebra']);
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
    assert.equal(serve.stderr, "tessera: invalid server configuration: --http-port: expected an integer, got 'eighty'\n");
    assert.equal(models.code, 1);
    assert.equal(models.stdout, '');
    assert.equal(models.stderr.trim(), `tessera models: REPOSITORY_UNAVAILABLE: cannot read model repository ${missing}: ENOENT: no such file or directory, scandir '${missing}'`);
    assert.equal(infer.code, 1);
    assert.match(infer.stderr, /^tessera infer: REPOSITORY_UNAVAILABLE: cannot read model repository /);
    assert.equal(infer.stderr.trim().split('\n').length, 1, 'no stack trace');
  });

  test('serve: answers on the port given, then exits 0 on SIGTERM', async (t) => {
    const serving = await serveUntilReady(t, ['--model-repository', mixed, '--strict-readiness', 'false'], { TESSERA_LOG_LEVEL: 'warn' });
    // --strict-readiness false: ready although 'broken' is unavailable.
    assert.equal(serving.ready.status, 200);
    assert.deepEqual(await serving.ready.json(), { ready: true });
    const inferred = await fetch(`${serving.base}/v2/models/good/infer`, { method: 'POST', body: inferBody });
    assert.equal(inferred.status, 200);
    assert.deepEqual(((await inferred.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, [9, 8, 7, 6]);

    const signalled = performance.now();
    const result = await terminate(serving);
    t.diagnostic(`exited ${(performance.now() - signalled).toFixed(0)} ms after SIGTERM`);
    assert.equal(result.signal, null);
    assert.equal(result.code, 0, `stderr: ${result.stderr}`);
    // log level warn (from the environment): no info lines.
    assert.doesNotMatch(result.stdout, /"level":30/);
  });

  test('serve --tracing false: serves untraced although TESSERA_TRACING_ENDPOINT is set (docs/tracing.md)', async (t) => {
    // A collector that takes every export, so shutdown does not wait on retries.
    const collector = createHttpServer((request, response) => request.resume().on('end', () => response.end()));
    collector.listen(0, '127.0.0.1');
    await once(collector, 'listening');
    t.after(() => collector.close());
    const endpoint = { TESSERA_TRACING_ENDPOINT: `http://127.0.0.1:${(collector.address() as { port: number }).port}/v1/traces`, TESSERA_LOG_LEVEL: 'warn' };
    const [off, on] = await Promise.all([
      serveUntilReady(t, ['--model-repository', healthy, '--tracing', 'false'], endpoint),
      // The same without the flag: the endpoint turns tracing on, so the check below can see it.
      serveUntilReady(t, ['--model-repository', healthy], endpoint),
    ]);
    const traceparent = async (serving: Serving): Promise<string | null> => {
      const response = await fetch(`${serving.base}/v2/models/good/infer`, { method: 'POST', body: inferBody });
      assert.equal(response.status, 200);
      return response.headers.get('traceparent');
    };
    assert.equal(await traceparent(off), null, '--tracing false: no span, so no traceparent');
    assert.match((await traceparent(on)) ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    for (const result of await Promise.all([terminate(off), terminate(on)])) assert.equal(result.code, 0, result.stderr);
  });

  test('serve --shutdown-grace-ms 1100000000: SIGTERM still drains and exits 0 (the watchdog timer cannot overflow)', async (t) => {
    const serving = await serveUntilReady(t, ['--model-repository', healthy, '--shutdown-grace-ms', '1100000000']);
    const result = await terminate(serving);
    assert.equal(result.code, 0, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
    assert.doesNotMatch(result.stdout, /shutdown did not finish in time/);
  });

  test('serve: settings refused at configuration time, one line on stderr naming the setting and value, exit code 2', async () => {
    const folder = path.join(scratch, 'config-folder');
    await mkdir(folder, { recursive: true });
    // Other listeners on free ports: a regression that starts the server must not take the defaults.
    const base = ['--model-repository', healthy, '--host', '127.0.0.1', '--grpc-port', '0', '--metrics-port', '0', '--management-port', '0'];
    const cases: [args: string[], env: Record<string, string>, stderr: string | RegExp][] = [
      [['--http-port', '0x1F90'], {}, "tessera: invalid server configuration: --http-port: expected an integer, got '0x1F90'"],
      [[], { TESSERA_HTTP_PORT: 'abc', TESSERA_CONFIG: '' }, "tessera: invalid server configuration: TESSERA_HTTP_PORT: expected an integer, got 'abc'"],
      [['--shutdown-delay-ms', '2147483648'], {}, /^tessera: invalid server configuration: shutdownDelayMs: expected at most 2147483647 ms .*, got 2147483648$/],
      [['--repository-poll-secs', '3000000'], {}, /^tessera: invalid server configuration: repositoryPollSecs: expected at most 2147483 s .*, got 3000000$/],
      [['--tracing-endpoint', 'ftp://127.0.0.1/x'], {}, /^tessera: invalid server configuration: tracingEndpoint: expected an http:\/\/ or https:\/\/ URL/],
      [['--audit-dir', path.join(scratch, 'audit'), '--audit-keep-files', '200000'], {}, /^tessera: invalid server configuration: auditKeepFiles: .*100000$/],
      [['--config', folder], {}, `tessera: ${folder}: EISDIR: illegal operation on a directory, read`],
    ];
    const httpPort = (args: string[], env: Record<string, string>): string[] => (args.includes('--http-port') || 'TESSERA_HTTP_PORT' in env ? [] : ['--http-port', '0']);
    const results = await Promise.all(cases.map(([args, env]) => runCli(['serve', ...base, ...httpPort(args, env), ...args], env)));
    for (const [i, result] of results.entries()) {
      const [args, env, expected] = cases[i]!;
      const what = JSON.stringify({ args, env });
      assert.equal(result.code, 2, `${what}: ${result.stderr}`);
      assert.equal(result.stderr.split('\n').length, 2, `${what}: one line: ${result.stderr}`);
      if (typeof expected === 'string') assert.equal(result.stderr.trim(), expected, what);
      else assert.match(result.stderr.trim(), expected, what);
    }
  });

  test('serve: a failed start says why in one line on stderr, whatever the log level, exit code 1', async () => {
    const empty = path.join(scratch, 'empty-repository');
    await mkdir(empty, { recursive: true });
    // A port another process holds: the message names the setting that chose it.
    const holder = createServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const taken = (holder.address() as { port: number }).port;
    const listeners = (grpc: string): string[] => ['--host', '127.0.0.1', '--http-port', '0', '--grpc-port', grpc, '--metrics-port', '0', '--management-port', '0'];
    try {
      const missing = path.join(scratch, 'no-such-repository');
      const [portInUse, silentMissing, loggedMissing] = await Promise.all([
        runCli(['serve', '--model-repository', empty, '--log-level', 'silent', ...listeners(String(taken))]),
        runCli(['serve', '--model-repository', missing, '--log-level', 'silent', ...listeners('0')]),
        runCli(['serve', '--model-repository', missing, ...listeners('0')]),
      ]);
      assert.equal(portInUse.code, 1);
      assert.match(portInUse.stderr, new RegExp(`^tessera: --grpc-port ${taken}: address 127\\.0\\.0\\.1:${taken} is in use$`, 'm'));
      assert.equal(portInUse.stdout, '', 'silent: no log line');
      assert.equal(silentMissing.code, 1);
      assert.equal(silentMissing.stderr.trim(), `tessera: cannot read model repository ${missing}: ENOENT: no such file or directory, scandir '${missing}'`);
      assert.equal(silentMissing.stdout, '');
      // At other log levels the fatal log line (with the stack) is still written.
      assert.equal(loggedMissing.code, 1);
      assert.equal(loggedMissing.stderr.trim(), silentMissing.stderr.trim());
      assert.match(loggedMissing.stdout, /"level":60.*"msg":"tessera could not start"/);
    } finally {
      holder.close();
    }
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
    assert.throws(() => resolveServerConfig({ httpPort: 'eighty' }, {}), /invalid server configuration: --http-port: expected an integer, got 'eighty'/);
    assert.throws(() => resolveServerConfig({}, { TESSERA_HTTP_PORT: '70000' }), /httpPort/);
    assert.throws(() => resolveServerConfig({}, { TESSERA_STRICT_READINESS: 'maybe' }), /TESSERA_STRICT_READINESS: expected true or false, got 'maybe'/);
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

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { registerRoutingCommands } from '../src/routing/cli.js';
import { makeTempRepository } from './support/fixtures.js';
import { postJson, startTestServer, writeFakeModel } from './support/server.js';

/** The rollout commands against a real server's management API. */

const io = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 4], copy_of: 'x' }] };

/** Run `tessera <args>` in-process (the same commands main.ts registers); returns stdout, stderr, exit code. */
async function tessera(args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  let code = 0;
  const program = new Command('tessera').exitOverride();
  registerRoutingCommands(program, {
    out: (text) => (out += text),
    err: (text) => (err += text),
    env: {},
    fail: (c) => (code = c),
  });
  await program.parseAsync(args, { from: 'user' });
  return { out, err, code };
}

/** A port nothing listens on. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('rollout CLI', () => {
  test('traffic, alias, canary and shadow commands', async (t) => {
    const repo = await makeTempRepository();
    t.after(() => rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const config = 'max_batch_size: 8\nversion_policy:\n  all: {}\n';
    for (const version of [1, 2]) await writeFakeModel(repo, 'fake', version, io, config);
    const server = await startTestServer(t, repo);
    const url = ['--management-url', `http://127.0.0.1:${server.managementPort}`];

    const split = await tessera(['traffic', 'set', 'fake', '1=90,2=10', ...url]);
    assert.equal(split.code, 0, split.err);
    assert.equal(split.out, 'model fake: split 1=90 2=10; default version 2; ready versions 1, 2\n');
    assert.equal((await tessera(['traffic', 'clear', 'fake', ...url])).out, 'model fake: no split; default version 2; ready versions 1, 2\n');
    assert.equal((await tessera(['traffic', 'default', 'fake', '1', ...url])).out, 'model fake: no split; default version 1 (pinned: 1); ready versions 1, 2\n');

    assert.equal((await tessera(['alias', 'set', 'fake', 'stable', '1', ...url])).out, 'model fake: aliases stable -> 1\n');
    assert.equal((await tessera(['alias', 'set', 'fake', 'stable', '2', ...url])).out, 'model fake: aliases stable -> 2\n');
    assert.equal((await tessera(['alias', 'rollback', 'fake', 'stable', ...url])).out, 'model fake: aliases stable -> 1\n');

    const started = await tessera(['canary', 'start', 'fake', '--version', '2', '--steps', '10,50,100', '--hold', '1h', '--min-requests', '5', ...url]);
    assert.equal(started.code, 0, started.err);
    assert.match(started.out, /^model fake: canary of version 2 against version 1: running, step 1\/3 at 10%, held \d+\.\ds of 1h \(steps 10% 50% 100%\)\n/);
    for (let i = 0; i < 20; i++) await postJson(`${server.httpUrl}/v2/models/fake/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    const status = await tessera(['canary', 'status', 'fake', ...url]);
    assert.match(status.out, /window    requests  errors  error rate  p50 ms  p99 ms\n  canary +\d+ +0 +0\.0%/);
    assert.match(status.out, /decisions:\n    \S+  start     step 1   10%  canary of fake version 2 against version 1/);
    const json = JSON.parse((await tessera(['canary', 'status', 'fake', '--json', ...url])).out) as { phase: string; share: number };
    assert.deepEqual([json.phase, json.share], ['running', 10]);
    const busy = await tessera(['canary', 'start', 'fake', '--version', '2', ...url]);
    assert.equal(busy.code, 1);
    assert.match(busy.err, /^tessera: model 'fake' has a canary of version 2 running; abort it first .* \(HTTP 409\)\n$/);
    const aborted = await tessera(['canary', 'abort', 'fake', ...url]);
    assert.match(aborted.out, /^model fake: canary of version 2 against version 1: ABORTED at \S+: aborted by the operator\n/);

    assert.match((await tessera(['shadow', 'set', 'fake', '--version', '2', '--share', '0.5', ...url])).out, /^model fake: shadow version 2, 50\.0% of traffic, at most 4 in flight\n/);
    assert.match((await tessera(['shadow', 'stop', 'fake', ...url])).out, /^model fake: no shadow\n/);
    assert.match((await tessera(['rollout', 'status', 'fake', ...url])).out, /model fake: no circuit breakers in use\n$/);

    const bad = await tessera(['traffic', 'set', 'fake', '1=ninety', ...url]);
    assert.deepEqual([bad.code, bad.err], [1, "tessera: '1=ninety' is not version=weight (e.g. 1=90,2=10)\n"]);
    const unknown = await tessera(['canary', 'status', 'nope', ...url]);
    assert.deepEqual([unknown.code, unknown.err], [1, "tessera: model 'nope' is not in the repository (HTTP 404)\n"]);
    const closed = await freePort();
    const down = await tessera(['canary', 'status', 'fake', '--management-url', `http://127.0.0.1:${closed}`]);
    assert.deepEqual([down.code, down.err], [1, `tessera: cannot reach the management API at http://127.0.0.1:${closed}: ECONNREFUSED\n`]);
  });

  test('the tessera binary has the commands, and --version after a subcommand is the subcommand\'s', async () => {
    const run = (args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: new URL('..', import.meta.url) }).catch((error: { stdout: string; stderr: string }) => error);
    const help = await run(['canary', '--help']);
    assert.match(help.stdout, /start \[options\] <model>/);
    assert.match(help.stdout, /abort \[options\] <model>/);
    const closed = await freePort();
    const start = await run(['canary', 'start', 'm', '--version', '3', '--management-url', `http://127.0.0.1:${closed}`]);
    assert.equal(start.stdout, '');
    assert.match(start.stderr, /cannot reach the management API/);
    assert.match((await run(['--version'])).stdout, /^\d+\.\d+\.\d+\n$/);
  });
});

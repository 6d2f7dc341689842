/**
 * `tessera batch` keeps its outputs true to the model and the input: a resumed job refuses a
 * model that changed under its checkpoint, a remote endpoint refusing the credentials stops the
 * job instead of failing rows, JSON Lines keys named like Object.prototype members are read as
 * the row has them, BYTES text is taken literally, `--labels` reads as labels.txt does, values
 * beyond FP32/FP16 range are row errors, and a NaN in a classified output wins its argmax.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { parquetReadObjects } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';

import { runBatchJob, type BatchJobOptions, type BatchSummary } from '../src/batch/job.js';
import { TesseraError } from '../src/core/errors.js';
import { identityModel, makeTempRepository, writeModel } from './support/fixtures.js';
import { GraphBuilder } from './support/onnx-builder.js';
import { writeFakeModel } from './support/server.js';
import { batchJobOptions, QUIET } from './support/batch.js';

type Row = Record<string, unknown>;

const quiet = QUIET;

function options(overrides: Partial<BatchJobOptions> & Pick<BatchJobOptions, 'input' | 'output' | 'model'>): BatchJobOptions {
  return batchJobOptions({ repository, timeoutMs: 10_000, ...overrides });
}

function run(job: BatchJobOptions): Promise<BatchSummary> {
  return runBatchJob(job, { stdout: quiet, stderr: quiet });
}

/** Run a job interrupted before it reads anything: it leaves a checkpoint of itself behind. */
async function leaveCheckpoint(job: BatchJobOptions): Promise<void> {
  const interrupt = new AbortController();
  interrupt.abort();
  const summary = await runBatchJob(job, { stdout: quiet, stderr: quiet, interrupt: interrupt.signal });
  assert.equal(summary.status, 'interrupted');
  await stat(path.join(`${job.output}.parts`, 'manifest.json'));
}

async function rejectsWith(job: BatchJobOptions, code: string, message: RegExp): Promise<void> {
  await assert.rejects(run(job), (error: unknown) => {
    assert.ok(error instanceof TesseraError, String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    return true;
  });
}

async function readOutput(file: string): Promise<Row[]> {
  if (file.endsWith('.parquet')) {
    const bytes = await readFile(file);
    return (await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) })) as Row[];
  }
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Row);
}

const FAKE_X2 = { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x', add: 1 }] };

/** A V2 endpoint of one model `m` (x FP32 [-1,2] -> y = x + 1) whose answers the test sets. */
async function startEndpoint(): Promise<{ url: string; state: { versions: string[]; inferStatus: number; inferCalls: number }; close: () => Promise<void> }> {
  const state = { versions: ['1'], inferStatus: 200, inferCalls: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (piece: Buffer) => (body += piece.toString('utf8')));
    req.on('end', () => {
      const send = (status: number, answer: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer));
      };
      if (req.method === 'GET' && req.url === '/v2/models/m') {
        return send(200, { name: 'm', versions: state.versions, platform: 'test', inputs: FAKE_X2.inputs, outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }] });
      }
      if (req.method === 'GET' && req.url === '/v2/models/m/config') return send(200, { max_batch_size: 64 });
      if (req.url === '/v2/models/m/infer') {
        state.inferCalls++;
        if (state.inferStatus !== 200) return send(state.inferStatus, { error: `refused with ${state.inferStatus}` });
        const x = (JSON.parse(body) as { inputs: { shape: number[]; data: number[] }[] }).inputs[0]!;
        return send(200, { model_name: 'm', outputs: [{ name: 'y', datatype: 'FP32', shape: x.shape, data: x.data.map((v) => v + 1) }] });
      }
      send(404, { error: 'no route' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, state, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

let work: string;
let repository: string;
let pairs: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'tessera-batch-integrity-'));
  repository = await makeTempRepository();
  await writeModel(repository, 'id4', 1, identityModel('FP32', [-1, 4]));
  await writeModel(repository, 'id9', 1, identityModel('FP32', [-1, 9]));
  await writeModel(repository, 'idbytes', 1, identityModel('BYTES', [-1]));
  await writeModel(repository, 'idbytes2', 1, identityModel('BYTES', [-1, 2]));
  await writeModel(repository, 'id4half', 1, identityModel('FP16', [-1, 4]));
  await writeFakeModel(repository, 'echo', 1, FAKE_X2);
  pairs = path.join(work, 'pairs.jsonl');
  await writeFile(pairs, Array.from({ length: 40 }, (_, i) => JSON.stringify({ a: i, b: 0 })).join('\n') + '\n');
});

after(async () => {
  await rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  await rm(repository, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

describe('resuming with a changed model', () => {
  test('a new version in the repository, or the model file replaced in place, is refused, naming what changed', async () => {
    const models = await makeTempRepository();
    try {
      await writeFakeModel(models, 'm', 1, FAKE_X2);
      const job = (output: string, restart = false): BatchJobOptions =>
        options({ model: 'm', repository: models, input: pairs, output, features: ['a,b'], classify: null, batchSize: 8, chunkRows: 8, restart });

      // A version 2 appears: the job would score the rest of its rows with it.
      const first = path.join(work, 'new-version.jsonl');
      await leaveCheckpoint(job(first));
      await writeFakeModel(models, 'm', 2, { ...FAKE_X2, outputs: [{ ...FAKE_X2.outputs[0]!, add: 100 }] });
      await rejectsWith(job(first), 'BATCH_CHECKPOINT_CONFLICT', /changed since it was written: the model version \(was "1", now "2"\), the model's files or configuration/);
      const restarted = await run(job(first, true));
      assert.equal(restarted.rows, 40);
      assert.ok((await readOutput(first)).every((row, i) => row['y_0'] === i + 100));

      // Version 2's file replaced in place: same signature, same version, another model.
      const second = path.join(work, 'replaced.jsonl');
      await leaveCheckpoint(job(second));
      const file = path.join(models, 'm', '2', 'model.json');
      await writeFile(file, JSON.stringify({ ...FAKE_X2, outputs: [{ ...FAKE_X2.outputs[0]!, add: 200 }] }));
      // A later modification time, as a copy made a moment later would have (however coarse the clock).
      const later = new Date(Date.now() + 5000);
      await utimes(file, later, later);
      await rejectsWith(job(second), 'BATCH_CHECKPOINT_CONFLICT', /changed since it was written: the model's files or configuration\)/);

      // The config changed, nothing else the job records: refused too.
      const third = path.join(work, 'config.jsonl');
      await leaveCheckpoint(job(third));
      await writeFile(path.join(models, 'm', 'config.yaml'), 'backend: fake\nmax_batch_size: 64\n');
      await rejectsWith(job(third), 'BATCH_CHECKPOINT_CONFLICT', /changed since it was written: the model's files or configuration\)/);

      // Nothing changed: resumed.
      const fourth = path.join(work, 'same.jsonl');
      await leaveCheckpoint(job(fourth));
      const resumed = await run(job(fourth));
      assert.equal(resumed.rows, 40);
    } finally {
      await rm(models, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    }
  });

  test('remote: a version the server lists that it did not list before is refused', async () => {
    const endpoint = await startEndpoint();
    try {
      const output = path.join(work, 'remote-versions.jsonl');
      const job = options({ model: 'm', url: endpoint.url, input: pairs, output, features: ['a,b'], classify: null, batchSize: 8, chunkRows: 8 });
      await leaveCheckpoint(job);
      endpoint.state.versions = ['1', '2'];
      await rejectsWith(job, 'BATCH_CHECKPOINT_CONFLICT', /the model versions the server lists \(was \["1"\], now \["1","2"\]\)/);
    } finally {
      await endpoint.close();
    }
  });
});

describe('remote refusals that no row causes', () => {
  test('401, 403, 404 and 405 from /infer stop the job at once with their own code; nothing is checkpointed', async () => {
    const endpoint = await startEndpoint();
    try {
      const cases: [number, string, RegExp][] = [
        [401, 'UNAUTHENTICATED', /\/v2\/models\/m\/infer: the server refused the request as unauthenticated \(401\): refused with 401/],
        [403, 'PERMISSION_DENIED', /denied access \(403\)/],
        [404, 'MODEL_NOT_FOUND', /no such model or version \(404\)/],
        [405, 'ROUTE_NOT_FOUND', /\(405\)/],
      ];
      for (const [status, code, message] of cases) {
        endpoint.state.inferStatus = status;
        endpoint.state.inferCalls = 0;
        const output = path.join(work, `remote-${status}.jsonl`);
        await rejectsWith(options({ model: 'm', url: endpoint.url, input: pairs, output, features: ['a,b'], classify: null, batchSize: 8, chunkRows: 8, concurrency: 1 }), code, message);
        assert.ok(endpoint.state.inferCalls <= 2, `${status}: ${endpoint.state.inferCalls} requests sent`);
        await assert.rejects(stat(`${output}.parts`), `${status}: no checkpoint of rows failed for the job's reason`);
        await assert.rejects(stat(output));
      }
      // Once the server takes the requests, the same command scores every row.
      endpoint.state.inferStatus = 200;
      const output = path.join(work, 'remote-401.jsonl');
      const summary = await run(options({ model: 'm', url: endpoint.url, input: pairs, output, features: ['a,b'], classify: null, batchSize: 8, chunkRows: 8 }));
      assert.deepEqual([summary.rows, summary.errors], [40, 0]);
    } finally {
      await endpoint.close();
    }
  });
});

describe('JSON Lines keys named like Object.prototype members', () => {
  test('a row without them reads null, with or without the reader thread', async () => {
    const input = path.join(work, 'proto.jsonl');
    await writeFile(
      input,
      [
        { id: 1, constructor: 'ctor-A', toString: 'text-A', a: 1, b: 2 },
        { id: 2, a: 3, b: 4 },
      ]
        .map((row) => JSON.stringify(row))
        .join('\n') + '\n',
    );
    for (const readerThread of [true, false]) {
      const output = path.join(work, `proto-${readerThread}.jsonl`);
      const summary = await run(options({ model: 'echo', input, output, features: ['a,b'], passthrough: ['id', 'constructor', 'toString'], classify: null, readerThread }));
      assert.equal(summary.errors, 0);
      const rows = await readOutput(output);
      assert.deepEqual(
        rows.map((row) => [row['id'], row['constructor'], row['toString'], row['y_0']]),
        [
          [1, 'ctor-A', 'text-A', 2],
          [2, null, null, 4],
        ],
        `reader thread ${readerThread}`,
      );
    }
  });
});

describe('BYTES inputs', () => {
  test('one value a row: text is taken as it is, brackets included; several values a row: JSON arrays', async () => {
    const input = path.join(work, 'bytes.csv');
    await writeFile(input, 'id,x\n1,plain text\n2,[Spoiler] great movie\n3,"[""quoted""]"\n4,"[1, 2]"\n');
    const output = path.join(work, 'bytes.jsonl');
    const summary = await run(options({ model: 'idbytes', input, output, passthrough: ['id'] }));
    assert.equal(summary.errors, 0);
    assert.deepEqual(
      (await readOutput(output)).map((row) => row['y']),
      ['plain text', '[Spoiler] great movie', '["quoted"]', '[1, 2]'],
    );

    const pairInput = path.join(work, 'bytes2.csv');
    await writeFile(pairInput, 'x\n"[""a"",""b""]"\n"[""[c]"",""d""]"\n');
    const pairOutput = path.join(work, 'bytes2.jsonl');
    await run(options({ model: 'idbytes2', input: pairInput, output: pairOutput }));
    assert.deepEqual(
      (await readOutput(pairOutput)).map((row) => [row['y_0'], row['y_1'], row['error']]),
      [
        ['a', 'b', null],
        ['[c]', 'd', null],
      ],
    );
  });
});

describe('--labels', () => {
  test('the same file gives the same labels as the model\'s labels.txt: line n names class n, blank lines included', async () => {
    const models = await makeTempRepository();
    try {
      const labels = 'zero\n\ntwo\n three\n';
      await writeModel(models, 'id4', 1, identityModel('FP32', [-1, 4]), { 'labels.txt': labels });
      const labelsFile = path.join(work, 'labels.txt');
      await writeFile(labelsFile, labels);
      const input = path.join(work, 'labels.jsonl');
      await writeFile(input, '{"a":0,"b":0,"c":9,"d":0}\n{"a":0,"b":9,"c":0,"d":0}\n{"a":0,"b":0,"c":0,"d":9}\n');
      const results: unknown[] = [];
      for (const file of [undefined, labelsFile]) {
        const output = path.join(work, `labels-${file === undefined ? 'model' : 'flag'}.jsonl`);
        await run(options({ model: 'id4', repository: models, input, output, features: ['a,b,c,d'], outputs: [], labelsFile: file }));
        results.push((await readOutput(output)).map((row) => [row['prediction'], row['label']]));
      }
      assert.deepEqual(results[0], [
        [2, 'two'],
        [1, ''],
        [3, ' three'],
      ]);
      assert.deepEqual(results[1], results[0]);
    } finally {
      await rm(models, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    }
  });
});

describe('values beyond the input datatype\'s range', () => {
  const FP32_RANGE = (feature: string): RegExp => new RegExp(`feature '${feature}': -?1e\\+39 is out of range for FP32 \\(largest magnitude 3\\.4028234663852886e\\+38\\)`);

  test('FP32: row by row (JSON Lines) and packed (Parquet DOUBLE, in the reader thread or not), the row is an error naming the column', async () => {
    // Nine features: packing takes eight columns at a time, then one by one; each is checked alone.
    const names = Array.from({ length: 9 }, (_, j) => `f${j}`);
    const rows = 4;
    for (const [first, second] of [
      ['f0', 'f5'],
      ['f8', 'f8'],
    ] as const) {
      const value = (row: number, name: string): number => (row === 0 && name === first ? 1e39 : row === 2 && name === second ? -1e39 : row === 3 ? 3.4e38 : row + 1);
      const jsonl = path.join(work, `range-${first}.jsonl`);
      await writeFile(jsonl, Array.from({ length: rows }, (_, r) => JSON.stringify({ id: r, ...Object.fromEntries(names.map((name) => [name, value(r, name)])) })).join('\n') + '\n');
      const parquet = path.join(work, `range-${first}.parquet`);
      const columns = names.map((name) => ({ name, data: Float64Array.from({ length: rows }, (_, r) => value(r, name)), type: 'DOUBLE' as const }));
      await writeFile(parquet, new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'id', data: Int32Array.from({ length: rows }, (_, r) => r), type: 'INT32' }, ...columns] })));
      for (const [input, readerThread] of [
        [jsonl, false],
        [parquet, true],
        [parquet, false],
      ] as const) {
        const where = `${path.basename(input)}, reader thread ${readerThread}`;
        const output = path.join(work, `range-${first}-${path.extname(input).slice(1)}-${readerThread}.parquet`);
        const summary = await run(options({ model: 'id9', input, output, features: ['f0..f8'], passthrough: ['id'], classify: null, readerThread }));
        assert.equal(summary.errors, 2, where);
        const scored = await readOutput(output);
        assert.match(String(scored[0]!['error']), FP32_RANGE(first), where);
        assert.match(String(scored[2]!['error']), FP32_RANGE(second), where);
        assert.equal(scored[0]!['y_0'], null);
        assert.deepEqual([scored[1]!['y_0'], scored[1]!['error']], [2, null], where);
        assert.equal(scored[3]!['error'], null, where);
        assert.ok(Math.abs((scored[3]!['y_8'] as number) - 3.4e38) < 1e32, 'the largest values still fit');
      }
    }
  });

  test('FP16: past 65504 (what rounds to the half infinity) the row is an error', async () => {
    const input = path.join(work, 'range16.jsonl');
    await writeFile(input, [70000, 65504, 65520].map((a) => JSON.stringify({ a, b: 1, c: 1, d: 1 })).join('\n') + '\n');
    const output = path.join(work, 'range16.jsonl.out.jsonl');
    await run(options({ model: 'id4half', input, output, features: ['a,b,c,d'], classify: null }));
    const rows = await readOutput(output);
    assert.match(String(rows[0]!['error']), /feature 'a': 70000 is out of range for FP16 \(largest magnitude 65504\)/);
    assert.deepEqual([rows[1]!['y_0'], rows[1]!['error']], [65504, null]);
    assert.match(String(rows[2]!['error']), /feature 'a': 65520 is out of range for FP16/);
  });
});

describe('NaN in a classified output', () => {
  test('the first NaN wins the argmax with confidence NaN, wherever it is, with labels or without', async () => {
    for (const [name, labels] of [
      ['log3', { 'labels.txt': 'cat\ndog\nbird\n' }],
      ['log3nl', {}],
    ] as const) {
      const g = new GraphBuilder(name);
      const x = g.input('x', 'FP32', [-1, 3]);
      g.output(g.node('Log', [x]), 'FP32', [-1, 3], 'y');
      await writeModel(repository, name, 1, g.build(), labels);
    }
    const input = path.join(work, 'nan.jsonl');
    // Log of a negative number is NaN: at position 0, 1, 2; then two NaNs; then none.
    await writeFile(input, ['[-1,1,2]', '[1,-1,2]', '[1,2,-1]', '[3,-1,-2]', '[1,3,2]'].map((x) => JSON.stringify({ x: JSON.parse(x) as number[] })).join('\n') + '\n');
    for (const model of ['log3', 'log3nl']) {
      const output = path.join(work, `nan-${model}.parquet`);
      await run(options({ model, input, output }));
      const rows = await readOutput(output);
      assert.deepEqual(
        rows.map((row) => row['prediction']),
        [0, 1, 2, 1, 1],
        model,
      );
      rows.slice(0, 4).forEach((row, i) => assert.ok(Number.isNaN(row['confidence']), `${model} row ${i}: confidence ${String(row['confidence'])}`));
      assert.ok(Math.abs((rows[4]!['confidence'] as number) - Math.log(3)) < 1e-6);
      if (model === 'log3') assert.deepEqual(rows.map((row) => row['label']), ['cat', 'dog', 'bird', 'dog', 'dog']);
    }
  });
});

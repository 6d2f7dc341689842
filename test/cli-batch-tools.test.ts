/**
 * The one-off commands' argument checks (baseline, infer, inspect, pack, batch), the model
 * repository they take from TESSERA_MODEL_REPOSITORY, and the batch progress display counting
 * rows done rather than bytes read ahead.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { jobOptionsFromFlags, type BatchFlags } from '../src/cli/batch.js';
import { runBatchJob } from '../src/batch/job.js';
import { doneFraction, formatPercent, RowCountEstimate } from '../src/batch/progress.js';
import { TesseraError } from '../src/core/errors.js';
import { batchJobOptions, QUIET } from './support/batch.js';
import { makeTempRepository } from './support/fixtures.js';
import { writeFakeModel } from './support/server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
const EXAMPLES = path.join(ROOT, 'examples', 'models');
/** tsx by its path, so that commands can run from any working directory. */
const TSX = import.meta.resolve('tsx');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment of a command: this process's, without TESSERA_MODEL_REPOSITORY unless given. */
function environment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (extra['TESSERA_MODEL_REPOSITORY'] === undefined) delete env['TESSERA_MODEL_REPOSITORY'];
  return env;
}

async function tessera(args: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd: options.cwd ?? ROOT, env: environment(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

let work: string;
/** A CSV of iris-like feature rows (4 columns). */
let rows: string;
let request: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'tessera-cli-tools-'));
  rows = path.join(work, 'rows.csv');
  const lines = ['a,b,c,d'];
  for (let i = 0; i < 60; i++) lines.push([5 + (i % 7) / 10, 3 + (i % 5) / 10, 1 + (i % 11) / 10, (i % 3) / 10].join(','));
  await writeFile(rows, `${lines.join('\n')}\n`);
  request = path.join(work, 'request.json');
  await writeFile(request, JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] }] }));
  await mkdir(path.join(work, 'a-directory'));
});

after(async () => {
  await rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

describe('baseline', () => {
  test('--bins must be an integer from 2 to 100: anything else exits 1 naming --bins and the value, and writes nothing', async () => {
    const bad = ['abc', '0', '-3', '1000000', '2.5', '1e1'];
    const runs = await Promise.all(
      bad.map((bins) => tessera(['baseline', 'iris', '--data', rows, '--model-repository', EXAMPLES, '--bins', bins, '--out', path.join(work, `bins-${bins}.json`)])),
    );
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 1, `--bins ${bad[i]}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^tessera baseline: INVALID_PARAMETER: --bins: expected an integer from 2 to 100, got '${escape(bad[i]!)}'$`, 'm'));
      assert.equal(run.stdout, '');
      await assert.rejects(stat(path.join(work, `bins-${bad[i]}.json`)), `--bins ${bad[i]} wrote no baseline`);
    }
    const good = await tessera(['baseline', 'iris', '--data', rows, '--model-repository', EXAMPLES, '--bins', '5', '--out', path.join(work, 'bins-5.json')]);
    assert.equal(good.code, 0, good.stderr);
    const written = JSON.parse(await readFile(path.join(work, 'bins-5.json'), 'utf8')) as { bins: number };
    assert.equal(written.bins, 5);
  });

  test('a missing model or repository and a --data directory are named, not INTERNAL', async () => {
    const [model, repository, data] = await Promise.all([
      tessera(['baseline', 'nosuch', '--data', rows, '--model-repository', EXAMPLES, '--out', path.join(work, 'b1.json')]),
      tessera(['baseline', 'iris', '--data', rows, '--model-repository', path.join(work, 'no-repository'), '--out', path.join(work, 'b2.json')]),
      tessera(['baseline', 'iris', '--data', path.join(work, 'a-directory'), '--model-repository', EXAMPLES, '--out', path.join(work, 'b3.json')]),
    ]);
    assert.equal(model.code, 1);
    assert.match(model.stderr, /^tessera baseline: MODEL_NOT_FOUND: model 'nosuch' is not in the repository .*; its models are: iris, ocr-direction$/m);
    assert.equal(repository.code, 1);
    assert.match(repository.stderr, /^tessera baseline: REPOSITORY_UNAVAILABLE: cannot read model repository .*no-repository/m);
    assert.equal(data.code, 1);
    assert.match(data.stderr, /^tessera baseline: INVALID_PARAMETER: --data: .*a-directory is a directory; expected a CSV or TSV file/m);
    for (const run of [model, repository, data]) assert.doesNotMatch(run.stderr, /INTERNAL/);
  });
});

describe('infer, inspect, pack', () => {
  test('infer --input that is a directory, missing or not JSON names the flag and the path', async () => {
    const bad = path.join(work, 'bad.json');
    await writeFile(bad, '{not json');
    const infer = (input: string): Promise<Run> => tessera(['infer', 'iris', '--input', input, '--model-repository', EXAMPLES]);
    const [directory, missing, invalid] = await Promise.all([infer(path.join(work, 'a-directory')), infer(path.join(work, 'missing.json')), infer(bad)]);
    assert.equal(directory.code, 1);
    assert.match(directory.stderr, /^tessera infer: INVALID_PARAMETER: --input: .*a-directory is a directory; expected a V2 inference request body/m);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^tessera infer: INVALID_PARAMETER: --input: cannot read .*missing\.json: ENOENT/m);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /^tessera infer: INVALID_REQUEST: --input: .*bad\.json is not valid JSON/m);
  });

  test('inspect of a directory names the archive and what was expected', async () => {
    const inspect = await tessera(['inspect', path.join(work, 'a-directory')]);
    assert.equal(inspect.code, 1);
    assert.match(inspect.stderr, /^tessera inspect: INVALID_PARAMETER: the archive .*a-directory is a directory; expected a model archive file/m);
  });

  test('pack --model-version abc names the value instead of packing version NaN', async () => {
    const pack = await tessera(['pack', path.join(EXAMPLES, 'iris'), '--model-version', 'abc', '-o', path.join(work, 'iris.tar.gz')]);
    assert.equal(pack.code, 1);
    assert.match(pack.stderr, /^tessera pack: INVALID_PARAMETER: --model-version: expected a version number \(a non-negative integer such as 1\), got 'abc'$/m);
    assert.doesNotMatch(pack.stderr, /NaN/);
    await assert.rejects(stat(path.join(work, 'iris.tar.gz')));
  });
});

describe('TESSERA_MODEL_REPOSITORY', () => {
  test('infer, baseline and batch take the repository from it; --model-repository wins over it', async () => {
    // Run from a directory without ./models: only the variable can name the repository.
    const elsewhere = await mkdtemp(path.join(work, 'cwd-'));
    const env = { TESSERA_MODEL_REPOSITORY: EXAMPLES };
    const [infer, baseline, batch, flag] = await Promise.all([
      tessera(['infer', 'iris', '--input', request], { cwd: elsewhere, env }),
      tessera(['baseline', 'iris', '--data', rows, '--out', path.join(elsewhere, 'baseline.json')], { cwd: elsewhere, env }),
      tessera(['batch', 'iris', '-i', rows, '-o', path.join(elsewhere, 'scored.csv'), '--features', 'a,b,c,d', '--progress', 'none'], { cwd: elsewhere, env }),
      tessera(['infer', 'iris', '--input', request, '--model-repository', path.join(elsewhere, 'flag-repository')], { cwd: elsewhere, env }),
    ]);
    assert.equal(infer.code, 0, infer.stderr);
    assert.match(infer.stdout, /"model_name":"iris"/);
    assert.equal(baseline.code, 0, baseline.stderr);
    assert.match(baseline.stdout, /^wrote .*baseline\.json: 4 features from 60 rows$/m);
    assert.equal(batch.code, 0, batch.stderr);
    assert.match(batch.stdout, /^tessera batch: done: 60 rows, 0 errors$/m);
    assert.equal(flag.code, 1);
    assert.match(flag.stderr, /cannot read model repository .*flag-repository/);
  });
});

describe('batch', () => {
  const flags = (overrides: Partial<BatchFlags>): BatchFlags => ({
    input: rows,
    output: path.join(work, 'out.csv'),
    retries: '0',
    timeoutMs: '1000',
    compression: 'snappy',
    progress: 'log',
    logInterval: '10',
    readerThread: 'auto',
    ...overrides,
  });

  test('--log-interval takes 0.1 s to 1 day, and names the value otherwise', () => {
    for (const value of ['3000000', '0.001', '0', '-1', 'abc', '86401', '1e3', '']) {
      assert.throws(
        () => jobOptionsFromFlags('iris', flags({ logInterval: value }), false),
        (error: unknown) => error instanceof TesseraError && error.code === 'INVALID_PARAMETER' && error.message === `--log-interval: expected seconds from 0.1 to 86400 (1 day), got '${value}'`,
        `--log-interval ${value}`,
      );
    }
    assert.equal(jobOptionsFromFlags('iris', flags({ logInterval: '0.1' }), false).logIntervalSeconds, 0.1);
    assert.equal(jobOptionsFromFlags('iris', flags({ logInterval: '86400' }), false).logIntervalSeconds, 86_400);
  });

  test('an --output that is a directory is refused before anything is scored, --overwrite or not', async () => {
    const directory = path.join(work, 'out-dir');
    await mkdir(directory);
    for (const overwrite of [false, true]) {
      const job = batchJobOptions({ model: 'iris', repository: EXAMPLES, input: rows, output: directory, outputFormat: 'csv', features: ['a,b,c,d'], overwrite });
      await assert.rejects(runBatchJob(job, { stdout: QUIET, stderr: QUIET }), (error: unknown) => {
        assert.ok(error instanceof TesseraError, String(error));
        assert.equal(error.code, 'INVALID_PARAMETER', error.message);
        assert.equal(error.message, `--output ${directory} is a directory; expected the path of a file to write (e.g. ${path.join(directory, 'scored.parquet')})`);
        return true;
      });
      await assert.rejects(stat(`${directory}.parts`), 'no checkpoint was started');
    }
  });

  test('a --summary-json that is a directory or cannot be created stops the job before it starts', async () => {
    const summaryDir = path.join(work, 'summary-dir');
    await mkdir(summaryDir);
    const cases = [
      { summary: summaryDir, output: path.join(work, 'summary-1.csv'), message: `--summary-json: ${summaryDir} is a directory; expected a JSON file path that can be written` },
      {
        summary: path.join(work, 'no-such-dir', 'summary.json'),
        output: path.join(work, 'summary-2.csv'),
        message: `--summary-json: ${path.join(work, 'no-such-dir', 'summary.json')} cannot be created: ${path.join(work, 'no-such-dir')} does not exist; expected a JSON file path that can be written`,
      },
    ];
    const runs = await Promise.all(
      cases.map((c) =>
        tessera(['batch', 'iris', '-i', rows, '-o', c.output, '--model-repository', EXAMPLES, '--features', 'a,b,c,d', '--progress', 'none', '--summary-json', c.summary]),
      ),
    );
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 1, run.stdout);
      assert.equal(run.stderr, `tessera batch: INVALID_PARAMETER: ${cases[i]!.message}\n`);
      // Nothing was scored: a corrected rerun is not refused because the output exists.
      await assert.rejects(stat(cases[i]!.output));
    }
  });

  test('the progress log counts rows scored, not rows read ahead: never 100% before the last row', async (t) => {
    const repository = await makeTempRepository();
    t.after(() => rm(repository, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    await writeFakeModel(
      repository,
      'slow',
      1,
      { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], copy_of: 'x' }], delay_ms: 10 },
      'max_batch_size: 8\n',
    );
    // A small input: the source reads all of it with the first chunk, long before it is scored.
    const total = 400;
    const input = path.join(work, 'slow.jsonl');
    await writeFile(input, Array.from({ length: total }, (_, i) => JSON.stringify({ a: i, b: -i })).join('\n') + '\n');
    let log = '';
    const summary = await runBatchJob(
      batchJobOptions({
        model: 'slow',
        repository,
        input,
        output: path.join(work, 'slow.csv'),
        features: ['a,b'],
        classify: null,
        batchSize: 8,
        chunkRows: 40,
        concurrency: 2,
        instances: 1,
        readerThread: false,
        progress: 'log',
        logIntervalSeconds: 0.02,
      }),
      { stdout: QUIET, stderr: { write: (text: string) => (log += text) } },
    );
    assert.equal(summary.rows, total);
    const lines = log.split('\n').filter((line) => line.startsWith('tessera batch: '));
    const parsed = lines.map((line) => {
      const match = /^tessera batch: (--|\d+\.\d)% ([\d,]+)(?:\/([\d,]+))? rows, /.exec(line);
      assert.ok(match !== null, `a progress line: ${line}`);
      return { line, percent: match[1] === '--' ? undefined : Number(match[1]), rows: Number(match[2]!.replace(/,/g, '')) };
    });
    assert.ok(
      parsed.some((p) => p.rows < total),
      `some progress was logged while rows were left:\n${lines.join('\n')}`,
    );
    for (const { line, percent, rows: done } of parsed) {
      if (percent === undefined) continue;
      assert.ok(percent < 100 || done === total, `100% only once every row is done: ${line}`);
      assert.ok(percent <= (100 * done) / total + 0.1, `the percentage is of rows done (${done} of ${total}): ${line}`);
    }
  });

  test('the row count estimate: bytes per row while part of the file is unread, the count once it ended', () => {
    const estimate = new RowCountEstimate(10_000);
    assert.equal(estimate.estimate, undefined, 'nothing read yet');
    // 100 rows handed over with the whole file read: the rows still in the read-ahead are unknown.
    estimate.read(100, 10_000);
    assert.equal(estimate.estimate, undefined);
    const partial = new RowCountEstimate(10_000);
    partial.read(100, 2_000);
    assert.equal(partial.estimate, 500);
    partial.read(300, 10_000);
    assert.equal(partial.estimate, 500, 'a reading with the whole file read is not used');
    partial.read(600, 10_000);
    assert.equal(partial.estimate, 600, 'never fewer than the rows read');
    partial.ended(640);
    assert.equal(partial.total, 640);
    assert.equal(partial.estimate, 640);

    assert.equal(doneFraction({ rowsDone: 10, rowsThisRun: 10, errors: 0, totalRows: undefined }), undefined);
    assert.equal(doneFraction({ rowsDone: 250, rowsThisRun: 250, errors: 0, totalRows: undefined, estimatedRows: 500 }), 0.5);
    assert.equal(doneFraction({ rowsDone: 600, rowsThisRun: 600, errors: 0, totalRows: undefined, estimatedRows: 600 }), 0.999, 'an estimate never says done');
    assert.equal(formatPercent(doneFraction({ rowsDone: 3999, rowsThisRun: 3999, errors: 0, totalRows: 4000 })!), '99.9');
    assert.equal(formatPercent(doneFraction({ rowsDone: 4000, rowsThisRun: 4000, errors: 0, totalRows: 4000 })!), '100.0');
  });
});

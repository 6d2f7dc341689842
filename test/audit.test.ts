/**
 * The prediction audit log on a real server: sampling, redaction, records of failed requests,
 * rotation by size and date, a full queue, and a directory it cannot write to (requests still
 * succeed; errors are counted and logged once).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { Logger } from '../src/core/logger.js';
import {
  AuditLog,
  RotatingJsonlWriter,
  auditLogConfigSchema,
  auditModelConfigSchema,
  registerAuditMetrics,
  type AuditLogOptions,
  type AuditModelConfig,
  type AuditRecord,
} from '../src/observability/audit/index.js';
import { MetricsExporter } from '../src/observability/metrics.js';
import type { TesseraServer } from '../src/server/server.js';
import { addModel, identityModel, makeTempRepository, writeModel } from './support/fixtures.js';
import { startTestServer } from './support/server.js';

const CONFIG = 'max_batch_size: 32\n';

function captureLogger(): { logger: Logger; errors: { object: object; message: string | undefined }[] } {
  const errors: { object: object; message: string | undefined }[] = [];
  const none = () => undefined;
  return { logger: { error: (object, message) => errors.push({ object, message }), warn: none, info: none, debug: none }, errors };
}

async function readRecords(directory: string): Promise<{ files: string[]; records: AuditRecord[] }> {
  const files = (await readdir(directory)).filter((name) => name.endsWith('.jsonl')).sort();
  const records: AuditRecord[] = [];
  for (const file of files) {
    const text = await readFile(path.join(directory, file), 'utf8');
    for (const line of text.split('\n')) if (line !== '') records.push(JSON.parse(line) as AuditRecord);
  }
  return { files, records };
}

function sha256(values: readonly number[]): string {
  const data = new Float32Array(values);
  return createHash('sha256').update(new Uint8Array(data.buffer)).digest('hex');
}

describe('audit log', () => {
  let repo: string;
  let scratch: string;
  let server: TesseraServer;

  before(async () => {
    repo = await makeTempRepository();
    scratch = await mkdtemp(path.join(tmpdir(), 'tessera-audit-'));
    await writeModel(repo, 'ident', 1, identityModel('FP32', [-1, 4]), { 'config.yaml': CONFIG });
    await writeModel(repo, 'add', 1, addModel(), { 'config.yaml': CONFIG });
    server = await startTestServer(undefined, repo);
  });

  after(async () => {
    await server.close();
    await rm(repo, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    await chmod(path.join(scratch, 'readonly'), 0o755).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });

  let dirCount = 0;
  const freshDir = () => path.join(scratch, `log-${++dirCount}`);

  /** An audit log for this test; closed (and so unsubscribed) by the caller. */
  function auditLog(options: Partial<AuditLogOptions> & { models?: Record<string, Partial<AuditModelConfig>> }): AuditLog {
    const { models = {}, ...rest } = options;
    const parsed = Object.fromEntries(Object.entries(models).map(([name, config]) => [name, auditModelConfigSchema.parse(config)]));
    return new AuditLog({ directory: freshDir(), modelConfig: (model) => parsed[model], ...rest });
  }

  async function inferIdent(id: string, rows = 1, expectStatus = 200): Promise<void> {
    const data = Array.from({ length: rows * 4 }, (_, i) => i + 0.5);
    const response = await fetch(`${server.httpUrl}/v2/models/ident/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 4], data }] }),
    });
    await response.arrayBuffer();
    assert.equal(response.status, expectStatus);
  }

  async function many(count: number, send: (i: number) => Promise<void>): Promise<void> {
    for (let i = 0; i < count; i += 16) await Promise.all(Array.from({ length: Math.min(16, count - i) }, (_, j) => send(i + j)));
  }

  test('rate 1 records every request exactly once, with the request fields', async () => {
    const audit = auditLog({ models: { ident: { sample_rate: 1 } } });
    const before = Date.now();
    await many(50, (i) => inferIdent(`req-${i}`));
    await audit.close();
    const { records, files } = await readRecords(audit.directory);
    assert.equal(files.length, 1);
    assert.equal(records.length, 50);
    assert.deepEqual(new Set(records.map((r) => r.request_id)), new Set(Array.from({ length: 50 }, (_, i) => `req-${i}`)));
    const record = records[0]!;
    assert.equal(record.model, 'ident');
    assert.equal(record.version, '1');
    assert.equal(record.protocol, 'v2-http');
    assert.equal(record.outcome, 'success');
    assert.ok(record.latency_ms > 0 && record.latency_ms < 5000);
    const time = Date.parse(record.time);
    assert.ok(time >= before - 1000 && time <= Date.now(), record.time);
    assert.match(record.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // 4 elements ≤ keep_max_elements (64): kept by default.
    assert.deepEqual(record.inputs, [{ name: 'x', datatype: 'FP32', shape: [1, 4], redaction: 'keep', data: [0.5, 1.5, 2.5, 3.5] }]);
    assert.deepEqual(record.outputs, [{ name: 'y', datatype: 'FP32', shape: [1, 4], redaction: 'keep', data: [0.5, 1.5, 2.5, 3.5] }]);
    assert.deepEqual(audit.stats().dropped, { queue_full: 0, write_error: 0 });
    assert.equal(audit.stats().written, 50);
  });

  test('trace_id only for a traceparent tracing takes (the same parser): never for one it refuses', async () => {
    const audit = auditLog({ models: { ident: { sample_rate: 1 } } });
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const headers: [string, string | undefined][] = [
      ['valid', `00-${trace}-00f067aa0ba902b7-01`],
      ['upper case', `00-${trace.toUpperCase()}-00F067AA0BA902B7-01`],
      ['version ff', `ff-${trace}-00f067aa0ba902b7-01`],
      ['zero parent id', `00-${trace}-0000000000000000-01`],
      ['version 00 with more fields', `00-${trace}-00f067aa0ba902b7-01-extra`],
      ['later version with more fields', `01-${trace}-00f067aa0ba902b7-01-extra`],
    ];
    for (const [id, traceparent] of headers) {
      const response = await fetch(`${server.httpUrl}/v2/models/ident/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(traceparent === undefined ? {} : { traceparent }) },
        body: JSON.stringify({ id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
      });
      assert.equal(response.status, 200);
    }
    await audit.close();
    const { records } = await readRecords(audit.directory);
    const traced = Object.fromEntries(records.map((r) => [r.request_id, (r as { trace_id?: string }).trace_id ?? null]));
    assert.deepEqual(traced, {
      valid: trace,
      'upper case': null,
      'version ff': null,
      'zero parent id': null,
      'version 00 with more fields': null,
      'later version with more fields': trace,
    });
  });

  test('rate 0.5 over 400 requests records a binomial share (within 5 standard deviations)', async () => {
    const audit = auditLog({ models: { ident: { sample_rate: 0.5 } } });
    await many(400, (i) => inferIdent(`half-${i}`));
    await audit.close();
    const { records } = await readRecords(audit.directory);
    // Binomial(400, 0.5): mean 200, sd 10.
    assert.ok(records.length >= 150 && records.length <= 250, `${records.length} records`);
    assert.equal(new Set(records.map((r) => r.request_id)).size, records.length, 'no duplicates');
    assert.equal(audit.stats().written, records.length);
  });

  test('models without an audit section use the server default rate (0: nothing recorded, no file)', async () => {
    const audit = auditLog({ models: {} });
    await many(10, (i) => inferIdent(`off-${i}`));
    await audit.close();
    // The directory is created when the log starts (audit-dir.test.ts); no file is.
    assert.deepEqual(await readdir(audit.directory), []);
    assert.equal(audit.stats().written, 0);
    const byDefault = auditLog({ models: {}, sampleRate: 1 });
    await inferIdent('default-on');
    const unknown = await fetch(`${server.httpUrl}/v2/models/nope/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'unknown-model', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [1] }] }),
    });
    assert.equal(unknown.status, 404);
    await byDefault.close();
    const { records } = await readRecords(byDefault.directory);
    assert.deepEqual(records.map((r) => [r.request_id, r.outcome, r.version]), [
      ['default-on', 'success', '1'],
      ['unknown-model', 'MODEL_NOT_FOUND', null],
    ]);
  });

  test('redaction per tensor: keep, hash (sha256 of the tensor bytes), drop; auto by element count', async () => {
    const audit = auditLog({
      models: { add: { sample_rate: 1, inputs: { a: 'keep', b: 'hash' }, outputs: { sum: 'drop' }, keep_max_elements: 4 } },
    });
    const a = [1, 2, 3, 4, 5, 6, 7, 8];
    const b = [0.5, 0.25, -1, 2, 10, 20, 30, 40];
    for (const [id, rows] of [
      ['two-rows', 2],
      ['one-row', 1],
    ] as const) {
      const response = await fetch(`${server.httpUrl}/v2/models/add/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          id,
          inputs: [
            { name: 'a', datatype: 'FP32', shape: [rows, 4], data: a.slice(0, rows * 4) },
            { name: 'b', datatype: 'FP32', shape: [rows, 4], data: b.slice(0, rows * 4) },
          ],
        }),
      });
      assert.equal(response.status, 200, await response.text());
    }
    await audit.close();
    const { records } = await readRecords(audit.directory);
    const two = records.find((r) => r.request_id === 'two-rows')!;
    const input = (record: AuditRecord, name: string) => record.inputs!.find((t) => t.name === name)!;
    const output = (record: AuditRecord, name: string) => record.outputs!.find((t) => t.name === name)!;
    assert.deepEqual(input(two, 'a'), { name: 'a', datatype: 'FP32', shape: [2, 4], redaction: 'keep', data: a });
    assert.deepEqual(input(two, 'b'), { name: 'b', datatype: 'FP32', shape: [2, 4], redaction: 'hash', sha256: sha256(b) });
    assert.deepEqual(output(two, 'sum'), { name: 'sum', datatype: 'FP32', shape: [2, 4], redaction: 'drop' });
    // diff: 8 elements > keep_max_elements 4 → auto hashes it.
    assert.deepEqual(output(two, 'diff'), { name: 'diff', datatype: 'FP32', shape: [2, 4], redaction: 'hash', sha256: sha256(a.map((v, i) => v - b[i]!)) });
    const one = records.find((r) => r.request_id === 'one-row')!;
    assert.deepEqual(output(one, 'diff').data, a.slice(0, 4).map((v, i) => v - b[i]!));
    assert.equal(output(one, 'diff').redaction, 'keep');
  });

  test('failed requests are recorded with their error code; inputs are null when validation refused them', async () => {
    const audit = auditLog({ models: { ident: { sample_rate: 1 } } });
    const response = await fetch(`${server.httpUrl}/v2/models/ident/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'bad-shape', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
    });
    assert.equal(response.status, 400);
    await audit.close();
    const { records } = await readRecords(audit.directory);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.request_id, 'bad-shape');
    assert.equal(records[0]!.outcome, 'INVALID_INPUT_SHAPE');
    assert.equal(records[0]!.inputs, null);
    assert.equal(records[0]!.outputs, null);
  });

  test('size rotation: files stay under maxFileBytes and only the newest keepFiles remain', async () => {
    const audit = auditLog({ models: { ident: { sample_rate: 1 } }, maxFileBytes: 1024, keepFiles: 3, flushIntervalMs: 0 });
    for (let i = 0; i < 40; i++) await inferIdent(`rot-${String(i).padStart(2, '0')}`);
    await audit.close();
    const directory = audit.directory;
    const { files, records } = await readRecords(directory);
    assert.equal(files.length, 3, files.join(', '));
    for (const file of files) {
      assert.match(file, /^tessera-audit-\d{8}T\d{6}\.\d{3}Z-\d{6}\.jsonl$/);
      assert.ok((await stat(path.join(directory, file))).size <= 1024);
    }
    const ids = records.map((r) => r.request_id);
    assert.ok(ids.length >= 3 && ids.length < 40, `${ids.length} records kept`);
    // The files kept hold the newest records, in order.
    assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => `rot-${String(40 - ids.length + i).padStart(2, '0')}`));
    assert.equal(audit.stats().written, 40);
  });

  test('date rotation: a new file when the UTC date changes', async () => {
    const directory = freshDir();
    let now = Date.parse('2024-03-01T23:59:59.000Z');
    const writer = new RotatingJsonlWriter({ directory, maxFileBytes: 1 << 20, rotateDaily: true, keepFiles: 10, now: () => now });
    await writer.writeLines(['{"n":1}\n', '{"n":2}\n']);
    now = Date.parse('2024-03-02T00:00:01.000Z');
    await writer.writeLines(['{"n":3}\n']);
    await writer.close();
    const files = await writer.files();
    assert.deepEqual(files.map((f) => f.slice(0, 'tessera-audit-20240301'.length)), ['tessera-audit-20240301', 'tessera-audit-20240302']);
    assert.equal(await readFile(path.join(directory, files[0]!), 'utf8'), '{"n":1}\n{"n":2}\n');
    assert.equal(await readFile(path.join(directory, files[1]!), 'utf8'), '{"n":3}\n');
  });

  test('a full queue drops records (counted) instead of waiting', async () => {
    const audit = auditLog({ models: { ident: { sample_rate: 1 } }, queueMaxRecords: 5, flushIntervalMs: 60_000 });
    await many(20, (i) => inferIdent(`q-${i}`));
    const stats = audit.stats();
    assert.equal(stats.queued, 5);
    assert.equal(stats.dropped.queue_full, 15);
    await audit.close();
    assert.equal(audit.stats().written, 5);
    assert.equal((await readRecords(audit.directory)).records.length, 5);
  });

  test('an unwritable directory fails no request: errors are counted and logged once', async () => {
    // The directory is checked when the log starts (audit-dir.test.ts): it stops being writable
    // afterwards. Read-only; as root (which ignores permissions) replaced by a regular file.
    const directory = path.join(scratch, 'readonly');
    const log = captureLogger();
    const audit = auditLog({ models: { ident: { sample_rate: 1 } }, directory, logger: log.logger, flushIntervalMs: 5, retryAfterErrorMs: 0 });
    await chmod(directory, 0o555);
    try {
      await writeFile(path.join(directory, 'probe'), '');
      await rm(directory, { recursive: true });
      await writeFile(directory, '');
    } catch {
      // Not writable: as intended.
    }
    const exporter = new MetricsExporter(server.engine, { processMetrics: false });
    registerAuditMetrics(exporter.registry, audit);
    const started = Date.now();
    for (let round = 0; round < 3; round++) {
      await many(10, (i) => inferIdent(`ro-${round}-${i}`));
      await audit.flush();
    }
    assert.ok(Date.now() - started < 10_000);
    await audit.close();
    const stats = audit.stats();
    assert.equal(stats.written, 0);
    assert.ok(stats.writeErrors >= 3, `${stats.writeErrors} write errors`);
    assert.equal(stats.dropped.write_error, 30);
    assert.equal(log.errors.length, 1, 'logged once per minute, not per error');
    assert.match(log.errors[0]!.message ?? '', /audit log: cannot write to/);
    const text = await exporter.render();
    exporter.close();
    assert.match(text, /^tessera_audit_records_dropped_total\{reason="write_error"\} 30$/m);
    assert.match(text, new RegExp(`^tessera_audit_write_errors_total ${stats.writeErrors}$`, 'm'));
    assert.match(text, /^tessera_audit_records_total 0$/m);
  });

  test('config schemas: defaults', () => {
    const server = auditLogConfigSchema.parse({ directory: '/var/log/tessera' });
    assert.equal(server.sampleRate, 0);
    assert.equal(server.keepFiles, 10);
    assert.equal(server.rotateDaily, true);
    const model = auditModelConfigSchema.parse({});
    assert.equal(model.sample_rate, 0);
    assert.equal(model.redaction, 'auto');
    assert.equal(model.keep_max_elements, 64);
    assert.throws(() => auditModelConfigSchema.parse({ sample_rate: 2 }));
    assert.throws(() => auditModelConfigSchema.parse({ redaction: 'mask' }));
  });
});

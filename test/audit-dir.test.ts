/**
 * The audit log's directory is checked when the log starts: created if missing; a path that is
 * not a directory, or that cannot be written, fails the start (and the server's start-up) with
 * a message naming auditDir and the path, instead of dropping every record later.
 */
import assert from 'node:assert/strict';
import { channel } from 'node:diagnostics_channel';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { channels } from '../src/core/events.js';
import { TesseraError } from '../src/core/errors.js';
import { parseServerConfig } from '../src/config/server-config.js';
import { AuditLog } from '../src/observability/audit/index.js';
import { startServer } from '../src/server/server.js';
import { makeTempRepository } from './support/fixtures.js';

const EXPECTED = 'expected a writable directory for the audit log (created if missing)';

let scratch: string;
let file: string;

before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'tessera-audit-dir-'));
  file = path.join(scratch, 'a-file');
  await writeFile(file, '');
});

after(async () => {
  await chmod(path.join(scratch, 'read-only'), 0o755).catch(() => undefined);
  await rm(scratch, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});

/** The error `new AuditLog` throws for `directory`. */
function refusal(directory: string): TesseraError {
  try {
    const log = new AuditLog({ directory });
    void log.close();
  } catch (error) {
    assert.ok(error instanceof TesseraError, String(error));
    return error;
  }
  assert.fail(`an audit log in ${directory} was accepted`);
}

describe('audit log directory', () => {
  test('a missing directory (and its parents) is created when the log starts, before any record', async () => {
    const directory = path.join(scratch, 'new', 'audit');
    const log = new AuditLog({ directory });
    try {
      assert.ok((await stat(directory)).isDirectory());
    } finally {
      await log.close();
    }
  });

  test('a regular file, or a path below one, fails the start naming auditDir and the path', () => {
    const onFile = refusal(file);
    assert.equal(onFile.code, 'INVALID_PARAMETER');
    assert.equal(onFile.message, `auditDir: ${file} is a file; ${EXPECTED}`);
    const below = refusal(path.join(file, 'audit'));
    assert.match(below.message, new RegExp(`^auditDir: ${path.join(file, 'audit').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be created \\(ENOTDIR`));
    assert.ok(below.message.endsWith(`; ${EXPECTED}`));
    // Refused before subscribing: nothing is left listening to requests.
    assert.equal(channel(channels.requestStart.name).hasSubscribers, false);
  });

  test('a read-only directory fails the start', async () => {
    const directory = path.join(scratch, 'read-only');
    await mkdir(directory);
    await chmod(directory, 0o555);
    let message: string;
    if (process.getuid?.() !== 0) {
      message = refusal(directory).message;
    } else {
      // Root writes to read-only directories: the check runs in a child that is root without the
      // capabilities to override file permissions (setpriv, util-linux), so it still reads the
      // checkout and TMPDIR, whoever may read them, but cannot write a directory it may not.
      const script = `import(${JSON.stringify(new URL('../src/observability/audit/index.ts', import.meta.url).pathname)}).then(({ AuditLog }) => {
        try { new AuditLog({ directory: ${JSON.stringify(directory)} }); console.log('accepted'); } catch (error) { console.log(error.message); }
      });`;
      const { execFileSync } = await import('node:child_process');
      message = execFileSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search', process.execPath, '--import', 'tsx', '-e', script], {
        cwd: path.dirname(new URL(import.meta.url).pathname),
        encoding: 'utf8',
      }).trim();
    }
    assert.match(message, new RegExp(`^auditDir: .*read-only is not writable \\(EACCES`));
  });

  test('the server does not start with an auditDir that is a file', async (t) => {
    const repository = await makeTempRepository();
    t.after(() => rm(repository, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
    const config = parseServerConfig({
      modelRepository: repository,
      host: '127.0.0.1',
      httpPort: 0,
      grpc: false,
      management: false,
      metrics: false,
      monitoring: false,
      logLevel: 'silent',
      auditDir: file,
    });
    const outcome = await startServer(config).then(
      async (server) => {
        await server.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    assert.ok(outcome instanceof TesseraError, `the server started: ${String(outcome)}`);
    assert.equal(outcome.message, `auditDir: ${file} is a file; ${EXPECTED}`);
  });
});

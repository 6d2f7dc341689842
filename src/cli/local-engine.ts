import { FakeBackend } from '../backends/fake/backend.js';
import { OnnxBackend } from '../backends/onnx/backend.js';
import { SERVER_DEFAULTS } from '../config/server-config.js';
import { toTesseraError } from '../core/errors.js';
import { Engine } from '../engine/engine.js';

/** An in-process engine over a repository, for one-off commands (no listener). */
export function startLocalEngine(repository: string): Promise<Engine> {
  return Engine.start({
    repository,
    backends: [new OnnxBackend(), new FakeBackend()],
    scheduling: { defaultMaxBatchSize: 8, maxQueueSize: SERVER_DEFAULTS.maxQueueSize, retryAfterSeconds: 1, holdUntilQueued: 0 },
    strictReadiness: false,
    drainGraceMs: SERVER_DEFAULTS.shutdownGraceMs,
  });
}

/** Report a one-off command's failure as `tessera <command>: CODE: message` on stderr; exit code 1. */
export function reportFailure(command: string, error: unknown): void {
  const failure = toTesseraError(error);
  process.stderr.write(`tessera ${command}: ${failure.code}: ${failure.message}\n`);
  process.exitCode = 1;
}

import { platformNotes, resolveServerConfig } from './config-sources.js';
import { createLogger } from '../server/logger.js';
import { startServer } from '../server/server.js';

/**
 * `tessera serve`: start, then stop cleanly on SIGTERM/SIGINT (a second signal exits at once):
 * readiness turns false at once, the listeners close after `shutdownDelayMs`, requests drain
 * (up to `shutdownGraceMs`), logs and audit files are flushed, and the process exits 0.
 */
export async function serveCommand(flags: Record<string, unknown>): Promise<void> {
  let config;
  try {
    config = resolveServerConfig(flags, process.env);
  } catch (error) {
    process.stderr.write(`tessera: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  for (const note of platformNotes(process.env)) logger.info({}, note);
  let server;
  try {
    server = await startServer(config, { logger });
  } catch (error) {
    logger.fatal({ err: error }, 'tessera could not start');
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without draining');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, shutdownDelayMs: config.shutdownDelayMs, shutdownGraceMs: config.shutdownGraceMs }, 'signal received');
    // A drain that outlives the delay and both grace periods (listeners, then the engine) is stuck.
    const limitMs = config.shutdownDelayMs + 2 * config.shutdownGraceMs + 5000;
    setTimeout(() => {
      logger.error({ limitMs }, 'shutdown did not finish in time; exiting');
      exitFlushed(1);
    }, limitMs).unref();
    server.close().then(
      () => exitFlushed(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        exitFlushed(1);
      },
    );
  };
  /** Exit once the log lines written so far have reached stdout. */
  const exitFlushed = (code: number): void => {
    logger.flush(() => process.exit(code));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

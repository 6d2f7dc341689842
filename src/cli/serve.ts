import { platformNotes, resolveServerConfig } from './config-sources.js';
import { createLogger } from '../server/logger.js';
import { startServer } from '../server/server.js';

/** `tessera serve`: start, then stop cleanly on SIGTERM/SIGINT (a second signal exits at once). */
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
    logger.info({ signal }, 'signal received');
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

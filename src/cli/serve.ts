import { platformNotes, resolveServerConfig } from './config-sources.js';
import { MAX_TIMER_MS, type ServerConfig } from '../config/server-config.js';
import { createLogger } from '../server/logger.js';
import { startServer } from '../server/server.js';

/**
 * `tessera serve`: start, then stop cleanly on SIGTERM/SIGINT (a second signal exits at once):
 * readiness turns false at once, the listeners close after `shutdownDelayMs`, requests drain
 * (up to `shutdownGraceMs`), logs and audit files are flushed, and the process exits 0.
 * A configuration error exits 2, a failed start 1; either says why in one line on stderr.
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
  for (const note of platformNotes(process.env, config)) logger.info({}, note);
  let server;
  try {
    server = await startServer(config, { logger });
  } catch (error) {
    // stderr whatever the log level (even silent); the log line keeps the stack.
    process.stderr.write(`tessera: ${startFailure(error, config)}\n`);
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
    // A drain that outlives the delay and both grace periods (listeners, then the engine) is
    // stuck. Capped: a longer timer would fire at once.
    const limitMs = Math.min(config.shutdownDelayMs + 2 * config.shutdownGraceMs + 5000, MAX_TIMER_MS);
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

/**
 * Why the server could not start, in one line. A port in use (Node's and grpc-js's
 * "EADDRINUSE: address already in use <address>") names the setting that chose that port.
 */
export function startFailure(error: unknown, config: ServerConfig): string {
  const message = (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ');
  const inUse = /EADDRINUSE: address already in use ([^\s\]]+)/.exec(message);
  if (inUse === null) return message;
  const address = inUse[1]!;
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  const listeners: [flag: string, port: number, on: boolean][] = [
    ['--http-port', config.httpPort, true],
    ['--grpc-port', config.grpcPort, config.grpc],
    ['--metrics-port', config.metricsPort, config.metrics && !config.metricsOnHttpPort],
    ['--management-port', config.managementPort, config.management],
  ];
  const settings = listeners.filter(([, chosen, on]) => on && chosen === port).map(([flag]) => `${flag} ${port}`);
  return settings.length === 0 ? message : `${settings.join(', ')}: address ${address} is in use`;
}

import { pino, type Logger } from 'pino';
import type { ServerConfig } from '../config/server-config.js';

/** The process logger: JSON lines on stdout (pino), one `reqId` per request via Fastify. */
export function createLogger(level: ServerConfig['logLevel']): Logger {
  return pino({ level, base: { service: 'tessera' } });
}

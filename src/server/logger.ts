import { pino, type Logger } from 'pino';
import type { ServerConfig } from '../config/server-config.js';
import { REDACTED_LOG_PATHS, REDACTION_CENSOR } from '../security/redact.js';

/**
 * The process logger: JSON lines on stdout (pino), one `reqId` per request via Fastify.
 * Credential headers (Authorization, X-API-Key) are censored wherever they would be logged.
 */
export function createLogger(level: ServerConfig['logLevel']): Logger {
  return pino({ level, base: { service: 'tessera' }, redact: { paths: [...REDACTED_LOG_PATHS], censor: REDACTION_CENSOR } });
}

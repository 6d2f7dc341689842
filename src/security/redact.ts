/**
 * Log fields pino censors: credential headers wherever a request, its headers or gRPC metadata
 * are logged. Tessera's own code never logs them; this also covers serializers and plugins.
 */
export const REDACTED_LOG_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'request.headers.authorization',
  'request.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'metadata.authorization',
  'metadata["x-api-key"]',
  'credentials',
  '*.credentials',
];

export const REDACTION_CENSOR = '[redacted]';

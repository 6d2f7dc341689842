import { z } from 'zod';
import { DEFAULT_REQUEST_LIMITS } from './limits.js';

/**
 * The security keys of the server configuration (spread into src/config/server-config.ts's
 * schema, so TESSERA_* variables and config-file keys come with them). docs/security.md
 * describes each. Secrets (keys, the JWT secret) have no command-line flags: command lines
 * are visible to every user of the machine; pass them by environment or file.
 */

const apiKeyObject = z.strictObject({
  key: z.string().min(1).optional(),
  sha256: z.string().min(1).optional(),
  scopes: z.union([z.string(), z.array(z.string())]).optional(),
  models: z.union([z.string(), z.array(z.string())]).optional(),
  name: z.string().min(1).optional(),
  rateLimit: z.number().int().min(1).optional(),
  queryBudget: z.number().int().min(1).optional(),
});

export const securityConfigShape = {
  // Authentication and authorization: on as soon as API keys or JWT verification are configured.
  /** API keys: `<key>[:<scopes>[:<models>]]` strings (scopes, models `+`-separated) or objects. Env TESSERA_API_KEYS (comma-separated). */
  apiKeys: z.array(z.union([z.string().min(1), apiKeyObject])).default([]),
  /** A file of API keys: one per line (`<key> [scopes] [models] [name=..] [rate=..] [budget=..]`) or JSON. */
  apiKeysFile: z.string().min(1).optional(),
  /** HMAC secret for HS256 bearer tokens (at least 32 bytes). Env TESSERA_JWT_SECRET. */
  jwtSecret: z.string().min(1).optional(),
  /** PEM public key or certificate file for RS256 (ES256, ...) bearer tokens. */
  jwtPublicKey: z.string().min(1).optional(),
  /** JWKS URL of the token issuer (instead of jwtPublicKey). */
  jwtJwksUrl: z.string().url().optional(),
  /** Accepted JWT algorithms; empty: HS256 with a secret, RS256 with a public key or JWKS. */
  jwtAlgorithms: z.array(z.string().min(1)).default([]),
  /** Required `iss` of bearer tokens. */
  jwtIssuer: z.string().min(1).optional(),
  /** Required `aud` of bearer tokens. */
  jwtAudience: z.string().min(1).optional(),
  /** Claim holding a token's scopes; unset: `scope`, then `scopes`, then `scp`. */
  jwtScopeClaim: z.string().min(1).optional(),
  /** Claim holding a token's model allow list (absent claim: every model). */
  jwtModelsClaim: z.string().min(1).default('models'),
  /** Clock skew allowed when checking `exp` and `nbf`. */
  jwtClockToleranceSeconds: z.number().int().min(0).max(300).default(5),
  /** Health endpoints (/v2/health/*, /ping, gRPC health, ServerLive/Ready) answer without a credential. */
  authHealthOpen: z.boolean().default(true),

  // TLS for the HTTP, gRPC and management listeners.
  /** PEM certificate chain file; with tlsKey, every listener but metrics speaks TLS. */
  tlsCert: z.string().min(1).optional(),
  /** PEM private key file. */
  tlsKey: z.string().min(1).optional(),
  /** PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS). */
  tlsClientCa: z.string().min(1).optional(),

  // CORS on the HTTP listener: off unless origins are listed.
  /** Allowed browser origins (e.g. https://app.example.com), `*` for any. */
  corsOrigins: z.array(z.string().min(1)).default([]),

  // Request limits (0 = none).
  maxInputs: z.number().int().min(0).default(DEFAULT_REQUEST_LIMITS.maxInputs),
  maxTensorElements: z.number().int().min(0).default(DEFAULT_REQUEST_LIMITS.maxTensorElements),
  maxBytesTensorElements: z.number().int().min(0).default(DEFAULT_REQUEST_LIMITS.maxBytesTensorElements),
  maxBatchRows: z.number().int().min(0).default(DEFAULT_REQUEST_LIMITS.maxBatchRows),
  maxBytesElementLength: z.number().int().min(0).default(DEFAULT_REQUEST_LIMITS.maxBytesElementLength),
  maxJsonDepth: z.number().int().min(0).default(DEFAULT_REQUEST_LIMITS.maxJsonDepth),

  // Rate limits and query budgets, per key (per client address without one). 0 = none.
  /** Requests per window per client (token bucket: bursts up to this many). */
  rateLimit: z.number().int().min(0).default(0),
  rateLimitWindowSeconds: z.number().positive().default(60),
  /** Per-model quotas: `<model>=<requests per window>` for each client, on inference requests. */
  rateLimitModel: z.array(z.string().regex(/^[^=\s]+=\d+$/, 'must be <model>=<requests per window>')).default([]),
  /** Inference requests per client per period (against model extraction by scraping). */
  queryBudget: z.number().int().min(0).default(0),
  queryBudgetPeriodSeconds: z.number().positive().default(86_400),
};

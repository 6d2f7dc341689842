import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { ServerCredentials, ServerInterceptor } from '@grpc/grpc-js';
import type { ServerConfig } from '../config/server-config.js';
import type { Logger } from '../core/logger.js';
import { AccessControl } from './access.js';
import { ApiKeyStore, parseConfiguredKeys, readApiKeysFile, type ApiKeyEntry } from './api-keys.js';
import { Authenticator } from './auth.js';
import { securityInterceptor } from './grpc.js';
import type { HttpSecurity } from './http.js';
import { JwtVerifier } from './jwt.js';
import type { RequestLimits } from './limits.js';
import { RequestMeter, type QueryBudgetOptions, type RateLimitOptions } from './rate-limit.js';
import { grpcCredentials, httpsOptions, loadTls } from './tls.js';

/**
 * Everything security, built once from the server configuration at start-up (key files and
 * certificates are read here, so a bad one stops the server before it serves anything).
 * src/server/server.ts hands the parts to the listeners.
 */
export interface ServerSecurity {
  readonly access: AccessControl;
  readonly limits: RequestLimits;
  readonly http: HttpSecurity;
  /** Fastify `https` options when TLS is configured. */
  readonly https: HttpsServerOptions | undefined;
  readonly grpcCredentials: ServerCredentials;
  readonly grpcInterceptors: ServerInterceptor[];
  /** URL scheme of the HTTP listeners. */
  readonly scheme: 'http' | 'https';
  /** For the start-up log: what is on (never a secret). */
  readonly summary: Readonly<Record<string, unknown>>;
}

type SecurityConfig = Pick<
  ServerConfig,
  | 'apiKeys'
  | 'apiKeysFile'
  | 'jwtSecret'
  | 'jwtPublicKey'
  | 'jwtJwksUrl'
  | 'jwtAlgorithms'
  | 'jwtIssuer'
  | 'jwtAudience'
  | 'jwtScopeClaim'
  | 'jwtModelsClaim'
  | 'jwtClockToleranceSeconds'
  | 'authHealthOpen'
  | 'tlsCert'
  | 'tlsKey'
  | 'tlsClientCa'
  | 'corsOrigins'
  | 'maxInputs'
  | 'maxTensorElements'
  | 'maxBytesTensorElements'
  | 'maxBatchRows'
  | 'maxBytesElementLength'
  | 'maxJsonDepth'
  | 'rateLimit'
  | 'rateLimitWindowSeconds'
  | 'rateLimitModel'
  | 'queryBudget'
  | 'queryBudgetPeriodSeconds'
>;

export function createServerSecurity(config: SecurityConfig, logger: Logger): ServerSecurity {
  const authenticator = createAuthenticator(config, logger);
  const rate: RateLimitOptions = {
    requests: config.rateLimit,
    windowSeconds: config.rateLimitWindowSeconds,
    perModel: new Map(
      config.rateLimitModel.map((entry) => {
        const at = entry.lastIndexOf('=');
        return [entry.slice(0, at), Number(entry.slice(at + 1))] as const;
      }),
    ),
  };
  const budget: QueryBudgetOptions = { requests: config.queryBudget, periodSeconds: config.queryBudgetPeriodSeconds };
  // Keys may carry their own rate or budget: meter whenever any key does, too.
  const keysMeter = authenticator?.meters === true;
  const meter = RequestMeter.configured(rate, budget) || keysMeter ? new RequestMeter(rate, budget) : undefined;
  const access = new AccessControl({ authenticator: authenticator?.authenticator, healthOpen: config.authHealthOpen, meter });
  const limits: RequestLimits = {
    maxInputs: config.maxInputs,
    maxTensorElements: config.maxTensorElements,
    maxBytesTensorElements: config.maxBytesTensorElements,
    maxBatchRows: config.maxBatchRows,
    maxBytesElementLength: config.maxBytesElementLength,
    maxJsonDepth: config.maxJsonDepth,
  };
  const tls = loadTls({ cert: config.tlsCert, key: config.tlsKey, clientCa: config.tlsClientCa });
  return {
    access,
    limits,
    http: { access, limits, corsOrigins: config.corsOrigins },
    https: tls === undefined ? undefined : httpsOptions(tls),
    grpcCredentials: grpcCredentials(tls),
    grpcInterceptors: [securityInterceptor({ access, limits, logger })],
    scheme: tls === undefined ? 'http' : 'https',
    summary: {
      auth: authenticator === undefined ? 'off' : authenticator.authenticator.describe(),
      ...(authenticator === undefined ? {} : { healthOpen: config.authHealthOpen }),
      tls: tls === undefined ? 'off' : tls.clientCa === undefined ? 'on' : 'mutual',
      cors: config.corsOrigins.length === 0 ? 'off' : config.corsOrigins,
      rateLimit: config.rateLimit === 0 ? 'off' : `${config.rateLimit}/${config.rateLimitWindowSeconds}s`,
      ...(rate.perModel.size === 0 ? {} : { modelQuotas: Object.fromEntries(rate.perModel) }),
      queryBudget: config.queryBudget === 0 ? 'off' : `${config.queryBudget}/${config.queryBudgetPeriodSeconds}s`,
    },
  };
}

function createAuthenticator(config: SecurityConfig, logger: Logger): { authenticator: Authenticator; meters: boolean } | undefined {
  const entries: ApiKeyEntry[] = [...parseConfiguredKeys(config.apiKeys, 'apiKeys')];
  if (config.apiKeysFile !== undefined) entries.push(...readApiKeysFile(config.apiKeysFile));
  const keysConfigured = config.apiKeys.length > 0 || config.apiKeysFile !== undefined;
  const jwtConfigured = config.jwtSecret !== undefined || config.jwtPublicKey !== undefined || config.jwtJwksUrl !== undefined;
  if (!keysConfigured && !jwtConfigured) {
    for (const [setting, value] of [['jwtIssuer', config.jwtIssuer], ['jwtAudience', config.jwtAudience]] as const) {
      if (value !== undefined) throw new Error(`${setting} is set but no JWT key is (jwtSecret, jwtPublicKey or jwtJwksUrl)`);
    }
    return undefined;
  }
  if (keysConfigured && entries.length === 0) logger.warn({}, 'authentication is on but the API keys file holds no key: every request that needs one is refused');
  const jwt = jwtConfigured
    ? new JwtVerifier({
        ...(config.jwtSecret === undefined ? {} : { secret: config.jwtSecret }),
        ...(config.jwtPublicKey === undefined ? {} : { publicKeyFile: config.jwtPublicKey }),
        ...(config.jwtJwksUrl === undefined ? {} : { jwksUrl: config.jwtJwksUrl }),
        ...(config.jwtAlgorithms.length === 0 ? {} : { algorithms: config.jwtAlgorithms }),
        ...(config.jwtIssuer === undefined ? {} : { issuer: config.jwtIssuer }),
        ...(config.jwtAudience === undefined ? {} : { audience: config.jwtAudience }),
        ...(config.jwtScopeClaim === undefined ? {} : { scopeClaim: config.jwtScopeClaim }),
        modelsClaim: config.jwtModelsClaim,
        clockToleranceSeconds: config.jwtClockToleranceSeconds,
        logger,
      })
    : undefined;
  if (jwt !== undefined && (config.jwtIssuer === undefined || config.jwtAudience === undefined)) {
    logger.warn({}, 'JWT verification without jwtIssuer and jwtAudience accepts any token signed with the key, whoever it was issued to');
  }
  const keys = keysConfigured ? new ApiKeyStore(entries) : undefined;
  return {
    authenticator: new Authenticator(keys, jwt),
    meters: entries.some((entry) => entry.principal.rateLimit !== undefined || entry.principal.queryBudget !== undefined),
  };
}

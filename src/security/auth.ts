import { TesseraError } from '../core/errors.js';
import type { ApiKeyStore } from './api-keys.js';
import { looksLikeJwt, type JwtVerifier } from './jwt.js';
import type { Principal } from './principal.js';

/**
 * Authentication: a request's credential → its principal. HTTP carries it as
 * `Authorization: Bearer <token>` or `X-API-Key: <key>`; gRPC as the same names in call
 * metadata. A bearer token shaped like a JWT is verified as one when JWT verification is
 * configured; any other credential must be a known API key. Messages never echo the
 * credential.
 */

/** The credential headers (or metadata entries) of one request, as received. */
export interface PresentedCredentials {
  readonly authorization?: string | undefined;
  readonly apiKey?: string | undefined;
}

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

export const NO_CREDENTIAL = 'this endpoint needs a credential: send Authorization: Bearer <token> or X-API-Key: <key>';

export class Authenticator {
  constructor(
    private readonly keys: ApiKeyStore | undefined,
    private readonly jwt: JwtVerifier | undefined,
  ) {}

  /** What credentials it accepts, for the start-up log. */
  describe(): string {
    return [this.keys === undefined ? undefined : `${this.keys.size} API key${this.keys.size === 1 ? '' : 's'}`, this.jwt === undefined ? undefined : 'JWT bearer tokens']
      .filter((part) => part !== undefined)
      .join(' and ');
  }

  async authenticate(credentials: PresentedCredentials): Promise<Principal> {
    const { authorization, apiKey } = credentials;
    const hasAuthorization = authorization !== undefined && authorization !== '';
    const hasApiKey = apiKey !== undefined && apiKey !== '';
    if (!hasAuthorization && !hasApiKey) throw new TesseraError('UNAUTHENTICATED', NO_CREDENTIAL);
    if (hasAuthorization && hasApiKey) throw new TesseraError('UNAUTHENTICATED', 'send one credential: Authorization or X-API-Key, not both');
    if (hasApiKey) return this.key(apiKey.trim());
    const match = BEARER.exec(authorization!);
    if (match === null) throw new TesseraError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <token>"');
    const token = match[1]!;
    if (this.jwt !== undefined && looksLikeJwt(token)) return this.jwt.verify(token);
    return this.key(token);
  }

  private key(presented: string): Principal {
    const principal = this.keys?.lookup(presented);
    if (principal === undefined) {
      throw new TesseraError('UNAUTHENTICATED', this.keys === undefined ? 'the bearer token is not a valid JWT' : 'the credential is not a valid API key or token');
    }
    return principal;
  }
}

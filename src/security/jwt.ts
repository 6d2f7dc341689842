import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { TesseraError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { isScope, listOf, type Principal, type Scope } from './principal.js';

/**
 * Bearer tokens as JWTs (RFC 7519), verified with jose: HS256/384/512 with a shared secret,
 * RS/PS/ES/EdDSA with a public key (PEM: SPKI or an X.509 certificate) or a JWKS URL. The
 * algorithm family picks the key (an HS token is only ever checked with the secret, never with
 * the public key: no algorithm confusion). `exp` is required; `iss` and `aud` are checked when
 * configured. Scopes come from `scope` (space-separated, RFC 8693), `scopes` or `scp`, the
 * model allow list from `models` (both claim names configurable); a token without a models
 * claim may use every model.
 */
export interface JwtOptions {
  /** HMAC secret (HS256/384/512); at least 32 bytes. */
  readonly secret?: string;
  /** Path of a PEM public key or certificate (RS256, ES256, ...). */
  readonly publicKeyFile?: string;
  /** A JWKS endpoint, e.g. https://issuer/.well-known/jwks.json. */
  readonly jwksUrl?: string;
  /** Accepted `alg` values; default HS256 with a secret, RS256 with a public key or JWKS. */
  readonly algorithms?: readonly string[];
  readonly issuer?: string;
  readonly audience?: string;
  /** Claim holding the scopes; default: `scope`, then `scopes`, then `scp`. */
  readonly scopeClaim?: string;
  /** Claim holding the model allow list; default `models`. */
  readonly modelsClaim?: string;
  readonly clockToleranceSeconds?: number;
  readonly logger?: Logger;
}

const HMAC = ['HS256', 'HS384', 'HS512'] as const;
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
const MIN_SECRET_BYTES = 32;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** True when a bearer token has the compact JWS shape (header.payload.signature). */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

export class JwtVerifier {
  private readonly getKey: JWTVerifyGetKey;
  private readonly algorithms: string[];

  constructor(private readonly options: JwtOptions) {
    const secret = options.secret === undefined ? undefined : new TextEncoder().encode(options.secret);
    if (secret !== undefined && secret.length < MIN_SECRET_BYTES) {
      throw new Error(`the JWT secret is ${secret.length} bytes; HS256 needs at least ${MIN_SECRET_BYTES} (e.g. openssl rand -base64 48)`);
    }
    if (options.publicKeyFile !== undefined && options.jwksUrl !== undefined) throw new Error('give a JWT public key or a JWKS URL, not both');
    const publicKey = options.publicKeyFile === undefined ? undefined : readPublicKey(options.publicKeyFile);
    const jwks = options.jwksUrl === undefined ? undefined : createRemoteJWKSet(new URL(options.jwksUrl));
    const asymmetric = publicKey !== undefined || jwks !== undefined;
    if (secret === undefined && !asymmetric) throw new Error('JWT verification needs a secret, a public key or a JWKS URL');
    this.algorithms = [...(options.algorithms ?? [...(secret === undefined ? [] : ['HS256']), ...(asymmetric ? ['RS256'] : [])])];
    for (const alg of this.algorithms) {
      const hmac = (HMAC as readonly string[]).includes(alg);
      if (!hmac && !(ASYMMETRIC as readonly string[]).includes(alg)) throw new Error(`unknown JWT algorithm '${alg}' (${[...HMAC, ...ASYMMETRIC].join(', ')})`);
      if (hmac && secret === undefined) throw new Error(`JWT algorithm ${alg} needs a secret (jwtSecret)`);
      if (!hmac && !asymmetric) throw new Error(`JWT algorithm ${alg} needs a public key (jwtPublicKey) or a JWKS URL (jwtJwksUrl)`);
    }
    this.getKey = async (header, token) => {
      if ((HMAC as readonly string[]).includes(header.alg)) {
        if (secret === undefined) throw new errors.JOSEAlgNotAllowed('no secret for HMAC algorithms');
        return secret;
      }
      if (jwks !== undefined) return jwks(header, token);
      if (publicKey === undefined) throw new errors.JOSEAlgNotAllowed('no public key for asymmetric algorithms');
      return publicKey;
    };
  }

  /** The principal of a valid token; UNAUTHENTICATED naming what is wrong otherwise. */
  async verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey, {
        algorithms: this.algorithms,
        requiredClaims: ['exp'],
        clockTolerance: this.options.clockToleranceSeconds ?? 0,
        ...(this.options.issuer === undefined ? {} : { issuer: this.options.issuer }),
        ...(this.options.audience === undefined ? {} : { audience: this.options.audience }),
      }));
    } catch (error) {
      throw new TesseraError('UNAUTHENTICATED', this.describe(error), { cause: error });
    }
    // RFC 7519 §4.1.2: `sub` is a string. Any other value (which jose lets through) would put
    // every such token under one name, and so one rate-limit bucket.
    if (payload.sub !== undefined && (typeof payload.sub !== 'string' || payload.sub === '')) {
      throw new TesseraError('UNAUTHENTICATED', `the bearer token's 'sub' claim must be a non-empty string, got ${describeClaim(payload.sub)}`);
    }
    const subject = payload.sub;
    const name = subject ?? (typeof payload.iss === 'string' ? `${payload.iss} (no sub)` : 'unnamed');
    return {
      id: `jwt:${name}`,
      label: `token of '${name}'`,
      scopes: this.scopesOf(payload),
      models: this.modelsOf(payload),
      kind: 'jwt',
    };
  }

  private scopesOf(payload: JWTPayload): Set<Scope> {
    const claims = this.options.scopeClaim === undefined ? ['scope', 'scopes', 'scp'] : [this.options.scopeClaim];
    const out = new Set<Scope>();
    for (const claim of claims) {
      const value = payload[claim];
      if (typeof value !== 'string' && !(Array.isArray(value) && value.every((item) => typeof item === 'string'))) continue;
      // Scopes the server does not know (openid, profile, ...) are other services' business.
      for (const item of listOf(value as string | string[], /[\s,]+/)) if (isScope(item)) out.add(item);
      break;
    }
    return out;
  }

  private modelsOf(payload: JWTPayload): Set<string> | undefined {
    const value = payload[this.options.modelsClaim ?? 'models'];
    if (value === undefined) return undefined;
    // A claim of the wrong type, or an empty list, allows no model (unlike an absent claim).
    if (typeof value !== 'string' && !(Array.isArray(value) && value.every((item) => typeof item === 'string'))) return new Set();
    const items = listOf(value as string | string[], /[\s,]+/);
    return items.includes('*') ? undefined : new Set(items);
  }

  private describe(error: unknown): string {
    if (error instanceof errors.JWTExpired) return 'the bearer token has expired';
    if (error instanceof errors.JWTClaimValidationFailed) {
      if (error.reason === 'missing') return `the bearer token has no '${error.claim}' claim`;
      if (error.claim === 'aud') return 'the bearer token is not meant for this server (its audience is not accepted)';
      if (error.claim === 'iss') return 'the bearer token is from an issuer that is not accepted';
      if (error.claim === 'nbf') return 'the bearer token is not valid yet';
      return `the bearer token's '${error.claim}' claim is not accepted`;
    }
    if (error instanceof errors.JOSEAlgNotAllowed) return `the bearer token's algorithm is not accepted (accepted: ${this.algorithms.join(', ')})`;
    if (error instanceof errors.JWSSignatureVerificationFailed) return "the bearer token's signature does not verify";
    if (error instanceof errors.JWKSNoMatchingKey) return "the bearer token's key is not in the issuer's key set";
    if (error instanceof errors.JWKSTimeout || (error instanceof errors.JOSEError && error.code === 'ERR_JWKS_INVALID')) {
      this.options.logger?.warn({ err: error }, 'JWT verification: the JWKS could not be fetched');
      return 'the bearer token could not be verified now (the key set is unavailable)';
    }
    if (error instanceof errors.JOSEError) return 'the bearer token is not a valid JWT';
    this.options.logger?.warn({ err: error }, 'JWT verification failed unexpectedly');
    return 'the bearer token could not be verified';
  }
}

function readPublicKey(path: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read the JWT public key ${path}: ${(error as Error).message}`);
  }
  try {
    return createPublicKey(pem);
  } catch (error) {
    throw new Error(`${path} is not a PEM public key or certificate: ${(error as Error).message}`);
  }
}

/** A claim's value for a message: short JSON. */
function describeClaim(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

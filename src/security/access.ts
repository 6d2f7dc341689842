import { TesseraError } from '../core/errors.js';
import type { Authenticator, PresentedCredentials } from './auth.js';
import { anonymousPrincipal, type Principal, type Scope } from './principal.js';
import type { RequestMeter } from './rate-limit.js';

/**
 * Access control, the same for every front door: each endpoint states a {@link Requirement};
 * {@link AccessControl.admit} authenticates the caller (when authentication is on), checks the
 * scope and the model allow list, then the rate limits and budget. HTTP (src/security/http.ts)
 * and gRPC (src/security/grpc.ts) only translate their requests into requirements.
 */

/**
 * What an endpoint needs: `health` (open unless health checks are configured closed, then any
 * valid credential), `authenticated` (any valid credential: unknown routes, so their
 * existence is not disclosed), or a scope.
 */
export type Access = 'health' | 'authenticated' | Scope;

/**
 * Which models an endpoint touches: one (the allow list applies), `all` (it spans or lists
 * every model: refused to keys limited to some models), or `none` (not about models).
 */
export type ModelTarget = { readonly model: string } | 'all' | 'none';

export interface Requirement {
  readonly access: Access;
  readonly models: ModelTarget;
}

export interface Caller {
  readonly credentials: PresentedCredentials;
  /** The client's address: anonymous callers are rate-limited by it. */
  readonly address: string;
}

export interface AccessOptions {
  /** Undefined: authentication is off, every caller is anonymous and may do anything. */
  readonly authenticator?: Authenticator | undefined;
  /** Health endpoints answer without a credential (default true). */
  readonly healthOpen?: boolean;
  /** Rate limits and budgets; undefined: none. */
  readonly meter?: RequestMeter | undefined;
}

export interface CheckOptions {
  /** False: rate limits and budgets do not apply (the management API). Default true. */
  readonly metered?: boolean;
}

/** The result of admitting a request. */
export interface Admission {
  readonly principal: Principal;
}

export class AccessControl {
  readonly authenticating: boolean;
  private readonly healthOpen: boolean;

  constructor(private readonly options: AccessOptions) {
    this.authenticating = options.authenticator !== undefined;
    this.healthOpen = options.healthOpen ?? true;
  }

  /** True when anything is enforced: authentication, rate limits or budgets. */
  get active(): boolean {
    return this.authenticating || this.options.meter !== undefined;
  }

  /** True when `requirement` is met by anyone, credential or not (an open health check). */
  isOpen(requirement: Requirement): boolean {
    return requirement.access === 'health' && (this.healthOpen || !this.authenticating);
  }

  /**
   * Admit a request or throw: UNAUTHENTICATED (no, or an invalid, credential), PERMISSION_DENIED
   * (scope or model), RATE_LIMITED, QUERY_BUDGET_EXHAUSTED.
   */
  async admit(requirement: Requirement, caller: Caller, options: CheckOptions = {}): Promise<Admission> {
    const principal = await this.identify(requirement, caller);
    this.check(principal, requirement, options);
    return { principal };
  }

  /**
   * Who the caller is: anonymous (keyed by address) for open endpoints and when authentication
   * is off; else the principal of its credential (UNAUTHENTICATED when it has none or a bad one).
   */
  async identify(requirement: Requirement, caller: Caller): Promise<Principal> {
    if (this.isOpen(requirement) || this.options.authenticator === undefined) return anonymousPrincipal(caller.address);
    return this.options.authenticator.authenticate(caller.credentials);
  }

  /** Scope, model allow list, then rate limits and budget (which count the request). */
  check(principal: Principal, requirement: Requirement, options: CheckOptions = {}): void {
    if (this.isOpen(requirement)) return;
    authorize(principal, requirement);
    if (requirement.access === 'health' || options.metered === false) return;
    const model = typeof requirement.models === 'object' ? requirement.models.model : undefined;
    this.options.meter?.admit({ principal, model, inference: requirement.access === 'infer' });
  }
}

/** Check scope and model allow list; PERMISSION_DENIED saying what is missing. */
export function authorize(principal: Principal, requirement: Requirement): void {
  const { access, models } = requirement;
  if (access !== 'health' && access !== 'authenticated' && !principal.scopes.has(access)) {
    const has = [...principal.scopes];
    throw new TesseraError(
      'PERMISSION_DENIED',
      `${principal.label} lacks the '${access}' scope this endpoint needs (it has ${has.length === 0 ? 'no scopes' : has.join(', ')})`,
    );
  }
  const allowed = principal.models;
  if (allowed === undefined || access === 'health' || access === 'authenticated') return;
  if (models === 'all') {
    throw new TesseraError(
      'PERMISSION_DENIED',
      `${principal.label} may use only ${describeModels(allowed)}, and this endpoint spans every model; address a model by name`,
    );
  }
  if (typeof models === 'object' && !allowed.has(models.model)) {
    throw new TesseraError('PERMISSION_DENIED', `${principal.label} may not use model '${models.model}' (it may use ${describeModels(allowed)})`);
  }
}

function describeModels(models: ReadonlySet<string>): string {
  return models.size === 0 ? 'no model' : `model${models.size === 1 ? '' : 's'} ${[...models].map((m) => `'${m}'`).join(', ')}`;
}

/** The scope a PERMISSION_DENIED is about, for `WWW-Authenticate: Bearer error="insufficient_scope"`. */
export function missingScope(requirement: Requirement): Scope | undefined {
  const { access } = requirement;
  return access === 'health' || access === 'authenticated' ? undefined : access;
}

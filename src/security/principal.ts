/**
 * Who a request is from, once authenticated, and what it may do. Scopes are independent
 * (`admin` does not imply `infer`): a key gets exactly the scopes it is given.
 */

/** `infer`: run models. `read`: metadata, config, stats, index. `admin`: load/unload and the management API. */
export type Scope = 'infer' | 'read' | 'admin';

export const SCOPES: readonly Scope[] = ['infer', 'read', 'admin'];

/** Scopes of an API key that states none. */
export const DEFAULT_KEY_SCOPES: readonly Scope[] = ['infer', 'read'];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

export interface Principal {
  /**
   * Stable, non-secret id: rate limits and budgets are kept per id, and logs name it.
   * `key:<name>` (or `key:<sha256 prefix>`), `jwt:<sub>`, or `ip:<address>` when anonymous.
   */
  readonly id: string;
  /** How error messages name it: `API key 'ci'`, `token of 'alice'`. */
  readonly label: string;
  readonly scopes: ReadonlySet<Scope>;
  /** Models it may use; undefined = every model. */
  readonly models: ReadonlySet<string> | undefined;
  /** Its own request rate per window, replacing the server's per-client rate. */
  readonly rateLimit?: number;
  /** Its own inference budget per period, replacing the server's. */
  readonly queryBudget?: number;
  readonly kind: 'api-key' | 'jwt' | 'anonymous';
}

/** The caller when authentication is off (or the endpoint is open): keyed by address. */
export function anonymousPrincipal(address: string): Principal {
  return { id: `ip:${address}`, label: `client ${address}`, scopes: new Set(SCOPES), models: undefined, kind: 'anonymous' };
}

/** Split a list given as a string (`a,b`, `a b`, `a+b`) or an array into trimmed, non-empty items. */
export function listOf(value: string | readonly string[], separators = /[\s,+]+/): string[] {
  const items = typeof value === 'string' ? value.split(separators) : value.flatMap((item) => item.split(separators));
  return items.map((item) => item.trim()).filter((item) => item !== '');
}

/** Parse scope names, refusing unknown ones (`where` names the source for the message). */
export function parseScopes(value: string | readonly string[], where: string): Set<Scope> {
  const out = new Set<Scope>();
  for (const item of listOf(value)) {
    if (!isScope(item)) throw new Error(`${where}: unknown scope '${item}'; scopes are ${SCOPES.join(', ')}`);
    out.add(item);
  }
  if (out.size === 0) throw new Error(`${where}: no scopes given; scopes are ${SCOPES.join(', ')}`);
  return out;
}

/** Parse a model allow list; `*` (alone) means every model (undefined). */
export function parseModels(value: string | readonly string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const items = listOf(value);
  if (items.length === 0 || items.includes('*')) return undefined;
  return new Set(items);
}

/**
 * The pure routing decision: which version serves a request, and why. No I/O, no clock, no
 * randomness of its own (the caller passes a uniform number), so every rule is unit-testable.
 *
 * Precedence, first match wins:
 *  1. a version (or alias) in the URL / request            reason `url` / `alias`
 *  2. the override header or parameter (testing)           reason `override`
 *  3. a running canary: canary or stable by its share       reason `canary` / `stable`
 *  4. the weighted split                                   reason `split`
 *  5. the default version (or alias)                       reason `default`
 *  6. nothing pinned: the engine's default (highest READY) reason `default`, version undefined
 * A sticky key replaces the random number in 3 and 4 by a hash of the key, so a caller keeps
 * its version for as long as the weights stay the same. The canary test is `point < share`,
 * so raising the share only moves callers to the canary, never back.
 */

export type RouteReason = 'url' | 'alias' | 'override' | 'canary' | 'stable' | 'split' | 'default';

export interface RouteTable {
  readonly model: string;
  /** READY versions, ascending. */
  readonly ready: readonly string[];
  readonly aliases: ReadonlyMap<string, string>;
  /** A version or an alias; undefined = the engine's default. */
  readonly defaultVersion: string | undefined;
  /** Weights by version; undefined = no split. */
  readonly split: Readonly<Record<string, number>> | undefined;
  /** A running canary: its version, the stable version and the canary's share in percent. */
  readonly canary: { readonly version: string; readonly stable: string; readonly share: number } | undefined;
}

export interface RouteInputs {
  /** The version the request names (URL or request field): a version or an alias. */
  readonly explicit: string | undefined;
  /** The override header's or parameter's value. */
  readonly override: string | undefined;
  /** The sticky key, when the model has one and the request carries it. */
  readonly key: string | undefined;
  /** Uniform in [0, 1), used when there is no sticky key. */
  readonly random: number;
}

export interface RouteDecision {
  /** The version to serve; undefined = let the engine pick its default. */
  readonly version: string | undefined;
  readonly reason: RouteReason;
}

/** FNV-1a (32 bit) of a string's UTF-16 code units, as a number in [0, 1). */
export function hashUnit(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  // Final avalanche (murmur3's fmix32): FNV's low bits alone spread short keys poorly.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) / 4294967296;
}

/** A point in [0, 1) for one purpose (`salt`): the key's hash, or the random number. */
function pointOf(table: RouteTable, inputs: RouteInputs, salt: string): number {
  return inputs.key === undefined ? inputs.random : hashUnit(`${table.model}\u0000${salt}\u0000${inputs.key}`);
}

/** An alias's version, or the name itself. */
export function resolveName(table: Pick<RouteTable, 'aliases'>, name: string): string {
  return table.aliases.get(name) ?? name;
}

/** The version serving a request, and why. */
export function decideRoute(table: RouteTable, inputs: RouteInputs): RouteDecision {
  if (inputs.explicit !== undefined && inputs.explicit !== '') {
    const aliased = table.aliases.get(inputs.explicit);
    return aliased === undefined ? { version: inputs.explicit, reason: 'url' } : { version: aliased, reason: 'alias' };
  }
  if (inputs.override !== undefined && inputs.override !== '') return { version: resolveName(table, inputs.override), reason: 'override' };
  const canary = table.canary;
  if (canary !== undefined && canary.share > 0 && table.ready.includes(canary.version) && table.ready.includes(canary.stable)) {
    return pointOf(table, inputs, 'canary') * 100 < canary.share ? { version: canary.version, reason: 'canary' } : { version: canary.stable, reason: 'stable' };
  }
  if (table.split !== undefined) {
    const chosen = pickWeighted(table.split, table.ready, pointOf(table, inputs, 'split'));
    if (chosen !== undefined) return { version: chosen, reason: 'split' };
  }
  if (table.defaultVersion !== undefined) {
    const version = resolveName(table, table.defaultVersion);
    if (table.ready.includes(version)) return { version, reason: 'default' };
  }
  return { version: undefined, reason: 'default' };
}

/**
 * The version at `point` of the cumulative weights of the READY versions (ascending version
 * order, so the same point always lands on the same version); undefined when none is READY.
 */
export function pickWeighted(split: Readonly<Record<string, number>>, ready: readonly string[], point: number): string | undefined {
  let total = 0;
  for (const version of ready) total += split[version] ?? 0;
  if (!(total > 0)) return undefined;
  const target = point * total;
  let cumulative = 0;
  let last: string | undefined;
  for (const version of ready) {
    const weight = split[version] ?? 0;
    if (weight <= 0) continue;
    cumulative += weight;
    last = version;
    if (target < cumulative) return version;
  }
  return last;
}

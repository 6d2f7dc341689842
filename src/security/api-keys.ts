import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DEFAULT_KEY_SCOPES, parseModels, parseScopes, type Principal, type Scope } from './principal.js';

/**
 * API keys: from the configuration (`apiKeys`, TESSERA_API_KEYS, --api-key) and from a keys file
 * (`apiKeysFile`), one per line or as JSON. Keys are kept only as SHA-256 digests; a presented
 * key is hashed too and compared with every known digest by crypto.timingSafeEqual, without an
 * early exit, so neither the comparison nor which key matched shows in the response time.
 * A file may hold digests instead of keys (`sha256:<hex>`), so it need not hold secrets at all.
 * Keys never appear in error messages or logs: entries are named by line or position.
 */

/** Shortest plain-text key accepted: shorter keys could be guessed. */
export const MIN_KEY_LENGTH = 16;

export interface ApiKeyEntry {
  readonly digest: Buffer;
  readonly principal: Principal;
}

/** An API key as a JSON or YAML object (config file or JSON keys file). */
export interface ApiKeyObject {
  /** The key itself, or: */
  readonly key?: string;
  /** its SHA-256, hex (64 characters). */
  readonly sha256?: string;
  readonly scopes?: string | readonly string[];
  readonly models?: string | readonly string[];
  /** A name for logs and messages (default: the first 12 hex digits of the digest). */
  readonly name?: string;
  /** Requests per rate-limit window for this key, replacing the server's. */
  readonly rateLimit?: number;
  /** Inference requests per budget period for this key, replacing the server's. */
  readonly queryBudget?: number;
}

const SHA256_PREFIX = 'sha256:';
const HEX_DIGEST = /^[0-9a-f]{64}$/i;
/** Visible ASCII: what an HTTP header value or gRPC metadata value carries without escaping. */
const KEY_CHARACTERS = /^[\x21-\x7e]+$/;

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

interface KeyFields {
  readonly secret: { key: string } | { digest: Buffer };
  readonly scopes?: string | readonly string[] | undefined;
  readonly models?: string | readonly string[] | undefined;
  readonly name?: string | undefined;
  readonly rateLimit?: number | undefined;
  readonly queryBudget?: number | undefined;
}

function entryOf(fields: KeyFields, where: string): ApiKeyEntry {
  let digest: Buffer;
  if ('key' in fields.secret) {
    const key = fields.secret.key;
    if (!KEY_CHARACTERS.test(key)) throw new Error(`${where}: the key must be visible ASCII characters without spaces`);
    if (key.length < MIN_KEY_LENGTH) throw new Error(`${where}: the key is shorter than ${MIN_KEY_LENGTH} characters; use a long random key (e.g. openssl rand -hex 32)`);
    digest = sha256(key);
  } else {
    digest = fields.secret.digest;
  }
  const scopes: ReadonlySet<Scope> = fields.scopes === undefined ? new Set(DEFAULT_KEY_SCOPES) : parseScopes(fields.scopes, where);
  const name = fields.name ?? digest.toString('hex').slice(0, 12);
  for (const [field, value] of [['rateLimit', fields.rateLimit], ['queryBudget', fields.queryBudget]] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw new Error(`${where}: ${field} must be a positive integer`);
  }
  return {
    digest,
    principal: {
      id: `key:${name}`,
      label: `API key '${name}'`,
      scopes,
      models: parseModels(fields.models),
      ...(fields.rateLimit === undefined ? {} : { rateLimit: fields.rateLimit }),
      ...(fields.queryBudget === undefined ? {} : { queryBudget: fields.queryBudget }),
      kind: 'api-key',
    },
  };
}

function secretOf(token: string, where: string): { key: string } | { digest: Buffer } {
  if (token.toLowerCase().startsWith(SHA256_PREFIX)) {
    const hex = token.slice(SHA256_PREFIX.length);
    if (!HEX_DIGEST.test(hex)) throw new Error(`${where}: a sha256: digest must be 64 hex digits`);
    return { digest: Buffer.from(hex, 'hex') };
  }
  return { key: token };
}

/**
 * One key as a configuration string: `<key>[:<scopes>[:<models>]]`, scopes and models separated
 * by `+` (commas separate keys in TESSERA_API_KEYS), e.g. `k3y...:infer+read:iris+resnet`.
 * `<key>` may be `sha256:<hex>`.
 */
export function parseApiKeySpec(spec: string, where: string): ApiKeyEntry {
  let rest = spec.trim();
  let token: string;
  if (rest.toLowerCase().startsWith(SHA256_PREFIX)) {
    const end = rest.indexOf(':', SHA256_PREFIX.length);
    token = end === -1 ? rest : rest.slice(0, end);
    rest = end === -1 ? '' : rest.slice(end + 1);
  } else {
    const end = rest.indexOf(':');
    token = end === -1 ? rest : rest.slice(0, end);
    rest = end === -1 ? '' : rest.slice(end + 1);
  }
  const [scopes, models, ...extra] = rest === '' ? [] : rest.split(':');
  if (extra.length > 0) throw new Error(`${where}: expected <key>[:<scopes>[:<models>]]`);
  return entryOf({ secret: secretOf(token, where), scopes: scopes === undefined || scopes === '' ? undefined : scopes, models }, where);
}

/** One key as an object (config file or JSON keys file). */
export function parseApiKeyObject(value: unknown, where: string): ApiKeyEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected an object {"key" | "sha256", "scopes", "models", "name"}`);
  const object = value as Record<string, unknown>;
  const known = new Set(['key', 'sha256', 'scopes', 'models', 'name', 'rateLimit', 'queryBudget']);
  const unknown = Object.keys(object).filter((field) => !known.has(field));
  if (unknown.length > 0) throw new Error(`${where}: unknown field${unknown.length === 1 ? '' : 's'} ${unknown.join(', ')}`);
  const key = object['key'];
  const digest = object['sha256'];
  if ((key === undefined) === (digest === undefined)) throw new Error(`${where}: give exactly one of "key" and "sha256"`);
  if (key !== undefined && typeof key !== 'string') throw new Error(`${where}: "key" must be a string`);
  if (digest !== undefined && (typeof digest !== 'string' || !HEX_DIGEST.test(digest.replace(/^sha256:/i, '')))) {
    throw new Error(`${where}: "sha256" must be 64 hex digits`);
  }
  const stringList = (field: string): string | readonly string[] | undefined => {
    const item = object[field];
    if (item === undefined) return undefined;
    if (typeof item === 'string' || (Array.isArray(item) && item.every((entry) => typeof entry === 'string'))) return item as string | string[];
    throw new Error(`${where}: "${field}" must be a string or an array of strings`);
  };
  const number = (field: string): number | undefined => {
    const item = object[field];
    if (item === undefined) return undefined;
    if (typeof item !== 'number') throw new Error(`${where}: "${field}" must be a number`);
    return item;
  };
  const name = object['name'];
  if (name !== undefined && (typeof name !== 'string' || name === '')) throw new Error(`${where}: "name" must be a non-empty string`);
  return entryOf(
    {
      secret: key !== undefined ? { key: key as string } : { digest: Buffer.from((digest as string).replace(/^sha256:/i, ''), 'hex') },
      scopes: stringList('scopes'),
      models: stringList('models'),
      name: name as string | undefined,
      rateLimit: number('rateLimit'),
      queryBudget: number('queryBudget'),
    },
    where,
  );
}

/**
 * A keys file: JSON (an array of key objects, or `{"keys": [...]}`) or text, one key per line:
 *
 * ```text
 * # key                 scopes       models        options
 * 9f86d081884c7d659a2f  infer,read   iris,resnet   name=ci rate=100 budget=10000
 * sha256:2c26b46b68ff...  admin      *             name=ops
 * ```
 *
 * Scopes default to infer,read; models to every model (`*`).
 */
export function parseApiKeysFile(text: string, path: string): ApiKeyEntry[] {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(`${path}: not valid JSON: ${(error as Error).message}`);
    }
    const list = Array.isArray(json) ? json : (json as Record<string, unknown>)['keys'];
    if (!Array.isArray(list)) throw new Error(`${path}: expected an array of keys or {"keys": [...]}`);
    return list.map((item, i) => parseApiKeyObject(item, `${path}: key ${i + 1}`));
  }
  const entries: ApiKeyEntry[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') continue;
    const where = `${path}:${index + 1}`;
    const [token, ...fields] = line.split(/\s+/);
    const positional = fields.filter((field) => !field.includes('='));
    const options = new Map(
      fields
        .filter((field) => field.includes('='))
        .map((field) => [field.slice(0, field.indexOf('=')), field.slice(field.indexOf('=') + 1)] as const),
    );
    if (positional.length > 2) throw new Error(`${where}: expected <key> [<scopes>] [<models>] [name=..] [rate=..] [budget=..]`);
    const unknown = [...options.keys()].filter((option) => !['name', 'rate', 'budget'].includes(option));
    if (unknown.length > 0) throw new Error(`${where}: unknown option ${unknown.join(', ')} (name, rate, budget)`);
    const integer = (option: string): number | undefined => (options.has(option) ? Number(options.get(option)) : undefined);
    entries.push(
      entryOf(
        {
          secret: secretOf(token!, where),
          scopes: positional[0],
          models: positional[1],
          name: options.get('name'),
          rateLimit: integer('rate'),
          queryBudget: integer('budget'),
        },
        where,
      ),
    );
  }
  return entries;
}

export function readApiKeysFile(path: string): ApiKeyEntry[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read the API keys file ${path}: ${(error as Error).message}`);
  }
  return parseApiKeysFile(text, path);
}

/** The known keys, looked up in constant time. */
export class ApiKeyStore {
  private readonly entries: readonly ApiKeyEntry[];

  constructor(entries: readonly ApiKeyEntry[]) {
    const seen = new Map<string, number>();
    for (const [i, entry] of entries.entries()) {
      const hex = entry.digest.toString('hex');
      const before = seen.get(hex);
      if (before !== undefined) throw new Error(`API keys ${before + 1} and ${i + 1} are the same key`);
      seen.set(hex, i);
    }
    const ids = new Set<string>();
    for (const entry of entries) {
      if (ids.has(entry.principal.id)) throw new Error(`two API keys are named '${entry.principal.id.slice(4)}'; names must be unique`);
      ids.add(entry.principal.id);
    }
    this.entries = entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /** The principal of a presented key, or undefined. Every digest is compared, match or not. */
  lookup(presented: string): Principal | undefined {
    const digest = sha256(presented);
    let found: Principal | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry.principal;
    }
    return found;
  }
}

/** Keys from configuration strings or objects (`where` prefixes messages). */
export function parseConfiguredKeys(values: readonly (string | ApiKeyObject)[], where: string): ApiKeyEntry[] {
  return values.map((value, i) => (typeof value === 'string' ? parseApiKeySpec(value, `${where} entry ${i + 1}`) : parseApiKeyObject(value, `${where} entry ${i + 1}`)));
}


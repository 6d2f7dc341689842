import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseServerConfig, serverConfigSchema, type ServerConfig } from '../config/server-config.js';

/**
 * Server configuration from its four sources, highest first: command-line flags, TESSERA_*
 * environment variables, a config file (YAML or JSON, snake_case or camelCase keys), defaults.
 * This module and main.ts are the only readers of argv and the environment.
 */

type Source = Record<string, unknown>;
const KEYS = Object.keys(serverConfigSchema.shape) as (keyof typeof serverConfigSchema.shape)[];

/** camelCase of snake_case or kebab-case. */
function camel(key: string): string {
  return key.replace(/[-_]([a-z])/g, (_m, c: string) => c.toUpperCase());
}

/** TESSERA_MODEL_REPOSITORY -> modelRepository, for every key of the schema. */
export function fromEnvironment(env: NodeJS.ProcessEnv): Source {
  const out: Source = {};
  for (const key of KEYS) {
    const name = `TESSERA_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
    const value = env[name];
    if (value !== undefined && value !== '') out[key] = coerce(key, value);
  }
  return out;
}

export function fromFile(path: string): Source {
  const text = readFileSync(path, 'utf8');
  const raw: unknown = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${path}: expected a mapping of settings`);
  return Object.fromEntries(Object.entries(raw).map(([key, value]) => [camel(key), value]));
}

/** Flags as commander gives them (strings), for schema keys only. */
export function fromFlags(flags: Source): Source {
  const out: Source = {};
  for (const key of KEYS) {
    const value = flags[key];
    if (value !== undefined) out[key] = typeof value === 'string' ? coerce(key, value) : value;
  }
  return out;
}

/** Strings from argv or env, typed by what the schema expects for `key`. */
function coerce(key: string, value: string): unknown {
  const defaults = serverConfigSchema.parse({}) as Record<string, unknown>;
  const kind = typeof defaults[key];
  if (kind === 'number') return value.trim() === '' ? value : Number(value);
  if (kind === 'boolean') return value === 'true' || value === '1' ? true : value === 'false' || value === '0' ? false : value;
  return value;
}

export function resolveServerConfig(flags: Source, env: NodeJS.ProcessEnv): ServerConfig {
  const configFile = (flags['config'] as string | undefined) ?? env['TESSERA_CONFIG'];
  const file = configFile === undefined ? {} : fromFile(configFile);
  return parseServerConfig({ ...file, ...fromEnvironment(env), ...fromFlags(flags) });
}

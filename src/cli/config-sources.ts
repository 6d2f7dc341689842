import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseServerConfig, serverConfigSchema, type ServerConfig } from '../config/server-config.js';

/**
 * Server configuration from its sources, highest first: command-line flags, TESSERA_*
 * environment variables, the managed-cloud platforms' own variables (SAGEMAKER_*, AIP_*,
 * AZUREML_MODEL_DIR), a config file (YAML or JSON, snake_case or camelCase keys), what an
 * enabled platform implies (SageMaker's port 8080 and /opt/ml/model), defaults.
 * This module and main.ts read argv and the environment; besides them only server/v8-tuning.ts
 * (heap settings) and routing/cli.ts (TESSERA_MANAGEMENT_URL) do.
 */

type Source = Record<string, unknown>;
type Key = keyof typeof serverConfigSchema.shape;
const KEYS = Object.keys(serverConfigSchema.shape) as Key[];

/** How a setting is written on the command line and in the environment. */
type Kind = 'integer' | 'number' | 'boolean' | 'list' | 'string';

/** What the schema expects for `key`, seen through its optional / default / nullable wrappers. */
function kindOf(key: Key): Kind {
  let schema: z.ZodType = serverConfigSchema.shape[key];
  while (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable || schema instanceof z.ZodDefault) schema = schema.unwrap() as z.ZodType;
  if (schema instanceof z.ZodNumber) return schema.isInt ? 'integer' : 'number';
  if (schema instanceof z.ZodBoolean) return 'boolean';
  if (schema instanceof z.ZodArray) return 'list';
  // A choice of numbers, e.g. queueFullStatus: 503 or 429.
  const integerLiteral = (option: unknown): boolean => option instanceof z.ZodLiteral && [...option.values].every((value) => Number.isInteger(value));
  if (schema instanceof z.ZodUnion && schema.options.every(integerLiteral)) return 'integer';
  return 'string';
}

const KINDS = Object.fromEntries(KEYS.map((key) => [key, kindOf(key)])) as Record<Key, Kind>;

/** camelCase of snake_case or kebab-case. */
function camel(key: string): string {
  return key.replace(/[-_]([a-z])/g, (_m, c: string) => c.toUpperCase());
}

/** httpPort -> --http-port */
function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** httpPort -> TESSERA_HTTP_PORT */
function variableName(key: string): string {
  return `TESSERA_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** TESSERA_MODEL_REPOSITORY -> modelRepository, for every key of the schema. Empty variables are unset. */
export function fromEnvironment(env: NodeJS.ProcessEnv): Source {
  const out: Source = {};
  for (const key of KEYS) {
    const name = variableName(key);
    const value = env[name];
    if (value !== undefined && value !== '') out[key] = coerce(KINDS[key], value, name);
  }
  return out;
}

/** A config file's settings; read and parse errors name the file. */
export function fromFile(path: string): Source {
  let raw: unknown;
  try {
    const text = readFileSync(path, 'utf8');
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    // YAML errors go on with a code frame; the first line says what and where.
    throw new Error(`${path}: ${(error as Error).message.split('\n')[0]!.replace(/:$/, '')}`, { cause: error });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${path}: expected a mapping of settings`);
  return Object.fromEntries(Object.entries(raw).map(([key, value]) => [camel(key), value]));
}

/** Flags as commander gives them (strings), for schema keys only. */
export function fromFlags(flags: Source): Source {
  const out: Source = {};
  for (const key of KEYS) {
    const value = flags[key];
    if (value !== undefined) out[key] = typeof value === 'string' ? coerce(KINDS[key], value, flagName(key)) : value;
  }
  return out;
}

const EXPECTED = { integer: 'an integer', number: 'a decimal number', boolean: 'true or false' } as const;

/**
 * A string from argv or the environment, typed as `kind`. Numbers are decimal only (no hex,
 * exponent or empty string, which Number() would take); an unreadable value is refused naming
 * `source` (the flag or variable) and the value.
 */
function coerce(kind: Kind, value: string, source: string): unknown {
  const text = value.trim();
  if (kind === 'integer' && /^-?\d+$/.test(text)) return Number(text);
  if (kind === 'number' && /^-?(\d+(\.\d+)?|\.\d+)$/.test(text)) return Number(text);
  if (kind === 'boolean' && (text === 'true' || text === '1')) return true;
  if (kind === 'boolean' && (text === 'false' || text === '0')) return false;
  if (kind === 'list') return value.split(',').map((item) => item.trim()).filter((item) => item !== '');
  if (kind === 'string') return value;
  throw new Error(`invalid server configuration: ${source}: expected ${EXPECTED[kind]}, got '${value}'`);
}

/** Platform variables that turn on an adapter (any SAGEMAKER_* variable also does). */
const VERTEX_VARIABLES = ['AIP_MODE', 'AIP_HTTP_PORT', 'AIP_HEALTH_ROUTE', 'AIP_PREDICT_ROUTE'] as const;

/**
 * Settings from the variables managed-cloud platforms set in serving containers:
 * SageMaker (any SAGEMAKER_*; SAGEMAKER_BIND_TO_PORT for inference pipelines; Tessera's own
 * SAGEMAKER_DEFAULT_MODEL), Vertex AI (AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE; the
 * others, AIP_STORAGE_URI included, are ignored) and Azure ML (AZUREML_MODEL_DIR, the mounted
 * model, becomes the repository).
 * An adapter that `settings` (TESSERA_* variables and flags) turns off, e.g. TESSERA_SAGEMAKER=false,
 * overrides the detection: its platform's variables are then ignored altogether.
 */
export function fromPlatformEnvironment(env: NodeJS.ProcessEnv, settings: Source = fromEnvironment(env)): Source {
  const out: Source = {};
  const set = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const detected = detectPlatforms(env, settings);
  if (detected.sagemaker.length > 0) {
    out['sagemaker'] = true;
    const port = set('SAGEMAKER_BIND_TO_PORT');
    if (port !== undefined) out['httpPort'] = coerce('integer', port, 'SAGEMAKER_BIND_TO_PORT');
    const model = set('SAGEMAKER_DEFAULT_MODEL');
    if (model !== undefined) out['defaultModel'] = model;
  }
  if (detected.vertex.length > 0) {
    out['vertex'] = true;
    const port = set('AIP_HTTP_PORT');
    if (port !== undefined) out['httpPort'] = coerce('integer', port, 'AIP_HTTP_PORT');
    const health = set('AIP_HEALTH_ROUTE');
    if (health !== undefined) out['vertexHealthRoute'] = health;
    const predict = set('AIP_PREDICT_ROUTE');
    if (predict !== undefined) out['vertexPredictRoute'] = predict;
  }
  const azureModelDir = set('AZUREML_MODEL_DIR');
  if (detected.azureml.length > 0 && azureModelDir !== undefined) {
    out['azureml'] = true;
    out['modelRepository'] = azureModelDir;
  }
  return out;
}

type Platform = 'sagemaker' | 'vertex' | 'azureml';

/** Each platform's variables that are set, none for a platform whose adapter `settings` turn off. */
function detectPlatforms(env: NodeJS.ProcessEnv, settings: Source): Record<Platform, string[]> {
  const names = Object.keys(env).filter((name) => env[name] !== undefined);
  const found: Record<Platform, string[]> = {
    sagemaker: names.filter((name) => name.startsWith('SAGEMAKER_')),
    vertex: VERTEX_VARIABLES.filter((name) => env[name] !== undefined),
    azureml: names.filter((name) => name === 'AZUREML_MODEL_DIR' && env[name] !== ''),
  };
  return {
    sagemaker: settings['sagemaker'] === false ? [] : found.sagemaker,
    vertex: settings['vertex'] === false ? [] : found.vertex,
    azureml: settings['azureml'] === false ? [] : found.azureml,
  };
}

/**
 * What an enabled platform implies where no source says otherwise: SageMaker and Vertex AI
 * send traffic to port 8080; SageMaker unpacks model artifacts into /opt/ml/model.
 */
export function platformDefaults(merged: Source): Source {
  const out: Source = {};
  if (merged['sagemaker'] === true || merged['vertex'] === true) out['httpPort'] = 8080;
  if (merged['sagemaker'] === true) out['modelRepository'] = '/opt/ml/model';
  return out;
}

/**
 * Start-up log lines about platform variables: which enabled an adapter, which were noticed but
 * are not acted on. `settings`: the resolved configuration (or the TESSERA_* variables), whose
 * `sagemaker: false` etc. mean the platform's variables were ignored.
 */
export function platformNotes(env: NodeJS.ProcessEnv, settings: Source = fromEnvironment(env)): string[] {
  const notes: string[] = [];
  const detected = detectPlatforms(env, settings);
  const ignored = detectPlatforms(env, {});
  if (detected.sagemaker.length > 0) notes.push(`SageMaker adapter enabled by ${detected.sagemaker.join(', ')}`);
  else if (ignored.sagemaker.length > 0) notes.push(`SageMaker adapter off (sagemaker: false): ${ignored.sagemaker.join(', ')} ignored`);
  if (detected.vertex.length > 0) notes.push('Vertex AI adapter enabled by AIP_* variables');
  else if (ignored.vertex.length > 0) notes.push(`Vertex AI adapter off (vertex: false): ${ignored.vertex.join(', ')} ignored`);
  if (settings['vertex'] !== false && env['AIP_STORAGE_URI'] !== undefined) {
    notes.push(`AIP_STORAGE_URI (${env['AIP_STORAGE_URI']}) is not downloaded: put the model repository in the image or a mounted volume`);
  }
  if (detected.azureml.length > 0) notes.push('Azure ML adapter enabled by AZUREML_MODEL_DIR, which is the model repository unless set otherwise');
  else if (ignored.azureml.length > 0) notes.push('Azure ML adapter off (azureml: false): AZUREML_MODEL_DIR ignored');
  return notes;
}

export function resolveServerConfig(flags: Source, env: NodeJS.ProcessEnv): ServerConfig {
  const configFile = flags['config'] ?? (env['TESSERA_CONFIG'] === '' ? undefined : env['TESSERA_CONFIG']);
  if (configFile === '') throw new Error("invalid server configuration: --config: expected a file name, got ''");
  const file = configFile === undefined ? {} : fromFile(String(configFile));
  const explicit = { ...fromEnvironment(env), ...fromFlags(flags) };
  const merged = { ...file, ...fromPlatformEnvironment(env, explicit), ...explicit, ...platformContract(env, explicit) };
  return parseServerConfig({ ...platformDefaults(merged), ...merged });
}

/**
 * Settings a platform dictates, which win over every other source: Vertex AI probes
 * AIP_HEALTH_ROUTE and sends predictions to AIP_PREDICT_ROUTE, so a route flag baked into an
 * image (`--vertex-health-route`, meant for local runs) must not move them elsewhere
 * (unless the Vertex AI adapter is turned off).
 */
function platformContract(env: NodeJS.ProcessEnv, settings: Source): Source {
  const out: Source = {};
  if (settings['vertex'] === false) return out;
  const health = env['AIP_HEALTH_ROUTE'];
  if (health !== undefined && health !== '') out['vertexHealthRoute'] = health;
  const predict = env['AIP_PREDICT_ROUTE'];
  if (predict !== undefined && predict !== '') out['vertexPredictRoute'] = predict;
  return out;
}

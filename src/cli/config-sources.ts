import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
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
  if (Array.isArray(defaults[key])) return value.split(',').map((item) => item.trim()).filter((item) => item !== '');
  return value;
}

/** Platform variables that turn on an adapter (any SAGEMAKER_* variable also does). */
const VERTEX_VARIABLES = ['AIP_MODE', 'AIP_HTTP_PORT', 'AIP_HEALTH_ROUTE', 'AIP_PREDICT_ROUTE'] as const;

/**
 * Settings from the variables managed-cloud platforms set in serving containers:
 * SageMaker (any SAGEMAKER_*; SAGEMAKER_BIND_TO_PORT for inference pipelines; Tessera's own
 * SAGEMAKER_DEFAULT_MODEL), Vertex AI (AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE; the
 * others, AIP_STORAGE_URI included, are ignored) and Azure ML (AZUREML_MODEL_DIR, the mounted
 * model, becomes the repository).
 */
export function fromPlatformEnvironment(env: NodeJS.ProcessEnv): Source {
  const out: Source = {};
  const set = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  if (Object.keys(env).some((name) => name.startsWith('SAGEMAKER_'))) {
    out['sagemaker'] = true;
    const port = set('SAGEMAKER_BIND_TO_PORT');
    if (port !== undefined) out['httpPort'] = Number(port);
    const model = set('SAGEMAKER_DEFAULT_MODEL');
    if (model !== undefined) out['defaultModel'] = model;
  }
  if (VERTEX_VARIABLES.some((name) => env[name] !== undefined)) {
    out['vertex'] = true;
    const port = set('AIP_HTTP_PORT');
    if (port !== undefined) out['httpPort'] = Number(port);
    const health = set('AIP_HEALTH_ROUTE');
    if (health !== undefined) out['vertexHealthRoute'] = health;
    const predict = set('AIP_PREDICT_ROUTE');
    if (predict !== undefined) out['vertexPredictRoute'] = predict;
  }
  const azureModelDir = set('AZUREML_MODEL_DIR');
  if (azureModelDir !== undefined) {
    out['azureml'] = true;
    out['modelRepository'] = azureModelDir;
  }
  return out;
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

/** Start-up log lines about platform variables that were noticed but are not acted on. */
export function platformNotes(env: NodeJS.ProcessEnv): string[] {
  const notes: string[] = [];
  const sagemaker = Object.keys(env).filter((name) => name.startsWith('SAGEMAKER_'));
  if (sagemaker.length > 0) notes.push(`SageMaker adapter enabled by ${sagemaker.join(', ')}`);
  if (VERTEX_VARIABLES.some((name) => env[name] !== undefined)) notes.push('Vertex AI adapter enabled by AIP_* variables');
  if (env['AIP_STORAGE_URI'] !== undefined) {
    notes.push(`AIP_STORAGE_URI (${env['AIP_STORAGE_URI']}) is not downloaded: put the model repository in the image or a mounted volume`);
  }
  if (env['AZUREML_MODEL_DIR'] !== undefined) notes.push('Azure ML adapter enabled by AZUREML_MODEL_DIR, which is the model repository unless set otherwise');
  return notes;
}

export function resolveServerConfig(flags: Source, env: NodeJS.ProcessEnv): ServerConfig {
  const configFile = (flags['config'] as string | undefined) ?? env['TESSERA_CONFIG'];
  const file = configFile === undefined ? {} : fromFile(configFile);
  const merged = { ...file, ...fromPlatformEnvironment(env), ...fromEnvironment(env), ...fromFlags(flags), ...platformContract(env) };
  return parseServerConfig({ ...platformDefaults(merged), ...merged });
}

/**
 * Settings a platform dictates, which win over every other source: Vertex AI probes
 * AIP_HEALTH_ROUTE and sends predictions to AIP_PREDICT_ROUTE, so a route flag baked into an
 * image (`--vertex-health-route`, meant for local runs) must not move them elsewhere.
 */
function platformContract(env: NodeJS.ProcessEnv): Source {
  const out: Source = {};
  const health = env['AIP_HEALTH_ROUTE'];
  if (health !== undefined && health !== '') out['vertexHealthRoute'] = health;
  const predict = env['AIP_PREDICT_ROUTE'];
  if (predict !== undefined && predict !== '') out['vertexPredictRoute'] = predict;
  return out;
}

import { stat } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { TesseraError } from '../../../core/errors.js';
import type { Engine } from '../../../engine/engine.js';
import { guarded, sendJson, type HttpErrorPolicy } from '../errors.js';
import { torchServeErrorBody } from '../torchserve/errors.js';

export interface ManagementRoutesOptions {
  readonly engine: Engine;
  readonly errors: HttpErrorPolicy;
}

type ModelParams = { model: string };
type VersionParams = { model: string; version: string };

/**
 * The management API for operators, after TorchServe's (its own listener, :8081, bound to
 * 127.0.0.1 by default): list and describe models, register one from an archive or a
 * directory, scale its instances, set its default version (instant rollback), unregister it.
 * Errors use TorchServe's `{"code", "type", "message"}` body.
 */
export function registerManagementRoutes(app: FastifyInstance, options: ManagementRoutesOptions): void {
  const { engine } = options;
  const handle = guarded(options.errors, torchServeErrorBody);

  app.get(
    '/models',
    handle(() => ({
      models: engine.describeModels().map((model) => ({ modelName: model.name, modelUrl: model.directory, loaded: model.loaded })),
    })),
  );

  app.get<{ Params: ModelParams }>(
    '/models/:model',
    handle<ModelParams>(async (req) => {
      const [model] = engine.describeModels(req.params.model);
      // Read before the awaits below: an unload meanwhile must not turn this answer into a 503.
      const config = model!.versions.some((v) => v.state === 'READY') ? configOrNull(engine, model!.name) : null;
      const versions = await Promise.all(
        model!.versions.map(async (version) => ({
          ...version,
          modelFileBytes: await modelFileBytes(engine, model!.name, version.version, model!.directory),
        })),
      );
      return {
        modelName: model!.name,
        modelUrl: model!.directory,
        loaded: model!.loaded,
        defaultVersion: model!.defaultVersion ?? null,
        versions,
        config,
        // Aliases, split, canary and shadow (src/routing); per-version circuit breakers are in versions[].routing.
        ...(model!.routing === undefined ? {} : { routing: model!.routing }),
        // Worker threads share the process: this is the whole server's resident memory.
        processMemory: { rssBytes: process.memoryUsage.rss() },
      };
    }),
  );

  app.post(
    '/models',
    handle(async (req, reply) => {
      // Every parameter is checked before anything is registered: a refusal changes nothing.
      const query = req.query as Record<string, unknown>;
      const url = queryParameter(query, 'url');
      if (url === undefined || url === '') {
        throw new TesseraError('INVALID_PARAMETER', "'url' is required: the path of a model archive (.tar.gz) or a model directory");
      }
      const name = queryParameter(query, 'model_name');
      const workers = queryParameter(query, 'initial_workers');
      // TorchServe's initial_workers=0 registers a model without workers; a Tessera model always
      // runs on instances, so 0 (like no value) means the instance count of the model's config.
      const instances = workers === undefined ? 0 : instanceCount(workers, 'initial_workers', 0);
      const registered = await engine.registerModel(url, { ...(name === undefined ? {} : { name }), ...(instances === 0 ? {} : { instances }) });
      return sendJson(reply, 200, { status: `Model "${registered}" registered`, modelName: registered });
    }),
  );

  app.put<{ Params: ModelParams }>(
    '/models/:model',
    handle<ModelParams>(async (req, reply) => {
      const query = req.query as Record<string, unknown>;
      const minWorker = queryParameter(query, 'min_worker');
      const workers = minWorker ?? queryParameter(query, 'instances');
      if (workers === undefined) throw new TesseraError('INVALID_PARAMETER', "'min_worker' (or 'instances') is required: how many instances to run");
      const count = instanceCount(workers, minWorker === undefined ? 'instances' : 'min_worker', 1);
      await engine.scaleModel(req.params.model, count);
      return sendJson(reply, 200, { status: `Model "${req.params.model}" runs ${count} instance${count === 1 ? '' : 's'}` });
    }),
  );

  app.put<{ Params: VersionParams }>(
    '/models/:model/:version/set-default',
    handle<VersionParams>((req, reply) => {
      const { model, version } = req.params;
      engine.setDefaultVersion(model, version === 'latest' ? undefined : version);
      return sendJson(reply, 200, { status: `Default version of model "${model}" is ${version}` });
    }),
  );

  app.delete<{ Params: ModelParams }>(
    '/models/:model',
    handle<ModelParams>(async (req, reply) => {
      await engine.unloadModel(req.params.model);
      return sendJson(reply, 200, { status: `Model "${req.params.model}" unregistered` });
    }),
  );
}

/** A query parameter given at most once (Fastify makes an array of a repeated one). */
function queryParameter(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined || typeof value === 'string') return value;
  const times = Array.isArray(value) ? `${value.length} times` : 'in a form that is not a string';
  throw new TesseraError('INVALID_PARAMETER', `'${name}' is given ${times}; give it once`);
}

/** An instance count from a query parameter: an integer from `min` to 64. */
function instanceCount(text: string, parameter: string, min: number): number {
  const count = /^[0-9]{1,3}$/.test(text) ? Number(text) : Number.NaN;
  if (!(count >= min && count <= 64)) throw new TesseraError('INVALID_PARAMETER', `'${parameter}' must be an integer from ${min} to 64, got '${text}'`);
  return count;
}

/** The model's (or version's) config as served, or null when it stops serving (an unload under way). */
function configOrNull(engine: Engine, model: string, version?: string): ReturnType<Engine['modelConfig']> | null {
  try {
    return engine.modelConfig(model, version);
  } catch {
    return null;
  }
}

async function modelFileBytes(engine: Engine, model: string, version: string, directory: string): Promise<number | null> {
  const config = engine.describeModels(model)[0]?.versions.some((v) => v.version === version && v.state === 'READY') ? configOrNull(engine, model, version) : undefined;
  const file = `${directory}/${version}/${config?.default_model_filename ?? 'model.onnx'}`;
  return stat(file).then((info) => info.size, () => null);
}

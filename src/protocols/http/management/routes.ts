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
        config: model!.versions.some((v) => v.state === 'READY') ? engine.modelConfig(model!.name) : null,
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
      const query = req.query as Record<string, unknown>;
      const url = query['url'];
      if (typeof url !== 'string' || url === '') {
        throw new TesseraError('INVALID_PARAMETER', "'url' is required: the path of a model archive (.tar.gz) or a model directory");
      }
      const name = typeof query['model_name'] === 'string' ? query['model_name'] : undefined;
      const registered = await engine.registerModel(url, name === undefined ? {} : { name });
      const workers = query['initial_workers'];
      if (typeof workers === 'string') await engine.scaleModel(registered, instanceCount(workers));
      return sendJson(reply, 200, { status: `Model "${registered}" registered`, modelName: registered });
    }),
  );

  app.put<{ Params: ModelParams }>(
    '/models/:model',
    handle<ModelParams>(async (req, reply) => {
      const query = req.query as Record<string, unknown>;
      const workers = query['min_worker'] ?? query['instances'];
      if (typeof workers !== 'string') throw new TesseraError('INVALID_PARAMETER', "'min_worker' (or 'instances') is required: how many instances to run");
      const count = instanceCount(workers);
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

function instanceCount(text: string): number {
  const count = Number(text);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new TesseraError('INVALID_PARAMETER', `instance count must be an integer from 1 to 64, got '${text}'`);
  return count;
}

async function modelFileBytes(engine: Engine, model: string, version: string, directory: string): Promise<number | null> {
  const config = engine.describeModels(model)[0]?.versions.some((v) => v.version === version && v.state === 'READY') ? engine.modelConfig(model, version) : undefined;
  const file = `${directory}/${version}/${config?.default_model_filename ?? 'model.onnx'}`;
  return stat(file).then((info) => info.size, () => null);
}

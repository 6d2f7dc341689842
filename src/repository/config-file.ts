import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readTritonConfig } from './triton-config.js';
import { parse as parseYaml } from 'yaml';
import { describeIssues, modelConfigSchema, type ModelConfigFile } from '../config/model-config.js';

/** Config file names looked for in a model directory, in order; config.pbtxt is Triton's. */
export const CONFIG_FILENAMES = ['config.yaml', 'config.yml', 'config.json', 'config.pbtxt'] as const;

export type ConfigFileResult =
  | {
      readonly ok: true;
      readonly config: ModelConfigFile;
      readonly file: string | undefined;
      /** Fields of a Triton config.pbtxt that Tessera does not honour. */
      readonly ignored: readonly string[];
    }
  | { readonly ok: false; readonly reason: string };

/** Read and validate a model directory's config file; a model without one gets the defaults. */
export async function readModelConfig(modelDir: string, present: ReadonlySet<string>): Promise<ConfigFileResult> {
  const filename = CONFIG_FILENAMES.find((name) => present.has(name));
  if (filename === undefined) return { ok: true, config: modelConfigSchema.parse({}), file: undefined, ignored: [] };
  const file = join(modelDir, filename);
  if (filename === 'config.pbtxt') {
    try {
      // autoComplete: batching models without dynamic_batching get it, as Triton's onnxruntime backend completes them.
      const { config, ignored } = readTritonConfig(await readFile(file, 'utf8'), { source: `${basename(modelDir)}/config.pbtxt`, autoComplete: true });
      return { ok: true, config, file, ignored };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  }
  let raw: unknown;
  try {
    const text = await readFile(file, 'utf8');
    raw = filename.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    return { ok: false, reason: `cannot parse ${filename}: ${(error as Error).message}` };
  }
  const parsed = modelConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) return { ok: false, reason: `invalid ${filename}: ${describeIssues(parsed.error)}` };
  return { ok: true, config: parsed.data, file, ignored: [] };
}

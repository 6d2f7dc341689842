import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describeIssues, modelConfigSchema, type ModelConfigFile } from '../config/model-config.js';

/** Config file names looked for in a model directory, in order. */
export const CONFIG_FILENAMES = ['config.yaml', 'config.yml', 'config.json'] as const;

export type ConfigFileResult =
  | { readonly ok: true; readonly config: ModelConfigFile; readonly file: string | undefined }
  | { readonly ok: false; readonly reason: string };

/** Read and validate a model directory's config file; a model without one gets the defaults. */
export async function readModelConfig(modelDir: string, present: ReadonlySet<string>): Promise<ConfigFileResult> {
  const filename = CONFIG_FILENAMES.find((name) => present.has(name));
  if (filename === undefined) return { ok: true, config: modelConfigSchema.parse({}), file: undefined };
  const file = join(modelDir, filename);
  let raw: unknown;
  try {
    const text = await readFile(file, 'utf8');
    raw = filename.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    return { ok: false, reason: `cannot parse ${filename}: ${(error as Error).message}` };
  }
  const parsed = modelConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) return { ok: false, reason: `invalid ${filename}: ${describeIssues(parsed.error)}` };
  return { ok: true, config: parsed.data, file };
}

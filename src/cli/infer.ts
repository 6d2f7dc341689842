import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { TesseraError } from '../core/errors.js';
import { decodeInferenceRequest } from '../protocols/http/v2/decode.js';
import { encodeInferenceResponse } from '../protocols/http/v2/encode.js';
import { reportFailure, startLocalEngine } from './local-engine.js';

/** The model repository of one-off commands when neither the flag nor the environment names one. */
export const DEFAULT_MODEL_REPOSITORY = './models';

/**
 * The model repository of a one-off command (infer, baseline, batch): `--model-repository` when
 * given on the command line, else TESSERA_MODEL_REPOSITORY, else ./models, as for `serve`.
 * `command` tells a flag given from the option's default (commander fills it in); without it, a
 * value in `flag` counts as given.
 */
export function modelRepositoryOf(flag: string | undefined, command?: Command, env: NodeJS.ProcessEnv = process.env): string {
  const source = command?.getOptionValueSource('modelRepository');
  if (flag !== undefined && source !== 'default') return flag;
  const fromEnv = env['TESSERA_MODEL_REPOSITORY'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : (flag ?? DEFAULT_MODEL_REPOSITORY);
}

/** The text of a file a flag names: a clear INVALID_PARAMETER when it is missing, a directory or unreadable. */
export async function readFlagFile(flag: string, path: string, expected: string): Promise<string> {
  const info = await stat(path).catch((error: unknown) => {
    throw new TesseraError('INVALID_PARAMETER', `${flag}: cannot read ${path}: ${(error as Error).message}; expected ${expected}`, { cause: error });
  });
  if (!info.isFile()) throw new TesseraError('INVALID_PARAMETER', `${flag}: ${path} is ${info.isDirectory() ? 'a directory' : 'not a regular file'}; expected ${expected}`);
  return readFile(path, 'utf8').catch((error: unknown) => {
    throw new TesseraError('INVALID_PARAMETER', `${flag}: cannot read ${path}: ${(error as Error).message}`, { cause: error });
  });
}

/** `tessera infer <model> --input request.json`: one inference in-process; prints the V2 response. */
export async function inferCommand(model: string, flags: { input: string; modelRepository?: string; modelVersion?: string }, command?: Command): Promise<void> {
  // The request is read first: a wrong --input is reported without loading every model.
  let body: unknown;
  try {
    const text = await readFlagFile('--input', flags.input, 'a V2 inference request body (a JSON file)');
    try {
      body = JSON.parse(text);
    } catch (error) {
      throw new TesseraError('INVALID_REQUEST', `--input: ${flags.input} is not valid JSON: ${(error as Error).message}; expected a V2 inference request body`);
    }
  } catch (error) {
    reportFailure('infer', error);
    return;
  }
  const engine = await startLocalEngine(modelRepositoryOf(flags.modelRepository, command)).catch((error: unknown) => reportFailure('infer', error));
  if (engine === undefined) return;
  try {
    const request = decodeInferenceRequest(body, { model, protocol: 'cli', ...(flags.modelVersion === undefined ? {} : { version: flags.modelVersion }) });
    const response = await engine.infer(request);
    process.stdout.write(`${encodeInferenceResponse(response)}\n`);
  } catch (error) {
    reportFailure('infer', error);
  } finally {
    await engine.close();
  }
}

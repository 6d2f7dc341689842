import { readFile } from 'node:fs/promises';
import { decodeInferenceRequest } from '../protocols/http/v2/decode.js';
import { encodeInferenceResponse } from '../protocols/http/v2/encode.js';
import { reportFailure, startLocalEngine } from './local-engine.js';

/** `tessera infer <model> --input request.json`: one inference in-process; prints the V2 response. */
export async function inferCommand(model: string, flags: { input: string; modelRepository: string; modelVersion?: string }): Promise<void> {
  const engine = await startLocalEngine(flags.modelRepository).catch((error: unknown) => reportFailure('infer', error));
  if (engine === undefined) return;
  try {
    const body: unknown = JSON.parse(await readFile(flags.input, 'utf8'));
    const request = decodeInferenceRequest(body, { model, protocol: 'cli', ...(flags.modelVersion === undefined ? {} : { version: flags.modelVersion }) });
    const response = await engine.infer(request);
    process.stdout.write(`${encodeInferenceResponse(response)}\n`);
  } catch (error) {
    reportFailure('infer', error);
  } finally {
    await engine.close();
  }
}

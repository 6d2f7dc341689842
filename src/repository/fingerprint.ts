import { stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * What identifies the content of a model version for reload decisions: the model file's size,
 * modification time and inode (a replaced file changes at least one), plus the model's
 * configuration and labels. Equal fingerprints mean nothing to reload.
 */
export async function versionFingerprint(modelDir: string, version: string, filename: string, configKey: string): Promise<string> {
  try {
    const info = await stat(join(modelDir, version, filename));
    return `${info.size}:${info.mtimeMs}:${info.ino}:${configKey}`;
  } catch {
    return `missing:${configKey}`;
  }
}

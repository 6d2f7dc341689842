import { open, rename, unlink } from 'node:fs/promises';

/**
 * Write `data` to `path` atomically: a temporary file beside it is written and flushed to disk,
 * then renamed over `path`. A crash leaves either the old file or the new one, never a torn one.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(data);
    await handle.datasync();
  } catch (error) {
    await handle.close();
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await handle.close();
  await rename(temporary, path);
}

/** Flush a directory's entries (renames in it) to disk; best effort (some platforms refuse). */
export async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (handle === undefined) return;
  try {
    await handle.sync();
  } catch {
    // Not supported here (e.g. some network filesystems): renames are still atomic.
  } finally {
    await handle.close();
  }
}

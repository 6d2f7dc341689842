import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

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

/** Most buffers handed to one writev call (IOV_MAX is 1024 on Linux and macOS). */
const MAX_PIECES_PER_WRITE = 1024;

/**
 * Write `pieces` one after the other at `position` (gathered writes, no copy into one buffer);
 * short writes are carried on. Resolves with the bytes written (all of them).
 */
export async function writePiecesAt(handle: FileHandle, pieces: readonly Uint8Array[], position: number): Promise<number> {
  let queue = pieces.filter((piece) => piece.length > 0);
  let at = position;
  while (queue.length > 0) {
    const batch = queue.slice(0, MAX_PIECES_PER_WRITE);
    let { bytesWritten } = await handle.writev(batch, at);
    if (bytesWritten === 0) throw new Error(`writing at byte ${at} wrote nothing`);
    at += bytesWritten;
    // Drop what was written; a piece written in part goes on from where it stopped.
    let k = 0;
    while (k < queue.length && bytesWritten >= queue[k]!.length) bytesWritten -= queue[k++]!.length;
    queue = queue.slice(k);
    if (bytesWritten > 0) queue[0] = queue[0]!.subarray(bytesWritten);
  }
  return at - position;
}

import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { extractArchive, inspectArchive } from './archive.js';

/** A model archive (`tessera pack` output) lying in the repository directory. */
export interface RepositoryArchive {
  readonly name: string;
  readonly file: string;
  /** Changes whenever the archive file is replaced or rewritten. */
  readonly stamp: string;
}

/** Where archives found in a repository are unpacked: a hidden directory discovery skips. */
export const ARCHIVE_CACHE_DIR = '.tessera-archives';

const ARCHIVE_FILE = /\.(tar\.gz|tgz)$/;

/** The model archives at the top of a repository, named by their manifests. Unreadable archives are reported by `onProblem`. */
export async function listRepositoryArchives(root: string, onProblem: (file: string, reason: string) => void): Promise<RepositoryArchive[]> {
  const dir = resolve(root);
  const entries = await readdir(dir, { withFileTypes: true });
  const archives: RepositoryArchive[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !ARCHIVE_FILE.test(entry.name)) continue;
    const file = join(dir, entry.name);
    try {
      const [info, manifest] = await Promise.all([stat(file), inspectArchive(file)]);
      archives.push({ name: manifest.name, file, stamp: `${info.size}:${info.mtimeMs}:${info.ino}` });
    } catch (error) {
      onProblem(file, error instanceof Error ? error.message : String(error));
    }
  }
  return archives;
}

/** Where an archive is unpacked: `<repository>/.tessera-archives/<name>@<key>`, the key changing with the archive file. */
export function archiveCopyDir(root: string, archive: RepositoryArchive): string {
  const key = createHash('sha256').update(`${archive.file}\n${archive.stamp}`).digest('hex').slice(0, 16);
  return join(resolve(root), ARCHIVE_CACHE_DIR, `${archive.name}@${key}`);
}

/**
 * The directory an archive serves from, unpacking (and verifying every file's checksum) on
 * first use. A rewritten archive unpacks to a new directory, so the version it replaces keeps
 * its files while it drains; the registry removes the older copy once that version is retired.
 */
export async function unpackRepositoryArchive(root: string, archive: RepositoryArchive): Promise<string> {
  const dest = archiveCopyDir(root, archive);
  const present = await stat(dest).then((info) => info.isDirectory(), () => false);
  if (!present) {
    await mkdir(join(resolve(root), ARCHIVE_CACHE_DIR), { recursive: true });
    await extractArchive(archive.file, dest);
  }
  return dest;
}

const ARCHIVE_COPY = /^[^/]+@[0-9a-f]{16}$/;

/**
 * Remove the unpacked copies that belong to none of `current` (archives rewritten or removed
 * since they were unpacked, possibly by an earlier run). For start-up, before any version
 * serves from a copy. Returns the copies removed; `onProblem` reports those that could not be.
 */
export async function removeStaleArchiveCopies(root: string, current: Iterable<RepositoryArchive>, onProblem: (dir: string, reason: string) => void): Promise<string[]> {
  const cache = join(resolve(root), ARCHIVE_CACHE_DIR);
  const keep = new Set([...current].map((archive) => archiveCopyDir(root, archive)));
  const entries = await readdir(cache).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const entry of entries) {
    const dir = join(cache, entry);
    if (!ARCHIVE_COPY.test(entry) || keep.has(dir)) continue;
    try {
      await rm(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch (error) {
      onProblem(dir, (error as Error).message);
    }
  }
  return removed;
}

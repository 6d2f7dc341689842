import { stat } from 'node:fs/promises';
import { TesseraError, toTesseraError } from '../core/errors.js';
import { inspectArchive, packModel } from '../repository/archive.js';
import { TESSERA_VERSION } from '../server/version.js';

/** `--model-version`: version numbers (the names of version directories: 0, 1, 2, ...). */
export function parseVersions(values: readonly string[] | undefined): number[] | undefined {
  return values?.map((value) => {
    const version = /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(version)) {
      throw new TesseraError('INVALID_PARAMETER', `--model-version: expected a version number (a non-negative integer such as 1), got '${value}'`);
    }
    return version;
  });
}

/** `tessera pack <model-dir> -o model.tar.gz`: bundle a model directory with a checksummed manifest. */
export async function packCommand(
  modelDir: string,
  flags: { output?: string; name?: string; modelVersion?: string[]; include?: string[] },
): Promise<void> {
  try {
    const versions = parseVersions(flags.modelVersion);
    const result = await packModel(modelDir, flags.output ?? `${modelDir.replace(/\/+$/, '')}.tar.gz`, {
      tesseraVersion: TESSERA_VERSION,
      ...(flags.name === undefined ? {} : { name: flags.name }),
      ...(versions === undefined ? {} : { version: versions }),
      ...(flags.include === undefined ? {} : { include: flags.include }),
    });
    const { manifest } = result;
    process.stdout.write(`packed ${manifest.name} (versions ${manifest.versions.join(', ')}) into ${result.file}: ${manifest.files.length} files, ${manifest.total_size} bytes\n`);
    if (result.skipped.length > 0) process.stdout.write(`not packed (pass --include to add): ${result.skipped.join(', ')}\n`);
  } catch (error) {
    const failure = toTesseraError(error);
    process.stderr.write(`tessera pack: ${failure.code}: ${failure.message}\n`);
    process.exitCode = 1;
  }
}

/** `tessera inspect <archive>`: print the manifest; `--verify` checks every file's checksum. */
export async function inspectCommand(archive: string, flags: { verify?: boolean }): Promise<void> {
  try {
    // A directory is named as such (reading it would fail with a bare EISDIR).
    const info = await stat(archive).catch(() => undefined);
    if (info?.isDirectory() === true) {
      throw new TesseraError('INVALID_PARAMETER', `the archive ${archive} is a directory; expected a model archive file (a .tar.gz written by tessera pack)`);
    }
    const manifest = await inspectArchive(archive, { verify: flags.verify === true });
    process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
    if (flags.verify === true) process.stdout.write(`verified: every file matches its sha256\n`);
  } catch (error) {
    const failure = toTesseraError(error);
    process.stderr.write(`tessera inspect: ${failure.code}: ${failure.message}\n`);
    process.exitCode = 1;
  }
}
